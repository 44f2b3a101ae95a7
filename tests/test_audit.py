"""The audit trail: each change writes its event in the same statement, with who and
from where; nothing secret is ever in it; old events go by themselves."""

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import OK, BadCallError, Event, acting_as
from pgusers._core.audit import KINDS
from pgusers._core.sql import LOG_EVENTS, LOGGED, render

from .support import FAST_HASHER, Clock
from .test_factors import FACTOR_KINDS

DAY = 86400.0


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "s3cret", "ada@example.com"))


def all_events(usp: Any) -> list[Event]:
    return list(usp.events(newest_first=False))


def new_events(usp: Any, call: Callable[[], object]) -> list[Event]:
    """Run ``call()``; return the events it wrote, oldest first."""
    known = {event.id for event in all_events(usp)}
    call()
    return [event for event in all_events(usp) if event.id not in known]


def ended_by(usp: Any, how: str) -> Callable[[Event], bool]:
    return lambda event: event.detail.get("how") == how


def a_key(usp: Any, name: str = "ada", password: str = "s3cret") -> str:
    return str(usp.login(name, password, source="192.0.2.1").key)


def session_id_of(usp: Any, key: str) -> str:
    return str(next(row.session_id for row in usp.sessions(key=key) if row.current))


# Each change, and the events it writes: (kind, detail fields that must match).
CHANGES: dict[str, tuple[Callable[[Any, int], object], list[tuple[str, dict[str, Any]]]]] = {
    "create_user": (
        lambda usp, ada: usp.create_user("bob", "pw", "bob@example.com", admin=True),
        [("user.created", {"username": "bob", "email": "bob@example.com", "admin": True})],
    ),
    "modify_user": (
        lambda usp, ada: usp.modify_user(ada, email="ada2@example.com", extra_data={"a": 1}),
        [
            (
                "user.modified",
                {
                    "email": "ada2@example.com",
                    "old_email": "ada@example.com",
                    "extra_data": "replaced",
                },
            )
        ],
    ),
    "delete_user": (
        lambda usp, ada: usp.delete_user(userid=ada),
        [("user.deleted", {"username": "ada"})],
    ),
    "change_password": (
        lambda usp, ada: usp.change_password(ada, "new", "s3cret", end_sessions=True),
        [("password.changed", {"old_password_checked": True, "sessions_ended": 1})],
    ),
    "set_admin": (lambda usp, ada: usp.set_admin(ada), [("admin.changed", {"admin": True})]),
    "disable_user": (
        lambda usp, ada: usp.disable_user(ada),
        [("user.disabled", {"sessions_ended": 1})],
    ),
    "enable_user": (
        lambda usp, ada: usp.disable_user(ada, disabled=False),
        [("user.enabled", {"sessions_ended": 0})],
    ),
    "login": (
        lambda usp, ada: usp.login("ada", "s3cret", source="198.51.100.4", user_agent="curl/8"),
        [("login.succeeded", {"user_agent": "curl/8"})],
    ),
    "validate_user": (
        lambda usp, ada: usp.validate_user("ada", "s3cret"),
        [("login.succeeded", {})],
    ),
    "login, wrong password": (
        lambda usp, ada: usp.login("ada", "nope", source="198.51.100.4"),
        [("login.failed", {"reason": "password"})],
    ),
    "login, disabled": (
        lambda usp, ada: (usp.disable_user(ada), usp.login("ada", "s3cret"))[1],
        [("user.disabled", {}), ("login.failed", {"reason": "disabled"})],
    ),
    "login, throttled": (
        lambda usp, ada: (
            usp.set_login_policy(source_limit=1),
            usp.login("ada", "nope", source="198.51.100.4"),
            usp.login("ada", "s3cret", source="198.51.100.4"),
        ),
        [
            ("settings.changed", {"source_limit": 1}),
            ("login.failed", {"reason": "password"}),
            ("login.throttled", {}),
        ],
    ),
    "clear_login_failures": (
        lambda usp, ada: (
            usp.login("ada", "nope", source="198.51.100.4"),
            usp.clear_login_failures(source="198.51.100.4"),
        ),
        [
            ("login.failed", {}),
            # the source's count, and the name's count from it
            (
                "login_failures.cleared",
                {"subjects": ["pair:ada\x1f198.51.100.4", "source:198.51.100.4"]},
            ),
        ],
    ),
    "end_session": (
        lambda usp, ada: usp.end_session(session_id_of(usp, a_key(usp))),
        [("login.succeeded", {}), ("session.ended", {"how": "end_session", "count": 1})],
    ),
    "end_other_sessions": (
        lambda usp, ada: usp.end_other_sessions(a_key(usp)),
        [("login.succeeded", {}), ("session.ended", {"how": "end_other_sessions", "count": 1})],
    ),
    "kill_sessions": (
        lambda usp, ada: usp.kill_sessions(ada),
        [("session.ended", {"how": "kill_sessions", "count": 1})],
    ),
    "kill_sessions, expired": (
        lambda usp, ada: usp.kill_sessions(0, expired=True),
        [],  # none had expired: nothing changed, nothing recorded
    ),
    "issue_token": (
        lambda usp, ada: usp.issue_token(ada, "change_email", email="new@example.com"),
        [("token.issued", {"purpose": "change_email", "email": "new@example.com"})],
    ),
    "reset_password": (
        lambda usp, ada: usp.reset_password(usp.issue_token(ada, "reset_password"), "n3w"),
        [
            ("token.issued", {"purpose": "reset_password"}),
            ("token.used", {"purpose": "reset_password"}),
            ("password.changed", {"reset_token": True, "sessions_ended": 1}),
        ],
    ),
    "verify_email": (
        lambda usp, ada: usp.verify_email(usp.issue_token(ada, "verify_email")),
        [
            ("token.issued", {"purpose": "verify_email"}),
            ("token.used", {"purpose": "verify_email"}),
            ("email.verified", {"email": "ada@example.com", "changed": False}),
        ],
    ),
    "set_session_TTL": (
        lambda usp, ada: usp.set_session_TTL(3600),
        [("settings.changed", {"session_ttl": 3600})],
    ),
    "set_session_max_age": (
        lambda usp, ada: usp.set_session_max_age(7200),
        [("settings.changed", {"session_max_age": 7200})],
    ),
    "set_login_policy": (
        lambda usp, ada: usp.set_login_policy(free_failures=3, max_backoff=60),
        [("settings.changed", {"free_failures": 3, "max_backoff": 60})],
    ),
    "set_session_key_storage": (
        lambda usp, ada: usp.set_session_key_storage("hashed"),
        [("settings.changed", {"key_storage": "hashed"})],
    ),
    "set_event_retention": (
        lambda usp, ada: usp.set_event_retention(30),
        [("settings.changed", {"event_retention_days": 30})],
    ),
}


