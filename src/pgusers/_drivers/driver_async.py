"""The asyncio driver: runs the core's operations on an asyncio connection pool.

This is the one driver written by hand: ``tools/async_to_sync.py`` makes the
blocking one (:mod:`pgusers._drivers.driver_sync`) from it, and CI fails when that
file is stale. What the driver decides is not here: the steps come from
:mod:`pgusers._core.steps`, what may run again from :mod:`pgusers._core.retries`,
the failure and checkout rules from :mod:`pgusers._drivers.connections`, and the
primitives in which the two drivers differ from :mod:`pgusers._drivers.shared`.
What is here is the I/O: connections, the pool, cursors and password work.
"""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from pgusers._core import migrations
from pgusers._core.base import Query
from pgusers._core.operations import Core
from pgusers._core.steps import Execute, Operation, Step, Stepper
from pgusers._drivers import tracing
from pgusers._drivers.connections import (
    STREAM_BATCH,
    STREAM_CURSOR,
    failure,
    needs_check,
    refusal,
    statement_undone,
    unavailable,
)
from pgusers._drivers.shared import (
    NOT_OPEN_ASYNC,
    AcquireAsync,
    AsyncConn,
    AsyncOpeningLock,
    AsyncRows,
    ReleaseAsync,
    answers_async,
    fetch_async,
    give_up_unless,
    in_thread_async,
    listener_for,
    offload_async,
)
from pgusers._drivers.target import Target
from pgusers._drivers.wiring import Wiring
from pgusers._errors import BadCallError

T = TypeVar("T")


class AsyncDriver:
    """Runs operations on a pool of connections, each operation's statements on one
    connection, held only while SQL runs.

    Password work goes where :mod:`pgusers._drivers.shared` offloads it (for asyncio,
    a hashing thread; for the blocking driver, the calling thread). A forked child
    opens a pool of its own: the parent's connections are not its to use."""

    def __init__(self, where: Target, wiring: Wiring, core: Core, name: str) -> None:
        self.target = where
        self._wiring = wiring
        self._core = core
        self._name = name
        self._opening = AsyncOpeningLock()
        self._counting = threading.Lock()
        self._held = 0
        self._pid = os.getpid()
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._listener = listener_for(where, wiring, core.cache, core.schema)
        # ASYNC ONLY
        self._guard: asyncio.Task[None] | None = None
        # END ASYNC ONLY

    async def open(self) -> bool:
        """Bring the schema up to date on a connection of its own, then open the pool
        and wait for its first connections; return whether this call opened it (a
        second call does nothing)."""
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
            pool = await self._new_pool()
            if self._listener is not None:
                try:
                    await in_thread_async(self._listener.start)
                except psycopg.OperationalError as error:
                    await pool.close()
                    raise unavailable(self.target, error) from None
                except BadCallError:
                    await pool.close()
                    raise
            self._pool = pool
            return True

    async def _new_pool(self) -> AsyncConnectionPool[AsyncConn]:
        self._pid = os.getpid()
        self._held = 0
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
        return pool

    # ASYNC ONLY
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

    # END ASYNC ONLY
    @property
    def closed(self) -> bool:
        return self._pool is None or self._pool.closed

    async def close(self) -> None:
        # ASYNC ONLY
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()
        # END ASYNC ONLY
        if self._listener is not None:
            await in_thread_async(self._listener.stop)
        # In a forked child the pool still is the parent's: closing it would end the
        # parent's connections, so the child leaves it alone.
        if self._pool is not None and self._pid == os.getpid():
            await self._pool.close()

    def _live_pool(self) -> AsyncConnectionPool[AsyncConn]:
        if self._pool is None:
            raise BadCallError(self._name + NOT_OPEN_ASYNC)
        if self._pool.closed:
            raise BadCallError(f"{self._name} is closed")
        return self._pool

    async def _pool_of_this_process(self) -> AsyncConnectionPool[AsyncConn]:
        pool = self._live_pool()
        if self._pid == os.getpid():
            return pool
        # A forked child (a pre-forking web server's worker) inherits the parent's
        # pool, whose connections belong to the parent and whose threads did not
        # survive the fork: it opens a pool of its own.
        async with self._opening:
            if self._pid != os.getpid():
                self._pool = await self._new_pool()
                if self._listener is not None:
                    self._listener.restart_in_child()
        return self._live_pool()

    async def _drive(
        self, operation: Operation[T], acquire: AcquireAsync, release: ReleaseAsync
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
                        result = await fetch_async(cursor, step.fetch)
                    except psycopg.Error as error:
                        step = stepper.fail(error, undone=statement_undone(conn))
                        continue
                else:
                    # A connection is held only while SQL runs, not while a hash is made.
                    if conn is not None and not step.in_transaction:
                        await release(conn)
                        conn = None
                    if step.waits:
                        result = await in_thread_async(partial(step.func, *step.args))
                    else:
                        result = await offload_async(step.func, step.args)
                step = stepper.send(result)
            return stepper.value
        finally:
            stepper.close()
            if conn is not None:
                await release(conn)

    async def run(self, method: Callable[..., Operation[T]], *args: object) -> T:
        """Run ``method(*args)``, an operation of the core, on pooled connections."""
        self._live_pool()  # a call on a userspace that is not open fails before anything
        with tracing.span(method):
            operation = method(*args)  # arguments are checked before any I/O
            for attempt in (1, 2):
                try:
                    return await self._drive(operation, self._getconn, self._putconn)
                except psycopg.Error as error:
                    give_up_unless(attempt == 1, self.target, error, method)
                operation = method(*args)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def run_on(
        self, conn: AsyncConn, method: Callable[..., Operation[T]], *args: object
    ) -> T:
        """Run ``method(*args)`` on the application's own connection, in whatever
        transaction it is in; never again on failure (the transaction is the
        application's to retry)."""
        self._live_pool()
        operation = method(*args)  # arguments are checked before any I/O

        async def given() -> AsyncConn:
            return conn

        async def kept(_: AsyncConn) -> None:
            return None

        try:
            return await self._drive(operation, given, kept)
        except psycopg.Error as error:
            raise failure(self.target, error) from None

    async def _getconn(self) -> AsyncConn:
        pool = await self._pool_of_this_process()
        while True:
            try:
                conn = await pool.getconn()
            except (PoolClosed, PoolTimeout) as error:
                raise refusal(self.target, self._name, error, self._held >= pool.max_size) from None
            if not conn.closed and not (needs_check(conn) and not await answers_async(conn)):
                with self._counting:
                    self._held += 1
                return conn
            # The pool replaces a connection handed back closed, at once.
            await conn.close()
            await pool.putconn(conn)

    async def _putconn(self, conn: AsyncConn) -> None:
        with self._counting:
            self._held -= 1
        if self._pool is not None:
            await self._pool.putconn(conn)

    def stream(self, method: Callable[..., Query[T]], *args: object) -> AsyncRows[T]:
        """Return a generator of the rows of ``method(*args)``, a streamed query of the
        core (the arguments are checked now, the query runs when it is iterated)."""
        self._live_pool()
        return self._stream(method(*args), method)

    async def _stream(self, query: Query[T], method: Callable[..., Query[T]]) -> AsyncRows[T]:
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
                give_up_unless(attempt == 1 and not started, self.target, error, method)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConn]:
        conn = await self._getconn()
        try:
            yield conn
        finally:
            await self._putconn(conn)
