"""Second factors through the JSON API: a login that needs one, and a user managing
their own factors after a recent proof, on the real application."""

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from starlette.testclient import TestClient

import pgusers
from pgusers._core.factors import TOTP_PERIOD, totp_code
from pgusers.web import create_app

from .support import FAST_HASHER, Answer, Clock

KEY = "a-test-secret-key-long-enough-for-aes"
PASSWORD = "s3cret-pw"


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        secret_key=KEY,
    )
    with TestClient(create_app(opener), headers={"user-agent": "pytest-client"}) as client:
        yield client


@pytest.fixture
def steady(clock: Clock) -> Clock:
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    return clock


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def log_in(client: TestClient) -> Answer:
    return client.post("/v1/login", json={"username": "ada", "password": PASSWORD})


def signed_up(client: TestClient, clock: Clock) -> tuple[str, dict[str, Any]]:
    """ada, with an authenticator app set up through the API: her session key and the
    enrollment."""
    key = log_in(client).json()["key"]
    made = client.post("/v1/factors/totp", json={"label": "phone"}, headers=bearer(key))
    assert made.status_code == 201, made.text
    enrollment = made.json()
    code = totp_code(enrollment["secret"], clock.now)
    confirmed = client.post(
        f"/v1/factors/{enrollment['factor_id']}/confirm", json={"code": code}, headers=bearer(key)
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(TOTP_PERIOD)
    return key, enrollment


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", PASSWORD, "ada@example.com")


def test_a_login_with_a_factor_is_finished_with_a_code(
    client: TestClient, ada: int, steady: Clock
) -> None:
    _, enrollment = signed_up(client, steady)
    first = log_in(client)
    assert first.status_code == 200
    body = first.json()
    assert (body["status"], body["key"], body["factors"]) == ("mfa_required", None, ["totp"])
    code = totp_code(enrollment["secret"], steady.now)
    done = client.post("/v1/login/complete", json={"ticket": body["ticket"], "totp": code})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "ok" and done.json()["userid"] == ada
    again = client.post("/v1/login/complete", json={"ticket": body["ticket"], "totp": code})
    assert (again.status_code, again.json()["error"]["code"]) == (401, "invalid_ticket")
    wrong = client.post(
        "/v1/login/complete", json={"ticket": log_in(client).json()["ticket"], "totp": code}
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "mfa_failed")


def test_changing_factors_needs_a_recent_proof(client: TestClient, ada: int, steady: Clock) -> None:
    key, enrollment = signed_up(client, steady)
    steady.advance(601)  # the login's proof is now more than ten minutes old
    codes = client.post("/v1/recovery-codes", headers=bearer(key))
    assert (codes.status_code, codes.json()["error"]["code"]) == (403, "reauthentication_required")
    refused = client.post("/v1/reauthenticate", json={"password": "wrong"}, headers=bearer(key))
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        401,
        "reauthentication_failed",
    )
    proved = client.post("/v1/reauthenticate", json={"password": PASSWORD}, headers=bearer(key))
    assert proved.status_code == 200
    codes = client.post("/v1/recovery-codes", headers=bearer(key))
    assert codes.status_code == 201 and len(codes.json()["codes"]) == 10
    listed = client.get("/v1/factors", headers=bearer(key)).json()
    assert listed["recovery_codes"] == 10
    assert [f["label"] for f in listed["factors"]] == ["phone"]
    gone = client.delete(f"/v1/factors/{enrollment['factor_id']}", headers=bearer(key))
    assert gone.status_code == 200
    assert client.get("/v1/factors", headers=bearer(key)).json() == {
        "factors": [],
        "recovery_codes": 0,
    }
    assert log_in(client).json()["status"] == "ok"


def test_a_wrong_confirmation_code_is_a_400(client: TestClient, ada: int, steady: Clock) -> None:
    key = log_in(client).json()["key"]
    made = client.post("/v1/factors/totp", json={}, headers=bearer(key)).json()
    right = totp_code(made["secret"], steady.now)
    wrong = "000000" if right != "000000" else "111111"
    answer = client.post(
        f"/v1/factors/{made['factor_id']}/confirm", json={"code": wrong}, headers=bearer(key)
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "wrong_code")
    missing = client.post("/v1/factors/nope/confirm", json={"code": right}, headers=bearer(key))
    assert missing.status_code == 404


def test_the_factor_endpoints_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/v1/openapi.json").json()["paths"]
    for path in (
        "/v1/login/complete",
        "/v1/reauthenticate",
        "/v1/factors",
        "/v1/factors/totp",
        "/v1/recovery-codes",
        "/v1/password",
    ):
        assert path in paths


def test_the_session_says_how_its_user_proved_who_they_are(
    client: TestClient, ada: int, steady: Clock
) -> None:
    _, enrollment = signed_up(client, steady)
    ticket = log_in(client).json()["ticket"]
    code = totp_code(enrollment["secret"], steady.now)
    done = client.post("/v1/login/complete", json={"ticket": ticket, "totp": code})
    answer = client.get("/v1/session", headers=bearer(done.json()["key"])).json()
    assert answer["auth_methods"] == ["password", "totp"]
    assert abs(answer["authenticated_at"] - steady.now) < 1


def test_a_user_changes_their_password_with_the_current_one(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    key = log_in(client).json()["key"]
    other = log_in(client).json()["key"]
    wrong = client.post(
        "/v1/password",
        json={"current_password": "nope", "new_password": "a-new-password"},
        headers=bearer(key),
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "wrong_password")
    space.set_password_policy(min_length=20, breached="off")
    weak = client.post(
        "/v1/password",
        json={"current_password": PASSWORD, "new_password": "a-new-password"},
        headers=bearer(key),
    )
    assert weak.status_code == 400 and "at least 20" in weak.json()["error"]["message"]
    assert space.login("ada", PASSWORD).status == pgusers.OK
    done = client.post(
        "/v1/password",
        json={
            "current_password": PASSWORD,
            "new_password": "a-new-password-long-enough",
            "end_other_sessions": True,
        },
        headers=bearer(key),
    )
    assert done.status_code == 200, done.text
    assert space.login("ada", PASSWORD).status == pgusers.REJECTED
    assert space.check_key(other).status == pgusers.NOT_FOUND
    assert space.check_key(key).status == pgusers.OK
