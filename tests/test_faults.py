"""Dropped connections, races and an unreachable server."""

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import OK, BadCallError, DatabaseUnavailableError

from .support import FAST_HASHER, LoopThread, found, only, pool_of


def terminate_backends(sql_conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """End every other connection to this database (as a restart or an admin would),
    waiting until their server processes are gone."""
    return int(
        only(
            sql_conn.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            ).fetchone()
        )
    )


def test_calls_succeed_after_the_server_dropped_the_pooled_connections(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    uid = usp.create_user("ada", "pw", "ada@example.com")
    key = usp.validate_user("ada", "pw")[0]
    assert terminate_backends(sql_conn) >= 1
    assert usp.check_key(key)[0] == OK
    assert terminate_backends(sql_conn) >= 1
    assert usp.create_user("bob", "pw", "bob@example.com") == uid + 1
    assert terminate_backends(sql_conn) >= 1
    assert usp.delete_user(username="bob") == OK


def cut_the_pooled_connection(usp: Any, api: str, loop_thread: LoopThread) -> None:
    """Shut the socket of the userspace's one pooled connection, as a dead network or
    a server gone away would, without the connection noticing yet."""
    space = usp.space if api == "async" else usp
    if api == "async":
        conn = loop_thread.run(space._driver._pool.getconn())
        with socket.socket(fileno=os.dup(conn.fileno())) as shared:
            shared.shutdown(socket.SHUT_RDWR)
        loop_thread.run(space._driver._pool.putconn(conn))
    else:
        conn = space._driver._pool.getconn()
        with socket.socket(fileno=os.dup(conn.fileno())) as shared:
            shared.shutdown(socket.SHUT_RDWR)
        space._driver._pool.putconn(conn)


def test_a_connection_lost_mid_call_is_retried_for_reads(
    open_userspace: Callable[..., Any],
    api: str,
    dsn: str,
    schema: str,
    loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pgusers._drivers import connections, driver_async, driver_sync

    usp = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_max=1)
    try:
        usp.create_user("ada", "pw", "ada@example.com")
        key = usp.validate_user("ada", "pw")[0]
        # Hand out the first connection unchecked, so that the failure comes from the
        # query itself, as when the connection dies while the query is on its way.
        checks = []
        real_check = connections.needs_check

        def first_unchecked(conn: Any) -> bool:
            checks.append(conn)
            return len(checks) > 1 and real_check(conn)

        monkeypatch.setattr(driver_sync, "needs_check", first_unchecked)
        monkeypatch.setattr(driver_async, "needs_check", first_unchecked)
        cut_the_pooled_connection(usp, api, loop_thread)
        checks.clear()
        assert usp.check_key(key)[0] == OK  # retried on a new connection
        cut_the_pooled_connection(usp, api, loop_thread)
        checks.clear()
        with pytest.raises(DatabaseUnavailableError):
            usp.create_user("bob", "pw", "bob@example.com")  # not repeatable: not retried
        assert usp.find_user(username="bob") is None
    finally:
        usp.close()


def test_unreachable_server_during_a_call_raises_the_documented_error(
    usp: Any, api: str, loop_thread: LoopThread
) -> None:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    nowhere = "host=127.0.0.1 port=1 dbname=none connect_timeout=1"
    space = usp.space if api == "async" else usp
    if api == "async":
        loop_thread.run(space._driver._pool.close())
        pool: Any = AsyncConnectionPool(nowhere, min_size=0, max_size=1, timeout=1, open=False)
        loop_thread.run(pool.open())
    else:
        space._driver._pool.close()
        pool = ConnectionPool(nowhere, min_size=0, max_size=1, timeout=1, open=True)
    space._driver._pool = pool
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        usp.find_user(username="ada")


def test_racing_creates_of_the_same_user_give_one_success(usp: Any) -> None:
    barrier = threading.Barrier(8)
    outcomes = []

    def create(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(
                usp.create_user(
                    ["Racer", "racer", "RACER", "rAcer"][i % 4], "pw", f"racer{i}@example.com"
                )
            )
        except BadCallError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(outcome, int) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, BadCallError) for outcome in outcomes) == 7
    assert len(list(usp.all_users())) == 1


def test_logins_on_many_threads(usp: Any) -> None:
    usp.create_user("ada", "pw", "ada@example.com")
    keys = []

    def login() -> None:
        for _ in range(5):
            keys.append(usp.validate_user("ada", "pw")[0])

    threads = [threading.Thread(target=login) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 30
    assert all(usp.check_key(key)[0] == OK for key in keys)


def _use_in_child(usp: Any, key: str, results: Any) -> None:
    answers = (usp.check_key(key)[0], usp.create_user("child", "pw", "child@example.com"))
    conn = usp._driver._pool.getconn()
    results.put((*answers, conn.info.backend_pid))
    usp._driver._pool.putconn(conn)


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents(
    dsn: str, schema: str, sql_conn: psycopg.Connection[tuple[Any, ...]]
) -> None:
    import multiprocessing

    import pgusers
    from pgusers._drivers import shared

    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_max=1)
    try:
        usp.create_user("ada", "pw", "ada@example.com")
        key = usp.validate_user("ada", "pw")[0]
        conn = pool_of(usp).getconn()
        parent_backend = conn.info.backend_pid
        pool_of(usp).putconn(conn)
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_use_in_child, args=(usp, key, results))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        checked, created, child_backend = results.get(timeout=5)
        assert (checked, created) == (OK, 2)
        assert child_backend != parent_backend  # the child had connections of its own
        # The parent's connection is the one it had, and the server did not close it
        # (a child that closed it would have sent the server a goodbye on it).
        conn = pool_of(usp).getconn()
        try:
            assert conn.info.backend_pid == parent_backend
            assert shared.answers(conn)
            assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pool_of(usp).putconn(conn)
        assert found(usp.find_user(username="child"))["userid"] == 2
    finally:
        usp.close()


def deadlocks_so_far(sql_conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    sql_conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        only(
            sql_conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        )
    )


def blocked_by(conn: psycopg.Connection[tuple[Any, ...]], pid: int) -> bool:
    """Whether some backend waits for a lock the backend ``pid`` holds."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    ).fetchone()
    return bool(row and row[0])


def test_a_statement_chosen_as_deadlock_victim_runs_again(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], server_dsn: str, schema: str
) -> None:
    import time

    uid = usp.create_user("ada", "pw", "ada@example.com")
    before = deadlocks_so_far(sql_conn)
    touch = f"UPDATE {schema}.sessions SET extra_data = '1' WHERE key = %s"
    deadlocked = False

    def kill_into(ended: list[int]) -> None:
        ended.append(usp.kill_sessions(uid))

    def counted_since(known: int) -> bool:
        # The server counts a deadlock when the victim's backend next reports its
        # statistics: when it goes idle, at most every 10 s (PostgreSQL 15). A wait
        # that only looked long on a busy machine shows no deadlock: try again.
        deadline = time.monotonic() + 25
        while deadlocks_so_far(sql_conn) == known and time.monotonic() < deadline:
            time.sleep(0.2)
        return deadlocks_so_far(sql_conn) > known

    # kill_sessions locks the user's two sessions in an order of the planner's: the
    # other transaction holds one of them, then asks for the other. When it asked for
    # one kill_sessions did not hold yet, there was no deadlock: try the other order.
    for attempt in range(6):
        keys = [usp.validate_user("ada", "pw")[0] for _ in range(2)]
        held, wanted = keys if attempt % 2 == 0 else keys[::-1]
        ended: list[int] = []
        with psycopg.connect(server_dsn) as other:
            # The other transaction waits longest before looking for deadlocks, so the
            # server picks pgusers' statement as the victim.
            other.execute("SET deadlock_timeout = '10s'")
            other.execute(touch, (held,))
            killer = threading.Thread(target=kill_into, args=(ended,))
            killer.start()
            # On to the second step once kill_sessions waits for the session held here
            # (as the server says, not after a pause that may be too short when busy).
            waiting_since = time.monotonic()
            while not blocked_by(sql_conn, other.info.backend_pid):
                assert time.monotonic() - waiting_since < 30, "kill_sessions never waited"
                time.sleep(0.02)
            asked = time.monotonic()
            other.execute(touch, (wanted,))
            deadlocked = time.monotonic() - asked > 0.2  # it waited for kill_sessions
            other.commit()
            killer.join(30)
        assert ended == [2]
        assert usp.check_key(held)[0] == usp.check_key(wanted)[0] == pgusers.NOT_FOUND
        if deadlocked and counted_since(before):
            break
    assert deadlocks_so_far(sql_conn) > before  # the deadlock did happen


def test_a_statement_the_database_refuses_raises_database_error(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    if os.environ.get("PGUSERS_TEST_PGBOUNCER"):
        pytest.skip("a per-connection lock_timeout is a startup option PgBouncer drops")
    usp = open_userspace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, options="-c lock_timeout=200"
    )
    try:
        usp.create_user("ada", "pw", "ada@example.com")
        with sql_conn.transaction():
            sql_conn.execute(f'LOCK TABLE "{schema}".users IN ACCESS EXCLUSIVE MODE')
            with pytest.raises(pgusers.DatabaseError) as refused:
                usp.create_user("bob", "pw", "bob@example.com")
        assert refused.value.sqlstate == "55P03"  # lock_not_available
        assert isinstance(refused.value.__cause__, psycopg.errors.LockNotAvailable)
        assert str(refused.value).startswith("the database refused (55P03): ")
        assert usp.find_user(username="bob") is None
        assert usp.create_user("bob", "pw", "bob@example.com")  # and the userspace goes on
    finally:
        usp.close()
