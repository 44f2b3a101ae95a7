"""A login route and a callback route in each framework integration (FastAPI, Flask,
Django), through each framework's own test client, against the scripted provider:
signed in with the session cookie set, the state cookie gone, and a callback without
the browser's state refused."""

import json
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest

import pgusers

from .identity_providers import ScriptedProvider, add_provider, follow, scripted
from .support import FAST_HASHER, configure_django

pytest.importorskip("authlib")

KEY = "a-test-secret-key-long-enough-for-aes"
CALLBACK = "https://testserver/auth/callback"


@pytest.fixture(scope="module")
def idp() -> Iterator[ScriptedProvider]:
    with scripted({"sub": "f-1", "email": "fay@example.com", "email_verified": True}) as idp:
        yield idp


@pytest.fixture
def provider(dsn: str, schema: str, idp: ScriptedProvider) -> None:
    with pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY) as usp:
        add_provider(usp, idp)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_fastapi(dsn: str, schema: str, provider: None) -> None:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, RedirectResponse
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.testclient import TestClient

    from pgusers.integrations.starlette import (
        PgUsers,
        begin_external_login,
        current_user,
        finish_external_login,
    )

    opener = partial(
        pgusers.AsyncUserSpace.connect,
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY,
    )  # fmt: skip
    auth = PgUsers(opener)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.get("/login/{name}")
    async def external(request: Request, name: str) -> RedirectResponse:
        return await begin_external_login(request, name, CALLBACK)

    @app.get("/auth/callback")
    async def callback(request: Request) -> RedirectResponse:
        response = RedirectResponse("/me", 303)
        await finish_external_login(request, response)
        return response

    @app.get("/me")
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"username": (await current_user(request)).username})

    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        left = client.get("/login/acme")
        assert left.status_code == 303 and "samesite=lax" in left.headers["set-cookie"].lower()
        back = client.get(path_of(follow(left.headers["location"])))
        assert back.status_code == 303, back.text
        assert client.get("/me").json() == {"username": "fay"}
        assert "pgusers_external" not in client.cookies
        # A callback without the browser's state opens nothing.
        client.cookies.clear()
        left = client.get("/login/acme")
        client.cookies.clear()
        refused = client.get(path_of(follow(left.headers["location"])))
        assert refused.status_code == 401
        assert client.get("/login/nobody").status_code == 400


def test_flask(dsn: str, schema: str, provider: None) -> None:
    from flask import Flask, jsonify, redirect
    from flask.typing import ResponseReturnValue
    from flask_login import current_user, login_required

    from pgusers.integrations.flask import PgUsers

    app = Flask(__name__)
    app.config.update(
        PGUSERS_DSN=dsn,
        PGUSERS_SCHEMA=schema,
        PGUSERS_OPTIONS={"hasher": FAST_HASHER, "secret_key": KEY},
    )
    ext = PgUsers(app)

    @app.get("/login/<name>")
    def external(name: str) -> ResponseReturnValue:
        return ext.begin_external_login(name, CALLBACK)

    @app.get("/auth/callback")
    def callback() -> ResponseReturnValue:
        outcome = ext.finish_external_login()
        if outcome.status != pgusers.OK:
            return jsonify(status=outcome.status.name), 401
        return redirect("/me", 303)

    @app.get("/me")
    @login_required
    def me() -> ResponseReturnValue:
        return jsonify(username=current_user.username)

    client = app.test_client()
    left = client.get("/login/acme")
    assert left.status_code == 303
    back = client.get(path_of(follow(left.headers["location"])))
    assert back.status_code == 303, back.get_data(as_text=True)
    assert json.loads(client.get("/me").get_data()) == {"username": "fay"}
    assert client.get_cookie("pgusers_external") is None
    fresh = app.test_client()
    left = fresh.get("/login/acme")
    fresh.delete_cookie("pgusers_external")
    refused = fresh.get(path_of(follow(left.headers["location"])))
    assert json.loads(refused.get_data()) == {"status": "REJECTED"}


configure_django(__name__)


def django_begin(request: Any, name: str) -> Any:
    from pgusers.integrations.django import pgusers_begin_external_login

    return pgusers_begin_external_login(request, name, CALLBACK)


def django_callback(request: Any) -> Any:
    from django.http import HttpResponseRedirect, JsonResponse

    from pgusers.integrations.django import pgusers_finish_external_login

    response = HttpResponseRedirect("/me", status=303)
    if pgusers_finish_external_login(request, response) is None:
        return JsonResponse({"status": request.pgusers_outcome.status.name}, status=401)
    return response


def django_me(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"username": request.user.username})


def _urls() -> list[Any]:
    from django.urls import path

    return [
        path("login/<str:name>", django_begin),
        path("auth/callback", django_callback),
        path("me", django_me),
    ]


urlpatterns = _urls()


def test_django(dsn: str, schema: str, provider: None) -> None:
    from django.test import Client, override_settings

    configured = {
        "DSN": dsn,
        "SCHEMA": schema,
        "OPTIONS": {"hasher": FAST_HASHER, "secret_key": KEY},
    }
    with override_settings(PGUSERS=configured, ROOT_URLCONF=__name__):
        client = Client()
        left = client.get("/login/acme", secure=True)
        assert left.status_code == 303
        back = client.get(path_of(follow(left.headers["location"])), secure=True)
        assert back.status_code == 303, back.content
        assert client.get("/me", secure=True).json() == {"username": "fay"}
        stranger = Client()
        left = stranger.get("/login/acme", secure=True)
        stranger.cookies.pop("pgusers_external")
        refused = stranger.get(path_of(follow(left.headers["location"])), secure=True)
        assert refused.json() == {"status": "REJECTED"}
