"""One UserSpace per connection target; connection parameters; close()."""

import threading

import psycopg
import pytest

import pgusers
from pgusers import BadCallError, DatabaseUnavailableError

from .conftest import FAST_HASHER


def params_of(dsn):
    return psycopg.conninfo.conninfo_to_dict(dsn)


def test_same_target_gives_the_same_object(usp, dsn, schema):
    assert pgusers.UserSpace(conninfo=dsn, schema=schema) is usp


def test_dbname_positional_keyword_or_in_conninfo(dsn, schema):
    params = params_of(dsn)
    dbname = params.pop("dbname")
    with pgusers.UserSpace(dbname, schema=schema, **params) as first:
        assert pgusers.UserSpace(dbname=dbname, schema=schema, **params) is first
        assert pgusers.UserSpace(conninfo=dsn, schema=schema) is first


def test_libpq_environment_variables_are_used(dsn, schema, monkeypatch):
    params = params_of(dsn)
    for name, env in (
        ("host", "PGHOST"),
        ("port", "PGPORT"),
        ("user", "PGUSER"),
        ("dbname", "PGDATABASE"),
    ):
        if name in params:
            monkeypatch.setenv(env, str(params[name]))
    with pgusers.UserSpace(schema=schema, hasher=FAST_HASHER) as usp:
        assert usp.create_user("ada", "pw", "ada@example.com") == 1
        assert pgusers.UserSpace(conninfo=dsn, schema=schema) is usp


def test_other_schema_is_another_userspace(usp, dsn, schema):
    from .conftest import drop_schema

    other = pgusers.UserSpace(conninfo=dsn, schema=schema + "_b", hasher=FAST_HASHER)
    try:
        assert other is not usp
        usp.create_user("ada", "pw", "ada@example.com")
        assert other.find_user(username="ada") is None
    finally:
        other.close()
        drop_schema(dsn, schema + "_b")


def test_two_servers_sharing_a_database_name_are_two_targets():
    from pgusers import target

    first = target.resolve("userlist", "", {"host": "db1.example.com", "user": "app"})
    second = target.resolve("userlist", "", {"host": "db2.example.com", "user": "app"})
    same = target.resolve(None, "postgresql://app@db1.example.com/userlist", {})
    assert first.identity != second.identity
    assert first.identity == same.identity


def test_missing_database_name_is_a_bad_call(monkeypatch):
    monkeypatch.delenv("PGDATABASE", raising=False)
    with pytest.raises(BadCallError, match="database"):
        pgusers.UserSpace(host="127.0.0.1")


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
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(BadCallError):
        pgusers.UserSpace(**kwargs)


def test_conflicting_options_for_an_open_userspace(usp, dsn, schema):
    with pytest.raises(BadCallError, match="serializer"):
        pgusers.UserSpace(conninfo=dsn, schema=schema, serializer="pickle")
    assert pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) is usp


def test_close_is_idempotent_and_reopening_works(dsn, schema):
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    usp.create_user("ada", "pw", "ada@example.com")
    usp.close()
    usp.close()
    with pytest.raises(BadCallError, match="closed"):
        usp.find_user(username="ada")
    again = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    try:
        assert again is not usp
        assert again.find_user(username="ada")["userid"] == 1
    finally:
        again.close()


def test_context_manager_closes(dsn, schema):
    with pgusers.UserSpace(conninfo=dsn, schema=schema) as usp:
        assert usp.ttl == 864000.0
    assert "closed" in repr(usp)


def test_registry_is_thread_safe(dsn, schema):
    barrier = threading.Barrier(8)
    found = []

    def open_it():
        barrier.wait()
        found.append(pgusers.UserSpace(conninfo=dsn, schema=schema))

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8
    assert all(space is found[0] for space in found)
    found[0].close()


def test_unreachable_server_raises_database_unavailable(schema):
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        pgusers.UserSpace("nodb", host="127.0.0.1", port=1, schema=schema)
