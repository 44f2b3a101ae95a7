"""What the framework integrations and the service share: the cookie's name and
flags, how a request's user agent is recorded, and how a refused login is answered."""

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Final

from pgusers._errors import BadCallError
from pgusers._results import (
    DISABLED,
    EXPIRED,
    LINK_REQUIRED,
    MFA_REQUIRED,
    OK,
    THROTTLED,
    LoginOutcome,
)

COOKIE_NAME: Final = "pgusers_session"
MAX_AGENT: Final = 512
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def user_agent(header: str | None) -> str | None:
    """A request's ``User-Agent`` as a login records it: without control characters
    (which a login refuses) and cut to :data:`MAX_AGENT` characters; None for none."""
    cleaned = _CONTROLS.sub("", header or "")[:MAX_AGENT]
    return cleaned or None


def cookie_scope(*, secure: bool) -> dict[str, Any]:
    """The session cookie's attributes that setting and clearing it share, in the
    keyword names of Starlette's and Flask's ``set_cookie`` and ``delete_cookie``."""
    return {"path": "/", "secure": secure, "httponly": True, "samesite": "Lax"}


def cookie_flags(ttl: float, *, secure: bool) -> dict[str, Any]:
    """The session cookie's attributes when it is set: it lives as long as the TTL."""
    return {"max_age": int(ttl), **cookie_scope(secure=secure)}


STATE_COOKIE: Final = "pgusers_external"
"""The cookie that holds a sign-in's state while the browser is at the other site."""

STATE_SECONDS: Final = 600
"""How long the state cookie lives: as long as a sign-in through another site may take."""


def state_cookie_flags(*, secure: bool) -> dict[str, Any]:
    """The state cookie's attributes: it lives as long as a sign-in may take, and is
    sent with the provider's redirect back (SameSite=Lax: a top-level navigation)."""
    return {"max_age": STATE_SECONDS, **cookie_scope(secure=secure)}


def callback_params(query: Any) -> dict[str, str]:
    """A callback's query parameters, each name once (the first value), as
    ``finish_external_login`` takes them: the framework's URL may not be the one the
    browser used behind a proxy, so the parameters are given rather than the URL."""
    params: dict[str, str] = {}
    for name, value in query.items():
        params.setdefault(str(name), str(value))
    return params


@dataclass(frozen=True, slots=True)
class Refusal:
    """How HTTP answers a login that opened no session: the status, a stable code for
    programs, a message for people, and for a throttled login the whole seconds to
    wait (rounded up, and at least 1) that ``Retry-After`` carries."""

    status: int
    code: str
    message: str
    retry_after: int | None = None

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def refusal(outcome: LoginOutcome) -> Refusal | None:
    """The answer to a refused login, the same in the service, the console and every
    integration; None when the login succeeded."""
    if outcome.status == OK:
        return None
    if outcome.status == THROTTLED:
        wait = max(1, math.ceil(outcome.retry_after))
        return Refusal(429, "throttled", f"too many failed logins: try again in {wait} s", wait)
    if outcome.status == DISABLED:
        return Refusal(403, "account_disabled", "this account is disabled")
    if outcome.status == MFA_REQUIRED:
        return Refusal(401, "mfa_required", "this account needs a second factor to sign in")
    return Refusal(401, "login_failed", "wrong username or password")


def external_refusal(outcome: LoginOutcome) -> Refusal | None:
    """The answer to a sign-in through another site that opened no session (None when
    it did, or when it linked the account to the signed-in user)."""
    if outcome.status == LINK_REQUIRED:
        return Refusal(
            409,
            "link_required",
            "this account at the other site is not linked to a user here: sign in "
            "another way, then link it from your account",
        )
    if outcome.status == EXPIRED:
        return Refusal(401, "expired", "this sign-in took too long: start again")
    if outcome.status in (OK, DISABLED, MFA_REQUIRED):
        return refusal(outcome)
    return Refusal(401, "external_login_failed", "the sign-in through the other site failed")


RECENT_AUTH: Final = 600.0
"""Seconds a proof of who the user is counts as recent, by default: for changing
their second factors in the service, and ``require_recent_auth`` in every integration."""


def recent_auth_window(max_age: object) -> float:
    """``require_recent_auth``'s ``max_age``, checked: seconds, more than 0."""
    if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
        raise BadCallError("max_age must be a number of seconds, more than 0")
    return float(max_age)


def proved_recently(authenticated_at: float | None, max_age: float) -> bool:
    """Whether a session's user proved who they are within ``max_age`` seconds."""
    return authenticated_at is not None and time.time() - authenticated_at <= max_age
