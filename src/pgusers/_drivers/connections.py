"""What the sync and async drivers share about connections and their failures."""

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import PoolClosed, PoolTimeout

from pgusers._core.retries import connection_lost
from pgusers._drivers.target import Target
from pgusers._errors import BadCallError, DatabaseUnavailableError, PoolExhaustedError

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


def failure(where: Target, error: psycopg.Error) -> Exception:
    """Return what a call that failed with ``error`` raises: the statement's own error,
    or :class:`DatabaseUnavailableError` when the connection was lost."""
    return unavailable(where, error) if connection_lost(error) else error


@contextmanager
def checkout(where: Target, name: str, all_in_use: Callable[[], bool]) -> Iterator[None]:
    """Turn a pool's refusal to hand out a connection into pgusers' exceptions:
    :class:`PoolExhaustedError` when ``all_in_use()`` says the userspace itself holds
    every connection, :class:`DatabaseUnavailableError` when none could be made."""
    try:
        yield
    except PoolClosed:
        raise BadCallError(f"{name} is closed") from None
    except PoolTimeout as error:
        if all_in_use():
            raise PoolExhaustedError(
                f"{name}: every connection of its pool stayed in use; close unfinished "
                "all_users() or list_sessions() iterators (with close() or a with "
                "block), or raise pool_max"
            ) from None
        raise unavailable(where, error) from None
