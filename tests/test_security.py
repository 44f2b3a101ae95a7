"""What is stored and what is never exposed: Argon2id hashes, random keys, the schema."""

import logging
from collections.abc import Callable
from typing import Any, Literal

import psycopg
import pytest
from argon2 import PasswordHasher, extract_parameters

from .support import FAST_HASHER, TABLES


def stored_hash(sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, uid: int) -> str:
    row = sql_conn.execute(
        f"SELECT password_hash FROM {schema}.users WHERE userid = %s", (uid,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_password_is_stored_as_an_argon2id_phc_hash(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    uid = usp.create_user("ada", "correct horse", "ada@example.com")
    hashed = stored_hash(sql_conn, schema, uid)
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert FAST_HASHER.verify(hashed, "correct horse")


def test_no_cleartext_password_anywhere_in_the_database(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    usp.create_user("ada", "Pa55word-marker", "ada@example.com")
    usp.change_password(1, "N3w-marker-pass")
    dump = sql_conn.execute(
        f"SELECT (SELECT json_agg(u)::text FROM {schema}.users u), "
        f"(SELECT json_agg(s)::text FROM {schema}.sessions s)"
    ).fetchone()
    assert "Pa55word-marker" not in str(dump)
    assert "N3w-marker-pass" not in str(dump)


@pytest.mark.pgusers_real_hasher  # the library default, not the plugin's in tests
def test_default_hasher_is_argon2id_with_library_defaults(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    with open_userspace(conninfo=dsn, schema=schema) as usp:
        uid = usp.create_user("ada", "pw", "ada@example.com")
    defaults = PasswordHasher()
    assert stored_hash(sql_conn, schema, uid).startswith(
        f"$argon2id$v=19$m={defaults.memory_cost},t={defaults.time_cost},p={defaults.parallelism}$"
    )


def test_an_outdated_hash_is_upgraded_on_the_next_login(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        uid = usp.create_user("ada", "pw", "ada@example.com")
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with open_userspace(conninfo=dsn, schema=schema, hasher=stronger) as usp:
        assert usp.validate_user("ada", "wrong")[2] is None
        assert stored_hash(sql_conn, schema, uid).startswith("$argon2id$v=19$m=1024,t=1,")
        assert usp.validate_user("ada", "pw")[2] == uid
        upgraded = stored_hash(sql_conn, schema, uid)
        assert upgraded.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
        assert usp.validate_user("ada", "pw")[2] == uid
        assert stored_hash(sql_conn, schema, uid) == upgraded


def test_session_keys_carry_256_random_bits(usp: Any) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    keys = [usp.validate_user("ada", "pw")[0] for _ in range(50)]
    assert all(len(key) == 43 for key in keys)  # 32 bytes in URL-safe base64
    assert len(set(keys)) == 50
    # No shared prefix to speak of, as a time- or id-derived key would have.
    assert len({key[:4] for key in keys}) > 45


def test_a_corrupted_stored_hash_refuses_the_login(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    sql_conn.execute(
        f"UPDATE {schema}.users SET password_hash = 'garbage' WHERE userid = %s", (uid,)
    )
    assert usp.validate_user("ada", "pw") == ("", False, None)


def test_repr_shows_no_password(open_userspace: Callable[..., Any], dsn: str, schema: str) -> None:
    with open_userspace(conninfo=dsn, schema=schema, password="top-secret-pw") as usp:
        assert "top-secret-pw" not in repr(usp)
        assert schema in repr(usp)


def test_nothing_is_logged_with_a_password(usp: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    usp.create_user("ada", "log-marker-pw", "ada@example.com")
    usp.validate_user("ada", "log-marker-pw")
    usp.change_password(1, "log-marker-new", "log-marker-pw")
    assert "log-marker" not in caplog.text


def test_tables_live_in_their_own_schema(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    sql_conn.execute("CREATE TABLE IF NOT EXISTS public.users (id int, name text)")
    try:
        sql_conn.execute("INSERT INTO public.users VALUES (1, 'app row')")
        usp.create_user("ada", "pw", "ada@example.com")
        usp.delete_user(username="ada")
        assert sql_conn.execute("SELECT name FROM public.users").fetchall() == [("app row",)]
        tables = {
            row[0]
            for row in sql_conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
        assert tables == set(TABLES)
    finally:
        sql_conn.execute("DROP TABLE public.users")


@pytest.mark.parametrize("name", ['odd"schema', "Mixed Case", "x; DROP TABLE y"])
def test_schema_names_are_quoted_identifiers(
    open_userspace: Callable[..., Any], dsn: str, name: Any
) -> None:
    from .support import drop_schema

    try:
        with open_userspace(conninfo=dsn, schema=name, hasher=FAST_HASHER) as usp:
            uid = usp.create_user("ada", "pw", "ada@example.com")
            assert usp.find_user(userid=uid)["username"] == "ada"
    finally:
        drop_schema(dsn, name)


@pytest.fixture
def argon2_work(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Record each Argon2 hash and verification pgusers asks for, with the parameters
    of the hash involved (the real argon2-cffi still does the work)."""
    done: list[tuple[str, int, int]] = []
    original_hash, original_verify = PasswordHasher.hash, PasswordHasher.verify

    def hash_(self: PasswordHasher, password: str, *args: Any, **kwargs: Any) -> str:
        done.append(("hash", self.time_cost, self.memory_cost))
        return original_hash(self, password, *args, **kwargs)

    def verify(self: PasswordHasher, stored: str, password: str) -> Literal[True]:
        params = extract_parameters(stored)
        done.append(("verify", params.time_cost, params.memory_cost))
        return original_verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "hash", hash_)
    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return done


def test_the_first_failed_login_costs_what_every_other_does(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    argon2_work: list[tuple[str, int, int]],
) -> None:
    # Parameters no other test uses, so no dummy hash for them exists yet.
    hasher = PasswordHasher(time_cost=1, memory_cost=1288, parallelism=1)
    with open_userspace(conninfo=dsn, schema=schema, hasher=hasher) as usp:
        usp.create_user("ada", "pw", "ada@example.com")
        argon2_work.clear()
        answers = [usp.validate_user(name, "wrong") for name in ("nobody", "nobody", "ada")]
        assert answers == [("", False, None)] * 3
        assert argon2_work == [("verify", 1, 1288)] * 3


def test_a_wrong_password_against_a_cheaper_hash_costs_a_current_one(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    argon2_work: list[tuple[str, int, int]],
) -> None:
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.create_user("ada", "pw", "ada@example.com")
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with open_userspace(conninfo=dsn, schema=schema, hasher=stronger) as usp:
        argon2_work.clear()
        assert usp.validate_user("ada", "wrong") == ("", False, None)
        assert ("verify", 2, 2048) in argon2_work
        argon2_work.clear()
        assert usp.validate_user("nobody", "wrong") == ("", False, None)
        assert argon2_work == [("verify", 2, 2048)]
