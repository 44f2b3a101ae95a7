"""Connection targets: bad parameters are the caller's mistake, and no password leaks."""

from collections.abc import Callable
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgusers
from pgusers import BadCallError
from pgusers._drivers import target

from .support import FAST_HASHER

SECRET = "s3cr3t-pw"

BAD_PARAMETERS = {
    "NUL in a keyword": ("", {"password": "x\x00", "sslmode": "verify-full"}),
    "surrogate in a keyword": ("", {"user": "app\udc80"}),
    "NUL in conninfo": ("host=db password=x\x00 sslmode=verify-full", {}),
    "surrogate in conninfo": ("host=db\udcff", {}),
    "bytes that are not UTF-8 in conninfo": (b"host=\xff".decode("utf-8", "surrogateescape"), {}),
    "NUL in dbname": ("dbname=user", {"dbname": "user\x00list"}),
    "bad port": ("", {"port": "fifty"}),
    "port out of range": ("", {"port": 70000}),
    "bad sslmode": ("", {"sslmode": "sometimes"}),
    "bad target_session_attrs": ("", {"target_session_attrs": "whatever"}),
    "bad connect_timeout": ("", {"connect_timeout": "soon"}),
    "a list as a value": ("", {"host": ["a", "b"]}),
}


@pytest.mark.parametrize("conninfo, params", BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys())
def test_bad_connection_parameters_are_bad_calls(conninfo: Any, params: Any) -> None:
    params = dict(params)
    with pytest.raises(BadCallError):
        target.resolve(params.pop("dbname", "userlist"), conninfo, dict(params))


def test_bad_parameters_are_refused_before_connecting(
    open_userspace: Callable[..., Any], schema: str
) -> None:
    # No server answers on port 1: a DatabaseUnavailableError would mean it tried.
    with pytest.raises(BadCallError, match="sslmode must be one of"):
        open_userspace("userlist", host="127.0.0.1", port=1, sslmode="on", schema=schema)
    with pytest.raises(BadCallError, match="port must be a number"):
        open_userspace("userlist", host="127.0.0.1", port="x", schema=schema)


MALFORMED = [
    f"host=db password {SECRET}",
    f"postgresql://app:{SECRET} x@db/userlist",
    f"host=db password='{SECRET}",
    f"postgresql://app:{SECRET}@db/userlist?sslmode",
]


@pytest.mark.parametrize("conninfo", MALFORMED)
def test_a_malformed_conninfo_is_refused_without_its_password(conninfo: Any) -> None:
    with pytest.raises(BadCallError) as raised:
        target.resolve(None, conninfo, {})
    assert SECRET not in str(raised.value)
    assert "bad connection parameters" in str(raised.value)


def test_repr_of_a_target_has_no_password() -> None:
    where = target.resolve("userlist", f"host=db user=app password={SECRET}", {})
    assert SECRET not in repr(where)
    assert SECRET not in where.describe()


def test_two_services_are_two_targets() -> None:
    first = target.resolve(None, "service=primary", {})
    second = target.resolve(None, "service=replica", {})
    assert first.identity != second.identity
    assert "service primary" in first.describe()


SCHEMAS = {
    "percent": "my%schema",
    "percent s": "a%sb",
    "control": "a\x1bb",
    "64 bytes": "\u00e9" * 32,
    "NUL": "a\x00",
    "surrogate": "a\udc80",
    "empty": "",
}


@pytest.mark.parametrize("name", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_unusable_schema_names_are_refused(
    open_userspace: Callable[..., Any], dsn: str, name: Any
) -> None:
    with pytest.raises(BadCallError, match="schema"):
        open_userspace(conninfo=dsn, schema=name)


def test_a_schema_name_of_63_bytes_is_accepted(
    open_userspace: Callable[..., Any], dsn: str
) -> None:
    from .support import FAST_HASHER, drop_schema

    name = "p" + "\u00e9" * 31
    assert len(name.encode()) == 63
    try:
        with open_userspace(conninfo=dsn, schema=name, hasher=FAST_HASHER) as usp:
            assert usp.create_user("ada", "pw", "ada@example.com") == 1
    finally:
        drop_schema(dsn, name)


def test_a_multi_host_connection_string_reaches_the_host_that_answers(
    server_dsn: str, schema: str
) -> None:
    params: dict[str, Any] = conninfo_to_dict(server_dsn)
    host, port = params.get("host", "localhost"), str(params.get("port", 5432))
    params.update(host=f"127.0.0.1,{host}", port=f"1,{port}", target_session_attrs="read-write")
    usp = pgusers.UserSpace(conninfo=make_conninfo(**params), schema=schema, hasher=FAST_HASHER)
    try:
        usp.create_user("ada", "s3cret", "ada@example.com")
        assert usp.check_key(usp.login("ada", "s3cret").key).status == pgusers.OK
    finally:
        usp.close()
