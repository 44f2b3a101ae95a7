"""What the two drivers share, and the few primitives in which they differ.

The blocking driver (:mod:`pgusers._drivers.driver_sync`) is generated from the
asyncio one (:mod:`pgusers._drivers.driver_async`) by ``tools/async_to_sync.py``:
``await`` and ``async`` go, and each name of an async primitive here becomes the
name of its blocking twin (``offload_async`` → ``offload``, ``AsyncConn`` →
``Conn``). So the two drivers are one piece of code; what differs is only here.
"""

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgusers._core.retries import operation_may_retry
from pgusers._core.steps import Fetch
from pgusers._drivers.connections import failure
from pgusers._drivers.listener import Listener
from pgusers._drivers.target import Target
from pgusers._drivers.wiring import POOL_NAME_PREFIX, Wiring
from pgusers._errors import DatabaseError

T = TypeVar("T")

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]

Acquire = Callable[[], Conn]
Release = Callable[[Conn], None]
AcquireAsync = Callable[[], Awaitable[AsyncConn]]
ReleaseAsync = Callable[[AsyncConn], Awaitable[None]]

Rows = Generator[T, None, None]
"""What a blocking driver's stream returns."""
AsyncRows = AsyncGenerator[T, None]
"""What the asyncio driver's stream returns."""

OpeningLock = threading.Lock
"""Held while a driver opens (or, in a forked child, re-opens) its pool."""
AsyncOpeningLock = asyncio.Lock

NOT_OPEN = " is not open"
NOT_OPEN_ASYNC = " is not open; use 'async with' or connect()"


class _CancelledConnects(logging.Filter):
    """Drops psycopg_pool's warning about a connection attempt of a pgusers pool that
    was cancelled: at an event loop's shutdown that is expected, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(args, tuple)
            and len(args) == 2
            and str(args[0]).startswith(POOL_NAME_PREFIX)
            and isinstance(args[1], asyncio.CancelledError)
        )


logging.getLogger("psycopg.pool").addFilter(_CancelledConnects())


HASHING_NICENESS = 10
"""How much lower than the rest of the process the hashing threads run (nice)."""


def _lower_priority() -> None:
    """Lower this thread's scheduling priority. On Linux a thread's nice value is
    its own: given by its native id, it leaves the event loop's thread as it was.
    Elsewhere, or where the system refuses, the thread keeps its priority."""
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + HASHING_NICENESS))
    except (AttributeError, OSError):
        pass


@cache
def _hashing_threads() -> ThreadPoolExecutor:
    # Argon2 is CPU-bound and releases the GIL: one thread per core gives full
    # throughput, and more would only crowd out the event loop's own thread. Below
    # the loop's priority, a burst of logins no longer stalls the loop for the
    # length of a hash when the cores are all busy.
    return ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1,
        thread_name_prefix="pgusers-hash",
        initializer=_lower_priority,
    )


def offload(func: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Password work, blocking: in the calling thread."""
    return func(*args)


async def offload_async(func: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Password work, for asyncio: in a hashing thread, so the event loop never waits."""
    return await asyncio.get_running_loop().run_in_executor(_hashing_threads(), func, *args)


def in_thread(func: Callable[[], T]) -> T:
    """Blocking work (the listener's start and stop): called as it is."""
    return func()


async def in_thread_async(func: Callable[[], T]) -> T:
    """Blocking work, for asyncio: in a thread."""
    return await asyncio.to_thread(func)


def fetch(cursor: psycopg.Cursor[Any], wanted: Fetch) -> Any:
    """What a step asked for of its statement's result."""
    if wanted is Fetch.ONE:
        return cursor.fetchone()
    if wanted is Fetch.ALL:
        return cursor.fetchall()
    return cursor.rowcount


async def fetch_async(cursor: psycopg.AsyncCursor[Any], wanted: Fetch) -> Any:
    if wanted is Fetch.ONE:
        return await cursor.fetchone()
    if wanted is Fetch.ALL:
        return await cursor.fetchall()
    return cursor.rowcount


def answers(conn: Conn) -> bool:
    """Whether a connection that was idle for long still answers."""
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.OperationalError:
        return False
    return True


async def answers_async(conn: AsyncConn) -> bool:
    try:
        await AsyncConnectionPool.check_connection(conn)
    except psycopg.OperationalError:
        return False
    return True


def listener_for(where: Target, wiring: Wiring, cache: Any, schema: str) -> Listener | None:
    """The session cache's listener, when the userspace has a cache."""
    if cache is None:
        return None
    listen = wiring.listen_conninfo or where.conninfo
    return Listener(cache, schema, listen, where.conninfo, where.connection_options)


def give_up_unless(
    retrying: bool, where: Target, error: psycopg.Error, method: Callable[..., object]
) -> None:
    """Raise what a failed call raises, unless ``retrying`` and the failure allows it."""
    if not (retrying and operation_may_retry(error, method)):
        raised = failure(where, error)
        # A refused statement keeps its cause (the psycopg error, with its diagnostics);
        # a lost connection does not, as its text may name the server's address.
        raise raised from (error if isinstance(raised, DatabaseError) else None)
