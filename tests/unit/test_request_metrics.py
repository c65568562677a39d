"""The API's request metrics are labelled by route template, never by the raw path, and the
request id middleware echoes a sane caller id and replaces anything else (no Temporal, no ledger:
a bare FastAPI app with the same middleware)."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI
from prometheus_client import generate_latest

from api import metrics, request_ids


def app_with_metrics() -> tuple[FastAPI, metrics.RequestMetrics]:
    app = FastAPI(dependencies=[Depends(request_ids.bind_path_booking_id)])

    @app.get("/bookings/{booking_id}")
    async def read(booking_id: str) -> dict[str, str]:
        return {"booking_id": booking_id}

    @app.post("/bookings/{booking_id}/cancel")
    async def fail(booking_id: str) -> None:
        raise RuntimeError("a bug")

    @app.post("/bookings", status_code=202)
    async def create() -> dict[str, str]:
        return {}

    request_metrics = metrics.RequestMetrics()
    app.add_middleware(metrics.RequestMetricsMiddleware, metrics=request_metrics)
    app.add_middleware(request_ids.RequestIds)
    return app, request_metrics


async def test_requests_are_counted_by_route_template_and_status() -> None:
    app, request_metrics = app_with_metrics()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://passage.test",
    ) as http:
        assert (await http.post("/bookings/bk_one/cancel")).status_code == 500
        for booking_id in ("bk_one", "bk_two", "bk_three"):
            assert (await http.get(f"/bookings/{booking_id}")).status_code == 200
        assert (await http.post("/bookings")).status_code == 202
        assert (await http.get("/no/such/bk_secretpath")).status_code == 404
    text = generate_latest(request_metrics.registry).decode()
    read = 'method="GET",route="/bookings/{booking_id}",status="200"'
    assert f"passage_http_requests_total{{{read}}} 3.0" in text
    assert f"passage_http_request_duration_seconds_count{{{read}}} 3.0" in text
    assert 'passage_http_requests_total{method="POST",route="/bookings",status="202"} 1.0' in text
    failed = 'method="POST",route="/bookings/{booking_id}/cancel",status="500"'
    assert f"passage_http_requests_total{{{failed}}} 1.0" in text
    unmatched = f'method="GET",route="{metrics.UNMATCHED}",status="404"'
    assert f"passage_http_requests_total{{{unmatched}}} 1.0" in text
    assert "bk_" not in text


async def test_a_sane_request_id_is_echoed_and_anything_else_replaced() -> None:
    app, _ = app_with_metrics()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://passage.test"
    ) as http:
        given = await http.get("/bookings/bk_one", headers={"X-Request-ID": "req-0123456789"})
        assert given.headers["x-request-id"] == "req-0123456789"
        for bad in ("ada@example.com", "x" * 300, "short"):
            replaced = await http.get("/bookings/bk_one", headers={"X-Request-ID": bad})
            assert replaced.headers["x-request-id"] != bad
            assert request_ids.SANE_REQUEST_ID.fullmatch(replaced.headers["x-request-id"])
        assert "x-request-id" in (await http.post("/bookings")).headers
