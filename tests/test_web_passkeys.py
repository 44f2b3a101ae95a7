"""Passkeys through the JSON API, for single-page and mobile clients, on the real
application, answered by the tests' software authenticator."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import pgusers

from .authenticator import Authenticator
from .support import web_app

ORIGIN = "https://app.example.com"
PASSWORD = "s3cret-pw"


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    space.set_webauthn("example.com", "Example", [ORIGIN])
    with TestClient(web_app(dsn, schema)) as client:
        yield client


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", PASSWORD, "ada@example.com")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def registered(client: TestClient, phone: Authenticator) -> str:
    """ada, with a passkey registered through the API: the session key used."""
    key = client.post("/v1/login", json={"username": "ada", "password": PASSWORD}).json()["key"]
    begun = client.post("/v1/passkeys/register/begin", json={"label": "phone"}, headers=bearer(key))
    assert begun.status_code == 201, begun.text
    options = begun.json()["options"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    answer = phone.create(json.dumps(options))
    done = client.post(
        "/v1/passkeys/register/finish",
        json={"challenge_id": begun.json()["challenge_id"], "credential": answer},
        headers=bearer(key),
    )
    assert done.status_code == 201, done.text
    return str(key)


def test_a_client_registers_a_passkey_and_signs_in_with_it(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    phone = Authenticator(ORIGIN)
    key = registered(client, phone)
    factors = client.get("/v1/factors", headers=bearer(key)).json()["factors"]
    assert [(f["kind"], f["label"]) for f in factors] == [("passkey", "phone")]
    begun = client.post("/v1/passkeys/login/begin", json={}).json()
    assert begun["options"]["allowCredentials"] == []
    answer = phone.get(json.dumps(begun["options"]))
    signed = client.post(
        "/v1/passkeys/login/finish",
        json={"challenge_id": begun["challenge_id"], "credential": answer},
    )
    assert signed.status_code == 200, signed.text
    session = client.get("/v1/session", headers=bearer(signed.json()["key"])).json()
    assert session["userid"] == ada and session["auth_methods"] == ["passkey"]
    again = client.post(
        "/v1/passkeys/login/finish",
        json={"challenge_id": begun["challenge_id"], "credential": answer},
    )
    assert (again.status_code, again.json()["error"]["code"]) == (401, "invalid_challenge")


def test_a_refused_answer_is_a_401(client: TestClient, ada: int) -> None:
    phone = Authenticator(ORIGIN)
    registered(client, phone)
    begun = client.post("/v1/passkeys/login/begin", json={"username": "ada"}).json()
    answer = phone.get(json.dumps(begun["options"]), origin="https://evil.test")
    refused = client.post(
        "/v1/passkeys/login/finish",
        json={"challenge_id": begun["challenge_id"], "credential": answer},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "passkey_failed")


def test_a_passkey_answers_the_second_step(client: TestClient, ada: int) -> None:
    phone = Authenticator(ORIGIN)
    registered(client, phone)
    first = client.post("/v1/login", json={"username": "ada", "password": PASSWORD}).json()
    assert first["status"] == "mfa_required" and "passkey" in first["factors"]
    begun = client.post("/v1/login/passkey", json={"ticket": first["ticket"]}).json()
    assert len(begun["options"]["allowCredentials"]) == 1
    answer = phone.get(json.dumps(begun["options"]))
    done = client.post("/v1/login/complete", json={"ticket": first["ticket"], "passkey": answer})
    assert done.status_code == 200, done.text
    stale = client.post("/v1/login/passkey", json={"ticket": first["ticket"]})
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "invalid_ticket")


def test_registering_needs_a_recent_proof_and_a_good_answer(
    client: TestClient, ada: int, clock: Any
) -> None:
    key = client.post("/v1/login", json={"username": "ada", "password": PASSWORD}).json()["key"]
    begun = client.post("/v1/passkeys/register/begin", json={}, headers=bearer(key)).json()
    bad = client.post(
        "/v1/passkeys/register/finish",
        json={"challenge_id": begun["challenge_id"], "credential": {"id": "x"}},
        headers=bearer(key),
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_request")
    clock.advance(601)
    late = client.post("/v1/passkeys/register/begin", json={}, headers=bearer(key))
    assert (late.status_code, late.json()["error"]["code"]) == (403, "reauthentication_required")


def test_labels_flags_and_the_relying_party_through_the_api(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    phone = Authenticator(ORIGIN)
    key = registered(client, phone)
    (factor,) = space.factors(ada).factors
    renamed = client.put(
        f"/v1/factors/{factor.factor_id}/label", json={"label": "laptop"}, headers=bearer(key)
    )
    assert renamed.status_code == 200 and space.factors(ada).factors[0].label == "laptop"
    space.create_user("root", PASSWORD, "root@example.com", admin=True)
    root = space.login("root", PASSWORD).key
    flag = client.post(
        f"/v1/admin/users/{ada}/factors/{factor.factor_id}/clear-flag", headers=bearer(root)
    )
    assert flag.status_code == 404  # not flagged
    changed = client.patch(
        "/v1/admin/settings",
        json={
            "webauthn_rp_id": "example.org",
            "webauthn_rp_name": "Other",
            "webauthn_origins": ["https://example.org"],
        },
        headers=bearer(root),
    )
    assert changed.status_code == 200 and changed.json()["webauthn_rp_id"] == "example.org"
    half = client.patch(
        "/v1/admin/settings", json={"webauthn_rp_id": "x.org"}, headers=bearer(root)
    )
    assert half.status_code == 400 and space.settings().webauthn_rp_id == "example.org"


def test_the_passkey_endpoints_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/v1/openapi.json").json()["paths"]
    for path in (
        "/v1/passkeys/register/begin",
        "/v1/passkeys/register/finish",
        "/v1/passkeys/login/begin",
        "/v1/passkeys/login/finish",
        "/v1/login/passkey",
    ):
        assert path in paths
