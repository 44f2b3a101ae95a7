"""The two drivers, side by side: each runs the core's operations on its own pool.

:class:`SyncDriver` blocks (threads), :class:`AsyncDriver` awaits (asyncio); the
two are kept together so they are read and changed together, as psycopg keeps
``wait`` and ``wait_async``. What they decide is not here: the steps come from
:mod:`pgusers._core.steps`, what may run again from :mod:`pgusers._core.retries`,
and the failure and checkout rules from :mod:`pgusers._drivers.connections`. What
is here is the I/O: connections, the pool, cursors and the thread for hashing.
"""

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout

from pgusers._core import migrations
from pgusers._core.operations import Core, Query
from pgusers._core.retries import operation_may_retry
from pgusers._core.steps import Execute, Fetch, Operation, Step, Stepper
from pgusers._drivers.connections import (
    STREAM_BATCH,
    STREAM_CURSOR,
    failure,
    needs_check,
    refusal,
    statement_undone,
    unavailable,
)
from pgusers._drivers.listener import Listener
from pgusers._drivers.target import Target
from pgusers._drivers.wiring import POOL_NAME_PREFIX, Wiring
from pgusers._errors import BadCallError, DatabaseError

T = TypeVar("T")

Conn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


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


def _listener(where: Target, wiring: Wiring, core: Core) -> Listener | None:
    """The session cache's listener, when the userspace has a cache."""
    if core.cache is None:
        return None
    listen = wiring.listen_conninfo or where.conninfo
    return Listener(core.cache, core.schema, listen, where.conninfo, where.connection_options)


def _fetch(cursor: psycopg.Cursor[Any], fetch: Fetch) -> Any:
    if fetch is Fetch.ONE:
        return cursor.fetchone()
    if fetch is Fetch.ALL:
        return cursor.fetchall()
    return cursor.rowcount


async def _fetch_async(cursor: psycopg.AsyncCursor[Any], fetch: Fetch) -> Any:
    if fetch is Fetch.ONE:
        return await cursor.fetchone()
    if fetch is Fetch.ALL:
        return await cursor.fetchall()
    return cursor.rowcount


