"""What the sync and async drivers share about connections and their failures."""

import select
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import psycopg
from psycopg import pq
from psycopg_pool import PoolClosed, PoolTimeout

from pgusers.errors import BadCallError, DatabaseUnavailableError, PoolExhaustedError
from pgusers.target import Target

T = TypeVar("T")

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


class Rows(Generic[T]):
    """The rows of ``all_users`` or ``list_sessions``, fetched as they are iterated.

    The stream holds a pooled connection until it is read to the end or closed: use
    it in a ``with`` block, or call :meth:`close`, when you stop early.
    """

    def __init__(self, rows: Generator[T, None, None]) -> None:
        self._rows = rows

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        return next(self._rows)

    def close(self) -> None:
        """Stop reading and give the connection back to the pool."""
        self._rows.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRows(Generic[T]):
    """The asyncio form of :class:`Rows`: ``async for`` over it, and ``async with``
    it or ``await rows.aclose()`` when you stop early."""

    def __init__(self, rows: AsyncGenerator[T, None]) -> None:
        self._rows = rows

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return await anext(self._rows)

    async def aclose(self) -> None:
        """Stop reading and give the connection back to the pool."""
        await self._rows.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
