"""Hostile input: every public method fed arbitrary values (hypothesis).

The only outcomes allowed are the documented return values and BadCallError,
and a call that raised BadCallError must leave the database exactly as it was.
27 methods x 2 APIs x 300 examples: over 16,000 examples in a run.
"""

from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgusers import (
    EXPIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    THROTTLED,
    BadCallError,
    Enrollment,
    Factors,
    ImportReport,
    SessionInfo,
    Status,
)

from .support import STREAMS, snapshot

pytestmark = pytest.mark.slow

EXAMPLES = 300

SQL_FRAGMENTS = [
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    "1; SELECT pg_sleep(10)",
    "$$",
    "\\",
    "%s",
    "%(key)s",
    "{schema}",
    "NULL",
    "pgusers.users",
    "\x00",
    "A" * 43,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**80),
    st.integers(min_value=-3, max_value=5),
    st.floats(),
    st.text(st.characters(exclude_categories=[]), max_size=40),  # surrogates, controls, NUL
    st.binary(max_size=40),
    st.sampled_from(SQL_FRAGMENTS),
    st.builds(
        lambda char, count: char * count,
        st.characters(exclude_categories=[]),
        st.integers(0, 300_000),
    ),
    st.sampled_from(["ada", "pw", "ada@example.com", "x@y.z", 1, 0, True, 3600.0]),
)


