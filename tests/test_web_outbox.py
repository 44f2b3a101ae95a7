"""The service's mail and webhooks, through Starlette's test client on the real
application with its delivery worker running, against a real SMTP server: "forgot
your password" by the API and by the pages, whose mailed link works; sign-in by a
mailed code or link; an answer that never tells whether an address has an account;
the administrators' webhooks and outbox."""

import re
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from starlette.testclient import TestClient

import pgusers
from pgusers.web import create_app

from .mail_partners import MailCatcher, code_in, parts, running, token_in
from .support import FAST_HASHER, Answer, make_api_key

KEY = "web-outbox-tests-secret-key"
PASSWORD = "s3cret-pw"


@pytest.fixture
def smtp() -> Iterator[MailCatcher]:
    yield from running(MailCatcher())


@pytest.fixture
def space(dsn: str, schema: str, smtp: MailCatcher) -> Iterator[pgusers.UserSpace]:
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY)
    usp.set_mail(
        "127.0.0.1", port=smtp.port, security="none", sender="accounts@example.com",
        base_url="https://app.example.com", app_name="Example",
    )  # fmt: skip
    usp.create_user("ada", PASSWORD, "ada@example.com")
    yield usp
    usp.close()


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY,
    )  # fmt: skip
    app = create_app(opener, deliver=True)
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client


def csrf_of(page: Answer) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, str], page: str) -> Answer:
    return client.post(path, data={"csrf": csrf_of(client.get(page)), **data})


