"""The blocking and the asyncio drivers behave alike where a caller can tell: the
same refusal on a closed userspace, whatever the arguments; a userspace that has
its connections ready once it is open; an open that is done once."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import pgusers
from pgusers import BadCallError

from .support import FAST_HASHER, pool_of


def test_a_call_on_a_closed_userspace_says_so_whatever_its_arguments(
    open_userspace: Callable[..., Any], dsn: str, schema: str
) -> None:
    usp = open_userspace(conninfo=dsn, schema=schema, hasher=FAST_HASHER)
    usp.close()
    calls: list[Callable[[], object]] = [
        lambda: usp.find_user(username="ada"),
        lambda: usp.find_user(username=42),  # a bad argument: still "closed"
        lambda: usp.check_key("x" * 43),
    ]
    for call in calls:
        with pytest.raises(BadCallError) as refused:
            call()
        assert str(refused.value).endswith("is closed")


def test_open_leaves_the_pool_with_its_connections_ready(dsn: str, schema: str) -> None:
    usp = pgusers.UserSpace(conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_min=2)
    try:
        assert pool_of(usp).get_stats()["pool_size"] >= 2
        assert usp._driver.open() is False  # opening again does nothing
    finally:
        usp.close()

    async def main() -> None:
        space = await pgusers.AsyncUserSpace.connect(
            conninfo=dsn, schema=schema, hasher=FAST_HASHER, pool_min=2
        )
        try:
            pool = space._driver._pool
            assert pool is not None and pool.get_stats()["pool_size"] >= 2
            assert await space._driver.open() is False
        finally:
            await space.close()

    asyncio.run(main())
