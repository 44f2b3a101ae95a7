"""Signing in through other sites with the JSON API, as a single-page or mobile client
does: the buttons' list, begin, the provider's redirect, finish; linking and
unlinking from a signed-in session; the administrators' endpoints."""

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import pgusers

from .identity_providers import (
    CLIENT_ID,
    CLIENT_SECRET,
    ScriptedProvider,
    add_provider,
    follow,
    scripted,
)
from .support import FAST_HASHER, make_api_key, served, web_app

pytest.importorskip("authlib")

KEY = "a-test-secret-key-long-enough-for-aes"
REDIRECT = "https://app.example.com/auth/callback"
PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def idp() -> Iterator[ScriptedProvider]:
    with scripted({"sub": "b-1", "email": "bea@example.com", "email_verified": True}) as idp:
        yield idp


@pytest.fixture
def keyed(dsn: str, schema: str) -> Iterator[pgusers.UserSpace]:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY) as usp:
        yield usp


@pytest.fixture
def client(keyed: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with TestClient(web_app(dsn, schema, secret_key=KEY)) as client:
        yield client


@pytest.fixture
def admin(keyed: pgusers.UserSpace) -> dict[str, str]:
    return {"authorization": f"Bearer {make_api_key(keyed, 'admin')[1]}"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def through(client: TestClient, path: str, **headers: str) -> Any:
    begun = client.post(path, json={"redirect_uri": REDIRECT}, headers=headers)
    assert begun.status_code == 200, begun.text
    callback = follow(begun.json()["authorization_url"])
    return client.post(
        "/v1/external/finish", json={"state": begun.json()["state"], "callback": callback}
    )


def test_an_administrator_adds_a_provider_and_a_client_signs_in_through_it(
    client: TestClient, admin: dict[str, str], idp: ScriptedProvider, keyed: pgusers.UserSpace
) -> None:
    body = {
        "kind": "oidc",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "discovery_url": idp.discovery_url,
    }
    assert client.put("/v1/admin/providers/acme", json=body).status_code == 401
    assert client.put("/v1/admin/providers/acme", json=body, headers=admin).status_code == 200
    listed = client.get("/v1/admin/providers", headers=admin).json()["providers"]
    assert [p["name"] for p in listed] == ["acme"] and "client_secret" not in listed[0]
    assert client.get("/v1/providers").json() == {"providers": [{"name": "acme", "kind": "oidc"}]}
    signed = through(client, "/v1/external/acme/begin")
    assert signed.status_code == 200, signed.text
    key = signed.json()["key"]
    session = client.get("/v1/session", headers=bearer(key)).json()
    assert session["auth_methods"] == ["external:acme"]
    mine = client.get("/v1/identities", headers=bearer(key)).json()["identities"]
    assert [(i["provider"], i["subject"]) for i in mine] == [("acme", "b-1")]
    # Bea has no password: her last way in stays.
    last = client.delete("/v1/identities/acme", headers=bearer(key))
    assert (last.status_code, last.json()["error"]["code"]) == (409, "last_method")
    userid = signed.json()["userid"]
    by_admin = client.delete(f"/v1/admin/users/{userid}/identities/acme", headers=admin)
    assert by_admin.status_code == 409
    assert (
        len(client.get(f"/v1/admin/users/{userid}/identities", headers=admin).json()["identities"])
        == 1
    )


def test_errors_come_in_the_envelope(
    client: TestClient, keyed: pgusers.UserSpace, idp: ScriptedProvider
) -> None:
    add_provider(keyed, idp, allow_signup=False)
    closed = through(client, "/v1/external/acme/begin")
    assert (closed.status_code, closed.json()["error"]["code"]) == (409, "link_required")
    unknown = client.post("/v1/external/nobody/begin", json={"redirect_uri": REDIRECT})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "bad_request")
    forged = client.post(
        "/v1/external/finish",
        json={"state": "x" * 43, "callback": {"state": "x" * 43, "code": "c"}},
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "external_login_failed")
    bad = client.post("/v1/external/finish", json={"state": "s", "callback": 5})
    assert bad.status_code == 422
    # A provider that stopped answering: 503, in the envelope.
    brief = ScriptedProvider()
    with served(brief.app()) as base:
        brief.base = base
        add_provider(keyed, brief, "brief")
    down = client.post("/v1/external/brief/begin", json={"redirect_uri": REDIRECT})
    assert (down.status_code, down.json()["error"]["code"]) == (503, "provider_unavailable")


def test_a_signed_in_user_links_and_unlinks(
    client: TestClient, keyed: pgusers.UserSpace, idp: ScriptedProvider
) -> None:
    add_provider(keyed, idp)
    keyed.create_user("cy", PASSWORD, "cy@example.com")
    key = client.post("/v1/login", json={"username": "cy", "password": PASSWORD}).json()["key"]
    linked = through(client, "/v1/identities/acme", **bearer(key))
    assert linked.status_code == 200, linked.text
    assert linked.json()["status"] == "linked" and linked.json()["key"] is None
    signed = through(client, "/v1/external/acme/begin")
    assert signed.json()["userid"] == linked.json()["userid"]
    assert client.delete("/v1/identities/acme", headers=bearer(key)).status_code == 200
    assert client.delete("/v1/identities/acme", headers=bearer(key)).status_code == 404


# -- the account pages -------------------------------------------------------------------


@pytest.fixture
def pages(keyed: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    app = web_app(dsn, schema, secret_key=KEY)
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
    assert found is not None, text
    return found.group(1)


def through_pages(pages: TestClient, action: str, page: str = "/account/login") -> Any:
    """Press a button of ``page`` that leaves for the provider; come back from it."""
    left = pages.post(action, data={"csrf": csrf_of(pages.get(page).text)})
    onward = re.search(r'content="0;url=([^"]+)"', left.text)
    assert left.status_code == 200 and onward is not None, left.text
    callback = follow(html.unescape(onward.group(1)))
    assert callback.startswith("http://127.0.0.1:8080/account/external/callback?")
    return pages.get(callback.removeprefix("http://127.0.0.1:8080"))


def test_the_sign_in_page_signs_in_through_a_provider(
    pages: TestClient, keyed: pgusers.UserSpace, idp: ScriptedProvider
) -> None:
    add_provider(keyed, idp)
    login_page = pages.get("/account/login").text
    assert 'action="/account/external/acme"' in login_page and "Sign in with Acme" in login_page
    back = through_pages(pages, "/account/external/acme")
    assert back.status_code == 200 and 'content="0;url=/account"' in back.text
    security = pages.get("/account")
    assert security.status_code == 200 and "Other sites" in security.text
    assert "bea@example.com" in security.text and "Unlink" in security.text
    # Without the state cookie the callback opens nothing.
    pages.cookies.clear()
    begun = keyed.begin_external_login("acme", "http://127.0.0.1:8080/account/external/callback")
    callback = follow(begun.authorization_url).removeprefix("http://127.0.0.1:8080")
    refused = pages.get(callback)
    assert refused.status_code == 401 and "failed" in refused.text


def test_a_signed_in_user_links_from_the_security_page(
    pages: TestClient, keyed: pgusers.UserSpace, idp: ScriptedProvider
) -> None:
    add_provider(keyed, idp)
    dee = keyed.create_user("dee", PASSWORD, "dee@example.com")
    signed = pages.post(
        "/account/login",
        data={
            "csrf": csrf_of(pages.get("/account/login").text),
            "username": "dee",
            "password": PASSWORD,
        },
    )
    assert signed.status_code == 303
    back = through_pages(pages, "/account/identities/acme/link", page="/account")
    assert 'content="0;url=/account?done=linked"' in back.text
    assert [i.provider for i in keyed.identities(dee)] == ["acme"]
    asked = pages.post(
        "/account/identities/acme/remove", data={"csrf": csrf_of(pages.get("/account").text)}
    )
    assert "Unlink your account at acme?" in asked.text
    done = pages.post(
        "/account/identities/acme/remove",
        data={"csrf": csrf_of(asked.text), "confirmed": "yes"},
    )
    assert done.headers["location"] == "/account?done=unlinked"
    assert keyed.identities(dee) == []


def test_the_console_shows_and_removes_a_user_s_linked_accounts(
    pages: TestClient, keyed: pgusers.UserSpace, idp: ScriptedProvider
) -> None:
    add_provider(keyed, idp)
    bea = sign_in_with(keyed)
    keyed.create_user("root", "root-pw-123", "root@example.com", admin=True)
    login_form = pages.get("/console/login")
    pages.post(
        "/console/login",
        data={"csrf": csrf_of(login_form.text), "username": "root", "password": "root-pw-123"},
    )
    user_page = pages.get(f"/console/users/{bea}")
    assert "Linked accounts" in user_page.text and "b-1" in user_page.text
    action = f"/console/users/{bea}/identities/acme/remove"
    asked = pages.post(action, data={"csrf": csrf_of(user_page.text)})
    confirm = {"csrf": csrf_of(asked.text), "confirmed": "yes"}
    last = pages.post(action, data=confirm)
    assert last.status_code == 409 and "last way to sign in" in last.text
    keyed.change_password(bea, "now-a-password")
    done = pages.post(action, data={"csrf": csrf_of(asked.text), "confirmed": "yes"})
    assert done.status_code == 303 and keyed.identities(bea) == []
    (event,) = keyed.events(kinds=["identity.unlinked"])
    assert event.actor and event.detail == {"provider": "acme", "by": "administrator"}


def sign_in_with(usp: pgusers.UserSpace) -> int:
    begun = usp.begin_external_login("acme", REDIRECT)
    outcome = usp.finish_external_login(begun.state, follow(begun.authorization_url))
    assert outcome.status == pgusers.OK and outcome.userid is not None
    return outcome.userid
