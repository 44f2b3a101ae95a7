"""How a userspace's connections are wired: its pool's sizes and timeouts, and where
the session cache listens. The drivers own this; the options only fill it in."""

from dataclasses import dataclass
from typing import Any, Final

from pgusers._drivers.target import Target

POOL_NAME_PREFIX: Final = "pgusers "
"""How the names of pgusers' connection pools begin (psycopg_pool logs by name)."""

RECONNECT_TIMEOUT: Final = 2.0
"""Seconds a pool keeps trying to replace a lost connection before it gives up.

psycopg_pool waits twice as long before each new attempt (1, 2, 4, 8, 16 s...), so
after an outage of 20 s, as long as a failover under Patroni takes, its next
attempt could come 10 s after the database was back. Given up after 2 s, a lost
connection is made afresh, at once, by the next call that finds the pool empty:
calls succeed again within about a second of the database's return."""


@dataclass(frozen=True, slots=True)
class Wiring:
    """A userspace's pool settings, and the conninfo its session cache listens on
    (None: the userspace's own)."""

    min_size: int = 1
    max_size: int = 10
    timeout: float = 10.0
    listen_conninfo: str | None = None

    def pool_arguments(self, where: Target) -> dict[str, Any]:
        """The arguments of the (blocking or asyncio) connection pool to ``where``."""
        return {
            "conninfo": where.conninfo,
            "kwargs": where.connection_options,
            "name": f"{POOL_NAME_PREFIX}{where.describe()}",
            "min_size": self.min_size,
            "max_size": self.max_size,
            "timeout": self.timeout,
            "reconnect_timeout": RECONNECT_TIMEOUT,
        }
