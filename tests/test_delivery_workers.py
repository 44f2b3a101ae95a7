"""Delivery workers against real partners on localhost: an SMTP server (aiosmtpd) and
a webhook receiver that verifies signatures with the Standard Webhooks library. Every
kind of mail arrives as MIME with a text and an HTML part, and its link or code
works; refusals and outages retry or go to the dead letters; two workers deliver
1,000 messages exactly once; a worker killed with SIGKILL in mid-send loses
nothing."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pyotp
import pytest
from click.testing import CliRunner

import pgusers
from pgusers import OK
from pgusers.cli import main
from pgusers.delivery import Outcome, Worker

from .mail_partners import (
    HookReceiver,
    MailCatcher,
    certificate,
    code_in,
    link_in,
    parts,
    running,
    token_in,
)
from .support import FAST_HASHER, Clock, LoopThread

KEY = "delivery-tests-secret-key"


@pytest.fixture
def smtp() -> Iterator[MailCatcher]:
    yield from running(MailCatcher())


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    yield from running(HookReceiver())


@pytest.fixture
def space(dsn: str, schema: str) -> Iterator[pgusers.UserSpace]:
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    yield usp
    usp.close()


@pytest.fixture
def aspace(dsn: str, schema: str, loop_thread: LoopThread) -> Iterator[pgusers.AsyncUserSpace]:
    usp = loop_thread.run(
        pgusers.AsyncUserSpace.connect(
            conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY
        )
    )
    yield usp
    loop_thread.run(usp.close())


@pytest.fixture
def worker(aspace: pgusers.AsyncUserSpace, loop_thread: LoopThread) -> Iterator[Worker]:
    made = Worker(aspace, name="tests", poll=0.2, smtp_timeout=5, webhook_timeout=1)
    yield made
    loop_thread.run(made.close())


def mail_to(space: pgusers.UserSpace, smtp: MailCatcher, **extra: Any) -> None:
    space.set_mail(
        "127.0.0.1", port=smtp.port, security="none", sender="Example <accounts@example.com>",
        base_url="https://app.example.com", app_name="Example", per_recipient=1000, **extra,
    )  # fmt: skip


def deliver(worker: Worker, loop_thread: LoopThread) -> Outcome:
    result: Outcome = loop_thread.run(worker.run_once())
    return result


def test_every_kind_of_mail_arrives_with_both_parts_and_its_link_works(
    space: pgusers.UserSpace, smtp: MailCatcher, worker: Worker, loop_thread: LoopThread
) -> None:
    mail_to(space, smtp)
    space.set_login_by_email(True)
    userid = space.create_user("ada", "pw-123456", "ada@example.com")
    space.request_password_reset("ada@example.com")
    space.request_email_verification(userid)
    space.request_login_link("ada@example.com")
    assert deliver(worker, loop_thread) == Outcome(3, 3, 0, 0)
    reset, verify, login = smtp.wait_for(3)
    for message in (reset, verify, login):
        text, html = parts(message)
        assert "Example" in text and "<html" in html
        assert message["From"] == "Example <accounts@example.com>"
        assert message["Message-ID"].startswith("<msg_")
    assert link_in(reset).startswith("https://app.example.com/account/reset?token=")
    assert space.verify_email(token_in(verify)) == OK
    found = space.find_user(userid=userid)
    assert found is not None and found["email_verified"]
    assert space.login_with_code("ada@example.com", code_in(login)).status == OK
    assert space.reset_password(token_in(reset), "pw-654321") == OK  # ends other tokens
    notices = [m.purpose for m in space.outbox(state="pending")]
    assert notices == ["password_changed"]  # the reset changed the password
    enrollment = space.begin_totp(userid)
    space.confirm_totp(userid, enrollment.factor_id, pyotp.TOTP(enrollment.secret).now())
    space.remove_factor(userid, enrollment.factor_id)
    assert deliver(worker, loop_thread).sent == 3
    subjects = [str(m["Subject"]) for m in smtp.wait_for(6)[3:]]
    assert subjects == [
        "Your Example password was changed",
        "A way to sign in was added to your Example account",
        "A way to sign in was removed from your Example account",
    ]
    assert all(m["To"] == "ada@example.com" for m in smtp.received)


def test_the_html_part_escapes_what_users_chose(
    space: pgusers.UserSpace, smtp: MailCatcher, worker: Worker, loop_thread: LoopThread
) -> None:
    mail_to(space, smtp)
    space.create_user("<b>ada</b>", "pw-123456", "ada@example.com")
    space.request_password_reset("ada@example.com")
    deliver(worker, loop_thread)
    _, html = parts(smtp.wait_for(1)[0])
    assert "<b>ada</b>" not in html and "&lt;b&gt;ada&lt;/b&gt;" in html


def test_a_refused_address_is_dead_at_once_and_an_outage_is_tried_again(
    space: pgusers.UserSpace,
    smtp: MailCatcher,
    worker: Worker,
    loop_thread: LoopThread,
    clock: Clock,
) -> None:
    mail_to(space, smtp)
    space.create_user("ada", "pw-123456", "ada@example.com")
    space.create_user("bob", "pw-123456", "bob@example.com")
    smtp.refuse.add("bob@example.com")
    space.request_password_reset("bob@example.com")
    assert deliver(worker, loop_thread) == Outcome(1, 0, 0, 1)
    assert "550" in (space.outbox(state="dead")[0].last_error or "")
    mail_to(space, MailCatcher())  # a port nobody listens on
    space.request_password_reset("ada@example.com")
    assert deliver(worker, loop_thread) == Outcome(1, 0, 1, 0)
    [waiting] = space.outbox(state="pending")
    assert waiting.attempts == 1 and waiting.last_error
    mail_to(space, smtp)
    assert deliver(worker, loop_thread).taken == 0  # not due yet
    clock.advance(11)
    assert deliver(worker, loop_thread) == Outcome(1, 1, 0, 0)
    assert [m["To"] for m in smtp.wait_for(1)] == ["ada@example.com"]


def test_webhook_calls_are_signed_and_retried_until_the_receiver_takes_them(
    space: pgusers.UserSpace,
    receiver: HookReceiver,
    worker: Worker,
    loop_thread: LoopThread,
    clock: Clock,
) -> None:
    hook, receiver.secret = space.add_webhook(receiver.url, ["user.created"])
    receiver.answer = lambda number: 500 if number == 1 else 204
    userid = space.create_user("ada", "pw-123456", "ada@example.com")
    assert deliver(worker, loop_thread) == Outcome(1, 0, 1, 0)
    clock.advance(11)
    assert deliver(worker, loop_thread) == Outcome(1, 1, 0, 0)
    first, second = receiver.wait_for(2)
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # one message
    assert second.payload["type"] == "user.created"
    assert second.payload["data"]["userid"] == userid
    # A rotated secret: the receiver with either secret verifies the call.
    old = receiver.secret
    receiver.secret = space.rotate_webhook_secret(hook) or ""
    space.create_user("bob", "pw-123456", "bob@example.com")
    deliver(worker, loop_thread)
    assert receiver.wait_for(3)[2].verified
    receiver.secret = old
    space.create_user("cy", "pw-123456", "cy@example.com")
    deliver(worker, loop_thread)
    assert receiver.wait_for(4)[3].verified
    receiver.secret = "whsec_" + "A" * 43 + "="  # someone else's secret
    space.create_user("dee", "pw-123456", "dee@example.com")
    deliver(worker, loop_thread)
    assert not receiver.wait_for(5)[4].verified


def test_a_slow_receiver_times_out_and_a_gone_one_is_dead(
    space: pgusers.UserSpace, receiver: HookReceiver, worker: Worker, loop_thread: LoopThread
) -> None:
    _, receiver.secret = space.add_webhook(receiver.url, ["user.created"])
    receiver.delay = 1.5  # the worker waits 1 s
    space.create_user("ada", "pw-123456", "ada@example.com")
    assert deliver(worker, loop_thread) == Outcome(1, 0, 1, 0)
    assert "Timeout" in (space.outbox(state="pending")[0].last_error or "")
    receiver.delay = 0
    receiver.answer = lambda number: 410
    space.create_user("bob", "pw-123456", "bob@example.com")
    assert deliver(worker, loop_thread) == Outcome(1, 0, 0, 1)


def test_dead_letters_are_listed_and_sent_again_from_the_command_line(
    space: pgusers.UserSpace, smtp: MailCatcher, worker: Worker, loop_thread: LoopThread,
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PGUSERS_SECRET_KEY", KEY)
    mail_to(space, smtp)
    space.create_user("ada", "pw-123456", "ada@example.com")
    smtp.refuse.add("ada@example.com")
    space.request_password_reset("ada@example.com")
    deliver(worker, loop_thread)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(main, ["--dsn", dsn, "--schema", schema, *args])

    listed = cli("outbox", "list", "--state", "dead")
    assert listed.exit_code == 0 and "reset_password" in listed.output and "550" in listed.output
    smtp.refuse.clear()
    assert cli("outbox", "retry", "--all-dead").exit_code == 0
    sent = cli("deliver", "--once")
    assert sent.exit_code == 0, sent.output
    assert "sent 1" in sent.output
    assert [m["To"] for m in smtp.wait_for(1)] == ["ada@example.com"]
    assert cli("outbox", "retry", "msg_nothing").exit_code == 1


@pytest.mark.slow
def test_two_workers_deliver_a_thousand_messages_exactly_once(
    space: pgusers.UserSpace,
    smtp: MailCatcher,
    aspace: pgusers.AsyncUserSpace,
    loop_thread: LoopThread,
    sql_conn: psycopg.Connection[Any],
    schema: str,
) -> None:
    mail_to(space, smtp)
    sql_conn.execute(f"""
        INSERT INTO "{schema}".outbox (id, channel, purpose, recipient, payload, created_at,
                                       due_at)
        SELECT 'msg_' || i, 'mail', 'password_changed', 'user' || i || '@example.com',
               jsonb_build_object('username', 'user' || i), now(), now()
        FROM generate_series(1, 1000) AS i
    """)
    workers = [Worker(aspace, name=f"w{i}", batch=25, poll=0.2) for i in range(2)]

    async def both() -> list[int]:
        stop = asyncio.Event()
        taken = Counter[str]()

        async def counted(worker: Worker) -> None:
            original = worker.space.take_messages

            async def take(*args: Any, **kwargs: Any) -> Any:
                messages = await original(*args, **kwargs)
                taken[worker.name] += len(messages)
                return messages

            worker.space = _Spy(worker.space, take)  # type: ignore[assignment]
            await worker.run(stop)

        runs = [asyncio.ensure_future(counted(w)) for w in workers]
        while len(smtp.received) < 1000:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*runs)
        return [taken["w0"], taken["w1"]]

    shares = loop_thread.run(both())
    ids = Counter(m["Message-ID"] for m in smtp.wait_for(1000))
    assert len(ids) == 1000 and set(ids.values()) == {1}
    assert sum(shares) == 1000 and min(shares) > 0  # both worked
    assert space.outbox_backlog() == (0, 0, 0.0)


class _Spy:
    """A userspace whose take_messages is replaced (to count what each worker took)."""

    def __init__(self, space: pgusers.AsyncUserSpace, take: Any) -> None:
        self._space, self.take_messages = space, take

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)


@pytest.mark.slow
def test_a_worker_killed_in_mid_send_loses_nothing(
    space: pgusers.UserSpace,
    worker: Worker,
    loop_thread: LoopThread,
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[Any],
) -> None:
    slow = MailCatcher(delay=0.3)
    slow.start()
    try:
        mail_to(space, slow)
        sql_conn.execute(f"""
            INSERT INTO "{schema}".outbox (id, channel, purpose, recipient, payload,
                                           created_at, due_at)
            SELECT 'msg_' || i, 'mail', 'password_changed', 'user' || i || '@example.com',
                   '{{}}', now(), now()
            FROM generate_series(1, 40) AS i
        """)
        command = [
            os.path.join(os.path.dirname(sys.executable), "pgusers"),
            "--dsn", dsn, "--schema", schema, "deliver", "--batch", "10", "--lease", "2",
            "--poll", "0.2",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, env={**os.environ, "PGUSERS_SECRET_KEY": KEY}, stderr=subprocess.DEVNULL
        )
        try:
            slow.wait_for(3, seconds=60)  # it is sending
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        before = len(slow.received)
        assert before < 40
        in_flight = [e for e in space.outbox(state="pending", limit=100) if e.attempts > 0]
        assert in_flight  # taken by the dead worker, not reported
        time.sleep(2.1)  # its lease runs out
        while space.outbox_backlog()[0]:
            deliver(worker, loop_thread)
        ids = Counter(m["Message-ID"] for m in slow.received)
        assert {f"<msg_{i}@example.com>" for i in range(1, 41)} <= set(ids)  # none lost
        assert all(count <= 2 for count in ids.values())  # at least once; a repeat is rare
    finally:
        slow.stop()


def test_every_purpose_has_both_templates_and_they_render(tmp_path: Any) -> None:
    from pgusers._core.outbox import MAIL_LIFETIMES, PURPOSES
    from pgusers.delivery import _mail

    settings = pgusers.MailSettings(
        "smtp.example.com", 587, "starttls", None, False, "a@example.com",
        "https://app.example.com", "Example", 5, False, 0.0,
    )  # fmt: skip
    (tmp_path / "password_changed.txt").write_text("Subject: Ours\n\nOur own words.\n")
    for override in (None, tmp_path):
        mailer = _mail.Mailer(settings, None, _mail.templates(override), 1.0)
        for purpose in PURPOSES:
            carries = purpose in MAIL_LIFETIMES
            message = pgusers.OutboxMessage(
                "msg_1", "mail", purpose, 1, "ada@example.com",
                {"username": "ada", "detail": {"kind": "totp", "user_agent": "Firefox"}},
                1, 0.0, "T" * 43 if carries else None,
                "123456" if purpose == "login_link" else None, 600.0 if carries else None,
            )  # fmt: skip
            text, html = parts(mailer.compose(message))
            assert "Example" in html or override
            assert ("T" * 43 in text) == carries
            if override is not None and purpose == "password_changed":
                assert mailer.compose(message)["Subject"] == "Ours"


def run_until_sent(worker: Worker, space: pgusers.UserSpace, loop_thread: LoopThread) -> float:
    """Run ``worker`` until the outbox has no pending message; the seconds it took."""

    async def running() -> float:
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.ensure_future(worker.run(stop))
        try:
            while await asyncio.to_thread(lambda: space.outbox_backlog()[0]):
                assert time.monotonic() - started < 60 and not task.done()
                await asyncio.sleep(0.02)
            return time.monotonic() - started
        finally:
            stop.set()
            await task

    result: float = loop_thread.run(running())
    return result


def test_a_worker_is_woken_by_the_change_that_writes_a_message(
    space: pgusers.UserSpace, smtp: MailCatcher, aspace: pgusers.AsyncUserSpace,
    loop_thread: LoopThread, dsn: str, server_dsn: str,
) -> None:  # fmt: skip
    if dsn != server_dsn:
        pytest.skip("through PgBouncer a notification is lost with its server connection")
    mail_to(space, smtp)
    space.create_user("ada", "pw-123456", "ada@example.com")
    worker = Worker(aspace, name="woken", poll=30)  # it would not look again for 30 s

    async def woken() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(worker.run(stop))
        await asyncio.sleep(0.5)  # listening, and idle
        await asyncio.to_thread(space.request_password_reset, "ada@example.com")
        while not smtp.received:
            assert not task.done()
            await asyncio.sleep(0.02)
        stop.set()
        await task

    started = time.monotonic()
    loop_thread.run(asyncio.wait_for(woken(), 20))
    assert time.monotonic() - started < 20  # well before its next look


def test_a_worker_that_cannot_listen_still_delivers_by_polling(
    space: pgusers.UserSpace, smtp: MailCatcher, aspace: pgusers.AsyncUserSpace,
    loop_thread: LoopThread,
) -> None:  # fmt: skip
    mail_to(space, smtp)
    space.create_user("ada", "pw-123456", "ada@example.com")
    space.request_password_reset("ada@example.com")
    worker = Worker(aspace, name="polling", poll=0.2, listen=False)
    run_until_sent(worker, space, loop_thread)
    assert [m["To"] for m in smtp.wait_for(1)] == ["ada@example.com"]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_goes_over_tls_signed_in_with_the_sealed_password(
    space: pgusers.UserSpace, aspace: pgusers.AsyncUserSpace, loop_thread: LoopThread,
    tmp_path: Any, security: str, clock: Clock,
) -> None:  # fmt: skip
    server_tls, client_tls = certificate(tmp_path)
    secure = MailCatcher(
        tls=server_tls, implicit=security == "tls", accounts={"mailer": "smtp-pw-1"}
    ).start()

    def mail_as(password: str) -> None:
        space.set_mail(
            "127.0.0.1", port=secure.port, security=security, sender="a@example.com",
            base_url="https://app.example.com", username="mailer", password=password,
        )  # fmt: skip

    try:
        mail_as("smtp-pw-1")
        space.create_user("ada", "pw-123456", "ada@example.com")
        space.request_password_reset("ada@example.com")
        trusting = Worker(aspace, name="tls", smtp_timeout=5, tls_context=client_tls)
        assert deliver(trusting, loop_thread) == Outcome(1, 1, 0, 0), space.outbox()
        assert [m["To"] for m in secure.wait_for(1)] == ["ada@example.com"]
        mail_as("wrong-pw")
        space.request_password_reset("ada@example.com")
        assert deliver(trusting, loop_thread) == Outcome(1, 0, 1, 0)  # tried again later
        assert "535" in (space.outbox(state="pending")[0].last_error or "")
        mail_as("smtp-pw-1")
        clock.advance(11)
        strict = Worker(aspace, name="strict", smtp_timeout=5)  # the system's roots only
        assert deliver(strict, loop_thread) == Outcome(1, 0, 1, 0)  # an unknown certificate
        assert "certificate" in (space.outbox(state="pending")[0].last_error or "").lower()
        clock.advance(30)
        assert deliver(trusting, loop_thread) == Outcome(1, 1, 0, 0)
        assert len(secure.wait_for(2)) == 2
    finally:
        secure.stop()
