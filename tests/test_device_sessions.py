"""Sessions with public ids: listing them as devices, ending one or all others, an
absolute lifetime, and keys kept only as digests."""

import hashlib
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgusers import EXPIRED, NOT_FOUND, OK, BadCallError, Session
from pgusers._core import sessions

from .support import Clock, only, row_of

DAY = 86400.0


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "s3cret", "ada@example.com"))


@pytest.fixture
def bob(usp: Any) -> int:
    return int(usp.create_user("bob", "hunter2", "bob@example.com"))


def login(usp: Any, name: str = "ada", password: str = "s3cret", **kwargs: Any) -> str:
    outcome = usp.login(name, password, **kwargs)
    assert outcome.status == OK
    return str(outcome.key)


def stored_keys(sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> set[str]:
    return {row[0] for row in sql_conn.execute(f"SELECT key FROM {schema}.sessions")}


# -- listing ------------------------------------------------------------------------


def test_sessions_lists_devices_without_their_keys(usp: Any, ada: int, clock: Clock) -> None:
    first = login(usp, source="192.0.2.1", user_agent="Firefox/140")
    clock.advance(10)
    second = login(usp, source="2001:db8::7", user_agent="curl/8")
    rows = list(usp.sessions(ada, key=second))
    assert all(isinstance(row, Session) for row in rows)
    assert [(r.source, r.user_agent, r.current) for r in rows] == [
        ("192.0.2.1", "Firefox/140", False),
        ("2001:db8::7", "curl/8", True),
    ]
    assert rows[0].created_at == pytest.approx(clock.now - 10)
    assert rows[1].created_at == rows[1].last_seen_at == pytest.approx(clock.now)
    assert rows[1].expires_at == pytest.approx(clock.now + usp.ttl)
    assert {(r.userid, r.username) for r in rows} == {(ada, "ada")}
    for row in rows:
        assert first not in row and second not in row


def test_session_ids_are_short_random_and_unrelated_to_the_key(usp: Any, ada: int) -> None:
    keys = [login(usp) for _ in range(5)]
    ids = [row.session_id for row in usp.sessions(ada)]
    assert len(set(ids)) == 5
    for session_id in ids:
        assert len(session_id) == 16
        assert all(session_id not in key for key in keys)
        assert all(session_id not in hashlib.sha256(key.encode()).hexdigest() for key in keys)


def test_validate_user_leaves_source_and_agent_empty(usp: Any, ada: int) -> None:
    usp.validate_user("ada", "s3cret")
    (row,) = usp.sessions(ada)
    assert (row.source, row.user_agent, row.current) == (None, None, False)


def test_sessions_of_everyone_and_only_expired_ones(
    usp: Any, ada: int, bob: int, clock: Clock
) -> None:
    login(usp)
    clock.advance(DAY)
    login(usp, "bob", "hunter2")
    assert {row.username for row in usp.sessions()} == {"ada", "bob"}
    clock.advance(usp.ttl - DAY / 2)
    assert [row.username for row in usp.sessions(expired=True)] == ["ada"]
    assert [row.username for row in usp.sessions(bob)] == ["bob"]


def test_last_seen_moves_with_the_expiry_slide(usp: Any, ada: int, clock: Clock) -> None:
    key = login(usp)
    clock.advance(3600)
    assert usp.check_key(key).status == OK
    (row,) = usp.sessions(ada)
    assert row.last_seen_at == pytest.approx(clock.now)
    assert row.created_at == pytest.approx(clock.now - 3600)
    assert row.expires_at == pytest.approx(clock.now + usp.ttl)


def test_sessions_refuses_bad_arguments(usp: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: usp.sessions("1"),
        lambda: usp.sessions(-1),
        lambda: usp.sessions(0, expired=1),
        lambda: usp.sessions(0, key=b"k"),
    ]
    for call in calls:
        with pytest.raises(BadCallError):
            list(call())


# -- ending one, or all others --------------------------------------------------------


def test_end_session_ends_that_session_only(usp: Any, ada: int) -> None:
    keep, end = login(usp), login(usp)
    target = next(row.session_id for row in usp.sessions(ada, key=end) if row.current)
    assert usp.end_session(target) == 1
    assert usp.check_key(end).status == NOT_FOUND
    assert usp.check_key(keep).status == OK
    assert usp.end_session(target) == 0


def test_end_session_of_an_unknown_or_malformed_id_is_zero(usp: Any, ada: int) -> None:
    login(usp)
    assert usp.end_session("A" * 16) == 0
    assert usp.end_session("not an id; DROP TABLE") == 0
    assert len(list(usp.sessions(ada))) == 1
    for bad in (None, 7, "", "x" * 1000, "a\x00b"):
        with pytest.raises(BadCallError):
            usp.end_session(bad)


def test_logging_out_by_key_ends_that_session_only(
    usp: Any, ada: int, bob: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    # What the HTTP service and the framework integrations call to log out.
    keep, end, bobs = login(usp), login(usp), login(usp, "bob", "hunter2")
    assert usp.logout(end) == 1
    assert usp.check_key(end).status == NOT_FOUND
    assert [usp.check_key(key).status for key in (keep, bobs)] == [OK, OK]
    assert usp.logout(end) == 0
    (kind, userid, detail) = row_of(
        sql_conn.execute(
            f"SELECT kind, userid, detail FROM {schema}.events ORDER BY id DESC LIMIT 1"
        ).fetchone()
    )
    assert (kind, userid, detail) == ("session.ended", ada, {"how": "end_session", "count": 1})


def test_logging_out_by_key_leaves_what_is_not_a_live_session(
    usp: Any, ada: int, clock: Clock
) -> None:
    live = login(usp)
    for not_live in ("B" * 43, "not a key", "\ud800", "0" * 32):
        assert usp.logout(not_live) == 0
    with pytest.raises(BadCallError):
        usp.logout(None)
    old = login(usp)
    clock.advance(usp.ttl + 1)
    assert usp.logout(old) == 0  # an expired session is check_key's to remove
    assert usp.check_key(old).status == EXPIRED
    clock.advance(-usp.ttl - 1)
    usp.disable_user(ada)  # a disabled user's sessions are not live
    assert usp.logout(live) == 0


def test_end_other_sessions_keeps_exactly_the_current_one(usp: Any, ada: int, bob: int) -> None:
    others = [login(usp) for _ in range(3)]
    current = login(usp)
    bobs = login(usp, "bob", "hunter2")
    assert usp.end_other_sessions(current) == 3
    assert [usp.check_key(key).status for key in others] == [NOT_FOUND] * 3
    assert usp.check_key(current).status == OK
    assert usp.check_key(bobs).status == OK
    assert [row.current for row in usp.sessions(ada, key=current)] == [True]
    # A later login works as usual, and the kept session survives it.
    later = login(usp)
    assert usp.check_key(later).status == OK
    assert usp.check_key(current).status == OK


def test_end_other_sessions_with_a_key_that_is_not_live_ends_nothing(
    usp: Any, ada: int, clock: Clock
) -> None:
    live = login(usp)
    assert usp.end_other_sessions("B" * 43) == 0
    assert usp.end_other_sessions("not a key") == 0
    old = login(usp)
    clock.advance(usp.ttl + 1)
    assert usp.end_other_sessions(old) == 0
    with pytest.raises(BadCallError):
        usp.end_other_sessions(None)
    clock.advance(-usp.ttl - 1)
    assert usp.check_key(live).status == OK


# -- maximum age --------------------------------------------------------------------


def test_a_session_ends_at_its_maximum_age_however_often_it_is_used(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_session_max_age(3600)
    key = login(usp)
    for _ in range(5):
        clock.advance(600)
        assert usp.check_key(key).status == OK
    (row,) = usp.sessions(ada)
    assert row.expires_at == pytest.approx(row.created_at + 3600)
    clock.advance(601)
    assert usp.check_key(key).status == EXPIRED
    assert usp.check_key(key).status == NOT_FOUND


def test_a_maximum_age_applies_to_sessions_opened_before_it(
    usp: Any, ada: int, clock: Clock
) -> None:
    key = login(usp)
    clock.advance(7200)
    assert usp.check_key(key).status == OK
    usp.set_session_max_age(3600)
    assert [row.username for row in usp.sessions(expired=True)] == ["ada"]
    assert usp.check_key(key).status == EXPIRED


def test_expired_purge_includes_sessions_past_the_maximum_age(
    usp: Any, ada: int, clock: Clock
) -> None:
    old = login(usp)
    clock.advance(7200)
    young = login(usp)
    usp.set_session_max_age(3600)
    assert usp.kill_sessions(0, expired=True) == 1
    assert usp.check_key(young).status == OK
    assert usp.check_key(old).status == NOT_FOUND


def test_no_maximum_age_again_with_none(usp: Any, ada: int, clock: Clock) -> None:
    usp.set_session_max_age(60)
    usp.set_session_max_age(None)
    key = login(usp)
    clock.advance(3600)
    assert usp.check_key(key).status == OK


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "60", True, 10**20])
def test_set_session_max_age_refuses_bad_values(usp: Any, bad: Any) -> None:
    with pytest.raises(BadCallError):
        usp.set_session_max_age(bad)


# -- keys kept hashed ----------------------------------------------------------------


def digest_of(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def test_hashed_storage_keeps_only_digests_and_every_key_works(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    before = [login(usp) for _ in range(3)]
    seen: list[int] = []
    assert usp.set_session_key_storage("hashed", progress=seen.append) == 3
    assert seen == [3]
    after = login(usp)
    keys = [*before, after]
    assert stored_keys(sql_conn, schema) == {digest_of(key) for key in keys}
    assert [usp.check_key(key).status for key in keys] == [OK] * 4
    # The stored digest is no key.
    assert usp.check_key(digest_of(after)).status == NOT_FOUND


def test_hashed_storage_lists_session_ids_where_keys_were(usp: Any, ada: int) -> None:
    key = login(usp)
    usp.set_session_key_storage("hashed")
    ((username, listed, _),) = usp.list_sessions(ada)
    (row,) = usp.sessions(ada, key=key)
    assert (username, listed, row.current) == ("ada", row.session_id, True)
    assert usp.end_session(listed) == 1
    assert usp.check_key(key).status == NOT_FOUND


def test_hashed_storage_ends_sessions_as_before(usp: Any, ada: int, bob: int) -> None:
    usp.set_session_key_storage("hashed")
    current, other = login(usp), login(usp)
    bobs = login(usp, "bob", "hunter2")
    assert usp.end_other_sessions(current) == 1
    assert usp.check_key(other).status == NOT_FOUND
    assert usp.kill_sessions(ada) == 1
    assert usp.check_key(current).status == NOT_FOUND
    assert usp.check_key(bobs).status == OK


def test_hashed_storage_is_one_way_and_repeatable(usp: Any, ada: int) -> None:
    assert usp.set_session_key_storage("plain") == 0
    login(usp)
    assert usp.set_session_key_storage("hashed") == 1
    assert usp.set_session_key_storage("hashed") == 0
    with pytest.raises(BadCallError, match="cannot be undone"):
        usp.set_session_key_storage("plain")
    for bad in ("HASHED", None, 1):
        with pytest.raises(BadCallError):
            usp.set_session_key_storage(bad)
    with pytest.raises(BadCallError):
        usp.set_session_key_storage("hashed", progress="print")


def test_conversion_under_sixteen_checking_threads_loses_nothing(
    usp: Any,
    api: str,
    ada: int,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys are converted in small batches while sixteen threads check them and new
    logins arrive: no check answers anything but OK, and every key ends up hashed."""
    monkeypatch.setattr(sessions, "CONVERT_BATCH", 50)
    usp.set_sessions_per_user(None)  # 1,500 sessions of one user, and logins on top
    keys = [login(usp) for _ in range(20)]
    userid = only(sql_conn.execute(f"SELECT userid FROM {schema}.users").fetchone())
    bulk = [f"{i:043d}" for i in range(1500)]
    with (
        sql_conn.cursor() as cursor,
        cursor.copy(
            f"COPY {schema}.sessions (key, userid, expires_at, generation) FROM STDIN"
        ) as copy,
    ):
        for key in bulk:
            copy.write_row((key, userid, "2999-01-01T00:00:00Z", 0))
    keys += bulk
    wrong = []
    done = threading.Event()

    def check(seed: int) -> None:
        chooser = random.Random(seed)
        while not done.is_set():
            key = chooser.choice(keys)
            result = usp.check_key(key)
            if result.status != OK or result.userid != userid:
                wrong.append((key, result))

    threads = [threading.Thread(target=check, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    try:
        converted = usp.set_session_key_storage("hashed")
        keys.append(login(usp))
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert wrong == []
    assert converted == len(keys) - 1
    assert stored_keys(sql_conn, schema) == {digest_of(key) for key in keys}
    assert all(usp.check_key(key).status == OK for key in keys[::50])
