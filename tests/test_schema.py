"""The schema: created on first use, versioned, safe when many start at once."""

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import pytest

import pgusers
from pgusers import UserSpace
from pgusers._core import migrations as schema_module
from pgusers._core.sql import render
from pgusers._core.steps import Execute, Fetch, Stepper

from .support import FAST_HASHER, Clock, only


def run_migration(dsn: str, name: str) -> int:
    """Drive the migration as UserSpace does, errors thrown back into it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        stepper = Stepper(schema_module.migrate(name))
        step = stepper.start()
        while step is not None:
            assert isinstance(step, Execute)  # a migration hashes nothing
            try:
                cursor = conn.execute(step.query, step.params)
                result = cursor.fetchone() if step.fetch is Fetch.ONE else cursor.rowcount
            except psycopg.Error as error:
                step = stepper.throw(error)
                continue
            step = stepper.send(result)
        return stepper.value


def test_schema_has_the_documented_tables_indexes_and_constraints(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    indexes = {
        row[0]
        for row in sql_conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
        )
    }
    assert {
        "users_pkey",
        "users_username_key",
        "users_email_key",
        "sessions_pkey",
        "sessions_userid_idx",
        "sessions_expires_at_idx",
        "users_username_skeleton_key",
        "tokens_pkey",
        "tokens_userid_idx",
        "login_failures_pkey",
        "login_failures_last_at_idx",
        "sessions_session_id_key",
        "sessions_created_at_idx",
        "events_pkey",
        "events_at_idx",
        "events_userid_idx",
    } <= indexes
    version = only(sql_conn.execute(f"SELECT version FROM {schema}.schema_version").fetchone())
    assert version == schema_module.LATEST


def test_check_key_is_an_index_lookup(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    from pgusers._core import sessions

    sql_conn.execute(
        f"""INSERT INTO {schema}.users
            (username, username_key, username_skeleton, email, email_key, password_hash)
        VALUES ('a', 'a', 'a', 'a@x.org', 'a@x.org', 'x')"""
    )
    sql_conn.execute(
        f"""INSERT INTO {schema}.sessions (key, userid, expires_at)
        SELECT md5(i::text), 1, now() FROM generate_series(1, 20000) i"""
    )
    sql_conn.execute(f"ANALYZE {schema}.sessions")
    query = render(sessions.CHECK_KEY, schema)
    plan = "\n".join(
        row[0]
        for row in sql_conn.execute(
            "EXPLAIN " + query,
            {"key": "k" * 43, "stored": "sha256:" + "0" * 64, "legacy": False, "now": 0.0},
        )
    )
    # The key is looked up in both its stored forms (as given, and as a digest).
    assert "Index Scan using sessions_pkey" in plan or "Index Scan on sessions_pkey" in plan
    assert "Seq Scan on sessions" not in plan


def check_key_statement(schema: str, key: str) -> tuple[str, dict[str, Any]]:
    """check_key's statement and its parameters for ``key``, as pgusers sends them."""
    from pgusers._core import sessions
    from pgusers._core.keys import stored_form

    params = {"key": key, "stored": stored_form(key), "legacy": False, "now": time.time()}
    return render(sessions.CHECK_KEY, schema), params


def analyze_as_autovacuum_would(
    sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, userid: int
) -> None:
    """Give ``userid`` 2,000 more sessions and analyse the tables autovacuum would have
    analysed by then: every one but the one-row settings, which never reaches its
    threshold."""
    sql_conn.execute(
        f"""INSERT INTO {schema}.sessions (key, userid, expires_at)
        SELECT md5(i::text), %s, now() + interval '1 day'
        FROM generate_series(1, 2000) i""",
        (userid,),
    )
    for table in ("users", "sessions", "events"):
        sql_conn.execute(f"ANALYZE {schema}.{table}")


def plans_of(
    server_dsn: str, query: str, params: Sequence[Any] | Mapping[str, Any], marker: str
) -> tuple[int, int]:
    """Run ``query`` prepared 20 times on one connection; its (generic, custom) plans."""
    with psycopg.connect(server_dsn, autocommit=True, prepare_threshold=0) as conn:
        for _ in range(20):
            conn.execute(query, params)
        [plans] = conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s AND statement NOT LIKE '%%pg_prepared_statements%%'",
            (f"%{marker}%",),
        ).fetchall()
    return plans


