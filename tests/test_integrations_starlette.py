"""pgusers.integrations.starlette on real Starlette and FastAPI applications, through
their test client, on a real PostgreSQL."""

from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request, Response
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import pgusers
from pgusers.integrations.starlette import (
    PgUser,
    PgUsers,
    current_user,
    login,
    logout,
    require_admin,
    set_session_data,
)

from .support import FAST_HASHER, Answer, Clock

User = Annotated[PgUser, Depends(current_user)]
Admin = Annotated[PgUser, Depends(require_admin)]


def fastapi_app(dsn: str, schema: str, **options: Any) -> FastAPI:
    opener = partial(
        pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema, hasher=FAST_HASHER
    )
    auth = PgUsers(opener, **options)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.post("/login")
    async def log_in(request: Request, response: Response) -> dict[str, int | None]:
        body = await request.json()
        outcome = await login(request, response, body["username"], body["password"])
        return {"userid": outcome.userid}

    @app.post("/logout")
    async def log_out(request: Request, response: Response) -> dict[str, int]:
        return {"ended": await logout(request, response)}

    @app.get("/me")
    async def me(user: User) -> dict[str, Any]:
        return {"userid": user.userid, "username": user.username, "data": user.session_data}

    @app.get("/admin")
    async def admin_only(user: Admin) -> dict[str, str]:
        return {"admin": user.username}

    @app.post("/cart")
    async def cart(request: Request, user: User) -> dict[str, str]:
        return {"status": (await set_session_data(request, await request.json())).name}

    return app


@pytest.fixture
def client(space: pgusers.UserSpace, dsn: str, schema: str) -> Iterator[TestClient]:
    with TestClient(fastapi_app(dsn, schema), base_url="https://testserver") as client:
        yield client


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", "ada-pw-123", "ada@example.com")


def log_in(client: TestClient, username: str = "ada", password: str = "ada-pw-123") -> Answer:
    return client.post("/login", json={"username": username, "password": password})