@pytest.mark.parametrize("name", CHANGES)
def test_each_change_writes_its_events_once(usp: Any, ada: int, name: Any) -> None:
    a_key(usp)  # a live session, so that calls ending sessions end one
    call, expected = CHANGES[name]
    with acting_as("admin:7", source="203.0.113.9"):
        written = new_events(usp, lambda: call(usp, ada))
    assert [event.kind for event in written] == [kind for kind, _ in expected]
    for event, (kind, detail) in zip(written, expected, strict=True):
        assert {field: event.detail.get(field) for field in detail} == detail, event
        assert event.actor == "admin:7"
        if kind.startswith("login.") and name not in ("login, disabled", "validate_user"):
            # A login's source is the client's, given to login().
            assert event.source in ("198.51.100.4", "192.0.2.1")
        else:  # otherwise the one given to acting_as
            assert event.source == "203.0.113.9"
        if kind in ("user.created",):
            assert event.userid is not None and event.userid != ada
        elif kind not in ("settings.changed", "login_failures.cleared"):
            assert event.userid == ada, event


def test_a_purge_of_expired_sessions_is_one_event_with_a_count(
    usp: Any, ada: int, clock: Clock
) -> None:
    for _ in range(3):
        a_key(usp)
    clock.advance(usp.ttl + 1)
    a_key(usp)
    (event,) = new_events(usp, lambda: usp.kill_sessions(0, expired=True))
    assert (event.kind, event.userid, event.detail) == (
        "session.ended",
        None,
        {"how": "purge", "count": 3},
    )


