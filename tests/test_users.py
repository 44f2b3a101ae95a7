"""Users: create, find, modify, delete, admin rights, listing."""

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import NOT_FOUND, OK, BadCallError, PoolExhaustedError

from .support import FAST_HASHER


def test_userids_start_at_one_and_increase(usp: Any) -> None:
    assert usp.create_user("ada", "pw-ada", "ada@example.com") == 1
    assert usp.create_user("bob", "pw-bob", "bob@example.com") == 2


def test_find_user_by_each_field_returns_the_record(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com", admin=True, extra_data={"k": 1})
    expected = {
        "userid": uid,
        "username": "ada",
        "email": "ada@example.com",
        "admin": True,
        "extra_data": {"k": 1},
        "email_verified": False,
        "disabled": False,
    }
    assert usp.find_user(username="ada") == expected
    assert usp.find_user(email="ada@example.com") == expected
    assert usp.find_user(userid=uid) == expected


def test_find_user_with_several_fields_needs_all_to_match(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    usp.create_user("bob", "pw", "bob@example.com")
    assert usp.find_user(username="ada", userid=uid)["userid"] == uid
    assert usp.find_user(username="bob", userid=uid) is None


def test_find_user_unknown_returns_none(usp: Any) -> None:
    assert usp.find_user(username="nobody") is None
    assert usp.find_user(email="nobody@example.com") is None
    assert usp.find_user(userid=42) is None


def test_find_user_without_any_field_is_a_bad_call(usp: Any) -> None:
    with pytest.raises(BadCallError, match="at least one"):
        usp.find_user()


def test_lookups_ignore_case_but_keep_what_was_stored(usp: Any) -> None:
    uid = usp.create_user("Ada", "pw", "Ada@Example.COM")
    found = usp.find_user(username="aDA")
    assert found["userid"] == uid
    assert found["username"] == "Ada"
    assert found["email"] == "Ada@Example.COM"
    assert usp.find_user(email="ada@example.com")["userid"] == uid


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("Bob", "b1@example.com"), ("bob", "b2@example.com")),
        (("bob1", "Bob@example.com"), ("bob2", "bob@EXAMPLE.com")),
        (("Straße", "s1@example.com"), ("STRASSE", "s2@example.com")),
    ],
)
def test_duplicate_username_or_email_is_refused_case_insensitively(
    usp: Any, first: Any, second: Any
) -> None:
    usp.create_user(first[0], "pw", first[1])
    with pytest.raises(BadCallError, match="already exists"):
        usp.create_user(second[0], "pw", second[1])
    assert [row[1] for row in usp.all_users()] == [first[0]]


def test_duplicate_error_names_the_field(usp: Any) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    with pytest.raises(BadCallError, match="username"):
        usp.create_user("ADA", "pw", "other@example.com")
    with pytest.raises(BadCallError, match="email"):
        usp.create_user("other", "pw", "ADA@example.com")


def test_delete_user_by_username_or_userid(usp: Any) -> None:
    ada = usp.create_user("ada", "pw", "ada@example.com")
    usp.create_user("bob", "pw", "bob@example.com")
    assert usp.delete_user(userid=ada) == OK
    assert usp.delete_user(username="BOB") == OK
    assert usp.find_user(userid=ada) is None
    assert list(usp.all_users()) == []


def test_delete_unknown_user_is_not_found(usp: Any) -> None:
    assert usp.delete_user(username="ghost") == NOT_FOUND
    assert usp.delete_user(userid=7) == NOT_FOUND


def test_delete_user_needs_a_username_or_userid(usp: Any) -> None:
    with pytest.raises(BadCallError):
        usp.delete_user()


def test_delete_user_with_both_fields_needs_both_to_match(usp: Any) -> None:
    ada = usp.create_user("ada", "pw", "ada@example.com")
    usp.create_user("bob", "pw", "bob@example.com")
    assert usp.delete_user(username="bob", userid=ada) == NOT_FOUND
    assert usp.find_user(userid=ada) is not None


