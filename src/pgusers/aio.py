"""AsyncUserSpace: the asyncio API, sharing every rule and statement with UserSpace.

The operations come from :class:`pgusers.core.Core` unchanged; only the driver
differs: statements run on psycopg's async connections, and password hashing runs
in a worker thread so the event loop never waits for it.
"""

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import psycopg
from argon2 import PasswordHasher
from psycopg_pool import AsyncConnectionPool

from pgusers import schema, target
from pgusers.codec import Serializer
from pgusers.config import POOL_NAME_PREFIX, Options, Registry, pool_arguments, prepare
from pgusers.connections import (
    STREAM_BATCH,
    STREAM_CURSOR,
    AsyncRows,
    after_failure,
    checkout,
    needs_check,
    statement_undone,
    unavailable,
)
from pgusers.core import CheckResult, Core, LoginResult, Query, SessionRow, UserRow
from pgusers.errors import BadCallError
from pgusers.steps import Execute, Fetch, Operation, Stepper

T = TypeVar("T")

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


@cache
def _hashing_threads() -> ThreadPoolExecutor:
    # Argon2 is CPU-bound and releases the GIL: one thread per core gives full
    # throughput, and more would only crowd out the event loop's own thread.
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="pgusers-hash")


async def _still_connected(conn: AsyncConn) -> bool:
    if conn.closed:
        return False
    if needs_check(conn):
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.OperationalError:
            return False
    return True


async def _execute(conn: AsyncConn, step: Execute) -> Any:
    cursor = await conn.execute(step.query, step.params)
    if step.fetch is Fetch.ONE:
        return await cursor.fetchone()
    if step.fetch is Fetch.ALL:
        return await cursor.fetchall()
    return cursor.rowcount


