"""The outbox, as the library writes and hands it out: a message is written by the
statement whose change causes it (none for a change rolled back), mail carries no
token at rest (the token is issued as a worker takes it), webhooks get the events
they asked for, workers never share a message, failures back off into the dead
letters, and sign-in by a mailed link or code."""

from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import EXPIRED, MFA_REQUIRED, NOT_FOUND, OK, REJECTED, THROTTLED

from .support import FAST_HASHER, Clock, only

KEY = "outbox-tests-secret-key"


@pytest.fixture
def usp(open_userspace: Any, dsn: str, schema: str) -> Any:
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    yield space
    space.close()


@pytest.fixture
def mailing(usp: Any) -> Any:
    """A userspace that sends mail (to a server nobody listens on: nothing is sent here)."""
    usp.set_mail(
        "127.0.0.1", port=2525, security="none", sender="accounts@example.com",
        base_url="https://app.example.com/", app_name="Example",
    )  # fmt: skip
    return usp


def outbox_rows(sql_conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    columns = "channel, purpose, recipient, payload"
    query = f'SELECT {columns} FROM "{schema}".outbox ORDER BY created_at, id'
    return sql_conn.execute(query).fetchall()


def test_mail_settings_are_kept_and_the_password_sealed(
    usp: Any, sql_conn: psycopg.Connection[Any], schema: str
) -> None:
    assert usp.mail_settings() is None
    usp.set_mail(
        "smtp.example.com", sender="Accounts <accounts@example.com>",
        base_url="https://app.example.com", username="mailer", password="smtp-password-1",
    )  # fmt: skip
    kept = usp.mail_settings()
    assert (kept.host, kept.port, kept.security, kept.username, kept.has_password) == (
        "smtp.example.com", 587, "starttls", "mailer", True,
    )  # fmt: skip
    stored = only(sql_conn.execute(f'SELECT password FROM "{schema}".mail_settings').fetchone())
    assert "smtp-password-1" not in stored
    assert usp.remove_mail() == OK
    assert usp.mail_settings() is None
    assert usp.remove_mail() == NOT_FOUND


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"security": "ssl"}, "security must be one of"),
        ({"base_url": "http://app.example.com"}, "https"),
        ({"port": 0}, "port"),
        ({"sender": "not an address"}, "not a valid address"),
        ({"password": "x"}, "username"),
    ],
)
def test_bad_mail_settings_are_refused(usp: Any, arguments: dict[str, Any], message: str) -> None:
    given = {"sender": "a@example.com", "base_url": "https://app.example.com"} | arguments
    with pytest.raises(pgusers.BadCallError, match=message):
        usp.set_mail("smtp.example.com", **given)
    assert usp.mail_settings() is None


def test_a_reset_request_queues_a_mail_without_a_token(
    mailing: Any, sql_conn: psycopg.Connection[Any], schema: str
) -> None:
    userid = mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.request_password_reset("ADA@example.com")
    mailing.request_password_reset("nobody@example.com")  # the same answer: None
    rows = outbox_rows(sql_conn, schema)
    assert [(c, p, r) for c, p, r, _ in rows] == [("mail", "reset_password", "ada@example.com")]
    tokens = only(sql_conn.execute(f'SELECT count(*) FROM "{schema}".tokens').fetchone())
    assert tokens == 0  # none until a worker sends the mail
    [message] = mailing.take_messages("worker-1")
    assert (message.purpose, message.userid, message.recipient) == (
        "reset_password", userid, "ada@example.com",
    )  # fmt: skip
    assert message.token is not None and message.token not in str(rows)
    assert mailing.reset_password(message.token, "pw-654321") == OK
    assert mailing.validate_user("ada", "pw-654321").userid == userid


def test_requests_need_mail_set_up_and_sign_in_by_email_turned_on(usp: Any) -> None:
    usp.create_user("ada", "pw-123456", "ada@example.com")
    with pytest.raises(pgusers.BadCallError, match="mail is not set up"):
        usp.request_password_reset("ada@example.com")
    usp.set_mail("smtp.example.com", sender="a@example.com", base_url="https://x.example")
    with pytest.raises(pgusers.BadCallError, match="sign-in by email is off"):
        usp.request_login_link("ada@example.com")
    usp.set_login_by_email(True)
    usp.request_login_link("ada@example.com")
    assert [m.purpose for m in usp.outbox()] == ["login_link"]


