"""What may run again after a failure: the one place that decides it.

Two kinds of retry, one word:

- A **statement** the server undid as a deadlock or serialisation victim left
  nothing behind (it ran in its own transaction), so the driver runs that same
  statement again, up to :data:`STATEMENT_RETRIES` times, whatever the operation.
- A whole **operation** whose connection was lost may have done its work or not: it
  runs again on a fresh connection, once, only if it is marked :func:`retry_safe`,
  meaning that running it twice leaves the same result as running it once.
"""

from collections.abc import Callable
from typing import Final, TypeVar

import psycopg

F = TypeVar("F", bound=Callable[..., object])

TRANSIENT_SQLSTATES: Final = frozenset({"40P01", "40001"})
"""Deadlock and serialisation failure: the server undid the statement."""

STATEMENT_RETRIES: Final = 3
"""How many times one statement undone by the server runs again."""

RETRY_SAFE: set[str] = set()
"""The names of the operations marked :func:`retry_safe` (for the documentation's
list; the mark itself is on the function)."""

MARK: Final = "__pgusers_retry_safe__"


def retry_safe(operation: F) -> F:
    """Mark an operation of the core as safe to run again after a lost connection."""
    setattr(operation, MARK, True)
    RETRY_SAFE.add(operation.__name__)
    return operation


def is_retry_safe(operation: Callable[..., object]) -> bool:
    """Tell whether ``operation`` (a method of the core, bound or not) is marked
    :func:`retry_safe`: by the mark on the function itself, not by its name."""
    return getattr(operation, MARK, False) is True


def connection_lost(error: psycopg.Error) -> bool:
    """Tell whether ``error`` means the connection died (rather than the statement failed)."""
    return (
        isinstance(error, psycopg.InterfaceError)
        or error.sqlstate is None
        or error.sqlstate.startswith(("08", "57P"))
    )


def statement_may_retry(error: BaseException, *, undone: bool, retries: int) -> bool:
    """Tell whether a statement that failed with ``error`` runs again, after it already
    ran again ``retries`` times; ``undone``: its transaction was rolled back whole."""
    return (
        undone
        and getattr(error, "sqlstate", None) in TRANSIENT_SQLSTATES
        and retries < STATEMENT_RETRIES
    )


def operation_may_retry(error: psycopg.Error, operation: Callable[..., object]) -> bool:
    """Tell whether an operation that failed with ``error`` runs again on a fresh
    connection (once: the caller does not ask again after the second attempt)."""
    return connection_lost(error) and is_retry_safe(operation)