class AsyncUserSpace:
    """User accounts and sessions in one PostgreSQL database, for asyncio.

    Takes the same arguments as :class:`pgusers.UserSpace`, and has the same
    methods as coroutines (``all_users`` and ``list_sessions`` are async
    generators). Open it with ``async with AsyncUserSpace(...) as usp:`` or
    ``usp = await AsyncUserSpace.connect(...)``. Within one event loop, the same
    target gives the same object.
    """

    _registry: ClassVar[Registry["AsyncUserSpace"]] = Registry()
    _core: Core
    _target: target.Target
    _key: tuple[object, ...]
    _options: Options
    _pool: AsyncConnectionPool[AsyncConn] | None
    _opening: asyncio.Lock
    _held: int
    _guard: "asyncio.Task[None] | None"

    def __new__(
        cls,
        dbname: str | None = None,
        *,
        conninfo: str = "",
        schema: str | None = None,
        serializer: Serializer | None = None,
        hasher: PasswordHasher | None = None,
        pool_min: int | None = None,
        pool_max: int | None = None,
        pool_timeout: float | None = None,
        **conn_kwargs: Any,
    ) -> "AsyncUserSpace":
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BadCallError(
                "AsyncUserSpace must be created inside a running event loop"
            ) from None
        options = Options(schema, serializer, hasher, pool_min, pool_max, pool_timeout)
        where, core, space_key = prepare(options, dbname, conninfo, conn_kwargs)
        key = (loop, *space_key)
        return cls._registry.get_or_open(key, options, lambda: cls._new(where, key, core, options))

    @classmethod
    def _new(
        cls, where: target.Target, key: tuple[object, ...], core: Core, options: Options
    ) -> "AsyncUserSpace":
        self = super().__new__(cls)
        self._core = core
        self._target = where
        self._key = key
        self._options = options
        self._pool = None
        self._opening = asyncio.Lock()
        self._held = 0
        self._guard = None
        return self

    @classmethod
    async def connect(cls, dbname: str | None = None, **kwargs: Any) -> "AsyncUserSpace":
        """Open a userspace and return it (the async way to write ``UserSpace(...)``)."""
        space = cls(dbname, **kwargs)
        await space._open()
        return space

    async def _open(self) -> None:
        async with self._opening:
            if self._pool is not None:
                return
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._target.conninfo, **self._target.connection_options
                ) as conn:

                    async def acquire() -> AsyncConn:
                        return conn

                    async def release(_: AsyncConn) -> None:
                        return None

                    for operation in (schema.migrate(self._core.schema), self._core.load_ttl()):
                        await self._drive(operation, acquire, release)
            except psycopg.OperationalError as error:
                raise unavailable(self._target, error) from None
            pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
                **pool_arguments(self._target, self._options), open=False
            )
            # Waiting for the first connections means none is still being made when a
            # short program ends right after opening.
            await pool.open(wait=True)
            self._pool = pool
            self._guard = asyncio.get_running_loop().create_task(
                self._close_at_shutdown(), name=f"pgusers guard {self._target.describe()}"
            )

    async def _close_at_shutdown(self) -> None:
        # asyncio.run() cancels every task left when the main coroutine returns, and
        # waits for them. The pool's own tasks outlive a cancellation while they
        # connect (they try again), so a userspace left open would keep the program
        # from ending: this task, cancelled with them, closes the pool.
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    def __repr__(self) -> str:
        state = " open" if self._pool and not self._pool.closed else " closed"
        return f"<AsyncUserSpace {self._target.describe()} schema={self._core.schema}{state}>"

    @property
    def ttl(self) -> float:
        """The session time to live in force, in seconds (default 864000, ten days)."""
        return self._core.ttl

    # -- running operations ----------------------------------------------------

    async def _drive(
        self,
        operation: Operation[T],
        acquire: Callable[[], Awaitable[AsyncConn]],
        release: Callable[[AsyncConn], Awaitable[None]],
    ) -> T:
        stepper = Stepper(operation)
        conn = None
        try:
            step = stepper.start()
            while step is not None:
                if isinstance(step, Execute):
                    conn = conn or await acquire()
                    try:
                        result = await _execute(conn, step)
                    except psycopg.Error as error:
                        step = stepper.fail(error, repeatable=statement_undone(conn))
                        continue
                else:
                    # Hashing runs in a worker thread, holding no connection.
                    if conn is not None:
                        await release(conn)
                        conn = None
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(_hashing_threads(), step.func, *step.args)
                step = stepper.send(result)
            return stepper.value  # type: ignore[no-any-return]
        finally:
            stepper.close()
            if conn is not None:
                await release(conn)

    def _live_pool(self) -> AsyncConnectionPool[AsyncConn]:
        if self._pool is None or self._pool.closed:
            raise BadCallError(f"{self!r} is not open; use 'async with' or connect()")
        return self._pool

    async def _run(self, start: Callable[[], Operation[T]], *, retry: bool = False) -> T:
        self._live_pool()  # a call on a userspace that is not open fails before anything
        operation = start()  # arguments are checked before any I/O
        try:
            return await self._drive(operation, self._getconn, self._putconn)
        except psycopg.Error as error:
            after_failure(error, self._target, may_retry=retry)
            return await self._run(start)

    async def _getconn(self) -> AsyncConn:
        pool = self._live_pool()
        with checkout(self._target, repr(self), lambda: self._held >= pool.max_size):
            while True:
                conn = await pool.getconn()
                if await _still_connected(conn):
                    self._held += 1
                    return conn
                await conn.close()
                await pool.putconn(conn)

    async def _putconn(self, conn: AsyncConn) -> None:
        self._held -= 1
        if self._pool is not None:
            await self._pool.putconn(conn)

    async def _stream(self, query: Query) -> AsyncGenerator[Any, None]:
        self._live_pool()
        for attempt in (1, 2):
            started = False
            conn = await self._getconn()
            try:
                async with conn.transaction(), conn.cursor(name=STREAM_CURSOR) as cursor:
                    cursor.itersize = STREAM_BATCH
                    await cursor.execute(query.sql, query.params)
                    async for row in cursor:
                        started = True
                        yield query.convert(row)
                return
            except psycopg.Error as error:
                after_failure(error, self._target, may_retry=attempt == 1 and not started)
            finally:
                await self._putconn(conn)

    # -- the public API ----------------------------------------------------------

    async def close(self) -> None:
        """Close the connections; safe to call twice. A userspace still open when
        its event loop shuts down (``asyncio.run`` returning) is closed then."""
        self._registry.forget(self._key, self)
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()
        if self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def create_user(
        self,
        username: str,
        password: str,
        email: str,
        admin: bool = False,
        extra_data: Any = None,
    ) -> int:
        """See :meth:`pgusers.UserSpace.create_user`."""
        return await self._run(
            lambda: self._core.create_user(username, password, email, admin, extra_data)
        )

    async def validate_user(
        self, username: str, password: str, extra_data: Any = None
    ) -> LoginResult:
        """See :meth:`pgusers.UserSpace.validate_user`."""
        return await self._run(
            lambda: self._core.validate_user(username, password, extra_data), retry=True
        )

    async def delete_user(self, username: str | None = None, userid: int | None = None) -> int:
        """See :meth:`pgusers.UserSpace.delete_user`."""
        return await self._run(lambda: self._core.delete_user(username, userid))

    async def change_password(
        self,
        userid: int,
        newpassword: str,
        oldpassword: str | None = None,
        *,
        end_sessions: bool = False,
    ) -> int:
        """See :meth:`pgusers.UserSpace.change_password`."""
        return await self._run(
            lambda: self._core.change_password(userid, newpassword, oldpassword, end_sessions)
        )

    async def check_key(self, key: str) -> CheckResult:
        """See :meth:`pgusers.UserSpace.check_key`."""
        return await self._run(lambda: self._core.check_key(key), retry=True)

    async def set_session_TTL(self, secs: float) -> None:  # noqa: N802 - the original's name
        """See :meth:`pgusers.UserSpace.set_session_TTL`."""
        await self._run(lambda: self._core.set_session_TTL(secs), retry=True)

    async def find_user(
        self,
        username: str | None = None,
        email: str | None = None,
        userid: int | None = None,
    ) -> dict[str, Any] | None:
        """See :meth:`pgusers.UserSpace.find_user`."""
        return await self._run(lambda: self._core.find_user(username, email, userid), retry=True)

    async def modify_user(
        self,
        userid: int,
        username: str | None = None,
        email: str | None = None,
        extra_data: Any = None,
    ) -> int:
        """See :meth:`pgusers.UserSpace.modify_user`."""
        return await self._run(
            lambda: self._core.modify_user(userid, username, email, extra_data), retry=True
        )

    async def is_admin(self, userid: int) -> bool:
        """See :meth:`pgusers.UserSpace.is_admin`."""
        return await self._run(lambda: self._core.is_admin(userid), retry=True)

    async def set_admin(self, userid: int, admin: bool = True) -> int:
        """See :meth:`pgusers.UserSpace.set_admin`."""
        return await self._run(lambda: self._core.set_admin(userid, admin), retry=True)

    def all_users(self) -> AsyncRows[UserRow]:
        """See :meth:`pgusers.UserSpace.all_users`; use with ``async for``."""
        return AsyncRows(self._stream(self._core.all_users()))

    def list_sessions(self, uid: int, expired: bool = False) -> AsyncRows[SessionRow]:
        """See :meth:`pgusers.UserSpace.list_sessions`; use with ``async for``."""
        return AsyncRows(self._stream(self._core.list_sessions(uid, expired)))

    async def kill_sessions(self, uid: int, expired: bool = False) -> int:
        """See :meth:`pgusers.UserSpace.kill_sessions`."""
        return await self._run(lambda: self._core.kill_sessions(uid, expired), retry=True)
