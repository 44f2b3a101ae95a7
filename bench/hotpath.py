"""The per-request path, taken apart and compared: part of ``bench/run.py``.

Everything here is timed with this process and every server backend it talks to
pinned to one CPU. On a machine with few CPUs a round trip costs a good deal more
when the client and the server backend wake up on different CPUs (the wake-up
crosses cores), and where each lands changes from run to run: pinning both to one
CPU takes that out, so that what is left is what each layer itself costs.

What is measured, interleaved call for call:

- the floors: ``SELECT 1`` and the session row by its primary key, on a raw psycopg
  connection; check_key's own statement on a raw connection (and beside it the
  statement of schema version 6, whose writes were data-modifying CTEs) and on a
  connection of a ``psycopg_pool`` pool; then ``UserSpace.check_key`` itself;
- the same under asyncio: psycopg's ``AsyncConnection`` (and asyncpg, when installed)
  against ``AsyncUserSpace.check_key``, on asyncio's own event loop and on uvloop;
- what a team would pick instead, each in a virtual environment of its own under
  ``bench/`` and driven as a child process in batches that alternate with pgusers':
  Django's session and authentication middleware (database sessions) and
  FastAPI-Users' database token strategy.
"""

import asyncio
import json
import os
import subprocess
import time
import venv
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

import pgusers
from pgusers._core.keys import stored_form
from pgusers._core.sessions import CHECK_KEY
from pgusers._core.sql import render
from shared import (
    CHECK_KEY_WITH_WRITES,
    DRIVER,
    drop_database,
    execute,
    percentiles,
    progress,
)

HERE = Path(__file__).resolve().parent

# (label, where its virtual environment lives, what it installs, the child script)
RIVALS = (
    (
        "Django 5.2: SessionMiddleware + AuthenticationMiddleware, database sessions",
        ".venv-django",
        ["django>=5.2,<5.3", "psycopg[binary]>=3.2"],
        "django_check.py",
    ),
    (
        "FastAPI-Users 15: DatabaseStrategy.read_token, SQLAlchemy 2 + asyncpg",
        ".venv-fastapi-users",
        ["fastapi-users[sqlalchemy]>=15,<16", "asyncpg"],
        "fastapi_users_check.py",
    ),
)
RIVAL_BATCH = 100

BARE = "the session row by primary key, raw psycopg connection (the bare select)"
"""The floor every sync layer is set against."""

WITH_WRITES = "check_key's statement, its writes as CTEs (as at schema 6), raw psycopg"

Sample = tuple[str, float, float, str]
"""One result: what was timed, its median and 99th percentile in ms, a note."""


def summary(samples: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile of timings in seconds, in milliseconds."""
    return percentiles([sample * 1000 for sample in samples])


def backends(conninfo: str, databases: tuple[str, ...] = ()) -> list[int]:
    """The process ids of the server backends serving this database and ``databases``."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = ANY(%s) AND pid <> pg_backend_pid()",
            ([conn.info.dbname, *databases],),
        ).fetchall()
    return [pid for (pid,) in rows]


def pin(
    conninfo: str, cpu: int | None, children: tuple[int, ...] = (), databases: tuple[str, ...] = ()
) -> str:
    """Pin this process, ``children`` and the backends of the databases to ``cpu``;
    say how it went."""
    if cpu is None:
        return "not pinned"
    for pid in (0, *children, *backends(conninfo, databases)):
        try:
            os.sched_setaffinity(pid, {cpu})
        except ProcessLookupError:
            continue  # a connection that ended meanwhile
        except (AttributeError, OSError) as error:
            return f"not pinned ({error})"
    return f"pinned to CPU {cpu}"