def test_check_key_keeps_one_generic_plan_on_analysed_tables(
    usp: Any, server_dsn: str, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    """Prepared, check_key's statement is planned once and the plan kept, also once
    autovacuum has analysed the tables: planned again on every call, it would cost
    several times as much."""
    for n in range(20):
        usp.create_user(f"user{n}", "s3cret", f"user{n}@example.org")
    key = usp.validate_user("user0", "s3cret")[0]
    analyze_as_autovacuum_would(sql_conn, schema, usp.find_user("user0")["userid"])
    generic, custom = plans_of(server_dsn, *check_key_statement(schema, key), "WITH looked")
    assert custom <= 5
    assert generic >= 15


def test_set_session_data_keeps_one_generic_plan_on_analysed_tables(
    usp: Any, server_dsn: str, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    from pgusers._core import sessions
    from pgusers._core.keys import stored_form

    for n in range(20):
        usp.create_user(f"user{n}", "s3cret", f"user{n}@example.org")
    key = usp.validate_user("user0", "s3cret")[0]
    analyze_as_autovacuum_would(sql_conn, schema, usp.find_user("user0")["userid"])
    params = {"key": key, "stored": stored_form(key), "legacy": False, "data": None}
    params["now"] = time.time()
    query = render(sessions.SET_SESSION_DATA, schema)
    generic, custom = plans_of(server_dsn, query, params, "extra_data = ")
    assert custom <= 5
    assert generic >= 15


def test_check_key_writes_only_when_a_write_is_due(
    usp: Any, sql_conn: psycopg.Connection[tuple[Any, ...]], schema: str, clock: Clock
) -> None:
    """The statement is a plain SELECT until the expiry must slide or the session must
    go: in a read-only transaction it answers, and only a due write is refused."""
    usp.create_user("ada", "s3cret", "ada@example.org")
    key = usp.validate_user("ada", "s3cret")[0]
    sql_conn.execute("SET default_transaction_read_only = on")
    try:
        row = sql_conn.execute(*check_key_statement(schema, key)).fetchone()
        assert row is not None and row[:2] == (True, True)
        clock.advance(61)  # past the slack: the expiry slides
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            sql_conn.execute(*check_key_statement(schema, key))
    finally:
        sql_conn.execute("SET default_transaction_read_only = off")
    assert usp.check_key(key)[0] == pgusers.OK
    [(_, _, expiration)] = usp.list_sessions(usp.find_user("ada")["userid"])
    assert expiration == pytest.approx(clock.now + 10 * 86400, abs=0.01)  # the default TTL


def test_any_schema_name_gets_working_functions(
    open_userspace: Callable[..., Any],
    dsn: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
    schema: str,
    clock: Clock,
) -> None:
    """check_key's writes live in functions whose bodies name the schema: a name with
    quotes and dollar signs neither breaks them nor ends their text early."""
    odd = schema[:30] + ' $$ "odd" $q$'
    try:
        space = open_userspace(conninfo=dsn, schema=odd, hasher=FAST_HASHER)
        space.create_user("ada", "s3cret", "ada@example.org")
        key = space.validate_user("ada", "s3cret")[0]
        clock.advance(61)
        assert space.check_key(key)[0] == pgusers.OK  # slid
        [(_, _, expiration)] = space.list_sessions(0)
        assert expiration == pytest.approx(clock.now + 10 * 86400, abs=0.01)
        clock.advance(11 * 86400)
        assert space.check_key(key)[0] == pgusers.EXPIRED  # and removed
        assert list(space.list_sessions(0, expired=True)) == []
        space.close()
    finally:
        sql_conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(odd))
        )


def test_a_second_open_runs_no_migration(usp: Any, dsn: str, schema: str) -> None:
    assert run_migration(dsn, schema) == 0


def test_concurrent_first_starts_create_the_schema_once(dsn: str, schema: str) -> None:
    barrier = threading.Barrier(8)
    results: list[int | Exception] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(run_migration(dsn, schema))
        except Exception as error:  # reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result for result in results if isinstance(result, Exception)] == []
    migrated = sorted(result for result in results if isinstance(result, int))
    assert migrated == [0] * 7 + [schema_module.LATEST]
    with UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert usp.create_user("ada", "pw", "ada@example.com") == 1


