"""The outbox: what a reset request costs with its mail written in the same statement
(against issuing the token for the application to mail itself), and how many
messages a second delivery workers move from the outbox to a local SMTP server and
to a local webhook receiver, with 1 and 4 workers."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pgusers
from context import SCHEMA, Context, Row, timed
from pgusers.delivery import Worker
from shared import CHEAP_HASHER, analyze_as_autovacuum_would, execute, progress

ROOT = Path(__file__).resolve().parent.parent
"""Where ``python -m tests.mail_partners`` runs the tests' partners from."""

SECRET_KEY = "the benchmark's own secret key, not a real one"  # noqa: S105 - a test key

MESSAGES = 1000

PARTNERS = {"mail": "SMTP server", "webhook": "webhook receiver"}


def outbox_rows(ctx: Context) -> list[Row]:
    usp, select_one, iterations = ctx.usp, ctx.select_one, ctx.iterations
    usp.set_mail(
        "127.0.0.1", port=2, security="none", sender="bench@example.com",
        base_url="https://bench.example", per_recipient=1000,
    )  # fmt: skip
    analyze_as_autovacuum_would(ctx.conninfo, SCHEMA)
    progress("timing a reset request beside issuing its token")
    ((issue, issue_p99), (request, request_p99), (floor, _)) = timed(
        lambda: usp.issue_token(ctx.userid, "reset_password"),
        lambda: usp.request_password_reset("bench@example.com"),
        select_one,
        iterations=iterations,
    )
    rows = [
        Row("issue_token (the application mails it)", "1", issue, issue_p99, floor),
        Row(
            "request_password_reset (its mail in the outbox)",
            "1",
            request,
            request_p99,
            floor,
            note=f"x{request / issue:.2f} issue_token, same run",
        ),
    ]
    usp.remove_mail()
    return rows + throughput_rows(ctx)


def throughput_rows(ctx: Context) -> list[Row]:
    schema = SCHEMA + "_outbox"
    space = pgusers.UserSpace(
        conninfo=ctx.conninfo, schema=schema, hasher=CHEAP_HASHER, secret_key=SECRET_KEY
    )
    rows = []
    try:
        smtp_port = _partner("mail")
        space.set_mail(
            "127.0.0.1", port=smtp_port, security="none", sender="bench@example.com",
            base_url="https://bench.example",
        )  # fmt: skip
        webhook_id, secret = space.add_webhook("http://127.0.0.1:1/", ["user.created"])
        hooks_port = _partner("hooks", secret)
        execute(
            ctx.conninfo,
            f"UPDATE {schema}.webhooks SET url = %s",
            (f"http://127.0.0.1:{hooks_port}/hooks",),
        )
        for channel in ("mail", "webhook"):
            for workers in (1, 4):
                progress(f"delivering {MESSAGES} {channel} messages with {workers} workers")
                _queue(ctx.conninfo, schema, channel, webhook_id)
                seconds = asyncio.run(_deliver(ctx.conninfo, schema, workers))
                sent = space.outbox(state="sent", limit=MESSAGES)
                assert len(sent) == MESSAGES, len(sent)
                execute(ctx.conninfo, f"DELETE FROM {schema}.outbox")
                rows.append(
                    Row(
                        f"{channel}: outbox to the local {PARTNERS[channel]}",
                        f"{workers} worker{'s' if workers > 1 else ''}",
                        seconds * 1000 / MESSAGES,
                        None,
                        None,
                        note=f"{MESSAGES / seconds:,.0f} messages/s",
                    )
                )
    finally:
        for process in PARTNER_PROCESSES:
            process.communicate(timeout=10)
        PARTNER_PROCESSES.clear()
        space.close()
        execute(ctx.conninfo, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return rows


PARTNER_PROCESSES: list[subprocess.Popen[str]] = []


def _partner(*args: str) -> int:
    """Start a partner in a process of its own (so that it does not share the
    benchmark's interpreter); return its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mail_partners", *args],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    PARTNER_PROCESSES.append(process)
    assert process.stdout is not None
    return int(process.stdout.readline())


def _queue(conninfo: str, schema: str, channel: str, webhook_id: str) -> None:
    """MESSAGES due messages of one channel (as a flood of changes would leave)."""
    purpose, recipient = (
        ("password_changed", "'user' || i || '@example.com'")
        if channel == "mail"
        else ("user.created", "%(webhook)s")
    )
    execute(
        conninfo,
        f"""INSERT INTO {schema}.outbox (id, channel, purpose, recipient, payload, created_at,
                                         due_at)
        SELECT 'msg_' || md5(random()::text), %(channel)s, %(purpose)s, {recipient},
               jsonb_build_object('username', 'user' || i, 'type', %(purpose)s::text), now(), now()
        FROM generate_series(1, %(count)s) AS i""",
        {"channel": channel, "purpose": purpose, "webhook": webhook_id, "count": MESSAGES},
    )
    analyze_as_autovacuum_would(conninfo, schema)


async def _deliver(conninfo: str, schema: str, workers: int) -> float:
    """Seconds for ``workers`` workers to empty the outbox."""
    space = await pgusers.AsyncUserSpace.connect(
        conninfo=conninfo, schema=schema, hasher=CHEAP_HASHER, secret_key=SECRET_KEY,
        pool_max=max(10, workers * 3),
    )  # fmt: skip
    crew = [Worker(space, name=f"bench-{i}", batch=50, poll=0.05) for i in range(workers)]
    stop = asyncio.Event()
    started = time.perf_counter()
    running = [asyncio.ensure_future(worker.run(stop)) for worker in crew]
    while (await space.outbox_backlog())[0]:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*running)
    await space.close()
    return seconds
