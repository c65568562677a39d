"""Traces follow one booking: API request -> StartWorkflow -> RunWorkflow -> each activity.

An API app and a worker in this process, each with its own tracer provider and in-memory exporter
(as two processes would have), on the real Temporal dev server with the payload codec on, the
simulator, the Stripe emulator and the PostgreSQL ledger. The spans of both must form one tree
under the API's request span, and say nothing personal.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.app import create_app
from passage.logs import ACCESS_TOKEN_SHAPE, LogScan
from passage.settings import Environment, Settings
from passage.temporal import connect
from passage.tracing import API_SERVICE, WORKER_SERVICE, Tracing, tracing_for
from tests.support.api import client_on
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_OK, StripeHarness
from worker import booking_worker
from workflows.contracts import ActivityName

FLIGHT = "fl-aurora-cdg-jfk"
EMAIL = "grace.hopper@example.com"
#: The activities every confirmed booking runs, each of which must have its RunActivity span.
CONFIRMED_BOOKING_ACTIVITIES = {
    ActivityName.QUOTE_ITEM,
    ActivityName.HOLD_ITEM,
    ActivityName.AUTHORIZE_PAYMENT,
    ActivityName.CONFIRM_ITEM,
    ActivityName.CAPTURE_PAYMENT,
    ActivityName.RECORD_BOOKING,
}


@dataclass
class TracedEngine:
    settings: Settings
    api: httpx.AsyncClient
    api_spans: InMemorySpanExporter
    worker_spans: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return [*self.api_spans.get_finished_spans(), *self.worker_spans.get_finished_spans()]


@pytest_asyncio.fixture
async def traced(engine_settings: Settings) -> AsyncIterator[TracedEngine]:
    """A traced API and a traced worker on a task queue of their own (so only they see it)."""
    settings = engine_settings.model_copy(update={"task_queue": f"traces-{uuid.uuid4().hex[:8]}"})
    api_spans, worker_spans = InMemorySpanExporter(), InMemorySpanExporter()
    api_tracing = Tracing.exporting_to(api_spans, API_SERVICE, batch=False)
    worker_tracing = Tracing.exporting_to(worker_spans, WORKER_SERVICE, batch=False)
    worker_client = await connect(settings, worker_tracing)
    api_client = await connect(settings, api_tracing)
    app = create_app(settings, client=api_client, tracing=api_tracing)
    async with (
        booking_worker(worker_client, settings, worker_tracing),
        app.router.lifespan_context(app),
        client_on(app) as http,
    ):
        yield TracedEngine(settings, http, api_spans, worker_spans)


async def eventually(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {result!r}")
        await asyncio.sleep(0.1)


async def book_and_confirm(
    traced: TracedEngine, simulator: SimulatorControl, payment_method: str
) -> dict[str, Any]:
    price = (await simulator.http.get(f"/offers/{FLIGHT}")).json()["price"]
    body = {
        "customer": {"email": EMAIL, "name": "Grace Hopper"},
        "travellers": [
            {
                "first_name": "Grace",
                "last_name": "Hopper",
                "birth_date": "1906-12-09",
                "document_number": "TR4C3D001",
            }
        ],
        "items": [{"offer_id": FLIGHT, "quantity": 1, "expected_price": price}],
        "payment": {"payment_method": payment_method},
    }
    accepted = await traced.api.post(
        "/bookings", json=body, headers={"Idempotency-Key": f"traces-{uuid.uuid4()}"}
    )
    assert accepted.status_code == 202, accepted.text
    booking: dict[str, Any] = accepted.json()
    headers = {"Authorization": f"Bearer {booking['access_token']}"}
    deadline = time.monotonic() + 60
    while True:
        view = (await traced.api.get(f"/bookings/{booking['booking_id']}", headers=headers)).json()
        if view["status"] in ("CONFIRMED", "FAILED", "NEEDS_ATTENTION"):
            break
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.2)
    assert view["status"] == "CONFIRMED", view["timeline"]
    return booking


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """`span`'s parent, its parent, ... as far as the collected spans go."""
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_booking_is_one_trace_from_the_api_request_to_each_activity(
    traced: TracedEngine, simulator: SimulatorControl, stripe_harness: StripeHarness
) -> None:
    assert traced.settings.codec_key, "the payload codec must be on: headers cross it in clear"
    booking = await book_and_confirm(traced, simulator, await stripe_harness.pm_for(CARD_OK))
    booking_id = booking["booking_id"]
    workflow_id = f"booking-{booking_id}"
    # A staff search by e-mail: its query string must not reach a span.
    staff_key = sorted(traced.settings.staff_key_set)[0]
    search = await traced.api.get(
        "/admin/bookings",
        params={"email": EMAIL, "status": "CONFIRMED"},
        headers={"Authorization": f"Bearer {staff_key}"},
    )
    assert search.status_code == 200, search.text

    def recorded_runs() -> set[str]:
        return {
            span.name.removeprefix("RunActivity:")
            for span in traced.worker_spans.get_finished_spans()
            if span.name.startswith("RunActivity:")
            and (span.attributes or {}).get("temporalWorkflowID") == workflow_id
        }

    await eventually(lambda: recorded_runs() >= CONFIRMED_BOOKING_ACTIVITIES)
    try:
        spans = traced.spans()
        (request,) = [
            s for s in traced.api_spans.get_finished_spans() if s.name == "POST /bookings"
        ]
        assert request.kind == SpanKind.SERVER and request.parent is None
        assert request.resource.attributes["service.name"] == API_SERVICE
        trace_id = request.context.trace_id
        trace = [s for s in spans if s.context.trace_id == trace_id]
        by_id = {s.context.span_id: s for s in trace}
        names = {s.name for s in trace}

        # One tree: every span of the trace leads back to the API's request span.
        for span in trace:
            assert span is request or ancestors(span, by_id)[-1:] == [request], span.name
        (start,) = [s for s in trace if s.name == "StartWorkflow:BookingWorkflow"]
        (run,) = [s for s in trace if s.name == "RunWorkflow:BookingWorkflow"]
        assert ancestors(start, by_id) == [request] and ancestors(run, by_id)[0] is start
        assert run.resource.attributes["service.name"] == WORKER_SERVICE
        assert (start.attributes or {})["temporalWorkflowID"] == workflow_id
        # The SDK's interceptor ends workflow spans at once (replay-safe), so the calls the
        # workflow makes hang under the workflow's trace context, StartWorkflow, beside RunWorkflow.
        runs = [s for s in trace if s.name.startswith("RunActivity:")]
        assert {s.name.removeprefix("RunActivity:") for s in runs} >= CONFIRMED_BOOKING_ACTIVITIES
        for activity in runs:
            scheduled, *above = ancestors(activity, by_id)
            assert scheduled.name == activity.name.replace("RunActivity:", "StartActivity:")
            assert start in above, (activity.name, [a.name for a in above])
            assert (activity.attributes or {})["temporalWorkflowID"] == workflow_id
        # The supplier calls are spans of the activities that made them.
        supplier_calls = [
            s for s in trace if s.kind == SpanKind.CLIENT and "http.method" in (s.attributes or {})
        ]
        assert supplier_calls, names
        assert all(ancestors(s, by_id)[0].name.startswith("RunActivity:") for s in supplier_calls)

        # Nothing personal in any span of either process, however it is spelled.
        scan = LogScan()
        for what, value in [
            ("e-mail", EMAIL),
            ("e-mail", EMAIL.replace("@", "%40")),
            ("name", "Grace"),
            ("name", "Hopper"),
            ("document", "TR4C3D001"),
            ("birth date", "1906-12-09"),
            ("staff key", staff_key),
        ]:
            scan.forbid(what, value)
        scan.forbid_shape("access token", ACCESS_TOKEN_SHAPE, [booking["access_token"]])
        leaks = scan.scan([span.to_json(indent=None) for span in spans], "spans")
        assert leaks == [], "\n".join(map(str, leaks))
    finally:
        # Its 30-day cancellation window would keep the booking open after the worker is gone.
        client = await connect(traced.settings)
        await client.get_workflow_handle(workflow_id).terminate("test done")


class OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """What an OpenTelemetry collector's OTLP/HTTP receiver does with traces, minus the rest."""

    received: list[tuple[str, ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, ExportTraceServiceRequest.FromString(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_with_an_endpoint_spans_go_to_it_by_otlp_http() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), OtlpReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        settings = Settings(env=Environment.DEVELOPMENT, otlp_endpoint=endpoint)
        tracing = tracing_for(settings, API_SERVICE)
        assert tracing is not None
        with tracing.provider.get_tracer("test").start_as_current_span("GET /bookings/{id}"):
            pass
        tracing.flush()
    finally:
        server.shutdown()
        server.server_close()
    ((path, request),) = OtlpReceiver.received
    assert path == "/v1/traces"
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == API_SERVICE
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == [
        "GET /bookings/{id}"
    ]
