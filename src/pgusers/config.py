"""The options a UserSpace is opened with, and the registry of open userspaces."""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from argon2 import PasswordHasher

from pgusers import target
from pgusers.codec import Codec, Serializer
from pgusers.core import Core
from pgusers.errors import BadCallError
from pgusers.passwords import Passwords

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Options:
    """pgusers' own keyword arguments to ``UserSpace``; every other keyword is libpq's.

    None means "not given": the default applies, and an already open userspace
    is returned whatever its own setting.
    """

    schema: str | None = None
    serializer: Serializer | None = None
    hasher: PasswordHasher | None = None
    pool_min: int | None = None
    pool_max: int | None = None
    pool_timeout: float | None = None

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
        timeout = self.pool_timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 3600
        ):
            raise BadCallError(
                "pool_timeout must be a number of seconds, more than 0, at most 3600"
            )

    def conflicts(self, other: "Options") -> list[str]:
        """Name the options given here that ``other`` (an open userspace's) differs on."""
        return [
            field.name
            for field in fields(self)
            if getattr(self, field.name) is not None
            and _comparable(getattr(self, field.name)) != _comparable(getattr(other, field.name))
        ]

    def make_core(self) -> Core:
        """Return the core these options describe."""
        return Core(
            self.schema or "pgusers",
            Codec(self.serializer or "json"),
            Passwords(self.hasher),
        )

    def pool_settings(self) -> dict[str, Any]:
        """Return the psycopg_pool arguments these options describe."""
        return {
            "min_size": 1 if self.pool_min is None else self.pool_min,
            "max_size": 10 if self.pool_max is None else self.pool_max,
            "timeout": 10.0 if self.pool_timeout is None else self.pool_timeout,
        }


def prepare(
    options: Options, dbname: object, conninfo: object, conn_kwargs: dict[str, Any]
) -> tuple[target.Target, Core, tuple[str, ...]]:
    """Check a userspace's arguments; return its target, its core and its registry key."""
    options.check()
    where = target.resolve(dbname, conninfo, conn_kwargs)
    core = options.make_core()
    return where, core, (*where.identity, core.schema)


def pool_arguments(where: target.Target, options: Options) -> dict[str, Any]:
    """Return the arguments of the (sync or async) connection pool of a userspace."""
    return {
        "conninfo": where.conninfo,
        "kwargs": where.connection_options,
        "name": f"pgusers {where.describe()}",
        **options.pool_settings(),
    }


def _comparable(value: object) -> object:
    if isinstance(value, PasswordHasher):
        return (
            value.time_cost,
            value.memory_cost,
            value.parallelism,
            value.hash_len,
            value.salt_len,
            value.type,
        )
    return value


class Registry(Generic[S]):
    """Open userspaces by target, so the same target gives the same object."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._spaces: dict[Hashable, tuple[S, Options]] = {}

    def get_or_open(self, key: Hashable, options: Options, open_space: Callable[[], S]) -> S:
        """Return the open userspace for ``key``, or open one with ``open_space``."""
        with self.lock:
            found = self._spaces.get(key)
            if found is not None:
                space, opened_with = found
                clashes = options.conflicts(opened_with)
                if clashes:
                    raise BadCallError(
                        f"this userspace is already open with other {', '.join(clashes)}; "
                        "close it first or pass the same options"
                    )
                return space
            space = open_space()
            self._spaces[key] = (space, options)
            return space

    def forget(self, key: Hashable, space: S) -> None:
        """Drop ``space`` from the registry (when it is closed)."""
        with self.lock:
            found = self._spaces.get(key)
            if found is not None and found[0] is space:
                del self._spaces[key]
