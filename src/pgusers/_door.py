"""The one door of pgusers' own clients to what the facades do not offer.

The HTTP service, the console, the command line and the test helpers need a few
operations that are not part of the public API (API keys, pages of accounts) and a
few of the core's constants and rules. They reach them here, and only here: an
operation is named by the core's function itself (``door.run(space, Core.accounts,
...)``), so mypy checks its arguments and its result, and a misspelt name fails
before the program runs. The import contracts (``pyproject.toml``) keep the
clients from importing the core or the drivers any other way.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from types import MethodType
from typing import Any, Concatenate, ParamSpec, TypeVar

from pgusers._aio import AsyncUserSpace
from pgusers._core import recording
from pgusers._core.audit import KINDS
from pgusers._core.base import Query
from pgusers._core.codec import Codec
from pgusers._core.identities import fold
from pgusers._core.importer import RESOLUTIONS, SESSION_MODES
from pgusers._core.keys import looks_like_api_key
from pgusers._core.operations import Core
from pgusers._core.recording import acting_as
from pgusers._core.retries import MARK, is_retry_safe
from pgusers._core.sql import outbox_channel
from pgusers._core.steps import Operation
from pgusers._options import hasher_for_tests
from pgusers._userspace import UserSpace

__all__ = [
    "KINDS",
    "RESOLUTIONS",
    "SESSION_MODES",
    "Codec",
    "Core",
    "acting_as",
    "arun",
    "astream",
    "codec",
    "fold",
    "forget_observer",
    "hasher_for_tests",
    "looks_like_api_key",
    "observe_events",
    "outbox_wakeups",
    "run",
    "served_from_memory",
    "stream",
]

P = ParamSpec("P")
T = TypeVar("T")


def _bound(core: Core, operation: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``operation`` bound to ``core``, as the drivers run it (the retry mark kept)."""
    method = MethodType(operation, core)
    if not kwargs:
        return method

    def call(*args: object) -> Any:
        return method(*args, **kwargs)

    call.__name__ = operation.__name__  # what its span is named after

    if is_retry_safe(operation):
        setattr(call, MARK, True)
    return call


def run(
    space: UserSpace,
    operation: Callable[Concatenate[Core, P], Operation[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run an operation of the core on a blocking userspace; return its result."""
    result: T = space._driver.run(_bound(space._core, operation, kwargs), *args)
    return result


async def arun(
    space: AsyncUserSpace,
    operation: Callable[Concatenate[Core, P], Operation[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run an operation of the core on an asyncio userspace; return its result."""
    result: T = await space._driver.run(_bound(space._core, operation, kwargs), *args)
    return result


def stream(
    space: UserSpace,
    query: Callable[Concatenate[Core, P], Query[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> Iterator[T]:
    """The rows of a streamed query of the core, on a blocking userspace."""
    return space._driver.stream(_bound(space._core, query, kwargs), *args)


def astream(
    space: AsyncUserSpace,
    query: Callable[Concatenate[Core, P], Query[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> AsyncIterator[T]:
    """The rows of a streamed query of the core, on an asyncio userspace."""
    return space._driver.stream(_bound(space._core, query, kwargs), *args)


def codec(space: UserSpace | AsyncUserSpace) -> Codec:
    """How the userspace turns data into JSON and back (its serializer's rules)."""
    return space._core.codec


def outbox_wakeups(space: UserSpace | AsyncUserSpace) -> tuple[str, str]:
    """Where a delivery worker LISTENs (the userspace's own server) and the channel on
    which a change that writes to the outbox wakes it."""
    return space._driver.target.conninfo, outbox_channel(space._core.schema)


def observe_events(observer: Callable[[str], None]) -> None:
    """Call ``observer`` with the kind of every event this process's statements write."""
    if observer not in recording.observers:
        recording.observers.append(observer)


def forget_observer(observer: Callable[[str], None]) -> None:
    """Stop calling ``observer`` (see :func:`observe_events`)."""
    if observer in recording.observers:
        recording.observers.remove(observer)


def served_from_memory(space: UserSpace | AsyncUserSpace) -> int | None:
    """How many checks the userspace's session cache answered from memory (None
    without a cache)."""
    cache = space._core.cache
    return None if cache is None else cache.served