def test_a_change_rolled_back_sends_nothing(
    mailing: Any, sql_conn: psycopg.Connection[Any], schema: str
) -> None:
    userid = mailing.create_user("ada", "pw-123456", "ada@example.com")
    # A failure late in the statement (here, a trigger on the events it writes) rolls
    # back the change, its events and its messages together.
    sql_conn.execute(f"""
        CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER refuse AFTER INSERT ON "{schema}".events FOR EACH ROW
        WHEN (NEW.kind = 'password.changed') EXECUTE FUNCTION "{schema}".refuse();
    """)
    with pytest.raises(pgusers.PgUsersError):
        mailing.change_password(userid, "pw-999999", "pw-123456")
    assert outbox_rows(sql_conn, schema) == []
    assert mailing.validate_user("ada", "pw-123456").userid == userid
    sql_conn.execute(f'DROP TRIGGER refuse ON "{schema}".events')
    mailing.change_password(userid, "pw-999999", "pw-123456")
    assert [p for _, p, _, _ in outbox_rows(sql_conn, schema)] == ["password_changed"]


def test_the_per_recipient_limit_drops_mail_past_it(mailing: Any, clock: Clock) -> None:
    mailing.set_mail(
        "127.0.0.1", sender="a@example.com", base_url="https://x.example", per_recipient=2
    )
    mailing.create_user("ada", "pw-123456", "ada@example.com")
    for _ in range(4):
        mailing.request_password_reset("ada@example.com")
    assert len(mailing.outbox()) == 2
    clock.advance(3601)
    mailing.request_password_reset("ada@example.com")
    assert len(mailing.outbox()) == 3


def test_two_workers_never_take_one_message(mailing: Any, clock: Clock) -> None:
    for i in range(6):
        mailing.create_user(f"user{i}", "pw-123456", f"user{i}@example.com")
        mailing.request_password_reset(f"user{i}@example.com")
    first = mailing.take_messages("one", limit=4, lease=30)
    second = mailing.take_messages("two", limit=4, lease=30)
    assert len(first) == 4 and len(second) == 2
    assert not {m.message_id for m in first} & {m.message_id for m in second}
    assert mailing.take_messages("three") == []
    clock.advance(31)  # worker "one" died: its lease ran out, its messages are due again
    for message in second:
        assert mailing.message_sent(message.message_id) == OK
    again = mailing.take_messages("three")
    assert {m.message_id for m in again} == {m.message_id for m in first}
    assert {m.attempts for m in again} == {2}


def test_failures_back_off_then_go_to_the_dead_letters_and_can_be_retried(
    mailing: Any, clock: Clock
) -> None:
    mailing.set_delivery_attempts(3)
    mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.request_password_reset("ada@example.com")
    waits = []
    for attempt in range(1, 4):
        [message] = mailing.take_messages("w")
        assert message.attempts == attempt
        state = mailing.message_failed(message.message_id, "451 try later")
        if attempt < 3:
            assert state == "pending"
            [entry] = mailing.outbox()
            waits.append(entry.due_at - clock.now)
            assert mailing.take_messages("w") == []  # not yet due
            clock.advance(waits[-1] + 1)
        else:
            assert state == "dead"
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20  # doubled, with jitter
    [dead] = mailing.outbox(state="dead")
    assert (dead.attempts, dead.last_error) == (3, "451 try later")
    clock.advance(600)  # dead: not taken again, however long it waits
    assert mailing.take_messages("w") == []
    assert mailing.retry_message(dead.message_id) == OK
    assert mailing.retry_message(dead.message_id) == NOT_FOUND  # pending now, not dead
    [again] = mailing.take_messages("w")
    assert again.attempts == 1


