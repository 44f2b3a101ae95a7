"""A tiny run of the benchmark, so that it keeps working (no timing is asserted)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_benchmark_smoke_run_prints_its_table(dsn: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--dsn",
            dsn,
            "--sizes",
            "20,50",
            "--iterations",
            "20",
            "--logins",
            "1",
            "--no-original",
            "--no-redis",
            "--no-rivals",
            "--http-seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| operation |")
    for operation in (
        "SELECT 1 (the floor)",
        "check_key",
        "validate_user",
        "all_users",
        "list_sessions(0)",
        "kill_sessions(0, expired=True)",
        "check_key, keys stored as given",
        "check_key, keys stored as digests",
        'set_session_key_storage("hashed")',
        "import_legacy (users + sessions)",
        "POST /v1/check, pgusers serve",
        "check_key, cache hit",
        "hot path: the session row by primary key",
        "hot path: UserSpace.check_key",
        "hot path: asyncio: AsyncUserSpace.check_key",
    ):
        assert any(line.startswith(f"| {operation}") for line in lines), operation
    assert "| check_key | 50 |" in result.stdout
    assert "| kill_sessions(0, expired=True) | 50 |" in result.stdout
    if not os.environ.get("PGUSERS_TEST_PGBOUNCER"):  # the cache needs LISTEN
        assert "| ended in process A, NOT_FOUND in process B after | 1 |" in result.stdout


CAPACITY = BENCH.parent / "capacity.py"


def test_capacity_smoke_run_prints_statements_per_second(server_dsn: str) -> None:
    # pgbench talks to the server itself, never through PgBouncer.
    result = subprocess.run(
        [sys.executable, str(CAPACITY), "--dsn", server_dsn, "--seconds", "1",
         "--sessions", "200", "--hot", "20", "--clients", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0 and "capacity: no pgbench" in result.stderr:
        pytest.skip("no pgbench on this machine")  # the script looks for it itself
    assert result.returncode == 0, result.stderr
    # Two tables: statements per second of each script, then the two statements'
    # mean latencies in one run, each after its heading row.
    per_second, side_by_side = (
        [line for line in table.splitlines() if line.startswith("| ")][1:]
        for table in result.stdout.split("\n\n")
    )
    assert len(per_second) == 3
    assert [row.split("|")[1].strip() for row in side_by_side] == [
        "check_key's statement",
        "the same, its writes as CTEs (as at schema 6)",
    ]
    for row in per_second + side_by_side:
        assert float(row.rsplit("|", 2)[1].replace(",", "")) > 0, row
