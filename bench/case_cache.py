"""The session cache: hits, misses, and answers forgotten on a change."""

import subprocess
import sys
import time
from unittest import mock

import psycopg
from psycopg import sql

import pgusers
from context import HERE, SCHEMA, Row
from pgusers._drivers import driver_sync
from shared import (
    CHEAP_HASHER,
    execute,
    percentiles,
    progress,
)

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
        real_fetch = driver_sync.fetch

        def counting(cursor: psycopg.Cursor[tuple[object, ...]], fetch: object) -> object:
            nonlocal sent
            sent += 1
            return real_fetch(cursor, fetch)  # type: ignore[arg-type]

        with mock.patch.object(driver_sync, "fetch", counting):
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
