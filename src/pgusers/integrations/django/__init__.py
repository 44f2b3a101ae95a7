"""pgusers for Django: ``authenticate()`` checks pgusers passwords, ``login()`` and
``logout()`` open and end pgusers sessions, and ``request.user`` comes from the
pgusers session cookie.

Settings::

    INSTALLED_APPS = [..., "django.contrib.auth", "django.contrib.contenttypes",
                      "pgusers.integrations.django"]
    AUTHENTICATION_BACKENDS = ["pgusers.integrations.django.PgUsersBackend"]
    MIDDLEWARE = [..., "pgusers.integrations.django.PgUsersMiddleware", ...]
    PGUSERS = {"SCHEMA": "pgusers"}  # also DSN, COOKIE_NAME, COOKIE_SECURE, OPTIONS

Without a ``DSN``, pgusers uses the database of Django's ``default`` connection
(when it is PostgreSQL), so its tables sit beside the application's and Django's
test runner gives both a test database.

The middleware takes the place of Django's ``AuthenticationMiddleware`` (put it
after it if both are listed): ``request.user`` is the user of the pgusers cookie, or
an anonymous user. With the app in ``INSTALLED_APPS`` that user is an instance of
:class:`pgusers.integrations.django.models.User`, an unmanaged model over pgusers'
users table that application models can reference with a ``ForeignKey`` and the
Django admin can list; without it, a :class:`PgUser`, which behaves the same for
``login_required``, ``user_passes_test`` and templates. Views log in with
``django.contrib.auth.login()`` after ``authenticate()`` and out with
``django.contrib.auth.logout()`` (these need Django's sessions, as always, and the
app installed); the middleware then sets or clears the cookie on the response. A
project without Django's sessions uses :func:`pgusers_login` and
:func:`pgusers_logout`, which set the cookie on the response they are given.
Sync and async views are both served: in an async stack the middleware checks the
cookie in a worker thread before the view runs.
"""

import threading
from collections.abc import Awaitable, Callable
from functools import cache, wraps
from typing import Any, Final, TypeVar

import psycopg
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.test.runner import DiscoverRunner
from django.utils.functional import SimpleLazyObject

from pgusers._errors import BadCallError, ProviderUnavailableError
from pgusers._results import (
    OK,
    REJECTED_LOGIN,
    LoginOutcome,
    PasskeyChallenge,
    SessionInfo,
    Status,
)
from pgusers._userspace import UserSpace
from pgusers.integrations._common import (
    RECENT_AUTH,
    STATE_COOKIE,
    callback_params,
    cookie_flags,
    proved_recently,
    recent_auth_window,
    state_cookie_flags,
    user_agent,
)
from pgusers.integrations.django._base import PgUserBehaviour, _setting

__all__ = [
    "AnonymousPgUser",
    "PgUser",
    "PgUserBehaviour",
    "PgUsersBackend",
    "PgUsersMiddleware",
    "PgUsersTestRunner",
    "close_userspaces",
    "pgusers_authorize",
    "pgusers_begin_external_login",
    "pgusers_begin_passkey_login",
    "pgusers_begin_passkey_registration",
    "pgusers_complete_login",
    "pgusers_finish_external_login",
    "pgusers_finish_passkey_login",
    "pgusers_finish_passkey_registration",
    "pgusers_login",
    "pgusers_logout",
    "pgusers_set_session_data",
    "require_recent_auth",
    "userspace",
]

V = TypeVar("V", bound=Callable[..., Any])

APP: Final = "pgusers.integrations.django"
"""The Django application that holds the :class:`~.models.User` model."""

_spaces: dict[tuple[str, str, tuple[tuple[str, Any], ...]], UserSpace] = {}
_lock = threading.Lock()


def _conninfo() -> str:
    """The ``DSN`` setting; without one, the database of Django's default connection
    when it is PostgreSQL, else the libpq defaults (the ``PG*`` variables)."""
    configured: str | None = _setting("DSN")
    if configured is not None:
        return configured
    if DEFAULT_DB_ALIAS not in settings.DATABASES:
        return ""
    database = connections[DEFAULT_DB_ALIAS].settings_dict
    if database.get("ENGINE") != "django.db.backends.postgresql":
        return ""
    parts = {
        "dbname": database.get("NAME"),
        "user": database.get("USER"),
        "password": database.get("PASSWORD"),
        "host": database.get("HOST"),
        "port": database.get("PORT"),
    }
    options = database.get("OPTIONS", {})
    parts.update({k: v for k, v in options.items() if isinstance(v, str | int)})
    return _joined(tuple(sorted((k, v) for k, v in parts.items() if v)))


