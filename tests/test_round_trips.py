"""How many statements (round trips) each call sends: the figures the library's page gives."""

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from pgusers import Enrollment
from pgusers._core.factors import TOTP_PERIOD, totp_code
from pgusers._drivers import driver_async, driver_sync, shared

from .support import FAST_HASHER, Clock


def throttle_a_source(usp: Any) -> None:
    """Fail enough that the next login from 192.0.2.9 waits (10 minutes)."""
    usp.set_login_policy(source_limit=1)
    usp.login("ada", "wrong", source="192.0.2.9")


def disable_ada(usp: Any) -> None:
    usp.disable_user(1)


SETUP = {"login, throttled": throttle_a_source, "login, disabled": disable_ada}


EXPECTED = [
    ("create_user", lambda u, key: u.create_user("bob", "pw", "bob@example.com"), 2),
    ("validate_user", lambda u, key: u.validate_user("ada", "pw"), 2),
    ("validate_user, wrong password", lambda u, key: u.validate_user("ada", "no"), 2),
    ("validate_user, unknown user", lambda u, key: u.validate_user("nobody", "no"), 2),
    ("login", lambda u, key: u.login("ada", "pw", source="192.0.2.1"), 2),
    ("login, wrong password", lambda u, key: u.login("ada", "no", source="192.0.2.1"), 2),
    ("login, throttled", lambda u, key: u.login("ada", "pw", source="192.0.2.9"), 1),
    ("login, disabled", lambda u, key: u.login("ada", "pw"), 2),
    ("check_key", lambda u, key: u.check_key(key), 1),
    ("check_key, malformed key", lambda u, key: u.check_key("not a key"), 0),
    ("check_session", lambda u, key: u.check_session(key), 1),
    ("set_session_TTL", lambda u, key: u.set_session_TTL(3600), 1),
    ("find_user", lambda u, key: u.find_user(username="ada"), 1),
    ("modify_user", lambda u, key: u.modify_user(1, email="ada2@example.com"), 1),
    ("is_admin", lambda u, key: u.is_admin(1), 1),
    ("set_admin", lambda u, key: u.set_admin(1), 1),
    ("change_password", lambda u, key: u.change_password(1, "pw2"), 2),
    ("change_password, with the old one", lambda u, key: u.change_password(1, "pw2", "pw"), 3),
    ("kill_sessions", lambda u, key: u.kill_sessions(1), 1),
    ("delete_user", lambda u, key: u.delete_user(userid=1), 1),
    ("disable_user", lambda u, key: u.disable_user(1), 1),
    ("issue_token", lambda u, key: u.issue_token(1, "verify_email"), 1),
    ("verify_email", lambda u, key: u.verify_email(u.issue_token(1, "verify_email")), 2),
    ("reset_password", lambda u, key: u.reset_password(u.issue_token(1, "reset_password"), "x"), 4),
    ("reset_password, unknown token", lambda u, key: u.reset_password("A" * 43, "x"), 1),
    ("end_session", lambda u, key: u.end_session("A" * 16), 1),
    ("end_other_sessions", lambda u, key: u.end_other_sessions(key), 1),
    ("logging out by key", lambda u, key: u.logout(key), 1),
    ("logging out by key, malformed key", lambda u, key: u.logout("x"), 0),
    ("set_session_data", lambda u, key: u.set_session_data(key, {"cart": [1]}), 1),
    ("set_session_data, malformed key", lambda u, key: u.set_session_data("x", 1), 0),
    ("set_session_max_age", lambda u, key: u.set_session_max_age(60), 1),
    ("set_event_retention", lambda u, key: u.set_event_retention(30), 1),
    ("set_password_policy", lambda u, key: u.set_password_policy(breached="off"), 1),
    ("purge_events", lambda u, key: u.purge_events(0), 1),
    ("clear_login_failures", lambda u, key: u.clear_login_failures("ada"), 1),
    # BEGIN, LOCK, switch, COMMIT, then one batch that converts and one that finds none
    ("set_session_key_storage", lambda u, key: u.set_session_key_storage("hashed"), 6),
]


def counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The statements either driver sends from now on."""
    sent: list[bytes] = []
    real_fetch, real_fetch_async = shared.fetch, shared.fetch_async

    def count(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return real_fetch(cursor, fetch)

    async def count_async(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return await real_fetch_async(cursor, fetch)

    monkeypatch.setattr(driver_sync, "fetch", count)
    monkeypatch.setattr(driver_async, "fetch_async", count_async)
    return sent


@pytest.mark.parametrize(("name", "call", "statements"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_statements_per_call(
    usp: Any, api: str, monkeypatch: pytest.MonkeyPatch, name: Any, call: Any, statements: int
) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw")[0]
    SETUP.get(name, lambda usp: None)(usp)
    sent = counting(monkeypatch)
    call(usp, key)
    assert len(sent) == statements, sent


class Enrolled(NamedTuple):
    """A user with a confirmed TOTP factor and recovery codes, at a new time step."""

    userid: int
    factor: Enrollment
    codes: list[str]
    key: str


def enrolled(usp: Any, clock: Clock) -> Enrolled:
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    userid = usp.create_user("ada", "pw", "ada@example.com")
    key = usp.login("ada", "pw").key
    factor = usp.begin_totp(userid)
    usp.confirm_totp(userid, factor.factor_id, totp_code(factor.secret, clock.now))
    clock.advance(TOTP_PERIOD)
    return Enrolled(userid, factor, usp.new_recovery_codes(userid), key)


def now_code(e: Enrolled) -> str:
    return totp_code(e.factor.secret, time.time())


FACTOR_CALLS: list[tuple[str, Callable[[Any, Enrolled], object], int]] = [
    ("check_session", lambda u, e: u.check_session(e.key), 1),
    ("check_session, malformed key", lambda u, e: u.check_session("x"), 0),
    ("begin_totp", lambda u, e: u.begin_totp(e.userid), 1),
    ("new_recovery_codes", lambda u, e: u.new_recovery_codes(e.userid), 1),
    ("factors", lambda u, e: u.factors(e.userid), 1),
    ("remove_factor", lambda u, e: u.remove_factor(e.userid, e.factor.factor_id), 1),
    ("login, second factor due", lambda u, e: u.login("ada", "pw"), 2),
    ("validate_user, second factor due", lambda u, e: u.validate_user("ada", "pw"), 2),
    ("reauthenticate, password", lambda u, e: u.reauthenticate(e.key, password="pw"), 2),
    ("reauthenticate, totp", lambda u, e: u.reauthenticate(e.key, totp=now_code(e)), 2),
]
"""What each call of second factors sends, on a userspace with a secret key."""

TICKET_CALLS: list[tuple[str, Callable[[Any, Enrolled, str], object], int]] = [
    ("complete_login, totp", lambda u, e, t: u.complete_login(t, totp=now_code(e)), 2),
    (
        "complete_login, recovery code",
        lambda u, e, t: u.complete_login(t, recovery_code=e.codes[0]),
        2,
    ),
    ("complete_login, wrong code", lambda u, e, t: u.complete_login(t, totp="12345x"), 2),
    ("complete_login, malformed ticket", lambda u, e, t: u.complete_login("x", totp="123456"), 0),
]
"""What each answer to a login's ticket sends (the login itself not counted)."""


@pytest.fixture
def keyed(open_userspace: Callable[..., Any], dsn: str, schema: str) -> Iterator[Any]:
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key="k" * 32)
    yield space
    space.close()


@pytest.mark.parametrize(
    ("name", "call", "statements"), FACTOR_CALLS, ids=[e[0] for e in FACTOR_CALLS]
)
def test_statements_per_second_factor_call(
    keyed: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, name: str, call: Any, statements: int
) -> None:
    e = enrolled(keyed, clock)
    sent = counting(monkeypatch)
    call(keyed, e)
    assert len(sent) == statements, sent


