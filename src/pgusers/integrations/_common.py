"""What the framework integrations and the service share: the cookie's name and
flags, and how a request's user agent is recorded."""

import re
from typing import Any, Final

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
