"""The FastAPI example works end to end through the framework's test client."""

from fastapi.testclient import TestClient

import pgusers
from examples.fastapi_app import create_app

from .support import FAST_HASHER, found, json_of


def test_fastapi_register_login_session_cookie_and_logout(dsn: str, schema: str) -> None:
    app = create_app(dsn, schema=schema, hasher=FAST_HASHER)
    with TestClient(app, base_url="https://testserver") as client:
        form = {"username": "ada", "password": "s3cret", "email": "ada@example.com"}
        registered = client.post("/register", json=form)
        assert registered.status_code == 201
        uid = registered.json()["userid"]
        assert client.post("/register", json=form).status_code == 400
        assert client.get("/me").status_code == 401
        assert client.post("/login", json={"username": "ada", "password": "no"}).status_code == 401
        response = client.post("/login", json={"username": "ada", "password": "s3cret"})
        assert response.status_code == 200
        assert "httponly" in response.headers["set-cookie"].lower()
        assert client.get("/me").json() == {"userid": uid, "username": "ada"}
        assert client.post("/logout").json() == {"ended": 1}
        client.cookies.clear()
        assert client.get("/me").status_code == 401


def test_fastapi_over_plain_http_with_secure_off(dsn: str, schema: str) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.create_user("ada", "s3cret", "ada@example.com")
    for secure, remembered in ((True, False), (False, True)):
        app = create_app(dsn, secure=secure, schema=schema, hasher=FAST_HASHER)
        with TestClient(app, base_url="http://testserver") as client:
            client.post("/login", json={"username": "ada", "password": "s3cret"})
            assert (client.get("/me").status_code == 200) is remembered


def test_fastapi_refuses_a_forged_cookie(dsn: str, schema: str) -> None:
    app = create_app(dsn, schema=schema, hasher=FAST_HASHER)
    with TestClient(app, base_url="https://testserver") as client:
        client.cookies.set("session", "A" * 43)
        assert client.get("/me").status_code == 401


def test_fastapi_answers_a_long_or_odd_cookie_with_401(dsn: str, schema: str) -> None:
    app = create_app(dsn, schema=schema, hasher=FAST_HASHER)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        for cookie in ("A" * 4000, "%00" * 50):
            client.cookies.set("session", cookie)
            assert client.get("/me").status_code == 401, cookie[:10]


def test_fastapi_forgot_password_and_reset(dsn: str, schema: str) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        usp.create_user("ada", "s3cret", "ada@example.com")
    sent = []
    app = create_app(
        dsn, schema=schema, hasher=FAST_HASHER, send_mail=lambda *mail: sent.append(mail)
    )
    with TestClient(app, base_url="https://testserver") as client:
        unknown = client.post("/forgot-password", json={"email": "nobody@example.com"})
        known = client.post("/forgot-password", json={"email": "ADA@example.com"})
        assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
        [(address, _, body)] = sent
        token = body.rsplit(" ", 1)[1]
        assert address == "ada@example.com"
        reset = client.post("/reset-password", json={"token": token, "password": "n3w-pw"})
        assert reset.status_code == 200
        again = client.post("/reset-password", json={"token": token, "password": "other"})
        assert (again.status_code, again.json()["detail"]) == (400, "reset code not found")
        assert client.post("/login", json={"username": "ada", "password": "n3w-pw"}).is_success


def test_fastapi_verify_email_link(dsn: str, schema: str) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        uid = usp.create_user("ada", "s3cret", "ada@example.com")
    sent = []
    app = create_app(
        dsn, schema=schema, hasher=FAST_HASHER, send_mail=lambda *mail: sent.append(mail)
    )
    with TestClient(app, base_url="https://testserver") as client:
        assert client.post("/verify-email").status_code == 401
        client.post("/login", json={"username": "ada", "password": "s3cret"})
        assert client.post("/verify-email").status_code == 202
        link = sent[0][2].split("Open ", 1)[1]
        assert client.get(link).json() == {"detail": "email confirmed"}
        assert client.get(link).status_code == 400
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert found(usp.find_user(userid=uid))["email_verified"] is True


def test_the_flask_example_logs_in_and_out(space: pgusers.UserSpace, dsn: str, schema: str) -> None:
    from examples.flask_app import app

    app.config.update(
        PGUSERS_DSN=dsn, PGUSERS_SCHEMA=schema, PGUSERS_OPTIONS={"hasher": FAST_HASHER}
    )
    app.extensions.pop("pgusers.userspace", None)  # a schema of this test's own
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    form = {"username": "ada", "password": "s3cret", "email": "ada@example.com"}
    registered = client.post("/register", data=form, **https)
    assert registered.status_code == 201
    uid = json_of(registered)["userid"]
    assert found(space.find_user(userid=uid))["username"] == "ada"
    taken = client.post("/register", data=form, **https)
    assert (taken.status_code, json_of(taken)["error"]) == (
        400,
        "a user with that username already exists",
    )
    refused = client.post("/login", data={"username": "ada", "password": "no"}, **https)
    assert refused.status_code == 401
    accepted = client.post("/login", data={"username": "ada", "password": "s3cret"}, **https)
    assert accepted.json == {"userid": uid}
    assert client.get("/me", **https).json == {"userid": uid, "username": "ada"}
    assert client.post("/logout", **https).json == {"ended": 1}
    assert client.get("/me", **https).status_code == 401
