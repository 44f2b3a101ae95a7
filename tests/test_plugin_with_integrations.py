"""An application built on an integration, tested with the plugin's fixtures as its
developers would: the application opens its userspace itself, with no hasher given,
on the schema the fixtures made."""

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from flask import Flask, request
from starlette.middleware.authentication import AuthenticationMiddleware

import pgusers
from pgusers.integrations import django as pgusers_django
from pgusers.integrations import flask as pgusers_flask
from pgusers.integrations import starlette as pgusers_starlette

from .support import configure_django


def test_a_starlette_application(
    userspace: Any, make_user: Any, pgusers_dsn: str, pgusers_schema: str
) -> None:
    userid = make_user("ada", "s3cret-pw")
    auth = pgusers_starlette.PgUsers(
        lambda: pgusers.AsyncUserSpace.connect(conninfo=pgusers_dsn, schema=pgusers_schema)
    )
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.post("/login")
    async def log_in(request: Request, response: Response) -> dict[str, int | None]:
        form = await request.json()
        outcome = await pgusers_starlette.login(
            request, response, form["username"], form["password"]
        )
        return {"userid": outcome.userid}

    with TestClient(app, base_url="https://testserver") as client:
        answer = client.post("/login", json={"username": "ada", "password": "s3cret-pw"})
        assert answer.json() == {"userid": userid}


def test_a_flask_application(
    userspace: Any, make_user: Any, pgusers_dsn: str, pgusers_schema: str
) -> None:
    userid = make_user("ada", "s3cret-pw")
    app = Flask(__name__)
    app.config.update(PGUSERS_DSN=pgusers_dsn, PGUSERS_SCHEMA=pgusers_schema)
    users = pgusers_flask.PgUsers(app)

    @app.post("/login")
    def log_in() -> dict[str, int | None]:
        return {"userid": users.login(request.form["username"], request.form["password"]).userid}

    answer = app.test_client().post(
        "/login", data={"username": "ada", "password": "s3cret-pw"}, base_url="https://localhost"
    )
    assert answer.json == {"userid": userid}


def django_login(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({})
    user = pgusers_django.pgusers_login(
        request, response, request.POST["username"], request.POST["password"]
    )
    response.content = json.dumps({"userid": user and user.pk}).encode()
    return response


urlpatterns = [path("login", django_login)]


def test_a_django_application(
    userspace: Any, make_user: Any, pgusers_dsn: str, pgusers_schema: str
) -> None:
    configure_django(__name__)
    userid = make_user("ada", "s3cret-pw")
    configured = {"DSN": pgusers_dsn, "SCHEMA": pgusers_schema}
    with override_settings(PGUSERS=configured, ROOT_URLCONF=__name__):
        answer = Client().post("/login", {"username": "ada", "password": "s3cret-pw"}, secure=True)
    assert answer.json() == {"userid": userid}
