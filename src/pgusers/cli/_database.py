"""Where the command line's userspace is: a server named by options, a DSN or libpq's
variables, or else the embedded PostgreSQL."""

import os
from dataclasses import dataclass, field
from typing import Any, Final

import click

from pgusers._userspace import UserSpace
from pgusers.cli import _embedded as embedded

LIBPQ_TARGET_VARIABLES: Final = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE")
"""libpq variables that name a server or database: with any of them set, the command
line connects where they say instead of using the embedded server."""


def secret_key_from_environment() -> str | list[str | bytes] | None:
    """The secret key PGUSERS_SECRET_KEY gives: one key, or several separated by spaces
    (the first seals; the others only open, while rotating)."""
    keys = os.environ.get("PGUSERS_SECRET_KEY", "").split()
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else list(keys)


def options_from_environment() -> dict[str, Any]:
    """The userspace's options the environment gives the command line and the service:
    ``PGUSERS_SECRET_KEY`` (see :func:`secret_key_from_environment`) and
    ``PGUSERS_BREACH_SOURCE`` (where the breached-password check asks: a range API's
    URL, or a directory ``pgusers breached-passwords import`` made)."""
    return {
        "secret_key": secret_key_from_environment(),
        "breach_source": os.environ.get("PGUSERS_BREACH_SOURCE") or None,
    }


@dataclass
class Database:
    """The command line's database, and its userspace, opened on first use."""

    dsn: str | None
    params: dict[str, Any]
    schema: str
    verbose: bool = False
    _space: UserSpace | None = field(default=None, repr=False)
    _connection: dict[str, Any] | None = field(default=None, repr=False)

    def uses_embedded(self) -> bool:
        return not (self.dsn or self.params or any(map(os.environ.get, LIBPQ_TARGET_VARIABLES)))

    def embedded_server(self) -> embedded.Server:
        """Start (or find) the embedded server; say so on stderr when this starts it
        (once, not on every command), or with --verbose."""
        server = embedded.start()
        if server.started:
            click.echo(
                f"pgusers: started the embedded PostgreSQL in {server.data_dir}; it keeps "
                'running for the next commands ("pgusers server stop" stops it)',
                err=True,
            )
        elif self.verbose:
            click.echo(f"pgusers: using the embedded PostgreSQL in {server.data_dir}", err=True)
        return server

    def connection(self) -> dict[str, Any]:
        """``UserSpace``'s connection arguments for the userspace's database."""
        if self._connection is None:
            if not self.uses_embedded():
                self._connection = {"conninfo": self.dsn or "", **self.params}
            else:
                server = self.embedded_server()
                self._connection = {"conninfo": server.conninfo(embedded.DATABASE)}
        return self._connection

    def open(self) -> UserSpace:
        if self._space is None:
            self._space = UserSpace(
                schema=self.schema, **options_from_environment(), **self.connection()
            )
        return self._space

    def close(self) -> None:
        if self._space is not None:
            self._space.close()
