"""UserSpace: the blocking API, for threaded applications."""

import atexit
import os
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import psycopg
from argon2 import PasswordHasher
from psycopg_pool import ConnectionPool

from pgusers import schema, target
from pgusers.codec import Serializer
from pgusers.config import Options, Registry, pool_arguments, prepare
from pgusers.connections import (
    STREAM_BATCH,
    STREAM_CURSOR,
    Rows,
    after_failure,
    checkout,
    needs_check,
    statement_undone,
    unavailable,
)
from pgusers.core import CheckResult, Core, LoginResult, Query, SessionRow, UserRow
from pgusers.steps import Execute, Fetch, Operation, Stepper

T = TypeVar("T")


def _still_connected(conn: psycopg.Connection[Any]) -> bool:
    if conn.closed:
        return False
    if needs_check(conn):
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.OperationalError:
            return False
    return True


def _execute(conn: psycopg.Connection[Any], step: Execute) -> Any:
    cursor = conn.execute(step.query, step.params)
    if step.fetch is Fetch.ONE:
        return cursor.fetchone()
    if step.fetch is Fetch.ALL:
        return cursor.fetchall()
    return cursor.rowcount


def _close_open_userspaces() -> None:
    # The seed's API has no close(), so plain scripts end with their userspace open.
    # Their pools' threads are stopped here, while the interpreter is whole; left to
    # the interpreter's finalisation they can make the exit wait for seconds.
    for space in UserSpace._registry.open_spaces():
        space.close()


