"""Status codes and result tuples that name their parts and equal the seed's values."""

from typing import Any

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK, REJECTED, Status


def test_status_codes_are_the_seeds_ints() -> None:
    assert (OK, NOT_FOUND, EXPIRED, REJECTED) == (0, 1, 2, 3)
    assert OK is Status.OK
    assert isinstance(NOT_FOUND, int)
    assert Status(2).name == "EXPIRED"


def test_check_key_result_names_its_parts_and_equals_the_plain_tuple(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw", extra_data=[1]).key
    result = usp.check_key(key)
    assert result == (0, "ada", uid, [1])
    assert (result.status, result.username, result.userid, result.extra_data) == (
        OK,
        "ada",
        uid,
        [1],
    )
    assert isinstance(result, pgusers.CheckResult)
    assert usp.check_key("no such key").status is NOT_FOUND


def test_login_result_names_its_parts(usp: Any) -> None:
    uid = usp.create_user("root", "pw", "root@example.com", admin=True)
    login = usp.validate_user("root", "pw")
    assert (login.admin, login.userid) == (True, uid)
    assert usp.validate_user("root", "wrong") == pgusers.LoginResult("", False, None)


def test_rows_name_their_parts(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw").key
    [user] = usp.all_users()
    assert (user.userid, user.username, user.email, user.admin) == (
        uid,
        "ada",
        "ada@example.com",
        False,
    )
    [session] = usp.list_sessions(uid)
    assert (session.username, session.key) == ("ada", key)
    assert isinstance(session.expiration, float)


def test_statuses_returned_are_status_members(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    assert usp.set_admin(uid) is OK
    assert usp.modify_user(999, email="x@example.com") is NOT_FOUND
    assert usp.change_password(uid, "new", "wrong") is REJECTED
