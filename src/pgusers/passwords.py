"""Password hashing with Argon2id (argon2-cffi), in PHC string format."""

import secrets
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a password against a stored hash."""

    matches: bool
    upgraded_hash: str | None = None
    """A new hash made with the current parameters, when the stored one is outdated."""


class Passwords:
    """Hashes and verifies passwords with one :class:`argon2.PasswordHasher`.

    The default hasher uses argon2-cffi's defaults (RFC 9106 "low memory" profile:
    Argon2id, time cost 3, 64 MiB, 4 lanes). The argon2 C code releases the GIL, so
    logins on several threads use several cores.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    def __repr__(self) -> str:
        params = self.hasher
        return (
            f"Passwords(time_cost={params.time_cost}, memory_cost={params.memory_cost}, "
            f"parallelism={params.parallelism})"
        )

    @cached_property
    def _dummy_hash(self) -> str:
        # Unknown users are verified against this, so a login for a name that does not
        # exist costs what a wrong password costs and timing reveals nothing.
        return self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Return the PHC-format Argon2id hash of ``password``."""
        return self.hasher.hash(password)

    def _matches(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify(self, stored_hash: str | None, password: str) -> Verdict:
        """Check ``password`` against ``stored_hash`` (None: an unknown user, never matches)."""
        if not self._matches(stored_hash, password) or stored_hash is None:
            return Verdict(matches=False)
        if self.hasher.check_needs_rehash(stored_hash):
            return Verdict(matches=True, upgraded_hash=self.hasher.hash(password))
        return Verdict(matches=True)

    def verify_and_hash(self, stored_hash: str, old: str, new: str) -> str | None:
        """Return the hash of ``new`` if ``old`` matches ``stored_hash``, else None."""
        return self.hash(new) if self._matches(stored_hash, old) else None
