"""What the sync and async drivers share about connections and their failures."""

import select
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import PoolClosed, PoolTimeout

from pgusers._core.retries import connection_lost
from pgusers._drivers.target import Target
from pgusers._errors import (
    BadCallError,
    DatabaseError,
    DatabaseUnavailableError,
    PgUsersError,
    PoolExhaustedError,
)

STREAM_BATCH = 1000
"""Rows fetched per round trip by ``all_users`` and ``list_sessions``."""

STREAM_CURSOR = "pgusers_stream"


def unavailable(where: Target, error: Exception) -> DatabaseUnavailableError:
    """Return the exception raised for a database that cannot serve a call."""
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    return DatabaseUnavailableError(f"database {where.describe()} is unavailable: {reason}")


def statement_undone(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Tell whether a failed statement left nothing behind: it ran in its own
    transaction, which the server rolled back, so running it again is safe."""
    return conn.info.transaction_status == pq.TransactionStatus.IDLE


def needs_check(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Tell whether a pooled connection must be tested before use.

    An idle connection has nothing to read, so this usually costs no round trip; a
    readable socket means TLS bookkeeping or the server's goodbye (a restart,
    ``pg_terminate_backend``), and only then is a test query worth its round trip.
    """
    return bool(select.select([conn.fileno()], [], [], 0)[0])


def failure(where: Target, error: psycopg.Error) -> PgUsersError:
    """Return what a call that failed with ``error`` raises: :class:`DatabaseUnavailableError`
    when the connection was lost, else :class:`DatabaseError` with the server's
    SQLSTATE and the first line of its message."""
    if connection_lost(error):
        return unavailable(where, error)
    said = (str(error).strip().splitlines() or ["no message"])[0]
    code = f" ({error.sqlstate})" if error.sqlstate else ""
    return DatabaseError(f"the database refused{code}: {said}", error.sqlstate)


def refusal(
    where: Target, name: str, error: PoolClosed | PoolTimeout, all_in_use: bool
) -> Exception:
    """Return what a call raises when its pool handed out no connection:
    :class:`PoolExhaustedError` when ``all_in_use`` (the userspace itself holds every
    connection), :class:`DatabaseUnavailableError` when none could be made."""
    if isinstance(error, PoolClosed):
        return BadCallError(f"{name} is closed")
    if all_in_use:
        return PoolExhaustedError(
            f"{name}: every connection of its pool stayed in use; close unfinished "
            "all_users() or list_sessions() iterators (with close() or a with "
            "block), or raise pool_max"
        )
    return unavailable(where, error)
