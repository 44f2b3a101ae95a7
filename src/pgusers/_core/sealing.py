"""Secrets the server must read again (a TOTP factor's seed), sealed under the
application's ``secret_key``.

A sealed value is ``v1:<key id>:<base64 of nonce and ciphertext>``: AES-256-GCM
with a fresh 96-bit nonce, and the row it belongs to as associated data, so a value
copied to another row does not open. The AES key is derived from the application's
key with HKDF-SHA256; its id (eight hex digits of a digest of the derived key) says
which key sealed a value, so keys can rotate: ``secret_key`` may be a list whose
first key seals and whose others only open; a value that does not start with
:attr:`SecretBox.sealed_prefix` is one a rotation must seal again.

Secrets the server need not read again (tokens, tickets, recovery codes) are never
sealed: they are kept as SHA-256 digests (:func:`pgusers._core.keys.digest`).
"""

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import Final

from pgusers._errors import BadCallError

VERSION: Final = "v1"
NONCE_BYTES: Final = 12
MIN_KEY_LENGTH: Final = 16
"""The shortest ``secret_key`` accepted, in characters or bytes."""
MAX_KEY_LENGTH: Final = 4096
MAX_KEYS: Final = 16

NEEDS_EXTRA: Final = "second factors need the mfa extra: pip install 'pgusers[mfa]'"

HOW_TO_SET: Final = (
    "open the userspace with secret_key= (a random string of 32 or more characters, "
    "kept outside the database; PGUSERS_SECRET_KEY for the command line and the service)"
)


def _aead() -> type:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the mfa extra is missing
        raise BadCallError(NEEDS_EXTRA) from None
    return AESGCM


def _derive(key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(hashes.SHA256(), 32, salt=None, info=b"pgusers secret box v1").derive(key)


def key_bytes(key: object) -> bytes:
    """One ``secret_key`` as bytes, checked."""
    if isinstance(key, str):
        raw = key.encode()
    elif isinstance(key, bytes):
        raw = key
    else:
        raise BadCallError("secret_key must be a str or bytes, or a list of them")
    if not MIN_KEY_LENGTH <= len(raw) <= MAX_KEY_LENGTH:
        raise BadCallError(
            f"secret_key must be {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters long "
            "(32 or more random characters are best)"
        )
    return raw


def keys_of(secret_key: object) -> list[bytes]:
    """The keys ``secret_key`` names (one, or a list whose first seals), checked."""
    if isinstance(secret_key, str | bytes):
        return [key_bytes(secret_key)]
    if not isinstance(secret_key, list | tuple) or not 1 <= len(secret_key) <= MAX_KEYS:
        raise BadCallError(
            f"secret_key must be a str or bytes, or a list of 1 to {MAX_KEYS} of them"
        )
    return [key_bytes(key) for key in secret_key]


class SecretBox:
    """Seals and opens values under a ring of keys; the first key seals."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        aead = _aead()
        derived = [_derive(key) for key in keys]
        self._ciphers = {self._id(key): aead(key) for key in derived}
        self.current = self._id(derived[0])
        self.key_ids = tuple(self._ciphers)

    @staticmethod
    def _id(derived: bytes) -> str:
        return hashlib.sha256(b"pgusers key id " + derived).hexdigest()[:8]

    def seal(self, plaintext: bytes, row: str) -> str:
        """``plaintext`` sealed under the current key, bound to ``row``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, plaintext, row.encode())
        return f"{VERSION}:{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, row: str) -> bytes:
        """The plaintext of a value this box's keys sealed for ``row``; a
        :class:`BadCallError` when no key here sealed it, or it was altered."""
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        version, key_id, body = _parts(sealed)
        cipher = self._ciphers.get(key_id)
        if version != VERSION or cipher is None:
            raise BadCallError(
                f"a stored secret was sealed under key id {key_id!r}, which is not among "
                f"this userspace's secret_key ({', '.join(self.key_ids)}): give that key too"
            )
        try:
            data = base64.b64decode(body, validate=True)
            return bytes(cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], row.encode()))
        except (InvalidTag, binascii.Error, ValueError):
            raise BadCallError("a stored secret does not open: it was altered or moved") from None

    @property
    def sealed_prefix(self) -> str:
        """How every value sealed under the current key starts."""
        return f"{VERSION}:{self.current}:"


def _parts(sealed: str) -> tuple[str, str, str]:
    version, _, rest = sealed.partition(":")
    key_id, _, body = rest.partition(":")
    return version, key_id, body


def box_for(secret_key: object) -> SecretBox | None:
    """The box for a userspace's ``secret_key`` option (None: not given)."""
    if secret_key is None:
        return None
    return SecretBox(keys_of(secret_key))
