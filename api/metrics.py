"""`GET /metrics`: the API's Prometheus metrics, and the ledger's business numbers at scrape time.

- `passage_http_requests_total` and `passage_http_request_duration_seconds`, by method, route
  template (`/bookings/{booking_id}`, never the raw path: no booking id becomes a label) and
  status. A path that matches no route counts as `unmatched`.
- From the ledger, read when Prometheus scrapes (so every API replica reports the same totals,
  and nothing is lost with a restart): bookings by current status (NEEDS_ATTENTION is "stuck
  now"), undo steps by kind and outcome, money captured, refunded and kept as fees by currency
  (integer minor units). `passage_ledger_up` is 0 when the ledger could not be read.

The endpoint is open, like `/healthz`: it carries counts only, no personal data, ids or secrets,
and it is left out of the OpenAPI schema (it is for Prometheus, not for the checkout).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.ports import LedgerTotals

log = structlog.get_logger("passage.api.metrics")

PATH = "/metrics"
#: The route label of a request no route matched (a scan of random paths stays one series).
UNMATCHED = "unmatched"
#: Seconds: webhooks answer in milliseconds, a booking start in tens, an event stream in minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RequestMetrics:
    """The request counter and latency histogram of one app (its own registry, so several apps
    in one process, as in the tests, do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "passage_http_requests",
            "API requests answered, by method, route template and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "passage_http_request_duration_seconds",
            "Time from request to the end of the response, by method, route template and status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def route_template(scope: Scope) -> str:
    """The template of the route that served `scope` (`/bookings/{booking_id}`), or UNMATCHED.

    FastAPI puts the matched route in the scope while routing; a mounted app's path is its prefix.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route template and status (pure ASGI, so
    streamed responses are timed to their last byte)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            labels = (scope["method"], route_template(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


class LedgerCollector(Collector):
    """The ledger's totals as Prometheus families (`None`: the ledger could not be read)."""

    def __init__(self, totals: LedgerTotals | None) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("passage_ledger_up", "1 if the ledger was read for this scrape.")
        up.add_metric([], 0 if self.totals is None else 1)
        yield up
        if self.totals is None:
            return
        totals = self.totals
        bookings = GaugeMetricFamily(
            "passage_bookings",
            "Bookings in the ledger by current status (terminal: CONFIRMED, FAILED, CANCELLED; "
            "NEEDS_ATTENTION: stuck now).",
            labels=["status"],
        )
        for status, count in sorted(totals.bookings_by_status.items()):
            bookings.add_metric([status], count)
        yield bookings
        undos = GaugeMetricFamily(
            "passage_compensations",
            "Undo steps run so far, by step kind (RELEASE, VOID, CANCEL, REFUND) and outcome.",
            labels=["step", "outcome"],
        )
        for (step, outcome), count in sorted(totals.undos.items()):
            undos.add_metric([step, outcome], count)
        yield undos
        for name, meaning, by_currency in (
            ("passage_captured_minor", "Money captured", totals.captured_minor),
            ("passage_refunded_minor", "Money refunded", totals.refunded_minor),
            ("passage_fees_kept_minor", "Cancellation fees kept", totals.fees_kept_minor),
        ):
            money = GaugeMetricFamily(
                name, f"{meaning}, in minor units, by currency.", labels=["currency"]
            )
            for currency, amount in sorted(by_currency.items()):
                money.add_metric([currency], amount)
            yield money


router = APIRouter(include_in_schema=False)


@router.get(PATH)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: this API's request metrics, then the ledger's totals."""
    app = request.app
    totals: LedgerTotals | None = None
    try:
        totals = await app.state.passage.store.totals()
    except Exception as err:  # the ledger down must not hide the API's own metrics
        log.warning("metrics: ledger read failed", error=type(err).__name__)
    ledger = CollectorRegistry()
    ledger.register(LedgerCollector(totals))
    body = generate_latest(app.state.request_metrics.registry) + generate_latest(ledger)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Count and time every request of `app` and serve `GET /metrics` on it."""
    request_metrics = RequestMetrics()
    app.state.request_metrics = request_metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    app.include_router(router)
