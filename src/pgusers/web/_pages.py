"""What the service's two sets of pages share: the console's (``/console``, for
administrators) and the account pages (``/account``, for every user).

Each set is an :class:`Area`: its own session cookie, its own CSRF seed cookie, and
the paths it may send a browser back to. Every form carries a CSRF token (an HMAC of
the area's session key, or before there is one of a random seed cookie, under the
application's secret) and must come from the same origin. The pages load no script.
"""

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pgusers._errors import BadCallError
from pgusers._results import REJECTED, LoginOutcome, PasskeyChallenge
from pgusers.integrations._common import user_agent
from pgusers.web._service import client_address, service_of

HERE: Final = Path(__file__).parent


@dataclass(frozen=True)
class Area:
    """One set of pages: where it lives, its cookies, the page it falls back to, and
    what its pages say after a change, by the code a redirect carries (a link cannot
    make a page say anything else)."""

    prefix: str
    session_cookie: str
    csrf_cookie: str
    home: str
    done: Mapping[str, str]

    def path(self, path: str) -> str:
        """A path inside this area to go back to (never another site, never a header
        the server cannot send), or its home page."""
        inside = path.startswith(self.prefix + "/") and SAFE_PATH.fullmatch(path)
        return path if inside else self.home


@dataclass(frozen=True)
class Visitor:
    """The signed-in user a request of the pages comes from: the session's key, the
    actor its changes run as in the audit trail, its address, and (on the account
    pages) when the user last proved who they are."""

    userid: int
    username: str
    key: str
    actor: str
    source: str | None
    authenticated_at: float | None = None


SAFE_PATH: Final = re.compile(r"/[A-Za-z0-9/_.~%?=&+-]*")
"""A path made only of characters a Location header carries as they are (no line
break, no character outside ASCII, no backslash)."""


def when(moment: float | None) -> str:
    """A Unix time as people read it, in UTC."""
    return "" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def plain(value: Any) -> Any:
    """A number as people write it: ``900``, not ``900.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


DURATION_UNITS: Final = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: float | None) -> str:
    """Seconds as people say them: ``15 min``, ``1 d 2 h``, ``90 s`` → ``1 min 30 s``."""
    if seconds is None:
        return ""
    left, parts = round(seconds), []
    for unit, size in DURATION_UNITS:
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2]) or "0 s"


TIME_DETAILS: Final = frozenset({"before", "until", "expires_at", "created_at"})
"""Event details that hold a Unix time, shown as dates."""


def readable_detail(detail: Any) -> str:
    """An event's detail as one line of JSON, with its times as dates and its whole
    numbers without a decimal point."""
    if not isinstance(detail, dict):
        return json.dumps(detail, ensure_ascii=False, default=str)
    shown = {
        name: when(value)
        if name in TIME_DETAILS and isinstance(value, int | float)
        else plain(value)
        for name, value in detail.items()
    }
    return json.dumps(shown, ensure_ascii=False, default=str)


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = when
templates.env.filters["plain"] = plain
templates.env.filters["duration"] = duration
templates.env.filters["detail"] = readable_detail


class Redirect(Exception):  # noqa: N818 - an answer, not a failure
    """Answer with a redirection (to the login page, or to confirm a password)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class RefusedError(Exception):
    """Answer with an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TwoCookiesError(RefusedError):
    """A request with two cookies of one name."""


class Answer(Exception):  # noqa: N818 - an answer, not a failure
    """Answer with this page instead of going on (a question before a change)."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered")
        self.response = response


def secure(request: Request) -> bool:
    """Cookies are ``Secure`` unless the pages are served over plain HTTP on a
    loopback address (a laptop); plain HTTP elsewhere gets no working login."""
    if request.url.scheme == "https":
        return True
    server = request.scope.get("server")
    try:
        return not (server and ipaddress.ip_address(server[0]).is_loopback)
    except ValueError:
        return server is None or server[0] != "localhost"


def cookie_name(request: Request, name: str) -> str:
    """A cookie's name: over HTTPS with the ``__Host-`` prefix, which the browser
    keeps only as set by this very host (Secure, path /, no Domain), so that a
    sibling subdomain cannot plant a cookie of that name for it."""
    return f"__Host-{name}" if request.url.scheme == "https" else name


def cookie_path(request: Request, area: Area) -> str:
    return "/" if request.url.scheme == "https" else area.prefix


