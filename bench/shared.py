"""What the benchmark's scripts share: connection settings, a cheap hasher, progress
lines, percentiles, and the databases they make and drop."""

import os
import sys
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg import sql

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""Logins in the benchmarks test the database, not Argon2id."""

# The benchmark's own connections prepare statements as pgusers does, unless
# PGUSERS_PREPARE_THRESHOLD=none says the server is behind an old PgBouncer.
_THRESHOLD = os.environ.get("PGUSERS_PREPARE_THRESHOLD", "5").strip().lower()
DRIVER: dict[str, Any] = {
    "autocommit": True,
    "prepare_threshold": None if _THRESHOLD in ("none", "off", "") else int(_THRESHOLD),
}


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile of some samples."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def execute(
    conninfo: str, statement: sql.Composable | str, params: tuple[object, ...] = ()
) -> None:
    with psycopg.connect(conninfo, **DRIVER) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def drop_database(conninfo: str, name: str) -> None:
    """Drop a database the benchmark made, ending any connection to it (a PgBouncer in
    between may still hold one)."""
    execute(
        conninfo, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )
