"""Prometheus metrics: the library's counters in an application's own registry, and
the service's /metrics, scraped and parsed with prometheus-client's own parser."""

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import pgusers
from pgusers.delivery import Worker
from pgusers.metrics import Metrics
from pgusers.web import create_app

from .mail_partners import MailCatcher, running
from .support import FAST_HASHER, LoopThread, make_api_key

KEY = "metrics-tests-secret-key"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def smtp() -> Iterator[MailCatcher]:
    yield from running(MailCatcher())


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    made = Metrics(CollectorRegistry())
    yield made
    made.close()


def test_the_library_counts_events_cache_answers_and_deliveries(
    metrics: Metrics, server_dsn: str, schema: str, smtp: MailCatcher, loop_thread: LoopThread
) -> None:
    dsn = server_dsn  # the session cache LISTENs: never through PgBouncer
    space = pgusers.UserSpace(
        conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY, session_cache=True
    )
    try:
        metrics.watch(space)
        space.create_user("ada", "pw-123456", "ada@example.com")
        key = space.login("ada", "pw-123456").key
        space.login("ada", "wrong-pw-1")
        for _ in range(3):
            space.check_key(key)
        space.set_mail(
            "127.0.0.1", port=smtp.port, security="none", sender="a@example.com",
            base_url="https://x.example",
        )  # fmt: skip
        space.request_password_reset("ada@example.com")
        metrics.refresh(space)
        before = samples(generate_latest(metrics.registry).decode())
        assert before[("pgusers_events_total", (("kind", "login.succeeded"),))] == 1
        assert before[("pgusers_events_total", (("kind", "login.failed"),))] == 1
        assert before[("pgusers_session_cache_served_total", ())] >= 2
        assert before[("pgusers_outbox_pending", ())] == 1

        async def deliver() -> None:
            aspace = await pgusers.AsyncUserSpace.connect(
                conninfo=dsn, schema=schema, hasher=FAST_HASHER, secret_key=KEY
            )
            worker = Worker(aspace, metrics=metrics)
            await worker.run_once()
            await worker.close()
            await metrics.arefresh(aspace)
            await aspace.close()

        loop_thread.run(deliver())
        after = samples(generate_latest(metrics.registry).decode())
        sent = ("pgusers_deliveries_total", (("channel", "mail"), ("outcome", "sent")))
        assert after[sent] == 1
        assert after[("pgusers_outbox_pending", ())] == 0
    finally:
        space.close()


def test_the_service_serves_its_metrics(
    metrics: Metrics, dsn: str, schema: str, space: pgusers.UserSpace
) -> None:
    space.create_user("ada", "pw-123456", "ada@example.com")
    _, api_key = make_api_key(space, "check")
    opener = partial(pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema,
                     hasher=FAST_HASHER)  # fmt: skip
    app = create_app(opener, metrics=metrics, deliver=False)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        key = client.post("/v1/login", json={"username": "ada", "password": "pw-123456"})
        headers = {"authorization": f"Bearer {api_key}"}
        client.post("/v1/check", json={"key": key.json()["key"]}, headers=headers)
        client.post("/v1/check", json={"key": "A" * 43}, headers=headers)
        client.get("/v1/admin/users/123", headers={"authorization": "Bearer nothing"})
        scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    assert found[("pgusers_checks_total", (("status", "ok"),))] == 1
    assert found[("pgusers_checks_total", (("status", "not_found"),))] == 1
    login = ("method", "POST"), ("route", "/v1/login"), ("status", "200")
    assert found[("pgusers_http_request_duration_seconds_count", login)] == 1
    by_id = ("method", "GET"), ("route", "/v1/admin/users/{userid}"), ("status", "401")
    assert found[("pgusers_http_request_duration_seconds_count", by_id)] == 1  # no id in it
    assert ("pgusers_outbox_pending", ()) in found


def test_without_metrics_there_is_no_route(dsn: str, schema: str, space: Any) -> None:
    opener = partial(pgusers.AsyncUserSpace.connect, conninfo=dsn, schema=schema,
                     hasher=FAST_HASHER)  # fmt: skip
    with TestClient(create_app(opener), base_url="http://127.0.0.1:8080") as client:
        assert client.get("/metrics").status_code == 404