def test_a_message_whose_address_changed_meanwhile_carries_no_token(mailing: Any) -> None:
    userid = mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.request_password_reset("ada@example.com")
    mailing.modify_user(userid, email="ada@example.org")
    assert mailing.take_messages("w") == []
    [dead] = mailing.outbox(state="dead")
    assert "no longer" in dead.last_error


def test_a_token_mail_too_old_to_use_is_not_sent(mailing: Any, clock: Clock) -> None:
    mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.request_password_reset("ada@example.com")
    clock.advance(3601)
    assert mailing.take_messages("w") == []
    assert mailing.outbox(state="dead")[0].last_error == "expired before it could be sent"


def test_an_email_change_mail_goes_to_the_new_address(mailing: Any) -> None:
    userid = mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.create_user("bob", "pw-123456", "bob@example.com")
    with pytest.raises(pgusers.BadCallError, match="already exists"):
        mailing.request_email_change(userid, "bob@example.com")
    assert mailing.request_email_change(userid, "ada@example.org") == OK
    link, notice = sorted(mailing.take_messages("w"), key=lambda m: m.purpose)
    assert (notice.purpose, notice.recipient, notice.token) == (
        "email_changing", "ada@example.com", None,
    )  # fmt: skip
    assert notice.payload["detail"]["new_email"] == "ada@example.org"
    message = link
    assert (message.purpose, message.recipient) == ("change_email", "ada@example.org")
    assert mailing.verify_email(message.token) == OK
    found = mailing.find_user(userid=userid)
    assert found is not None and found["email"] == "ada@example.org"
    assert mailing.request_email_verification(userid) == NOT_FOUND  # verified already
    assert mailing.request_email_verification(10**9) == NOT_FOUND


def test_webhooks_get_the_kinds_they_asked_for_with_their_secrets(
    usp: Any, sql_conn: psycopg.Connection[Any], schema: str
) -> None:
    hook, secret = usp.add_webhook("https://hooks.example.com/in", ["user.created"])
    every, _ = usp.add_webhook("http://127.0.0.1:9/all", ["*"], description="all of it")
    assert hook.startswith("wh_") and secret.startswith("whsec_")
    stored = sql_conn.execute(f'SELECT secret FROM "{schema}".webhooks').fetchall()
    assert secret not in str(stored)
    userid = usp.create_user("ada", "pw-123456", "ada@example.com")
    usp.login("ada", "pw-123456")
    taken = usp.take_messages("w", limit=50)
    kinds = sorted((m.recipient == hook, m.purpose) for m in taken)
    assert kinds == [(False, "login.succeeded"), (False, "user.created"), (True, "user.created")]
    mine = next(m for m in taken if m.recipient == hook)
    assert mine.url == "https://hooks.example.com/in" and mine.secrets == (secret,)
    assert mine.payload["type"] == "user.created"
    assert mine.payload["data"]["userid"] == userid
    assert [w.webhook_id for w in usp.webhooks()] == [hook, every]
    new_secret = usp.rotate_webhook_secret(hook, grace=60)
    assert new_secret not in (None, secret)
    usp.create_user("bob", "pw-123456", "bob@example.com")
    signed = next(m for m in usp.take_messages("w", limit=50) if m.recipient == hook)
    assert signed.secrets == (new_secret, secret)
    assert usp.remove_webhook(hook) == OK
    assert usp.remove_webhook(hook) == NOT_FOUND
    assert usp.rotate_webhook_secret(hook) is None


@pytest.mark.parametrize(
    ("url", "kinds", "message"),
    [
        ("ftp://example.com", ["*"], "https"),
        ("https://example.com", [], "at least one"),
        ("https://example.com", ["Users Created"], "not a kind"),
        ("https://example.com", "user.created", "must be a list"),
    ],
)
def test_bad_webhooks_are_refused(usp: Any, url: str, kinds: Any, message: str) -> None:
    with pytest.raises(pgusers.BadCallError, match=message):
        usp.add_webhook(url, kinds)
    assert usp.webhooks() == []


