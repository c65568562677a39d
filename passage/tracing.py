"""OpenTelemetry traces that follow one booking across processes: API -> workflow -> activities.

On only where PASSAGE_OTLP_ENDPOINT is set: each composition root (the API, the worker) then makes
one `Tracing` for its service and hands it to what it wires, and the spans go by OTLP/HTTP in
batches. Unset, there is no `Tracing` at all: no provider, no interceptor, no middleware, so tracing
costs nothing. Providers are passed explicitly, never installed as OpenTelemetry's global, so a test
can trace an in-process API and worker with exporters of its own.

What carries the context between processes: the Temporal SDK's `TracingInterceptor` on the clients
writes it into a `_tracer-data` header of StartWorkflow and of every scheduled activity. Headers
are not run through the payload codec (the client's default `HeaderCodecBehavior.NO_CODEC`), so
the encrypted payloads do not hide it; the header holds only the W3C trace context.

What spans may say: ids (booking, workflow, run, activity), routes, statuses, never personal data.
URLs keep their path (booking ids are fine) and only the harmless query values the access log keeps
(`passage.logs.redact_query`: a staff search by e-mail becomes `email=REDACTED`); no header is
recorded, and the secret-bearing ones are redacted should anyone turn header capture on through
OpenTelemetry's environment variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from temporalio.contrib.opentelemetry import TracingInterceptor

from passage.logs import redact_query
from passage.settings import Settings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

API_SERVICE = "passage-api"
WORKER_SERVICE = "passage-worker"

#: Where OTLP/HTTP receivers take traces, below the endpoint's base URL.
OTLP_TRACES_PATH = "/v1/traces"
#: Paths not worth a trace: probes and scrapes, every few seconds.
UNTRACED_PATHS = "/healthz,/readyz,/metrics"
#: Request and response headers whose value is never recorded, even when header capture is on.
SECRET_HEADERS = ["authorization", "cookie", "set-cookie", "stripe-signature", "idempotency-key"]
#: Span attributes (old and stable HTTP conventions) that may carry a query string.
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full")


@dataclass(frozen=True)
class Tracing:
    """One process's tracer provider and what it instruments with it."""

    provider: TracerProvider

    @classmethod
    def exporting_to(cls, exporter: SpanExporter, service: str, *, batch: bool = True) -> Tracing:
        """Spans of `service` to `exporter`: in batches, or each as it ends (`batch=False`)."""
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service}), shutdown_on_exit=False
        )
        exporter = WithoutQueryValues(exporter)
        provider.add_span_processor(
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
        return cls(provider)

    def temporal_interceptors(self) -> list[TracingInterceptor]:
        """For `Client.connect`: spans for client calls, and on a worker using the client, for
        each workflow run and activity, joined to the trace of whoever started the workflow."""
        return [TracingInterceptor(self.provider.get_tracer("passage.temporal"))]

    def instrument_api(self, app: FastAPI) -> None:
        """A server span per request (route, status), the parent of what the handler does."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),  # metrics have their own exporter
            excluded_urls=UNTRACED_PATHS,
            http_capture_headers_sanitize_fields=SECRET_HEADERS,
            exclude_spans=["receive", "send"],  # one span per ASGI message: a stream's every event
        )

    def instrument_http(self, client: httpx.AsyncClient) -> None:
        """A client span per outgoing request (e.g. to the suppliers), inside the activity's."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.provider, meter_provider=NoOpMeterProvider()
        )

    def flush(self) -> None:
        """Export what is buffered: the processes end with `os._exit`, which skips `atexit`."""
        self.provider.force_flush()


def tracing_for(settings: Settings, service: str) -> Tracing | None:
    """The process's tracing when PASSAGE_OTLP_ENDPOINT is set, else None (nothing to do)."""
    if not settings.otlp_endpoint:
        return None
    # Imported only when on: the exporter brings in protobuf and an HTTP client of its own.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return Tracing.exporting_to(
        OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint)), service
    )


def traces_url(endpoint: str) -> str:
    """`http://collector:4318` -> `http://collector:4318/v1/traces` (kept if already there)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_TRACES_PATH) else base + OTLP_TRACES_PATH


class WithoutQueryValues(SpanExporter):
    """Hands `exporter` the spans with the values of their URLs' query strings redacted.

    At export, because the HTTP instrumentations (re)set the URL attributes after the span started.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([without_query_values(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def without_query_values(span: ReadableSpan) -> ReadableSpan:
    """`span`, or a copy whose URL attributes keep only the harmless query values."""
    attributes = dict(span.attributes or {})
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            attributes[key] = redact_query(value)
    query = attributes.get("url.query")
    if isinstance(query, str) and query:
        attributes["url.query"] = redact_query(f"?{query}").removeprefix("?")
    if attributes == (span.attributes or {}):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