def test_a_login_event_names_the_session_it_opened(usp: Any, ada: int) -> None:
    (event,) = new_events(usp, lambda: a_key(usp))
    (row,) = usp.sessions(ada)
    assert (event.kind, event.session_id, event.source) == (
        "login.succeeded",
        row.session_id,
        "192.0.2.1",
    )


def test_a_failed_login_of_an_unknown_name_records_no_name(usp: Any) -> None:
    (event,) = new_events(usp, lambda: usp.login("hunter2-typed-as-name", "x", source="192.0.2.5"))
    assert (event.kind, event.userid, event.source) == ("login.failed", None, "192.0.2.5")
    assert "hunter2" not in repr(event)


def test_every_kind_is_written_by_some_change() -> None:
    kinds = {kind for _, expected in CHANGES.values() for kind, _ in expected}
    # The purge, the import's (test_legacy_import.py) and the API keys' (test_web_api.py)
    # are tested on their own.
    on_their_own = {"events.purged", "legacy.imported", "legacy.resolved"}
    # The second factors' are tested in test_factors.py.
    on_their_own |= FACTOR_KINDS | {"secrets.resealed"}
    on_their_own.add("password.breach_check_failed")  # test_password_policy.py
    on_their_own |= {"mfa.renamed", "passkey.cloned", "passkey.flag_cleared"}  # test_passkeys.py
    on_their_own |= {kind for kind in KINDS if kind.startswith(("role.", "org."))}  # test_roles
    # test_federation.py
    on_their_own |= {kind for kind in KINDS if kind.startswith(("provider.", "identity."))}
    on_their_own |= {kind for kind in KINDS if kind.startswith(("mail.", "webhook."))}  # outbox
    assert kinds | on_their_own | {"apikey.created", "apikey.revoked"} == KINDS


def test_check_key_and_reads_write_no_event(usp: Any, ada: int) -> None:
    key = a_key(usp)
    written = new_events(
        usp,
        lambda: (
            usp.check_key(key),
            usp.check_key("C" * 43),
            usp.find_user(userid=ada),
            usp.is_admin(ada),
            list(usp.all_users()),
            list(usp.list_sessions(0)),
            list(usp.sessions()),
            list(usp.login_failures()),
        ),
    )
    assert written == []


def test_changes_that_fail_or_find_nothing_leave_no_event(usp: Any, ada: int) -> None:
    usp.create_user("bob", "pw", "bob@example.com")
    calls: list[Callable[[], object]] = [
        lambda: usp.create_user("ADA", "pw", "x@example.com"),
        lambda: usp.modify_user(ada, username="Bob"),
    ]
    before = all_events(usp)
    for call in calls:
        with pytest.raises(BadCallError):
            call()
    assert usp.change_password(ada, "new", "wrong") == pgusers.REJECTED
    assert usp.delete_user(userid=999) == pgusers.NOT_FOUND
    assert usp.set_admin(999) == pgusers.NOT_FOUND
    assert usp.end_session("E" * 16) == 0
    assert usp.reset_password("F" * 43, "x") == pgusers.NOT_FOUND
    assert usp.verify_email("D" * 43) == pgusers.NOT_FOUND
    assert all_events(usp) == before


