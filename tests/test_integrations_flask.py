"""pgusers.integrations.flask in a real Flask application with Flask-Login, through
Flask's test client."""

from typing import Any

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from werkzeug.test import TestResponse

import pgusers
from pgusers.integrations.flask import PgUser, PgUsers

from .support import FAST_HASHER, Clock, json_of


def make_app(dsn: str, schema: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn, PGUSERS_SCHEMA=schema, PGUSERS_OPTIONS={"hasher": FAST_HASHER}, **config
    )
    ext = PgUsers(app)

    @app.post("/login")
    def log_in() -> ResponseReturnValue:
        outcome = ext.login(request.form["username"], request.form["password"])
        if outcome.status == pgusers.THROTTLED:
            wait = str(int(outcome.retry_after) + 1)
            return jsonify(error="throttled"), 429, {"Retry-After": wait}
        if outcome.status != pgusers.OK:
            return jsonify(error="refused"), 401
        return jsonify(userid=outcome.userid)

    @app.post("/logout")
    @login_required
    def log_out() -> ResponseReturnValue:
        return jsonify(ended=ext.logout())

    @app.get("/me")
    @login_required
    def me() -> ResponseReturnValue:
        user = current_user
        return jsonify(
            userid=user.userid, username=user.username, admin=user.is_admin, data=user.session_data
        )

    @app.post("/cart")
    @login_required
    def cart() -> ResponseReturnValue:
        return jsonify(status=ext.set_session_data(request.get_json()).name)

    return app


@pytest.fixture
def app(space: pgusers.UserSpace, dsn: str, schema: str) -> Flask:
    return make_app(dsn, schema)


@pytest.fixture
def ada(space: pgusers.UserSpace) -> int:
    return space.create_user("ada", "ada-pw-123", "ada@example.com")


def log_in(
    client: FlaskClient, username: str = "ada", password: str = "ada-pw-123"
) -> TestResponse:
    return client.post(
        "/login", data={"username": username, "password": password}, base_url="https://localhost"
    )


def get(client: FlaskClient, path: str) -> TestResponse:
    return client.get(path, base_url="https://localhost")


def test_login_sets_the_cookie_and_current_user_follows_it(
    app: Flask, space: pgusers.UserSpace, ada: int
) -> None:
    client = app.test_client()
    assert get(client, "/me").status_code == 401
    answer = log_in(client)
    assert answer.json == {"userid": ada}
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert f"Max-Age={int(space.ttl)}" in cookie and "Path=/" in cookie
    me = get(client, "/me").json
    assert me == {"userid": ada, "username": "ada", "admin": False, "data": None}


def test_current_user_is_a_flask_login_user(app: Flask, ada: int) -> None:
    client = app.test_client()
    log_in(client)
    with client:
        get(client, "/me")
        assert isinstance(current_user._get_current_object(), PgUser)
        assert current_user.is_authenticated and current_user.get_id() == str(ada)


def test_refused_and_throttled_logins(app: Flask, space: pgusers.UserSpace, ada: int) -> None:
    client = app.test_client()
    assert log_in(client, password="no").status_code == 401
    space.set_login_policy(free_failures=1)
    log_in(client, password="no")
    answer = log_in(client)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("username", "password"),
    [("x" * 151, "pw"), ("a\x00b", "pw"), ("ada", "p" * 1025)],
    ids=["long name", "NUL name", "long password"],
)
def test_malformed_credentials_are_a_refused_login(
    app: Flask, ada: int, username: Any, password: Any
) -> None:
    assert log_in(app.test_client(), username, password).status_code == 401


def test_logging_in_again_ends_the_session_the_cookie_held(
    app: Flask, space: pgusers.UserSpace, ada: int
) -> None:
    client = app.test_client()
    log_in(client)
    space.create_user("bob", "bob-pw-123", "bob@example.com")
    log_in(client, "bob", "bob-pw-123")
    assert list(space.sessions(ada)) == []
    assert get(client, "/me").get_json()["username"] == "bob"


