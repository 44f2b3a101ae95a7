"""The session cache (``session_cache=True``): answers from memory only while they
cannot be wrong, and every way of ending or changing a session, from this process or
another, seen."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK
from pgusers._core import users
from pgusers._core.base import LOGS
from pgusers._core.sql import render
from pgusers._drivers import driver_async, driver_sync, shared

from .support import FAST_HASHER, Clock, only

PEER = Path(__file__).resolve().parent / "cache_peer.py"
DEADLINE = 10.0
"""Seconds a test waits at most for another process's change to arrive (it comes in
milliseconds; the bound only keeps a broken build from hanging)."""


@pytest.fixture
def cached(dsn: str, schema: str) -> Iterator[pgusers.UserSpace]:
    if os.environ.get("PGUSERS_TEST_PGBOUNCER"):
        pytest.skip("LISTEN needs the server itself: see the PgBouncer test")
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, session_cache=True)
    yield usp
    usp.close()


class Peer:
    """Another process with the same userspace, driven line by line."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PEER), dsn, schema],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.commands, self.answers = self.process.stdin, self.process.stdout
        assert json.loads(self.answers.readline()) == {"ready": True}

    def __call__(self, call: str, *args: Any, **kwargs: Any) -> Any:
        self.commands.write(json.dumps({"call": call, "args": args, "kwargs": kwargs}) + "\n")
        self.commands.flush()
        answer = json.loads(self.answers.readline())
        assert "error" not in answer, answer
        return answer["result"]

    def close(self) -> None:
        self.commands.close()
        self.process.wait(30)
        self.answers.close()


