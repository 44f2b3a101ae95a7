"""A tiny run of the benchmark, so that it keeps working (no timing is asserted)."""

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_benchmark_smoke_run_prints_its_table(dsn):
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
