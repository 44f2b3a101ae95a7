"""The account pages under /account, through Starlette's test client on the real
application: signing in with a second factor, adding and removing an authenticator
app, recovery codes after a recent proof, the password, one's sessions, and the
login policy that holds administrators to a second factor (the console and the API
too)."""

import html
import json
import re
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
    app = create_app(opener)
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", PASSWORD, "ada@example.com")


@pytest.fixture
def steady(clock: Clock) -> Clock:
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    return clock


def csrf_of(page: Answer) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, str], page: str = "/account") -> Answer:
    """Post a form of the account pages, with the CSRF token of ``page``."""
    token = csrf_of(client.get(page))
    return client.post(path, data={"csrf": token, **data})


def sign_in(client: TestClient, username: str = "ada", password: str = PASSWORD) -> Answer:
    return post(
        client, "/account/login", {"username": username, "password": password}, "/account/login"
    )


def enroll(client: TestClient, clock: Clock, area: str = "/account") -> tuple[str, list[str]]:
    """Add an authenticator app from the pages: its secret, and the recovery codes shown."""
    begun = post(
        client, f"{area}/totp", {}, "/account" if area == "/account" else "/console/enroll"
    )
    assert begun.status_code == 200, begun.text
    assert "<svg" in begun.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', begun.text)
    factor_id = re.search(r'name="factor_id" value="([^"]+)"', begun.text)
    assert secret and factor_id, begun.text
    code = totp_code(secret.group(1), clock.now)
    done = client.post(
        f"{area}/totp/confirm",
        data={"csrf": csrf_of(begun), "factor_id": factor_id.group(1), "code": code},
    )
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([^<]+)</code></li>", done.text)
    clock.advance(TOTP_PERIOD)
    return secret.group(1), codes


def test_signing_in_without_a_session_goes_to_the_form(client: TestClient) -> None:
    answer = client.get("/account")
    assert answer.status_code == 303 and answer.headers["location"] == "/account/login"
    form = client.get("/account/login")
    assert form.status_code == 200 and "Sign in" in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]
    assert "<script" not in form.text


def test_wrong_password_shows_the_form_again(client: TestClient, ada: int) -> None:
    answer = sign_in(client, password="wrong")
    assert answer.status_code == 401
    assert "Wrong username or password." in answer.text
    assert "pgusers_account=" not in answer.headers.get("set-cookie", "")


def test_a_user_adds_an_app_then_signs_in_with_its_code(
    client: TestClient, space: pgusers.UserSpace, ada: int, steady: Clock
) -> None:
    assert sign_in(client).headers["location"] == "/account"
    page = client.get("/account")
    assert "Set up an authenticator app" in page.text
    secret, codes = enroll(client, steady)
    assert len(codes) == 10 and space.factors(ada).recovery_codes == 10
    page = client.get("/account?done=enrolled")
    assert "Recovery codes left: 10" in page.text
    assert post(client, "/account/logout", {}).headers["location"] == "/account/login"
    assert client.get("/account").status_code == 303

    asked = sign_in(client)
    assert asked.status_code == 200 and "Second factor" in asked.text
    ticket = re.search(r'name="ticket" value="([^"]+)"', asked.text)
    assert ticket is not None
    code = totp_code(secret, steady.now)
    wrong = client.post(
        "/account/login/code",
        data={"csrf": csrf_of(asked), "ticket": ticket.group(1), "code": "000000"},
    )
    assert wrong.status_code == 401 and "wrong or used code" in wrong.text
    right = client.post(
        "/account/login/code",
        data={"csrf": csrf_of(asked), "ticket": ticket.group(1), "code": code},
    )
    assert right.status_code == 303 and right.headers["location"] == "/account"
    key = client.cookies["pgusers_account"]
    info = space.check_session(key)
    assert info.status == pgusers.OK and "totp" in info.auth_methods


def test_a_recovery_code_signs_in_once(
    client: TestClient, space: pgusers.UserSpace, ada: int, steady: Clock
) -> None:
    sign_in(client)
    _, codes = enroll(client, steady)
    post(client, "/account/logout", {})
    for expected in (303, 401):
        asked = sign_in(client)
        ticket = re.search(r'name="ticket" value="([^"]+)"', asked.text)
        assert ticket is not None
        answer = client.post(
            "/account/login/code",
            data={"csrf": csrf_of(asked), "ticket": ticket.group(1), "code": codes[0]},
        )
        assert answer.status_code == expected
        if expected == 303:
            assert space.factors(ada).recovery_codes == 9
            post(client, "/account/logout", {})


