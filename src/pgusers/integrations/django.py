"""pgusers for Django: ``authenticate()`` checks pgusers passwords, and
``request.user`` comes from the pgusers session cookie.

Settings::

    PGUSERS = {"DSN": "dbname=app", "SCHEMA": "pgusers"}  # also COOKIE_NAME,
                                                          # COOKIE_SECURE, OPTIONS
    AUTHENTICATION_BACKENDS = ["pgusers.integrations.django.PgUsersBackend"]
    MIDDLEWARE = [..., "pgusers.integrations.django.PgUsersMiddleware", ...]

The middleware takes the place of Django's ``AuthenticationMiddleware`` (put it
after it if both are listed): ``request.user`` is a :class:`PgUser`, which behaves
like Django's user for ``login_required``, ``user_passes_test`` and templates, or
an anonymous user. No table of Django's is used (``login_required`` still needs
``django.contrib.auth`` and ``django.contrib.contenttypes`` in ``INSTALLED_APPS``,
as in any project). Views log in with :func:`pgusers_login` and out with
:func:`pgusers_logout`. Sync and async views are both served: in an async stack
the middleware checks the cookie in a worker thread before the view runs.
"""

import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.functional import SimpleLazyObject

from pgusers._errors import BadCallError
from pgusers._results import OK, REJECTED_LOGIN, Status
from pgusers._userspace import UserSpace
from pgusers.integrations._common import COOKIE_NAME, cookie_flags, user_agent

__all__ = [
    "AnonymousPgUser",
    "PgUser",
    "PgUsersBackend",
    "PgUsersMiddleware",
    "pgusers_login",
    "pgusers_logout",
    "pgusers_set_session_data",
    "userspace",
]

DEFAULTS: Final[dict[str, Any]] = {
    "DSN": "",
    "SCHEMA": "pgusers",
    "COOKIE_NAME": COOKIE_NAME,
    "COOKIE_SECURE": True,
    "OPTIONS": {},
}

_spaces: dict[tuple[str, str, tuple[tuple[str, Any], ...]], UserSpace] = {}
_lock = threading.Lock()


def _setting(name: str) -> Any:
    configured = getattr(settings, "PGUSERS", {})
    return configured.get(name, DEFAULTS[name])


def userspace() -> UserSpace:
    """The :class:`~pgusers.UserSpace` that ``settings.PGUSERS`` names (one per
    process and setting, opened on first use)."""
    options = _setting("OPTIONS")
    key = (_setting("DSN"), _setting("SCHEMA"), tuple(sorted(options.items(), key=repr)))
    with _lock:
        if key not in _spaces:
            _spaces[key] = UserSpace(conninfo=key[0], schema=key[1], **options)
        return _spaces[key]


class PgUser:
    """A pgusers user, with the attributes and methods Django's code asks of a user.
    ``is_staff`` and ``is_superuser`` are the admin flag, asked of the database the
    first time either is read in a request."""

    is_active = True
    is_authenticated = True
    is_anonymous = False

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

    is_superuser = is_staff

    @property
    def email(self) -> str:
        if self._email is None:
            found = userspace().find_user(userid=self.userid)
            self._email = "" if found is None else found["email"]
        return self._email

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Administrators have every permission; pgusers knows no others."""
        return self.is_superuser

    def has_perms(self, perms: Any, obj: object = None) -> bool:
        return self.is_superuser

    def has_module_perms(self, app_label: str) -> bool:
        return self.is_superuser

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    def __str__(self) -> str:
        return self.username

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
    ) -> PgUser | None:
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
        return PgUser(outcome.userid, name, key=outcome.key, admin=outcome.admin)

    def get_user(self, user_id: int) -> PgUser | None:
        """The user of ``user_id``; None for an unknown or a disabled one (as Django's
        own backend answers for an inactive user), so no right outlives disabling."""
        found = userspace().find_user(userid=user_id)
        if found is None or found["disabled"]:
            return None
        return PgUser(found["userid"], found["username"], admin=found["admin"])


def _user_of(request: HttpRequest) -> PgUser | AnonymousPgUser:
    key = request.COOKIES.get(_setting("COOKIE_NAME"))
    if key:
        checked = userspace().check_key(key)
        if checked.status == OK and checked.userid is not None and checked.username:
            data = checked.extra_data
            return PgUser(checked.userid, checked.username, session_data=data, key=key)
    return AnonymousPgUser()


class PgUsersMiddleware:
    """Sets ``request.user`` (and ``request.auser``) from the pgusers cookie: one
    ``check_key`` per request that reads it (lazily in sync views)."""

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
        return self.get_response(request)

    async def _serve_async(self, request: HttpRequest) -> HttpResponseBase:
        user = await sync_to_async(_user_of, thread_sensitive=False)(request)
        request.user = user

        async def auser() -> PgUser | AnonymousPgUser:
            return user

        request.auser = auser
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return await response


def pgusers_login(
    request: HttpRequest, response: HttpResponse, username: str, password: str
) -> PgUser | None:
    """Log in through ``authenticate()``; on success set the session cookie on
    ``response`` and ``request.user``, and return the user. On failure return None:
    ``request.pgusers_outcome`` (a ``LoginOutcome``) then says why, with the seconds
    to wait when the login was throttled. The session the request's cookie held, if
    any, ends when the new one replaces it."""
    user = authenticate(request, username=username, password=password)
    if not isinstance(user, PgUser) or user.key is None:
        return None
    replaced = request.COOKIES.get(_setting("COOKIE_NAME"))
    if replaced:
        userspace()._end_key_session(replaced)
    flags = cookie_flags(userspace().ttl, secure=_setting("COOKIE_SECURE"))
    response.set_cookie(_setting("COOKIE_NAME"), user.key, **flags)
    request.user = user
    return user


def pgusers_logout(request: HttpRequest, response: HttpResponse) -> int:
    """End this request's session (1, or 0 if it had none) and clear the cookie."""
    user = request.user
    ended = 0
    if isinstance(user, PgUser) and user.key is not None:
        ended = userspace()._end_key_session(user.key)
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
