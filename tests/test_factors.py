"""Second factors: TOTP and recovery codes, logins that need one, check_session and
reauthentication, on both APIs, with the clock moved through ``time.time``."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import (
    EXPIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    BadCallError,
    Enrollment,
)
from pgusers._core.factors import TOTP_PERIOD, recovery_digest, totp_code

from .support import FAST_HASHER, Clock, only

KEY = "a-test-secret-key-long-enough-for-aes"
NEW_KEY = "another-test-secret-key-as-long"
PASSWORD = "s3cret-pw"


@pytest.fixture
def steady(clock: Clock) -> Clock:
    """The clock, at the start of a TOTP time step (a second into it)."""
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    return clock


@pytest.fixture
def mfa(open_userspace: Callable[..., Any], dsn: str, schema: str) -> Iterator[Any]:
    """A userspace with a secret key, on the API under test."""
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    yield space
    space.close()


@pytest.fixture
def ada(mfa: Any) -> int:
    return int(mfa.create_user("ada", PASSWORD, "ada@example.com"))


def enroll(usp: Any, userid: int, clock: Clock, label: str = "phone") -> Enrollment:
    """A confirmed TOTP factor; the clock then moves to the next step, so the code
    that confirmed it is not the one the test uses next."""
    enrollment: Enrollment = usp.begin_totp(userid, label=label)
    assert usp.confirm_totp(userid, enrollment.factor_id, code(enrollment, clock)) == OK
    clock.advance(TOTP_PERIOD)
    return enrollment


def code(enrollment: Enrollment, clock: Clock, steps: int = 0) -> str:
    return totp_code(enrollment.secret, clock.now + steps * TOTP_PERIOD)


def race(usp: pgusers.UserSpace, tickets: list[str], **answer: str) -> list[pgusers.Status]:
    """Answer every ticket at once, one thread each; the statuses."""
    barrier = threading.Barrier(len(tickets))
    outcomes: list[pgusers.Status] = []

    def answer_with(ticket: str) -> None:
        barrier.wait()
        outcomes.append(usp.complete_login(ticket, **answer).status)

    threads = [threading.Thread(target=answer_with, args=(ticket,)) for ticket in tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def ticket_of(usp: Any, name: str = "ada", password: str = PASSWORD, **kwargs: Any) -> str:
    outcome = usp.login(name, password, **kwargs)
    assert outcome.status == MFA_REQUIRED, outcome
    return str(outcome.ticket)


# -- enrolling -------------------------------------------------------------------------


def test_enrolling_gives_the_secret_its_uri_and_a_qr_code(
    mfa: Any, ada: int, steady: Clock
) -> None:
    enrollment = mfa.begin_totp(ada, label="phone")
    assert len(enrollment.secret) >= 32 and enrollment.secret.isupper()
    assert enrollment.uri.startswith("otpauth://totp/pgusers:ada?")
    assert f"secret={enrollment.secret}" in enrollment.uri
    assert enrollment.qr_svg.startswith("<svg") and "</svg>" in enrollment.qr_svg
    listed = mfa.factors(ada)
    assert [(f.factor_id, f.kind, f.label, f.confirmed) for f in listed.factors] == [
        (enrollment.factor_id, "totp", "phone", False)
    ]
    assert mfa.login("ada", PASSWORD).status == OK  # not confirmed: no second factor yet


def test_a_factor_is_confirmed_by_a_right_code_only(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = mfa.begin_totp(ada)
    wrong = "000000" if code(enrollment, steady) != "000000" else "111111"
    assert mfa.confirm_totp(ada, enrollment.factor_id, wrong) == REJECTED
    assert mfa.confirm_totp(ada, enrollment.factor_id, code(enrollment, steady)) == OK
    assert mfa.confirm_totp(ada, enrollment.factor_id, code(enrollment, steady)) == NOT_FOUND
    assert mfa.factors(ada).factors[0].confirmed is True
    assert mfa.login("ada", PASSWORD).status == MFA_REQUIRED


def test_an_enrollment_expires_after_15_minutes(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = mfa.begin_totp(ada)
    steady.advance(15 * 60)
    assert mfa.confirm_totp(ada, enrollment.factor_id, code(enrollment, steady)) == NOT_FOUND
    assert mfa.factors(ada).factors == ()


def test_enrolling_needs_a_secret_key_and_a_user(
    mfa: Any, ada: int, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with pytest.raises(BadCallError, match="no user has userid 999"):
        mfa.begin_totp(999)
    mfa.close()
    keyless = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    try:
        with pytest.raises(BadCallError, match="secret_key="):
            keyless.begin_totp(ada)
        assert keyless.factors(ada).factors == ()
    finally:
        keyless.close()


def test_the_secret_is_stored_sealed_and_opens_only_under_its_key(
    mfa: Any,
    ada: int,
    steady: Clock,
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    enrollment = enroll(mfa, ada, steady)
    stored = only(sql_conn.execute(f"SELECT secret FROM {schema}.factors").fetchone())
    assert enrollment.secret not in stored and stored.startswith("v1:")
    ticket = ticket_of(mfa)
    mfa.close()
    other = open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key="another key, long enough"
    )
    try:
        with pytest.raises(BadCallError, match="key id"):
            other.complete_login(ticket, totp=code(enrollment, steady))
    finally:
        other.close()
    # The old key among others opens it; the first key of the list seals new ones.
    both = open_userspace(
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        secret_key=["another key, long enough", KEY],
    )
    try:
        assert both.complete_login(ticket, totp=code(enrollment, steady)).status == OK
    finally:
        both.close()


# -- logging in with a second factor ----------------------------------------------------


def test_a_login_with_a_factor_gives_a_ticket_and_no_session(
    mfa: Any, ada: int, steady: Clock
) -> None:
    enroll(mfa, ada, steady)
    outcome = mfa.login("ada", PASSWORD)
    assert (outcome.status, outcome.key, outcome.userid) == (MFA_REQUIRED, "", ada)
    assert outcome.factors == ("totp",)
    assert len(outcome.ticket) == 43
    mfa.new_recovery_codes(ada)
    assert mfa.login("ada", PASSWORD).factors == ("totp", "recovery_code")
    assert list(mfa.sessions(ada)) == []
    # A wrong password still says nothing of factors.
    assert mfa.login("ada", "wrong").status == REJECTED


def test_validate_user_never_skips_a_second_factor(mfa: Any, ada: int, steady: Clock) -> None:
    enroll(mfa, ada, steady)
    assert mfa.validate_user("ada", PASSWORD) == ("", False, None)
    assert list(mfa.sessions(ada)) == []
    (event,) = [e for e in mfa.events(kinds="login.failed")]
    assert event.detail == {"reason": "second factor due"}


def test_a_right_code_completes_the_login(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    ticket = ticket_of(mfa, source="192.0.2.1", user_agent="phone app")
    done = mfa.complete_login(ticket, totp=code(enrollment, steady))
    assert (done.status, done.userid, done.admin) == (OK, ada, False)
    info = mfa.check_session(done.key)
    assert info.auth_methods == ("password", "totp")
    assert info.authenticated_at == pytest.approx(steady.now)
    assert mfa.check_key(done.key) == (OK, "ada", ada, None)
    (session,) = mfa.sessions(ada)
    assert (session.source, session.user_agent) == ("192.0.2.1", "phone app")
    # The ticket is spent.
    assert mfa.complete_login(ticket, totp=code(enrollment, steady)).status == NOT_FOUND


def test_codes_of_the_neighbouring_steps_are_accepted_and_no_further(
    mfa: Any, ada: int, steady: Clock
) -> None:
    enrollment = enroll(mfa, ada, steady)
    steady.advance(10 * TOTP_PERIOD)
    early = code(enrollment, steady, steps=-2)
    assert mfa.complete_login(ticket_of(mfa), totp=early).status == REJECTED
    for steps in (-1, 0, 1):
        outcome = mfa.complete_login(ticket_of(mfa), totp=code(enrollment, steady, steps))
        assert outcome.status == OK, steps
        steady.advance(3 * TOTP_PERIOD)


def test_a_code_is_accepted_once(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    answer = code(enrollment, steady)
    assert mfa.complete_login(ticket_of(mfa), totp=answer).status == OK
    assert mfa.complete_login(ticket_of(mfa), totp=answer).status == REJECTED
    # An older step than the last accepted one is refused too.
    assert mfa.complete_login(ticket_of(mfa), totp=code(enrollment, steady, -1)).status == REJECTED


def test_racing_answers_with_one_code_open_one_session(
    dsn: str, schema: str, steady: Clock
) -> None:
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    try:
        ada = usp.create_user("ada", PASSWORD, "ada@example.com")
        enrollment = enroll(usp, ada, steady)
        usp.set_login_policy(free_failures=100)  # the losers' failures throttle nothing
        answer = code(enrollment, steady)
        tickets = [ticket_of(usp) for _ in range(4)] * 4  # 16 answers, 4 per ticket
        outcomes = race(usp, tickets, totp=answer)
        assert outcomes.count(OK) == 1, outcomes
        assert set(outcomes) <= {OK, REJECTED, NOT_FOUND}
        assert len(list(usp.sessions(ada))) == 1
    finally:
        usp.close()


def test_a_ticket_lives_five_minutes(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    ticket = ticket_of(mfa)
    steady.advance(301)
    assert mfa.complete_login(ticket, totp=code(enrollment, steady)).status == EXPIRED


def test_a_ticket_takes_five_wrong_answers(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    mfa.set_login_policy(free_failures=100)  # the ticket's own limit, not the throttle
    ticket = ticket_of(mfa)
    right = code(enrollment, steady)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        assert mfa.complete_login(ticket, totp=wrong).status == REJECTED
    assert mfa.complete_login(ticket, totp=right).status == EXPIRED


@pytest.mark.parametrize(
    "change",
    ["change_password", "disable_user", "kill_sessions"],
)
def test_a_ticket_issued_before_a_change_opens_nothing(
    mfa: Any, ada: int, steady: Clock, change: str
) -> None:
    enrollment = enroll(mfa, ada, steady)
    ticket = ticket_of(mfa)
    {
        "change_password": lambda: mfa.change_password(ada, "new-pw-123"),
        "disable_user": lambda: mfa.disable_user(ada),
        "kill_sessions": lambda: mfa.kill_sessions(ada),
    }[change]()
    assert mfa.complete_login(ticket, totp=code(enrollment, steady)).status == REJECTED
    assert list(mfa.sessions(ada)) == []


def test_wrong_answers_count_in_the_login_throttle(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    mfa.set_login_policy(free_failures=3)
    right = code(enrollment, steady)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(3):
        assert mfa.complete_login(ticket_of(mfa, source="192.0.2.9"), totp=wrong).status == REJECTED
    refused = mfa.login("ada", PASSWORD, source="192.0.2.9")
    assert refused.status == THROTTLED and refused.retry_after > 0
    steady.advance(refused.retry_after + 1)
    ticket = ticket_of(mfa, source="192.0.2.9")
    assert mfa.complete_login(ticket, totp=wrong, source="192.0.2.9").status == REJECTED
    throttled = mfa.complete_login(ticket, totp=code(enrollment, steady), source="192.0.2.9")
    assert throttled.status == THROTTLED
    kinds = [event.kind for event in mfa.events(kinds="login.mfa_failed")]
    assert len(kinds) == 4


def test_answers_of_the_wrong_type_are_bad_calls(mfa: Any, ada: int, steady: Clock) -> None:
    enroll(mfa, ada, steady)
    ticket = ticket_of(mfa)
    calls: list[Callable[[], object]] = [
        lambda: mfa.complete_login(ticket),
        lambda: mfa.complete_login(ticket, totp="123456", recovery_code="abcde-fghjk"),
        lambda: mfa.complete_login(ticket, totp=123456),
        lambda: mfa.complete_login(42, totp="123456"),
        lambda: mfa.reauthenticate("k" * 43),
        lambda: mfa.reauthenticate("k" * 43, password="x", totp="123456"),
    ]
    for call in calls:
        with pytest.raises(BadCallError):
            call()
    assert mfa.complete_login("not a ticket", totp="123456").status == NOT_FOUND


# -- recovery codes --------------------------------------------------------------------


def test_recovery_codes_are_ten_each_usable_once(mfa: Any, ada: int, steady: Clock) -> None:
    enroll(mfa, ada, steady)
    codes = mfa.new_recovery_codes(ada)
    assert len(codes) == len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    assert mfa.factors(ada).recovery_codes == 10
    typed = codes[0].upper().replace("-", " ")  # as a person might type it
    assert mfa.complete_login(ticket_of(mfa), recovery_code=typed).status == OK
    assert mfa.complete_login(ticket_of(mfa), recovery_code=codes[0]).status == REJECTED
    assert mfa.factors(ada).recovery_codes == 9
    fresh = mfa.new_recovery_codes(ada)  # a new set replaces the old
    assert mfa.complete_login(ticket_of(mfa), recovery_code=codes[1]).status == REJECTED
    assert mfa.complete_login(ticket_of(mfa), recovery_code=fresh[0]).status == OK
    used = [e.detail for e in mfa.events(kinds="mfa.recovery_code_used")]
    assert used == [{"remaining": 9}, {"remaining": 9}]


def test_a_recovery_code_read_with_look_alike_letters_still_works() -> None:
    assert recovery_digest("0a1b2-c3d4e") == recovery_digest("oA1B2 C3D4E")
    assert recovery_digest("1a1b2-c3d4e") == recovery_digest("la1b2c3d4e")
    assert recovery_digest("short") is None


def test_racing_uses_of_one_recovery_code_open_one_session(
    dsn: str, schema: str, steady: Clock
) -> None:
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    try:
        ada = usp.create_user("ada", PASSWORD, "ada@example.com")
        enroll(usp, ada, steady)
        usp.set_login_policy(free_failures=100)
        (chosen, *_) = usp.new_recovery_codes(ada)
        tickets = [ticket_of(usp) for _ in range(4)] * 4  # 16 answers, 4 per ticket
        outcomes = race(usp, tickets, recovery_code=chosen)
        assert outcomes.count(OK) == 1, outcomes
        assert set(outcomes) <= {OK, REJECTED, NOT_FOUND}
        assert usp.factors(ada).recovery_codes == 9
    finally:
        usp.close()


def test_removing_the_last_factor_removes_the_codes(mfa: Any, ada: int, steady: Clock) -> None:
    first = enroll(mfa, ada, steady, "phone")
    second = enroll(mfa, ada, steady, "tablet")
    mfa.new_recovery_codes(ada)
    assert mfa.remove_factor(ada, first.factor_id) == OK
    assert mfa.factors(ada).recovery_codes == 10
    assert mfa.remove_factor(ada, first.factor_id) == NOT_FOUND
    assert mfa.remove_factor(ada, second.factor_id) == OK
    assert mfa.factors(ada) == ((), 0)
    assert mfa.login("ada", PASSWORD).status == OK
    removed = [e.detail for e in mfa.events(kinds="mfa.removed", newest_first=False)]
    assert [d["last"] for d in removed] == [False, True]


# -- check_session and reauthentication -------------------------------------------------


def test_check_session_answers_what_check_key_does_and_more(mfa: Any, ada: int) -> None:
    key = mfa.login("ada", PASSWORD, extra_data={"cart": 1}).key
    info = mfa.check_session(key)
    assert info[:4] == mfa.check_key(key) == (OK, "ada", ada, {"cart": 1})
    assert (info.admin, info.auth_methods) == (False, ("password",))
    assert info.session_id == next(iter(mfa.sessions(ada))).session_id
    assert mfa.check_session("no such key") == (
        NOT_FOUND,
        None,
        None,
        None,
        None,
        None,
        (),
        None,
        (),
        (),
    )


def test_reauthenticating_moves_the_proof_on(mfa: Any, ada: int, steady: Clock) -> None:
    enrollment = enroll(mfa, ada, steady)
    codes = mfa.new_recovery_codes(ada)
    key = mfa.complete_login(ticket_of(mfa), totp=code(enrollment, steady)).key
    first = mfa.check_session(key).authenticated_at
    steady.advance(600)
    assert mfa.reauthenticate(key, password="wrong") == REJECTED
    assert mfa.check_session(key).authenticated_at == first
    assert mfa.reauthenticate(key, password=PASSWORD) == OK
    assert mfa.check_session(key).authenticated_at == pytest.approx(first + 600)
    steady.advance(TOTP_PERIOD)
    assert mfa.reauthenticate(key, totp=code(enrollment, steady)) == OK
    assert mfa.reauthenticate(key, totp=code(enrollment, steady)) == REJECTED  # used
    assert mfa.reauthenticate(key, recovery_code=codes[0]) == OK
    assert mfa.check_session(key).auth_methods == ("password", "recovery_code", "totp")
    assert mfa.reauthenticate("k" * 43, password=PASSWORD) == NOT_FOUND


FACTOR_KINDS = {
    "mfa.enrolled",
    "mfa.recovery_codes_generated",
    "login.mfa_required",
    "login.mfa_failed",
    "mfa.recovery_code_used",
    "session.reauthenticated",
    "mfa.removed",
}


def test_each_step_writes_its_event_and_no_secret_or_code(
    mfa: Any, ada: int, steady: Clock
) -> None:
    enrollment = enroll(mfa, ada, steady)
    codes = mfa.new_recovery_codes(ada)
    ticket = ticket_of(mfa)
    right = code(enrollment, steady)
    wrong = "000000" if right != "000000" else "111111"
    assert mfa.complete_login(ticket, totp=wrong).status == REJECTED
    key = mfa.complete_login(ticket, recovery_code=codes[0]).key
    assert mfa.reauthenticate(key, totp=right) == OK
    assert mfa.remove_factor(ada, enrollment.factor_id) == OK
    events = list(mfa.events(newest_first=False))
    assert {event.kind for event in events} >= FACTOR_KINDS
    written = repr(events)
    for secret in (enrollment.secret, right, ticket, key, *codes):
        assert secret not in written


# -- the command line ----------------------------------------------------------------------


def pgusers_cli(dsn: str, schema: str, *args: str, keys: str = KEY) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from pgusers.cli import main

    result = CliRunner().invoke(
        main, ["--dsn", dsn, "--schema", schema, *args], env={"PGUSERS_SECRET_KEY": keys}
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_rotating_the_secret_key_reseals_every_seed(
    dsn: str, schema: str, steady: Clock, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY) as usp:
        enrollments = []
        for n in range(3):
            userid = usp.create_user(f"u{n}", PASSWORD, f"u{n}@example.com")
            enrollments.append(enroll(usp, userid, steady))
    code, out, _ = pgusers_cli(dsn, schema, "rotate-secret-key", keys=f"{NEW_KEY} {KEY}")
    assert (code, out) == (0, "resealed 3 secrets under the current key\n")
    code, out, _ = pgusers_cli(dsn, schema, "rotate-secret-key", keys=f"{NEW_KEY} {KEY}")
    assert (code, out) == (0, "resealed 0 secrets under the current key\n")
    # The old key is no longer needed: the new one alone opens every seed.
    with pgusers.UserSpace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=NEW_KEY
    ) as usp:
        ticket = ticket_of(usp, "u2")
        assert usp.complete_login(ticket, totp=code_of(enrollments[2], steady)).status == OK
        (event,) = usp.events(kinds="secrets.resealed")
        assert event.detail["count"] == 3
    code, _, err = pgusers_cli(dsn, schema, "rotate-secret-key", keys=KEY)
    assert code == 2 and "key id" in err  # the old key alone opens nothing now


def code_of(enrollment: Enrollment, clock: Clock) -> str:
    return code(enrollment, clock)


def test_mfa_list_and_reset_on_the_command_line(
    mfa: Any, ada: int, steady: Clock, dsn: str, schema: str
) -> None:
    enroll(mfa, ada, steady, "phone")
    mfa.new_recovery_codes(ada)
    mfa.close()
    code, out, _ = pgusers_cli(dsn, schema, "mfa", "list", "ada")
    assert code == 0 and "phone" in out and "recovery codes left: 10" in out
    code, out, _ = pgusers_cli(dsn, schema, "mfa", "list", "ada", "--json")
    assert code == 0 and '"recovery_codes": 10' in out
    code, _, err = pgusers_cli(dsn, schema, "mfa", "reset", "ada")
    assert code == 2 and "--yes" in err  # no terminal to confirm on
    code, out, _ = pgusers_cli(dsn, schema, "mfa", "reset", "ada", "--yes")
    assert (code, out) == (0, "removed 1 second factors of 'ada', and their recovery codes\n")
    code, out, _ = pgusers_cli(dsn, schema, "mfa", "list", "ada")
    assert "'ada' has no second factor" in out and "recovery codes left: 0" in out


def test_a_secret_key_is_never_taken_over_from_an_open_userspace(
    mfa: Any, open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    for other in (None, NEW_KEY, [KEY, NEW_KEY]):
        with pytest.raises(BadCallError, match="secret_key"):
            open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=other)
    same = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    assert same.check_key("x" * 43).status == NOT_FOUND


@pytest.mark.parametrize("bad", ["short", b"", 42, [], ["x" * 32, 7], ["x" * 32] * 17])
def test_a_bad_secret_key_is_refused(dsn: str, schema: str, bad: Any) -> None:
    with pytest.raises(BadCallError, match="secret_key"):
        pgusers.UserSpace(conninfo=dsn, schema=schema, secret_key=bad)


def test_enrolling_again_replaces_the_pending_enrollment_and_factors_are_bounded(
    mfa: Any, ada: int, steady: Clock
) -> None:
    first = mfa.begin_totp(ada)
    second = mfa.begin_totp(ada)
    assert [f.factor_id for f in mfa.factors(ada).factors] == [second.factor_id]
    assert mfa.confirm_totp(ada, first.factor_id, code(first, steady)) == NOT_FOUND
    for n in range(10):
        enroll(mfa, ada, steady, f"device {n}")
    with pytest.raises(BadCallError, match="at most 10 second factors"):
        mfa.begin_totp(ada)
    assert len(mfa.factors(ada).factors) == 10