def test_a_rolled_back_transaction_takes_its_event_with_it(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    """The event is part of the change's own statement: run that statement in a
    transaction that rolls back, and neither the change nor the event remains."""
    from pgusers._core import recording, users

    statement = render(users.SET_ADMIN, schema, log=LOG_EVENTS, logged=LOGGED)
    params = {"admin": True, "userid": ada, **recording.parameters(0.0)}
    with pytest.raises(psycopg.errors.QueryCanceled), sql_conn.transaction():
        sql_conn.execute(statement, params)
        sql_conn.execute("SET LOCAL statement_timeout = 1")
        sql_conn.execute("SELECT pg_sleep(1)")
    assert usp.is_admin(ada) is False
    assert [event.kind for event in all_events(usp)] == ["user.created"]


def test_no_password_key_token_or_hash_is_ever_in_the_events(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    secrets_seen = ["first-Pa55word", "second-Pa55word", "third-Pa55word"]
    userid = usp.create_user("ada", secrets_seen[0], "ada@example.com")
    key = usp.login("ada", secrets_seen[0], source="192.0.2.1").key
    usp.login("ada", "wrong-Pa55word")
    usp.change_password(userid, secrets_seen[1], secrets_seen[0])
    token = usp.issue_token(userid, "reset_password")
    usp.reset_password(token, secrets_seen[2], end_sessions=False)
    verify = usp.issue_token(userid, "verify_email")
    usp.verify_email(verify)
    key2 = usp.validate_user("ada", secrets_seen[2]).key
    usp.end_other_sessions(key2)
    usp.set_session_key_storage("hashed")
    hashes = [row[0] for row in sql_conn.execute(f"SELECT password_hash FROM {schema}.users")]
    stored = [row[0] for row in sql_conn.execute(f"SELECT key FROM {schema}.sessions")]
    text = "\n".join(str(row) for row in sql_conn.execute(f"SELECT * FROM {schema}.events"))
    assert len(all_events(usp)) >= 10
    for secret in [*secrets_seen, "wrong-Pa55word", key, key2, token, verify, *hashes, *stored]:
        assert secret not in text
    assert "$argon2" not in text and "sha256:" not in text


# -- who acted -------------------------------------------------------------------------


def test_without_acting_as_the_actor_is_empty(usp: Any, ada: int) -> None:
    ((event,),) = [new_events(usp, lambda: usp.set_admin(ada))]
    assert (event.actor, event.source) == (None, None)


def test_acting_as_nests_and_ends_with_its_block(usp: Any, ada: int) -> None:
    def change() -> str | None:
        return new_events(usp, lambda: usp.set_admin(ada))[0].actor

    with acting_as("outer"):
        with acting_as("inner"):
            assert change() == "inner"
        assert change() == "outer"
    assert change() is None


def test_acting_as_is_per_thread(usp: Any, ada: int) -> None:
    barrier = threading.Barrier(2)

    def act(name: str) -> None:
        with acting_as(name):
            barrier.wait()
            usp.modify_user(ada, extra_data={"by": name})

    threads = [threading.Thread(target=act, args=(f"worker:{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    modified = [e for e in all_events(usp) if e.kind == "user.modified"]
    assert sorted(str(e.actor) for e in modified) == ["worker:0", "worker:1"]


def test_acting_as_is_per_asyncio_task(dsn: str, schema: str) -> None:
    async def main() -> tuple[list[int], list[Event]]:
        async with pgusers.AsyncUserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
            ids = [await usp.create_user(f"u{n}", "pw", f"u{n}@example.com") for n in range(4)]

            async def act(userid: int) -> None:
                with acting_as(f"task:{userid}"):
                    await asyncio.sleep(0.01)
                    await usp.set_admin(userid)

            await asyncio.gather(*(act(userid) for userid in ids))
            return ids, [e async for e in usp.events(kinds="admin.changed")]

    ids, events = asyncio.run(main())
    assert sorted((e.userid, e.actor) for e in events) == [(i, f"task:{i}") for i in ids]


@pytest.mark.parametrize("bad", [None, "", 7, "x" * 256, "a\x00b", "a\r\nb", "a\x1b[2Jb"])
def test_acting_as_refuses_bad_actors(bad: Any) -> None:
    with pytest.raises(BadCallError), acting_as(bad):
        pass


@pytest.mark.parametrize("bad", ["10.0.0.1\nlogin.succeeded userid=1", "\x1b[2J"])
def test_acting_as_refuses_a_source_with_control_characters(bad: Any) -> None:
    with pytest.raises(BadCallError, match="control characters"), acting_as("ok", source=bad):
        pass


@pytest.mark.parametrize("field", ["source", "user_agent"])
def test_a_login_refuses_control_characters_and_writes_nothing(
    usp: Any, ada: int, field: Any
) -> None:
    before = len(list(usp.events()))
    with pytest.raises(BadCallError, match="control characters"):
        usp.login("ada", "s3cret", **{field: "x\r\nforged line"})
    assert len(list(usp.events())) == before


def test_the_event_log_line_escapes_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    from pgusers._core import recording

    event = {
        "id": 1,
        "at": 0.0,
        "kind": "login.failed",
        "userid": None,
        "actor": "a\nb",
        "source": "\x1b[31m",
        "session_id": None,
        "detail": {},
    }
    with caplog.at_level("INFO", logger="pgusers.events"):
        recording.emit([event])
    [line] = caplog.messages
    assert line == "login.failed userid=None actor=a\\x0ab source=\\x1b[31m"


# -- reading, purging, retention ------------------------------------------------------


def test_events_are_filtered_and_ordered(usp: Any, ada: int, clock: Clock) -> None:
    start = clock.now
    bob = usp.create_user("bob", "pw", "bob@example.com")
    clock.advance(60)
    usp.set_admin(bob)
    clock.advance(60)
    usp.set_admin(ada)
    kinds = [e.kind for e in usp.events()]
    assert kinds == ["admin.changed", "admin.changed", "user.created", "user.created"]
    assert [e.userid for e in usp.events(userid=bob, newest_first=False)] == [bob, bob]
    assert [e.userid for e in usp.events(kinds=["admin.changed"])] == [ada, bob]
    assert [e.userid for e in usp.events(since=start + 30, until=start + 90)] == [bob]
    since = datetime.fromtimestamp(start + 90, UTC)
    assert [e.userid for e in usp.events(since=since)] == [ada]
    (event,) = usp.events(kinds="user.created", userid=bob)
    assert isinstance(event, Event) and event.at == pytest.approx(start)


@pytest.mark.parametrize(
    "arguments",
    [
        {"kinds": "user.exploded"},
        {"kinds": [None]},
        {"kinds": 7},
        {"userid": "1"},
        {"since": "yesterday"},
        {"until": datetime(2026, 1, 1)},  # no timezone
        {"since": float("nan")},
        {"newest_first": None},
    ],
)
def test_events_refuses_bad_filters(usp: Any, arguments: Any) -> None:
    with pytest.raises(BadCallError):
        list(usp.events(**arguments))


def test_purge_events_deletes_only_older_ones_and_says_so(usp: Any, ada: int, clock: Clock) -> None:
    clock.advance(DAY)
    usp.set_admin(ada)
    assert usp.purge_events(clock.now - 1) == 1
    kinds = [e.kind for e in usp.events(newest_first=False)]
    assert kinds == ["admin.changed", "events.purged"]
    (purge,) = usp.events(kinds="events.purged")
    assert purge.detail["count"] == 1
    with pytest.raises(BadCallError):
        usp.purge_events("now")


def test_retention_removes_old_events_as_part_of_normal_work(
    usp: Any, ada: int, clock: Clock
) -> None:
    usp.set_event_retention(2)
    clock.advance(DAY)
    usp.set_admin(ada)  # a day old when the check runs: stays
    clock.advance(1.5 * DAY)
    usp.set_admin(ada, False)  # this write removes the events older than two days
    kinds = [e.kind for e in usp.events(newest_first=False)]
    assert kinds == ["admin.changed", "admin.changed"]


def test_no_retention_keeps_events_forever(usp: Any, ada: int, clock: Clock) -> None:
    usp.set_event_retention(None)
    clock.advance(3650 * DAY)
    usp.set_admin(ada)
    assert len(list(usp.events())) == 3


@pytest.mark.parametrize("bad", [0, -1, "90", True, 10**9])
def test_set_event_retention_refuses_bad_values(usp: Any, bad: Any) -> None:
    with pytest.raises(BadCallError):
        usp.set_event_retention(bad)


# -- the logger ------------------------------------------------------------------------


def test_events_go_to_the_pgusers_events_logger_with_their_fields(
    usp: Any, ada: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgusers.events")
    with acting_as("admin:1", source="203.0.113.2"):
        usp.set_admin(ada)
    (record,) = [r for r in caplog.records if r.name == "pgusers.events"]
    fields: Any = record  # the logger puts the event's fields on the record
    (event,) = usp.events(kinds="admin.changed")
    assert (fields.event_id, fields.kind, fields.userid, fields.actor, fields.source) == (
        event.id,
        "admin.changed",
        ada,
        "admin:1",
        "203.0.113.2",
    )
    assert fields.detail == {"admin": True}
    assert fields.at == pytest.approx(event.at)
    assert "admin.changed" in record.getMessage()


def test_a_change_that_fails_logs_nothing(
    usp: Any, ada: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgusers.events")
    with pytest.raises(BadCallError):
        usp.create_user("ada", "pw", "other@example.com")
    assert [r for r in caplog.records if r.name == "pgusers.events"] == []
    assert usp.set_admin(ada) == OK