class SyncDriver:
    """Runs operations on a :class:`psycopg_pool.ConnectionPool`, hashing inline."""

    def __init__(self, where: Target, wiring: Wiring, core: Core, name: str) -> None:
        self.target = where
        self._wiring = wiring
        self._core = core
        self._name = name
        self._lock = threading.Lock()
        self._held = 0
        self._pid = os.getpid()
        self._pool: ConnectionPool[Conn] | None = None
        self._listener = _listener(where, wiring, core)

    def open(self) -> bool:
        """Bring the schema up to date on a connection of its own, then open the pool
        and wait for its first connections; return whether this call opened it (a
        second call does nothing)."""
        with self._lock:
            if self._pool is not None:
                return False
            try:
                with psycopg.Connection.connect(
                    self.target.conninfo, **self.target.connection_options
                ) as conn:
                    for operation in (
                        migrations.migrate(self._core.schema),
                        self._core.load_ttl(),
                    ):
                        self._drive(operation, lambda: conn, lambda _: None)
            except psycopg.OperationalError as error:
                raise unavailable(self.target, error) from None
            pool = self._new_pool()
            if self._listener is not None:
                try:
                    self._listener.start()
                except psycopg.OperationalError as error:
                    pool.close()
                    raise unavailable(self.target, error) from None
                except BadCallError:
                    pool.close()
                    raise
            self._pool = pool
            return True

    def _new_pool(self) -> ConnectionPool[Conn]:
        self._pid = os.getpid()
        self._held = 0
        pool: ConnectionPool[Conn] = ConnectionPool(
            **self._wiring.pool_arguments(self.target), open=False
        )
        # Waiting for the first connections means none is still being made when a
        # short program ends right after opening.
        try:
            pool.open(wait=True, timeout=self._wiring.timeout)
        except PoolTimeout as error:
            pool.close()
            raise unavailable(self.target, error) from None
        return pool

    @property
    def closed(self) -> bool:
        return self._pool is None or self._pool.closed

    def close(self) -> None:
        # In a forked child the pool still is the parent's: closing it would end the
        # parent's connections, so the child leaves it alone.
        if self._listener is not None:
            self._listener.stop()
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()

    def _live_pool(self) -> ConnectionPool[Conn]:
        if self._pool is None:
            raise BadCallError(f"{self._name} is not open")
        if self._pool.closed:
            raise BadCallError(f"{self._name} is closed")
        if self._pid != os.getpid():
            # A forked child (a pre-forking web server's worker) inherits the parent's
            # pool, whose connections belong to the parent and whose threads did not
            # survive the fork: it opens a pool of its own.
            with self._lock:
                if self._pid != os.getpid() and not self._pool.closed:
                    self._pool = self._new_pool()
                    if self._listener is not None:
                        self._listener.restart_in_child()
        return self._pool

    def _drive(
        self, operation: Operation[T], acquire: Callable[[], Conn], release: Callable[[Conn], None]
    ) -> T:
        stepper = Stepper(operation)
        conn = None
        try:
            step: Step | None = stepper.start()
            while step is not None:
                if isinstance(step, Execute):
                    conn = conn or acquire()
                    try:
                        result = _fetch(conn.execute(step.query, step.params), step.fetch)
                    except psycopg.Error as error:
                        step = stepper.fail(error, undone=statement_undone(conn))
                        continue
                else:
                    # A connection is held only while SQL runs, not while a hash is made.
                    if conn is not None and not step.in_transaction:
                        release(conn)
                        conn = None
                    result = step.func(*step.args)
                step = stepper.send(result)
            return stepper.value
        finally:
            stepper.close()
            if conn is not None:
                release(conn)

    def run(self, method: Callable[..., Operation[T]], *args: object) -> T:
        """Run ``method(*args)``, an operation of the core, on pooled connections."""
        self._live_pool()  # a call on a userspace that is not open fails before anything
        operation = method(*args)  # arguments are checked before any I/O
        for attempt in (1, 2):
            try:
                return self._drive(operation, self._getconn, self._putconn)
            except psycopg.Error as error:
                _give_up_unless(attempt == 1, self.target, error, method)
            operation = method(*args)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _getconn(self) -> Conn:
        pool = self._live_pool()
        while True:
            try:
                conn = pool.getconn()
            except (PoolClosed, PoolTimeout) as error:
                raise refusal(self.target, self._name, error, self._held >= pool.max_size) from None
            if not conn.closed and not (needs_check(conn) and not _answers(conn)):
                with self._lock:
                    self._held += 1
                return conn
            # The pool replaces a connection handed back closed, at once.
            conn.close()
            pool.putconn(conn)

    def _putconn(self, conn: Conn) -> None:
        with self._lock:
            self._held -= 1
        if self._pool is not None:
            self._pool.putconn(conn)

    def stream(self, method: Callable[..., Query[T]], *args: object) -> Generator[T, None, None]:
        """Return a generator of the rows of ``method(*args)``, a streamed query of the
        core (the arguments are checked now, the query runs when it is iterated)."""
        self._live_pool()
        return self._stream(method(*args), method)

    def _stream(self, query: Query[T], method: Callable[..., Query[T]]) -> Generator[T, None, None]:
        self._live_pool()
        for attempt in (1, 2):
            started = False
            try:
                with (
                    self._connection() as conn,
                    conn.transaction(),
                    conn.cursor(name=STREAM_CURSOR) as cursor,
                ):
                    cursor.itersize = STREAM_BATCH
                    for row in cursor.execute(query.sql, query.params):
                        started = True
                        yield query.convert(row)
                return
            except psycopg.Error as error:
                _give_up_unless(attempt == 1 and not started, self.target, error, method)

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        conn = self._getconn()
        try:
            yield conn
        finally:
            self._putconn(conn)


def _give_up_unless(
    retrying: bool, where: Target, error: psycopg.Error, method: Callable[..., object]
) -> None:
    """Raise what a failed call raises, unless ``retrying`` and the failure allows it."""
    if not (retrying and operation_may_retry(error, method)):
        raised = failure(where, error)
        # A refused statement keeps its cause (the psycopg error, with its diagnostics);
        # a lost connection does not, as its text may name the server's address.
        raise raised from (error if isinstance(raised, DatabaseError) else None)


def _answers(conn: Conn) -> bool:
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.OperationalError:
        return False
    return True


async def _answers_async(conn: AsyncConn) -> bool:
    try:
        await AsyncConnectionPool.check_connection(conn)
    except psycopg.OperationalError:
        return False
    return True


