"""pgusers for Starlette and FastAPI, on :class:`pgusers.AsyncUserSpace`.

::

    from functools import partial
    from fastapi import Depends, FastAPI
    from starlette.middleware.authentication import AuthenticationMiddleware
    from pgusers import AsyncUserSpace
    from pgusers.integrations.starlette import PgUser, PgUsers, current_user

    auth = PgUsers(partial(AsyncUserSpace.connect, "app"))  # the database "app"
    app = FastAPI()
    app.add_middleware(AuthenticationMiddleware, backend=auth.backend)

    @app.get("/me")
    async def me(user: PgUser = Depends(current_user)): ...

``request.user`` is a :class:`PgUser` (or Starlette's ``UnauthenticatedUser``) and
``request.auth.scopes`` holds ``"authenticated"`` (and ``"admin"`` with
``PgUsers(..., admin_scope=True)``, at one more statement per request), so
Starlette's ``requires(...)`` works as it documents.
"""

from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from pgusers._aio import AsyncUserSpace, Opener, PerLoop
from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers._results import (
    EXPIRED,
    MFA_REQUIRED,
    NOT_FOUND,
    OK,
    REJECTED,
    REJECTED_LOGIN,
    LoginOutcome,
    PasskeyChallenge,
    SessionInfo,
    Status,
)
from pgusers.integrations._common import (
    COOKIE_NAME,
    RECENT_AUTH,
    STATE_COOKIE,
    callback_params,
    cookie_flags,
    cookie_scope,
    external_refusal,
    proved_recently,
    recent_auth_window,
    refusal,
    state_cookie_flags,
    user_agent,
)

__all__ = [
    "PgUser",
    "PgUsers",
    "PgUsersBackend",
    "authorize",
    "begin_external_login",
    "begin_passkey_login",
    "begin_passkey_registration",
    "complete_login",
    "current_user",
    "finish_external_login",
    "finish_passkey_login",
    "finish_passkey_registration",
    "login",
    "logout",
    "require_admin",
    "require_permission",
    "require_recent_auth",
    "set_session_data",
]


class PgUser(BaseUser):
    """The user of a request's pgusers session."""

    def __init__(
        self,
        userid: int,
        username: str,
        session_data: Any,
        key: str,
        admin: bool | None = None,
        *,
        auth_methods: tuple[str, ...] = (),
        authenticated_at: float | None = None,
        roles: tuple[str, ...] = (),
        permissions: tuple[str, ...] = (),
    ) -> None:
        self.userid = userid
        self.username = username
        self.session_data = session_data
        """The session's data (``extra_data`` at login, or ``set_session_data``)."""
        self.key = key
        self.admin = admin
        """Whether the user is an administrator, as the request's check found it."""
        self.auth_methods = auth_methods
        """How the user proved who they are (``"password"``, ``"totp"``, ...)."""
        self.authenticated_at = authenticated_at
        """When they last did (a Unix time): see :func:`require_recent_auth`."""
        self.roles = roles
        """The roles the user holds everywhere (the request's one check)."""
        self.permissions = frozenset(permissions)
        """The permissions those roles grant: see :func:`require_permission`."""

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username

    @property
    def identity(self) -> str:
        return str(self.userid)

    def __repr__(self) -> str:
        return f"<PgUser {self.userid} {self.username!r}>"


class PgUsers:
    """One userspace for an application, and how its session cookie is kept.

    ``userspace`` is an :class:`~pgusers.AsyncUserSpace` or a function without
    arguments that returns one when awaited (opened on the first request, in the
    server's event loop). ``secure=False`` drops the cookie's ``Secure`` flag, for
    plain-HTTP development only.
    """

    def __init__(
        self,
        userspace: AsyncUserSpace | Opener,
        *,
        cookie_name: str = COOKIE_NAME,
        secure: bool = True,
        admin_scope: bool = False,
    ) -> None:
        self._spaces = PerLoop(userspace)
        self.cookie_name = cookie_name
        self.secure = secure
        self.admin_scope = admin_scope
        self.backend = PgUsersBackend(self)
        """The backend to give Starlette's ``AuthenticationMiddleware``."""

    async def userspace(self) -> AsyncUserSpace:
        """The userspace of the running event loop."""
        return await self._spaces.get()


