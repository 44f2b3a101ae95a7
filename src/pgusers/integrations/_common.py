"""What the framework integrations share: the cookie's name and flags."""

from typing import Any, Final

COOKIE_NAME: Final = "pgusers_session"


def cookie_scope(*, secure: bool) -> dict[str, Any]:
    """The session cookie's attributes that setting and clearing it share, in the
    keyword names of Starlette's and Flask's ``set_cookie`` and ``delete_cookie``."""
    return {"path": "/", "secure": secure, "httponly": True, "samesite": "Lax"}


def cookie_flags(ttl: float, *, secure: bool) -> dict[str, Any]:
    """The session cookie's attributes when it is set: it lives as long as the TTL."""
    return {"max_age": int(ttl), **cookie_scope(secure=secure)}