@cache
def _joined(parts: tuple[tuple[str, Any], ...]) -> str:
    """A conninfo string of ``parts``, made once per distinct database settings (asked
    for on every request)."""
    return psycopg.conninfo.make_conninfo(**dict(parts))


def userspace() -> UserSpace:
    """The :class:`~pgusers.UserSpace` that ``settings.PGUSERS`` names (one per
    process and setting, opened on first use)."""
    options = _setting("OPTIONS")
    key = (_conninfo(), _setting("SCHEMA"), tuple(sorted(options.items(), key=repr)))
    with _lock:
        if key not in _spaces:
            _spaces[key] = UserSpace(conninfo=key[0], schema=key[1], **options)
        return _spaces[key]


def close_userspaces() -> None:
    """Close the userspaces :func:`userspace` opened (the next call opens anew)."""
    with _lock:
        spaces = list(_spaces.values())
        _spaces.clear()
    for space in spaces:
        space.close()


class PgUsersTestRunner(DiscoverRunner):
    """Django's test runner, closing pgusers' connections to the test database before
    Django drops it (``TEST_RUNNER = "pgusers.integrations.django.PgUsersTestRunner"``)."""

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        close_userspaces()
        super().teardown_databases(old_config, **kwargs)


class PgUser(PgUserBehaviour):
    """A pgusers user when the app is not installed. ``is_staff`` and
    ``is_superuser`` are the admin flag, asked of the database the first time either
    is read in a request."""

    def __init__(
        self,
        userid: int,
        username: str,
        *,
        session_data: Any = None,
        key: str | None = None,
        admin: bool | None = None,
    ) -> None:
        self.pk = self.id = self.userid = userid
        self.username = username
        self.session_data = session_data
        self.key = key
        self._admin = admin
        self._email: str | None = None

    @property
    def is_staff(self) -> bool:
        if self._admin is None:
            self._admin = userspace().is_admin(self.userid)
        return self._admin

    @property
    def email(self) -> str:
        if self._email is None:
            found = userspace().find_user(userid=self.userid)
            self._email = "" if found is None else found["email"]
        return self._email

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PgUser) and other.userid == self.userid

    def __hash__(self) -> int:
        return hash(self.userid)


class AnonymousPgUser:
    """Nobody logged in: what Django's ``AnonymousUser`` answers, without its models."""

    pk = id = userid = None
    username = ""
    email = ""
    session_data = None
    key = None
    is_active = is_staff = is_superuser = is_authenticated = False
    is_anonymous = True

    def get_username(self) -> str:
        return ""

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perms: Any, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    def __str__(self) -> str:
        return "AnonymousUser"


def _user(
    userid: int,
    username: str,
    *,
    session_data: Any = None,
    key: str | None = None,
    admin: bool | None = None,
) -> PgUserBehaviour:
    """The user object of this project: a model instance when the app is installed
    (its other fields load from the database when first read), else a PgUser."""
    if not django_apps.is_installed(APP):
        return PgUser(userid, username, session_data=session_data, key=key, admin=admin)
    from pgusers.integrations.django.models import User  # noqa: PLC0415 - after setup

    user = User.loaded(userid=userid, username=username, admin=admin)
    user.session_data = session_data
    user.key = key
    return user


def _client(request: HttpRequest | None) -> tuple[str | None, str | None]:
    if request is None:
        return None, None
    return request.META.get("REMOTE_ADDR"), user_agent(request.META.get("HTTP_USER_AGENT"))