class PgUsersBackend(AuthenticationBackend):
    """Authenticates a request by its pgusers session cookie: one ``check_session``
    (``check_key``'s statement, which also tells the admin flag and the proof)."""

    def __init__(self, pgusers: PgUsers) -> None:
        self.pgusers = pgusers

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        conn.scope["pgusers"] = self.pgusers
        key = conn.cookies.get(self.pgusers.cookie_name)
        if not key:
            return None
        space = await self.pgusers.userspace()
        checked = await space.check_session(key)
        if checked.status != OK or checked.userid is None or checked.username is None:
            return None
        scopes = ["authenticated"]
        if self.pgusers.admin_scope and checked.admin:
            scopes.append("admin")
        user = PgUser(
            checked.userid,
            checked.username,
            checked.extra_data,
            key,
            checked.admin,
            auth_methods=checked.auth_methods,
            roles=checked.roles,
            permissions=checked.permissions,
            authenticated_at=checked.authenticated_at,
        )
        return AuthCredentials(scopes), user


def _pgusers(request: HTTPConnection) -> PgUsers:
    found = request.scope.get("pgusers")
    if not isinstance(found, PgUsers):
        raise RuntimeError(
            "pgusers: add AuthenticationMiddleware with backend=PgUsers(...).backend "
            "to the application"
        )
    return found


async def current_user(request: Request) -> PgUser:
    """FastAPI dependency: the logged-in user, or 401."""
    _pgusers(request)
    user = request.user
    if not isinstance(user, PgUser):
        raise HTTPException(401, "not logged in")
    return user


async def require_admin(request: Request) -> PgUser:
    """FastAPI dependency: the logged-in user if an administrator (asked now, so a
    right just taken away counts), or 401 / 403."""
    user = await current_user(request)
    space = await _pgusers(request).userspace()
    user.admin = await space.is_admin(user.userid)
    if not user.admin:
        raise HTTPException(403, "for administrators only")
    return user


def require_permission(
    permission: str, *, org: Callable[[Request], int | str | None] | None = None
) -> Callable[[Request], Coroutine[Any, Any, PgUser]]:
    """FastAPI dependency factory: the logged-in user if a role of theirs grants
    ``permission`` (everywhere, as the request's one check found; or, with ``org``, a
    function of the request giving an organization's id or slug, there, asked now);
    else 401, or 403::

        @app.post("/invoices")
        async def new_invoice(user: PgUser = Depends(require_permission("invoice:write"))): ...
    """

    async def permitted(request: Request) -> PgUser:
        user = await current_user(request)
        where = None if org is None else org(request)
        if where is None:
            granted = permission in user.permissions
        else:
            space = await _pgusers(request).userspace()
            granted = await space.has_permission(user.userid, permission, org=where)
        if not granted:
            raise HTTPException(403, f"this needs the permission {permission!r}")
        return user

    return permitted


async def authorize(
    request: Request, conn: "psycopg.AsyncConnection[Any]", *, org: int | str | None = None
) -> SessionInfo:
    """Hand this request's user to the database for the application's own tables: on
    ``conn`` (the application's psycopg connection, inside its open transaction) set
    what row-level security policies read (see ``AsyncUserSpace.authorize``). A request
    without a live session raises 401, and nothing is set::

        async with pool.connection() as conn, conn.transaction():
            await authorize(request, conn)
            notes = await (await conn.execute("SELECT * FROM notes")).fetchall()
    """
    pgusers = _pgusers(request)
    key = request.cookies.get(pgusers.cookie_name, "")
    space = await pgusers.userspace()
    try:
        info = await space.authorize(conn, key, org=org)
    except BadCallError:  # a cookie too malformed to be a key
        info = SessionInfo(NOT_FOUND, None, None, None)
    if info.status != OK:
        raise HTTPException(401, "log in first")
    return info


def require_recent_auth(
    max_age: float = RECENT_AUTH,
) -> Callable[[Request], Coroutine[Any, Any, PgUser]]:
    """FastAPI dependency factory: the logged-in user if they proved who they are
    (logged in, or ``reauthenticate``) within ``max_age`` seconds; else 401, or 403
    with ``X-Reauthenticate: required`` for the client to ask for a proof::

        @app.post("/email")
        async def change_email(user: PgUser = Depends(require_recent_auth(300))): ...
    """
    window = recent_auth_window(max_age)

    async def recent(request: Request) -> PgUser:
        user = await current_user(request)
        if not proved_recently(user.authenticated_at, window):
            raise HTTPException(
                403, "prove who you are again", headers={"X-Reauthenticate": "required"}
            )
        return user

    return recent


