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
import os

from argon2 import PasswordHasher
from psycopg import sql

import pgusers
from case_baselines import measure_original, redis_call
from case_cache import CACHE_TRIALS, cache_rows
from case_factors import factor_rows
from case_hotpath import hotpath_rows
from case_import import import_rows
from case_keys import key_mode_rows
from case_logins import login_rows
from case_outbox import outbox_rows
from case_streams import measure_purge, measure_stream
from case_throughput import http_rows, throughput_rows
from case_writes import account_rows, anatomy_rows, write_rows
from context import (
    ORIGINAL_VERSION,
    PRODUCTION_SESSIONS,
    SCHEMA,
    Context,
    Row,
    fill_sessions,
    floor_call,
    production_state,
    server,
    table,
    timed,
)
from shared import (
    CHEAP_HASHER,
    execute,
    progress,
)


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
            ctx = Context(
                conninfo, usp, key, userid, select_one, iterations, f"{sizes[-1]:,}", cpu, rivals
            )
            rows.extend(write_rows(ctx))
            rows.extend(anatomy_rows(ctx))
            rows.extend(hotpath_rows(ctx))
            progress("timing tokens and throttled logins")
            rows.extend(account_rows(ctx))
            progress("timing check_key throughput, threads and asyncio")
            rows.extend(throughput_rows(ctx))
            rows.extend(http_rows(ctx, http_seconds))
            rows.extend(cache_rows(conninfo, CACHE_TRIALS))
            progress("timing check_key with keys as given and as digests")
            rows.extend(key_mode_rows(ctx))
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
    cache), "hotpath" (check_key layer by layer, async, and beside Django and
    FastAPI-Users), "factors" (check_session beside check_key, second factors) or
    "outbox" (a reset request with its mail beside issue_token, delivery rates)."""
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
            size = f"{sizes[-1]:,}"
            ctx = Context(conninfo, usp, key, userid, select_one, iterations, size, cpu, rivals)
            if part == "hotpath":
                return rows + hotpath_rows(ctx)
            if part == "factors":
                return rows + factor_rows(ctx)
            if part == "outbox":
                return rows + outbox_rows(ctx)
            if part == "http":
                ((median, p99), (floor, _)) = timed(
                    lambda: usp.check_key(key), select_one, iterations=iterations
                )
                in_process = Row("check_key, in-process", "1", median, p99, floor)
                return [*rows, in_process, *http_rows(ctx, http_seconds)]
            progress(f"filling {sizes[-1]} sessions")
            fill_sessions(conninfo, userid, PRODUCTION_SESSIONS, sizes[-1])
            return rows + key_mode_rows(ctx)
        finally:
            usp.close()
            execute(
                conninfo, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA))
            )


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
        choices=("keys", "import", "http", "cache", "hotpath", "factors", "outbox"),
        help="run one part on its own: check_key in both key modes, the import, HTTP, "
        "the session cache, the per-request path taken apart and compared, or second "
        "factors (check_session beside check_key, logins with a TOTP code), or the outbox "
        "(a reset request with its mail, delivery to local SMTP and webhook partners)",
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
