"""One UserSpace per connection target; connection parameters; close()."""

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher

from pgusers import BadCallError, DatabaseUnavailableError

from .support import FAST_HASHER, unwrap


def params_of(dsn: str) -> dict[str, Any]:
    return psycopg.conninfo.conninfo_to_dict(dsn)


def test_same_target_gives_the_same_object(
    usp: Any, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    assert unwrap(open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)) is unwrap(usp)


def test_dbname_positional_keyword_or_in_conninfo(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    params = params_of(dsn)
    dbname = params.pop("dbname")
    with open_userspace(dbname, schema=schema, **params) as first:
        assert unwrap(open_userspace(dbname=dbname, schema=schema, **params)) is unwrap(first)
        assert unwrap(open_userspace(conninfo=dsn, schema=schema)) is unwrap(first)


def test_libpq_environment_variables_are_used(
    open_userspace: Callable[..., Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = params_of(dsn)
    for name, env in (
        ("host", "PGHOST"),
        ("port", "PGPORT"),
        ("user", "PGUSER"),
        ("dbname", "PGDATABASE"),
    ):
        if name in params:
            monkeypatch.setenv(env, str(params[name]))
    with open_userspace(schema=schema, hasher=FAST_HASHER) as usp:
        assert usp.create_user("ada", "pw", "ada@example.com") == 1
        assert unwrap(open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)) is unwrap(
            usp
        )


def test_other_schema_is_another_userspace(
    usp: Any, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    from .support import drop_schema

    other = open_userspace(conninfo=dsn, schema=schema + "_b", hasher=FAST_HASHER)
    try:
        assert unwrap(other) is not unwrap(usp)
        usp.create_user("ada", "pw", "ada@example.com")
        assert other.find_user(username="ada") is None
    finally:
        other.close()
        drop_schema(dsn, schema + "_b")


def test_two_servers_sharing_a_database_name_are_two_targets() -> None:
    from pgusers._drivers import target

    first = target.resolve("userlist", "", {"host": "db1.example.com", "user": "app"})
    second = target.resolve("userlist", "", {"host": "db2.example.com", "user": "app"})
    same = target.resolve(None, "postgresql://app@db1.example.com/userlist", {})
    assert first.identity != second.identity
    assert first.identity == same.identity


def test_missing_database_name_is_a_bad_call(
    open_userspace: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGDATABASE", raising=False)
    with pytest.raises(BadCallError, match="database"):
        open_userspace(host="127.0.0.1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dbname": 5},
        {"dbname": "x", "no_such_option": 1},
        {"dbname": "x", "autocommit": False},
        {"dbname": "x", "conninfo": 3},
        {"dbname": "x", "schema": ""},
        {"dbname": "x", "pool_max": 0},
        {"dbname": "x", "pool_timeout": -1},
        {"dbname": "x", "hasher": "argon2"},
    ],
)
def test_bad_constructor_arguments(open_userspace: Callable[..., Any], kwargs: Any) -> None:
    with pytest.raises(BadCallError):
        open_userspace(**kwargs)


def test_conflicting_options_for_an_open_userspace(
    usp: Any, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with pytest.raises(BadCallError, match="serializer"):
        open_userspace(conninfo=dsn, schema=schema, serializer="pickle", hasher=FAST_HASHER)
    assert unwrap(open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)) is unwrap(usp)


def test_opening_without_a_serializer_never_gives_a_pickling_userspace(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with open_userspace(conninfo=dsn, schema=schema, serializer="pickle", hasher=FAST_HASHER):
        with pytest.raises(BadCallError, match="decide security are never taken over"):
            open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
        with pytest.raises(BadCallError, match="another serializer"):
            open_userspace(conninfo=dsn, schema=schema, serializer="json", hasher=FAST_HASHER)


@pytest.mark.pgusers_real_hasher  # the library default, not the plugin's in tests
def test_opening_without_a_hasher_never_gives_one_with_other_parameters(
    usp: Any, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with pytest.raises(BadCallError, match="another hasher"):
        open_userspace(conninfo=dsn, schema=schema)
    same_parameters = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    assert unwrap(open_userspace(conninfo=dsn, schema=schema, hasher=same_parameters)) is unwrap(
        usp
    )


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("sslmode", "verify-full"),
        ("sslrootcert", "/etc/ssl/certs/other.pem"),
        ("channel_binding", "require"),
        ("options", "-c search_path=elsewhere"),
        ("target_session_attrs", "read-write"),
    ],
)
def test_a_security_parameter_is_never_taken_over_from_an_open_userspace(
    usp: Any, open_userspace: Callable[..., Any], dsn: str, schema: str, parameter: Any, value: Any
) -> None:
    with pytest.raises(BadCallError, match=f"another {parameter};"):
        open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, **{parameter: value})


def test_a_security_parameter_left_out_is_no_match_for_one_given(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with (
        open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, sslmode="disable"),
        pytest.raises(BadCallError, match="another sslmode"),
    ):
        open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)


def test_defaults_given_explicitly_are_the_same_userspace(
    open_userspace: Callable[..., Any], dsn: str, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    try:
        with open_userspace(conninfo=dsn, hasher=FAST_HASHER) as first:
            again = open_userspace(
                conninfo=dsn, schema="pgusers", hasher=FAST_HASHER, pool_min=1, serializer="json"
            )
            assert unwrap(again) is unwrap(first)
    finally:
        sql_conn.execute("DROP SCHEMA IF EXISTS pgusers CASCADE")


def test_close_is_idempotent_and_reopening_works(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    usp = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    usp.create_user("ada", "pw", "ada@example.com")
    usp.close()
    usp.close()
    with pytest.raises(BadCallError, match="closed"):
        usp.find_user(username="ada")
    again = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    try:
        assert unwrap(again) is not unwrap(usp)
        assert again.find_user(username="ada")["userid"] == 1
    finally:
        again.close()


def test_context_manager_closes(open_userspace: Callable[..., Any], dsn: str, schema: str) -> None:
    with open_userspace(conninfo=dsn, schema=schema) as usp:
        assert usp.ttl == 864000.0
    assert "closed" in repr(usp)


def test_registry_is_thread_safe(open_userspace: Callable[..., Any], dsn: str, schema: str) -> None:
    barrier = threading.Barrier(8)
    found = []

    def open_it() -> None:
        barrier.wait()
        found.append(unwrap(open_userspace(conninfo=dsn, schema=schema)))

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8
    assert all(space is found[0] for space in found)
    open_userspace(conninfo=dsn, schema=schema).close()


def test_unreachable_server_raises_database_unavailable(
    open_userspace: Callable[..., Any], schema: str
) -> None:
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        open_userspace("nodb", host="127.0.0.1", port=1, schema=schema)
