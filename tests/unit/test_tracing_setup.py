"""Tracing is off unless PASSAGE_OTLP_ENDPOINT is set, and then on the processes' own providers."""

from __future__ import annotations

import os

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from passage.settings import WORKER_NEEDS, Settings
from passage.tracing import (
    API_SERVICE,
    WORKER_SERVICE,
    Tracing,
    traces_url,
    tracing_for,
    without_query_values,
)

ENDPOINT = "PASSAGE_OTLP_ENDPOINT"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("PASSAGE_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PASSAGE_ENV", "development")
    return monkeypatch


def instrumented(app: object) -> bool:
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def test_without_an_endpoint_nothing_is_configured() -> None:
    settings = Settings()
    assert settings.otlp_endpoint == ""
    assert tracing_for(settings, API_SERVICE) is None
    assert tracing_for(settings, WORKER_SERVICE) is None
    app = create_app(settings)
    assert not instrumented(app)
    assert not any("OpenTelemetry" in repr(m.cls) for m in app.user_middleware)
    # Nobody installed a global provider either: OpenTelemetry's default proxy is still there.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_with_an_endpoint_each_process_gets_its_own_provider(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv(ENDPOINT, "http://otel-collector:4318/")
    settings = Settings()
    tracing = tracing_for(settings, WORKER_SERVICE)
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == WORKER_SERVICE
    assert len(tracing.temporal_interceptors()) == 1
    app = create_app(settings)
    assert instrumented(app)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_the_endpoint_is_a_base_url_and_traces_go_below_it() -> None:
    assert traces_url("http://otel-collector:4318") == "http://otel-collector:4318/v1/traces"
    assert traces_url("https://otlp.example.net/") == "https://otlp.example.net/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


@pytest.mark.parametrize("bad", ["otel-collector:4318", "grpc://otel-collector:4317", "http://"])
def test_a_malformed_endpoint_stops_the_process_naming_the_variable(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    clean_environment.setenv(ENDPOINT, bad)
    with pytest.raises(SystemExit) as exited:
        Settings.for_process("the worker", WORKER_NEEDS)
    assert exited.value.code == 2
    assert ENDPOINT in capsys.readouterr().err


def test_query_values_are_redacted_before_export() -> None:
    exported = InMemorySpanExporter()
    tracing = Tracing.exporting_to(exported, API_SERVICE, batch=False)
    tracer = tracing.provider.get_tracer("test")
    with tracer.start_as_current_span("GET /admin/bookings") as span:
        span.set_attribute("http.url", "http://api/admin/bookings?email=ada@example.com&limit=5")
        span.set_attribute("url.query", "email=ada%40example.com&status=CONFIRMED")
        span.set_attribute("http.route", "/admin/bookings")
    (sent,) = exported.get_finished_spans()
    assert sent.attributes == {
        "http.url": "http://api/admin/bookings?email=REDACTED&limit=5",
        "url.query": "email=REDACTED&status=CONFIRMED",
        "http.route": "/admin/bookings",
    }
    assert sent.context == span.get_span_context()


def test_a_span_without_a_query_is_exported_as_it_is() -> None:
    span = ReadableSpan("GET /bookings/{booking_id}", attributes={"http.target": "/bookings/bk_1"})
    assert without_query_values(span) is span
