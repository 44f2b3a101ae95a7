"""Session keys and one-time tokens: 256 random bits from :mod:`secrets`, as URL-safe
text; tokens are stored only as their SHA-256 digest."""

import hashlib
import re
import secrets
from typing import Final

STORED_PREFIX: Final = "sha256:"
"""How a key kept as its digest is stored: this prefix, then the SHA-256 digest in
hex. No session key contains ':', so a stored digest given as a key is refused
before any statement, and a key and a digest can never be the same text."""

KEY_BYTES: Final = 32
"""Random bytes in a session key (256 bits)."""

_KEY_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_key() -> str:
    """Return a fresh, unpredictable session key (43 URL-safe characters)."""
    return secrets.token_urlsafe(KEY_BYTES)


def looks_like_session_key(text: str) -> bool:
    """Tell whether ``text`` has the shape of a key made by :func:`new_session_key`."""
    return _KEY_SHAPE.fullmatch(text) is not None


def stored_form(key: str) -> str:
    """Return what is stored of a session key once keys are kept hashed: the prefix
    ``sha256:`` and the key's SHA-256 digest in hex (as the conversion in SQL makes it)."""
    return STORED_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def could_be_stored(text: str) -> bool:
    """Tell whether ``text`` could name a stored session: a key of today's shape or of
    pgusers 0.9's. Anything else (including text that is not even encodable, such as
    lone surrogates) is answered without a statement."""
    return looks_like_session_key(text) or looks_like_legacy_key(text)


SESSION_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{16}")
"""What a session id looks like: 12 random bytes as URL-safe base64."""


_LEGACY_SHAPE: Final = re.compile(r"[0-9a-f]{32}")


def looks_like_legacy_key(text: str) -> bool:
    """Tell whether ``text`` has the shape of a pgusers 0.9 key (32 lower-case hex
    characters): such a key is looked up among imported sessions only."""
    return _LEGACY_SHAPE.fullmatch(text) is not None


def new_token() -> str:
    """Return a fresh one-time token (the same shape as a session key)."""
    return secrets.token_urlsafe(KEY_BYTES)


def digest(token: str) -> bytes:
    """Return what is stored of a token: its SHA-256 digest."""
    return hashlib.sha256(token.encode()).digest()


API_KEY_PREFIX: Final = "pgusers_"
"""How every API key of the HTTP service starts, so a bearer token tells what it is."""

_API_KEY_SHAPE: Final = re.compile(r"pgusers_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}")


def new_api_key() -> tuple[str, str]:
    """Return a fresh API key's public id and the key itself (which holds the id)."""
    key_id = secrets.token_urlsafe(6)
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(KEY_BYTES)}"


def looks_like_api_key(text: str) -> bool:
    """Tell whether ``text`` has the shape of a key made by :func:`new_api_key`."""
    return _API_KEY_SHAPE.fullmatch(text) is not None
