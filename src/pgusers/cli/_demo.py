"""``pgusers demo``: a user's whole life, step by step, in a throw-away place."""

import datetime as dt
import secrets
import time
from collections import Counter
from collections.abc import Callable

import click
import psycopg
from psycopg import sql

from pgusers._userspace import UserSpace
from pgusers.cli._database import Database

SLIDE_WAIT = 1.5


def _clock(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%H:%M:%S.%f")[:-4]


def _prepare(database: Database) -> tuple[str, str, str, Callable[[], None]]:
    """Return the conninfo, schema and description of a throw-away place, and its remover."""
    suffix = secrets.token_hex(4)
    if not database.uses_embedded():
        conninfo = psycopg.conninfo.make_conninfo(database.dsn or "", **database.params)
        schema = f"pgusers_demo_{suffix}"

        def drop_schema() -> None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

        return conninfo, schema, f"throw-away schema {schema}", drop_schema
    server = database.embedded_server()
    dbname = f"pgusers_demo_{suffix}"
    with psycopg.connect(server.uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def drop_database() -> None:
        with psycopg.connect(server.uri, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))

    place = f"throw-away database {dbname} on the embedded PostgreSQL in {server.data_dir}"
    return server.conninfo(dbname), "pgusers", place, drop_database


def run(database: Database) -> None:
    """Run the demo, printing one line per step, and remove what it made."""
    started = time.perf_counter()
    conninfo, schema, place, remove = _prepare(database)
    try:
        with UserSpace(conninfo=conninfo, schema=schema) as usp:
            _tour(usp, conninfo, schema, place)
    finally:
        remove()
    click.echo(f"cleaned up: removed the {place.split(' on ')[0]}")
    if database.uses_embedded():
        click.echo(
            'the embedded PostgreSQL keeps running for your next commands; "pgusers server '
            'stop" stops it'
        )
    click.echo(f"done in {time.perf_counter() - started:.1f} s")


def _tour(usp: UserSpace, conninfo: str, schema: str, place: str) -> None:
    say = click.echo
    with psycopg.connect(conninfo) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    say(f"server: PostgreSQL {version[0] if version else '?'}, {place}")

    admin_pw, ada_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    admin = usp.create_user("admin", admin_pw, "admin@example.com", admin=True)
    say(f"created administrator 'admin' (userid {admin}, is_admin: {usp.is_admin(admin)})")
    ada = usp.create_user("ada", ada_pw, "ada@example.com", extra_data={"plan": "free"})
    record = usp.find_user(userid=ada)
    data = None if record is None else record["extra_data"]
    say(f"created user 'ada' (userid {ada}) with extra_data {data}")

    key, _, _ = usp.validate_user("ada", ada_pw, extra_data={"ip": "192.0.2.7"})
    say(f"ada logged in: session key {key[:6]}… ({len(key)} URL-safe characters, 256 random bits)")
    wrong = usp.validate_user("ada", "not the password")
    unknown = usp.validate_user("nobody", ada_pw)
    say(f"wrong password -> {wrong}; unknown user -> {unknown}: the same answer")

    rc, username, userid, data = usp.check_key(key)
    say(f"check_key: {rc.name}, user {username!r} (userid {userid}), session data {data}")

    usp.set_session_TTL(60)
    key2, _, _ = usp.validate_user("ada", ada_pw)
    before = dict((k, e) for _, k, e in usp.list_sessions(ada))[key2]
    time.sleep(SLIDE_WAIT)
    usp.check_key(key2)
    after = dict((k, e) for _, k, e in usp.list_sessions(ada))[key2]
    say(
        f"sliding TTL (60 s): a check {SLIDE_WAIT} s later moved the expiry "
        f"from {_clock(before)} to {_clock(after)} UTC"
    )

    sessions = list(usp.list_sessions(ada))
    say(f"ada has {len(sessions)} sessions: " + ", ".join(f"{k[:6]}…" for _, k, _ in sessions))

    phone = usp.login("ada", ada_pw, source="198.51.100.20", user_agent="ExamplePhone/2.1").key
    devices = ", ".join(
        f"{row.session_id} ({row.user_agent or 'no agent'}{', this one' if row.current else ''})"
        for row in usp.sessions(ada, key=phone)
    )
    say(f"ada's devices, by session id (never the key): {devices}")
    others = usp.end_other_sessions(phone)
    say(
        f"'log out everywhere else' on the phone ended {others} sessions; "
        f"the phone's own: {usp.check_key(phone).status.name}"
    )

    with psycopg.connect(conninfo) as conn:
        stored = conn.execute(
            sql.SQL("SELECT password_hash FROM {}.users WHERE userid = %s").format(
                sql.Identifier(schema)
            ),
            (ada,),
        ).fetchone()
        everything = conn.execute(
            sql.SQL(
                "SELECT (SELECT json_agg(u)::text FROM {s}.users u) || "
                "(SELECT json_agg(s)::text FROM {s}.sessions s)"
            ).format(s=sql.Identifier(schema))
        ).fetchone()
    hashed = stored[0] if stored else ""
    absent = everything is not None and ada_pw not in str(everything[0])
    say(
        f"the database stores ada's password as {hashed[:40]}…; "
        f"the password itself appears {'nowhere' if absent else 'SOMEWHERE'} in it"
    )

    ended = usp.kill_sessions(ada)
    say(f"ended {ended} sessions; check_key on the first key now: {usp.check_key(key).status.name}")
    kinds = Counter(event.kind for event in usp.events())
    say(
        f"the audit trail holds {kinds.total()} events, each written with its change: "
        + ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))
    )
    usp.delete_user(userid=ada)
    say(
        f"deleted ada: find_user -> {usp.find_user(username='ada')}; "
        f"users left: {[row[1] for row in usp.all_users()]}"
    )