def test_delete_user_ends_its_sessions(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    key, _, _ = usp.validate_user("ada", "pw")
    usp.delete_user(userid=uid)
    assert usp.check_key(key) == (NOT_FOUND, None, None, None)
    assert list(usp.list_sessions(0)) == []


def test_modify_user_changes_only_the_fields_given(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com", extra_data=[1])
    assert usp.modify_user(uid, email="lovelace@example.com") == OK
    assert usp.find_user(userid=uid) == {
        "userid": uid,
        "username": "ada",
        "email": "lovelace@example.com",
        "admin": False,
        "extra_data": [1],
        "email_verified": False,
        "disabled": False,
    }
    assert usp.modify_user(uid, username="Ada L", extra_data={"x": 2}) == OK
    found = usp.find_user(username="ada l")
    assert (found["username"], found["email"], found["extra_data"]) == (
        "Ada L",
        "lovelace@example.com",
        {"x": 2},
    )


def test_modify_user_to_a_taken_name_is_refused_and_changes_nothing(usp: Any) -> None:
    ada = usp.create_user("ada", "pw", "ada@example.com")
    usp.create_user("bob", "pw", "bob@example.com")
    with pytest.raises(BadCallError, match="username"):
        usp.modify_user(ada, username="BOB", email="new@example.com")
    assert usp.find_user(userid=ada)["email"] == "ada@example.com"


def test_modify_user_may_change_the_case_of_its_own_name(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    assert usp.modify_user(uid, username="ADA") == OK
    assert usp.find_user(userid=uid)["username"] == "ADA"


def test_modify_unknown_user_is_not_found(usp: Any) -> None:
    assert usp.modify_user(99, email="x@example.com") == NOT_FOUND
    assert usp.modify_user(99) == NOT_FOUND


def test_admin_flag_is_set_revoked_and_read(usp: Any) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    assert usp.is_admin(uid) is False
    assert usp.set_admin(uid) == OK
    assert usp.is_admin(uid) is True
    assert usp.set_admin(uid, admin=False) == OK
    assert usp.is_admin(uid) is False


def test_admin_of_unknown_user(usp: Any) -> None:
    assert usp.is_admin(12345) is False
    assert usp.set_admin(12345) == NOT_FOUND


def test_all_users_yields_tuples_ordered_by_username(usp: Any) -> None:
    c = usp.create_user("carol", "pw", "c@example.com")
    a = usp.create_user("Alice", "pw", "a@example.com", admin=True)
    b = usp.create_user("bob", "pw", "b@example.com")
    assert list(usp.all_users()) == [
        (a, "Alice", "a@example.com", True),
        (b, "bob", "b@example.com", False),
        (c, "carol", "c@example.com", False),
    ]


def test_all_users_is_a_lazy_iterator_over_many_rows(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    usp.create_user("seed", "pw", "seed@example.com")
    sql_conn.execute(
        f"""INSERT INTO {schema}.users (
            username, username_key, username_skeleton, email, email_key, password_hash
        )
        SELECT 'u' || lpad(i::text, 5, '0'), 'u' || lpad(i::text, 5, '0'),
               'u' || lpad(i::text, 5, '0'), i || '@example.com', i || '@example.com', 'x'
        FROM generate_series(1, 2500) i"""
    )
    rows = usp.all_users()
    assert next(rows)[1] == "seed"
    names = [row[1] for row in rows]
    assert len(names) == 2500
    assert names == sorted(names)


def test_a_stream_abandoned_midway_returns_its_connection(usp: Any) -> None:
    for i in range(3):
        usp.create_user(f"user{i}", "pw", f"user{i}@example.com")
    for _ in range(30):  # more than the pool's connections
        rows = usp.all_users()
        next(rows)
        rows.close()
    assert usp.is_admin(1) is False


def test_constants_have_the_original_values() -> None:
    assert (pgusers.OK, pgusers.NOT_FOUND, pgusers.EXPIRED, pgusers.REJECTED) == (0, 1, 2, 3)
    assert issubclass(pgusers.BadCallError, Exception)


def test_a_userid_of_thousands_of_digits_is_a_bad_call(usp: Any) -> None:
    with pytest.raises(BadCallError, match="userid must be a positive int, not an int beyond"):
        usp.find_user(userid=10**5000)
    with pytest.raises(BadCallError, match="beyond 64 bits"):
        usp.kill_sessions(-(10**5000))


def test_streams_left_open_exhaust_the_pool_with_a_message_that_says_so(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_max=2, pool_timeout=1
    ) as usp:
        for name in ("ada", "bob"):
            usp.create_user(name, "pw", f"{name}@example.com")
        first, second = usp.all_users(), usp.list_sessions(0, expired=False)
        next(first)
        usp.validate_user("ada", "pw")
        next(second)
        with pytest.raises(PoolExhaustedError, match="close unfinished all_users"):
            usp.find_user(username="ada")
        first.close()
        second.close()
        assert usp.find_user(username="ada")["userid"] == 1


def test_a_stream_in_a_with_block_gives_its_connection_back(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    with open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_max=1, pool_timeout=1
    ) as usp:
        usp.create_user("ada", "pw", "ada@example.com")
        usp.create_user("bob", "pw", "bob@example.com")
        for _ in range(3):
            with usp.all_users() as rows:
                assert next(rows)[1] == "ada"
        assert usp.is_admin(1) is False


def test_find_user_returns_exactly_the_documented_keys(usp: Any) -> None:
    userid = usp.create_user("ada", "pw", "ada@example.com", extra_data={"plan": "pro"})
    found = usp.find_user(userid=userid)
    assert set(found) == set(pgusers.FoundUser.__annotations__)
    assert (found["email_verified"], found["disabled"], found["extra_data"]) == (
        False,
        False,
        {"plan": "pro"},
    )
