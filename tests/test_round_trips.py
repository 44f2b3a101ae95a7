"""How many statements (round trips) each call sends: the figures the library's page gives."""

from typing import Any

import pytest

from pgusers._drivers import driver_async, driver_sync, shared


def throttle_a_source(usp: Any) -> None:
    """Fail enough that the next login from 192.0.2.9 waits (10 minutes)."""
    usp.set_login_policy(source_limit=1)
    usp.login("ada", "wrong", source="192.0.2.9")


def disable_ada(usp: Any) -> None:
    usp.disable_user(1)


SETUP = {"login, throttled": throttle_a_source, "login, disabled": disable_ada}


EXPECTED = [
    ("create_user", lambda u, key: u.create_user("bob", "pw", "bob@example.com"), 1),
    ("validate_user", lambda u, key: u.validate_user("ada", "pw"), 2),
    ("validate_user, wrong password", lambda u, key: u.validate_user("ada", "no"), 2),
    ("validate_user, unknown user", lambda u, key: u.validate_user("nobody", "no"), 2),
    ("login", lambda u, key: u.login("ada", "pw", source="192.0.2.1"), 2),
    ("login, wrong password", lambda u, key: u.login("ada", "no", source="192.0.2.1"), 2),
    ("login, throttled", lambda u, key: u.login("ada", "pw", source="192.0.2.9"), 1),
    ("login, disabled", lambda u, key: u.login("ada", "pw"), 2),
    ("check_key", lambda u, key: u.check_key(key), 1),
    ("check_key, malformed key", lambda u, key: u.check_key("not a key"), 0),
    ("set_session_TTL", lambda u, key: u.set_session_TTL(3600), 1),
    ("find_user", lambda u, key: u.find_user(username="ada"), 1),
    ("modify_user", lambda u, key: u.modify_user(1, email="ada2@example.com"), 1),
    ("is_admin", lambda u, key: u.is_admin(1), 1),
    ("set_admin", lambda u, key: u.set_admin(1), 1),
    ("change_password", lambda u, key: u.change_password(1, "pw2"), 1),
    ("change_password, with the old one", lambda u, key: u.change_password(1, "pw2", "pw"), 2),
    ("kill_sessions", lambda u, key: u.kill_sessions(1), 1),
    ("delete_user", lambda u, key: u.delete_user(userid=1), 1),
    ("disable_user", lambda u, key: u.disable_user(1), 1),
    ("issue_token", lambda u, key: u.issue_token(1, "verify_email"), 1),
    ("verify_email", lambda u, key: u.verify_email(u.issue_token(1, "verify_email")), 2),
    ("reset_password", lambda u, key: u.reset_password(u.issue_token(1, "reset_password"), "x"), 3),
    ("reset_password, unknown token", lambda u, key: u.reset_password("A" * 43, "x"), 1),
    ("end_session", lambda u, key: u.end_session("A" * 16), 1),
    ("end_other_sessions", lambda u, key: u.end_other_sessions(key), 1),
    ("logging out by key", lambda u, key: u.logout(key), 1),
    ("logging out by key, malformed key", lambda u, key: u.logout("x"), 0),
    ("set_session_data", lambda u, key: u.set_session_data(key, {"cart": [1]}), 1),
    ("set_session_data, malformed key", lambda u, key: u.set_session_data("x", 1), 0),
    ("set_session_max_age", lambda u, key: u.set_session_max_age(60), 1),
    ("set_event_retention", lambda u, key: u.set_event_retention(30), 1),
    ("purge_events", lambda u, key: u.purge_events(0), 1),
    ("clear_login_failures", lambda u, key: u.clear_login_failures("ada"), 1),
    # BEGIN, LOCK, switch, COMMIT, then one batch that converts and one that finds none
    ("set_session_key_storage", lambda u, key: u.set_session_key_storage("hashed"), 6),
]


@pytest.mark.parametrize(("name", "call", "statements"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_statements_per_call(
    usp: Any, api: str, monkeypatch: pytest.MonkeyPatch, name: Any, call: Any, statements: int
) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw")[0]
    SETUP.get(name, lambda usp: None)(usp)
    sent: list[str] = []
    real_fetch, real_fetch_async = shared.fetch, shared.fetch_async

    def counting(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return real_fetch(cursor, fetch)

    async def counting_async(cursor: Any, fetch: Any) -> Any:
        sent.append(cursor._query.query)
        return await real_fetch_async(cursor, fetch)

    monkeypatch.setattr(driver_sync, "fetch", counting)
    monkeypatch.setattr(driver_async, "fetch_async", counting_async)
    call(usp, key)
    assert len(sent) == statements, sent
