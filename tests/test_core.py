"""The core's rules, with no database: operations fed scripted results, as a driver
would feed them, the way h11 tests its protocol without sockets."""

from collections.abc import Generator, Mapping
from typing import Any, Final, Literal

import psycopg.errors
import pytest

from pgusers import NOT_FOUND, OK, REJECTED
from pgusers._core import sessions
from pgusers._core.codec import Codec
from pgusers._core.operations import Core
from pgusers._core.passwords import Passwords
from pgusers._core.retries import STATEMENT_RETRIES
from pgusers._core.steps import Execute, Fetch, Offload, Step, Stepper

from .support import FAST_HASHER


@pytest.fixture(scope="module")
def core() -> Core:
    return Core("pgusers", Codec(), Passwords(FAST_HASHER))


def executed(step: Step | None) -> Execute:
    """A step that must be a statement."""
    assert isinstance(step, Execute), step
    return step


def offloaded(step: Step | None) -> Offload:
    """A step that must be password work."""
    assert isinstance(step, Offload), step
    return step


def named(step: Execute) -> Mapping[str, Any]:
    """A statement's named parameters."""
    assert isinstance(step.params, Mapping), step.params
    return step.params


NO_POLICY: Final = (None, None, "off")
"""The password policy's row when none was set."""


def past_the_policy(operation: Generator[Any, Any, Any]) -> Any:
    """Answer a password-setting operation's first step, the policy, with none; the
    next step."""
    assert "password_min_length" in executed(next(operation)).query
    return operation.send(NO_POLICY)


def finish(operation: Generator[Any, Any, Any], result: object) -> Any:
    """Send ``result`` into ``operation``, which must then end; return its value."""
    with pytest.raises(StopIteration) as stop:
        operation.send(result)
    return stop.value.value


def test_a_deadlock_victim_runs_again_up_to_the_limit(core: Core) -> None:
    stepper = Stepper(core.set_session_TTL(60))
    step = stepper.start()
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    for _ in range(STATEMENT_RETRIES):
        assert stepper.fail(deadlock, undone=True) is step
    with pytest.raises(psycopg.errors.DeadlockDetected):
        stepper.fail(deadlock, undone=True)


def test_a_statement_that_left_a_transaction_open_does_not_run_again(core: Core) -> None:
    stepper = Stepper(core.set_session_TTL(60))
    stepper.start()
    with pytest.raises(psycopg.errors.SerializationFailure):
        stepper.fail(psycopg.errors.SerializationFailure("conflict"), undone=False)


def test_other_errors_do_not_run_again(core: Core) -> None:
    stepper = Stepper(core.set_session_TTL(60))
    stepper.start()
    with pytest.raises(psycopg.errors.UniqueViolation):
        stepper.fail(psycopg.errors.UniqueViolation("duplicate"), undone=True)


def test_kill_sessions_deletes_in_batches_until_one_is_short(core: Core) -> None:
    operation = core.kill_sessions(0, False)
    step = executed(next(operation))
    assert (step.fetch, named(step)["batch"]) == (Fetch.ONE, sessions.KILL_BATCH)
    assert named(step)["first"] is True  # the first batch records the event in any case
    for _ in range(2):
        step = executed(operation.send((sessions.KILL_BATCH, None)))
        assert named(step)["first"] is False
    assert finish(operation, (12, None)) == 2 * sessions.KILL_BATCH + 12


def test_kill_sessions_of_expired_ones_leaves_live_sessions_alone(core: Core) -> None:
    step = executed(next(core.kill_sessions(7, True)))
    assert named(step)["end_live"] is False
    step = executed(next(core.kill_sessions(7, False)))
    assert named(step)["end_live"] is True


def test_change_password_loses_a_race_with_another_change_as_rejected(core: Core) -> None:
    old_hash = FAST_HASHER.hash("old")
    operation = core.change_password(1, "new", "old", False)
    read = past_the_policy(operation)
    assert isinstance(read, Execute)
    verify = offloaded(operation.send((old_hash,)))
    assert isinstance(verify, Offload)
    write = executed(operation.send(verify.func(*verify.args)))
    assert named(write)["old_hash"] == old_hash
    # No row updated: the hash changed after it was read.
    assert finish(operation, None) == REJECTED


def test_change_password_with_a_wrong_old_password_is_rejected_without_writing(core: Core) -> None:
    operation = core.change_password(1, "new", "wrong", False)
    past_the_policy(operation)
    verify = offloaded(operation.send((FAST_HASHER.hash("old"),)))
    assert finish(operation, verify.func(*verify.args)) == REJECTED


def test_change_password_of_an_unknown_user_is_not_found(core: Core) -> None:
    operation = core.change_password(1, "new", "old", False)
    past_the_policy(operation)
    assert finish(operation, None) == NOT_FOUND


def test_a_login_whose_session_insert_found_nothing_fails(core: Core) -> None:
    operation = core.validate_user("ada", "pw", None)
    next(operation)
    # userid, hash, generations, disabled, wait, legacy, factor kinds, codes, events
    looked: tuple[Any, ...] = (1, FAST_HASHER.hash("pw"), 0, 0, False, 0.0, False, [], False, None)
    verify = offloaded(operation.send(looked))
    insert = executed(operation.send(verify.func(*verify.args)))
    assert (named(insert)["user_generation"], named(insert)["space_generation"]) == (0, 0)
    assert finish(operation, (False, None, None)) == ("", False, None)


def test_check_key_of_a_session_ended_by_a_race_is_not_found(core: Core) -> None:
    key = "k" * 43
    operation = core.check_key(key)
    next(operation)
    # username, userid, data, TTL, session id, expiry, hard end, admin, methods,
    # proved at, what a write returned
    row = ("ada", 1, None, 864000.0, "session-id-16chr", 1e10, None, False, "password", 1.0, None)
    assert finish(operation, (False, True, *row)) == (
        NOT_FOUND,
        None,
        None,
        None,
    )
    operation = core.check_key(key)
    next(operation)
    assert finish(operation, (True, True, *row)) == (OK, "ada", 1, None)


def test_a_failed_login_costs_the_same_work_whatever_the_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While legacy (PBKDF2) hashes remain, a failure costs one Argon2id and one PBKDF2
    verification whatever the user's hash, or whether the user exists; without them,
    one Argon2id. Counted on the real functions, which still run."""
    from argon2 import PasswordHasher

    from pgusers._core import legacy
    from pgusers._core.passwords import Passwords

    calls = {"argon2": 0, "pbkdf2": 0}
    real_pbkdf2 = legacy.verify

    class Counting(PasswordHasher):
        def verify(self, stored: str | bytes, password: str | bytes) -> Literal[True]:
            calls["argon2"] += 1
            return super().verify(stored, password)

    def pbkdf2(*args: Any) -> bool:
        calls["pbkdf2"] += 1
        return real_pbkdf2(*args)

    passwords = Passwords(Counting(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(legacy, "verify", pbkdf2)
    old = legacy.stored_hash("ab" * 16, "cd" * 64)
    new = FAST_HASHER.hash("right")
    cases = [
        (None, True, (1, 1)),
        (new, True, (1, 1)),
        (old, True, (1, 1)),
        (None, False, (1, 0)),
        (new, False, (1, 0)),
    ]
    for stored, legacy_present, expected in cases:
        calls.update(argon2=0, pbkdf2=0)
        assert passwords.verify(stored, "wrong", legacy_present).matches is False
        assert (calls["argon2"], calls["pbkdf2"]) == expected, (stored, legacy_present)
