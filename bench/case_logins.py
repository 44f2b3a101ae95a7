"""Logins: Argon2id hashing on threads and in asyncio."""

import threading
import time

from argon2 import PasswordHasher
from psycopg import sql

import pgusers
from context import SCHEMA, Row
from shared import (
    execute,
)


def measure_logins(usp: pgusers.UserSpace, per_thread: int) -> tuple[float, float]:
    """Logins per second with the default Argon2id parameters, on one and on two threads."""
    rates = []
    for threads in (1, 2):

        def work() -> None:
            for _ in range(per_thread):
                usp.validate_user("login", "login-password")

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        rates.append(threads * per_thread / (time.perf_counter() - started))
    return rates[0], rates[1]


def login_rows(
    conninfo: str, label: str, hasher: PasswordHasher | None, count: int, floor: float
) -> list[Row]:
    schema = SCHEMA + "_logins"
    logins = pgusers.UserSpace(conninfo=conninfo, schema=schema, hasher=hasher)
    try:
        logins.create_user("login", "login-password", "login@example.com")
        one, two = measure_logins(logins, count)
    finally:
        logins.close()
        execute(conninfo, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return [
        Row(
            f"validate_user ({label})",
            "1 thread",
            1000 / one,
            None,
            floor,
            note=f"{one:.1f} logins/s",
        ),
        Row(
            f"validate_user ({label})",
            "2 threads",
            1000 / two,
            None,
            floor,
            note=f"{two:.1f} logins/s: {two / one:.2f} x one thread",
        ),
    ]
