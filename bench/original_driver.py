"""Times pgusers 0.9.4's check_key; run by run.py inside a virtual environment of its own.

Usage: python original_driver.py CONNINFO SIZE[,SIZE...] ITERATIONS
Prints one JSON object: {"SIZE": [median_ms, p99_ms], ...}.
"""

import json
import statistics
import sys
import time

import psycopg

from pgusers import UserSpace


def main() -> None:
    conninfo, sizes, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    usp = UserSpace(**params)
    usp.create_user("bench", "bench-password", "bench@example.com")
    key = usp.validate_user("bench", "bench-password")[0]
    results = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for size in map(int, sizes.split(",")):
            have = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            conn.execute(
                "INSERT INTO sessions SELECT 1, md5(i::text), extract(epoch FROM now()) + 864000, "
                "'\\x80044e2e'::bytea FROM generate_series(%s::int, %s::int) i",
                (have, size - 1),
            )
            conn.execute("ANALYZE sessions")
            timings = []
            for _ in range(iterations):
                started = time.perf_counter()
                usp.check_key(key)
                timings.append(time.perf_counter() - started)
            timings.sort()
            results[size] = [
                statistics.median(timings) * 1000,
                timings[min(len(timings) - 1, int(len(timings) * 0.99))] * 1000,
            ]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
