"""check_key per second: threads, asyncio, and the HTTP check endpoint under wrk."""

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from psycopg import sql

import pgusers
from context import SCHEMA, Context, Row
from shared import (
    execute,
    progress,
)


def throughput_rows(ctx: Context) -> list[Row]:
    """check_key calls per second: one thread on UserSpace; 50 tasks on one event loop
    on AsyncUserSpace; and the longest the loop went without running a ticker task
    while 8 logins with the default Argon2id parameters ran on it."""
    usp, conninfo, key, calls = ctx.usp, ctx.conninfo, ctx.key, ctx.iterations
    started = time.perf_counter()
    for _ in range(calls):
        usp.check_key(key)
    sync_rate = calls / (time.perf_counter() - started)

    async def on_the_loop() -> tuple[float, float]:
        async with pgusers.AsyncUserSpace(conninfo=conninfo, schema=SCHEMA) as space:

            async def task(count: int) -> None:
                for _ in range(count):
                    await space.check_key(key)

            per_task = max(1, calls // 50)
            await asyncio.gather(*(task(per_task // 10 + 1) for _ in range(50)))  # warm-up
            begun = time.perf_counter()
            await asyncio.gather(*(task(per_task) for _ in range(50)))
            async_rate = 50 * per_task / (time.perf_counter() - begun)

        schema = SCHEMA + "_gap"
        async with pgusers.AsyncUserSpace(conninfo=conninfo, schema=schema) as space:
            await space.create_user("gap", "gap-password", "gap@example.com")
            done = asyncio.Event()
            worst = 0.0

            async def ticker() -> None:
                nonlocal worst
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    worst, last = max(worst, now - last), now

            ticking = asyncio.create_task(ticker())
            await asyncio.gather(*(space.validate_user("gap", "gap-password") for _ in range(8)))
            done.set()
            await ticking
        execute(conninfo, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return async_rate, worst * 1000

    async_rate, gap = asyncio.run(on_the_loop())
    return [
        Row("check_key throughput, UserSpace, 1 thread", "1", note=f"{sync_rate:,.0f} calls/s"),
        Row(
            "check_key throughput, AsyncUserSpace, 50 tasks on one loop",
            "1",
            note=f"{async_rate:,.0f} calls/s",
        ),
        Row(
            "event-loop gap during 8 concurrent logins",
            "-",
            gap,
            note="longest wait of a 1 ms ticker on the same loop",
        ),
    ]


WRK_CONNECTIONS = 50


def http_rows(ctx: Context, seconds: int) -> list[Row]:
    """``POST /v1/check`` served by ``pgusers serve`` (one uvicorn process, without
    its access log), loaded by wrk with 50 connections."""
    usp, conninfo, key = ctx.usp, ctx.conninfo, ctx.key
    label = f"POST /v1/check, pgusers serve, wrk {WRK_CONNECTIONS} connections"
    wrk = shutil.which("wrk")
    if wrk is None:
        return [Row(label, "1", note="wrk is not installed (apt-get install wrk)")]
    _, api_key = usp._driver.run(usp._core.create_api_key, "bench", "check")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pgusers_command = Path(sys.executable).with_name("pgusers")
    serve = ["serve", "--port", str(port), "--no-console", "--no-access-log"]
    child = subprocess.Popen(
        [pgusers_command, "--dsn", conninfo, "--schema", SCHEMA, *serve],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/check"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = '{json.dumps({'key': key})}'\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {api_key}"\n'
            )
            script.flush()
            load = [wrk, "-t2", f"-c{WRK_CONNECTIONS}", "--latency", "-s", script.name, url]
            subprocess.run([*load[:1], "-d2s", *load[1:]], capture_output=True, check=True)
            progress(f"loading {url} with wrk for {seconds} s")
            report = subprocess.run(
                [*load[:1], f"-d{seconds}s", *load[1:]], capture_output=True, text=True, check=True
            ).stdout
    finally:
        child.terminate()
        child.wait(30)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", report)

    def percentile(name: str) -> float:
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", report).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    note = f"{rate:,.0f} requests/s" + (f"; {bad.group(1)} failed" if bad else "")
    return [Row(label, "1", percentile("50"), percentile("99"), note=note)]