def test_logout_ends_this_session_only(app: Flask, space: pgusers.UserSpace, ada: int) -> None:
    other = space.login("ada", "ada-pw-123").key
    client = app.test_client()
    log_in(client)
    answer = client.post("/logout", base_url="https://localhost")
    assert answer.json == {"ended": 1}
    assert "pgusers_session=;" in answer.headers["Set-Cookie"]
    assert get(client, "/me").status_code == 401
    assert space.check_key(other).status == pgusers.OK


def test_a_killed_session_is_anonymous_at_once(
    app: Flask, space: pgusers.UserSpace, ada: int
) -> None:
    client = app.test_client()
    log_in(client)
    space.kill_sessions(ada)
    assert get(client, "/me").status_code == 401


def test_session_data_changes_during_the_session(app: Flask, ada: int) -> None:
    client = app.test_client()
    log_in(client)
    answer = client.post("/cart", json={"cart": ["tea"]}, base_url="https://localhost")
    assert answer.json == {"status": "OK"}
    assert json_of(get(client, "/me"))["data"] == {"cart": ["tea"]}


def test_the_admin_flag_is_read_from_the_database(
    app: Flask, space: pgusers.UserSpace, ada: int
) -> None:
    client = app.test_client()
    log_in(client)
    space.set_admin(ada, True)
    assert json_of(get(client, "/me"))["admin"] is True


def test_the_cookie_name_and_secure_flag_come_from_the_config(
    space: pgusers.UserSpace, dsn: str, schema: str, ada: int
) -> None:
    app = make_app(dsn, schema, PGUSERS_COOKIE_NAME="sid", PGUSERS_COOKIE_SECURE=False)
    client = app.test_client()
    answer = client.post("/login", data={"username": "ada", "password": "ada-pw-123"})
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("sid=") and "Secure" not in cookie
    assert json_of(client.get("/me"))["userid"] == ada


def test_a_second_factor_and_a_recent_proof(dsn: str, schema: str, clock: Clock) -> None:
    from pgusers._core.factors import TOTP_PERIOD, totp_code
    from pgusers.integrations.flask import require_recent_auth

    key = "a-test-secret-key-long-enough-for-aes"
    clock.now = (clock.now // TOTP_PERIOD) * TOTP_PERIOD + 1
    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn,
        PGUSERS_SCHEMA=schema,
        PGUSERS_OPTIONS={"hasher": FAST_HASHER, "secret_key": key},
    )
    ext = PgUsers(app)

    @app.post("/login")
    def log_in() -> ResponseReturnValue:
        outcome = ext.login(request.form["username"], request.form["password"])
        return jsonify(status=outcome.status.name, ticket=outcome.ticket)

    @app.post("/login/complete")
    def finish() -> ResponseReturnValue:
        outcome = ext.complete_login(request.form["ticket"], totp=request.form["totp"])
        return jsonify(status=outcome.status.name)

    @app.post("/sensitive")
    @require_recent_auth(60)
    def sensitive() -> ResponseReturnValue:
        return jsonify(methods=list(current_user.auth_methods))

    with app.app_context():
        usp = ext.userspace
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        enrollment = usp.begin_totp(ada)
        usp.confirm_totp(ada, enrollment.factor_id, totp_code(enrollment.secret, clock.now))
    clock.advance(TOTP_PERIOD)
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    started = client.post("/login", data={"username": "ada", "password": "ada-pw-123"}, **https)
    assert json_of(started)["status"] == "MFA_REQUIRED"
    assert client.post("/sensitive", **https).status_code == 401  # no session yet
    code = totp_code(enrollment.secret, clock.now)
    ticket = json_of(started)["ticket"]
    done = client.post("/login/complete", data={"ticket": ticket, "totp": code}, **https)
    assert json_of(done) == {"status": "OK"}
    assert json_of(client.post("/sensitive", **https)) == {"methods": ["password", "totp"]}
    clock.advance(61)
    late = client.post("/sensitive", **https)
    assert late.status_code == 403 and late.headers["X-Reauthenticate"] == "required"
    with app.app_context():
        ext.userspace.close()


