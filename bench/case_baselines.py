"""What pgusers is compared with: Redis, and pgusers 0.9 in a process of its own."""

import json
import subprocess
import tempfile
import venv
from collections.abc import Callable

import psycopg
from psycopg import sql

from context import HERE, ORIGINAL_DATABASE, ORIGINAL_VERSION
from shared import (
    drop_database,
    execute,
    progress,
)


def redis_call() -> tuple[Callable[[], object] | None, str]:
    """Return Redis GET + EXPIRE of one session, pipelined, or None and why not."""
    try:
        import redis  # noqa: PLC0415 - optional
    except ImportError:
        return None, "redis-py not installed"
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.set("pgusers-bench-session", b"x" * 64, ex=864000)
    except redis.RedisError as error:
        return None, f"no Redis at 127.0.0.1:6379 ({error})"

    def get_and_expire() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.get("pgusers-bench-session")
        pipe.expire("pgusers-bench-session", 864000)
        pipe.execute()

    return get_and_expire, "GET + EXPIRE pipelined: one round trip"


def measure_original(conninfo: str, sizes: list[int], iterations: int) -> dict[int, list[float]]:
    env_dir = HERE / f".venv-pgusers-{ORIGINAL_VERSION}"
    python = env_dir / "bin" / "python"
    if not python.exists():
        progress(f"installing pgusers {ORIGINAL_VERSION} into {env_dir}")
        venv.create(env_dir, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"pgusers=={ORIGINAL_VERSION}"],
            check=True,
        )
    drop_database(conninfo, ORIGINAL_DATABASE)
    execute(conninfo, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ORIGINAL_DATABASE)))
    target = psycopg.conninfo.make_conninfo(conninfo, dbname=ORIGINAL_DATABASE)
    progress(f"timing pgusers {ORIGINAL_VERSION} at {sizes} sessions")
    try:
        result = subprocess.run(
            [
                str(python),
                str(HERE / "original_driver.py"),
                target,
                ",".join(map(str, sizes)),
                str(iterations),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        )
    finally:
        drop_database(conninfo, ORIGINAL_DATABASE)
    return {int(size): timing for size, timing in json.loads(result.stdout).items()}