def test_forgot_password_by_the_api_mails_a_link_that_resets_it(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    known = client.post("/v1/password/forgot", json={"email": "ada@example.com"})
    unknown = client.post("/v1/password/forgot", json={"email": "nobody@example.com"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.status_code == 202
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "ada@example.com"
    reset = client.post("/v1/password/reset", json={"token": token_in(mail), "password": "n3w-pw!"})
    assert reset.json() == {"status": "ok"}
    assert client.post("/v1/login", json={"username": "ada", "password": "n3w-pw!"}).json()["key"]


def test_the_pages_ask_for_a_reset_and_its_link_opens_a_form_that_sets_the_password(
    client: TestClient, smtp: MailCatcher
) -> None:
    login = client.get("/account/login")
    assert 'href="/account/forgot"' in login.text
    asked = post(client, "/account/forgot", {"email": "ada@example.com"}, "/account/forgot")
    assert asked.status_code == 200 and "on its way" in asked.text
    text, _ = parts(smtp.wait_for(1)[0])
    link = re.search(r"https://app\.example\.com(/account/reset\?token=\S+)", text)
    assert link is not None
    opened = client.get(link.group(1))
    assert opened.status_code == 200 and 'name="password"' in opened.text
    token = re.search(r'name="token" value="([^"]+)"', opened.text)
    assert token is not None
    data = {"csrf": csrf_of(opened), "token": token.group(1), "password": "n3w-pw!"}
    done = client.post("/account/reset", data=data)
    assert done.status_code == 200 and "Your password was changed" in done.text
    again = client.post("/account/reset", data=data)
    assert again.status_code == 400 and "unknown, used or expired" in again.text


def test_sign_in_by_a_mailed_code_through_the_api(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    refused = client.post("/v1/login/email", json={"email": "ada@example.com"})
    assert refused.status_code == 400 and "sign-in by email is off" in refused.text
    space.set_login_by_email(True)
    assert client.post("/v1/login/email", json={"email": "ada@example.com"}).status_code == 202
    [mail] = smtp.wait_for(1)
    wrong = client.post("/v1/login/email/code", json={"email": "ada@example.com", "code": "000000"})
    assert wrong.status_code == 401
    answer = client.post(
        "/v1/login/email/code", json={"email": "ada@example.com", "code": code_in(mail)}
    )
    assert answer.status_code == 200, answer.text
    key = answer.json()["key"]
    assert (
        client.get("/v1/session", headers={"authorization": f"Bearer {key}"}).json()["username"]
        == "ada"
    )
    used = client.post("/v1/login/email/link", json={"token": token_in(mail)})
    assert used.status_code == 401


def test_sign_in_by_a_mailed_link_through_the_pages(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    space.set_login_by_email(True)
    assert 'href="/account/login/email"' in client.get("/account/login").text
    asked = post(
        client, "/account/login/email", {"email": "ada@example.com"}, "/account/login/email"
    )
    assert asked.status_code == 200 and 'name="code"' in asked.text
    [mail] = smtp.wait_for(1)
    page = client.get(f"/account/login/link?token={token_in(mail)}")
    assert page.status_code == 200  # following the link spends nothing
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    signed = client.post(
        "/account/login/link", data={"csrf": csrf_of(page), "token": token.group(1)}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/account"
    assert "ada" in client.get("/account").text


def test_administrators_manage_webhooks_and_the_outbox(
    client: TestClient, space: pgusers.UserSpace, smtp: MailCatcher
) -> None:
    _, key = make_api_key(space, "admin")
    headers = {"authorization": f"Bearer {key}"}
    added = client.post(
        "/v1/admin/webhooks",
        json={"url": "https://hooks.example.com/in", "kinds": ["user.created"]},
        headers=headers,
    )
    assert added.status_code == 201 and added.json()["secret"].startswith("whsec_")
    webhook_id = added.json()["webhook_id"]
    listed = client.get("/v1/admin/webhooks", headers=headers).json()["webhooks"]
    assert [hook["webhook_id"] for hook in listed] == [webhook_id]
    assert "secret" not in listed[0]
    rotated = client.post(f"/v1/admin/webhooks/{webhook_id}/rotate", json={}, headers=headers)
    assert rotated.json()["secret"] not in (added.json()["secret"], None)
    outbox = client.get("/v1/admin/outbox", headers=headers).json()
    assert set(outbox) == {"messages", "pending", "dead", "oldest_pending_seconds"}
    assert client.delete(f"/v1/admin/webhooks/{webhook_id}", headers=headers).json() == {
        "status": "ok"
    }
    assert client.delete(f"/v1/admin/webhooks/{webhook_id}", headers=headers).status_code == 404
    assert client.post("/v1/admin/outbox/msg_none/retry", headers=headers).status_code == 404
    bad = client.post(
        "/v1/admin/webhooks", json={"url": "ftp://x", "kinds": ["*"]}, headers=headers
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    user_key = client.post("/v1/login", json={"username": "ada", "password": PASSWORD})
    as_user = {"authorization": f"Bearer {user_key.json()['key']}"}
    assert client.get("/v1/admin/outbox", headers=as_user).status_code == 403


def test_a_signed_in_user_asks_for_the_verification_mail(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    key = client.post("/v1/login", json={"username": "ada", "password": PASSWORD}).json()["key"]
    headers = {"authorization": f"Bearer {key}"}
    assert client.post("/v1/email/verification", headers=headers).status_code == 202
    [mail] = smtp.wait_for(1)
    assert client.post("/v1/email/verify", json={"token": token_in(mail)}).json() == {
        "status": "ok"
    }
    assert client.post("/v1/email/verification", headers=headers).status_code == 404
    answer: Any = client.get("/v1/openapi.json").json()
    assert {"/v1/password/forgot", "/v1/login/email", "/v1/admin/outbox"} <= set(answer["paths"])


def test_the_console_lists_dead_letters_and_sends_them_again(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    space.create_user("root", "root-pw-123", "root@example.com", admin=True)
    smtp.refuse.add("ada@example.com")
    space.request_password_reset("ada@example.com")
    deadline = time.monotonic() + 30
    while not space.outbox(state="dead"):
        assert time.monotonic() < deadline, space.outbox()
        time.sleep(0.05)
    [dead] = space.outbox(state="dead")
    form = client.get("/console/login")
    data = {"csrf": csrf_of(form), "username": "root", "password": "root-pw-123"}
    assert client.post("/console/login", data=data).status_code == 303
    listed = client.get("/console/outbox?state=dead")
    assert listed.status_code == 200
    assert dead.message_id in listed.text and "550" in listed.text
    smtp.refuse.clear()
    retried = client.post(
        f"/console/outbox/{dead.message_id}/retry", data={"csrf": csrf_of(listed)}
    )
    assert retried.headers["location"].endswith("done=retried")
    assert [m["To"] for m in smtp.wait_for(1)] == ["ada@example.com"]
    assert client.get("/console/outbox?state=nothing").status_code == 404
    userid = space.find_user("ada")["userid"]  # type: ignore[index]
    user_page = client.get(f"/console/users/{userid}")
    reset = client.post(f"/console/users/{userid}/reset-token", data={"csrf": csrf_of(user_page)})
    assert reset.headers["location"].endswith("done=reset-mailed")  # no token shown
    assert len(smtp.wait_for(2)) == 2


def test_an_administrators_token_is_mailed_when_mail_is_set_up(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    _, key = make_api_key(space, "admin")
    headers = {"authorization": f"Bearer {key}"}
    userid = space.find_user("ada")["userid"]  # type: ignore[index]
    mailed = client.post(
        f"/v1/admin/users/{userid}/tokens", json={"purpose": "reset_password"}, headers=headers
    )
    assert mailed.status_code == 201
    assert mailed.json() == {"token": None, "purpose": "reset_password", "mailed": True}
    [mail] = smtp.wait_for(1)
    assert mail["To"] == "ada@example.com"
    given = client.post(
        f"/v1/admin/users/{userid}/tokens",
        json={"purpose": "reset_password", "mail": False},
        headers=headers,
    )
    assert given.json()["mailed"] is False and len(given.json()["token"]) == 43
    space.remove_mail()
    unmailed = client.post(
        f"/v1/admin/users/{userid}/tokens", json={"purpose": "verify_email"}, headers=headers
    )
    assert unmailed.json()["mailed"] is False and unmailed.json()["token"]


def test_a_signed_in_user_asks_for_the_link_from_the_security_page(
    client: TestClient, smtp: MailCatcher, space: pgusers.UserSpace
) -> None:
    form = client.get("/account/login")
    data = {"csrf": csrf_of(form), "username": "ada", "password": PASSWORD}
    assert client.post("/account/login", data=data).status_code == 303
    security = client.get("/account")
    assert "is not confirmed yet" in security.text
    asked = client.post("/account/verification", data={"csrf": csrf_of(security)})
    assert asked.headers["location"].endswith("done=verification-sent")
    [mail] = smtp.wait_for(1)
    page = client.get(f"/account/verify?token={token_in(mail)}")
    confirmed = client.post(
        "/account/verify", data={"csrf": csrf_of(page), "token": token_in(mail)}
    )
    assert "Your address is confirmed" in confirmed.text
    assert "is not confirmed yet" not in client.get("/account").text
