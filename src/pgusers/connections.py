"""What the sync and async drivers share about connections and their failures."""

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import PoolClosed, PoolTimeout

from pgusers.errors import BadCallError, DatabaseUnavailableError
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


def after_failure(error: psycopg.Error, where: Target, *, may_retry: bool) -> None:
    """Decide what a call that failed with ``error`` does next.

    Returns when the call should be run again on a fresh connection; raises the
    statement's own error when the connection is fine, or
    :class:`DatabaseUnavailableError` when it was lost and a retry is not allowed.
    """
    if not connection_lost(error):
        raise error
    if not may_retry:
        raise unavailable(where, error) from None


@contextmanager
def checkout(where: Target, name: str) -> Iterator[None]:
    """Turn a pool's refusal to hand out a connection into pgusers' exceptions."""
    try:
        yield
    except PoolClosed:
        raise BadCallError(f"{name} is closed") from None
    except PoolTimeout as error:
        raise unavailable(where, error) from None
