"""OpenTelemetry spans, captured by the SDK's in-memory exporter: the library's calls
have them, the per-request checks have none, and no span holds a password, key or
token."""

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import pgusers
from pgusers import OK


class Switched(SpanProcessor):
    """Passes spans on only while a test of this module runs."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner, self.on = inner, False

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.inner.on_end(span)


EXPORTER = InMemorySpanExporter()
SWITCH = Switched(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SWITCH)
        trace.set_tracer_provider(provider)
    SWITCH.on = True
    EXPORTER.clear()
    yield EXPORTER
    SWITCH.on = False
    EXPORTER.clear()


def test_calls_have_spans_and_checks_none(usp: Any, spans: InMemorySpanExporter) -> None:
    userid = usp.create_user("ada", "pw-secret-123", "ada@example.com")
    outcome = usp.login("ada", "pw-secret-123")
    assert usp.check_key(outcome.key).status == OK
    assert usp.check_session(outcome.key).status == OK
    token = usp.issue_token(userid, "reset_password")
    usp.login("ada", "wrong-password-9")
    with pytest.raises(pgusers.BadCallError):
        usp.create_user("", "pw-secret-123", "x@example.com")
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    assert names == [
        "pgusers.create_user", "pgusers.login", "pgusers.issue_token", "pgusers.login",
        "pgusers.create_user",
    ]  # fmt: skip
    assert finished[-1].status.status_code == trace.StatusCode.ERROR
    shown = repr([(s.name, dict(s.attributes or {}), [e.attributes for e in s.events])
                  for s in finished])  # fmt: skip
    for secret in ("pw-secret-123", "wrong-password-9", outcome.key, token):
        assert secret not in shown
    assert dict(finished[1].attributes or {}) == {
        "db.system": "postgresql", "pgusers.call": "login",
    }  # fmt: skip
