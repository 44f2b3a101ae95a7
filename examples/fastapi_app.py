"""A FastAPI application that logs users in with pgusers and checks the session cookie.

Run it with ``uvicorn`` after setting ``PGUSERS_DSN`` to a libpq connection string::

    PGUSERS_DSN="host=localhost dbname=userlist" uvicorn examples.fastapi_app:app
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Cookie, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

import pgusers

SESSION_COOKIE = "session"


class Credentials(BaseModel):
    username: str
    password: str


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


def create_app(conninfo: str, **options: Any) -> FastAPI:
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

    return app


if "PGUSERS_DSN" in os.environ:
    app = create_app(os.environ["PGUSERS_DSN"])
