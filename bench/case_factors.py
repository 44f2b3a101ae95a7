"""Second factors: check_session beside check_key, a login finished with a TOTP code,
a throttled answer, and the server's side of passkeys beside a password login."""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from psycopg import sql

import pgusers
from context import SCHEMA, Context, Row, timed
from pgusers._core.factors import TOTP_PERIOD, totp_code
from shared import CHEAP_HASHER, execute, percentiles, progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' authenticator
from tests.authenticator import Authenticator

ORIGIN = "https://bench.example"

SECRET_KEY = "the benchmark's own secret key, not a real one"  # noqa: S105 - a test key


@contextmanager
def stepping_clock() -> Iterator[list[float]]:
    """``time.time`` as pgusers reads it, moved on by hand: each login of the
    benchmark gets a TOTP step of its own, as logins minutes apart would."""
    now = [(time.time() // TOTP_PERIOD) * TOTP_PERIOD + 1]
    with mock.patch.object(time, "time", lambda: now[0]):
        yield now


def factor_rows(ctx: Context) -> list[Row]:
    usp, key, select_one, iterations = ctx.usp, ctx.key, ctx.select_one, ctx.iterations
    progress("timing check_session beside check_key")
    ((check, check_p99), (session, session_p99), (floor, _)) = timed(
        lambda: usp.check_key(key),
        lambda: usp.check_session(key),
        select_one,
        iterations=iterations,
    )
    rows = [
        Row("check_key", "1", check, check_p99, floor, note="x1.00 check_key"),
        Row(
            "check_session (the same statement, more columns)",
            "1",
            session,
            session_p99,
            floor,
            note=f"x{session / check:.3f} check_key, same run",
        ),
    ]
    rows += _roles_rows(ctx)
    schema = SCHEMA + "_factors"
    keyed = pgusers.UserSpace(
        conninfo=ctx.conninfo, schema=schema, hasher=CHEAP_HASHER, secret_key=SECRET_KEY
    )
    try:
        rows += _login_rows(keyed, max(50, iterations // 20))
        rows += _passkey_rows(keyed, max(50, iterations // 20))
    finally:
        keyed.close()
        execute(ctx.conninfo, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return rows


def _roles_rows(ctx: Context) -> list[Row]:
    """check_session for a user with 10 roles granting 50 permissions, beside check_key
    in the same run, the new tables analyzed as production's would be."""
    usp, key = ctx.usp, ctx.key
    for role in range(10):
        permissions = [f"resource{role}:action{n}" for n in range(5)]
        usp.define_role(f"role{role}", permissions)
        usp.grant_role(ctx.userid, f"role{role}")
    for other in range(200):  # other users' grants, so the index has company
        userid = usp.create_user(f"holder{other}", "holder-password", f"h{other}@example.com")
        usp.grant_role(userid, f"role{other % 10}")
    execute(
        ctx.conninfo,
        sql.SQL("ANALYZE {}, {}").format(
            sql.Identifier(SCHEMA, "grants"), sql.Identifier(SCHEMA, "roles")
        ),
    )
    info = usp.check_session(key)
    assert len(info.roles) == 10 and len(info.permissions) == 50, info
    progress("timing check_session with 10 roles and 50 permissions beside check_key")
    ((check, check_p99), (session, session_p99), (floor, _)) = timed(
        lambda: usp.check_key(key),
        lambda: usp.check_session(key),
        ctx.select_one,
        iterations=ctx.iterations,
    )
    return [
        Row("check_key (beside the roles)", "1", check, check_p99, floor, note="x1.00 check_key"),
        Row(
            "check_session, 10 roles and 50 permissions",
            "1",
            session,
            session_p99,
            floor,
            note=f"x{session / check:.3f} check_key, same run",
        ),
    ]


def _login_rows(usp: pgusers.UserSpace, logins: int) -> list[Row]:
    progress(f"timing {logins} logins finished with a TOTP code")
    userid = usp.create_user("mfa", "mfa-password", "mfa@example.com")
    usp.set_login_policy(free_failures=1)
    logged_in, completed, throttled = [], [], []
    with stepping_clock() as now:
        enrollment = usp.begin_totp(userid)
        usp.confirm_totp(userid, enrollment.factor_id, totp_code(enrollment.secret, now[0]))
        for _ in range(logins):
            now[0] += TOTP_PERIOD
            started = time.perf_counter()
            outcome = usp.login("mfa", "mfa-password", source="192.0.2.1")
            middle = time.perf_counter()
            code = totp_code(enrollment.secret, now[0])
            done = usp.complete_login(str(outcome.ticket), totp=code)
            ended = time.perf_counter()
            assert outcome.status == pgusers.MFA_REQUIRED and done.status == pgusers.OK
            logged_in.append((middle - started) * 1000)
            completed.append((ended - middle) * 1000)
        # Two wrong answers from one source: its next answers wait.
        ticket = str(usp.login("mfa", "mfa-password", source="192.0.2.9").ticket)
        for _ in range(2):
            usp.complete_login(ticket, totp="000000", source="192.0.2.9")
        for _ in range(logins):
            started = time.perf_counter()
            refused = usp.complete_login(ticket, totp="000000", source="192.0.2.9")
            throttled.append((time.perf_counter() - started) * 1000)
            assert refused.status == pgusers.THROTTLED
    return [
        _row("login of a user with a factor (MFA_REQUIRED and a ticket)", logged_in),
        _row("complete_login with a TOTP code", completed),
        _row("complete_login, throttled", throttled),
    ]


def _passkey_rows(usp: pgusers.UserSpace, rounds: int) -> list[Row]:
    """The server's side only: the authenticator's own work (making keys, signing) is
    left out of each figure."""
    progress(f"timing {rounds} passkey registrations and logins beside password logins")
    usp.set_webauthn("bench.example", "Bench", [ORIGIN])
    usp.set_login_policy(free_failures=5)
    registering, signing_in, password = [], [], []
    for round_ in range(rounds):
        name = f"passkey{round_}"
        usp.create_user(name, "pk-password", f"{name}@example.com")
        device = Authenticator(ORIGIN)
        started = time.perf_counter()
        key = usp.login(name, "pk-password").key
        password.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        begun = usp.begin_passkey_registration(key)
        server = time.perf_counter() - started
        answer = device.create(begun.options)
        started = time.perf_counter()
        usp.finish_passkey_registration(key, begun.challenge_id, answer)
        registering.append((server + time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        begun = usp.begin_passkey_login()
        server = time.perf_counter() - started
        answer = device.get(begun.options)
        started = time.perf_counter()
        outcome = usp.finish_passkey_login(begun.challenge_id, answer)
        signing_in.append((server + time.perf_counter() - started) * 1000)
        assert outcome.status == pgusers.OK
    return [
        _row("password login (the same run)", password),
        _row("passkey registration, server side (begin + finish)", registering, "ES256"),
        _row("passkey login, server side (begin + finish: 3 statements)", signing_in, "ES256"),
    ]


def _row(operation: str, samples: list[float], note: str = "cheap Argon2id parameters") -> Row:
    median, p99 = percentiles(samples)
    return Row(operation, "1", median, p99, note=note)