class PgUsersBackend:
    """An authentication backend: ``authenticate(request, username=, password=)``
    checks the password with pgusers (throttling included). A user it returns
    carries a new session key; :func:`pgusers_login` puts it in the cookie (a
    session opened by a bare ``authenticate()`` is never used and expires)."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> PgUserBehaviour | None:
        if username is None or password is None:
            return None
        source, agent = _client(request)
        try:
            outcome = userspace().login(username, password, source=source, user_agent=agent)
        except BadCallError:  # a name or password that cannot be anyone's
            outcome = REJECTED_LOGIN
        if request is not None:
            request.pgusers_outcome = outcome
        if outcome.status != OK or outcome.userid is None:
            return None
        found = userspace().find_user(userid=outcome.userid)
        name = username if found is None else found["username"]
        return _user(outcome.userid, name, key=outcome.key, admin=outcome.admin)

    def get_user(self, user_id: int) -> PgUserBehaviour | None:
        """The user of ``user_id``; None for an unknown or a disabled one (as Django's
        own backend answers for an inactive user), so no right outlives disabling."""
        found = userspace().find_user(userid=user_id)
        if found is None or found["disabled"]:
            return None
        return _user(found["userid"], found["username"], admin=found["admin"])


def _user_of(request: HttpRequest) -> PgUserBehaviour | AnonymousPgUser:
    key = request.COOKIES.get(_setting("COOKIE_NAME"))
    if key:
        checked = userspace().check_session(key)
        if checked.status == OK and checked.userid is not None and checked.username:
            data = checked.extra_data
            user = _user(
                checked.userid, checked.username, session_data=data, key=key, admin=checked.admin
            )
            user.auth_methods = checked.auth_methods
            user.authenticated_at = checked.authenticated_at
            user.roles = checked.roles
            user.permissions = frozenset(checked.permissions)
            return user
    return AnonymousPgUser()


_COOKIE: Final = "_pgusers_cookie"
"""The request attribute through which ``login()`` and ``logout()`` tell the
middleware to set (a key) or clear ("") the cookie on the response."""


def _end_replaced(request: HttpRequest, key: str) -> None:
    """End the session the request's cookie held, which ``key``'s replaces (a user
    logging in over someone's session on a shared browser)."""
    replaced = request.COOKIES.get(_setting("COOKIE_NAME"))
    if replaced and replaced != key:
        userspace().logout(replaced)


def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    """After ``django.contrib.auth.login()``: the user's new session goes into the
    cookie, and the session the cookie held before ends."""
    if request is None or not isinstance(user, PgUserBehaviour) or user.key is None:
        return
    _end_replaced(request, user.key)
    setattr(request, _COOKIE, user.key)


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    """After ``django.contrib.auth.logout()``: the session ends and the cookie goes."""
    if request is None:
        return
    key = getattr(user, "key", None) or request.COOKIES.get(_setting("COOKIE_NAME"))
    if key:
        userspace().logout(key)
    setattr(request, _COOKIE, "")


user_logged_in.connect(_logged_in, dispatch_uid="pgusers-logged-in")
user_logged_out.connect(_logged_out, dispatch_uid="pgusers-logged-out")


def _set_cookie(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    change = getattr(request, _COOKIE, None)
    if change:
        flags = cookie_flags(userspace().ttl, secure=_setting("COOKIE_SECURE"))
        response.set_cookie(_setting("COOKIE_NAME"), change, **flags)
    elif change is not None:
        response.delete_cookie(_setting("COOKIE_NAME"), path="/", samesite="Lax")
    return response


class PgUsersMiddleware:
    """Sets ``request.user`` (and ``request.auser``) from the pgusers cookie: one
    ``check_session`` per request that reads it (lazily in sync views). Sets or clears the
    cookie when the view called ``django.contrib.auth.login()`` or ``logout()``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._serve_async(request)
        request.user = SimpleLazyObject(lambda: _user_of(request))

        def user() -> Any:
            return request.user

        request.auser = sync_to_async(user)
        return _set_cookie(request, self.get_response(request))

    async def _serve_async(self, request: HttpRequest) -> HttpResponseBase:
        user = await sync_to_async(_user_of, thread_sensitive=False)(request)
        request.user = user

        async def auser() -> PgUserBehaviour | AnonymousPgUser:
            return request.user

        request.auser = auser
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return _set_cookie(request, await response)


def pgusers_login(
    request: HttpRequest, response: HttpResponse, username: str, password: str
) -> PgUserBehaviour | None:
    """Log in through ``authenticate()``; on success set the session cookie on
    ``response`` and ``request.user``, and return the user. On failure return None:
    ``request.pgusers_outcome`` (a ``LoginOutcome``) then says why, with the seconds
    to wait when the login was throttled. The session the request's cookie held, if
    any, ends when the new one replaces it."""
    user = authenticate(request, username=username, password=password)
    if not isinstance(user, PgUserBehaviour) or user.key is None:
        return None
    _end_replaced(request, user.key)
    flags = cookie_flags(userspace().ttl, secure=_setting("COOKIE_SECURE"))
    response.set_cookie(_setting("COOKIE_NAME"), user.key, **flags)
    request.user = user
    return user


def pgusers_complete_login(
    request: HttpRequest,
    response: HttpResponse,
    ticket: str,
    *,
    totp: str | None = None,
    recovery_code: str | None = None,
    passkey: str | dict[str, Any] | None = None,
) -> PgUserBehaviour | None:
    """Finish a login that ``pgusers_login`` left at ``MFA_REQUIRED``
    (``request.pgusers_outcome.ticket``) with one answer (a code, a recovery code, or
    a passkey's answer to ``pgusers_begin_passkey_login`` with the ticket); on
    success set the session cookie on ``response`` and ``request.user``, and return
    the user. On failure return None, with ``request.pgusers_outcome`` saying why
    (``REJECTED``, ``THROTTLED``, ``EXPIRED`` or ``NOT_FOUND``)."""
    source, agent = _client(request)
    outcome = userspace().complete_login(
        ticket,
        totp=totp,
        recovery_code=recovery_code,
        passkey=passkey,
        source=source,
        user_agent=agent,
    )
    return _signed_in(request, response, outcome)


def pgusers_begin_passkey_login(
    request: HttpRequest, username: str | None = None, *, ticket: str | None = None
) -> PasskeyChallenge:
    """The challenge of a passkey sign-in (no ``username``: any passkey the browser
    holds for the site), or of a login's second step (``ticket``; ``NOT_FOUND`` for
    one that is not live): send its ``options`` to the page."""
    source, _ = _client(request)
    return userspace().begin_passkey_login(username, ticket=ticket, source=source)


def pgusers_finish_passkey_login(
    request: HttpRequest,
    response: HttpResponse,
    challenge_id: str,
    credential: str | dict[str, Any],
) -> PgUserBehaviour | None:
    """Sign in with the browser's answer; on success set the session cookie on
    ``response`` and ``request.user``, and return the user. On failure return None,
    with ``request.pgusers_outcome`` saying why; a malformed answer is ``REJECTED``."""
    source, agent = _client(request)
    try:
        outcome = userspace().finish_passkey_login(
            challenge_id, credential, source=source, user_agent=agent
        )
    except BadCallError:
        outcome = REJECTED_LOGIN
    return _signed_in(request, response, outcome)


def pgusers_begin_external_login(
    request: HttpRequest, provider: str, redirect_uri: str, *, link: bool = False
) -> HttpResponseRedirect:
    """The redirect to ``provider``'s sign-in page, with the sign-in's state in a
    cookie of its own; ``redirect_uri`` is the view that calls
    ``pgusers_finish_external_login`` (registered with the provider). With ``link``,
    the provider's account is linked to the logged-in user instead (``BadCallError``
    when they have not proved who they are in the last ten minutes). An unknown
    provider is a ``BadCallError``, one that does not answer a
    ``ProviderUnavailableError``."""
    source, _ = _client(request)
    key = _key_of(request) if link else None
    begun = userspace().begin_external_login(provider, redirect_uri, link_to_key=key, source=source)
    response = HttpResponseRedirect(begun.authorization_url, status=303)
    flags = state_cookie_flags(secure=_setting("COOKIE_SECURE"))
    response.set_cookie(STATE_COOKIE, begun.state, **flags)
    return response


def pgusers_finish_external_login(
    request: HttpRequest, response: HttpResponse
) -> PgUserBehaviour | None:
    """In the callback view: finish the sign-in ``pgusers_begin_external_login``
    began; on success set the session cookie on ``response`` and ``request.user``, and
    return the user. Otherwise return None, with ``request.pgusers_outcome`` saying
    why: ``MFA_REQUIRED`` (a ticket for ``pgusers_complete_login``), ``OK`` with no
    key (a link: the session goes on), ``LINK_REQUIRED``, ``DISABLED``, ``EXPIRED`` or
    ``REJECTED``."""
    source, agent = _client(request)
    state = request.COOKIES.get(STATE_COOKIE, "")
    response.delete_cookie(STATE_COOKIE, path="/", samesite="Lax")
    try:
        outcome = userspace().finish_external_login(
            state, callback_params(request.GET), source=source, user_agent=agent
        )
    except (BadCallError, ProviderUnavailableError):
        outcome = REJECTED_LOGIN
    if outcome.status == OK and not outcome.key:
        request.pgusers_outcome = outcome
        return None
    return _signed_in(request, response, outcome)


def pgusers_begin_passkey_registration(
    request: HttpRequest, *, label: str | None = None
) -> PasskeyChallenge:
    """The challenge of registering a passkey for the logged-in user: ``OK``, or
    ``REJECTED`` when they last proved who they are more than ten minutes ago."""
    return userspace().begin_passkey_registration(_key_of(request), label=label)


def pgusers_finish_passkey_registration(
    request: HttpRequest, challenge_id: str, credential: str | dict[str, Any]
) -> str:
    """Register the passkey of the browser's answer for the logged-in user: its factor
    id (``BadCallError`` says why an answer is refused)."""
    return userspace().finish_passkey_registration(_key_of(request), challenge_id, credential)


def pgusers_authorize(
    request: HttpRequest, conn: "psycopg.Connection[Any]", *, org: int | str | None = None
) -> SessionInfo:
    """Hand the logged-in user to the database for the application's own tables: on
    ``conn`` (a psycopg connection inside its open transaction, such as Django's own
    ``connection.connection`` within ``transaction.atomic()``) set what row-level
    security policies read (see ``UserSpace.authorize``). ``BadCallError`` for a
    request without a logged-in user; the answer's status says whether the session
    was still live (nothing is set otherwise)."""
    return userspace().authorize(conn, _key_of(request), org=org)


def _key_of(request: HttpRequest) -> str:
    key = getattr(request.user, "key", None)
    if key is None:
        raise BadCallError("this needs a logged-in request")
    return str(key)


def _signed_in(
    request: HttpRequest, response: HttpResponse, outcome: LoginOutcome
) -> PgUserBehaviour | None:
    """The user of a login that opened a session, with its cookie set on
    ``response``; None otherwise. ``request.pgusers_outcome`` holds the outcome."""
    request.pgusers_outcome = outcome
    if outcome.status != OK or outcome.userid is None:
        return None
    found = userspace().find_user(userid=outcome.userid)
    if found is None:
        return None
    user = _user(outcome.userid, found["username"], key=outcome.key, admin=outcome.admin)
    _end_replaced(request, outcome.key)
    flags = cookie_flags(userspace().ttl, secure=_setting("COOKIE_SECURE"))
    response.set_cookie(_setting("COOKIE_NAME"), outcome.key, **flags)
    request.user = user
    return user


def require_recent_auth(max_age: float = RECENT_AUTH) -> Callable[[V], V]:
    """A view decorator: the view runs for a logged-in user who proved who they are
    (logged in, or ``reauthenticate``) within ``max_age`` seconds; otherwise 401, or
    403 with ``X-Reauthenticate: required`` for the client to ask for a proof."""
    window = recent_auth_window(max_age)

    def decorate(view: V) -> V:
        @wraps(view)
        def recent(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            user = request.user
            if not isinstance(user, PgUserBehaviour):
                return HttpResponse("log in first", status=401)
            if not proved_recently(user.authenticated_at, window):
                refused = HttpResponse("prove who you are again", status=403)
                refused["X-Reauthenticate"] = "required"
                return refused
            return view(request, *args, **kwargs)

        return recent  # type: ignore[return-value]

    return decorate


def pgusers_logout(request: HttpRequest, response: HttpResponse) -> int:
    """End this request's session (1, or 0 if it had none) and clear the cookie."""
    user = request.user
    ended = 0
    if isinstance(user, PgUserBehaviour) and user.key is not None:
        ended = userspace().logout(user.key)
    response.delete_cookie(_setting("COOKIE_NAME"), path="/", samesite="Lax")
    request.user = AnonymousPgUser()
    return ended


def pgusers_set_session_data(request: HttpRequest, data: Any) -> Status:
    """Replace the data of this request's session (``OK``, ``NOT_FOUND``, ``EXPIRED``)."""
    key = getattr(request.user, "key", None)
    if key is None:
        raise BadCallError("pgusers_set_session_data needs a logged-in request")
    status = userspace().set_session_data(key, data)
    if status == OK:
        request.user.session_data = data
    return status
