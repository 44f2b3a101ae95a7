"""Prometheus metrics of pgusers, in an application's own registry (or the default
one), with ``prometheus-client`` (the ``metrics`` extra)::

    from prometheus_client import CollectorRegistry
    from pgusers.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    metrics.watch(space)              # its session cache's answers from memory
    worker = Worker(space, metrics=metrics)

What it counts, all under the ``pgusers_`` prefix:

- ``events_total{kind}``: the events this process's calls wrote: logins by outcome
  (``login.succeeded``, ``login.failed``, ``login.throttled``,
  ``login.mfa_required``), every change, every mail asked for;
- ``checks_total{status}``: session checks answered by the service (``pgusers serve``
  and :func:`pgusers.web.create_app`), by status;
- ``session_cache_served_total``: checks the session cache answered from memory;
- ``deliveries_total{channel,outcome}``: messages a worker sent (``sent``), will try
  again (``retry``) or gave up (``dead``);
- ``outbox_pending``, ``outbox_dead``, ``outbox_oldest_pending_seconds``: the outbox
  as :meth:`Metrics.refresh` last read it (the service reads it at each scrape);
- ``http_request_duration_seconds{method,route,status}``: the service's requests.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from pgusers import _door
from pgusers._aio import AsyncUserSpace
from pgusers._userspace import UserSpace

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import CounterMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, Collector
except ImportError as missing:  # pragma: no cover - the extra is not installed
    raise ImportError(
        f"metrics need the metrics extra: pip install 'pgusers[metrics]' ({missing})"
    ) from None

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: a check takes a fraction of a millisecond, a login with Argon2id tenths."""


class Metrics:
    """pgusers' counters and gauges, registered in ``registry`` (default: the
    ``prometheus_client`` default registry). One per registry; see the module."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        where: dict[str, Any] = {"namespace": "pgusers", "registry": self.registry}
        self.events = Counter(
            "events", "Events written by this process, by kind", ["kind"], **where
        )
        self.checks = Counter(
            "checks", "Session checks answered by the service, by status", ["status"], **where
        )
        self.deliveries = Counter(
            "deliveries",
            "Outbox messages a worker delivered or failed, by channel and outcome",
            ["channel", "outcome"],
            **where,
        )
        self.outbox_pending = Gauge("outbox_pending", "Messages waiting to be sent", **where)
        self.outbox_dead = Gauge("outbox_dead", "Messages whose attempts are spent", **where)
        self.outbox_oldest = Gauge(
            "outbox_oldest_pending_seconds", "Age of the oldest waiting message", **where
        )
        self.requests = Histogram(
            "http_request_duration_seconds",
            "Requests to the service, by method, route and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            **where,
        )
        self._served = _Served()
        self.registry.register(self._served)
        _door.observe_events(self._counted)

    def _counted(self, kind: str) -> None:
        self.events.labels(kind).inc()

    def close(self) -> None:
        """Stop counting this process's events here."""
        _door.forget_observer(self._counted)

    def watch(self, space: UserSpace | AsyncUserSpace) -> None:
        """Count the answers ``space``'s session cache gives from memory."""
        self._served.spaces.append(space)

    def delivered(self, channel: str, outcome: str) -> None:
        """Count one delivery by a worker: ``outcome`` is sent, retry or dead."""
        self.deliveries.labels(channel, outcome).inc()

    def checked(self, status: str) -> None:
        """Count one session check answered, by its status's name."""
        self.checks.labels(status).inc()

    def backlog(self, pending: int, dead: int, oldest: float) -> None:
        """Set the outbox's gauges (what ``outbox_backlog()`` answers)."""
        self.outbox_pending.set(pending)
        self.outbox_dead.set(dead)
        self.outbox_oldest.set(oldest)

    def refresh(self, space: UserSpace) -> None:
        """Read the outbox's gauges from ``space`` (one statement)."""
        self.backlog(*space.outbox_backlog())

    async def arefresh(self, space: AsyncUserSpace) -> None:
        """Read the outbox's gauges from ``space`` (one statement)."""
        self.backlog(*await space.outbox_backlog())


class _Served(Collector):
    """The session caches' answers from memory, read at each scrape."""

    def __init__(self) -> None:
        self.spaces: list[UserSpace | AsyncUserSpace] = []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "pgusers_session_cache_served", "Checks answered from the session cache's memory"
        )
        family.add_metric([], sum(_counts(self.spaces)))
        yield family


def _counts(spaces: list[UserSpace | AsyncUserSpace]) -> Iterator[int]:
    for space in spaces:
        served = _door.served_from_memory(space)
        if served is not None:
            yield served