def unpin() -> None:
    with suppress(AttributeError, OSError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def interleaved(
    calls: dict[str, Callable[[], object]], iterations: int
) -> dict[str, tuple[float, float]]:
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(iterations + 300):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if round_ >= 300:
                timings[name].append(time.perf_counter() - started)
    return {name: summary(samples) for name, samples in timings.items()}


async def interleaved_async(
    calls: dict[str, Callable[[], object] | Callable[[], Awaitable[object]]],
    asynchronous: set[str],
    iterations: int,
) -> dict[str, tuple[float, float]]:
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(iterations + 300):
        for name, call in calls.items():
            started = time.perf_counter()
            result = call()
            if name in asynchronous:
                await result  # type: ignore[misc]
            if round_ >= 300:
                timings[name].append(time.perf_counter() - started)
    return {name: summary(samples) for name, samples in timings.items()}


def check_key_params(key: str) -> dict[str, Any]:
    return {"key": key, "stored": stored_form(key), "legacy": False, "now": time.time()}


def sync_rows(
    usp: pgusers.UserSpace, conninfo: str, key: str, cpu: int | None, iterations: int
) -> list[Sample]:
    schema = usp._core.schema
    statement = render(CHECK_KEY, schema)
    with_writes = render(CHECK_KEY_WITH_WRITES, schema)
    bare = sql.SQL("SELECT s.expires_at FROM {}.sessions s WHERE s.key = %(key)s").format(
        sql.Identifier(schema)
    )
    # Each row has a connection, so a server backend, of its own: in the interleaved
    # loop every call then follows a call served by another backend, as check_key's
    # does, and pays alike for the switch between the two on the one CPU.
    with (
        psycopg.connect(conninfo, **DRIVER) as for_select_1,
        psycopg.connect(conninfo, **DRIVER) as for_bare,
        psycopg.connect(conninfo, **DRIVER) as for_writes,
        psycopg.connect(conninfo, **DRIVER) as for_statement,
        ConnectionPool(conninfo, kwargs=DRIVER, min_size=1, max_size=1) as pool,
    ):

        def pooled() -> object:
            with pool.connection() as conn:
                return conn.execute(statement, check_key_params(key)).fetchone()

        calls: dict[str, Callable[[], object]] = {
            "SELECT 1, raw psycopg connection": lambda: for_select_1.execute("SELECT 1").fetchone(),
            BARE: lambda: for_bare.execute(bare, {"key": key}).fetchone(),
            WITH_WRITES: (
                lambda: for_writes.execute(with_writes, check_key_params(key)).fetchone()
            ),
            "check_key's statement, raw psycopg connection": (
                lambda: for_statement.execute(statement, check_key_params(key)).fetchone()
            ),
            "check_key's statement, psycopg_pool connection": pooled,
            "UserSpace.check_key": lambda: usp.check_key(key),
        }
        how = pin(conninfo, cpu)
        try:
            found = interleaved(calls, iterations)
        finally:
            unpin()
    bare_median = found[BARE][0]
    return [
        (name, median, p99, f"x{median / bare_median:.2f} the bare select; {how}")
        for name, (median, p99) in found.items()
    ]


async def _async_rows(
    usp: pgusers.UserSpace, conninfo: str, key: str, cpu: int | None, iterations: int
) -> list[Sample]:
    schema = usp._core.schema
    statement = render(CHECK_KEY, schema)
    try:
        import asyncpg  # type: ignore[import-not-found]  # noqa: PLC0415 - optional

        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        apg = await asyncpg.connect(
            host=params.get("host"),
            port=int(str(params.get("port", 5432))),
            user=params.get("user"),
            password=params.get("password"),
            database=params.get("dbname"),
            # Behind a PgBouncer that cannot carry prepared statements, none are kept.
            statement_cache_size=0 if DRIVER["prepare_threshold"] is None else 100,
        )
    except ImportError:
        apg = None
    async with (
        pgusers.AsyncUserSpace(
            conninfo=conninfo, schema=schema, hasher=usp._core.passwords.hasher
        ) as ausp,
        await psycopg.AsyncConnection.connect(conninfo, **DRIVER) as araw,
    ):
        with psycopg.connect(conninfo, **DRIVER) as raw:
            calls: dict[str, Any] = {
                "SELECT 1, psycopg Connection (sync)": lambda: raw.execute("SELECT 1"),
                "SELECT 1, psycopg AsyncConnection": lambda: araw.execute("SELECT 1"),
                "check_key's statement, psycopg Connection (sync)": (
                    lambda: raw.execute(statement, check_key_params(key)).fetchone()
                ),
                "check_key's statement, psycopg AsyncConnection": (
                    lambda: araw.execute(statement, check_key_params(key))
                ),
                "UserSpace.check_key (sync)": lambda: usp.check_key(key),
                "AsyncUserSpace.check_key": lambda: ausp.check_key(key),
            }
            if apg is not None:
                calls["SELECT 1, asyncpg"] = lambda: apg.fetchrow("SELECT 1")
            asynchronous = {name for name in calls if "Async" in name or "asyncpg" in name}
            how = pin(conninfo, cpu)
            try:
                found = await interleaved_async(calls, asynchronous, iterations)
            finally:
                unpin()
                if apg is not None:
                    await apg.close()
    # Each async row against the sync row of the same work.
    counterparts = {
        "SELECT 1, psycopg AsyncConnection": "SELECT 1, psycopg Connection (sync)",
        "SELECT 1, asyncpg": "SELECT 1, psycopg Connection (sync)",
        "check_key's statement, psycopg AsyncConnection": (
            "check_key's statement, psycopg Connection (sync)"
        ),
        "AsyncUserSpace.check_key": "UserSpace.check_key (sync)",
    }
    rows = []
    for name, (median, p99) in found.items():
        sync = counterparts.get(name)
        note = f"x{median / found[sync][0]:.2f} its sync row" if sync else "sync"
        rows.append((name, median, p99, f"{note}; {how}"))
    return rows


def async_rows(
    usp: pgusers.UserSpace, conninfo: str, key: str, cpu: int | None, iterations: int
) -> list[Sample]:
    """The sync and async checks side by side, on asyncio's loop, then on uvloop."""
    rows = asyncio.run(_async_rows(usp, conninfo, key, cpu, iterations))
    rows = [(f"asyncio: {name}", *rest) for name, *rest in rows]
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return rows
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        more = runner.run(_async_rows(usp, conninfo, key, cpu, iterations))
    return rows + [(f"uvloop: {name}", *rest) for name, *rest in more]


def rival_python(env: str, requirements: list[str]) -> Path:
    """The interpreter of a rival's virtual environment, made on first use."""
    env_dir = HERE / env
    python = env_dir / "bin" / "python"
    if not python.exists():
        progress(f"installing {' '.join(requirements)} into {env_dir}")
        venv.create(env_dir, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    return python


def as_url(conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host") or "127.0.0.1"
    return (
        f"postgresql://{params.get('user', 'postgres')}{password}@{host}:"
        f"{params.get('port', 5432)}/{params['dbname']}"
    )


@contextmanager
def database(conninfo: str, name: str) -> Iterator[str]:
    """A database of its own for one rival, dropped afterwards."""
    drop_database(conninfo, name)
    execute(conninfo, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(conninfo, dbname=name)
    finally:
        drop_database(conninfo, name)


class Child:
    """A rival's check running in its own interpreter, answering batches."""

    def __init__(self, python: Path, script: str, target: str) -> None:
        self.process = subprocess.Popen(
            [str(python), str(HERE / "rivals" / script), target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            self.process.kill()
            raise RuntimeError(f"{script} did not start (it said {ready!r})")

    def batch(self, count: int) -> list[float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return list(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        assert self.process.stdin is not None
        with suppress(BrokenPipeError):
            self.process.stdin.write("\n")
            self.process.stdin.close()
        self.process.wait(timeout=30)


def rival_rows(
    usp: pgusers.UserSpace, conninfo: str, key: str, cpu: int | None, iterations: int
) -> list[Sample]:
    """Each rival's per-request check beside check_key, in alternating batches."""
    children: list[tuple[str, Child]] = []
    with (
        database(conninfo, "pgusers_bench_django") as django_db,
        database(conninfo, "pgusers_bench_fastapi_users") as fastapi_db,
    ):
        targets = (django_db, as_url(fastapi_db))
        try:
            for (label, env, requirements, script), target in zip(RIVALS, targets, strict=True):
                progress(f"starting {label}")
                children.append((label, Child(rival_python(env, requirements), script, target)))
            how = pin(
                conninfo,
                cpu,
                tuple(child.process.pid for _, child in children),
                ("pgusers_bench_django", "pgusers_bench_fastapi_users"),
            )
            timings: dict[str, list[float]] = {"UserSpace.check_key": []}
            timings.update({label: [] for label, _ in children})
            rounds = max(1, iterations // RIVAL_BATCH)
            for round_ in range(rounds + 2):  # two rounds to warm up
                mine = []
                for _ in range(RIVAL_BATCH):
                    started = time.perf_counter()
                    usp.check_key(key)
                    mine.append(time.perf_counter() - started)
                theirs = [(label, child.batch(RIVAL_BATCH)) for label, child in children]
                if round_ >= 2:
                    timings["UserSpace.check_key"] += mine
                    for label, samples in theirs:
                        timings[label] += samples
        finally:
            unpin()
            for _, child in children:
                child.close()
    ours = summary(timings["UserSpace.check_key"])[0]
    return [
        (name, *summary(samples), f"x{summary(samples)[0] / ours:.2f} check_key; {how}")
        for name, samples in timings.items()
    ]