def test_new_recovery_codes_need_a_recent_proof(
    client: TestClient, space: pgusers.UserSpace, ada: int, steady: Clock
) -> None:
    sign_in(client)
    _, first = enroll(client, steady)
    steady.advance(601)
    answer = post(client, "/account/recovery-codes", {})
    assert answer.status_code == 303 and answer.headers["location"] == "/account/confirm"
    assert space.factors(ada).recovery_codes == 10
    confirm = client.get("/account/confirm")
    assert "Confirm with a code" in confirm.text
    wrong = client.post("/account/confirm", data={"csrf": csrf_of(confirm), "password": "not-it"})
    assert wrong.status_code == 401 and "not right" in wrong.text
    right = client.post("/account/confirm", data={"csrf": csrf_of(confirm), "password": PASSWORD})
    assert right.status_code == 303
    made = post(client, "/account/recovery-codes", {})
    codes = re.findall(r"<li><code>([^<]+)</code></li>", made.text)
    assert made.status_code == 200 and len(codes) == 10 and set(codes).isdisjoint(first)


def test_removing_a_factor_asks_first_and_needs_a_recent_proof(
    client: TestClient, space: pgusers.UserSpace, ada: int, steady: Clock
) -> None:
    sign_in(client)
    enroll(client, steady)
    (factor,) = space.factors(ada).factors
    path = f"/account/factors/{factor.factor_id}/remove"
    asked = post(client, path, {})
    assert asked.status_code == 200 and "Are you sure?" in asked.text
    assert len(space.factors(ada).factors) == 1
    steady.advance(601)
    late = client.post(path, data={"csrf": csrf_of(asked), "confirmed": "yes"})
    assert late.headers["location"] == "/account/confirm"
    assert len(space.factors(ada).factors) == 1
    steady.advance(-601)
    done = client.post(path, data={"csrf": csrf_of(asked), "confirmed": "yes"})
    assert done.status_code == 303
    assert space.factors(ada) == pgusers.Factors((), 0)
    kinds = [event.kind for event in space.events(userid=ada)]
    assert "mfa.removed" in kinds


