"""What both facades share: their arguments, and opening one userspace per target."""

from typing import Any, ClassVar, Self

from argon2 import PasswordHasher

from pgusers._core.codec import Serializer
from pgusers._core.operations import Core
from pgusers._drivers.driver_async import AsyncDriver
from pgusers._drivers.driver_sync import SyncDriver
from pgusers._drivers.target import Target
from pgusers._options import Options, prepare
from pgusers._registry import Registry


class Opening:
    """Base of :class:`~pgusers.UserSpace` and :class:`~pgusers.AsyncUserSpace`:
    constructing one opens the userspace of its target, or returns the one open."""

    _registry: ClassVar[Registry[Any]]
    _core: Core
    _driver: SyncDriver | AsyncDriver
    _key: tuple[object, ...]

    def __new__(
        cls,
        dbname: str | None = None,
        *,
        conninfo: str = "",
        schema: str | None = None,
        serializer: Serializer | None = None,
        hasher: PasswordHasher | None = None,
        pool_min: int | None = None,
        pool_max: int | None = None,
        pool_timeout: float | None = None,
        session_cache: bool | None = None,
        cache_backstop: float | None = None,
        listen_conninfo: str | None = None,
        secret_key: str | bytes | list[str | bytes] | None = None,
        breach_source: str | None = None,
        **conn_kwargs: Any,
    ) -> Self:
        options = Options(
            schema,
            serializer,
            hasher,
            pool_min,
            pool_max,
            pool_timeout,
            session_cache,
            cache_backstop,
            listen_conninfo,
            secret_key,
            breach_source,
        )
        where, core, space_key = prepare(options, dbname, conninfo, conn_kwargs)
        key = cls._registry_key(space_key)
        space: Self = cls._registry.get_or_open(
            key, options, where, lambda: cls._open_new(where, options, core, key)
        )
        return space

    @classmethod
    def _open_new(
        cls, where: Target, options: Options, core: Core, key: tuple[object, ...]
    ) -> Self:
        self = super().__new__(cls)
        self._core, self._key = core, key
        self._driver = self._new_driver(where, options, core)
        return self

    @classmethod
    def _registry_key(cls, space_key: tuple[str, ...]) -> tuple[object, ...]:
        """The key of the registry entry for a target (the target's own, by default)."""
        return space_key

    def _new_driver(self, where: Target, options: Options, core: Core) -> SyncDriver | AsyncDriver:
        raise NotImplementedError

    def _name(self, where: Target) -> str:
        return f"<{type(self).__name__} {where.describe()} schema={self._core.schema}>"

    def __repr__(self) -> str:
        state = " closed" if self._driver.closed else ""
        return f"{self._name(self._driver.target)[:-1]}{state}>"

    @property
    def ttl(self) -> float:
        """The session time to live in force, in seconds (default 864000, ten days)."""
        return self._core.ttl
