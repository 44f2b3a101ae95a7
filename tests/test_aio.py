"""What only the asyncio API has: opening, per-loop identity, a loop that never blocks."""

import asyncio
import os
import sys
import threading
import time
from typing import Literal

import pytest
from argon2 import PasswordHasher

import pgusers
from pgusers import OK, BadCallError

from .support import FAST_HASHER


def test_async_with_opens_and_closes(dsn: str, schema: str) -> None:
    async def main() -> None:
        async with pgusers.AsyncUserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
            uid = await usp.create_user("ada", "pw", "ada@example.com")
            key, _, _ = await usp.validate_user("ada", "pw")
            assert await usp.check_key(key) == (OK, "ada", uid, None)
            assert [row async for row in usp.all_users()] == [
                (uid, "ada", "ada@example.com", False)
            ]
            assert [row[1] async for row in usp.list_sessions(0)] == [key]
        assert "closed" in repr(usp)
        with pytest.raises(BadCallError, match=r"is closed$"):
            await usp.find_user(userid=uid)

    asyncio.run(main())


def test_connect_and_close(dsn: str, schema: str) -> None:
    async def main() -> None:
        usp = await pgusers.AsyncUserSpace.connect(conninfo=dsn, schema=schema)
        assert usp.ttl == 864000.0
        await usp.close()
        await usp.close()

    asyncio.run(main())


def test_same_target_same_object_within_one_loop_only(dsn: str, schema: str) -> None:
    async def open_twice() -> pgusers.AsyncUserSpace:
        first = await pgusers.AsyncUserSpace.connect(conninfo=dsn, schema=schema)
        second = await pgusers.AsyncUserSpace.connect(conninfo=dsn, schema=schema)
        assert first is second
        await first.close()
        return first

    assert asyncio.run(open_twice()) is not asyncio.run(open_twice())


def test_creating_outside_an_event_loop_is_a_bad_call(dsn: str) -> None:
    with pytest.raises(BadCallError, match="event loop"):
        pgusers.AsyncUserSpace(conninfo=dsn)


def test_calls_before_opening_are_bad_calls(dsn: str, schema: str) -> None:
    async def main() -> None:
        usp = pgusers.AsyncUserSpace(conninfo=dsn, schema=schema)
        with pytest.raises(BadCallError, match="not open"):
            await usp.is_admin(1)
        await usp.close()

    asyncio.run(main())


def test_password_hashing_does_not_block_the_event_loop(dsn: str, schema: str) -> None:
    """Eight logins with the default (about 0.1 s) Argon2id parameters run while a
    ticker on the same loop keeps ticking: a hash on the loop would stall it for a
    whole hash."""

    async def main() -> float:
        async with pgusers.AsyncUserSpace(conninfo=dsn, schema=schema) as usp:
            await usp.create_user("ada", "pw", "ada@example.com")
            gaps: list[float] = []
            done = asyncio.Event()

            async def ticker() -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            ticking = asyncio.create_task(ticker())
            logins = await asyncio.gather(*(usp.validate_user("ada", "pw") for _ in range(8)))
            done.set()
            await ticking
            assert all(key for key, _, _ in logins)
            return max(gaps)

    worst_gap = asyncio.run(main())
    print(f"worst event-loop gap during 8 concurrent logins: {worst_gap * 1000:.1f} ms")
    assert worst_gap < 0.05


class PriorityRecordingHasher(PasswordHasher):
    """A real (cheap) Argon2id hasher that notes the priority of the thread it runs on."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.priorities: list[int] = []

    def _note(self) -> None:
        self.priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._note()
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self._note()
        return super().verify(hash, password)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_passwords_are_hashed_below_the_event_loops_priority(dsn: str, schema: str) -> None:
    hasher = PriorityRecordingHasher()
    loop_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def main() -> int:
        async with pgusers.AsyncUserSpace(conninfo=dsn, schema=schema, hasher=hasher) as usp:
            await usp.create_user("ada", "pw", "ada@example.com")
            await usp.login("ada", "pw")
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert asyncio.run(main()) == loop_priority  # the loop's thread is left as it was
    assert len(hasher.priorities) >= 2
    assert all(p == min(19, loop_priority + 10) for p in hasher.priorities)


def test_waiting_on_the_network_never_holds_a_hashing_thread(dsn: str, schema: str) -> None:
    # A breached-password lookup (as an identity provider's answer) waits on another
    # server: it runs on a thread of its own, so that a slow server cannot take the
    # threads that hash passwords.
    seen: list[str] = []

    def lookup(sha1: str) -> tuple[int | None, str]:
        seen.append(threading.current_thread().name)
        return 0, ""

    async def main() -> None:
        async with pgusers.AsyncUserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER) as usp:
            await usp.set_password_policy(breached="best_effort")
            usp._core.breaches = lookup  # what pgusers asks, in place of a range server
            await usp.create_user("ada", "a-long-enough-password", "ada@example.com")

    asyncio.run(main())
    assert len(seen) == 1 and not seen[0].startswith("pgusers-hash")
