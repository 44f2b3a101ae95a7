"""OpenTelemetry spans around the library's calls, through ``opentelemetry-api``: a
no-op unless the application sets up an SDK (and nothing at all when the API is not
installed). A span is named ``pgusers.<call>`` and holds only the call's name and
the database system: never an argument, so never a key, token or password. The
per-request checks (``check_key``, ``check_session``) have none: they run on every
request of an application, and their cost is measured in microseconds."""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from pgusers._version import __version__

UNTRACED: Final = frozenset({"check_key", "check_session"})

try:
    from opentelemetry import trace
except ImportError:  # pragma: no cover - the traces extra is not installed
    _tracer: Any = None
else:
    _tracer = trace.get_tracer("pgusers", __version__)

_NOTHING: Final = nullcontext()


def span(method: Callable[..., Any]) -> AbstractContextManager[Any]:
    """The span of one call of ``method`` (an operation of the core)."""
    name = getattr(method, "__name__", "call")
    if _tracer is None or name in UNTRACED:
        return _NOTHING
    started: AbstractContextManager[Any] = _tracer.start_as_current_span(
        f"pgusers.{name}",
        attributes={"db.system": "postgresql", "pgusers.call": name},
    )
    return started
