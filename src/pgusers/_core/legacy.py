"""What pgusers 0.9 left in its tables, read safely: password hashes and pickles.

pgusers 0.9 stored ``kpasswd``, the PBKDF2-HMAC-SHA512 of the UTF-8 password with
the 16 raw bytes of ``salt`` (kept as 32 hex characters), 100,000 iterations and
a 64-byte result as hex. An imported user keeps it as a self-describing string in
the PHC style, ``$pbkdf2-sha512$i=100000$<salt>$<hash>`` (standard base64 without
padding), verified here in constant time and replaced by Argon2id at the next
successful login.

``extra_data`` was a pickle. It is never given to :func:`pickle.loads`: a
restricted unpickler builds only the types pgusers' codec stores, and anything
else is kept opaque.
"""

import base64
import hashlib
import hmac
import io
import pickle
import re
from typing import Any, Final

PREFIX: Final = "$pbkdf2-sha512$"
ITERATIONS: Final = 100_000
_SALT_HEX: Final = re.compile(r"[0-9a-f]{32}")
_KPASSWD_HEX: Final = re.compile(r"[0-9a-f]{128}")
_STORED: Final = re.compile(r"\$pbkdf2-sha512\$i=([0-9]{1,9})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def is_legacy_hash(stored_hash: str) -> bool:
    return stored_hash.startswith(PREFIX)


def stored_hash(salt: str | None, kpasswd: str | None) -> str | None:
    """Return the hash string to store for a 0.9 user's ``salt`` and ``kpasswd``, or
    None when either is missing or not what 0.9 wrote."""
    if salt is None or kpasswd is None:
        return None
    if not (_SALT_HEX.fullmatch(salt) and _KPASSWD_HEX.fullmatch(kpasswd)):
        return None
    return f"{PREFIX}i={ITERATIONS}${_b64(bytes.fromhex(salt))}${_b64(bytes.fromhex(kpasswd))}"


def verify(stored: str, password: str) -> bool:
    """Check ``password`` against a stored legacy hash, in constant time."""
    match = _STORED.fullmatch(stored)
    if match is None:
        return False
    iterations, salt, expected = int(match[1]), _unb64(match[2]), _unb64(match[3])
    if not 0 < iterations <= 10 * ITERATIONS:
        return False
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(derived, expected)


DUMMY_HASH: Final = f"{PREFIX}i={ITERATIONS}${_b64(bytes(16))}${_b64(bytes(64))}"
"""A legacy hash no password matches, verified to make a failure cost what a failure
against a real legacy hash costs."""


SAFE_CLASSES: Final = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
    }
)
"""The only classes a legacy pickle may name: the types the codec stores."""


class RefusedPickleError(Exception):
    """A pickle that names something outside :data:`SAFE_CLASSES`, or is damaged."""


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """What protocols 0 to 2 call, as ``_codecs.encode``, to make bytes (a datetime's
    state among them): accepted for Latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickleError(f"encodes with {encoding!r}")
    return text.encode("latin-1")


def _reconstructed(cls: type, base: type, state: object) -> object:
    """What protocols 0 and 1 call, as ``copyreg._reconstructor``, to make an object
    (a UUID): accepted for the safe classes only, made as ``object.__new__`` does."""
    if (cls.__module__, cls.__qualname__) not in SAFE_CLASSES or base is not object:
        raise RefusedPickleError(f"reconstructs {cls!r} from {base!r}")
    return object.__new__(cls)


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructed
        if (module, name) == ("builtins", "object"):
            return object
        if (module, name) not in SAFE_CLASSES:
            raise RefusedPickleError(f"refers to {module}.{name}")
        return super().find_class(module, name)


MAX_VALUES: Final = 1 << 20
"""The most values (counted each time they are reached) a legacy pickle may unfold
to: as many as the bytes of JSON the codec stores at most, since each takes one."""

_CONTAINERS: Final = (list, tuple, set, frozenset)


def unpickle(data: bytes) -> Any:
    """Return the value of a 0.9 pickle that holds only safe types; raise
    :class:`RefusedPickleError` for any other (nothing it names is imported or run),
    and for one that unfolds to more than :data:`MAX_VALUES` values."""
    try:
        value = _Restricted(io.BytesIO(data)).load()
    except RefusedPickleError:
        raise
    except Exception as error:  # a damaged pickle can raise almost anything
        raise RefusedPickleError(f"cannot be read ({type(error).__name__})") from None
    _count_within(value, MAX_VALUES)
    return value


def _count_within(value: object, limit: int) -> None:
    """Refuse a value that reaches more than ``limit`` values when every reference is
    followed, as converting it would: a pickle can hold one list twice, nested N deep,
    in a few bytes, which unfolds to 2**N values (counting stops at the limit)."""
    pending = [value]
    seen = 0
    while pending:
        item = pending.pop()
        seen += 1
        if seen > limit:
            raise RefusedPickleError(f"unfolds to more than {limit} values")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, _CONTAINERS):
            pending.extend(item)
