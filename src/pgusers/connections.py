"""What the sync and async drivers share about connections and their failures."""

import select
from typing import Any

import psycopg

from pgusers.errors import DatabaseUnavailableError
from pgusers.target import Target

STREAM_BATCH = 1000
"""Rows fetched per round trip by ``all_users`` and ``list_sessions``."""

STREAM_CURSOR = "pgusers_stream"


def connection_lost(error: psycopg.Error) -> bool:
    """Tell whether ``error`` means the connection died (rather than the statement failed)."""
    return (
        isinstance(error, psycopg.InterfaceError)
        or error.sqlstate is None
        or error.sqlstate.startswith(("08", "57P"))
    )


def unavailable(where: Target, error: Exception) -> DatabaseUnavailableError:
    """Return the exception raised for a database that cannot serve a call."""
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return DatabaseUnavailableError(f"database {where.describe()} is unavailable: {reason}")


def needs_check(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Tell whether a pooled connection must be tested before use.

    An idle connection has nothing to read, so this usually costs no round trip; a
    readable socket means TLS bookkeeping or the server's goodbye (a restart,
    ``pg_terminate_backend``), and only then is a test query worth its round trip.
    """
    return bool(select.select([conn.fileno()], [], [], 0)[0])