def test_passkeys_register_and_sign_in(dsn: str, schema: str) -> None:
    from .authenticator import Authenticator

    origin = "https://localhost"
    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn, PGUSERS_SCHEMA=schema, PGUSERS_OPTIONS={"hasher": FAST_HASHER}
    )
    ext = PgUsers(app)
    phone = Authenticator(origin)

    @app.post("/login")
    def log_in() -> ResponseReturnValue:
        outcome = ext.login(request.form["username"], request.form["password"])
        return jsonify(status=outcome.status.name)

    @app.post("/passkeys/<step>")
    def passkeys(step: str) -> ResponseReturnValue:
        body = request.get_json()
        if step == "register":
            begun = ext.begin_passkey_registration(label="phone")
            return jsonify(id=begun.challenge_id, options=begun.options, status=begun.status.name)
        if step == "registered":
            return jsonify(
                factor_id=ext.finish_passkey_registration(body["id"], body["credential"])
            )
        if step == "login":
            begun = ext.begin_passkey_login()
            return jsonify(id=begun.challenge_id, options=begun.options)
        outcome = ext.finish_passkey_login(body["id"], body["credential"])
        return jsonify(status=outcome.status.name, userid=outcome.userid)

    @app.get("/me")
    def me() -> ResponseReturnValue:
        return (
            jsonify(methods=list(current_user.auth_methods))
            if current_user.is_authenticated
            else ("", 401)
        )

    with app.app_context():
        ext.userspace.set_webauthn("localhost", "Tests", [origin])
        ada = ext.userspace.create_user("ada", "ada-pw-123", "ada@example.com")
    client = app.test_client()
    https = {"base_url": origin}
    client.post("/login", data={"username": "ada", "password": "ada-pw-123"}, **https)
    begun = json_of(client.post("/passkeys/register", json={}, **https))
    assert begun["status"] == "OK"
    answer = phone.create(begun["options"])
    made = client.post(
        "/passkeys/registered", json={"id": begun["id"], "credential": answer}, **https
    )
    assert made.status_code == 200
    client.delete_cookie("pgusers_session", domain="localhost")
    begun = json_of(client.post("/passkeys/login", json={}, **https))
    answer = phone.get(begun["options"])
    signed = client.post(
        "/passkeys/finish", json={"id": begun["id"], "credential": answer}, **https
    )
    assert json_of(signed) == {"status": "OK", "userid": ada}
    assert json_of(client.get("/me", **https)) == {"methods": ["passkey"]}
    replay = client.post(
        "/passkeys/finish", json={"id": begun["id"], "credential": answer}, **https
    )
    assert json_of(replay)["status"] == "NOT_FOUND"
    with app.app_context():
        ext.userspace.close()


def test_a_permission_guards_a_view(dsn: str, schema: str) -> None:
    from pgusers.integrations.flask import require_permission

    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn, PGUSERS_SCHEMA=schema, PGUSERS_OPTIONS={"hasher": FAST_HASHER}
    )
    ext = PgUsers(app)

    @app.post("/login")
    def log_in() -> ResponseReturnValue:
        ext.login(request.form["username"], request.form["password"])
        return ""

    @app.post("/invoices")
    @require_permission("invoice:write")
    def invoices() -> ResponseReturnValue:
        return jsonify(roles=list(current_user.roles))

    @app.get("/orgs/<slug>/docs")
    @require_permission("doc:read", org=lambda slug: slug)
    def docs(slug: str) -> ResponseReturnValue:
        return jsonify(slug=slug)

    with app.app_context():
        usp = ext.userspace
        usp.define_role("billing", ["invoice:write"])
        usp.define_role("member", ["doc:read"])
        ada = usp.create_user("ada", "ada-pw-123", "ada@example.com")
        usp.create_user("bob", "bob-pw-123", "bob@example.com")
        usp.grant_role(ada, "billing")
        usp.add_member(usp.create_org("Acme", slug="acme"), ada, "member")
    https = {"base_url": "https://localhost"}
    client = app.test_client()
    assert client.post("/invoices", **https).status_code == 401
    client.post("/login", data={"username": "bob", "password": "bob-pw-123"}, **https)
    assert client.post("/invoices", **https).status_code == 403
    client.post("/login", data={"username": "ada", "password": "ada-pw-123"}, **https)
    assert json_of(client.post("/invoices", **https)) == {"roles": ["billing"]}
    assert json_of(client.get("/orgs/acme/docs", **https)) == {"slug": "acme"}
    assert client.get("/orgs/other/docs", **https).status_code == 403
    with app.app_context():
        ext.userspace.close()