@pytest.mark.parametrize(
    ("name", "call", "statements"), TICKET_CALLS, ids=[e[0] for e in TICKET_CALLS]
)
def test_statements_per_answer_to_a_ticket(
    keyed: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch, name: str, call: Any, statements: int
) -> None:
    e = enrolled(keyed, clock)
    ticket = keyed.login("ada", "pw").ticket
    sent = counting(monkeypatch)
    call(keyed, e, ticket)
    assert len(sent) == statements, sent


PASSKEY_CALLS: list[tuple[str, str, int]] = [
    ("finish_passkey_login", "good", 2),
    ("finish_passkey_login, wrong origin", "bent", 2),
    ("finish_passkey_login, used challenge", "used", 2),
    ("complete_login, passkey", "second step", 2),
    ("begin_passkey_login", "begin", 1),
]
"""What a passkey login sends beside its signature check (the issue of passkeys asks
two statements at most)."""


@pytest.mark.parametrize(
    ("name", "case", "statements"), PASSKEY_CALLS, ids=[e[0] for e in PASSKEY_CALLS]
)
def test_statements_per_passkey_login(
    usp: Any, monkeypatch: pytest.MonkeyPatch, name: str, case: str, statements: int
) -> None:
    from .authenticator import Authenticator

    origin = "https://example.com"
    usp.set_webauthn("example.com", "Example", [origin])
    usp.create_user("ada", "pw", "ada@example.com")
    phone = Authenticator(origin)
    key = usp.login("ada", "pw").key
    begun = usp.begin_passkey_registration(key)
    usp.finish_passkey_registration(key, begun.challenge_id, phone.create(begun.options))
    if case == "second step":
        ticket = usp.login("ada", "pw").ticket
        begun = usp.begin_passkey_login(ticket=ticket)
        answer = phone.get(begun.options)
        sent = counting(monkeypatch)
        assert usp.complete_login(ticket, passkey=answer).status == 0  # OK
    elif case == "begin":
        sent = counting(monkeypatch)
        usp.begin_passkey_login()
    else:
        begun = usp.begin_passkey_login()
        answer = phone.get(begun.options, origin="https://evil.test" if case == "bent" else None)
        if case == "used":
            usp.finish_passkey_login(begun.challenge_id, answer)
        sent = counting(monkeypatch)
        usp.finish_passkey_login(begun.challenge_id, answer)
    assert len(sent) == statements, sent


def mail_set_up(usp: Any) -> None:
    usp.set_mail("smtp.example.com", sender="a@example.com", base_url="https://x.example")
    usp.set_login_by_email(True)


def a_code(usp: Any) -> str:
    usp.request_login_link("ada@example.com")
    [message] = usp.take_messages("w")
    return str(message.code)


MAIL_CALLS: list[tuple[str, Callable[[Any], object], int]] = [
    ("request_password_reset", lambda u: u.request_password_reset("ada@example.com"), 1),
    ("request_password_reset, unknown address", lambda u: u.request_password_reset("x@y.z"), 1),
    ("request_login_link", lambda u: u.request_login_link("ada@example.com"), 1),
    ("request_login_link, unknown address", lambda u: u.request_login_link("x@y.z"), 1),
    ("login_with_code, wrong code", lambda u: u.login_with_code("ada@example.com", "000000"), 3),
    ("login_with_link, unknown", lambda u: u.login_with_link("A" * 43), 1),
    ("take_messages, none due", lambda u: u.take_messages("w"), 1),
]
"""What mail costs the caller: the same for an address nobody has as for one somebody
has (a wrong code: the lookup, the attempt, and the failure counted)."""


@pytest.mark.parametrize(("name", "call", "statements"), MAIL_CALLS, ids=[e[0] for e in MAIL_CALLS])
def test_statements_per_mail_call(
    usp: Any, monkeypatch: pytest.MonkeyPatch, name: str, call: Any, statements: int
) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    mail_set_up(usp)
    if "wrong code" in name:
        a_code(usp)
    sent = counting(monkeypatch)
    call(usp)
    assert len(sent) == statements, sent


def test_a_code_signs_in_with_two_statements(usp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    mail_set_up(usp)
    code = a_code(usp)
    sent = counting(monkeypatch)
    assert usp.login_with_code("ada@example.com", code).status == 0  # OK
    assert len(sent) == 2, sent
