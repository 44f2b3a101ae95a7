"""The options a userspace is opened with, and what they make: its core and pool."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Final

from argon2 import PasswordHasher

from pgusers._core.cache import SessionCache
from pgusers._core.codec import Codec, Serializer
from pgusers._core.operations import Core
from pgusers._core.passwords import Passwords, parameters
from pgusers._core.sealing import box_for, keys_of
from pgusers._drivers import target
from pgusers._drivers.breaches import DEFAULT_SOURCE, BreachedPasswords
from pgusers._drivers.providers import ProviderCalls
from pgusers._drivers.wiring import Wiring
from pgusers._errors import BadCallError

DEFAULT_BACKSTOP: Final = 2.0
POOL_SETTING: Final = {"pool_min": "min_size", "pool_max": "max_size", "pool_timeout": "timeout"}

SECURITY_OPTIONS: Final = frozenset({"serializer", "hasher", "secret_key"})
"""Options compared with an open userspace's even when not given."""

_test_hasher: list[PasswordHasher | None] = [None]
"""The hasher of userspaces opened without one while the pytest plugin runs a test;
None: Argon2id's default parameters. Process-wide, not per context, as a framework's
test client may serve the application from a thread of its own."""


def default_hasher() -> PasswordHasher:
    """The hasher a userspace opened without ``hasher=`` uses."""
    return _test_hasher[0] or PasswordHasher()


@contextmanager
def hasher_for_tests(hasher: PasswordHasher | None) -> Iterator[None]:
    """Within the block, userspaces opened without ``hasher=`` use ``hasher`` (for the
    pytest plugin, so an application's own userspace matches the fixtures')."""
    previous, _test_hasher[0] = _test_hasher[0], hasher
    try:
        yield
    finally:
        _test_hasher[0] = previous


@dataclass(frozen=True, slots=True)
class Options:
    """pgusers' own keyword arguments to ``UserSpace``; every other keyword is libpq's.

    None means "not given": the default applies. Opening a target that is already
    open returns the open userspace; an option given here that differs from its own
    is refused. The options that decide security (:data:`SECURITY_OPTIONS`) are
    compared even when not given: a caller that did not opt into pickling never
    gets a userspace that unpickles, nor one hashing with parameters it did not choose.
    """

    schema: str | None = None
    serializer: Serializer | None = None
    hasher: PasswordHasher | None = None
    pool_min: int | None = None
    pool_max: int | None = None
    pool_timeout: float | None = None
    session_cache: bool | None = None
    cache_backstop: float | None = None
    listen_conninfo: str | None = None
    secret_key: str | bytes | list[str | bytes] | None = None
    breach_source: str | None = None

    def check(self) -> None:
        """Raise :class:`BadCallError` for an option of the wrong type or range."""
        if self.schema is not None:
            target.schema_name(self.schema)
        if self.hasher is not None and not isinstance(self.hasher, PasswordHasher):
            raise BadCallError("hasher must be an argon2.PasswordHasher")
        for name in ("pool_min", "pool_max"):
            size = getattr(self, name)
            if size is not None and (type(size) is not int or not 0 <= size <= 1000):
                raise BadCallError(f"{name} must be an int from 0 to 1000")
        pool = self.pool_settings()
        if pool["max_size"] < max(pool["min_size"], 1):
            raise BadCallError("pool_max must be at least pool_min and at least 1")
        if self.session_cache is not None and not isinstance(self.session_cache, bool):
            raise BadCallError("session_cache must be a bool")
        for name, most in (("cache_backstop", 60), ("pool_timeout", 3600)):
            seconds = getattr(self, name)
            if seconds is not None and (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds <= most
            ):
                raise BadCallError(
                    f"{name} must be a number of seconds, more than 0, at most {most}"
                )
        if self.listen_conninfo is not None:
            if not self.session_cache:
                raise BadCallError("listen_conninfo is for session_cache=True")
            target.resolve(None, self.listen_conninfo, {})  # checked like any conninfo
        self._check_password_options()

    def _check_password_options(self) -> None:
        """The secret key and the breached-password source."""
        if self.secret_key is not None:
            keys_of(self.secret_key)
        source = self.breach_source
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise BadCallError(
                "breach_source must be the URL of a range API or a directory of range files"
            )

    def _in_force(self, name: str) -> object:
        """An option's value with its default applied, so that giving the default
        explicitly is no conflict with leaving it out."""
        value = getattr(self, name)
        if name == "serializer":
            return value or "json"
        if name == "hasher":
            return parameters(value or default_hasher())
        if name == "schema":
            return value or "pgusers"
        if name in ("pool_min", "pool_max", "pool_timeout"):
            return self.pool_settings()[POOL_SETTING[name]]
        if name == "session_cache":
            return bool(value)
        if name == "cache_backstop":
            return value or DEFAULT_BACKSTOP
        if name == "secret_key":  # compared by the keys' ids, never shown
            box = box_for(value)
            return None if box is None else box.key_ids
        return value

    def conflicts(self, other: "Options") -> list[str]:
        """Name the options that differ from ``other``'s (an open userspace's): the ones
        given here, and the security options whether given or not."""
        return [
            field.name
            for field in fields(self)
            if (field.name in SECURITY_OPTIONS or getattr(self, field.name) is not None)
            and self._in_force(field.name) != other._in_force(field.name)
        ]

    def make_core(self) -> Core:
        """Return the core these options describe."""
        cache = (
            SessionCache(self.cache_backstop or DEFAULT_BACKSTOP) if self.session_cache else None
        )
        return Core(
            self.schema or "pgusers",
            Codec(self.serializer or "json"),
            Passwords(self.hasher or default_hasher()),
            cache,
            box=box_for(self.secret_key),
            breaches=BreachedPasswords(self.breach_source or DEFAULT_SOURCE).count,
            providers=ProviderCalls(),
        )

    def pool_settings(self) -> dict[str, Any]:
        """Return the psycopg_pool sizes and timeout these options describe."""
        wiring = self.wiring()
        return {"min_size": wiring.min_size, "max_size": wiring.max_size, "timeout": wiring.timeout}

    def wiring(self) -> Wiring:
        """Return how the drivers are to wire these options' connections."""
        defaults = Wiring()
        return Wiring(
            min_size=defaults.min_size if self.pool_min is None else self.pool_min,
            max_size=defaults.max_size if self.pool_max is None else self.pool_max,
            timeout=defaults.timeout if self.pool_timeout is None else self.pool_timeout,
            listen_conninfo=self.listen_conninfo,
        )


def prepare(
    options: Options, dbname: object, conninfo: object, conn_kwargs: dict[str, Any]
) -> tuple[target.Target, Core, tuple[str, ...]]:
    """Check a userspace's arguments; return its target, its core and its registry key."""
    options.check()
    where = target.resolve(dbname, conninfo, conn_kwargs)
    core = options.make_core()
    return where, core, (*where.identity, core.schema)