def test_webhooks_and_mail_need_the_secret_key(open_userspace: Any, dsn: str, schema: str) -> None:
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    try:
        with pytest.raises(pgusers.BadCallError, match="secret key"):
            space.add_webhook("https://hooks.example.com", ["*"])
        with pytest.raises(pgusers.BadCallError, match="secret key"):
            space.set_mail(
                "smtp.example.com", sender="a@example.com", base_url="https://x.example",
                username="u", password="p",
            )  # fmt: skip
    finally:
        space.close()


def test_a_removed_webhooks_calls_are_dropped(usp: Any) -> None:
    hook, _ = usp.add_webhook("https://hooks.example.com/in", ["user.created"])
    usp.create_user("ada", "pw-123456", "ada@example.com")
    usp.remove_webhook(hook)
    assert usp.take_messages("w") == []
    assert usp.outbox(state="dead")[0].last_error == "the webhook was removed"


# -- sign-in by email ----------------------------------------------------------------


@pytest.fixture
def by_email(mailing: Any) -> Any:
    mailing.set_login_by_email(True)
    return mailing


def link_and_code(usp: Any) -> tuple[str, str]:
    [message] = [m for m in usp.take_messages("w", limit=50) if m.purpose == "login_link"]
    assert message.code is not None and len(message.code) == 6
    return message.token, message.code


def test_a_link_signs_in_once(by_email: Any) -> None:
    userid = by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.request_login_link("ada@example.com", source="203.0.113.9")
    token, _ = link_and_code(by_email)
    outcome = by_email.login_with_link(token, user_agent="Firefox")
    assert (outcome.status, outcome.userid) == (OK, userid)
    assert by_email.check_session(outcome.key).auth_methods == ("email",)
    assert by_email.login_with_link(token).status == NOT_FOUND
    assert by_email.login_with_link("not-a-token").status == NOT_FOUND


def test_a_code_signs_in_once_and_spends_the_link(by_email: Any) -> None:
    userid = by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.request_login_link("ada@example.com")
    token, code = link_and_code(by_email)
    outcome = by_email.login_with_code("Ada@Example.com", f"{code[:3]} {code[3:]}")
    assert (outcome.status, outcome.userid) == (OK, userid)
    assert by_email.login_with_code("ada@example.com", code).status == REJECTED
    assert by_email.login_with_link(token).status == NOT_FOUND


def test_a_code_works_only_with_its_own_address(by_email: Any) -> None:
    by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.create_user("bob", "pw-123456", "bob@example.com")
    by_email.request_login_link("ada@example.com")
    _, code = link_and_code(by_email)
    assert by_email.login_with_code("bob@example.com", code).status == REJECTED
    assert by_email.login_with_code("ada@example.com", code).status == OK


def test_wrong_codes_are_throttled_per_address_and_source(by_email: Any, clock: Clock) -> None:
    by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.request_login_link("ada@example.com")
    _, code = link_and_code(by_email)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    statuses = [
        by_email.login_with_code("ada@example.com", wrong, source="198.51.100.7").status
        for _ in range(8)
    ]
    assert statuses[:5] == [REJECTED] * 5 and THROTTLED in statuses
    refused = by_email.login_with_code("ada@example.com", code, source="198.51.100.7")
    assert refused.status == THROTTLED and refused.retry_after > 0
    clock.advance(refused.retry_after + 1)
    assert by_email.login_with_code("ada@example.com", code, source="198.51.100.7").status == OK


def test_a_code_expires_after_ten_minutes(by_email: Any, clock: Clock) -> None:
    by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.request_login_link("ada@example.com")
    _, code = link_and_code(by_email)
    clock.advance(601)
    assert by_email.login_with_code("ada@example.com", code).status == EXPIRED


def test_a_second_factor_still_applies(by_email: Any) -> None:
    import pyotp

    userid = by_email.create_user("ada", "pw-123456", "ada@example.com")
    enrollment = by_email.begin_totp(userid)
    by_email.confirm_totp(userid, enrollment.factor_id, pyotp.TOTP(enrollment.secret).now())
    by_email.request_login_link("ada@example.com")
    token, _ = link_and_code(by_email)
    outcome = by_email.login_with_link(token)
    assert outcome.status == MFA_REQUIRED and outcome.factors == ("totp",)


