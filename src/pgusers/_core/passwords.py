"""Password hashing with Argon2id (argon2-cffi), in PHC string format."""

import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from pgusers._core import legacy


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a password against a stored hash."""

    matches: bool
    upgraded_hash: str | None = None
    """A new hash made with the current parameters, when the stored one is outdated."""


Parameters = tuple[int, int, int, int, int, Type]
"""time cost, memory cost, parallelism, hash length, salt length, Argon2 variant."""


@cache
def _dummy_hash(params: Parameters) -> str:
    time_cost, memory_cost, parallelism, hash_len, salt_len, kind = params
    hasher = PasswordHasher(time_cost, memory_cost, parallelism, hash_len, salt_len, type=kind)
    return hasher.hash(secrets.token_urlsafe(16))


class Passwords:
    """Hashes and verifies passwords with one :class:`argon2.PasswordHasher`.

    The default hasher uses argon2-cffi's defaults (RFC 9106 "low memory" profile:
    Argon2id, time cost 3, 64 MiB, 4 lanes). The argon2 C code releases the GIL, so
    logins on several threads use several cores.

    A failed login costs one verification with the current parameters whatever it
    failed on: an unknown user is verified against a dummy hash (made here, so the
    first failure costs what every other does), and a wrong password against an
    outdated, cheaper hash is followed by a verification against the dummy too.
    While a userspace holds hashes imported from pgusers 0.9 (PBKDF2), every failure
    also costs one PBKDF2 verification, so that it takes the same time whichever
    kind of hash the user has, or whether the user exists.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash = _dummy_hash(parameters(self.hasher))

    def __repr__(self) -> str:
        params = self.hasher
        return (
            f"Passwords(time_cost={params.time_cost}, memory_cost={params.memory_cost}, "
            f"parallelism={params.parallelism})"
        )

    def hash(self, password: str) -> str:
        """Return the PHC-format Argon2id hash of ``password``."""
        return self.hasher.hash(password)

    def _matches(self, stored_hash: str, password: str) -> bool:
        if legacy.is_legacy_hash(stored_hash):
            return legacy.verify(stored_hash, password)
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _outdated(self, stored_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def verify(
        self, stored_hash: str | None, password: str, legacy_present: bool = False
    ) -> Verdict:
        """Check ``password`` against ``stored_hash`` (None: an unknown user, never
        matches); ``legacy_present``: the userspace holds legacy hashes."""
        if stored_hash is None:
            self._fail(password, legacy_present)
            return Verdict(matches=False)
        outdated = self._outdated(stored_hash)
        if not self._matches(stored_hash, password):
            # Make up the work of whatever a failure against another hash would cost.
            if legacy.is_legacy_hash(stored_hash) or outdated:
                self._matches(self._dummy_hash, password)
            if legacy_present and not legacy.is_legacy_hash(stored_hash):
                legacy.verify(legacy.DUMMY_HASH, password)
            return Verdict(matches=False)
        if outdated:
            return Verdict(matches=True, upgraded_hash=self.hasher.hash(password))
        return Verdict(matches=True)

    def _fail(self, password: str, legacy_present: bool) -> None:
        """Spend what a failure against the costliest stored hash would."""
        self._matches(self._dummy_hash, password)
        if legacy_present:
            legacy.verify(legacy.DUMMY_HASH, password)

    def verify_and_hash(self, stored_hash: str, old: str, new: str) -> str | None:
        """Return the hash of ``new`` if ``old`` matches ``stored_hash``, else None."""
        return self.hash(new) if self._matches(stored_hash, old) else None


def parameters(hasher: PasswordHasher) -> Parameters:
    """Return what makes the hashes of ``hasher`` what they are: two hashers with the
    same parameters are interchangeable."""
    return (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
        hasher.type,
    )
