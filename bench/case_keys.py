"""check_key with session keys stored as given and as digests."""

import time
from collections.abc import Callable

import psycopg

from context import SCHEMA, Context, Row, timed
from pgusers._core.sql import render
from shared import (
    DRIVER,
    execute,
    progress,
)

# check_key's statement as it was before sessions had ids, a maximum age and keys
# kept as digests (schema version 3): the baseline the statement of today is timed
# against, in the same loop.
CHECK_KEY_BEFORE_SESSION_IDS = """
    WITH found AS (
        SELECT s.key, s.userid, s.expires_at, s.extra_data, u.username, t.session_ttl,
               to_timestamp(%(now)s) AS now,
               s.generation = u.generation + t.generation AND NOT u.disabled AS current
        FROM {schema}.sessions s
        JOIN {schema}.users u ON u.userid = s.userid
        CROSS JOIN {schema}.settings t
        WHERE s.key = %(key)s
    ), slid AS (
        UPDATE {schema}.sessions s
        SET expires_at = f.now + make_interval(secs => f.session_ttl)
        FROM found f
        WHERE s.key = %(key)s AND f.current AND f.expires_at > f.now
          AND f.expires_at NOT BETWEEN
              f.now + make_interval(secs => f.session_ttl - least(60, f.session_ttl / 100))
              AND f.now + make_interval(secs => f.session_ttl)
          AND set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), ended AS (
        DELETE FROM {schema}.sessions s USING found f
        WHERE s.key = %(key)s AND (f.expires_at <= f.now OR NOT f.current)
    )
    SELECT current, expires_at > now, username, userid, extra_data, session_ttl FROM found
"""


def key_mode_rows(ctx: Context) -> list[Row]:
    """check_key with keys stored as given and as digests, and its statement against
    the statement before session ids, each timed in one loop with the floor. Leaves
    the userspace keeping keys hashed."""
    usp, conninfo, key, select_one = ctx.usp, ctx.conninfo, ctx.key, ctx.select_one
    iterations, size = ctx.iterations, ctx.size
    from pgusers._core.keys import stored_form  # noqa: PLC0415
    from pgusers._core.sessions import CHECK_KEY  # noqa: PLC0415 - the statements, as pgusers sends them

    before = CHECK_KEY_BEFORE_SESSION_IDS.replace("{schema}", SCHEMA)
    today = render(CHECK_KEY, SCHEMA)
    rows: list[Row] = []
    with psycopg.connect(conninfo, **DRIVER) as conn:

        def statement(text: str) -> Callable[[], object]:
            params = {"key": key, "stored": stored_form(key), "legacy": False}
            return lambda: conn.execute(text, {**params, "now": time.time()}).fetchone()

        results = timed(
            statement(before),
            statement(today),
            lambda: usp.check_key(key),
            select_one,
            iterations=iterations,
        )
        floor = results[-1][0]
        names = (
            "check_key's statement before session ids (schema 3)",
            "check_key's statement now (key looked up in both forms)",
            "check_key, keys stored as given",
        )
        rows += [
            Row(name, size, median, p99, floor)
            for name, (median, p99) in zip(names, results, strict=False)
        ]
        progress(f"converting {size} stored keys to digests")
        started = time.perf_counter()
        converted = usp.set_session_key_storage("hashed")
        seconds = time.perf_counter() - started
        # Converting rewrites every row: what autovacuum then does, done at once.
        execute(conninfo, f"VACUUM ANALYZE {SCHEMA}.sessions")
        rows.append(
            Row(
                'set_session_key_storage("hashed")',
                f"{converted:,}",
                seconds * 1000,
                note=f"{converted / seconds:,.0f} keys/s, online",
            )
        )
        results = timed(lambda: usp.check_key(key), select_one, iterations=iterations)
        floor = results[-1][0]
        (median, p99) = results[0]
        rows.append(Row("check_key, keys stored as digests", size, median, p99, floor))
    return rows