def test_a_disabled_user_or_the_setting_off_opens_nothing(by_email: Any) -> None:
    userid = by_email.create_user("ada", "pw-123456", "ada@example.com")
    by_email.request_login_link("ada@example.com")
    token, code = link_and_code(by_email)
    by_email.set_login_by_email(False)
    assert by_email.login_with_link(token).status == REJECTED
    by_email.set_login_by_email(True)
    by_email.request_login_link("ada@example.com")
    token, code = link_and_code(by_email)
    by_email.disable_user(userid)
    assert by_email.login_with_code("ada@example.com", code).status == REJECTED
    by_email.request_login_link("ada@example.com")
    assert by_email.take_messages("w") == []  # a disabled user gets no mail


def test_a_known_and_an_unknown_address_cost_the_same_statements(
    by_email: Any, sql_conn: psycopg.Connection[Any], schema: str
) -> None:
    by_email.create_user("ada", "pw-123456", "ada@example.com")
    known = by_email.request_login_link("ada@example.com")
    unknown = by_email.request_login_link("nobody@example.com")
    assert known is None and unknown is None
    assert [p for _, p, _, _ in outbox_rows(sql_conn, schema)] == ["login_link"]


def test_each_change_writes_its_event_and_no_secret(usp: Any) -> None:
    usp.set_mail(
        "smtp.example.com", sender="a@example.com", base_url="https://x.example",
        username="mailer", password="smtp-password-1",
    )  # fmt: skip
    usp.create_user("ada", "pw-123456", "ada@example.com")
    usp.request_password_reset("ada@example.com")
    [message] = usp.take_messages("w")
    usp.message_failed(message.message_id, "550 no such mailbox", permanent=True)
    usp.retry_message(message.message_id)
    hook, secret = usp.add_webhook("https://hooks.example.com/in", ["user.created"])
    rotated = usp.rotate_webhook_secret(hook)
    usp.remove_webhook(hook)
    usp.remove_mail()
    events = list(usp.events(newest_first=False))
    kinds = [e.kind for e in events if e.kind.startswith(("mail.", "webhook."))]
    assert kinds == [
        "mail.changed", "mail.queued", "mail.retried", "webhook.added", "webhook.rotated",
        "webhook.removed", "mail.changed",
    ]  # fmt: skip
    for leaked in ("smtp-password-1", secret, rotated, message.token):
        assert leaked not in str(events)


def test_a_sign_in_from_a_new_device_is_told_when_asked_for(mailing: Any) -> None:
    mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.login("ada", "pw-123456", user_agent="Firefox")
    mailing.login("ada", "pw-123456", user_agent="Curl")
    assert mailing.outbox() == []  # off by default
    mailing.set_mail(
        "127.0.0.1", sender="a@example.com", base_url="https://x.example", new_device=True
    )
    assert mailing.mail_settings().new_device
    mailing.login("ada", "pw-123456", user_agent="Firefox")  # seen before
    mailing.login("ada", "pw-123456", user_agent="Safari")  # new
    [notice] = mailing.take_messages("w")
    assert notice.purpose == "new_device"
    assert notice.payload["detail"]["user_agent"] == "Safari"
    mailing.create_user("bob", "pw-123456", "bob@example.com")
    mailing.login("bob", "pw-123456", user_agent="Safari")  # a first sign-in is no news
    assert mailing.take_messages("w") == []


def test_sent_messages_go_with_the_events_retention(mailing: Any, clock: Clock) -> None:
    mailing.set_event_retention(1)
    mailing.create_user("ada", "pw-123456", "ada@example.com")
    mailing.request_password_reset("ada@example.com")
    [sent] = mailing.take_messages("w")
    mailing.message_sent(sent.message_id)
    mailing.request_password_reset("nobody@example.com")  # nothing
    clock.advance(86400 + 60)
    mailing.request_password_reset("ada@example.com")
    assert [e.state for e in mailing.outbox()] == ["pending", "sent"]  # kept a day
    [waiting] = mailing.take_messages("w")  # the worker's next take purges the old
    assert [e.message_id for e in mailing.outbox()] == [waiting.message_id]
