"""The service's metrics: ``GET /metrics`` in Prometheus' text format (the outbox's
gauges read at each scrape), and the time of every request by its route."""

import time
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgusers.web._check import PATH as CHECK_PATH
from pgusers.web._service import service_of

if TYPE_CHECKING:
    from pgusers.metrics import Metrics

REFRESH: Final = 10.0
"""Seconds between readings of the outbox's gauges while the service runs."""


def mount(app: FastAPI, metrics: "Metrics") -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        await metrics.arefresh(await service_of(request).space())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


class Timed:
    """Times each HTTP request, labelled by its route's template (never its path, which
    may hold ids), its method and its status."""

    def __init__(self, app: ASGIApp, metrics: "Metrics") -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = CHECK_PATH if scope["path"] == CHECK_PATH else "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
