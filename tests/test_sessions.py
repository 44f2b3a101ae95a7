"""Logins, session keys, sliding expiry, the TTL, listing and ending sessions."""

import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

import psycopg
import pytest
from argon2 import PasswordHasher

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK, REJECTED
from pgusers._core.keys import looks_like_session_key

from .support import Clock, only

DAY = 86400.0


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "s3cret", "ada@example.com"))


def test_validate_user_returns_a_key_the_admin_flag_and_the_userid(usp: Any, ada: int) -> None:
    key, admin, userid = usp.validate_user("ada", "s3cret")
    assert looks_like_session_key(key)
    assert (admin, userid) == (False, ada)


def test_validate_user_is_case_insensitive_on_the_username(usp: Any, ada: int) -> None:
    assert usp.validate_user("ADA", "s3cret")[2] == ada


def test_validate_user_reports_admins(usp: Any) -> None:
    uid = usp.create_user("root", "pw", "root@example.com", admin=True)
    assert usp.validate_user("root", "pw")[1:] == (True, uid)


def test_wrong_password_and_unknown_user_give_the_same_answer(usp: Any, ada: int) -> None:
    assert usp.validate_user("ada", "wrong") == ("", False, None)
    assert usp.validate_user("nobody", "s3cret") == ("", False, None)
    assert list(usp.list_sessions(0)) == []


def test_each_login_gets_a_new_unpredictable_key(usp: Any, ada: int) -> None:
    keys = {usp.validate_user("ada", "s3cret")[0] for _ in range(20)}
    assert len(keys) == 20


def test_check_key_returns_the_user_and_the_session_extra_data(usp: Any, ada: int) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret", extra_data={"ip": "10.0.0.1"})
    assert usp.check_key(key) == (OK, "ada", ada, {"ip": "10.0.0.1"})


def test_check_key_of_unknown_or_malformed_key_is_not_found(usp: Any) -> None:
    assert usp.check_key("A" * 43) == (NOT_FOUND, None, None, None)
    assert usp.check_key("not a key") == (NOT_FOUND, None, None, None)
    assert usp.check_key("") == (NOT_FOUND, None, None, None)


def test_session_expires_after_the_ttl_and_is_removed(usp: Any, ada: int, clock: Clock) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    clock.advance(10 * DAY + 1)
    assert usp.check_key(key) == (EXPIRED, None, None, None)
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)
    assert list(usp.list_sessions(0)) == []


def test_session_is_alive_just_before_its_expiry(usp: Any, ada: int, clock: Clock) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    clock.advance(10 * DAY - 1)
    assert usp.check_key(key)[0] == OK


def test_check_key_slides_the_expiry(usp: Any, ada: int, clock: Clock) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    for _ in range(3):
        clock.advance(6 * DAY)
        assert usp.check_key(key)[0] == OK
    [(_, _, expiration)] = usp.list_sessions(ada)
    assert expiration == pytest.approx(clock.now + 10 * DAY, abs=0.01)


def test_check_key_skips_the_write_when_the_expiry_moved_within_a_minute(
    usp: Any, ada: int, clock: Clock
) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    [(_, _, first)] = usp.list_sessions(ada)
    clock.advance(30)
    assert usp.check_key(key)[0] == OK
    assert next(usp.list_sessions(ada))[2] == first
    clock.advance(31)
    assert usp.check_key(key)[0] == OK
    assert next(usp.list_sessions(ada))[2] == pytest.approx(clock.now + 10 * DAY, abs=0.01)


def test_default_ttl_is_ten_days(usp: Any) -> None:
    assert usp.ttl == 864000.0


