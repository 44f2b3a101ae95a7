"""The console's rules that need no browser: cookie flags, the setup link's life,
redirections, through Starlette's test client on the real application."""

import re
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

import pgusers

from .support import FAST_HASHER, Answer, Clock, found, matched, web_app


@pytest.fixture
def app(space: pgusers.UserSpace, dsn: str, schema: str) -> Any:
    return web_app(dsn, schema, setup_link=True)


def client_at(app: Any, base_url: str) -> TestClient:
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def root(space: pgusers.UserSpace) -> int:
    return space.create_user("root", "root-pw-123", "root@example.com", admin=True)


def csrf_of(page: Answer) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(client: TestClient, username: str = "root", password: str = "root-pw-123") -> Answer:
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"csrf": csrf_of(form), "username": username, "password": password},
    )


def cookie_header(answer: Answer, name: str) -> str:
    return str(next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{name}=")))


SERVED = {
    "loopback http": ("http://127.0.0.1:8080", False),
    "https": ("https://console.example", True),
    "plain http elsewhere": ("http://10.0.0.5", True),
}


def flags_of(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


@pytest.mark.parametrize(("base_url", "secure"), SERVED.values(), ids=SERVED.keys())
def test_console_cookies_are_httponly_strict_and_secure_unless_loopback_http(
    app: Any, root: int, base_url: str, secure: bool
) -> None:
    https = base_url.startswith("https")
    # Over HTTPS, __Host- cookies: only this host can set them (Secure, path /, no Domain).
    prefix, path = ("__Host-", "path=/") if https else ("", "path=/console")
    with client_at(app, base_url) as client:
        form = client.get("/console/login")
        flags = flags_of(cookie_header(form, f"{prefix}pgusers_console_csrf"))
        assert {"httponly", "samesite=strict", path} <= flags
        assert ("secure" in flags) is secure
        if base_url.startswith("http://10."):
            return  # a Secure cookie does not come back over plain HTTP: no login here
        answer = log_in(client)
    assert answer.status_code == 303
    flags = flags_of(cookie_header(answer, f"{prefix}pgusers_console"))
    assert {"httponly", "samesite=strict", path} <= flags
    assert ("secure" in flags) is secure


def test_pages_need_an_admin_session(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        for path in ("/console/users", "/console/events", "/console/settings"):
            answer = client.get(path)
            assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")


def test_a_wrong_password_shows_the_form_again_with_401(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        answer = log_in(client, password="wrong")
    assert answer.status_code == 401
    assert "Wrong username or password" in answer.text


def test_the_setup_link_expires_after_15_minutes(
    app: Any, space: pgusers.UserSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    clock.advance(15 * 60 + 1)
    with client_at(app, "http://127.0.0.1") as client:
        answer = client.get(f"/console/setup?token={app.state.setup_token}")
    assert answer.status_code == 404
    assert list(space.all_users()) == []


def test_the_setup_link_stops_working_once_an_admin_exists(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        answer = client.get(f"/console/setup?token={app.state.setup_token}")
    assert answer.status_code == 404


def test_no_setup_link_unless_asked(space: pgusers.UserSpace, dsn: str, schema: str) -> None:
    app = web_app(dsn, schema)
    assert app.state.setup_token is None
    with client_at(app, "http://127.0.0.1") as client:
        assert client.get("/console/setup?token=x").status_code == 404


def test_a_reset_token_is_shown_once_in_the_page_never_in_a_url(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get(f"/console/users/{ada}")
        answer = client.post(f"/console/users/{ada}/reset-token", data={"csrf": csrf_of(page)})
    assert answer.status_code == 200
    token = matched(r'id="reset-token">([^<]+)<', answer.text)
    assert "location" not in answer.headers
    assert space.reset_password(token, "new-ada-pw-1") == pgusers.OK


def test_a_redirect_after_a_write_stays_inside_the_console(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    space.login("ada", "ada-pw-123")
    (session,) = space.sessions(ada)
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get(f"/console/users/{ada}")
        answer = client.post(
            f"/console/sessions/{session.session_id}/end",
            data={"csrf": csrf_of(page), "back": "https://evil.example/"},
        )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/users?")
    assert list(space.sessions(ada)) == []


def test_console_pages_carry_the_security_headers(app: Any) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        headers = client.get("/console/login").headers
        other = client.get("/console/users").headers
    # The login page may load the passkeys script, and nothing else; no other page any.
    assert "script-src 'self';" in headers["content-security-policy"]
    assert "script-src" not in other["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


def test_an_admin_deletes_a_user_from_their_page_after_confirming(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get(f"/console/users/{ada}")
        asked = client.post(f"/console/users/{ada}/delete", data={"csrf": csrf_of(page)})
        assert "This cannot be undone" in asked.text
        assert space.find_user(userid=ada) is not None
        form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', asked.text))
        assert form["confirmed"] == "yes"
        answer = client.post(f"/console/users/{ada}/delete", data=form)
    assert answer.headers["location"].startswith("/console/users?done=")
    assert space.find_user(userid=ada) is None


def confirmed_post(client: TestClient, path: str, **fields: str) -> tuple[Answer, Answer]:
    """Post a console form, then its confirmation: (the question page, the answer)."""
    page = client.get("/console/users")
    asked = client.post(path, data={"csrf": csrf_of(page), **fields})
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', asked.text))
    assert form.get("confirmed") == "yes", asked.text
    return asked, client.post(path, data=form)


def test_ending_all_sessions_and_hashing_keys_ask_first(
    app: Any, space: pgusers.UserSpace, root: int, dsn: str, schema: str
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    space.login("ada", "ada-pw-123")
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        asked, answer = confirmed_post(client, f"/console/users/{ada}/sessions/end")
        assert "logged out everywhere" in asked.text and answer.status_code == 303
        assert list(space.sessions(ada)) == []
        asked, answer = confirmed_post(client, "/console/settings", setting="key_storage")
        assert "one-way" in asked.text and answer.status_code == 303
    assert space.find_user("root") is not None
    with psycopg.connect(dsn) as conn:
        [(storage,)] = conn.execute(f'SELECT key_storage FROM "{schema}".settings')
    assert storage == "hashed"


def test_an_admin_creates_a_user_and_edits_them(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        form = client.get("/console/users/new")
        made = client.post(
            "/console/users/new",
            data={
                "csrf": csrf_of(form),
                "username": "ada",
                "email": "ada@example.com",
                "password": "ada-pw-123",
                "extra_data": '{"plan": "pro"}',
            },
        )
        assert made.status_code == 303
        ada = found(space.find_user("ada"))
        assert (ada["extra_data"], ada["admin"]) == ({"plan": "pro"}, False)
        assert made.headers["location"].startswith(f"/console/users/{ada['userid']}?")
        edit = {
            "csrf": csrf_of(form),
            "username": "ada2",
            "email": "ada2@example.com",
            "extra_data": '{"plan": "team"}',
            "admin": "on",
            "disabled": "on",
        }
        changed = client.post(f"/console/users/{ada['userid']}/edit", data=edit)
        assert changed.headers["location"].endswith("done=changed")
        bad = client.post(
            f"/console/users/{ada['userid']}/edit", data={**edit, "extra_data": "{nope"}
        )
        assert bad.status_code == 400 and "must be JSON" in bad.text
        taken = client.post(
            "/console/users/new", data={**edit, "username": "root", "password": "x-pw-1234"}
        )
        assert taken.status_code == 400 and "already exists" in taken.text
    user = found(space.find_user(userid=ada["userid"]))
    assert (user["username"], user["email"], user["extra_data"]) == (
        "ada2",
        "ada2@example.com",
        {"plan": "team"},
    )
    assert (user["admin"], user["disabled"]) == (True, True)
    actors = {event.actor for event in space.events(userid=ada["userid"])}
    assert actors == {f"console:user:{found(space.find_user('root'))['userid']}"}


def test_api_keys_are_made_shown_once_and_revoked_from_the_console(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get("/console/api-keys")
        made = client.post(
            "/console/api-keys", data={"csrf": csrf_of(page), "name": "shop", "scope": "check"}
        )
        key = matched(r'id="api-key">([^<]+)<', made.text)
        assert key not in client.get("/console/api-keys").text
        check = client.post(
            "/v1/check", json={"key": "A" * 43}, headers={"authorization": f"Bearer {key}"}
        )
        assert check.json()["status"] == "not_found"
        [key_id] = re.findall(r"/console/api-keys/([^/]+)/revoke", made.text)
        _, revoked = confirmed_post(client, f"/console/api-keys/{key_id}/revoke")
        assert revoked.headers["location"].endswith("done=key-revoked")
        check = client.post(
            "/v1/check", json={"key": "A" * 43}, headers={"authorization": f"Bearer {key}"}
        )
    assert check.json()["error"]["message"] == "the API key is revoked or unknown"


def test_numbers_and_times_read_as_people_write_them(
    app: Any, space: pgusers.UserSpace, root: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    space.set_login_policy(max_backoff=900)
    clock = Clock(monkeypatch)
    before = clock.now = float(int(clock.now) - 10 * 86400)
    space.set_session_TTL(900)  # an event ten days ago, then a purge of it
    monkeypatch.undo()
    space.purge_events(before=before + 1)
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        settings = client.get("/console/settings").text
        events = client.get("/console/events").text
    assert 'value="900"' in settings and "900.0" not in settings
    assert "15 min" in settings
    purged = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(before + 1))
    assert f"&#34;before&#34;: &#34;{purged}&#34;" in events


def test_errors_unknown_pages_the_landing_page_and_the_icon(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        assert client.get("/").headers["location"] == "/console/"
        stranger = client.get("/console/users/999")
        assert stranger.status_code == 303  # not signed in: to the login page
        log_in(client)
        missing = client.get("/console/users/999")
        assert missing.status_code == 404
        assert missing.text.count("There is no such user.") == 1
        assert "/console/login" not in missing.text
        for path in ("/console/no/such/page", "/console/users/abc"):
            unknown = client.get(path)
            assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]
        assert 'rel="icon" href="/console/static/favicon.svg"' in unknown.text
        assert client.get("/console/static/favicon.svg").status_code == 200
        assert client.get("/favicon.ico", follow_redirects=True).status_code == 200


def test_the_api_documentation_is_served_from_the_package(app: Any) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        page = client.get("/v1/docs")
        scripts = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert scripts and all(path.startswith("/v1/docs/") for path in scripts)
        for path in scripts:
            assert client.get(path).status_code == 200, path
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-eval" not in policy


def test_an_unknown_action_on_a_user_is_404_and_changes_nothing(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    ada = space.create_user("ada", "ada-pw-123", "ada@example.com")
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get(f"/console/users/{ada}")
        answer = client.post(
            f"/console/users/{ada}/email_verified", data={"csrf": csrf_of(page), "value": "true"}
        )
    assert answer.status_code == 404
    assert found(space.find_user(userid=ada))["email_verified"] is False


def test_a_link_cannot_make_a_page_say_what_it_likes(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        page = client.get("/console/users?done=Your+account+is+locked,+call+us")
        saved = client.get("/console/settings?done=saved")
    assert "call us" not in page.text and 'role="status"' not in page.text
    assert 'role="status">Saved.<' in saved.text


def test_racing_posts_of_the_setup_link_create_one_administrator(
    app: Any, space: pgusers.UserSpace
) -> None:
    import asyncio

    async def race() -> list[Answer]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
        ):
            form = await client.get(f"/console/setup?token={app.state.setup_token}")
            fields = {"csrf": csrf_of(form), "token": app.state.setup_token}

            def post(n: int) -> Awaitable[Answer]:
                return client.post(
                    "/console/setup",
                    data={
                        **fields,
                        "username": f"root{n}",
                        "password": "root-pw-123",
                        "email": f"root{n}@example.com",
                    },
                )

            return await asyncio.gather(*(post(n) for n in range(6)))

    answers = asyncio.run(race())
    assert sorted(answer.status_code for answer in answers) == [303, 404, 404, 404, 404, 404]
    users = list(space.all_users())
    assert len([user for user in users if space.is_admin(user.userid)]) == 1


@pytest.mark.parametrize(
    "going_to", ["/console/users/é", "/console/users\r\nSet-Cookie: x=1", "/console/\\evil"]
)
def test_confirm_sends_an_unsendable_next_to_the_user_list_and_keeps_a_session(
    app: Any, root: int, going_to: str
) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        form = client.get("/console/confirm")
        answer = client.post(
            "/console/confirm",
            data={"csrf": csrf_of(form), "password": "root-pw-123", "next": going_to},
        )
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/users")
        assert cookie_header(answer, "pgusers_console")
        assert client.get("/console/users").status_code == 200


def test_a_user_page_shows_no_token_from_its_url(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        answer = client.get(f"/console/users/{root}?token=send-this-to-evil.example")
    assert answer.status_code == 200
    assert "send-this-to-evil.example" not in answer.text


def test_a_console_session_key_is_refused_by_the_api(app: Any, root: int) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        key = log_in(client).cookies["pgusers_console"]
        answer = client.post(
            "/v1/admin/users",
            json={"username": "x", "password": "x-pw-12345", "email": "x@example.com"},
            headers={"authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "a console session is for the console only"


def mallory_and_a_signed_in_root(app: Any, space: pgusers.UserSpace) -> tuple[int, TestClient]:
    mallory = space.create_user("mallory", "m4llory-pw", "mallory@example.com")
    client = client_at(app, "http://127.0.0.1")
    log_in(client)
    return mallory, client


@pytest.mark.parametrize(
    "foreign",
    [{"sec-fetch-site": "same-site"}, {"origin": "http://evil.example"}],
    ids=["another site by Sec-Fetch-Site", "another origin"],
)
def test_a_write_from_elsewhere_is_refused(
    app: Any, space: pgusers.UserSpace, root: int, foreign: dict[str, str]
) -> None:
    mallory, client = mallory_and_a_signed_in_root(app, space)
    with client:
        token = csrf_of(client.get("/console/users"))
        answer = client.post(
            f"/console/users/{mallory}/admin",
            data={"csrf": token, "value": "true"},
            headers=foreign,
        )
    assert answer.status_code == 403
    assert not space.is_admin(mallory)


def test_a_token_made_for_a_seed_is_refused_once_signed_in(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    mallory, client = mallory_and_a_signed_in_root(app, space)
    with client, client_at(app, "http://127.0.0.1") as stranger:
        session = client.cookies["pgusers_console"]
        form = stranger.get("/console/login")
        seed, token = form.cookies["pgusers_console_csrf"], csrf_of(form)
        stranger.cookies.clear()
        answer = stranger.post(
            f"/console/users/{mallory}/admin",
            data={"csrf": token, "value": "true"},
            headers={"cookie": f"pgusers_console={session}; pgusers_console_csrf={seed}"},
        )
    assert answer.status_code == 403
    assert not space.is_admin(mallory)


def test_two_cookies_of_one_name_are_refused(app: Any, space: pgusers.UserSpace, root: int) -> None:
    mallory, client = mallory_and_a_signed_in_root(app, space)
    with client:
        token = csrf_of(client.get("/console/users"))
        session = client.cookies["pgusers_console"]
        answer = client.post(
            f"/console/users/{mallory}/admin",
            data={"csrf": token, "value": "true"},
            headers={"cookie": f"pgusers_console={session}; pgusers_console=planted"},
        )
    assert answer.status_code == 400
    assert not space.is_admin(mallory)


def test_settings_forms_read_an_empty_field_as_no_limit(
    app: Any, space: pgusers.UserSpace, root: int
) -> None:
    with client_at(app, "http://127.0.0.1") as client:
        log_in(client)
        csrf = csrf_of(client.get("/console/settings"))

        def post(**fields: str) -> Answer:
            return client.post("/console/settings", data={"csrf": csrf, **fields})

        assert post(setting="max_age", session_max_age="3600").status_code == 303
        assert space.settings().session_max_age == 3600
        assert post(setting="max_age", session_max_age="").status_code == 303
        assert space.settings().session_max_age is None
        assert post(setting="sessions_per_user", sessions_per_user="5").status_code == 303
        assert space.settings().sessions_per_user == 5
        zero = post(setting="max_age", session_max_age="0")
        blank_ttl = post(setting="ttl", session_ttl="")
        half = post(setting="sessions_per_user", sessions_per_user="2.5")
    assert zero.status_code == 400 and "more than 0" in zero.text
    assert blank_ttl.status_code == 400 and "session_ttl needs a number" in blank_ttl.text
    assert half.status_code == 400 and "whole number" in half.text
    assert space.settings().session_max_age is None and space.settings().sessions_per_user == 5


def test_an_administrator_with_a_second_factor_logs_in_with_a_code(
    dsn: str, schema: str, clock: Clock
) -> None:
    from functools import partial

    from pgusers._core.factors import TOTP_PERIOD, totp_code
    from pgusers.web import create_app

    key = "a-test-secret-key-long-enough-for-aes"
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=key) as usp:
        root = usp.create_user("root", "root-pw-123", "root@example.com", admin=True)
        enrollment = usp.begin_totp(root)
        usp.confirm_totp(root, enrollment.factor_id, totp_code(enrollment.secret, clock.now))
        (recovery, *_) = usp.new_recovery_codes(root)
    clock.advance(TOTP_PERIOD)
    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        secret_key=key,
    )
    app = create_app(opener)
    with client_at(app, "http://127.0.0.1") as client:
        asked = log_in(client)
        assert asked.status_code == 200 and "Second factor" in asked.text
        assert "pgusers_console" not in asked.headers.get("set-cookie", "")
        ticket = matched(r'name="ticket" value="([^"]+)"', asked.text)
        wrong = client.post(
            "/console/login/code", data={"csrf": csrf_of(asked), "ticket": ticket, "code": "1"}
        )
        assert wrong.status_code == 401 and "wrong or used code" in wrong.text
        code = totp_code(enrollment.secret, clock.now)
        done = client.post(
            "/console/login/code", data={"csrf": csrf_of(wrong), "ticket": ticket, "code": code}
        )
        assert (done.status_code, done.headers["location"]) == (303, "/console/users")
        assert client.get("/console/users").status_code == 200
        # Entering the password again before a change asks for a code too, then goes on.
        clock.advance(TOTP_PERIOD)
        page = client.get("/console/confirm?next=/console/settings")
        asked = client.post(
            "/console/confirm",
            data={"csrf": csrf_of(page), "next": "/console/settings", "password": "root-pw-123"},
        )
        assert "Second factor" in asked.text
        ticket = matched(r'name="ticket" value="([^"]+)"', asked.text)
        code = totp_code(enrollment.secret, clock.now)
        fields = {
            "csrf": csrf_of(asked),
            "ticket": ticket,
            "code": code,
            "next": "/console/settings",
        }
        confirmed = client.post("/console/login/code", data=fields)
        assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/console/settings")
        assert client.get("/console/settings").status_code == 200
    # A recovery code works too, and a spent ticket sends back to the start.
    with client_at(app, "http://127.0.0.1") as client:
        again = log_in(client)
        form = {"csrf": csrf_of(again), "ticket": ticket, "code": recovery.upper()}
        spent = client.post("/console/login/code", data=form)
        assert spent.status_code == 401 and "log in again" in spent.text
        form["ticket"] = matched(r'name="ticket" value="([^"]+)"', again.text)
        assert client.post("/console/login/code", data=form).status_code == 303
        # The user's page lists the factors; an administrator may remove them.
        mine = client.get(f"/console/users/{root}").text
        assert "totp" in mine and "Recovery codes left: 9" in mine
        _, removed = confirmed_post(
            client, f"/console/users/{root}/factors/reset", back=f"/console/users/{root}"
        )
        assert removed.headers["location"].endswith("done=factors-removed")
        assert "No second factor." in client.get(f"/console/users/{root}").text