def test_changing_the_password_needs_the_current_one(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    sign_in(client)
    wrong = post(
        client, "/account/password", {"current_password": "nope", "new_password": "another-pw-1"}
    )
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    assert space.login("ada", PASSWORD).status == pgusers.OK
    space.set_password_policy(min_length=12, breached="off")
    weak = post(
        client, "/account/password", {"current_password": PASSWORD, "new_password": "short-pw"}
    )
    assert weak.status_code == 400 and "at least 12" in html.unescape(weak.text)
    assert space.login("ada", PASSWORD).status == pgusers.OK
    done = post(
        client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": "a-longer-password", "end_others": "on"},
    )
    assert done.status_code == 303
    assert space.login("ada", "a-longer-password").status == pgusers.OK
    # The other sessions ended (the logins above), this one lives on.
    assert client.get("/account").status_code == 200
    assert len(list(space.sessions(ada))) == 2  # this one, and the login just made


def test_a_user_ends_their_own_sessions_only(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    other = space.login("ada", PASSWORD).key
    bob = space.create_user("bob", PASSWORD, "bob@example.com")
    bobs = space.login("bob", PASSWORD).key
    sign_in(client)
    page = client.get("/account")
    assert "this browser" in page.text and page.text.count("<tr>") == 3  # head + 2
    (bob_session,) = [s.session_id for s in space.sessions(bob)]
    refused = post(client, f"/account/sessions/{bob_session}/end", {})
    assert refused.status_code == 404
    assert space.check_key(bobs).status == pgusers.OK
    mine = next(s.session_id for s in space.sessions(ada, key=other) if s.current)
    assert post(client, f"/account/sessions/{mine}/end", {}).status_code == 303
    assert space.check_key(other).status == pgusers.NOT_FOUND
    assert client.get("/account").status_code == 200


def test_a_form_without_its_token_changes_nothing(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    sign_in(client)
    answer = client.post(
        "/account/password", data={"current_password": PASSWORD, "new_password": "x" * 12}
    )
    assert answer.status_code == 403
    other_site = client.post(
        "/account/password",
        data={
            "csrf": csrf_of(client.get("/account")),
            "current_password": PASSWORD,
            "new_password": "x" * 12,
        },
        headers={"sec-fetch-site": "cross-site"},
    )
    assert other_site.status_code == 403
    assert space.login("ada", PASSWORD).status == pgusers.OK


# -- the login policy: administrators need a second factor -----------------------------------


def test_the_policy_is_a_setting_both_apis_read(usp: Any) -> None:
    root = usp.create_user("root", PASSWORD, "root@example.com", admin=True)
    ada = usp.create_user("ada", PASSWORD, "ada@example.com")
    assert usp.settings().admins_need_mfa is False
    assert not usp.needs_enrollment(root)
    usp.set_login_policy(admins_need_mfa=True)
    assert usp.settings().admins_need_mfa is True
    assert usp.needs_enrollment(root) and not usp.needs_enrollment(ada)
    assert not usp.needs_enrollment(10**9)
    with pytest.raises(pgusers.BadCallError, match="admins_need_mfa must be a bool"):
        usp.set_login_policy(admins_need_mfa=1)
    assert usp.settings().admins_need_mfa is True
    details = [e.detail for e in usp.events(kinds="settings.changed")]
    assert {"admins_need_mfa": True} in details
    usp.set_login_policy(free_failures=3)  # the rest of the policy leaves it as it is
    assert usp.settings().admins_need_mfa is True
    usp.set_login_policy(admins_need_mfa=False)
    assert not usp.needs_enrollment(root)


def test_an_admin_without_a_factor_is_sent_to_add_one(
    client: TestClient, space: pgusers.UserSpace, steady: Clock
) -> None:
    root = space.create_user("root", PASSWORD, "root@example.com", admin=True)
    space.set_login_policy(admins_need_mfa=True)
    # The console: every page leads to adding a factor.
    form = client.get("/console/login")
    signed = client.post(
        "/console/login",
        data={"csrf": csrf_of(form), "username": "root", "password": PASSWORD},
    )
    assert signed.status_code == 303
    for path in ("/console/users", "/console/settings", f"/console/users/{root}"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/enroll"
    page = client.get("/console/enroll")
    assert page.status_code == 200 and "Administrators need a second factor" in page.text
    assert 'href="/console/users"' not in page.text  # no way around it
    # The API refuses an administrator's session the admin endpoints meanwhile.
    key = space.login("root", PASSWORD).key
    refused = client.get("/v1/admin/users", headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "mfa_enrollment_required"
    # Adding one from the console's page lets them in.
    _, codes = enroll(client, steady, area="/console")
    assert len(codes) == 10
    assert client.get("/console/users").status_code == 200
    allowed = client.get("/v1/admin/users", headers={"authorization": f"Bearer {key}"})
    assert allowed.status_code == 200
    (listed,) = [u for u in allowed.json()["users"] if u["userid"] == root]
    assert listed["second_factor"] is True


def test_the_account_pages_send_an_admin_to_add_one_too(
    client: TestClient, space: pgusers.UserSpace, steady: Clock
) -> None:
    space.create_user("root", PASSWORD, "root@example.com", admin=True)
    space.set_login_policy(admins_need_mfa=True)
    sign_in(client, "root")
    page = client.get("/account")
    assert "Administrators need a second factor" in page.text
    assert "Change password" not in page.text
    enroll(client, steady)
    assert "Change password" in client.get("/account").text


def test_the_console_marks_admins_without_a_factor(
    client: TestClient, space: pgusers.UserSpace, steady: Clock
) -> None:
    root = space.create_user("root", PASSWORD, "root@example.com", admin=True)
    space.create_user("eve", PASSWORD, "eve@example.com", admin=True)
    form = client.get("/console/login")
    client.post(
        "/console/login",
        data={"csrf": csrf_of(form), "username": "root", "password": PASSWORD},
    )
    listed = client.get("/console/users")
    assert listed.text.count(">no second factor<") == 2
    sign_in(client, "root")  # the account pages, beside the console
    enroll(client, steady)
    assert space.factors(root).factors
    listed = client.get("/console/users?filter=admins-without-factor")
    assert ">eve</a>" in listed.text and ">root</a>" not in listed.text


# -- passkeys -----------------------------------------------------------------------------


def with_passkey(space: pgusers.UserSpace, username: str) -> tuple[Any, str]:
    """Passkeys bound to http://localhost:8080, and one registered for ``username``:
    the authenticator holding it, and its factor id."""
    from .authenticator import Authenticator

    origin = "http://localhost:8080"
    space.set_webauthn("localhost", "Example", [origin])
    phone = Authenticator(origin)
    key = space.login(username, PASSWORD).key
    begun = space.begin_passkey_registration(key)
    return phone, space.finish_passkey_registration(
        key, begun.challenge_id, phone.create(begun.options)
    )


def passkey_sign_in(client: TestClient, phone: Any, area: str) -> tuple[Answer, dict[str, str]]:
    """Sign in with the passkey button of ``area``'s login page: the answer, and the
    form sent."""
    form = client.get(f"{area}/login")
    challenge = re.search(r'name="challenge_id" value="([^"]+)"', form.text)
    assert challenge is not None
    answer = json.dumps(phone.get(passkey_options(form)))
    sent = {"csrf": csrf_of(form), "challenge_id": challenge.group(1), "credential": answer}
    return client.post(f"{area}/login/passkey", data=sent), sent


def passkey_options(page: Answer) -> str:
    found = re.search(r'data-options="([^"]+)"', page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def test_a_user_adds_a_passkey_and_signs_in_with_it(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    from .authenticator import Authenticator

    origin = "http://localhost:8080"
    space.set_webauthn("localhost", "Example", [origin])
    phone = Authenticator(origin)
    sign_in(client)
    begun = post(client, "/account/passkeys", {"label": "laptop"})
    assert begun.status_code == 200 and 'data-passkey="create"' in begun.text
    assert "script-src 'self'" in begun.headers["content-security-policy"]
    assert '<script src="/account/static/passkeys.js" defer>' in begun.text
    challenge = re.search(r'name="challenge_id" value="([^"]+)"', begun.text)
    assert challenge is not None
    answer = json.dumps(phone.create(passkey_options(begun)))
    done = client.post(
        "/account/passkeys/finish",
        data={"csrf": csrf_of(begun), "challenge_id": challenge.group(1), "credential": answer},
    )
    assert done.status_code == 303, done.text
    page = client.get("/account")
    assert "laptop" in page.text and "passkey" in page.text
    post(client, "/account/logout", {})

    signed, sent = passkey_sign_in(client, phone, "/account")
    assert signed.status_code == 303 and signed.headers["location"] == "/account"
    info = space.check_session(client.cookies["pgusers_account"])
    assert info.auth_methods == ("passkey",)
    client.cookies.delete("pgusers_account", path="/account")  # a stranger replays it
    replayed = client.post("/account/login/passkey", data=sent)
    assert replayed.status_code == 401 and "expired" in replayed.text


def test_the_second_step_offers_the_passkey(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    phone, _ = with_passkey(space, "ada")
    asked = sign_in(client)
    assert "Use a passkey" in asked.text
    ticket = re.search(r'name="ticket" value="([^"]+)"', asked.text)
    assert ticket is not None
    answer = json.dumps(phone.get(passkey_options(asked)))
    done = client.post(
        "/account/login/code",
        data={"csrf": csrf_of(asked), "ticket": ticket.group(1), "credential": answer},
    )
    assert done.status_code == 303, done.text
    assert space.check_session(client.cookies["pgusers_account"]).auth_methods == (
        "password",
        "passkey",
    )


def test_only_the_pages_that_may_use_passkeys_may_load_a_script(client: TestClient) -> None:
    for path in ("/account/login", "/console/login"):
        assert "script-src 'self'" in client.get(path).headers["content-security-policy"]
    for path in ("/console/users", "/v1/openapi.json"):
        assert "script-src" not in client.get(path).headers["content-security-policy"]


def test_an_administrator_logs_in_to_the_console_with_a_passkey(
    client: TestClient, space: pgusers.UserSpace
) -> None:
    root = space.create_user("root", PASSWORD, "root@example.com", admin=True)
    phone, factor_id = with_passkey(space, "root")
    signed, _ = passkey_sign_in(client, phone, "/console")
    assert signed.status_code == 303 and signed.headers["location"] == "/console/users"
    console_key = client.cookies["pgusers_console"]
    refused = client.get("/v1/session", headers={"authorization": f"Bearer {console_key}"})
    assert refused.status_code == 401  # a console session is for the console only
    # A flagged passkey is cleared from the user's page, after a question.
    begun = space.begin_passkey_login()
    space.finish_passkey_login(begun.challenge_id, phone.get(begun.options, sign_count=9))
    begun = space.begin_passkey_login()
    space.finish_passkey_login(begun.challenge_id, phone.get(begun.options, sign_count=3))
    page = client.get(f"/console/users/{root}")
    assert "flagged as cloned" in page.text
    path = f"/console/users/{root}/factors/{factor_id}/clear-flag"
    asked = client.post(path, data={"csrf": csrf_of(page), "back": f"/console/users/{root}"})
    assert "Are you sure?" in asked.text and space.factors(root).factors[0].cloned
    client.post(path, data={"csrf": csrf_of(page), "confirmed": "yes"})
    assert not space.factors(root).factors[0].cloned