def test_set_session_ttl_applies_to_new_and_checked_sessions(
    usp: Any, ada: int, clock: Clock
) -> None:
    old_key, _, _ = usp.validate_user("ada", "s3cret")
    usp.set_session_TTL(3600)
    assert usp.ttl == 3600.0
    new_key, _, _ = usp.validate_user("ada", "s3cret")
    clock.advance(3599)
    assert usp.check_key(old_key)[0] == OK  # slid to the new TTL
    assert usp.check_key(new_key)[0] == OK
    clock.advance(3601)
    assert usp.check_key(old_key)[0] == EXPIRED
    assert usp.check_key(new_key)[0] == EXPIRED


def test_ttl_is_kept_in_the_database(
    open_userspace: Callable[..., Any], usp: Any, dsn: str, schema: str
) -> None:

    usp.set_session_TTL(120.5)
    usp.close()
    with open_userspace(conninfo=dsn, schema=schema) as reopened:
        assert reopened.ttl == 120.5


def test_list_sessions_yields_username_key_and_float_expiration(
    usp: Any, ada: int, clock: Clock
) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    [(username, listed_key, expiration)] = usp.list_sessions(ada)
    assert (username, listed_key) == ("ada", key)
    assert isinstance(expiration, float)
    assert expiration == pytest.approx(clock.now + 10 * DAY, abs=1e-3)
    assert expiration != int(expiration)  # sub-second precision


def test_list_sessions_of_one_user_or_of_all(usp: Any, ada: int) -> None:
    bob = usp.create_user("bob", "pw", "bob@example.com")
    a1 = usp.validate_user("ada", "s3cret")[0]
    b1 = usp.validate_user("bob", "pw")[0]
    assert [row[1] for row in usp.list_sessions(ada)] == [a1]
    assert [row[1] for row in usp.list_sessions(bob)] == [b1]
    assert {row[1] for row in usp.list_sessions(0)} == {a1, b1}


def test_list_sessions_expired_only(usp: Any, ada: int, clock: Clock) -> None:
    old = usp.validate_user("ada", "s3cret")[0]
    clock.advance(5 * DAY)
    new = usp.validate_user("ada", "s3cret")[0]
    clock.advance(5 * DAY + 1)
    assert [row[1] for row in usp.list_sessions(0, expired=True)] == [old]
    assert {row[1] for row in usp.list_sessions(ada)} == {old, new}


def test_kill_sessions_of_one_user(usp: Any, ada: int) -> None:
    bob = usp.create_user("bob", "pw", "bob@example.com")
    a1 = usp.validate_user("ada", "s3cret")[0]
    a2 = usp.validate_user("ada", "s3cret")[0]
    b1 = usp.validate_user("bob", "pw")[0]
    assert usp.kill_sessions(ada) == 2
    assert usp.check_key(a1)[0] == NOT_FOUND
    assert usp.check_key(a2)[0] == NOT_FOUND
    assert usp.check_key(b1) == (OK, "bob", bob, None)


def test_kill_all_sessions(usp: Any, ada: int) -> None:
    usp.create_user("bob", "pw", "bob@example.com")
    usp.validate_user("ada", "s3cret")
    usp.validate_user("bob", "pw")
    assert usp.kill_sessions(0) == 2
    assert list(usp.list_sessions(0)) == []


def test_kill_expired_sessions_keeps_live_ones(usp: Any, ada: int, clock: Clock) -> None:
    old = usp.validate_user("ada", "s3cret")[0]
    clock.advance(5 * DAY)
    new = usp.validate_user("ada", "s3cret")[0]
    clock.advance(5 * DAY + 1)
    assert usp.kill_sessions(0, expired=True) == 1
    assert [row[1] for row in usp.list_sessions(0)] == [new]
    assert usp.check_key(old)[0] == NOT_FOUND


