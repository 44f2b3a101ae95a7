"""The JSON API of ``pgusers.web``, through a real HTTP client on the real application
and a real PostgreSQL."""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

import pgusers
from pgusers import AsyncUserSpace
from pgusers.web import create_app

from .support import FAST_HASHER, found, make_api_key, web_app


def client_for(dsn: str, schema: str, **options: Any) -> TestClient:
    return TestClient(web_app(dsn, schema, **options), headers={"user-agent": "pytest-client"})


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with client_for(dsn, schema) as client:
        yield client


@pytest.fixture
def admin_key(space: pgusers.UserSpace) -> tuple[str, str]:
    return make_api_key(space, "admin")


@pytest.fixture
def check_key(space: pgusers.UserSpace) -> tuple[str, str]:
    return make_api_key(space, "check")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", "s3cret-pw", "ada@example.com", extra_data={"plan": "pro"})


def log_in(client: TestClient, username: str = "ada", password: str = "s3cret-pw") -> str:
    answer = client.post("/v1/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["key"])


# -- logging in and checking keys -----------------------------------------------------


def test_login_gives_a_key_that_the_check_endpoint_accepts(
    client: TestClient, ada: int, check_key: tuple[str, str]
) -> None:
    answer = client.post("/v1/login", json={"username": "ada", "password": "s3cret-pw"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["userid"], body["admin"]) == (ada, False)
    checked = client.post("/v1/check", json={"key": body["key"]}, headers=bearer(check_key[1]))
    assert checked.json() == {
        "status": "ok",
        "userid": ada,
        "username": "ada",
        "extra_data": None,
    }


def test_login_records_the_client_address_and_user_agent(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    log_in(client)
    (session,) = space.sessions(ada)
    assert (session.source, session.user_agent) == ("testclient", "pytest-client")


def test_a_wrong_password_is_401_with_a_stable_code(client: TestClient, ada: int) -> None:
    answer = client.post("/v1/login", json={"username": "ada", "password": "nope"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "login_failed"


def test_a_throttled_login_is_429_with_retry_after(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    space.set_login_policy(free_failures=1)
    for _ in range(2):
        client.post("/v1/login", json={"username": "ada", "password": "nope"})
    answer = client.post("/v1/login", json={"username": "ada", "password": "s3cret-pw"})
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "throttled"
    assert int(answer.headers["retry-after"]) >= 1


def test_a_disabled_account_is_403(client: TestClient, space: pgusers.UserSpace, ada: int) -> None:
    space.disable_user(ada)
    answer = client.post("/v1/login", json={"username": "ada", "password": "s3cret-pw"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "account_disabled")


def test_check_reports_unknown_and_expired_keys(
    client: TestClient, check_key: tuple[str, str]
) -> None:
    answer = client.post("/v1/check", json={"key": "x" * 43}, headers=bearer(check_key[1]))
    assert answer.json()["status"] == "not_found"


def test_check_takes_an_api_key_not_a_session_key(client: TestClient, ada: int) -> None:
    key = log_in(client)
    answer = client.post("/v1/check", json={"key": key}, headers=bearer(key))
    assert answer.status_code == 401


def test_an_api_key_revoked_elsewhere_stops_working_after_the_cache(
    space: pgusers.UserSpace,
    dsn: str,
    schema: str,
    check_key: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_id, key = check_key
    with client_for(dsn, schema, api_key_cache=5.0) as client:
        assert client.post("/v1/check", json={"key": "x"}, headers=bearer(key)).status_code == 200
        assert space._driver.run(space._core.revoke_api_key, key_id) == pgusers.OK
        cached = client.post("/v1/check", json={"key": "x"}, headers=bearer(key))
        assert cached.status_code == 200  # trusted for up to api_key_cache seconds
        later = time.monotonic() + 5.0
        monkeypatch.setattr(time, "monotonic", lambda: later)
        answer = client.post("/v1/check", json={"key": "x"}, headers=bearer(key))
    assert answer.status_code == 401


def test_an_api_key_revoked_through_the_service_stops_working_at_once(
    client: TestClient,
    space: pgusers.UserSpace,
    admin_key: tuple[str, str],
    check_key: tuple[str, str],
) -> None:
    key_id, key = check_key
    assert client.post("/v1/check", json={"key": "x"}, headers=bearer(key)).status_code == 200
    revoked = client.delete(f"/v1/admin/api-keys/{key_id}", headers=bearer(admin_key[1]))
    assert revoked.json() == {"status": "ok"}
    assert client.post("/v1/check", json={"key": "x"}, headers=bearer(key)).status_code == 401
    again = client.delete(f"/v1/admin/api-keys/{key_id}", headers=bearer(admin_key[1]))
    assert again.status_code == 404
    (event,) = space.events(kinds="apikey.revoked")
    assert (event.actor, event.detail["key_id"], event.detail["scope"]) == (
        f"apikey:{admin_key[0]}",
        key_id,
        "check",
    )


def test_an_admin_makes_and_lists_api_keys_never_showing_them(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    made = client.post("/v1/admin/api-keys", json={"name": "shop", "scope": "check"}, headers=auth)
    assert made.status_code == 201
    new_key = made.json()["key"]
    assert client.post("/v1/check", json={"key": "x"}, headers=bearer(new_key)).status_code == 200
    listed = client.get("/v1/admin/api-keys", headers=auth)
    assert {(k["name"], k["scope"]) for k in listed.json()["api_keys"]} == {
        ("tests", "admin"),
        ("shop", "check"),
    }
    assert new_key not in listed.text
    (event,) = [e for e in space.events(kinds="apikey.created") if e.detail["name"] == "shop"]
    assert event.actor == f"apikey:{admin_key[0]}"
    assert new_key not in str(event)


def test_a_check_scoped_key_cannot_use_admin_endpoints(
    client: TestClient, check_key: tuple[str, str]
) -> None:
    answer = client.get("/v1/admin/users", headers=bearer(check_key[1]))
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "forbidden")


def test_no_credentials_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    answer = client.get("/v1/admin/users")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


# -- a user's own sessions -----------------------------------------------------------------


def test_logout_ends_this_session_only(
    client: TestClient, space: pgusers.UserSpace, ada: int, check_key: tuple[str, str]
) -> None:
    first, second = log_in(client), log_in(client)
    assert client.post("/v1/logout", headers=bearer(first)).json() == {"ended": 1}
    assert space.check_key(first).status == pgusers.NOT_FOUND
    assert space.check_key(second).status == pgusers.OK


def test_logout_others_keeps_this_session(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    keys = [log_in(client) for _ in range(3)]
    assert client.post("/v1/logout/others", headers=bearer(keys[0])).json() == {"ended": 2}
    assert [space.check_key(key).status for key in keys] == [pgusers.OK, *[pgusers.NOT_FOUND] * 2]


def test_a_user_lists_and_ends_their_own_sessions(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    mine, other = log_in(client), log_in(client)
    sessions = client.get("/v1/sessions", headers=bearer(mine)).json()["sessions"]
    assert sorted(s["current"] for s in sessions) == [False, True]
    other_id = next(s["session_id"] for s in sessions if not s["current"])
    assert client.delete(f"/v1/sessions/{other_id}", headers=bearer(mine)).json() == {"ended": 1}
    assert space.check_key(other).status == pgusers.NOT_FOUND


def test_a_user_cannot_end_someone_elses_session(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    space.create_user("bob", "bob-pw-123", "bob@example.com")
    bobs = log_in(client, "bob", "bob-pw-123")
    (bob_session,) = space.sessions(found(space.find_user(username="bob"))["userid"])
    answer = client.delete(f"/v1/sessions/{bob_session.session_id}", headers=bearer(log_in(client)))
    assert answer.status_code == 404
    assert space.check_key(bobs).status == pgusers.OK


# -- anyone: tokens and registration -------------------------------------------------------


def test_a_reset_token_from_an_admin_sets_a_new_password(
    client: TestClient, space: pgusers.UserSpace, ada: int, admin_key: tuple[str, str]
) -> None:
    issued = client.post(
        f"/v1/admin/users/{ada}/tokens",
        json={"purpose": "reset_password"},
        headers=bearer(admin_key[1]),
    )
    assert issued.status_code == 201
    token = issued.json()["token"]
    done = client.post("/v1/password/reset", json={"token": token, "password": "new-pw-456"})
    assert done.json() == {"status": "ok"}
    assert space.login("ada", "new-pw-456").status == pgusers.OK
    again = client.post("/v1/password/reset", json={"token": token, "password": "other-pw"})
    assert (again.status_code, again.json()["error"]["code"]) == (400, "invalid_token")


def test_an_email_verification_token_verifies(
    client: TestClient, space: pgusers.UserSpace, ada: int, admin_key: tuple[str, str]
) -> None:
    issued = client.post(
        f"/v1/admin/users/{ada}/tokens",
        json={"purpose": "verify_email"},
        headers=bearer(admin_key[1]),
    )
    done = client.post("/v1/email/verify", json={"token": issued.json()["token"]})
    assert done.json() == {"status": "ok"}
    assert found(space.find_user(userid=ada))["email_verified"] is True


def test_registration_is_closed_unless_enabled(
    client: TestClient, space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    body = {"username": "newbie", "password": "pw-123456", "email": "n@example.com"}
    closed = client.post("/v1/register", json=body)
    assert (closed.status_code, closed.json()["error"]["code"]) == (403, "registration_closed")
    assert space.find_user(username="newbie") is None
    with client_for(dsn, schema, registration=True) as open_client:
        made = open_client.post("/v1/register", json=body)
    assert made.status_code == 201
    assert found(space.find_user(username="newbie"))["userid"] == made.json()["userid"]


def test_registration_is_throttled_per_source(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    with client_for(dsn, schema, registration=True) as open_client:
        answers = [
            open_client.post(
                "/v1/register",
                json={"username": f"n{i}", "password": "pw-123456", "email": f"n{i}@example.com"},
            )
            for i in range(11)
        ]
    assert [a.status_code for a in answers] == [201] * 10 + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    assert space.find_user(username="n10") is None


# -- administrators ------------------------------------------------------------------------


def test_an_admin_session_key_may_use_admin_endpoints(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    space.create_user("root", "root-pw-1", "root@example.com", admin=True)
    key = log_in(client, "root", "root-pw-1")
    assert client.get("/v1/admin/users", headers=bearer(key)).status_code == 200


def test_a_non_admin_session_key_is_refused_admin_endpoints(client: TestClient, ada: int) -> None:
    answer = client.get("/v1/admin/users", headers=bearer(log_in(client)))
    assert answer.status_code == 403


def test_admin_creates_reads_changes_and_deletes_a_user(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    made = client.post(
        "/v1/admin/users",
        json={"username": "cy", "password": "cy-pw-123", "email": "cy@example.com"},
        headers=auth,
    )
    assert made.status_code == 201
    userid = made.json()["userid"]
    changed = client.patch(
        f"/v1/admin/users/{userid}",
        json={"email": "cy@example.org", "extra_data": {"team": "blue"}},
        headers=auth,
    )
    assert (changed.json()["email"], changed.json()["extra_data"]) == (
        "cy@example.org",
        {"team": "blue"},
    )
    assert client.get(f"/v1/admin/users/{userid}", headers=auth).json()["username"] == "cy"
    assert client.delete(f"/v1/admin/users/{userid}", headers=auth).json() == {"status": "ok"}
    gone = client.get(f"/v1/admin/users/{userid}", headers=auth)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    assert space.find_user(userid=userid) is None


def test_admin_disables_a_user_and_their_sessions_end(
    client: TestClient, space: pgusers.UserSpace, ada: int, admin_key: tuple[str, str]
) -> None:
    key = log_in(client)
    answer = client.put(
        f"/v1/admin/users/{ada}/disabled", json={"value": True}, headers=bearer(admin_key[1])
    )
    assert answer.json() == {"status": "ok"}
    assert space.check_key(key).status == pgusers.NOT_FOUND
    assert found(space.find_user(userid=ada))["disabled"] is True


def test_admin_sets_the_admin_flag(
    client: TestClient, space: pgusers.UserSpace, ada: int, admin_key: tuple[str, str]
) -> None:
    client.put(f"/v1/admin/users/{ada}/admin", json={"value": True}, headers=bearer(admin_key[1]))
    assert space.is_admin(ada)


def test_admin_lists_and_ends_a_users_sessions(
    client: TestClient, space: pgusers.UserSpace, ada: int, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    keys = [log_in(client) for _ in range(2)]
    listed = client.get(f"/v1/admin/users/{ada}/sessions", headers=auth).json()["sessions"]
    assert len(listed) == 2
    one = listed[0]["session_id"]
    assert client.delete(f"/v1/admin/sessions/{one}", headers=auth).json() == {"ended": 1}
    assert client.delete(f"/v1/admin/sessions/{one}", headers=auth).status_code == 404
    assert client.delete(f"/v1/admin/users/{ada}/sessions", headers=auth).json() == {"ended": 1}
    assert {space.check_key(key).status for key in keys} == {pgusers.NOT_FOUND}


def test_users_come_in_keyset_pages(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    made = [space.create_user(f"user{i}", "pw-123456", f"u{i}@example.com") for i in range(5)]
    seen, after = [], 0
    while after is not None:
        page = client.get(
            "/v1/admin/users", params={"limit": 2, "after": after}, headers=bearer(admin_key[1])
        ).json()
        seen += [user["userid"] for user in page["users"]]
        after = page["next_after"]
    assert seen == made


def test_users_are_found_by_part_of_a_name_or_email_and_by_flags(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    space.create_user("Margaret", "pw-123456", "mh@example.com", admin=True)
    bob = space.create_user("bob", "pw-123456", "bob@lab.example")
    space.disable_user(bob)

    def names(**params: Any) -> list[str]:
        users = client.get("/v1/admin/users", params=params, headers=auth).json()["users"]
        return [user["username"] for user in users]

    assert names(search="GARE") == ["Margaret"]
    assert names(search="lab.") == ["bob"]
    assert names(search="%") == []
    assert names(admin=True) == ["Margaret"]
    assert names(disabled=True) == ["bob"]
    assert names(verified=False) == ["Margaret", "bob"]


def test_admin_actions_are_in_the_events_with_the_api_key_as_actor(
    client: TestClient, ada: int, admin_key: tuple[str, str]
) -> None:
    key_id, key = admin_key
    client.put(f"/v1/admin/users/{ada}/disabled", json={"value": True}, headers=bearer(key))
    events = client.get(
        "/v1/admin/events", params={"kind": "user.disabled"}, headers=bearer(key)
    ).json()["events"]
    assert [(e["userid"], e["actor"]) for e in events] == [(ada, f"apikey:{key_id}")]


def test_events_are_newest_first_and_limited(
    client: TestClient, ada: int, admin_key: tuple[str, str]
) -> None:
    for _ in range(3):
        log_in(client)
    events = client.get(
        "/v1/admin/events", params={"limit": 2}, headers=bearer(admin_key[1])
    ).json()["events"]
    assert len(events) == 2
    assert events[0]["id"] > events[1]["id"]


def test_admin_reads_and_changes_the_settings(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    changed = client.patch(
        "/v1/admin/settings",
        json={"session_ttl": 600, "session_max_age": 86400, "free_failures": 3},
        headers=auth,
    )
    assert changed.status_code == 200
    settings = client.get("/v1/admin/settings", headers=auth).json()
    assert (settings["session_ttl"], settings["session_max_age"], settings["free_failures"]) == (
        600,
        86400,
        3,
    )


def test_null_is_no_limit_and_zero_a_value_the_userspace_refuses(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    auth = bearer(admin_key[1])
    client.patch("/v1/admin/settings", json={"session_max_age": 3600}, headers=auth)
    removed = client.patch("/v1/admin/settings", json={"session_max_age": None}, headers=auth)
    assert (removed.status_code, removed.json()["session_max_age"]) == (200, None)
    for body in ({"session_max_age": 0}, {"sessions_per_user": 0}, {"session_ttl": None}):
        refused = client.patch("/v1/admin/settings", json=body, headers=auth)
        assert refused.status_code == 400, body
    assert space.settings().session_max_age is None
    assert space.settings().sessions_per_user == 100


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"username": "ada"},
        {"username": 5, "password": "x"},
        {"username": "a", "password": "b", "x": 1},
    ],
    ids=["empty", "no password", "number", "unknown field"],
)
def test_malformed_bodies_are_422_json(client: TestClient, body: Any) -> None:
    answer = client.post("/v1/login", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_input_pgusers_refuses_is_400_json_and_changes_nothing(
    client: TestClient, space: pgusers.UserSpace, admin_key: tuple[str, str]
) -> None:
    answer = client.post(
        "/v1/admin/users",
        json={"username": "x" * 500, "password": "pw-123456", "email": "x@example.com"},
        headers=bearer(admin_key[1]),
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert list(space.all_users()) == []


def test_a_body_that_is_not_json_is_400_json(client: TestClient) -> None:
    answer = client.post(
        "/v1/login", content=b"\xff{", headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "bad_request")


def test_unknown_paths_are_404_json(client: TestClient) -> None:
    answer = client.get("/v1/nothing-here")
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    headers = client.get("/v1/openapi.json").headers
    assert "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert (headers["x-frame-options"], headers["referrer-policy"]) == ("DENY", "no-referrer")


def test_the_openapi_document_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/v1/openapi.json").json()["paths"]
    assert {"/v1/login", "/v1/check", "/v1/admin/users", "/v1/admin/events"} <= set(paths)
    assert not any(path.startswith("/console") for path in paths)


def test_an_open_userspace_can_be_given_instead_of_a_factory(
    space: pgusers.UserSpace, ada: int, dsn: str, schema: str
) -> None:
    async def scenario() -> tuple[int, pgusers.CheckResult]:
        async with AsyncUserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
            transport = httpx.ASGITransport(app=create_app(usp))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"username": "ada", "password": "s3cret-pw"}
                answer = await client.post("/v1/login", json=body)
            return answer.status_code, await usp.check_key(answer.json()["key"])

    status, checked = asyncio.run(scenario())
    assert (status, checked.userid) == (200, ada)


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"{", 400), (b"[]", 422), (b'{"key": 5}', 422), (b'{"key": "k", "more": 1}', 422)],
    ids=["not json", "a list", "a number", "another field"],
)
def test_check_refuses_malformed_bodies_as_json(
    client: TestClient, check_key: tuple[str, str], content: Any, status: Any
) -> None:
    headers = {**bearer(check_key[1]), "content-type": "application/json"}
    answer = client.post("/v1/check", content=content, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] in {"bad_request", "invalid_request"}


def test_check_answers_session_data_of_any_stored_type_by_the_codecs_rules(
    client: TestClient, space: pgusers.UserSpace, check_key: tuple[str, str]
) -> None:
    import datetime as dt

    space.create_user("ada", "s3cret-pw", "ada@example.com")
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    key = space.login("ada", "s3cret-pw", extra_data={"since": moment, "tags": {"a"}}).key
    answer = client.post("/v1/check", json={"key": key}, headers=bearer(check_key[1]))
    assert answer.json()["extra_data"] == {
        "since": {"$type": "datetime", "iso": moment.isoformat()},
        "tags": {"$type": "set", "items": ["a"]},
    }


def test_the_check_endpoint_documents_its_body_and_answer(client: TestClient) -> None:
    operation = client.get("/v1/openapi.json").json()["paths"]["/v1/check"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["key"]
    assert "200" in operation["responses"]


def test_an_app_serves_from_a_new_event_loop_for_each_request(
    space: pgusers.UserSpace, ada: int, dsn: str, schema: str
) -> None:
    # A test client used without "with" runs each request in an event loop of its own.
    client = TestClient(web_app(dsn, schema))
    first = client.post("/v1/login", json={"username": "ada", "password": "s3cret-pw"})
    second = client.post("/v1/login", json={"username": "ada", "password": "s3cret-pw"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(list(space.sessions(ada))) == 2


@pytest.mark.parametrize("loss", ["demoted", "disabled", "deleted"])
def test_an_api_key_loses_the_rights_its_maker_loses(
    client: TestClient, space: pgusers.UserSpace, dsn: str, schema: str, loss: Any
) -> None:
    boss = space.create_user("boss", "boss-pw-123", "boss@example.com", admin=True)
    session = log_in(client, "boss", "boss-pw-123")
    key = client.post(
        "/v1/admin/api-keys", json={"name": "ops", "scope": "admin"}, headers=bearer(session)
    ).json()["key"]
    assert client.get("/v1/admin/users", headers=bearer(key)).status_code == 200
    if loss == "demoted":
        space.set_admin(boss, False)
    elif loss == "disabled":
        space.disable_user(boss)
    else:
        space.delete_user(userid=boss)
    new_user = {"username": "mallory", "password": "m4llory-pw", "email": "m@example.com"}
    with client_for(dsn, schema) as fresh:  # a process that has not seen the key yet
        answer = fresh.post(
            "/v1/admin/users", json={**new_user, "admin": True}, headers=bearer(key)
        )
    assert answer.status_code == 401
    assert space.find_user("mallory") is None


def test_an_operators_api_key_keeps_working_whoever_is_admin(
    client: TestClient, admin_key: tuple[str, str], space: pgusers.UserSpace
) -> None:
    assert client.get("/v1/admin/users", headers=bearer(admin_key[1])).status_code == 200


def test_the_openapi_document_declares_bearer_auth_and_the_real_error_envelope(
    client: TestClient,
) -> None:
    document = client.get("/v1/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    guarded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("401", "422"):
                assert operation["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorEnvelope"
                }, (method, path, status)
            if operation.get("security"):
                guarded.append((method, path.replace("{userid}", "1").replace("{key_id}", "x")))
    assert ("get", "/v1/admin/users") in guarded and ("post", "/v1/check") in guarded
    for method, path in guarded:  # each answers an unauthenticated call as documented
        answer = client.request(method, path.replace("{session_id}", "x"), json={})
        assert answer.status_code == 401, (method, path)
        assert set(answer.json()["error"]) == {"code", "message"}


def test_every_operation_declares_the_answer_it_gives(client: TestClient) -> None:
    """The document describes each success answer (the routes validate their answers
    against the same models, so a route that answered otherwise would fail its tests)."""
    document = client.get("/v1/openapi.json").json()
    undeclared = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            success = next(
                answer for status, answer in operation["responses"].items() if status < "300"
            )
            schema = success.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" not in schema:  # a model of named fields, not "any object"
                undeclared.append(f"{method.upper()} {path}")
    assert undeclared == []
