"""Bad arguments get a clear BadCallError and leave the database as it was."""

from typing import Any

import psycopg
import pytest

from pgusers import BadCallError

from .support import only, snapshot


@pytest.fixture
def populated(usp: Any) -> int:
    uid = usp.create_user("ada", "s3cret", "ada@example.com", extra_data=[1])
    usp.validate_user("ada", "s3cret")
    return int(uid)


BAD_CALLS = {
    "username not str": lambda u: u.create_user(5, "pw", "x@example.com"),
    "username empty": lambda u: u.create_user("", "pw", "x@example.com"),
    "username NUL": lambda u: u.create_user("a\x00b", "pw", "x@example.com"),
    "username too long": lambda u: u.create_user("a" * 151, "pw", "x@example.com"),
    "username padded": lambda u: u.create_user(" ada2", "pw", "x@example.com"),
    "username control": lambda u: u.create_user("a\nb", "pw", "x@example.com"),
    "username surrogate": lambda u: u.create_user("a\udc80", "pw", "x@example.com"),
    "password empty": lambda u: u.create_user("new", "", "x@example.com"),
    "password bytes": lambda u: u.create_user("new", b"pw", "x@example.com"),
    "password NUL": lambda u: u.create_user("new", "p\x00w", "x@example.com"),
    "password huge": lambda u: u.create_user("new", "p" * 100_000, "x@example.com"),
    "email malformed": lambda u: u.create_user("new", "pw", "not-an-email"),
    "email two at": lambda u: u.create_user("new", "pw", "a@b@example.com"),
    "email space": lambda u: u.create_user("new", "pw", "a b@example.com"),
    "email empty domain label": lambda u: u.create_user("new", "pw", "a@example..com"),
    "email too long": lambda u: u.create_user("new", "pw", "a" * 250 + "@example.com"),
    "admin not bool": lambda u: u.create_user("new", "pw", "x@example.com", admin="yes"),
    "validate username None": lambda u: u.validate_user(None, "pw"),
    "validate password int": lambda u: u.validate_user("ada", 1234),
    "validate bad extra": lambda u: u.validate_user("ada", "s3cret", extra_data=object()),
    "delete nothing given": lambda u: u.delete_user(),
    "delete userid str": lambda u: u.delete_user(userid="1"),
    "delete userid bool": lambda u: u.delete_user(userid=True),
    "delete userid negative": lambda u: u.delete_user(userid=-1),
    "delete userid too big": lambda u: u.delete_user(userid=2**63),
    "change password no userid": lambda u: u.change_password(None, "new"),
    "change password empty": lambda u: u.change_password(1, ""),
    "change password old not str": lambda u: u.change_password(1, "new", 5),
    "change password end not bool": lambda u: u.change_password(1, "new", end_sessions=1),
    "check key int": lambda u: u.check_key(12),
    "check key None": lambda u: u.check_key(None),
    "ttl zero": lambda u: u.set_session_TTL(0),
    "ttl negative": lambda u: u.set_session_TTL(-5),
    "ttl nan": lambda u: u.set_session_TTL(float("nan")),
    "ttl inf": lambda u: u.set_session_TTL(float("inf")),
    "ttl str": lambda u: u.set_session_TTL("60"),
    "ttl bool": lambda u: u.set_session_TTL(True),
    "ttl huge int": lambda u: u.set_session_TTL(10**400),
    "find nothing given": lambda u: u.find_user(),
    "find email malformed": lambda u: u.find_user(email="nope"),
    "find userid float": lambda u: u.find_user(userid=1.0),
    "modify userid None": lambda u: u.modify_user(None, email="x@example.com"),
    "modify bad email": lambda u: u.modify_user(1, email="bad"),
    "modify empty username": lambda u: u.modify_user(1, username=""),
    "modify bad extra": lambda u: u.modify_user(1, extra_data={1j}),
    "is_admin str": lambda u: u.is_admin("1"),
    "set_admin not bool": lambda u: u.set_admin(1, admin=0),
    "list uid negative": lambda u: u.list_sessions(-1),
    "list expired not bool": lambda u: u.list_sessions(0, expired="yes"),
    "kill uid str": lambda u: u.kill_sessions("all"),
    "kill expired not bool": lambda u: u.kill_sessions(0, expired=None),
    "end_session int": lambda u: u.end_session(5),
    "end_session empty": lambda u: u.end_session(""),
    "end_other_sessions bytes": lambda u: u.end_other_sessions(b"key"),
    "max age zero": lambda u: u.set_session_max_age(0),
    "max age str": lambda u: u.set_session_max_age("1h"),
    "key storage unknown": lambda u: u.set_session_key_storage("encrypted"),
    "key storage progress": lambda u: u.set_session_key_storage("hashed", progress=5),
    "purge_events str": lambda u: u.purge_events("2026-01-01"),
    "purge_events negative": lambda u: u.purge_events(-1),
    "retention negative": lambda u: u.set_event_retention(-1),
    "retention huge": lambda u: u.set_event_retention(10**6),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_raises_and_changes_nothing(
    usp: Any, populated: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, call: Any
) -> None:
    before = snapshot(sql_conn, schema)
    with pytest.raises(BadCallError) as raised:
        call(usp)
    assert str(raised.value)
    assert snapshot(sql_conn, schema) == before


def test_messages_say_what_was_wrong(usp: Any) -> None:
    with pytest.raises(BadCallError, match="username must be a str, not int"):
        usp.create_user(5, "pw", "x@example.com")
    with pytest.raises(
        BadCallError, match="email is not a valid address: An email address must have an @"
    ):
        usp.create_user("ada", "pw", "nope")
    with pytest.raises(BadCallError, match="userid must be a positive int, not -1"):
        usp.is_admin(-1)


def test_messages_never_repeat_a_password(usp: Any) -> None:
    secret = "hunter2\x00"
    with pytest.raises(BadCallError) as raised:
        usp.create_user("ada", secret, "ada@example.com")
    assert "hunter2" not in str(raised.value)


def test_sql_fragments_are_data_not_code(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    name = "x'; DROP TABLE users; --"
    uid = usp.create_user(name, "pw", "robert@example.com")
    assert usp.find_user(username=name)["userid"] == uid
    assert usp.validate_user("' OR '1'='1", "pw") == ("", False, None)
    assert only(sql_conn.execute(f"SELECT count(*) FROM {schema}.users").fetchone()) == 1
