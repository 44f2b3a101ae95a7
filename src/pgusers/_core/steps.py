"""The I/O-free protocol between the pgusers core and its sync and async drivers.

Every operation is a generator that yields steps and receives their results; it
never touches a socket or a thread itself. :class:`Execute` asks the driver to run
one SQL statement and send back its rows; :class:`Offload` asks it to run CPU-bound
work (password hashing) where it will not block: directly on a thread, or in a
worker thread under asyncio; and work that waits on another server, on a thread of
its own under asyncio. A database error raised by a step is thrown back into
the generator at the ``yield``, so the rules for reading it live in the core too.
"""

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from pgusers._core.retries import statement_may_retry

T = TypeVar("T")


class Fetch(Enum):
    """What an :class:`Execute` step sends back."""

    ONE = "one"
    """The first row, or None."""
    ALL = "all"
    """Every row, as a list."""
    ROWCOUNT = "rowcount"
    """The number of rows the statement affected."""


@dataclass(frozen=True, slots=True)
class Execute:
    """Run one SQL statement on a pooled connection (in autocommit mode)."""

    query: str
    params: Sequence[Any] | Mapping[str, Any] = ()
    fetch: Fetch = Fetch.ONE


@dataclass(frozen=True, slots=True)
class Offload:
    """Run ``func(*args)`` away from the event loop and send back its result.

    The connection of the steps before is given back to the pool meanwhile, unless
    ``in_transaction``: then the work is part of a transaction still open on it."""

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    in_transaction: bool = False
    waits: bool = False
    """Work that waits on the network rather than the CPU (a breached-password
    lookup, an identity provider): under asyncio it runs on a thread of its own, so
    that a slow server never holds a thread that hashes passwords."""


Step = Execute | Offload
Operation = Generator[Step, Any, T]


class Stepper(Generic[T]):
    """Advances an operation; drivers feed it each step's result or error. Once no
    step is left, :attr:`value` is what the operation returned."""

    def __init__(self, operation: Operation[T]) -> None:
        self._operation = operation
        self._step: Step | None = None
        self._retries = 0
        self._result: tuple[T] | None = None

    @property
    def value(self) -> T:
        """The operation's result (only once it has finished)."""
        if self._result is None:
            raise RuntimeError("the operation has steps left")
        return self._result[0]

    def _moved(self, step: Step) -> Step:
        self._retries = 0
        self._step = step
        return step

    def _finished(self, stop: StopIteration) -> None:
        """Keep the operation's return value: it has no step left."""
        self._retries = 0
        self._result = (stop.value,)
        self._step = None

    def start(self) -> Step | None:
        """Return the first step, or None if the operation finished without one."""
        try:
            return self._moved(next(self._operation))
        except StopIteration as stop:
            self._finished(stop)
            return None

    def send(self, result: Any) -> Step | None:
        """Hand back a step's result; return the next step or None when done."""
        try:
            return self._moved(self._operation.send(result))
        except StopIteration as stop:
            self._finished(stop)
            return None

    def throw(self, error: BaseException) -> Step | None:
        """Raise a step's error inside the operation; return its next step or None."""
        try:
            return self._moved(self._operation.throw(error))
        except StopIteration as stop:
            self._finished(stop)
            return None

    def fail(self, error: BaseException, *, undone: bool) -> Step | None:
        """Handle a step's error: return the same step to run again when
        :func:`~pgusers._core.retries.statement_may_retry` allows it (``undone``: no
        transaction was left open); otherwise raise it inside the operation."""
        if statement_may_retry(error, undone=undone, retries=self._retries):
            self._retries += 1
            return self._step
        return self.throw(error)

    def close(self) -> None:
        """Abandon the operation."""
        self._operation.close()
