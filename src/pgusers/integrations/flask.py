"""pgusers for Flask, through Flask-Login.

::

    from flask import Flask
    from flask_login import current_user, login_required
    from pgusers.integrations.flask import PgUsers

    app = Flask(__name__)
    app.config["PGUSERS_DSN"] = "dbname=app"
    pgusers_ext = PgUsers(app)

``current_user`` is the user of the pgusers session cookie (Flask-Login's
``request_loader``), so ``login_required`` and ``current_user`` work as Flask-Login
documents; Flask's own session and ``SECRET_KEY`` are not needed. Configuration:
``PGUSERS_DSN``, ``PGUSERS_SCHEMA`` (``"pgusers"``), ``PGUSERS_COOKIE_NAME``
(``"pgusers_session"``), ``PGUSERS_COOKIE_SECURE`` (true), ``PGUSERS_OPTIONS``
(more keyword arguments for :class:`~pgusers.UserSpace`).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import psycopg
from flask import Flask, Response, abort, after_this_request, current_app, request
from flask_login import LoginManager, UserMixin

from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers._results import (
    OK,
    REJECTED,
    REJECTED_LOGIN,
    LoginOutcome,
    PasskeyChallenge,
    SessionInfo,
    Status,
)
from pgusers._userspace import UserSpace
from pgusers.integrations._common import (
    COOKIE_NAME,
    RECENT_AUTH,
    STATE_COOKIE,
    callback_params,
    cookie_flags,
    cookie_scope,
    proved_recently,
    recent_auth_window,
    state_cookie_flags,
    user_agent,
)

__all__ = ["PgUser", "PgUsers", "require_permission", "require_recent_auth"]

F = TypeVar("F", bound=Callable[..., Any])


class PgUser(UserMixin):  # type: ignore[misc]  # Flask-Login is untyped
    """The user of a request's pgusers session, as Flask-Login expects one."""

    def __init__(
        self,
        userid: int,
        username: str,
        session_data: Any,
        key: str,
        *,
        admin: bool | None = None,
        auth_methods: tuple[str, ...] = (),
        authenticated_at: float | None = None,
        roles: tuple[str, ...] = (),
        permissions: tuple[str, ...] = (),
    ) -> None:
        self.userid = userid
        self.username = username
        self.session_data = session_data
        self.key = key
        self._admin = admin
        self.auth_methods = auth_methods
        """How the user proved who they are (``"password"``, ``"totp"``, ...)."""
        self.authenticated_at = authenticated_at
        """When they last did (a Unix time): see :func:`require_recent_auth`."""
        self.roles = roles
        """The roles the user holds everywhere (the request's one check)."""
        self.permissions = frozenset(permissions)
        """The permissions those roles grant: see :func:`require_permission`."""

    def get_id(self) -> str:
        return str(self.userid)

    @property
    def is_admin(self) -> bool:
        """The admin flag, as the request's check found it (or asked of the database
        the first time it is read)."""
        if self._admin is None:
            self._admin = _extension().userspace.is_admin(self.userid)
        return self._admin

    def __repr__(self) -> str:
        return f"<PgUser {self.userid} {self.username!r}>"


def require_recent_auth(max_age: float = RECENT_AUTH) -> Callable[[F], F]:
    """A view decorator: the view runs for a logged-in user who proved who they are
    (logged in, or ``reauthenticate``) within ``max_age`` seconds; otherwise 401, or
    403 with ``X-Reauthenticate: required`` for the client to ask for a proof::

        @app.post("/email")
        @require_recent_auth(300)
        def change_email(): ...
    """
    window = recent_auth_window(max_age)

    def decorate(view: F) -> F:
        @wraps(view)
        def recent(*args: Any, **kwargs: Any) -> Any:
            user = _extension()._user_of_request(request)
            if user is None:
                abort(401)
            if not proved_recently(user.authenticated_at, window):
                refused = Response("prove who you are again", 403)
                refused.headers["X-Reauthenticate"] = "required"
                abort(refused)
            return view(*args, **kwargs)

        return recent  # type: ignore[return-value]

    return decorate


