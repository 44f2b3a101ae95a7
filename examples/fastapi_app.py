"""A FastAPI application that logs users in with pgusers and checks the session cookie,
with "forgot my password" and "confirm your email" routes.

Run it with ``uvicorn`` after setting ``PGUSERS_DSN`` to a libpq connection string::

    PGUSERS_DSN="host=localhost dbname=userlist" uvicorn examples.fastapi_app:app

pgusers sends no mail: the application passes ``send_mail(address, subject, body)``;
this example's default only logs what it would send.
"""

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Cookie, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

import pgusers

SESSION_COOKIE = "session"


class Credentials(BaseModel):
    username: str
    password: str


class Forgotten(BaseModel):
    email: str


class Reset(BaseModel):
    token: str
    password: str


Mailer = Callable[[str, str, str], None]


def log_mail(address: str, subject: str, body: str) -> None:
    """Stand-in for a mail service: log the message instead of sending it."""
    logging.getLogger("example.mail").info("to %s: %s\n%s", address, subject, body)


async def current_user(
    request: Request, session: Annotated[str | None, Cookie()] = None
) -> dict[str, Any]:
    """Dependency: the logged-in user, or 401."""
    if session is None:
        raise HTTPException(401, "not logged in")
    rc, username, userid, _ = await request.app.state.usp.check_key(session)
    if rc != pgusers.OK:
        raise HTTPException(401, "session expired or unknown")
    return {"userid": userid, "username": username}


def create_app(conninfo: str, send_mail: Mailer = log_mail, **options: Any) -> FastAPI:
    """Build the application on the user space at ``conninfo``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with pgusers.AsyncUserSpace(conninfo=conninfo, **options) as usp:
            app.state.usp = usp
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/login")
    async def login(
        credentials: Credentials, request: Request, response: Response
    ) -> dict[str, int]:
        try:
            key, _, userid = await request.app.state.usp.validate_user(
                credentials.username, credentials.password
            )
        except pgusers.BadCallError:
            key, userid = "", None
        if not key or userid is None:
            raise HTTPException(401, "wrong username or password")
        response.set_cookie(SESSION_COOKIE, key, httponly=True, secure=True, samesite="lax")
        return {"userid": userid}

    @app.post("/logout")
    async def logout(
        request: Request, response: Response, user: Annotated[dict[str, Any], Depends(current_user)]
    ) -> dict[str, int]:
        ended = await request.app.state.usp.kill_sessions(user["userid"])
        response.delete_cookie(SESSION_COOKIE)
        return {"ended": ended}

    @app.get("/me")
    async def me(user: Annotated[dict[str, Any], Depends(current_user)]) -> dict[str, Any]:
        return user

    @app.post("/forgot-password", status_code=202)
    async def forgot_password(forgotten: Forgotten, request: Request) -> dict[str, str]:
        # The same answer whether or not the address is known: it reveals nobody.
        usp = request.app.state.usp
        try:
            user = await usp.find_user(email=forgotten.email)
        except pgusers.BadCallError:
            user = None
        if user is not None and not user["disabled"]:
            token = await usp.issue_token(user["userid"], "reset_password")
            send_mail(user["email"], "Reset your password", f"Your reset code: {token}")
        return {"detail": "if the address is known, a reset code is on its way"}

    @app.post("/reset-password")
    async def reset_password(reset: Reset, request: Request) -> dict[str, str]:
        try:
            status = await request.app.state.usp.reset_password(reset.token, reset.password)
        except pgusers.BadCallError as error:
            raise HTTPException(400, str(error)) from None
        if status != pgusers.OK:
            raise HTTPException(400, f"reset code {status.name.lower().replace('_', ' ')}")
        return {"detail": "password changed; log in again"}

    @app.post("/verify-email", status_code=202)
    async def request_verification(
        request: Request, user: Annotated[dict[str, Any], Depends(current_user)]
    ) -> dict[str, str]:
        usp = request.app.state.usp
        found = await usp.find_user(userid=user["userid"])
        token = await usp.issue_token(user["userid"], "verify_email")
        link = f"{request.base_url}verify-email?token={token}"
        send_mail(found["email"], "Confirm your email", f"Open {link}")
        return {"detail": "a confirmation link is on its way"}

    @app.get("/verify-email")
    async def verify_email(token: str, request: Request) -> dict[str, str]:
        status = await request.app.state.usp.verify_email(token)
        if status != pgusers.OK:
            raise HTTPException(400, f"link {status.name.lower().replace('_', ' ')}")
        return {"detail": "email confirmed"}

    return app


if "PGUSERS_DSN" in os.environ:
    app = create_app(os.environ["PGUSERS_DSN"])
