"""Disabled accounts, and one-time tokens for password resets and email verification."""

import hashlib
import threading
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK, BadCallError

from .support import Clock, only

HOUR = 3600.0


@pytest.fixture
def ada(usp: Any) -> int:
    return int(usp.create_user("ada", "s3cret", "ada@example.com"))


# -- disabled accounts --------------------------------------------------------------


def test_a_disabled_user_is_logged_out_everywhere_and_cannot_log_in(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret").key
    assert usp.disable_user(ada) == OK
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)
    assert usp.validate_user("ada", "s3cret") == ("", False, None)
    assert list(usp.list_sessions(ada)) == []
    assert usp.find_user(userid=ada)["disabled"] is True


def test_a_key_of_a_disabled_user_is_not_found_even_if_its_row_is_left(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    key = usp.validate_user("ada", "s3cret").key
    # As if a session row outlived the disabling (written by other software).
    sql_conn.execute(f"UPDATE {schema}.users SET disabled = true")
    assert usp.check_key(key).status == NOT_FOUND


def test_an_enabled_user_logs_in_again_with_the_same_password(usp: Any, ada: int) -> None:
    usp.disable_user(ada)
    assert usp.disable_user(ada, disabled=False) == OK
    assert usp.validate_user("ada", "s3cret").userid == ada
    assert usp.find_user(userid=ada)["disabled"] is False


def test_disabling_an_unknown_user_is_not_found(usp: Any) -> None:
    assert usp.disable_user(42) == NOT_FOUND


def test_find_user_tells_verified_and_disabled(usp: Any, ada: int) -> None:
    found = usp.find_user(userid=ada)
    assert (found["email_verified"], found["disabled"]) == (False, False)


# -- password reset -----------------------------------------------------------------


def test_a_reset_token_sets_a_new_password_once(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret").key
    token = usp.issue_token(ada, "reset_password")
    assert usp.reset_password(token, "n3w-pw") == OK
    assert usp.validate_user("ada", "s3cret").key == ""
    assert usp.validate_user("ada", "n3w-pw").userid == ada
    assert usp.check_key(key).status == NOT_FOUND  # sessions ended by default
    assert usp.reset_password(token, "again") == NOT_FOUND


def test_a_reset_can_keep_the_sessions(usp: Any, ada: int) -> None:
    key = usp.validate_user("ada", "s3cret").key
    token = usp.issue_token(ada, "reset_password")
    assert usp.reset_password(token, "n3w-pw", end_sessions=False) == OK
    assert usp.check_key(key).status == OK


def test_a_reset_token_expires_after_an_hour(usp: Any, ada: int, clock: Clock) -> None:
    token = usp.issue_token(ada, "reset_password")
    clock.advance(HOUR - 1)
    assert usp.issue_token(ada, "verify_email")  # another purpose: no effect on it
    clock.advance(2)
    assert usp.reset_password(token, "n3w-pw") == EXPIRED
    assert usp.reset_password(token, "n3w-pw") == NOT_FOUND
    assert usp.validate_user("ada", "s3cret").userid == ada


def test_a_token_lives_as_long_as_asked(usp: Any, ada: int, clock: Clock) -> None:
    token = usp.issue_token(ada, "reset_password", ttl=60)
    clock.advance(61)
    assert usp.reset_password(token, "n3w-pw") == EXPIRED


def test_a_new_token_revokes_the_older_one_of_its_purpose(usp: Any, ada: int) -> None:
    first = usp.issue_token(ada, "reset_password")
    second = usp.issue_token(ada, "reset_password")
    assert usp.reset_password(first, "n3w-pw") == NOT_FOUND
    assert usp.reset_password(second, "n3w-pw") == OK


def test_a_password_change_ends_every_token(usp: Any, ada: int) -> None:
    reset = usp.issue_token(ada, "reset_password")
    verify = usp.issue_token(ada, "verify_email")
    assert usp.change_password(ada, "other") == OK
    assert usp.reset_password(reset, "n3w-pw") == NOT_FOUND
    assert usp.verify_email(verify) == NOT_FOUND


def test_racing_uses_of_one_token_give_one_success(usp: Any, ada: int) -> None:
    token = usp.issue_token(ada, "reset_password")
    barrier = threading.Barrier(8)
    outcomes: list[pgusers.Status] = []

    def use(number: int) -> None:
        barrier.wait()
        outcomes.append(usp.reset_password(token, f"pw-{number}"))

    threads = [threading.Thread(target=use, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [OK] + [NOT_FOUND] * 7


def test_tokens_are_stored_only_as_sha256_digests(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    token = usp.issue_token(ada, "reset_password")
    everything = only(
        sql_conn.execute(f"SELECT row_to_json(t)::text FROM {schema}.tokens t").fetchone()
    )
    assert token not in everything
    stored = only(sql_conn.execute(f"SELECT digest FROM {schema}.tokens").fetchone())
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()


def test_a_token_of_another_purpose_is_not_found(usp: Any, ada: int) -> None:
    verify = usp.issue_token(ada, "verify_email")
    reset = usp.issue_token(ada, "reset_password")
    assert usp.reset_password(verify, "n3w-pw") == NOT_FOUND
    assert usp.verify_email(reset) == NOT_FOUND


@pytest.mark.parametrize("token", ["", "x" * 10_000, "A" * 43, "\x00" * 43])
def test_any_string_that_is_no_token_is_not_found(usp: Any, ada: int, token: Any) -> None:
    assert usp.reset_password(token, "n3w-pw") == NOT_FOUND
    assert usp.verify_email(token) == NOT_FOUND


# -- email verification and change --------------------------------------------------


def test_a_verification_token_marks_the_address_verified(usp: Any, ada: int) -> None:
    token = usp.issue_token(ada, "verify_email")
    assert usp.verify_email(token) == OK
    assert usp.find_user(userid=ada)["email_verified"] is True
    assert usp.verify_email(token) == NOT_FOUND


def test_a_verification_token_lasts_three_days(usp: Any, ada: int, clock: Clock) -> None:
    token = usp.issue_token(ada, "verify_email")
    clock.advance(3 * 86400 - 5)
    assert usp.verify_email(token) == OK


def test_a_new_address_is_unverified_and_ends_the_tokens(usp: Any, ada: int) -> None:
    usp.verify_email(usp.issue_token(ada, "verify_email"))
    reset = usp.issue_token(ada, "reset_password")
    assert usp.modify_user(ada, email="ada@elsewhere.example") == OK
    assert usp.find_user(userid=ada)["email_verified"] is False
    assert usp.reset_password(reset, "n3w-pw") == NOT_FOUND


def test_renaming_keeps_the_verified_address_and_the_tokens(usp: Any, ada: int) -> None:
    usp.verify_email(usp.issue_token(ada, "verify_email"))
    reset = usp.issue_token(ada, "reset_password")
    assert usp.modify_user(ada, username="ada2", email="ADA@example.com") == OK
    assert usp.find_user(userid=ada)["email_verified"] is True
    assert usp.reset_password(reset, "n3w-pw") == OK


def test_a_change_email_token_sets_the_new_address_verified(usp: Any, ada: int) -> None:
    token = usp.issue_token(ada, "change_email", email="ada@new.example")
    assert usp.find_user(userid=ada)["email"] == "ada@example.com"
    assert usp.verify_email(token) == OK
    found = usp.find_user(userid=ada)
    assert (found["email"], found["email_verified"]) == ("ada@new.example", True)
    assert usp.find_user(email="ADA@NEW.example")["userid"] == ada


def test_a_change_email_to_a_taken_address_is_refused_at_issue(usp: Any, ada: int) -> None:
    usp.create_user("bob", "pw", "bob@example.com")
    with pytest.raises(BadCallError, match="email already exists"):
        usp.issue_token(ada, "change_email", email="BOB@example.com")


def test_a_change_email_to_an_address_taken_meanwhile_changes_nothing(usp: Any, ada: int) -> None:
    token = usp.issue_token(ada, "change_email", email="ada@new.example")
    bob = usp.create_user("bob", "pw", "ada@new.example")
    with pytest.raises(BadCallError, match="email already exists"):
        usp.verify_email(token)
    assert usp.find_user(userid=ada)["email"] == "ada@example.com"
    assert usp.find_user(email="ada@new.example")["userid"] == bob


BAD_ISSUES = {
    "unknown purpose": lambda u, uid: u.issue_token(uid, "login"),
    "purpose not str": lambda u, uid: u.issue_token(uid, 3),
    "change_email without email": lambda u, uid: u.issue_token(uid, "change_email"),
    "email with another purpose": lambda u, uid: u.issue_token(
        uid, "reset_password", email="x@example.com"
    ),
    "malformed email": lambda u, uid: u.issue_token(uid, "change_email", email="nope"),
    "ttl zero": lambda u, uid: u.issue_token(uid, "reset_password", ttl=0),
    "ttl str": lambda u, uid: u.issue_token(uid, "reset_password", ttl="60"),
    "unknown user": lambda u, uid: u.issue_token(uid + 1, "reset_password"),
    "userid str": lambda u, uid: u.issue_token(str(uid), "reset_password"),
    "token not str": lambda u, uid: u.reset_password(5, "pw"),
    "empty new password": lambda u, uid: u.reset_password("A" * 43, ""),
    "end_sessions not bool": lambda u, uid: u.reset_password("A" * 43, "pw", end_sessions=1),
    "verify token None": lambda u, uid: u.verify_email(None),
    "disabled not bool": lambda u, uid: u.disable_user(uid, disabled="yes"),
}


@pytest.mark.parametrize("call", BAD_ISSUES.values(), ids=BAD_ISSUES.keys())
def test_bad_calls_are_refused_and_change_nothing(
    usp: Any, ada: int, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, call: Any
) -> None:
    token = usp.issue_token(ada, "reset_password")
    before = sql_conn.execute(f"SELECT * FROM {schema}.tokens").fetchall()
    with pytest.raises(BadCallError):
        call(usp, ada)
    assert sql_conn.execute(f"SELECT * FROM {schema}.tokens").fetchall() == before
    assert usp.reset_password(token, "n3w-pw") == OK
