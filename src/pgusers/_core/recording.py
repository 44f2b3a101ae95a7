"""Who is acting, and passing on the events each change records.

The actor is a :mod:`contextvars` value, so it is right per thread and per asyncio
task: ``with pgusers.acting_as("admin:42"): ...`` marks every change made inside the
block. The events themselves are written by the SQL statements that make the
changes (see :data:`pgusers._core.sql.LOG_EVENTS`); the statements hand them
back, and :func:`emit` passes them on to the ``pgusers.events`` logger.
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

from pgusers._core import checks

MAX_ACTOR: Final = 255

_acting: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "pgusers_acting_as", default=(None, None)
)

logger = logging.getLogger("pgusers.events")

observers: list[Callable[[str], None]] = []
"""Called with the kind of each event this process's statements wrote (the metrics'
counters): cheap, and never raising."""


@contextmanager
def acting_as(actor: str, *, source: str | None = None) -> Iterator[None]:
    """Record ``actor`` (and ``source``, such as the client's address) as who made the
    changes inside the ``with`` block: ``with pgusers.acting_as("admin:42"): ...``.

    The value is context-local: other threads and asyncio tasks keep their own.
    Blocks nest; the innermost wins.
    """
    checked = (
        checks.label(actor, "actor", MAX_ACTOR),
        checks.source(source),
    )
    token = _acting.set(checked)
    try:
        yield
    finally:
        _acting.reset(token)


def current_actor() -> tuple[str | None, str | None]:
    """Return the actor and source set by the innermost :func:`acting_as`, or Nones."""
    return _acting.get()


def parameters(now: float, source: str | None = None) -> dict[str, Any]:
    """The parameters every statement that writes events takes: the time, the actor,
    and the source (``source`` if given, else the one :func:`acting_as` set)."""
    actor, acting_source = _acting.get()
    return {"now": now, "actor": actor, "event_source": source or acting_source}


def emit(events: Iterable[dict[str, Any]] | None) -> None:
    """Log events a statement wrote, each with its fields as the record's ``extra``."""
    for event in events or ():
        for observer in observers:
            observer(event["kind"])
        fields = {
            "event_id": event["id"],
            "at": event["at"],
            "kind": event["kind"],
            "userid": event["userid"],
            "actor": event["actor"],
            "source": event["source"],
            "session_id": event["session_id"],
            "detail": event["detail"],
        }
        logger.info(
            "%s userid=%s actor=%s source=%s",
            event["kind"],
            event["userid"],
            checks.printable(event["actor"]),
            checks.printable(event["source"]),
            extra=fields,
        )
