"""Prometheus metrics after a real booking through the real processes (`python -m api`, `python -m
worker`): the API's `/metrics` counts the request by route template and status and the booking
under CONFIRMED (read from the ledger), and the worker serves the Temporal SDK's metrics at
PASSAGE_WORKER_METRICS_ADDRESS.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from passage.dev.supervisor import free_ports
from passage.settings import Settings
from tests.integration.test_api import HOTEL, checkout, new_key, wait_for
from tests.support.engine_processes import engine_processes
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_OK, StripeHarness

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "passage.json"
METRIC_NAME = re.compile(r"\b(?:passage|temporal)_[a-z_]+")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def dashboard_metrics() -> set[str]:
    """The metric names in docs/grafana/passage.json's queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient, url: str) -> str:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_a_booking_shows_in_the_api_and_worker_metrics(
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    tmp_path: Path,
) -> None:
    worker_metrics = f"127.0.0.1:{free_ports('127.0.0.1', 1)[0]}"
    async with (
        engine_processes(
            engine_settings, tmp_path, PASSAGE_WORKER_METRICS_ADDRESS=worker_metrics
        ) as engine,
        httpx.AsyncClient(base_url=engine.api_url, timeout=60) as http,
    ):
        before = samples(await scrape(http, "/metrics"))
        body = await checkout(simulator, await stripe_harness.pm_for(CARD_OK), HOTEL)
        response = await http.post("/bookings", json=body, headers={"Idempotency-Key": new_key()})
        assert response.status_code == 202, response.text
        booking = response.json()
        view = await wait_for(http, booking, "CONFIRMED", within=120)
        captured = view["payment"]["captured"]

        # The ledger is written in the background: wait for the confirmed snapshot to count.
        deadline = time.monotonic() + 60
        while True:
            text = await scrape(http, "/metrics")
            after = samples(text)
            confirmed = value(after, "passage_bookings", status="CONFIRMED")
            if confirmed > value(before, "passage_bookings", status="CONFIRMED"):
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.5)

        assert value(after, "passage_ledger_up") == 1
        money = ("passage_captured_minor", {"currency": captured["currency"]})
        assert (
            value(after, money[0], **money[1]) - value(before, money[0], **money[1])
            >= captured["amount"]
            > 0
        )
        # Requests by route template and status; no booking id in any label.
        created = {"method": "POST", "route": "/bookings", "status": "202"}
        assert value(after, "passage_http_requests_total", **created) == 1
        assert value(after, "passage_http_request_duration_seconds_count", **created) == 1
        read = {"method": "GET", "route": "/bookings/{booking_id}", "status": "200"}
        assert value(after, "passage_http_requests_total", **read) >= 1
        assert booking["booking_id"] not in text

        # The worker's Temporal SDK metrics, from its own endpoint.
        worker_text = await scrape(http, f"http://{worker_metrics}/metrics")
        worker_samples = samples(worker_text)
        names = {name for name, _ in worker_samples}
        # A confirmed booking's workflow stays open (it can still be cancelled): no "completed".
        assert "\ntemporal_request{" in worker_text, sorted(names)  # counters: no _total here
        assert any(name.startswith("temporal_activity_execution_latency") for name in names)
        assert any(name.startswith("temporal_workflow_task_execution_latency") for name in names)

        # Every series the Grafana dashboard queries is one these endpoints serve (the failure
        # counter only once an activity failed).
        for metric in dashboard_metrics() - {"temporal_activity_execution_failed"}:
            assert metric in (worker_text if metric.startswith("temporal_") else text), metric
