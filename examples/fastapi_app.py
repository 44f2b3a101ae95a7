"""A first FastAPI application on pgusers: register, log in with a session cookie,
"who am I" (a page only a signed-in user sees), log out, "forgot my password" and
"confirm your email".

Run it with ``uvicorn`` after setting ``PGUSERS_DSN`` to a libpq connection string
(``pgusers server dsn`` prints the embedded server's)::

    PGUSERS_DSN="$(pgusers server dsn)" PGUSERS_COOKIE_SECURE=0 uvicorn examples.fastapi_app:app

``PGUSERS_COOKIE_SECURE=0`` is for plain-HTTP development only: the session cookie
is ``Secure`` by default, and a browser sends a ``Secure`` cookie back over HTTPS
only, so on ``http://127.0.0.1:8000`` every login would seem forgotten at once.

pgusers sends no mail: the application passes ``send_mail(address, subject, body)``;
this example's default only logs what it would send.
"""

import logging
import os
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.middleware.authentication import AuthenticationMiddleware

import pgusers
from pgusers.integrations.starlette import PgUser, PgUsers, current_user, login, logout

User = Annotated[PgUser, Depends(current_user)]
Mailer = Callable[[str, str, str], None]


class Credentials(BaseModel):
    username: str
    password: str


class Registration(BaseModel):
    username: str
    password: str
    email: str


class Forgotten(BaseModel):
    email: str


class Reset(BaseModel):
    token: str
    password: str


def log_mail(address: str, subject: str, body: str) -> None:
    """Stand-in for a mail service: log the message instead of sending it."""
    logging.getLogger("example.mail").info("to %s: %s\n%s", address, subject, body)


def create_app(
    conninfo: str, send_mail: Mailer = log_mail, *, secure: bool = True, **options: Any
) -> FastAPI:
    """Build the application on the user space at ``conninfo``; ``secure=False`` only
    for plain-HTTP development (see above)."""
    opening = partial(pgusers.AsyncUserSpace.connect, conninfo=conninfo, **options)
    auth = PgUsers(opening, secure=secure)
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.post("/register", status_code=201)
    async def register(body: Registration) -> dict[str, int]:
        usp = await auth.userspace()
        return {"userid": await usp.create_user(body.username, body.password, body.email)}

    @app.post("/login")
    async def log_in(body: Credentials, request: Request, response: Response) -> dict[str, Any]:
        outcome = await login(request, response, body.username, body.password)
        return {"userid": outcome.userid}

    @app.post("/logout")
    async def log_out(request: Request, response: Response, user: User) -> dict[str, int]:
        return {"ended": await logout(request, response)}

    @app.get("/me")
    async def me(user: User) -> dict[str, Any]:
        return {"userid": user.userid, "username": user.username}

    @app.post("/forgot-password", status_code=202)
    async def forgot_password(body: Forgotten) -> dict[str, str]:
        # The same answer whether or not the address is known: it reveals nobody.
        usp = await auth.userspace()
        found = await usp.find_user(email=body.email)
        if found is not None and not found["disabled"]:
            token = await usp.issue_token(found["userid"], "reset_password")
            send_mail(found["email"], "Reset your password", f"Your reset code: {token}")
        return {"detail": "if the address is known, a reset code is on its way"}

    @app.post("/reset-password")
    async def reset_password(body: Reset) -> dict[str, str]:
        status = await (await auth.userspace()).reset_password(body.token, body.password)
        if status != pgusers.OK:
            raise HTTPException(400, f"reset code {status.name.lower().replace('_', ' ')}")
        return {"detail": "password changed; log in again"}

    @app.post("/verify-email", status_code=202)
    async def request_verification(request: Request, user: User) -> dict[str, str]:
        usp = await auth.userspace()
        token = await usp.issue_token(user.userid, "verify_email")
        account = await usp.find_user(userid=user.userid)
        if account is None:  # deleted since this request's session was checked
            raise HTTPException(401, "no such user")
        address = account["email"]
        link = f"{request.base_url}verify-email?token={token}"
        send_mail(address, "Confirm your email", f"Open {link}")
        return {"detail": "a confirmation link is on its way"}

    @app.get("/verify-email")
    async def verify_email(token: str) -> dict[str, str]:
        status = await (await auth.userspace()).verify_email(token)
        if status != pgusers.OK:
            raise HTTPException(400, f"link {status.name.lower().replace('_', ' ')}")
        return {"detail": "email confirmed"}

    @app.exception_handler(pgusers.BadCallError)
    async def bad_input(request: Request, error: pgusers.BadCallError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, 400)

    return app


if "PGUSERS_DSN" in os.environ:
    app = create_app(
        os.environ["PGUSERS_DSN"], secure=os.environ.get("PGUSERS_COOKIE_SECURE") != "0"
    )