class AsyncDriver:
    """Runs operations on a :class:`psycopg_pool.AsyncConnectionPool`, hashing in a
    worker thread so the event loop never waits for it."""

    def __init__(self, where: Target, wiring: Wiring, core: Core, name: str) -> None:
        self.target = where
        self._wiring = wiring
        self._core = core
        self._name = name
        self._held = 0
        self._opening = asyncio.Lock()
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._guard: asyncio.Task[None] | None = None
        self._listener = _listener(where, wiring, core)

    async def open(self) -> bool:
        """Bring the schema up to date on a connection of its own, then open the pool;
        return whether this call opened it (a second call does nothing)."""
        async with self._opening:
            if self._pool is not None:
                return False
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.target.conninfo, **self.target.connection_options
                ) as conn:

                    async def acquire() -> AsyncConn:
                        return conn

                    async def release(_: AsyncConn) -> None:
                        return None

                    for operation in (
                        migrations.migrate(self._core.schema),
                        self._core.load_ttl(),
                    ):
                        await self._drive(operation, acquire, release)
            except psycopg.OperationalError as error:
                raise unavailable(self.target, error) from None
            pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
                **self._wiring.pool_arguments(self.target), open=False
            )
            # Waiting for the first connections means none is still being made when a
            # short program ends right after opening.
            try:
                await pool.open(wait=True, timeout=self._wiring.timeout)
            except PoolTimeout as error:
                await pool.close()
                raise unavailable(self.target, error) from None
            if self._listener is not None:
                try:
                    await asyncio.to_thread(self._listener.start)
                except psycopg.OperationalError as error:
                    await pool.close()
                    raise unavailable(self.target, error) from None
                except BadCallError:
                    await pool.close()
                    raise
            self._pool = pool
            return True

    def close_at_shutdown(self, close: Callable[[], Awaitable[None]]) -> None:
        """Have ``close`` run when the event loop shuts down with the userspace open.

        ``asyncio.run()`` cancels every task left when the main coroutine returns, and
        waits for them. The pool's own tasks outlive a cancellation while they connect
        (they try again), so an open pool would keep the program from ending: a task
        that is cancelled with them closes it.
        """

        async def guard() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await close()

        self._guard = asyncio.get_running_loop().create_task(guard(), name=f"{self._name} guard")

    @property
    def closed(self) -> bool:
        return self._pool is None or self._pool.closed

    async def close(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        if self._pool is not None:
            await self._pool.close()

    def _live_pool(self) -> AsyncConnectionPool[AsyncConn]:
        if self._pool is None:
            raise BadCallError(f"{self._name} is not open; use 'async with' or connect()")
        if self._pool.closed:
            raise BadCallError(f"{self._name} is closed")
        return self._pool

    async def _drive(
        self,
        operation: Operation[T],
        acquire: Callable[[], Awaitable[AsyncConn]],
        release: Callable[[AsyncConn], Awaitable[None]],
    ) -> T:
        stepper = Stepper(operation)
        conn = None
        try:
            step: Step | None = stepper.start()
            while step is not None:
                if isinstance(step, Execute):
                    conn = conn or await acquire()
                    try:
                        cursor = await conn.execute(step.query, step.params)
                        result = await _fetch_async(cursor, step.fetch)
                    except psycopg.Error as error:
                        step = stepper.fail(error, undone=statement_undone(conn))
                        continue
                else:
                    # Hashing runs in a worker thread, holding no connection.
                    if conn is not None and not step.in_transaction:
                        await release(conn)
                        conn = None
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(_hashing_threads(), step.func, *step.args)
                step = stepper.send(result)
            return stepper.value
        finally:
            stepper.close()
            if conn is not None:
                await release(conn)

    async def run(self, method: Callable[..., Operation[T]], *args: object) -> T:
        """Run ``method(*args)``, an operation of the core, on pooled connections."""
        self._live_pool()  # a call on a userspace that is not open fails before anything
        operation = method(*args)  # arguments are checked before any I/O
        for attempt in (1, 2):
            try:
                return await self._drive(operation, self._getconn, self._putconn)
            except psycopg.Error as error:
                _give_up_unless(attempt == 1, self.target, error, method)
            operation = method(*args)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _getconn(self) -> AsyncConn:
        pool = self._live_pool()
        while True:
            try:
                conn = await pool.getconn()
            except (PoolClosed, PoolTimeout) as error:
                raise refusal(self.target, self._name, error, self._held >= pool.max_size) from None
            if not conn.closed and not (needs_check(conn) and not await _answers_async(conn)):
                self._held += 1
                return conn
            await conn.close()
            await pool.putconn(conn)

    async def _putconn(self, conn: AsyncConn) -> None:
        self._held -= 1
        if self._pool is not None:
            await self._pool.putconn(conn)

    def stream(self, method: Callable[..., Query[T]], *args: object) -> AsyncGenerator[T, None]:
        """Return an async generator of the rows of ``method(*args)``, a streamed query
        of the core (the arguments are checked now, the query runs when it is iterated)."""
        self._live_pool()
        return self._stream(method(*args), method)

    async def _stream(
        self, query: Query[T], method: Callable[..., Query[T]]
    ) -> AsyncGenerator[T, None]:
        self._live_pool()
        for attempt in (1, 2):
            started = False
            try:
                async with (
                    self._connection() as conn,
                    conn.transaction(),
                    conn.cursor(name=STREAM_CURSOR) as cursor,
                ):
                    cursor.itersize = STREAM_BATCH
                    async for row in await cursor.execute(query.sql, query.params):
                        started = True
                        yield query.convert(row)
                return
            except psycopg.Error as error:
                _give_up_unless(attempt == 1 and not started, self.target, error, method)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConn]:
        conn = await self._getconn()
        try:
            yield conn
        finally:
            await self._putconn(conn)