async def login(
    request: Request,
    response: Response,
    username: str,
    password: str,
    *,
    extra_data: Any = None,
) -> LoginOutcome:
    """Log in with the client's address and user agent, and set the session cookie.

    A wrong name or password raises 401 (so does one too malformed to be anyone's),
    a disabled account 403, a throttled login 429 with ``Retry-After``. The session
    the request's cookie held, if any, ends when the new one replaces it. For a user
    with a second factor the outcome is ``MFA_REQUIRED`` and no cookie is set: ask
    for a code, then call :func:`complete_login` with the outcome's ``ticket``.
    """
    pgusers = _pgusers(request)
    space = await pgusers.userspace()
    try:
        outcome = await space.login(
            username,
            password,
            source=request.client.host if request.client else None,
            user_agent=user_agent(request.headers.get("user-agent")),
            extra_data=extra_data,
        )
    except BadCallError:
        if extra_data is not None:  # the caller's own data: its mistake, said as such
            raise
        outcome = REJECTED_LOGIN
    if outcome.status == MFA_REQUIRED:
        return outcome
    return await _opened(request, response, space, outcome)


async def complete_login(
    request: Request,
    response: Response,
    ticket: str,
    *,
    totp: str | None = None,
    recovery_code: str | None = None,
    passkey: str | dict[str, Any] | None = None,
) -> LoginOutcome:
    """Finish a login that answered ``MFA_REQUIRED`` with one answer (a code, a
    recovery code, or a passkey's answer to :func:`begin_passkey_login` with the
    ticket), and set the session cookie. A wrong or used answer raises 401 (it counts
    as a failed login), an unknown, used or expired ticket 401 too, a throttled one
    429."""
    pgusers = _pgusers(request)
    space = await pgusers.userspace()
    outcome = await space.complete_login(
        ticket,
        totp=totp,
        recovery_code=recovery_code,
        passkey=passkey,
        source=request.client.host if request.client else None,
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    if outcome.status in (NOT_FOUND, EXPIRED):
        raise HTTPException(401, "this sign-in has expired: start again")
    return await _opened(request, response, space, outcome)


async def begin_passkey_login(
    request: Request, username: str | None = None, *, ticket: str | None = None
) -> PasskeyChallenge:
    """The challenge of a passkey sign-in (no ``username``: any passkey the browser
    holds for the site), or of a login's second step (``ticket``): send its
    ``options`` to the page, and its ``challenge_id`` back with the answer. An
    unknown or expired ticket raises 401."""
    space = await _pgusers(request).userspace()
    begun = await space.begin_passkey_login(
        username, ticket=ticket, source=request.client.host if request.client else None
    )
    if begun.status != OK:
        raise HTTPException(401, "this sign-in has expired: start again")
    return begun


async def finish_passkey_login(
    request: Request,
    response: Response,
    challenge_id: str,
    credential: str | dict[str, Any],
    *,
    extra_data: Any = None,
) -> LoginOutcome:
    """Sign in with the browser's answer to :func:`begin_passkey_login`, and set the
    session cookie. A refused answer raises 401 (it counts as a failed login), so
    does a used or expired challenge; a throttled one 429, a disabled account 403."""
    space = await _pgusers(request).userspace()
    outcome = await space.finish_passkey_login(
        challenge_id,
        credential,
        source=request.client.host if request.client else None,
        user_agent=user_agent(request.headers.get("user-agent")),
        extra_data=extra_data,
    )
    if outcome.status in (NOT_FOUND, EXPIRED):
        raise HTTPException(401, "this sign-in has expired: start again")
    return await _opened(request, response, space, outcome)


async def begin_passkey_registration(
    request: Request, *, label: str | None = None
) -> PasskeyChallenge:
    """The challenge of registering a passkey for the signed-in user, who must have
    proved who they are in the last ten minutes (else 403, ``reauthenticate``)."""
    user = await current_user(request)
    space = await _pgusers(request).userspace()
    begun = await space.begin_passkey_registration(user.key, label=label)
    if begun.status == REJECTED:
        raise HTTPException(403, "prove who you are again first")
    if begun.status != OK:
        raise HTTPException(401, "this session has ended")
    return begun


async def finish_passkey_registration(
    request: Request, challenge_id: str, credential: str | dict[str, Any]
) -> str:
    """Register the passkey of the browser's answer for the signed-in user: its factor
    id. A refused answer raises 400 with the reason."""
    user = await current_user(request)
    space = await _pgusers(request).userspace()
    try:
        return await space.finish_passkey_registration(user.key, challenge_id, credential)
    except BadCallError as refused:
        raise HTTPException(400, str(refused)) from None


async def begin_external_login(
    request: Request, provider: str, redirect_uri: str, *, link: bool = False
) -> RedirectResponse:
    """The redirect to ``provider``'s sign-in page, with the sign-in's state in a
    cookie of its own; ``redirect_uri`` is the route that calls
    :func:`finish_external_login` (registered with the provider). With ``link``, the
    provider's account is linked to the signed-in user instead (who must have proved
    who they are in the last ten minutes, else 403). An unknown provider raises 400,
    one that does not answer 503."""
    pgusers = _pgusers(request)
    space = await pgusers.userspace()
    key = None
    if link:
        user = await current_user(request)
        if not proved_recently(user.authenticated_at, RECENT_AUTH):
            raise HTTPException(403, "prove who you are again first")
        key = user.key
    try:
        begun = await space.begin_external_login(
            provider,
            redirect_uri,
            link_to_key=key,
            source=request.client.host if request.client else None,
        )
    except BadCallError as refused:
        raise HTTPException(400, str(refused)) from None
    except ProviderUnavailableError as down:
        raise HTTPException(503, str(down)) from None
    response = RedirectResponse(begun.authorization_url, 303)
    response.set_cookie(STATE_COOKIE, begun.state, **state_cookie_flags(secure=pgusers.secure))
    return response


async def finish_external_login(
    request: Request, response: Response, *, extra_data: Any = None
) -> LoginOutcome:
    """At the callback route: finish the sign-in :func:`begin_external_login` began,
    and set the session cookie. ``MFA_REQUIRED`` is returned as it is (ask for a code,
    then :func:`complete_login` with the ticket); a link answers ``OK`` with no key
    (the session goes on). An account that cannot be linked safely raises 409, any
    other failure 401 (the event says why), a disabled account 403."""
    pgusers = _pgusers(request)
    space = await pgusers.userspace()
    state = request.cookies.get(STATE_COOKIE, "")
    response.delete_cookie(STATE_COOKIE, **cookie_scope(secure=pgusers.secure))
    try:
        outcome = await space.finish_external_login(
            state,
            callback_params(request.query_params),
            source=request.client.host if request.client else None,
            user_agent=user_agent(request.headers.get("user-agent")),
            extra_data=extra_data,
        )
    except (BadCallError, ProviderUnavailableError):
        outcome = LoginOutcome(REJECTED, "", False, None, 0.0)
    if outcome.status == MFA_REQUIRED or (outcome.status == OK and not outcome.key):
        return outcome
    refused = external_refusal(outcome)
    if refused is not None:
        raise HTTPException(refused.status, refused.message, refused.headers() or None)
    return await _opened(request, response, space, outcome)


async def _opened(
    request: Request, response: Response, space: AsyncUserSpace, outcome: LoginOutcome
) -> LoginOutcome:
    """Set the cookie of a login that opened a session; raise the refusal of one
    that did not."""
    pgusers = _pgusers(request)
    refused = refusal(outcome)
    if refused is not None:
        raise HTTPException(refused.status, refused.message, refused.headers() or None)
    replaced = request.cookies.get(pgusers.cookie_name)
    if replaced:
        await space.logout(replaced)
    response.set_cookie(
        pgusers.cookie_name, outcome.key, **cookie_flags(space.ttl, secure=pgusers.secure)
    )
    return outcome


async def logout(request: Request, response: Response) -> int:
    """End this request's session (1, or 0 if it had none) and clear the cookie."""
    pgusers = _pgusers(request)
    user = request.user
    ended = 0
    if isinstance(user, PgUser):
        ended = await (await pgusers.userspace()).logout(user.key)
    response.delete_cookie(pgusers.cookie_name, **cookie_scope(secure=pgusers.secure))
    return ended


async def set_session_data(request: Request, data: Any) -> Status:
    """Replace the data of this request's session (``OK``, ``NOT_FOUND``, ``EXPIRED``)."""
    user = await current_user(request)
    space = await _pgusers(request).userspace()
    status = await space.set_session_data(user.key, data)
    if status == OK:
        user.session_data = data
    return status