class UserSpace:
    """User accounts and sessions in one PostgreSQL database.

    ``UserSpace("userlist", host="db.example.com", user="app")`` connects to the
    existing database ``userlist``; every keyword other than the ones below is a
    libpq connection parameter, and ``conninfo`` takes a whole connection string or
    URI. Opening the same target again returns the same object.

    pgusers' own keywords: ``schema`` (where the tables live, default ``"pgusers"``),
    ``serializer`` (``"json"``, the default, or ``"pickle"``; see the README),
    ``hasher`` (an :class:`argon2.PasswordHasher` with your parameters),
    ``pool_min``/``pool_max`` (connections kept open / at most, default 1/10) and
    ``pool_timeout`` (seconds to wait for a connection, default 10).

    Raises :class:`BadCallError` for bad arguments and
    :class:`DatabaseUnavailableError` when the server cannot be reached.
    """

    _registry: ClassVar[Registry["UserSpace"]] = Registry()
    _core: Core
    _pool: ConnectionPool[psycopg.Connection[Any]]
    _target: target.Target
    _key: tuple[str, ...]
    _options: Options
    _pid: int
    _fork_lock: threading.Lock
    _held: int

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
    ) -> "UserSpace":
        options = Options(schema, serializer, hasher, pool_min, pool_max, pool_timeout)
        where, core, key = prepare(options, dbname, conninfo, conn_kwargs)
        return cls._registry.get_or_open(key, options, lambda: cls._open(where, key, core, options))

    @classmethod
    def _open(
        cls, where: target.Target, key: tuple[str, ...], core: Core, options: Options
    ) -> "UserSpace":
        self = super().__new__(cls)
        self._core = core
        self._target = where
        self._key = key
        self._options = options
        self._fork_lock = threading.Lock()
        self._held = 0
        try:
            with psycopg.Connection.connect(where.conninfo, **where.connection_options) as conn:
                for operation in (schema.migrate(core.schema), core.load_ttl()):
                    self._drive(operation, lambda: conn, lambda _: None)
        except psycopg.OperationalError as error:
            raise unavailable(where, error) from None
        self._pool = self._new_pool()
        return self

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        self._pid = os.getpid()
        return ConnectionPool(**pool_arguments(self._target, self._options), open=True)

    def _after_fork(self) -> None:
        # A forked child (a pre-forking web server's worker) inherits the parent's
        # pool: its connections belong to the parent and its threads did not survive
        # the fork. The child leaves them alone (closing them would end the parent's
        # sessions with the server) and opens a pool of its own.
        with self._fork_lock:
            if self._pid != os.getpid() and not self._pool.closed:
                self._pool = self._new_pool()
                self._held = 0

    def __repr__(self) -> str:
        state = " closed" if self._pool.closed else ""
        return f"<UserSpace {self._target.describe()} schema={self._core.schema}{state}>"

    @property
    def ttl(self) -> float:
        """The session time to live in force, in seconds (default 864000, ten days)."""
        return self._core.ttl

    # -- running operations ----------------------------------------------------

    def _drive(
        self,
        operation: Operation[T],
        acquire: Callable[[], psycopg.Connection[Any]],
        release: Callable[[psycopg.Connection[Any]], None],
    ) -> T:
        stepper = Stepper(operation)
        conn = None
        try:
            step = stepper.start()
            while step is not None:
                if isinstance(step, Execute):
                    conn = conn or acquire()
                    try:
                        result = _execute(conn, step)
                    except psycopg.Error as error:
                        step = stepper.fail(error, repeatable=statement_undone(conn))
                        continue
                else:
                    # A connection is held only while SQL runs, not while a hash is made.
                    if conn is not None:
                        release(conn)
                        conn = None
                    result = step.func(*step.args)
                step = stepper.send(result)
            return stepper.value  # type: ignore[no-any-return]
        finally:
            stepper.close()
            if conn is not None:
                release(conn)

    def _run(self, start: Callable[[], Operation[T]], *, retry: bool = False) -> T:
        """Run an operation on pooled connections; with ``retry``, once more on a fresh
        connection if the first one was lost (for calls whose repetition is harmless)."""
        try:
            return self._drive(start(), self._getconn, self._putconn)
        except psycopg.Error as error:
            after_failure(error, self._target, may_retry=retry)
            return self._run(start)

    def _getconn(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            self._after_fork()
        with checkout(self._target, repr(self), lambda: self._held >= self._pool.max_size):
            while True:
                conn = self._pool.getconn()
                if _still_connected(conn):
                    with self._fork_lock:
                        self._held += 1
                    return conn
                # The pool replaces a connection handed back closed, at once.
                conn.close()
                self._pool.putconn(conn)

    def _putconn(self, conn: psycopg.Connection[Any]) -> None:
        with self._fork_lock:
            self._held -= 1
        self._pool.putconn(conn)

    def _stream(self, query: Query) -> Generator[Any, None, None]:
        for attempt in (1, 2):
            started = False
            conn = self._getconn()
            try:
                with conn.transaction(), conn.cursor(name=STREAM_CURSOR) as cursor:
                    cursor.itersize = STREAM_BATCH
                    cursor.execute(query.sql, query.params)
                    for row in cursor:
                        started = True
                        yield query.convert(row)
                return
            except psycopg.Error as error:
                after_failure(error, self._target, may_retry=attempt == 1 and not started)
            finally:
                self._putconn(conn)

    # -- the public API ----------------------------------------------------------

    def close(self) -> None:
        """Close the connections. Safe to call twice; opening the target again later
        gives a new, working UserSpace."""
        self._registry.forget(self._key, self)
        if self._pid == os.getpid():
            self._pool.close()
        # In a forked child the pool still is the parent's: closing it would end the
        # parent's connections, so the child leaves it alone.

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def create_user(
        self,
        username: str,
        password: str,
        email: str,
        admin: bool = False,
        extra_data: Any = None,
    ) -> int:
        """Create a user and return its numeric userid.

        Raises :class:`BadCallError` if the username or the email is taken
        (compared case-insensitively) or an argument is invalid.
        """
        return self._run(
            lambda: self._core.create_user(username, password, email, admin, extra_data)
        )

    def validate_user(self, username: str, password: str, extra_data: Any = None) -> LoginResult:
        """Log a user in: return ``(session_key, is_admin, userid)``, or
        ``("", False, None)`` if the username is unknown or the password wrong."""
        # Repeating a login whose reply was lost leaves at most one unused session.
        return self._run(
            lambda: self._core.validate_user(username, password, extra_data), retry=True
        )

    def delete_user(self, username: str | None = None, userid: int | None = None) -> int:
        """Delete a user, and its sessions, by username or userid: ``OK`` or ``NOT_FOUND``."""
        return self._run(lambda: self._core.delete_user(username, userid))

    def change_password(
        self,
        userid: int,
        newpassword: str,
        oldpassword: str | None = None,
        *,
        end_sessions: bool = False,
    ) -> int:
        """Set a new password: ``OK``, ``NOT_FOUND``, or ``REJECTED`` when ``oldpassword``
        is given and does not match. With ``end_sessions=True`` the user's sessions end."""
        return self._run(
            lambda: self._core.change_password(userid, newpassword, oldpassword, end_sessions)
        )

    def check_key(self, key: str) -> CheckResult:
        """Check a session key and slide its expiry: ``(rc, username, userid, extra_data)``
        with rc ``OK``, ``NOT_FOUND`` or ``EXPIRED`` (the last two with Nones)."""
        return self._run(lambda: self._core.check_key(key), retry=True)

    def set_session_TTL(self, secs: float) -> None:  # noqa: N802 - the original's name
        """Set the time to live, in seconds, given to new and checked sessions."""
        self._run(lambda: self._core.set_session_TTL(secs), retry=True)

    def find_user(
        self,
        username: str | None = None,
        email: str | None = None,
        userid: int | None = None,
    ) -> dict[str, Any] | None:
        """Return ``{"userid", "username", "email", "admin", "extra_data"}`` for the user
        matching every argument given, or None."""
        return self._run(lambda: self._core.find_user(username, email, userid), retry=True)

    def modify_user(
        self,
        userid: int,
        username: str | None = None,
        email: str | None = None,
        extra_data: Any = None,
    ) -> int:
        """Change the fields given (None leaves a field as it is): ``OK`` or ``NOT_FOUND``."""
        return self._run(
            lambda: self._core.modify_user(userid, username, email, extra_data), retry=True
        )

    def is_admin(self, userid: int) -> bool:
        """Tell whether the user is an administrator (False for an unknown userid)."""
        return self._run(lambda: self._core.is_admin(userid), retry=True)

    def set_admin(self, userid: int, admin: bool = True) -> int:
        """Grant (or, with ``admin=False``, revoke) admin rights: ``OK`` or ``NOT_FOUND``."""
        return self._run(lambda: self._core.set_admin(userid, admin), retry=True)

    def all_users(self) -> Rows[UserRow]:
        """Yield ``(userid, username, email, admin)`` for every user, by username.

        Close the stream (``with`` or ``close()``) if you stop before its end."""
        return Rows(self._stream(self._core.all_users()))

    def list_sessions(self, uid: int, expired: bool = False) -> Rows[SessionRow]:
        """Yield ``(username, key, expiration)`` for the user's sessions, or everyone's
        when ``uid`` is 0; only the expired ones when ``expired`` is True.

        Close the stream (``with`` or ``close()``) if you stop before its end."""
        return Rows(self._stream(self._core.list_sessions(uid, expired)))

    def kill_sessions(self, uid: int, expired: bool = False) -> int:
        """End the user's sessions (everyone's when ``uid`` is 0; only the expired ones
        when ``expired``) and return how many ended."""
        return self._run(lambda: self._core.kill_sessions(uid, expired), retry=True)


atexit.register(_close_open_userspaces)
