"""Calls that write: set_session_data, the parts of check_key, tokens and throttled logins."""

import time
from unittest import mock

import psycopg

from context import SCHEMA, Context, Row, timed
from shared import (
    DRIVER,
)


def write_rows(ctx: Context) -> list[Row]:
    """check_key when every call writes the expiry, and a durable write for reference."""
    usp, conninfo, key, select_one = ctx.usp, ctx.conninfo, ctx.key, ctx.select_one
    iterations, size = ctx.iterations, ctx.size
    rows: list[Row] = []
    clock = [time.time()]

    def slide_every_call() -> None:
        clock[0] += 61  # past the one-minute slack: every call writes
        usp.check_key(key)

    with mock.patch("time.time", lambda: clock[0]):
        (median, p99), (floor, _) = timed(slide_every_call, select_one, iterations=iterations)
    rows.append(
        Row(
            "check_key, expiry written every call",
            size,
            median,
            p99,
            floor,
            note="asynchronous commit: no WAL flush wait",
        )
    )
    with psycopg.connect(conninfo, **DRIVER) as conn:
        durable = (
            f"UPDATE {SCHEMA}.sessions SET expires_at = now() + interval '10 days' WHERE key = %s"
        )
        (median, p99), (floor, _) = timed(
            lambda: conn.execute(durable, (key,)), select_one, iterations=iterations
        )
    rows.append(
        Row(
            "durable UPDATE of one session (reference)",
            size,
            median,
            p99,
            floor,
            note="synchronous commit: waits for the WAL flush",
        )
    )
    return rows


def anatomy_rows(ctx: Context) -> list[Row]:
    """What each part of check_key's statement costs, and check_key itself, timed in
    one loop with the floor."""
    usp, conninfo, key, select_one = ctx.usp, ctx.conninfo, ctx.key, ctx.select_one
    iterations, size = ctx.iterations, ctx.size
    sessions = f"FROM {SCHEMA}.sessions s"
    users = f"JOIN {SCHEMA}.users u ON u.userid = s.userid"
    settings = f"CROSS JOIN {SCHEMA}.settings t"
    by_key = "WHERE s.key = %(key)s"
    columns = "s.expires_at, u.username, s.userid, s.extra_data"
    parts = {
        "the session row by primary key, nothing else": (
            f"SELECT s.expires_at {sessions} {by_key}"
        ),
        "+ join users for the username": f"SELECT {columns} {sessions} {users} {by_key}",
        "+ the TTL from settings": (
            f"SELECT {columns}, t.session_ttl {sessions} {users} {settings} {by_key}"
        ),
    }
    with psycopg.connect(conninfo, **DRIVER) as conn:
        calls = [
            lambda statement=statement: conn.execute(statement, {"key": key}).fetchone()
            for statement in parts.values()
        ]
        results = timed(*calls, lambda: usp.check_key(key), select_one, iterations=iterations)
    floor = results[-1][0]
    names = [*parts, "check_key itself (its statement, the pool, Python)"]
    return [
        Row(f"anatomy: {name}", size, median, p99, floor)
        for name, (median, p99) in zip(names, results, strict=False)
    ]


def account_rows(ctx: Context) -> list[Row]:
    """Issuing a token, using one, and a throttled login, each timed with the floor."""
    usp, select_one, iterations = ctx.usp, ctx.select_one, ctx.iterations
    calls = iterations + min(200, iterations // 5 + 1)  # as timed() makes them
    userids = [
        usp.create_user(f"token{number}", "pw", f"token{number}@example.com")
        for number in range(calls)
    ]
    tokens = iter([usp.issue_token(userid, "verify_email") for userid in userids])
    usp.set_login_policy(free_failures=1, max_backoff=86400)
    usp.login("throttled", "wrong")
    results = timed(
        lambda: usp.issue_token(userids[0], "reset_password"),
        lambda: usp.verify_email(next(tokens)),
        lambda: usp.login("throttled", "wrong"),
        select_one,
        iterations=iterations,
    )
    floor = results[-1][0]
    usp.set_login_policy(free_failures=5, max_backoff=900)
    names = (
        "issue_token",
        "verify_email (a token used)",
        "login, throttled (refused before any hash)",
    )
    return [
        Row(name, "1", median, p99, floor)
        for name, (median, p99) in zip(names, results, strict=False)
    ]
