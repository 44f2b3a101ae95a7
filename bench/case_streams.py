"""Streams of every user and session, and purging expired sessions under load."""

import subprocess
import sys
import threading
import time

import pgusers
from context import SCHEMA, fill_sessions
from shared import (
    execute,
)

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
