"""import_legacy of pgusers 0.9 databases, each in a fresh process."""

import json
import subprocess
import sys

import psycopg
from psycopg import sql

from context import HERE, Row
from shared import (
    drop_database,
    execute,
    progress,
)

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