def test_kill_sessions_works_in_batches_past_the_batch_size(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    from pgusers._core import sessions

    count = sessions.KILL_BATCH * 2 + 17
    sql_conn.execute(
        f"""INSERT INTO {schema}.sessions (key, userid, expires_at)
        SELECT md5(i::text), %s, now() + interval '1 day' FROM generate_series(1, %s) i""",
        (ada, count),
    )
    assert usp.kill_sessions(0) == count
    assert list(usp.list_sessions(0)) == []


def test_kill_sessions_of_unknown_user_kills_nothing(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret")[0]
    assert usp.kill_sessions(999) == 0
    assert usp.check_key(key)[0] == OK


def test_change_password_unconditionally(usp: Any, ada: int) -> None:
    assert usp.change_password(ada, "n3w") == OK
    assert usp.validate_user("ada", "s3cret") == ("", False, None)
    assert usp.validate_user("ada", "n3w")[2] == ada


def test_change_password_with_the_right_old_password(usp: Any, ada: int) -> None:
    assert usp.change_password(ada, "n3w", "s3cret") == OK
    assert usp.validate_user("ada", "n3w")[2] == ada


def test_change_password_with_a_wrong_old_password_is_rejected(usp: Any, ada: int) -> None:
    assert usp.change_password(ada, "n3w", "guess") == REJECTED
    assert usp.validate_user("ada", "s3cret")[2] == ada


def test_change_password_of_unknown_user(usp: Any) -> None:
    assert usp.change_password(77, "n3w") == NOT_FOUND
    assert usp.change_password(77, "n3w", "old") == NOT_FOUND


def test_change_password_keeps_sessions_unless_asked(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret")[0]
    usp.change_password(ada, "n3w")
    assert usp.check_key(key)[0] == OK
    usp.change_password(ada, "n3w3r", end_sessions=True)
    assert usp.check_key(key)[0] == NOT_FOUND


def test_rejected_change_does_not_end_sessions(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret")[0]
    assert usp.change_password(ada, "n3w", "guess", end_sessions=True) == REJECTED
    assert usp.check_key(key)[0] == OK


def test_login_of_a_user_deleted_meanwhile_fails_cleanly(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    # The user disappears between the lookup and the session insert.
    core = usp._core
    operation = core.validate_user("ada", "s3cret", None)
    lookup = next(operation)
    row = sql_conn.execute(lookup.query, lookup.params).fetchone()
    verify_step = operation.send(row)
    insert = operation.send(verify_step.func(*verify_step.args))
    usp.delete_user(userid=ada)
    import psycopg

    with pytest.raises(StopIteration) as stop:
        try:
            opened = sql_conn.execute(insert.query, insert.params).fetchone()
        except psycopg.Error as error:
            operation.throw(error)
        operation.send(opened)
    assert stop.value.value == ("", False, None)


# -- a login racing a change ---------------------------------------------------------


class GatedHasher(PasswordHasher):
    """Real Argon2id whose verify() waits, once opened, until the test lets it go on:
    a login can then be held between reading the hash and opening the session."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifying = threading.Event()
        self.proceed = threading.Event()
        self.proceed.set()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifying.set()
        assert self.proceed.wait(30)
        return super().verify(hash, password)

    def hold(self) -> None:
        self.verifying.clear()
        self.proceed.clear()


RACING_CHANGES = {
    "password changed, sessions ended": lambda u, uid: u.change_password(
        uid, "new", end_sessions=True
    ),
    "password changed": lambda u, uid: u.change_password(uid, "new"),
    "the user's sessions killed": lambda u, uid: u.kill_sessions(uid),
    "every session killed": lambda u, uid: u.kill_sessions(0),
    "user deleted": lambda u, uid: u.delete_user(userid=uid),
    "user disabled": lambda u, uid: u.disable_user(uid),
}


@pytest.fixture
def gated(open_userspace: Callable[..., Any], dsn: str, schema: str) -> Iterator[tuple[Any, Any]]:
    hasher = GatedHasher()
    space = open_userspace(conninfo=dsn, schema=schema, hasher=hasher)
    yield space, hasher
    hasher.proceed.set()
    space.close()


def login_held_during(
    space: pgusers.UserSpace, hasher: GatedHasher, change: Callable[[], object]
) -> pgusers.LoginResult:
    """Start a login, run ``change`` while its password is being verified, then let
    the login finish; return what the login returned."""
    hasher.hold()
    result: list[pgusers.LoginResult] = []
    login = threading.Thread(target=lambda: result.append(space.validate_user("root", "pw")))
    login.start()
    assert hasher.verifying.wait(30)
    change()
    hasher.proceed.set()
    login.join()
    return result[0]


@pytest.mark.parametrize("change", RACING_CHANGES.values(), ids=RACING_CHANGES.keys())
def test_a_login_racing_a_change_opens_no_session(gated: tuple[Any, Any], change: Any) -> None:
    space, _ = gated
    hasher = gated[1]
    uid = space.create_user("root", "pw", "root@example.com", admin=True)
    assert login_held_during(space, hasher, lambda: change(space, uid)) == ("", False, None)
    assert list(space.list_sessions(0)) == []


def test_a_login_racing_a_revocation_reports_the_admin_flag_as_it_is_now(
    gated: tuple[Any, Any],
) -> None:
    space, hasher = gated
    uid = space.create_user("root", "pw", "root@example.com", admin=True)
    key, admin, userid = login_held_during(space, hasher, lambda: space.set_admin(uid, False))
    assert (bool(key), admin, userid) == (True, False, uid)


def test_a_session_committed_while_its_sessions_were_ended_is_not_accepted(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    # The race inside the window of one statement: the login's insert is not yet
    # committed when kill_sessions runs, so kill_sessions cannot see it to delete it.
    operation = usp._core.validate_user("ada", "s3cret", None)
    lookup = next(operation)
    verify = operation.send(sql_conn.execute(lookup.query, lookup.params).fetchone())
    insert = operation.send(verify.func(*verify.args))
    with sql_conn.transaction():
        opened = sql_conn.execute(insert.query, insert.params).fetchone()
        assert usp.kill_sessions(ada) == 0
    with pytest.raises(StopIteration) as stop:
        operation.send(opened)
    key = stop.value.value[0]
    assert list(usp.list_sessions(0)) == []  # the row is there, but not listed
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)
    assert list(usp.list_sessions(0)) == []


# -- check_key takes any string ----------------------------------------------------

ODD_KEYS = {
    "long": "A" * 10_000,
    "NUL": "\x00" * 43,
    "NUL inside": "A" * 20 + "\x00" + "A" * 22,
    "surrogate": "\udc80" * 43,
    "control": "\x1b[2J",
    "empty": "",
}


@pytest.mark.parametrize("key", ODD_KEYS.values(), ids=ODD_KEYS.keys())
def test_check_key_answers_any_string_that_is_no_key_with_not_found(
    usp: Any, ada: int, key: Any
) -> None:
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)


@pytest.mark.parametrize(
    "key", [*ODD_KEYS.values(), "\ud800", "\ud800" * 32], ids=[*ODD_KEYS.keys(), "lone", "32"]
)
def test_calls_taking_a_key_answer_any_string_that_is_no_key_without_harm(
    usp: Any, ada: int, key: Any
) -> None:
    live, _, _ = usp.validate_user("ada", "s3cret")
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)
    assert usp.end_other_sessions(key) == 0
    assert [s.current for s in usp.sessions(key=key)] == [False]
    assert usp.check_key(live)[0] == OK


# -- set_session_data ---------------------------------------------------------------


def test_set_session_data_replaces_what_check_key_returns(usp: Any, ada: int) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret", {"cart": []})
    assert usp.set_session_data(key, {"cart": ["tea"], "flash": "added"}) == OK
    assert usp.check_key(key).extra_data == {"cart": ["tea"], "flash": "added"}
    assert usp.set_session_data(key, None) == OK
    assert usp.check_key(key).extra_data is None


def test_set_session_data_touches_only_that_session(usp: Any, ada: int) -> None:
    first, _, _ = usp.validate_user("ada", "s3cret", "one")
    second, _, _ = usp.validate_user("ada", "s3cret", "two")
    usp.set_session_data(first, "changed")
    assert usp.check_key(second).extra_data == "two"


def test_set_session_data_of_an_expired_session_is_expired_and_writes_nothing(
    usp: Any, ada: int, clock: Clock
) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret", "kept")
    clock.advance(usp.ttl + 1)
    assert usp.set_session_data(key, "late") == EXPIRED
    assert usp.check_key(key).status == EXPIRED


def test_set_session_data_of_an_ended_or_unknown_session_is_not_found(usp: Any, ada: int) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    usp.kill_sessions(ada)
    assert usp.set_session_data(key, 1) == NOT_FOUND
    assert usp.set_session_data("A" * 43, 1) == NOT_FOUND
    assert usp.set_session_data("\ud800", 1) == NOT_FOUND


def test_set_session_data_does_not_move_the_expiry(usp: Any, ada: int, clock: Clock) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    (before,) = usp.sessions(ada)
    clock.advance(3600)
    usp.set_session_data(key, "x")
    (after,) = usp.sessions(ada)
    assert after.expires_at == before.expires_at


def test_set_session_data_refuses_what_the_codec_cannot_store(usp: Any, ada: int) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret", "kept")
    with pytest.raises(pgusers.BadCallError):
        usp.set_session_data(key, object())
    assert usp.check_key(key).extra_data == "kept"


def test_set_session_data_works_once_keys_are_stored_hashed(usp: Any, ada: int) -> None:
    key, _, _ = usp.validate_user("ada", "s3cret")
    usp.set_session_key_storage("hashed")
    assert usp.set_session_data(key, [1, 2]) == OK
    assert usp.check_key(key).extra_data == [1, 2]


def test_a_login_past_the_per_user_cap_ends_the_oldest_sessions(usp: Any, clock: Clock) -> None:
    usp.create_user("ada", "s3cret", "ada@example.com")
    usp.set_sessions_per_user(3)
    keys = []
    for _ in range(5):
        keys.append(usp.validate_user("ada", "s3cret")[0])
        clock.advance(1)
    assert [usp.check_key(key)[0] for key in keys] == [
        pgusers.NOT_FOUND,
        pgusers.NOT_FOUND,
        pgusers.OK,
        pgusers.OK,
        pgusers.OK,
    ]
    ended = [e for e in usp.events(kinds="session.ended") if e.detail["how"] == "sessions_per_user"]
    assert [e.detail["count"] for e in ended] == [1, 1]


def test_sessions_per_user_defaults_to_100_and_none_lifts_it(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    usp.create_user("ada", "s3cret", "ada@example.com")
    limit = only(sql_conn.execute(f"SELECT sessions_per_user FROM {schema}.settings").fetchone())
    assert limit == 100
    usp.set_sessions_per_user(None)
    for _ in range(3):
        usp.validate_user("ada", "s3cret")
    assert len(list(usp.list_sessions(usp.find_user("ada")["userid"]))) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, 100_001])
def test_set_sessions_per_user_refuses_bad_values(usp: Any, bad: Any) -> None:
    with pytest.raises(pgusers.BadCallError):
        usp.set_sessions_per_user(bad)


def test_settings_reads_back_what_the_setters_stored(usp: Any) -> None:
    usp.set_session_TTL(900)
    usp.set_session_max_age(86400)
    usp.set_sessions_per_user(5)
    usp.set_login_policy(free_failures=3)
    settings = usp.settings()
    assert isinstance(settings, pgusers.Settings)
    assert (settings.session_ttl, settings.session_max_age, settings.sessions_per_user) == (
        900,
        86400,
        5,
    )
    assert (settings.free_failures, settings.key_storage) == (3, "plain")
    usp.set_session_max_age(None)
    assert usp.settings().session_max_age is None