def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists, dicts and tuples of ``inner``."""
    return (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        | st.tuples(inner)
    )


anything = st.recursive(scalars, nested, max_leaves=4)


def is_status(*allowed: Status) -> Callable[[Any], bool]:
    return lambda result: type(result) is Status and result in allowed


def is_login(result: Any) -> bool:
    key, admin, userid = result
    if key == "":
        return admin is False and userid is None
    return type(key) is str and type(admin) is bool and type(userid) is int


def is_check(result: Any) -> bool:
    rc, username, userid, _ = result
    found = rc == OK and type(username) is str and type(userid) is int
    not_found = rc in (NOT_FOUND, EXPIRED) and username is None and userid is None
    return type(rc) is Status and (found or not_found)


def is_outcome(result: Any) -> bool:
    status, key, admin, userid, retry_after, ticket, factors = result
    if status == OK:
        return type(key) is str and type(admin) is bool and type(userid) is int
    if status == MFA_REQUIRED:
        return type(ticket) is str and type(userid) is int and "totp" in factors
    return (
        type(status) is Status
        and (key, admin, userid, ticket, factors) == ("", False, None, None, ())
        and (retry_after > 0 if status == THROTTLED else retry_after == 0)
    )


def is_session_info(result: Any) -> bool:
    return isinstance(result, SessionInfo) and is_check(result.checked())


def is_user(result: Any) -> bool:
    return result is None or set(result) == {
        "userid",
        "username",
        "email",
        "admin",
        "extra_data",
        "email_verified",
        "disabled",
    }


def is_sessions(result: Any) -> bool:
    return all(len(row) == 3 and type(row[2]) is float for row in result)


def is_count(result: Any) -> bool:
    return type(result) is int and result >= 0


# name -> (arity, does it write, what a valid result looks like)
METHODS: dict[str, tuple[int, bool, Callable[[Any], bool]]] = {
    "create_user": (5, True, lambda result: type(result) is int and result > 0),
    "validate_user": (3, True, is_login),
    "delete_user": (2, True, is_status(OK, NOT_FOUND)),
    "change_password": (3, True, is_status(OK, NOT_FOUND, REJECTED)),
    "check_key": (1, True, is_check),
    "set_session_TTL": (1, True, lambda result: result is None),
    "find_user": (3, False, is_user),
    "modify_user": (4, True, is_status(OK, NOT_FOUND)),
    "is_admin": (1, False, lambda result: type(result) is bool),
    "set_admin": (2, True, is_status(OK, NOT_FOUND)),
    "list_sessions": (2, False, is_sessions),
    "kill_sessions": (2, True, lambda result: type(result) is int and result >= 0),
    "disable_user": (2, True, is_status(OK, NOT_FOUND)),
    "issue_token": (2, True, lambda result: type(result) is str and len(result) == 43),
    "reset_password": (2, True, is_status(OK, NOT_FOUND, EXPIRED)),
    "verify_email": (1, True, is_status(OK, NOT_FOUND, EXPIRED)),
    "login": (2, True, is_outcome),
    "clear_login_failures": (2, True, lambda result: result in (0, 1, 2)),
    "sessions": (3, False, lambda rows: all(len(row) == 9 for row in rows)),
    "end_session": (1, True, lambda result: result in (0, 1)),
    "end_other_sessions": (1, True, is_count),
    # Logging out by key, as the service and the integrations do with a cookie's value.
    "logout": (1, True, lambda result: result in (0, 1)),
    "set_session_data": (2, True, is_status(OK, NOT_FOUND, EXPIRED)),
    "set_session_max_age": (1, True, lambda result: result is None),
    "set_session_key_storage": (2, True, is_count),
    "events": (5, False, lambda rows: all(len(row) == 8 for row in rows)),
    "purge_events": (1, True, is_count),
    "set_event_retention": (1, True, lambda result: result is None),
    "import_legacy": (5, True, lambda result: isinstance(result, ImportReport)),
    "check_session": (2, True, is_session_info),
    "complete_login": (6, True, is_outcome),
    "reauthenticate": (4, True, is_status(OK, REJECTED, THROTTLED, NOT_FOUND)),
    "begin_totp": (2, True, lambda result: isinstance(result, Enrollment)),
    "confirm_totp": (3, True, is_status(OK, REJECTED, NOT_FOUND)),
    "new_recovery_codes": (1, True, lambda result: len(result) == 10),
    "factors": (1, False, lambda result: isinstance(result, Factors)),
    "remove_factor": (2, True, is_status(OK, NOT_FOUND)),
    "needs_enrollment": (1, False, lambda result: type(result) is bool),
    "set_webauthn": (3, True, lambda result: result is None),
    "begin_passkey_registration": (2, True, lambda result: result.status in (NOT_FOUND,)),
    "finish_passkey_registration": (3, True, lambda result: False),
    "begin_passkey_login": (3, True, lambda result: len(result) == 3),
    "finish_passkey_login": (5, True, is_outcome),
    "clear_passkey_flag": (2, True, is_status(NOT_FOUND)),
    "rename_factor": (3, True, is_status(NOT_FOUND)),
    "define_role": (3, True, lambda result: result is None),
    "delete_role": (1, True, is_status(OK, NOT_FOUND)),
    "grant_role": (3, True, is_status(OK, NOT_FOUND)),
    "revoke_role": (3, True, is_status(NOT_FOUND)),
    "user_roles": (1, False, lambda result: isinstance(result, list)),
    "users_with_role": (2, False, lambda rows: all(len(row) == 4 for row in rows)),
    "has_permission": (3, False, lambda result: result is False),
    "create_org": (2, True, lambda result: type(result) is int and result > 0),
    "delete_org": (1, True, is_status(NOT_FOUND)),
    "orgs": (1, False, lambda result: result == []),
    "org_members": (1, False, lambda rows: list(rows) == []),
    "add_member": (3, True, is_status(NOT_FOUND)),
    "remove_member": (2, True, is_status(NOT_FOUND)),
    "accept_invite": (2, True, is_status(NOT_FOUND)),
    "set_password_policy": (3, True, lambda result: result is None),
    # Without a secret key, signing in through other sites is refused before anything.
    "add_identity_provider": (11, True, lambda result: False),
    "remove_identity_provider": (1, True, is_status(NOT_FOUND)),
    "begin_external_login": (4, True, lambda result: False),
    "finish_external_login": (5, True, lambda result: False),
    "identities": (1, False, lambda result: result == []),
    "unlink_identity": (2, True, is_status(NOT_FOUND)),
    "remove_identity": (2, True, is_status(NOT_FOUND)),
    "provider_tokens": (2, False, lambda result: False),
    # Without mail set up or a secret key, no request for mail and no webhook succeeds.
    "set_mail": (10, True, lambda result: result is None),
    "set_login_by_email": (1, True, lambda result: result is None),
    "set_delivery_attempts": (1, True, lambda result: result is None),
    "request_password_reset": (2, True, lambda result: False),
    "request_email_verification": (1, True, lambda result: False),
    "request_email_change": (2, True, lambda result: False),
    "request_login_link": (2, True, lambda result: False),
    "login_with_link": (4, True, is_outcome),
    "login_with_code": (5, True, is_outcome),
    "add_webhook": (3, True, lambda result: False),
    "remove_webhook": (1, True, is_status(NOT_FOUND)),
    "rotate_webhook_secret": (2, True, lambda result: False),
    "take_messages": (3, True, lambda result: result == []),
    "message_sent": (1, True, is_status(NOT_FOUND)),
    "message_failed": (3, True, lambda result: result is None),
    "outbox": (2, False, lambda result: result == []),
    "retry_message": (1, True, is_status(NOT_FOUND)),
}
KEYWORDS = {
    "sessions": ("expired", "key"),
    "set_session_key_storage": ("progress",),
    "events": ("userid", "kinds", "since", "until", "newest_first"),
    "import_legacy": ("dry_run", "sessions", "on_conflict", "progress"),
    "complete_login": ("totp", "recovery_code", "passkey", "source", "user_agent"),
    "reauthenticate": ("password", "totp", "recovery_code"),
    "begin_totp": ("label",),
    "set_password_policy": ("min_length", "max_length", "breached"),
    "begin_passkey_registration": ("label",),
    "check_session": ("org",),
    "define_role": ("description",),
    "grant_role": ("org",),
    "revoke_role": ("org",),
    "users_with_role": ("org",),
    "has_permission": ("org",),
    "create_org": ("slug",),
    "begin_passkey_login": ("ticket", "source"),
    "finish_passkey_login": ("source", "user_agent", "extra_data"),
    "add_identity_provider": (
        "kind",
        "client_id",
        "client_secret",
        "discovery_url",
        "scopes",
        "link_by_verified_email",
        "trusted_for_mfa",
        "allow_signup",
        "keep_claims",
        "keep_tokens",
    ),
    "begin_external_login": ("link_to_key", "source"),
    "finish_external_login": ("source", "user_agent", "extra_data"),
    "set_mail": (
        "sender",
        "base_url",
        "port",
        "security",
        "username",
        "password",
        "app_name",
        "per_recipient",
        "new_device",
    ),
    "request_password_reset": ("source",),
    "request_login_link": ("source",),
    "login_with_link": ("source", "user_agent", "extra_data"),
    "login_with_code": ("source", "user_agent", "extra_data"),
    "add_webhook": ("description",),
    "rotate_webhook_secret": ("grace",),
    "take_messages": ("limit", "lease"),
    "message_failed": ("permanent",),
    "outbox": ("state", "limit"),
}
"""The arguments of a method that are keyword-only, given by name (the last ones)."""
TRIED: Counter[str] = Counter()


@pytest.mark.parametrize("method", METHODS)
def test_arbitrary_arguments_give_documented_outcomes_only(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, method: Any
) -> None:
    arity, writes, valid = METHODS[method]
    usp.create_user("ada", "pw", "ada@example.com")
    usp.validate_user("ada", "pw")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(anything, min_size=arity, max_size=arity))
    def call_with(arguments: list[Any]) -> None:
        TRIED[method] += 1
        before = snapshot(sql_conn, schema) if writes else None
        try:
            names = KEYWORDS.get(method, ())
            positional = arguments[: arity - len(names)]
            named = dict(zip(names, arguments[len(positional) :], strict=True))
            result = getattr(usp, method)(*positional, **named)
            if method in STREAMS:
                result = list(result)
        except BadCallError as error:
            assert str(error)
            if writes:
                assert snapshot(sql_conn, schema) == before
            return
        assert valid(result), result

    call_with()
    assert TRIED[method] >= EXAMPLES
