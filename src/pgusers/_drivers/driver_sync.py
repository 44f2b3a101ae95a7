# This file is generated from driver_async.py by tools/async_to_sync.py: edit that
# file and run the tool; CI fails when the two disagree.
"""The blocking driver: runs the core's operations on a connection pool, in the
calling thread.

Generated from :mod:`pgusers._drivers.driver_async`, which says what the driver
does and where its rules live.
"""

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

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
    NOT_OPEN,
    Acquire,
    Conn,
    OpeningLock,
    Release,
    Rows,
    answers,
    fetch,
    give_up_unless,
    in_thread,
    listener_for,
    offload,
)
from pgusers._drivers.target import Target
from pgusers._drivers.wiring import Wiring
from pgusers._errors import BadCallError

T = TypeVar("T")


class SyncDriver:
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
        self._opening = OpeningLock()
        self._counting = threading.Lock()
        self._held = 0
        self._pid = os.getpid()
        self._pool: ConnectionPool[Conn] | None = None
        self._listener = listener_for(where, wiring, core.cache, core.schema)

    def open(self) -> bool:
        """Bring the schema up to date on a connection of its own, then open the pool
        and wait for its first connections; return whether this call opened it (a
        second call does nothing)."""
        with self._opening:
            if self._pool is not None:
                return False
            try:
                with psycopg.Connection.connect(
                    self.target.conninfo, **self.target.connection_options
                ) as conn:

                    def acquire() -> Conn:
                        return conn

                    def release(_: Conn) -> None:
                        return None

                    for operation in (
                        migrations.migrate(self._core.schema),
                        self._core.load_ttl(),
                    ):
                        self._drive(operation, acquire, release)
            except psycopg.OperationalError as error:
                raise unavailable(self.target, error) from None
            pool = self._new_pool()
            if self._listener is not None:
                try:
                    in_thread(self._listener.start)
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
        if self._listener is not None:
            in_thread(self._listener.stop)
        # In a forked child the pool still is the parent's: closing it would end the
        # parent's connections, so the child leaves it alone.
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()

    def _live_pool(self) -> ConnectionPool[Conn]:
        if self._pool is None:
            raise BadCallError(self._name + NOT_OPEN)
        if self._pool.closed:
            raise BadCallError(f"{self._name} is closed")
        return self._pool

    def _pool_of_this_process(self) -> ConnectionPool[Conn]:
        pool = self._live_pool()
        if self._pid == os.getpid():
            return pool
        # A forked child (a pre-forking web server's worker) inherits the parent's
        # pool, whose connections belong to the parent and whose threads did not
        # survive the fork: it opens a pool of its own.
        with self._opening:
            if self._pid != os.getpid():
                self._pool = self._new_pool()
                if self._listener is not None:
                    self._listener.restart_in_child()
        return self._live_pool()

    def _drive(self, operation: Operation[T], acquire: Acquire, release: Release) -> T:
        stepper = Stepper(operation)
        conn = None
        try:
            step: Step | None = stepper.start()
            while step is not None:
                if isinstance(step, Execute):
                    conn = conn or acquire()
                    try:
                        cursor = conn.execute(step.query, step.params)
                        result = fetch(cursor, step.fetch)
                    except psycopg.Error as error:
                        step = stepper.fail(error, undone=statement_undone(conn))
                        continue
                else:
                    # A connection is held only while SQL runs, not while a hash is made.
                    if conn is not None and not step.in_transaction:
                        release(conn)
                        conn = None
                    if step.waits:
                        result = in_thread(partial(step.func, *step.args))
                    else:
                        result = offload(step.func, step.args)
                step = stepper.send(result)
            return stepper.value
        finally:
            stepper.close()
            if conn is not None:
                release(conn)

    def run(self, method: Callable[..., Operation[T]], *args: object) -> T:
        """Run ``method(*args)``, an operation of the core, on pooled connections."""
        self._live_pool()  # a call on a userspace that is not open fails before anything
        with tracing.span(method):
            operation = method(*args)  # arguments are checked before any I/O
            for attempt in (1, 2):
                try:
                    return self._drive(operation, self._getconn, self._putconn)
                except psycopg.Error as error:
                    give_up_unless(attempt == 1, self.target, error, method)
                operation = method(*args)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def run_on(self, conn: Conn, method: Callable[..., Operation[T]], *args: object) -> T:
        """Run ``method(*args)`` on the application's own connection, in whatever
        transaction it is in; never again on failure (the transaction is the
        application's to retry)."""
        self._live_pool()
        operation = method(*args)  # arguments are checked before any I/O

        def given() -> Conn:
            return conn

        def kept(_: Conn) -> None:
            return None

        try:
            return self._drive(operation, given, kept)
        except psycopg.Error as error:
            raise failure(self.target, error) from None

    def _getconn(self) -> Conn:
        pool = self._pool_of_this_process()
        while True:
            try:
                conn = pool.getconn()
            except (PoolClosed, PoolTimeout) as error:
                raise refusal(self.target, self._name, error, self._held >= pool.max_size) from None
            if not conn.closed and not (needs_check(conn) and not answers(conn)):
                with self._counting:
                    self._held += 1
                return conn
            # The pool replaces a connection handed back closed, at once.
            conn.close()
            pool.putconn(conn)

    def _putconn(self, conn: Conn) -> None:
        with self._counting:
            self._held -= 1
        if self._pool is not None:
            self._pool.putconn(conn)

    def stream(self, method: Callable[..., Query[T]], *args: object) -> Rows[T]:
        """Return a generator of the rows of ``method(*args)``, a streamed query of the
        core (the arguments are checked now, the query runs when it is iterated)."""
        self._live_pool()
        return self._stream(method(*args), method)

    def _stream(self, query: Query[T], method: Callable[..., Query[T]]) -> Rows[T]:
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
                give_up_unless(attempt == 1 and not started, self.target, error, method)

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        conn = self._getconn()
        try:
            yield conn
        finally:
            self._putconn(conn)