def require_permission(
    permission: str, *, org: Callable[..., int | str | None] | None = None
) -> Callable[[F], F]:
    """A view decorator: the view runs for a logged-in user whose roles grant
    ``permission`` (everywhere; or, with ``org``, a function of the view's arguments
    giving an organization's id or slug, there, asked now); otherwise 401 or 403::

        @app.post("/invoices")
        @require_permission("invoice:write")
        def new_invoice(): ...
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def permitted(*args: Any, **kwargs: Any) -> Any:
            extension = _extension()
            user = extension._user_of_request(request)
            if user is None:
                abort(401)
            where = None if org is None else org(*args, **kwargs)
            if where is None:
                granted = permission in user.permissions
            else:
                granted = extension.userspace.has_permission(user.userid, permission, org=where)
            if not granted:
                abort(403)
            return view(*args, **kwargs)

        return permitted  # type: ignore[return-value]

    return decorate


def _extension() -> "PgUsers":
    found: PgUsers = current_app.extensions["pgusers"]
    return found


class PgUsers:
    """The extension: one userspace per application, and Flask-Login set up to find
    the user by the pgusers cookie (a ``LoginManager`` is made unless given)."""

    def __init__(self, app: Flask | None = None, login_manager: LoginManager | None = None) -> None:
        self.login_manager = login_manager or LoginManager()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.config.setdefault("PGUSERS_DSN", "")
        app.config.setdefault("PGUSERS_SCHEMA", "pgusers")
        app.config.setdefault("PGUSERS_COOKIE_NAME", COOKIE_NAME)
        app.config.setdefault("PGUSERS_COOKIE_SECURE", True)
        app.config.setdefault("PGUSERS_OPTIONS", {})
        app.extensions["pgusers"] = self
        self.login_manager.init_app(app)
        self.login_manager.request_loader(self._user_of_request)
        self.login_manager.user_loader(self._user_by_id)

    @property
    def userspace(self) -> UserSpace:
        """The current application's :class:`~pgusers.UserSpace`, opened on first use."""
        extensions = current_app.extensions
        if "pgusers.userspace" not in extensions:
            config = current_app.config
            extensions["pgusers.userspace"] = UserSpace(
                conninfo=config["PGUSERS_DSN"],
                schema=config["PGUSERS_SCHEMA"],
                **config["PGUSERS_OPTIONS"],
            )
        space: UserSpace = extensions["pgusers.userspace"]
        return space

    def _user_of_request(self, incoming: Any) -> PgUser | None:
        key = incoming.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"])
        if not key:
            return None
        checked = self.userspace.check_session(key)
        if checked.status != OK or checked.userid is None or checked.username is None:
            return None
        return PgUser(
            checked.userid,
            checked.username,
            checked.extra_data,
            key,
            admin=checked.admin,
            auth_methods=checked.auth_methods,
            roles=checked.roles,
            permissions=checked.permissions,
            authenticated_at=checked.authenticated_at,
        )

    def _user_by_id(self, user_id: str) -> PgUser | None:
        # Only the cookie's own user: an id in Flask's session alone opens nothing.
        user = self._user_of_request(request)
        return user if user is not None and user.get_id() == user_id else None

    def login(self, username: str, password: str, *, extra_data: Any = None) -> LoginOutcome:
        """Log in with the client's address and user agent; on success the response
        sets the session cookie (``current_user`` follows from the next request).
        Returns the ``LoginOutcome``: ``status`` says ``OK``, ``REJECTED``,
        ``DISABLED``, ``THROTTLED`` (with ``retry_after`` seconds) or
        ``MFA_REQUIRED`` (ask for a code, then :meth:`complete_login` with the
        ``ticket``); a name or password too malformed to be anyone's is ``REJECTED``
        too. The session the request's cookie held, if any, ends when the new one
        replaces it."""
        return self._signed_in(
            lambda client: self.userspace.login(username, password, **client), extra_data
        )

    def complete_login(
        self,
        ticket: str,
        *,
        totp: str | None = None,
        recovery_code: str | None = None,
        passkey: str | dict[str, Any] | None = None,
    ) -> LoginOutcome:
        """Finish a login that answered ``MFA_REQUIRED`` with one answer (a code, a
        recovery code, or a passkey's answer to :meth:`begin_passkey_login` with the
        ticket); on success the response sets the session cookie. Returns the
        ``LoginOutcome``: ``OK``, ``REJECTED`` (a wrong or used answer),
        ``THROTTLED``, ``EXPIRED`` or ``NOT_FOUND`` (start the login again)."""
        outcome = self.userspace.complete_login(
            ticket,
            totp=totp,
            recovery_code=recovery_code,
            passkey=passkey,
            source=request.remote_addr,
            user_agent=user_agent(request.headers.get("User-Agent")),
        )
        self._set_cookie_of(outcome)
        return outcome

    def begin_passkey_login(
        self, username: str | None = None, *, ticket: str | None = None
    ) -> PasskeyChallenge:
        """The challenge of a passkey sign-in (no ``username``: any passkey the browser
        holds for the site), or of a login's second step (``ticket``; ``NOT_FOUND``
        for one that is not live): send its ``options`` to the page."""
        return self.userspace.begin_passkey_login(
            username, ticket=ticket, source=request.remote_addr
        )

    def finish_passkey_login(
        self, challenge_id: str, credential: str | dict[str, Any], *, extra_data: Any = None
    ) -> LoginOutcome:
        """Sign in with the browser's answer; on success the response sets the session
        cookie. Returns the ``LoginOutcome`` (``OK``, ``REJECTED``, ``EXPIRED``,
        ``NOT_FOUND``, ``THROTTLED``, ``DISABLED``); a malformed answer is
        ``REJECTED``."""
        return self._signed_in(
            lambda client: self.userspace.finish_passkey_login(challenge_id, credential, **client),
            extra_data,
        )

    def _signed_in(
        self, attempt: Callable[[dict[str, Any]], LoginOutcome], extra_data: Any
    ) -> LoginOutcome:
        """Run a login ``attempt`` with the client's address, user agent and the new
        session's ``extra_data``, and have the response set the cookie of a session it
        opened. Input too malformed to be anyone's is ``REJECTED``; a malformed
        ``extra_data`` is the caller's own mistake, raised as such."""
        client = {
            "source": request.remote_addr,
            "user_agent": user_agent(request.headers.get("User-Agent")),
            "extra_data": extra_data,
        }
        try:
            outcome = attempt(client)
        except BadCallError:
            if extra_data is not None:
                raise
            return REJECTED_LOGIN
        self._set_cookie_of(outcome)
        return outcome

    def begin_external_login(
        self, provider: str, redirect_uri: str, *, link: bool = False
    ) -> Response:
        """The redirect to ``provider``'s sign-in page, with the sign-in's state in a
        cookie of its own; ``redirect_uri`` is the view that calls
        :meth:`finish_external_login` (registered with the provider). With ``link``,
        the provider's account is linked to the signed-in user instead (``BadCallError``
        when they have not proved who they are in the last ten minutes). An unknown
        provider is a ``BadCallError``, one that does not answer a
        ``ProviderUnavailableError``."""
        key = None
        if link:
            key = request.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"], "")
        begun = self.userspace.begin_external_login(
            provider, redirect_uri, link_to_key=key, source=request.remote_addr
        )
        response = Response(status=303, headers={"Location": begun.authorization_url})
        secure = current_app.config["PGUSERS_COOKIE_SECURE"]
        response.set_cookie(STATE_COOKIE, begun.state, **state_cookie_flags(secure=secure))
        return response

    def finish_external_login(self, *, extra_data: Any = None) -> LoginOutcome:
        """In the callback view: finish the sign-in :meth:`begin_external_login` began;
        on success the response sets the session cookie. Returns the ``LoginOutcome``:
        ``OK`` (with no key for a link: the session goes on), ``MFA_REQUIRED`` (ask for
        a code, then :meth:`complete_login`), ``LINK_REQUIRED`` (sign in another way,
        then link), ``DISABLED``, ``EXPIRED`` or ``REJECTED`` (the event says why)."""
        state = request.cookies.get(STATE_COOKIE, "")
        secure = current_app.config["PGUSERS_COOKIE_SECURE"]

        @after_this_request
        def clear_state(response: Response) -> Response:
            response.delete_cookie(STATE_COOKIE, **cookie_scope(secure=secure))
            return response

        def attempt(client: dict[str, Any]) -> LoginOutcome:
            try:
                return self.userspace.finish_external_login(
                    state, callback_params(request.args), **client
                )
            except ProviderUnavailableError:
                return LoginOutcome(REJECTED, "", False, None, 0.0)

        return self._signed_in(attempt, extra_data)

    def begin_passkey_registration(self, *, label: str | None = None) -> PasskeyChallenge:
        """The challenge of registering a passkey for the signed-in user: ``OK``, or
        ``REJECTED`` when they last proved who they are more than ten minutes ago
        (``NOT_FOUND`` without a live session)."""
        key = request.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"], "")
        return self.userspace.begin_passkey_registration(key, label=label)

    def finish_passkey_registration(
        self, challenge_id: str, credential: str | dict[str, Any]
    ) -> str:
        """Register the passkey of the browser's answer for the signed-in user: its
        factor id (``BadCallError`` says why an answer is refused)."""
        key = request.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"], "")
        return self.userspace.finish_passkey_registration(key, challenge_id, credential)

    def authorize(
        self, conn: "psycopg.Connection[Any]", *, org: int | str | None = None
    ) -> SessionInfo:
        """Hand this request's user to the database for the application's own tables:
        on ``conn`` (the application's psycopg connection, inside its open transaction)
        set what row-level security policies read (see ``UserSpace.authorize``). A
        request without a live session is answered 401, and nothing is set."""
        key = request.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"], "")
        try:
            info = self.userspace.authorize(conn, key, org=org)
        except BadCallError:  # a cookie too malformed to be a key
            abort(401)
        if info.status != OK:
            abort(401)
        return info

    def _set_cookie_of(self, outcome: LoginOutcome) -> None:
        """Have the response set the cookie of a login that opened a session."""
        space = self.userspace
        if outcome.status == OK and outcome.key:  # a link opens no session of its own
            config = current_app.config
            replaced = request.cookies.get(config["PGUSERS_COOKIE_NAME"])
            if replaced:
                space.logout(replaced)
            flags = cookie_flags(space.ttl, secure=config["PGUSERS_COOKIE_SECURE"])

            @after_this_request
            def set_cookie(response: Response) -> Response:
                response.set_cookie(config["PGUSERS_COOKIE_NAME"], outcome.key, **flags)
                return response

    def logout(self) -> int:
        """End this request's session (1, or 0 if it had none); the response clears
        the cookie."""
        user = self._user_of_request(request)
        ended = 0
        if user is not None:
            ended = self.userspace.logout(user.key)
        config = current_app.config

        @after_this_request
        def clear_cookie(response: Response) -> Response:
            scope = cookie_scope(secure=config["PGUSERS_COOKIE_SECURE"])
            response.delete_cookie(config["PGUSERS_COOKIE_NAME"], **scope)
            return response

        return ended

    def set_session_data(self, data: Any) -> Status:
        """Replace the data of this request's session (``OK``, ``NOT_FOUND``, ``EXPIRED``)."""
        key = request.cookies.get(current_app.config["PGUSERS_COOKIE_NAME"], "")
        return self.userspace.set_session_data(key, data)