@pytest.fixture
def peer(cached: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[Peer]:
    other = Peer(dsn, schema)
    yield other
    other.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements pgusers sends from now on, in this process."""
    sent = []
    real_fetch = shared.fetch

    def counting(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return real_fetch(cursor, fetch)

    monkeypatch.setattr(driver_sync, "fetch", counting)
    return sent


@pytest.fixture
def ada(cached: pgusers.UserSpace) -> int:
    return cached.create_user("ada", "s3cret", "ada@example.com")


def warm(usp: Any, key: str, *, session: bool = False) -> Any:
    """Check a key until its answer comes from memory; return that answer. The
    notification of this process's own last change may still be on its way: until
    the listener has read it, the cache rightly keeps nothing. With ``session``,
    through check_session, whose answers the cache keeps with the roles."""
    check = usp.check_session if session else usp.check_key
    kept = usp._core.cached_session if session else usp._core.cached
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = check(key)
        if kept(key) == answer or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    assert kept(key) == answer
    return answer


def eventually(check: Callable[[], object], expected: object) -> object:
    deadline = time.monotonic() + DEADLINE
    while (answer := check()) != expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return answer


def test_a_recent_answer_comes_from_memory(
    cached: pgusers.UserSpace, ada: int, statements: list[str]
) -> None:
    key = cached.login("ada", "s3cret", extra_data={"cart": []}).key
    first = cached.check_key(key)
    statements.clear()
    assert cached.check_key(key) == first == (OK, "ada", ada, {"cart": []})
    assert statements == []


def test_the_session_data_served_is_a_copy(cached: pgusers.UserSpace, ada: int) -> None:
    key = cached.login("ada", "s3cret", extra_data={"cart": []}).key
    warm(cached, key).extra_data["cart"].append("changed by the caller")
    assert cached.check_key(key).extra_data == {"cart": []}


def test_the_cache_is_off_by_default(space: pgusers.UserSpace, statements: list[str]) -> None:
    space.create_user("ada", "s3cret", "ada@example.com")
    key = space.validate_user("ada", "s3cret")[0]
    space.check_key(key)
    statements.clear()
    space.check_key(key)
    assert len(statements) == 1


def test_the_backstop_bounds_an_answers_age(
    cached: pgusers.UserSpace, ada: int, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    cache = cached._core.cache
    assert cache is not None
    later = time.monotonic() + cache.backstop
    monkeypatch.setattr(time, "monotonic", lambda: later)
    statements.clear()
    assert cached.check_key(key).status == OK
    assert len(statements) == 1


def test_the_expiry_still_slides(
    cached: pgusers.UserSpace, ada: int, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    (before,) = cached.sessions(ada)
    clock.advance(120)  # past the no-write window (60 s at the default TTL)
    statements.clear()
    assert cached.check_key(key).status == OK
    assert len(statements) == 1
    (after,) = cached.sessions(ada)
    assert after.expires_at == pytest.approx(before.expires_at + 120, abs=1)


def test_an_expired_session_is_never_served(
    cached: pgusers.UserSpace, ada: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    clock.advance(cached.ttl + 1)
    assert cached.check_key(key).status == EXPIRED


def test_changes_made_by_this_process_are_seen_at_once(cached: pgusers.UserSpace, ada: int) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    cached.set_session_data(key, "new")
    assert cached.check_key(key).extra_data == "new"
    warm(cached, key)
    cached.kill_sessions(ada)
    assert cached.check_key(key).status == NOT_FOUND


ENDINGS = {
    "kill_sessions of the user": lambda peer, ids: peer("kill_sessions", ids["ada"]),
    "kill_sessions of everyone": lambda peer, ids: peer("kill_sessions", 0),
    "end_session": lambda peer, ids: peer("end_session", ids["session"]),
    "end_other_sessions": lambda peer, ids: peer("end_other_sessions", ids["other_key"]),
    "delete_user": lambda peer, ids: peer("delete_user", userid=ids["ada"]),
    "change_password, ending sessions": lambda peer, ids: peer(
        "change_password", ids["ada"], "n3w-pw", end_sessions=True
    ),
    "disable_user": lambda peer, ids: peer("disable_user", ids["ada"]),
}


@pytest.mark.parametrize("end", ENDINGS.values(), ids=ENDINGS.keys())
def test_an_ending_in_another_process_is_seen(
    cached: pgusers.UserSpace, peer: Peer, ada: int, end: Any
) -> None:
    key = cached.login("ada", "s3cret").key
    other_key = cached.login("ada", "s3cret").key
    (session,) = [s for s in cached.sessions(ada, key=key) if s.current]
    warm(cached, key)
    end(peer, {"ada": ada, "session": session.session_id, "other_key": other_key})
    assert eventually(lambda: cached.check_key(key).status, NOT_FOUND) == NOT_FOUND


CHANGES = {
    "modify_user": (
        lambda peer, ada, key: peer("modify_user", ada, username="ada2"),
        lambda result: result.username == "ada2",
    ),
    "set_session_data": (
        lambda peer, ada, key: peer("set_session_data", key, {"cart": ["tea"]}),
        lambda result: result.extra_data == {"cart": ["tea"]},
    ),
    "set_session_max_age": (
        lambda peer, ada, key: peer("set_session_max_age", 0.001),
        lambda result: result.status == EXPIRED,
    ),
}


@pytest.mark.parametrize(("change", "seen"), CHANGES.values(), ids=CHANGES.keys())
def test_a_change_in_another_process_is_seen(
    cached: pgusers.UserSpace, peer: Peer, ada: int, change: Any, seen: Any
) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    change(peer, ada, key)
    assert eventually(lambda: seen(cached.check_key(key)), True)


@pytest.mark.parametrize("change", ["set_admin", "set_session_TTL"])
def test_other_changes_to_a_user_or_the_settings_forget_the_answers(
    cached: pgusers.UserSpace, peer: Peer, ada: int, change: Any, statements: list[str]
) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    peer(change, *((ada, True) if change == "set_admin" else (3600,)))
    assert eventually(lambda: cached._core.cached(key), None) is None


def test_check_session_is_served_and_forgotten_as_check_key_is(
    cached: pgusers.UserSpace, peer: Peer, ada: int
) -> None:
    key = cached.login("ada", "s3cret").key
    before = warm(cached, key, session=True)
    assert before[:4] == cached.check_key(key) == cached._core.cached(key)
    assert cached.check_session(key) == before
    assert peer("reauthenticate", key, password="s3cret") == OK
    assert eventually(lambda: cached._core.cached_session(key), None) is None
    after = cached.check_session(key)
    assert after.authenticated_at is not None and before.authenticated_at is not None
    assert after.authenticated_at > before.authenticated_at


def test_check_key_s_answer_is_not_served_as_check_session_s(
    cached: pgusers.UserSpace, ada: int
) -> None:
    cached.define_role("billing", ["invoice:write"])
    cached.grant_role(ada, "billing")
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    assert cached._core.cached_session(key) is None  # it holds no roles
    assert cached.check_session(key).permissions == ("invoice:write",)


@pytest.mark.parametrize("change", ["revoke_role", "define_role", "delete_role"])
def test_a_role_changed_in_another_process_is_seen(
    cached: pgusers.UserSpace, peer: Peer, ada: int, change: str
) -> None:
    cached.define_role("billing", ["invoice:write"])
    cached.grant_role(ada, "billing")
    key = cached.login("ada", "s3cret").key
    before = warm(cached, key, session=True)
    assert before.permissions == ("invoice:write",)
    arguments = {
        "revoke_role": (ada, "billing"),
        "define_role": ("billing", ["invoice:read"]),
        "delete_role": ("billing",),
    }[change]
    peer(change, *arguments)
    assert eventually(lambda: cached._core.cached_session(key), None) is None
    assert cached.check_session(key).permissions != before.permissions


def listener_pid(usp: Any) -> int:
    return int(usp._driver._listener._conn.info.backend_pid)


def test_a_killed_listener_connection_never_leaves_a_stale_ok(
    cached: pgusers.UserSpace,
    peer: Peer,
    ada: int,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    pid = listener_pid(cached)
    sql_conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)"
    assert eventually(lambda: only(sql_conn.execute(gone, (pid,)).fetchone()), True)
    peer("kill_sessions", ada)
    assert cached.check_key(key).status == NOT_FOUND  # at once: no waiting here
    # The listener comes back and the cache serves again.
    again = cached.login("ada", "s3cret").key
    served = eventually(lambda: cached.check_key(again) == cached._core.cached(again), True)
    assert served and listener_pid(cached) != pid


def test_a_rolled_back_change_invalidates_nothing(
    cached: pgusers.UserSpace,
    ada: int,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
    statements: list[str],
) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    params = {"userid": ada, "admin": True, "now": time.time(), "actor": None}
    change = render(users.SET_ADMIN, cached._core.schema, **LOGS)
    with pytest.raises(psycopg.errors.QueryCanceled), sql_conn.transaction():
        assert sql_conn.execute(change, {**params, "event_source": None}).fetchone()
        sql_conn.execute("SET LOCAL statement_timeout = 1")
        sql_conn.execute("SELECT pg_sleep(1)")
    time.sleep(0.2)  # what a NOTIFY would have needed to arrive, had one been sent
    statements.clear()
    assert cached.check_key(key).status == OK
    assert statements == []


def test_a_forked_child_starts_with_an_empty_cache(cached: pgusers.UserSpace, ada: int) -> None:
    key = cached.login("ada", "s3cret").key
    warm(cached, key)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 0 if cached._core.cached(key) is None and cached.check_key(key).status == OK else 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cached._core.cached(key) is not None  # the parent's cache is its own


def test_the_async_api_serves_from_memory_too(
    dsn: str, schema: str, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    if os.environ.get("PGUSERS_TEST_PGBOUNCER"):
        pytest.skip("LISTEN needs the server itself")
    sent = []
    real = shared.fetch_async

    async def counting(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return await real(cursor, fetch)

    monkeypatch.setattr(driver_async, "fetch_async", counting)

    async def main() -> pgusers.CheckResult:
        async with pgusers.AsyncUserSpace(
            conninfo=dsn, schema=schema, hasher=FAST_HASHER, session_cache=True
        ) as usp:
            await usp.create_user("ada", "s3cret", "ada@example.com")
            key = (await usp.login("ada", "s3cret")).key
            await usp.check_key(key)
            sent.clear()
            return await usp.check_key(key)

    assert asyncio.run(main()).status == OK
    assert sent == []


@pytest.mark.parametrize(
    "options",
    [
        {"session_cache": "yes"},
        {"session_cache": True, "cache_backstop": 0},
        {"session_cache": True, "cache_backstop": 61},
        {"listen_conninfo": "host=x"},
    ],
    ids=["not a bool", "no backstop", "long backstop", "listen without cache"],
)
def test_bad_cache_options_are_refused(dsn: str, schema: str, options: Any) -> None:
    with pytest.raises(pgusers.BadCallError):
        pgusers.UserSpace(conninfo=dsn, schema=schema, **options)


def test_behind_pgbouncer_the_cache_asks_for_the_server_itself(
    dsn: str, server_dsn: str, schema: str
) -> None:
    if not os.environ.get("PGUSERS_TEST_PGBOUNCER"):
        pytest.skip("runs in the PgBouncer run")
    with pytest.raises(pgusers.BadCallError, match="listen_conninfo"):
        pgusers.UserSpace(conninfo=dsn, schema=schema, session_cache=True)
    usp = pgusers.UserSpace(
        conninfo=dsn, schema=schema, session_cache=True, listen_conninfo=server_dsn
    )
    try:
        usp.create_user("ada", "s3cret", "ada@example.com")
        key = usp.login("ada", "s3cret").key
        assert eventually(lambda: usp.check_key(key) and usp._core.cached(key) is not None, True)
    finally:
        usp.close()