def set_cookie(request: Request, area: Area, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        cookie_name(request, name),
        value,
        path=cookie_path(request, area),
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def delete_cookie(request: Request, area: Area, response: Response, name: str) -> None:
    response.delete_cookie(cookie_name(request, name), path=cookie_path(request, area))


def cookie(request: Request, name: str) -> str | None:
    """The cookie ``name`` of the request. Two cookies of one name (one set by this
    host, one planted for a parent domain) are refused: which one a server reads is
    not for the sender to choose."""
    wanted = cookie_name(request, name)
    found: list[str] = []
    for header, value in request.scope["headers"]:
        if header == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, _, text = pair.strip().partition("=")
                if key == wanted:
                    found.append(text)
    if len(found) > 1:
        raise TwoCookiesError(
            400, "This request carries two cookies of one name. Clear this site's cookies."
        )
    return found[0] if found else None


def csrf_token(request: Request, area: Area, seed: str | None = None) -> str | None:
    """The CSRF token this request's forms carry: derived from its session when it
    has one (which no other site can read or set), otherwise from the seed cookie
    (the login forms, before there is a session)."""
    key = cookie(request, area.session_cookie)
    basis = f"{area.prefix}:session:{key}" if key else (f"seed:{seed}" if seed else None)
    if basis is None:
        return None
    secret = service_of(request).secret
    return hmac.new(secret, basis.encode(), hashlib.sha256).hexdigest()


def page(
    request: Request, area: Area, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """Render a page, with a CSRF token for its forms (and the cookie it derives from);
    the page that refuses two cookies of one name has none."""
    try:
        given_seed = cookie(request, area.csrf_cookie)
        seed: str | None = given_seed or secrets.token_urlsafe(32)
        token = csrf_token(request, area, seed)
    except TwoCookiesError:
        given_seed = seed = token = None
    said = area.done.get(request.query_params.get("done", ""))
    response = templates.TemplateResponse(
        request,
        template,
        {"csrf": token, "message": said, "area": area.prefix, **context},
        status_code=status,
    )
    if seed is not None and given_seed != seed:
        set_cookie(request, area, response, area.csrf_cookie, seed)
    return response


SAFE_FETCH_SITES: Final = frozenset({"same-origin", "none"})


def same_origin(request: Request) -> bool:
    """Whether a write comes from the service's own pages, by what the browser says
    of it: ``Sec-Fetch-Site`` (same-origin, or typed by the user) and ``Origin`` (this
    host; the ``no-referrer`` policy makes browsers send ``null`` for it on the
    pages' own forms, which says nothing). A browser that sends neither is judged by
    the CSRF token alone."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in SAFE_FETCH_SITES:
        return False
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return urlsplit(origin).netloc == request.headers.get("host", "")
    return True


async def form_of(request: Request, area: Area) -> dict[str, str]:
    """The posted form, after its origin and CSRF token are checked."""
    if not same_origin(request):
        raise RefusedError(403, "This form did not come from this site.")
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    expected = csrf_token(request, area, cookie(request, area.csrf_cookie))
    given = fields.get("csrf", "")
    if expected is None or not hmac.compare_digest(given, expected):
        raise RefusedError(403, "This form has expired or did not come from here. Reload it.")
    return fields


def back_to(area: Area, path: str, done: str) -> RedirectResponse:
    """Back to a page of ``area``, which then says its message for code ``done``."""
    return RedirectResponse(f"{area.path(path)}?done={quote(done)}", 303)


def sentence(message: str) -> str:
    """A message of the API's (``wrong username or password``) as a page says it."""
    return message[:1].upper() + message[1:] + "."


async def passkey_challenge(request: Request) -> PasskeyChallenge | None:
    """A challenge for a sign-in page's passkey button, or None where passkeys are not
    set up (no relying party, or no WebAuthn library)."""
    try:
        space = await service_of(request).space()
        return await space.begin_passkey_login(source=client_address(request))
    except BadCallError:
        return None


def is_totp_code(code: str) -> bool:
    """Whether a code typed on a form is an authenticator app's (digits) rather than a
    recovery code."""
    return code.replace(" ", "").isdigit()


async def answer_second_step(request: Request, form: dict[str, str]) -> LoginOutcome:
    """Answer a login's ticket with what its second-step form sent: a passkey's answer
    (``credential``), else a ``code``: an authenticator app's (digits) or a recovery
    code. A malformed answer is a wrong one."""
    ticket, code = form.get("ticket", ""), form.get("code", "").strip()
    passkey = form.get("credential") or None
    totp = is_totp_code(code)
    try:
        space = await service_of(request).space()
        return await space.complete_login(
            ticket,
            totp=code if totp and not passkey else None,
            recovery_code=None if totp or passkey else code,
            passkey=passkey,
            source=client_address(request),
            user_agent=user_agent(request.headers.get("user-agent")),
        )
    except BadCallError:
        return LoginOutcome(REJECTED, "", False, None, 0.0)