def test_a_newer_schema_is_refused(
    open_userspace: Callable[..., Any],
    usp: Any,
    dsn: str,
    schema: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    usp.close()
    sql_conn.execute(f"UPDATE {schema}.schema_version SET version = version + 1")
    with pytest.raises(pgusers.SchemaVersionError, match="newer"):
        open_userspace(conninfo=dsn, schema=schema)


def at_version(version: int, dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create ``schema`` as pgusers left it at ``version``."""
    with monkeypatch.context() as older:
        older.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:version])
        older.setattr(schema_module, "LATEST", version)
        run_migration(dsn, schema)


def insert_ada(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> int:
    """Insert a user 'ada' (password "pw") as SQL would, whatever the version; her id."""
    return int(
        only(
            conn.execute(
                f"""INSERT INTO {schema}.users
            (username, username_key, username_skeleton, email, email_key, password_hash)
        VALUES ('ada', 'ada', 'ada', 'ada@example.com', 'ada@example.com', %s)
        RETURNING userid""",
                (FAST_HASHER.hash("pw"),),
            ).fetchone()
        )
    )


def test_migration_4_gives_existing_sessions_ids_and_keeps_them_working(
    open_userspace: Callable[..., Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_version(3, dsn, schema, monkeypatch)
    keys = [f"{n}" * 43 for n in range(3)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ada = insert_ada(conn, schema)
        for key in keys:
            conn.execute(
                f"""INSERT INTO {schema}.sessions (key, userid, expires_at, source)
                VALUES (%s, %s, now() + interval '1 day', '192.0.2.1')""",
                (key, ada),
            )
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        rows = list(usp.sessions(ada, key=keys[0]))
        assert len({row.session_id for row in rows}) == 3
        assert [row.current for row in rows].count(True) == 1
        assert all(row.last_seen_at == row.created_at for row in rows)
        assert [usp.check_key(key).status for key in keys] == [pgusers.OK] * 3
        assert list(usp.events()) == []
        assert usp.end_other_sessions(keys[0]) == 2


def test_migration_7_keeps_sessions_working_and_their_writes_happen(
    open_userspace: Callable[..., Any],
    dsn: str,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    """From version 6 with sessions in it: after the migration a live session slides
    its expiry and an expired one is removed, now through the schema's functions."""
    at_version(6, dsn, schema, monkeypatch)
    live, expired = "L" * 43, "E" * 43
    with psycopg.connect(dsn, autocommit=True) as conn:
        ada = insert_ada(conn, schema)
        for key, expiry in ((live, clock.now + 3600), (expired, clock.now - 3600)):
            conn.execute(
                f"""INSERT INTO {schema}.sessions (key, userid, expires_at)
                VALUES (%s, %s, to_timestamp(%s))""",
                (key, ada, expiry),
            )
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert usp.check_key(live).status == pgusers.OK
        assert usp.check_key(expired).status == pgusers.EXPIRED
        assert usp.check_key(expired).status == pgusers.NOT_FOUND
        [(_, _, expiration)] = usp.list_sessions(ada)
        assert expiration == pytest.approx(clock.now + 10 * 86400, abs=0.01)  # slid


def test_the_api_key_lookup_keeps_one_generic_plan_on_analysed_tables(
    space: pgusers.UserSpace,
    server_dsn: str,
    sql_conn: psycopg.Connection[tuple[Any, ...]],
    schema: str,
) -> None:
    from pgusers._core import service
    from pgusers._core.keys import digest

    from .support import make_api_key

    for n in range(20):
        space.create_user(f"user{n}", "s3cret", f"user{n}@example.org")
    _, key = make_api_key(space, "check")
    analyze_as_autovacuum_would(sql_conn, schema, 1)
    query = render(service.API_KEY_SCOPE, schema)
    generic, custom = plans_of(server_dsn, query, (digest(key),), "maker_userid")
    assert custom <= 5
    assert generic >= 15


def test_migration_18_adds_the_outbox_and_keeps_the_tokens(
    open_userspace: Callable[..., Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_version(17, dsn, schema, monkeypatch)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ada = insert_ada(conn, schema)
        conn.execute(
            f"""INSERT INTO {schema}.tokens (digest, userid, purpose, expires_at)
            VALUES (sha256('a token'), %s, 'reset_password', now() + interval '1 hour')""",
            (ada,),
        )
    with open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
        assert usp.outbox() == [] and usp.webhooks() == [] and usp.mail_settings() is None
        settings = usp.settings()
        assert (settings.login_by_email, settings.delivery_attempts) == (False, 8)
    with psycopg.connect(dsn, autocommit=True) as conn:
        kept = conn.execute(f"SELECT purpose, code FROM {schema}.tokens").fetchall()
    assert kept == [("reset_password", None)]
