"""What the benchmark's scripts share: connection settings, a cheap hasher, progress
lines, percentiles, and the databases they make and drop."""

import os
import sys
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg import sql

from pgusers._core.sessions import CHECK_KEY

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


def analyze_as_autovacuum_would(conninfo: str, schema: str) -> None:
    """Bring a schema's statistics to the state of a live database: every table that
    autovacuum analyses once it holds some rows is analysed, and the one-row settings
    never are (they never reach autovacuum's threshold). Figures taken on a fresh
    schema, with no statistics at all, would miss a plan that goes wrong only then."""
    with psycopg.connect(conninfo, **DRIVER) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s"
            " AND tablename NOT IN ('settings', 'schema_version')",
            (schema,),
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))


def drop_database(conninfo: str, name: str) -> None:
    """Drop a database the benchmark made, ending any connection to it (a PgBouncer in
    between may still hold one)."""
    execute(
        conninfo, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


# check_key's statement with its two writes carried as data-modifying CTEs, as it was
# at schema version 6: timed beside today's, where they are functions called only
# when due. The lookup is today's, so that only the writes differ.
_LOOKUP, _ = CHECK_KEY.split("\n    )\n    SELECT current")
CHECK_KEY_WITH_WRITES = (
    _LOOKUP
    + """
    ), slid AS (
        UPDATE {schema}.sessions s
        SET expires_at = f.target, last_seen_at = f.now
        FROM found f
        WHERE s.key IN (%(key)s, %(stored)s) AND f.current AND f.alive AND f.slides
          AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), ended AS (
        DELETE FROM {schema}.sessions s USING found f
        WHERE s.key IN (%(key)s, %(stored)s) AND NOT (f.alive AND f.current)
    )
    SELECT current, alive, username, userid, extra_data, session_ttl, session_id,
           extract(epoch FROM CASE WHEN slides THEN target ELSE expires_at END)::float8,
           extract(epoch FROM hard_end)::float8
    FROM found
"""
)
