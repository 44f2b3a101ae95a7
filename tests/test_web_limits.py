"""What one caller of the service can make it hold or compute: request bodies, JSON
nesting, and stored data it must answer with, on the real application and a real
PostgreSQL."""

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

import pgusers

from .support import found, make_api_key, web_app


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with TestClient(web_app(dsn, schema)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def check_key(space: pgusers.UserSpace) -> str:
    return make_api_key(space, "check")[1]


@pytest.fixture
def admin_key(space: pgusers.UserSpace) -> str:
    return make_api_key(space, "admin")[1]


def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    body = json.dumps({"username": "ada", "password": "x" * 100_000}).encode()
    answer = client.post("/v1/login", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"username": "ada", "password": "'
        for _ in range(1000):
            yield b"x" * 1000
        yield b'"}'

    answer = client.post(
        "/v1/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"


def test_the_body_limit_is_an_option(space: pgusers.UserSpace, dsn: str, schema: str) -> None:
    body = json.dumps({"username": "ada", "password": "pw", "extra_data": "x" * 10_000}).encode()
    headers = {"content-type": "application/json"}
    with TestClient(web_app(dsn, schema, max_body=8192)) as client:
        assert client.post("/v1/login", content=body, headers=headers).status_code == 413
    with TestClient(web_app(dsn, schema, max_body=16384, max_session_data=16384)) as client:
        assert client.post("/v1/login", content=body, headers=headers).status_code == 401


def test_a_check_body_over_its_own_limit_is_413(client: TestClient, check_key: str) -> None:
    body = json.dumps({"key": "k" * 5000}).encode()
    answer = client.post("/v1/check", content=body, headers=bearer(check_key))
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "too_large")


@pytest.mark.parametrize(("path", "depth"), [("/v1/check", 2000), ("/v1/login", 30000)])
def test_a_deeply_nested_body_is_refused_as_json_never_a_500(
    client: TestClient, check_key: str, path: Any, depth: Any
) -> None:
    # Whether a Python's decoder gives up at this depth (400) or reads it (then the
    # shape is wrong: 422) depends on its version; either is the envelope, never a 500.
    body = b"[" * depth + b"]" * depth
    answer = client.post(path, content=body, headers=bearer(check_key))
    assert answer.status_code in (400, 422)
    assert answer.json()["error"]["code"] in ("bad_request", "invalid_request")


def test_a_huge_stored_decimal_is_answered_as_text_not_expanded(
    client: TestClient, space: pgusers.UserSpace, check_key: str
) -> None:
    space.create_user("ada", "s3cret-pw", "ada@example.com")
    key = space.login("ada", "s3cret-pw", extra_data=Decimal("1E+250000")).key
    answer = client.post("/v1/check", json={"key": key}, headers=bearer(check_key))
    assert answer.json()["extra_data"] == {"$type": "decimal", "text": "1E+250000"}


def test_a_login_with_nan_data_leaves_a_checkable_session(
    client: TestClient, space: pgusers.UserSpace, check_key: str
) -> None:
    space.create_user("ada", "s3cret-pw", "ada@example.com")
    body = b'{"username": "ada", "password": "s3cret-pw", "extra_data": NaN}'
    key = client.post("/v1/login", content=body, headers={"content-type": "application/json"})
    answer = client.post("/v1/check", json={"key": key.json()["key"]}, headers=bearer(check_key))
    assert answer.status_code == 200
    assert answer.json()["extra_data"] == {"$type": "float", "repr": "nan"}


def test_bytes_that_are_not_utf8_in_user_data_leave_the_user_list_working(
    client: TestClient, space: pgusers.UserSpace, admin_key: str
) -> None:
    space.create_user("ada", "s3cret-pw", "ada@example.com", extra_data=b"\xff\xfe")
    answer = client.get("/v1/admin/users", headers=bearer(admin_key))
    assert answer.status_code == 200
    [user] = answer.json()["users"]
    assert user["extra_data"] == {"$type": "bytes", "base64": "//4="}


def test_a_revoked_or_unknown_api_key_is_told_so(client: TestClient) -> None:
    answer = client.post(
        "/v1/check", json={"key": "k"}, headers=bearer("pgusers_abcdefgh_" + "a" * 43)
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "the API key is revoked or unknown"


def test_a_user_agent_with_control_characters_is_recorded_without_them(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    userid = space.create_user("ada", "s3cret-pw", "ada@example.com")
    body = {"username": "ada", "password": "s3cret-pw"}
    answer = client.post("/v1/login", json=body, headers={"user-agent": "agent\x1b[2J/1.0"})
    assert answer.status_code == 200
    [session] = space.sessions(userid)
    assert session.user_agent == "agent[2J/1.0"


def test_an_anonymous_login_may_give_only_a_few_kib_of_session_data(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    space.create_user("ada", "s3cret-pw", "ada@example.com")
    body = {"username": "ada", "password": "s3cret-pw", "extra_data": "x" * 5000}
    answer = client.post("/v1/login", json=body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "too_large")
    assert list(space.sessions(found(space.find_user("ada"))["userid"])) == []
    body["extra_data"] = "x" * 3000
    assert client.post("/v1/login", json=body).status_code == 200


def test_an_admin_sets_the_sessions_per_user_cap(
    client: TestClient, space: pgusers.UserSpace, admin_key: str
) -> None:
    answer = client.patch(
        "/v1/admin/settings", json={"sessions_per_user": 5}, headers=bearer(admin_key)
    )
    assert answer.json()["sessions_per_user"] == 5
    answer = client.patch(
        "/v1/admin/settings", json={"sessions_per_user": None}, headers=bearer(admin_key)
    )
    assert answer.json()["sessions_per_user"] is None  # null: no limit
    answer = client.patch(
        "/v1/admin/settings", json={"sessions_per_user": 0}, headers=bearer(admin_key)
    )
    assert answer.status_code == 400  # 0 is a value, and not one the cap can take