def test_login_sets_a_session_cookie_with_the_right_flags(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    answer = log_in(client)
    assert answer.json() == {"userid": ada}
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    expected = {"httponly", "secure", "samesite=lax", "path=/", f"max-age={int(space.ttl)}"}
    assert expected <= attributes
    assert cookie.startswith("pgusers_session=")


def test_request_user_comes_from_the_cookie(client: TestClient, ada: int) -> None:
    assert client.get("/me").status_code == 401
    log_in(client)
    assert client.get("/me").json() == {"userid": ada, "username": "ada", "data": None}


def test_login_records_the_client_and_user_agent(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    client.post(
        "/login",
        json={"username": "ada", "password": "ada-pw-123"},
        headers={"user-agent": "Integration/1.0"},
    )
    (session,) = space.sessions(ada)
    assert (session.source, session.user_agent) == ("testclient", "Integration/1.0")


def test_wrong_password_is_401_disabled_403_throttled_429(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    assert log_in(client, password="nope").status_code == 401
    space.set_login_policy(free_failures=1)
    log_in(client, password="nope")
    throttled = log_in(client)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    space.clear_login_failures("ada")
    space.disable_user(ada)
    assert log_in(client).status_code == 403


@pytest.mark.parametrize(
    ("username", "password"),
    [("x" * 151, "pw"), ("a\x00b", "pw"), ("ada", "p" * 1025)],
    ids=["long name", "NUL name", "long password"],
)
def test_malformed_credentials_are_a_refused_login(
    client: TestClient, ada: int, username: Any, password: Any
) -> None:
    assert log_in(client, username, password).status_code == 401


def test_logging_in_again_ends_the_session_the_cookie_held(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    log_in(client)
    space.create_user("bob", "bob-pw-123", "bob@example.com")
    log_in(client, "bob", "bob-pw-123")
    assert list(space.sessions(ada)) == []
    assert client.get("/me").json()["username"] == "bob"


def test_logout_ends_this_session_only_and_clears_the_cookie(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    other = space.login("ada", "ada-pw-123").key
    log_in(client)
    answer = client.post("/logout")
    assert answer.json() == {"ended": 1}
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/me").status_code == 401
    assert space.check_key(other).status == pgusers.OK


def test_a_killed_session_is_refused_at_once(
    client: TestClient, space: pgusers.UserSpace, ada: int
) -> None:
    log_in(client)
    space.kill_sessions(ada)
    assert client.get("/me").status_code == 401


def test_require_admin_asks_now(client: TestClient, space: pgusers.UserSpace, ada: int) -> None:
    log_in(client)
    assert client.get("/admin").status_code == 403
    space.set_admin(ada, True)
    assert client.get("/admin").json() == {"admin": "ada"}
    space.set_admin(ada, False)
    assert client.get("/admin").status_code == 403


def test_session_data_changes_during_the_session(client: TestClient, ada: int) -> None:
    log_in(client)
    assert client.post("/cart", json={"cart": ["tea"]}).json() == {"status": "OK"}
    assert client.get("/me").json()["data"] == {"cart": ["tea"]}


def test_a_forged_cookie_is_anonymous(client: TestClient, ada: int) -> None:
    client.cookies.set("pgusers_session", "A" * 43)
    assert client.get("/me").status_code == 401


def test_plain_starlette_requires_scopes(
    space: pgusers.UserSpace, dsn: str, schema: str, ada: int
) -> None:
    opener = partial(
        pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema, hasher=FAST_HASHER
    )
    auth = PgUsers(opener, admin_scope=True)

    @requires("authenticated")
    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name, "scopes": request.auth.scopes})

    @requires("admin")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/", home), Route("/admin", admin)],
        middleware=[Middleware(AuthenticationMiddleware, backend=auth.backend)],
    )
    key = space.login("ada", "ada-pw-123").key
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/").status_code == 403
        client.cookies.set("pgusers_session", key)
        assert client.get("/").json() == {"user": "ada", "scopes": ["authenticated"]}
        assert client.get("/admin").status_code == 403
        space.set_admin(ada, True)
        assert client.get("/admin").json() == {"ok": True}


def test_without_the_middleware_the_helpers_say_what_is_missing(
    space: pgusers.UserSpace, dsn: str, schema: str
) -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(user: User) -> dict[str, str]:
        return {}

    with (
        TestClient(app, base_url="https://testserver") as client,
        pytest.raises(RuntimeError, match="AuthenticationMiddleware"),
    ):
        client.get("/me")


def test_secure_can_be_turned_off_for_local_http(
    space: pgusers.UserSpace, dsn: str, schema: str, ada: int
) -> None:
    with TestClient(fastapi_app(dsn, schema, secure=False)) as client:
        answer = log_in(client)
        assert "secure" not in answer.headers["set-cookie"].lower()
        assert client.get("/me").status_code == 200


def test_one_app_serves_requests_from_new_event_loops(
    space: pgusers.UserSpace, dsn: str, schema: str, ada: int
) -> None:
    app = fastapi_app(dsn, schema)
    for _ in range(2):  # each "with" runs the app in a new event loop
        with TestClient(app, base_url="https://testserver") as client:
            log_in(client)
            assert client.get("/me").json()["userid"] == ada
    loose = TestClient(app, base_url="https://testserver")  # a loop per request
    assert log_in(loose).status_code == 200
    assert loose.get("/me").json()["userid"] == ada


def test_a_second_factor_and_a_recent_proof(dsn: str, schema: str, clock: Clock) -> None:
    from pgusers._core.factors import TOTP_PERIOD, totp_code
    from pgusers.integrations.starlette import complete_login, require_recent_auth

    key = "a-test-secret-key-long-enough-for-aes"
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=key) as usp:
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        enrollment = usp.begin_totp(ada)
        usp.confirm_totp(ada, enrollment.factor_id, totp_code(enrollment.secret, clock.now))
    clock.advance(TOTP_PERIOD)
    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn,
        schema=schema,
        hasher=FAST_HASHER,
        secret_key=key,
    )
    auth = PgUsers(opener)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.post("/login")
    async def log_in(request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        outcome = await login(request, response, body["username"], body["password"])
        return {"status": outcome.status.name, "ticket": outcome.ticket}

    @app.post("/login/complete")
    async def finish(request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        outcome = await complete_login(request, response, body["ticket"], totp=body["totp"])
        return {"userid": outcome.userid}

    @app.post("/sensitive")
    async def sensitive(
        user: Annotated[PgUser, Depends(require_recent_auth(60))],
    ) -> dict[str, Any]:
        return {"methods": list(user.auth_methods)}

    with TestClient(app, base_url="https://testserver") as client:
        started = client.post("/login", json={"username": "ada", "password": "ada-pw-123"})
        assert started.json()["status"] == "MFA_REQUIRED"
        assert "set-cookie" not in started.headers
        code = totp_code(enrollment.secret, clock.now)
        finished = client.post(
            "/login/complete", json={"ticket": started.json()["ticket"], "totp": code}
        )
        assert finished.json() == {"userid": ada}
        assert client.post("/sensitive").json() == {"methods": ["password", "totp"]}
        clock.advance(61)
        late = client.post("/sensitive")
        assert late.status_code == 403 and late.headers["x-reauthenticate"] == "required"
        again = client.post(
            "/login/complete", json={"ticket": started.json()["ticket"], "totp": code}
        )
        assert again.status_code == 401


def test_passkeys_register_and_sign_in(dsn: str, schema: str) -> None:
    import json

    from pgusers.integrations.starlette import (
        begin_passkey_login,
        begin_passkey_registration,
        finish_passkey_login,
        finish_passkey_registration,
    )

    from .authenticator import Authenticator

    origin = "https://testserver"
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.set_webauthn("testserver", "Tests", [origin])
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
    opener = partial(
        pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema, hasher=FAST_HASHER
    )
    auth = PgUsers(opener)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)
    phone = Authenticator(origin)

    @app.post("/login")
    async def log_in(request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        outcome = await login(request, response, body["username"], body["password"])
        return {"status": outcome.status.name}

    @app.post("/passkeys/{step}")
    async def passkeys(step: str, request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        if step == "register":
            begun = await begin_passkey_registration(request, label="phone")
            return {"challenge_id": begun.challenge_id, "options": begun.options}
        if step == "registered":
            made = await finish_passkey_registration(request, body["id"], body["credential"])
            return {"factor_id": made}
        if step == "login":
            begun = await begin_passkey_login(request)
            return {"challenge_id": begun.challenge_id, "options": begun.options}
        outcome = await finish_passkey_login(request, response, body["id"], body["credential"])
        return {"userid": outcome.userid}

    @app.get("/me")
    async def me(user: Annotated[PgUser, Depends(current_user)]) -> dict[str, Any]:
        return {"userid": user.userid, "methods": list(user.auth_methods)}

    with TestClient(app, base_url=origin) as client:
        client.post("/login", json={"username": "ada", "password": "ada-pw-123"})
        begun = client.post("/passkeys/register", json={}).json()
        answer = phone.create(begun["options"])
        made = client.post(
            "/passkeys/registered", json={"id": begun["challenge_id"], "credential": answer}
        )
        assert made.status_code == 200, made.text
        client.cookies.clear()
        assert client.get("/me").status_code == 401
        begun = client.post("/passkeys/login", json={}).json()
        answer = phone.get(begun["options"])
        signed = client.post(
            "/passkeys/finish", json={"id": begun["challenge_id"], "credential": answer}
        )
        assert signed.json() == {"userid": ada}
        assert client.get("/me").json() == {"userid": ada, "methods": ["passkey"]}
        replay = client.post(
            "/passkeys/finish", json={"id": begun["challenge_id"], "credential": answer}
        )
        assert replay.status_code == 401
        bad = client.post("/passkeys/registered", json={"id": "x", "credential": json.loads("{}")})
        assert bad.status_code in (400, 422)


def test_a_permission_guards_a_route(dsn: str, schema: str) -> None:
    from pgusers.integrations.starlette import require_permission

    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.define_role("billing", ["invoice:write"])
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        usp.create_user("bob", "bob-pw-123", "bob@example.com")
        usp.grant_role(ada, "billing")
        acme = usp.create_org("Acme", slug="acme")
        usp.define_role("member", ["doc:read"])
        usp.add_member(acme, ada, "member")
    opener = partial(
        pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema, hasher=FAST_HASHER
    )
    auth = PgUsers(opener)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.post("/login")
    async def log_in(request: Request, response: Response) -> dict[str, Any]:
        body = await request.json()
        await login(request, response, body["username"], body["password"])
        return {}

    @app.post("/invoices")
    async def invoices(
        user: Annotated[PgUser, Depends(require_permission("invoice:write"))],
    ) -> dict[str, Any]:
        return {"roles": list(user.roles), "permissions": sorted(user.permissions)}

    @app.get("/orgs/{slug}/docs")
    async def docs(
        user: Annotated[
            PgUser, Depends(require_permission("doc:read", org=lambda r: r.path_params["slug"]))
        ],
    ) -> dict[str, Any]:
        return {"userid": user.userid}

    with TestClient(app, base_url="https://testserver") as client:
        assert client.post("/invoices").status_code == 401
        client.post("/login", json={"username": "bob", "password": "bob-pw-123"})
        assert client.post("/invoices").status_code == 403
        assert client.get("/orgs/acme/docs").status_code == 403
        client.post("/login", json={"username": "ada", "password": "ada-pw-123"})
        assert client.post("/invoices").json() == {
            "roles": ["billing"],
            "permissions": ["invoice:write"],
        }
        assert client.get("/orgs/acme/docs").json() == {"userid": ada}
        assert client.get("/orgs/other/docs").status_code == 403
