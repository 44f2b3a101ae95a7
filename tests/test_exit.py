"""Programs that never call close() still end promptly and quietly."""

import subprocess
import sys
from typing import Any

import pytest

RUNS = 6

SCRIPTS = {
    "threads, no close()": """
import sys, threading, pgusers
usp = pgusers.UserSpace(conninfo=sys.argv[1], schema=sys.argv[2])
def work():
    for _ in range(10):
        usp.find_user(userid=1)
threads = [threading.Thread(target=work) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("end")
""",
    "asyncio after a UserSpace, no close()": """
import asyncio, sys, pgusers
pgusers.UserSpace(conninfo=sys.argv[1], schema=sys.argv[2]).find_user(userid=1)
async def main():
    usp = await pgusers.AsyncUserSpace.connect(
        conninfo=sys.argv[1], schema=sys.argv[2], pool_max=8
    )
    await asyncio.gather(*(usp.find_user(userid=1) for _ in range(6)))
asyncio.run(main())
print("end")
""",
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_a_program_that_never_closes_its_userspace_ends_quietly(
    script: Any, dsn: str, schema: str
) -> None:
    for _ in range(RUNS):
        # The timeout only keeps a hang from stopping the suite; a run that ends
        # takes about a second.
        done = subprocess.run(
            [sys.executable, "-c", script, dsn, schema],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, "end\n", "")
