"""What one PostgreSQL sustains of check_key's statement, measured with pgbench.

    python bench/capacity.py --dsn "host=127.0.0.1 user=postgres dbname=bench"

Fills a schema of its own with sessions, then runs ``pgbench -M prepared`` with
check_key's own statement (its parameters replaced by a random session), with the
bare primary-key select of a session row beside it, and prints statements per
second. pgbench runs on the same machine as its client threads, so on a small
machine the figures are lower bounds. Needs ``pgbench`` (Debian: postgresql-client
or postgresql); the schema is dropped afterwards.
"""

import argparse
import glob
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

import pgusers
from pgusers._core.sessions import CHECK_KEY
from pgusers._core.sql import render
from shared import CHEAP_HASHER, CHECK_KEY_WITH_WRITES, analyze_as_autovacuum_would

SCHEMA = "pgusers_capacity"


def pgbench() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None
    )
    if found is None:
        sys.exit("capacity: no pgbench (apt-get install postgresql-client)")
    return found


def for_pgbench(statement: str) -> str:
    """A statement of check_key's, its parameters replaced by a session chosen by
    pgbench's ``:n``, on one line."""
    text = (
        render(statement, SCHEMA)
        .replace("%(key)s", "('bench-' || :n)")
        .replace("%(stored)s", "('sha256:' || :n)")
        .replace("%(legacy)s", "false")
        .replace("%(now)s", "extract(epoch FROM now())")
    )
    return " ".join(text.split()) + ";\n"


def script(sessions: int, statement: str) -> str:
    """A pgbench script: ``statement`` for a session chosen at random among the first
    ``sessions``."""
    return f"\\set n random(1, {sessions})\n{statement}"


def scripts(sessions: int, hot: int) -> dict[str, str]:
    """pgbench scripts: what each line of the report runs."""
    check = for_pgbench(CHECK_KEY)
    bare = f"SELECT s.expires_at FROM {SCHEMA}.sessions s WHERE s.key = 'bench-' || :n;\n"
    return {
        f"the bare select, {hot:,} hot sessions": script(hot, bare),
        f"check_key's statement, {hot:,} hot sessions": script(hot, check),
        f"check_key's statement, {sessions:,} sessions, the first check of each writes": (
            script(sessions, check)
        ),
    }


def run_pgbench(command: str, texts: list[str], where: Path, args: argparse.Namespace) -> str:
    """Run pgbench with these scripts (picked at random, alike, when several) for
    ``--seconds``; its report."""
    run = [command, "-n", "-M", "prepared", "-c", str(args.clients), "-j", str(args.threads)]
    for number, text in enumerate(texts):
        path = where / f"script-{number}.sql"
        path.write_text(text)
        run += ["-f", str(path)]
    run += ["-T", str(args.seconds), args.dsn]
    return subprocess.run(run, capture_output=True, text=True, check=True).stdout


def side_by_side(command: str, where: Path, args: argparse.Namespace) -> None:
    """Today's statement and the one whose writes were CTEs (schema version 6), half
    and half in one pgbench run over the hot sessions: the same load on the server
    for both, so their mean latencies compare what each costs it."""
    labels = {
        "check_key's statement": CHECK_KEY,
        "the same, its writes as CTEs (as at schema 6)": CHECK_KEY_WITH_WRITES,
    }
    texts = [script(args.hot, for_pgbench(statement)) for statement in labels.values()]
    report = run_pgbench(command, texts, where, args)
    means = re.findall(r"^SQL script.*?latency average = ([0-9.]+) ms", report, re.M | re.S)
    print(f"\n| one pgbench run, {args.hot:,} hot sessions, half each | mean latency ms |")
    print("|---|---|")
    for label, mean in zip(labels, means, strict=True):
        print(f"| {label} | {float(mean):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--hot", type=int, default=1_000)
    args = parser.parse_args()
    command = pgbench()
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(drop)
    try:
        with pgusers.UserSpace(conninfo=args.dsn, schema=SCHEMA, hasher=CHEAP_HASHER) as usp:
            userid = usp.create_user("capacity", "capacity-pw", "capacity@example.com")
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.sessions (key, userid, expires_at) "
                    "SELECT 'bench-' || i, %s, now() + interval '10 days' "
                    "FROM generate_series(1, %s) i"
                ).format(sql.Identifier(SCHEMA)),
                (userid, args.sessions),
            )
        analyze_as_autovacuum_would(args.dsn, SCHEMA)
        print(f"| pgbench, {args.clients} clients, {args.seconds} s | statements/s |")
        print("|---|---|")
        with tempfile.TemporaryDirectory() as where:
            for name, text in scripts(args.sessions, args.hot).items():
                report = run_pgbench(command, [text], Path(where), args)
                tps = re.search(r"^tps = ([0-9.]+)", report, re.MULTILINE)
                print(f"| {name} | {float(tps.group(1)) if tps else float('nan'):,.0f} |")
            side_by_side(command, Path(where), args)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(drop)


if __name__ == "__main__":
    main()
