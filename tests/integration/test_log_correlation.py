"""One booking followed through the logs of the real processes (`python -m api`, `python -m
worker`, JSON lines): API lines carry the request id (the caller's, echoed back, or a new one)
and the booking id; the workflow's lines (workflow.logger) and the activities' lines carry the
booking id, workflow id, run id (and activity type and attempt); and no line has the travellers'
or customer's data, the access token, the card number or a secret.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from passage import logs
from passage.settings import Settings
from tests.integration.test_api import HOTEL, bearer, checkout, new_key, wait_for
from tests.integration.test_log_scan import traveller_body
from tests.support.engine_processes import engine_processes
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_OK, STRIPE_TEST_API_KEY, StripeHarness

Json = dict[str, Any]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


async def test_one_booking_is_followed_through_every_process_and_no_line_has_personal_data(
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex[:10]
    email = f"zq.corr-{marker}@example.org"
    request_id = f"req-{marker}"
    body = traveller_body(
        await checkout(simulator, await stripe_harness.pm_for(CARD_OK), HOTEL), marker, email
    )
    async with (
        engine_processes(engine_settings, tmp_path, PASSAGE_LOG_FORMAT="json") as engine,
        httpx.AsyncClient(base_url=engine.api_url, timeout=60) as http,
    ):
        response = await http.post(
            "/bookings",
            json=body,
            headers={"Idempotency-Key": new_key(), "X-Request-ID": request_id},
        )
        assert response.status_code == 202, response.text
        assert response.headers["x-request-id"] == request_id
        booking = response.json()
        booking_id, token = booking["booking_id"], booking["access_token"]
        await wait_for(http, booking, "CONFIRMED", within=120)
        # No id given, or one that is not an id (an e-mail): a new one, echoed.
        for given in ({}, {"X-Request-ID": email}):
            read = await http.get(f"/bookings/{booking_id}", headers={**bearer(token), **given})
            assert read.status_code == 200
            assert GENERATED_ID.fullmatch(read.headers["x-request-id"])
        cancel = await http.post(f"/bookings/{booking_id}/cancel", headers=bearer(token))
        assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED", cancel.text
        await wait_for(http, booking, "CANCELLED", within=120)
    lines = list(engine.log_lines())

    # Every line of both processes is one JSON object.
    records: list[tuple[str, Json]] = []
    for process, line in lines:
        try:
            records.append((process, json.loads(line)))
        except ValueError:
            raise AssertionError(f"{process} wrote a line that is not JSON: {line}") from None
    api = [record for process, record in records if process == "api"]
    worker = [record for process, record in records if process == "worker"]

    # API: uvicorn's access line of each request has its request id, and the booking id.
    access = [r for r in api if r.get("logger") == "uvicorn.access"]
    assert access, api
    assert all("request_id" in r for r in access), access
    created = [r for r in access if '"POST /bookings HTTP' in r["event"]]
    assert len(created) == 1, access
    assert created[0]["request_id"] == request_id
    assert created[0]["booking_id"] == booking_id
    reads = [r for r in access if f"GET /bookings/{booking_id} " in r["event"]]
    assert reads and all(r["booking_id"] == booking_id for r in reads)
    assert all(r["request_id"] != request_id for r in reads)

    # Worker: the workflow's status lines and each activity's lines, all on one run.
    workflow_id = f"booking-{booking_id}"
    ours = [r for r in worker if r.get("workflow_id") == workflow_id]
    statuses = [r for r in ours if r["event"].startswith("booking.status")]
    assert {"HOLDING", "CONFIRMED", "CANCELLED"} <= {r["status"] for r in statuses}, statuses
    run_ids = {r["run_id"] for r in ours}
    assert len(run_ids) == 1 and all(run_ids), run_ids
    assert all(r["booking_id"] == booking_id for r in ours)
    activity_lines = [r for r in ours if "activity_type" in r]
    for event in ("supplier.held", "payment.authorized", "payment.captured", "ledger.recorded"):
        found = [r for r in activity_lines if r["event"] == event]
        assert found, f"no {event} line with the activity's ids: {ours}"
        assert all(isinstance(r["attempt"], int) and r["attempt"] >= 1 for r in found)
    activity_types = {r["activity_type"] for r in activity_lines}
    assert "capture_payment" in activity_types, activity_types
    assert activity_types & {"hold_item", "hold_items"}, activity_types  # one item, or a batch
    # Every line an activity of this booking logged carries the ids.
    by_booking = [r for r in worker if r.get("booking_id") == booking_id]
    assert all(r.get("workflow_id") == workflow_id for r in by_booking)

    # Nothing personal or secret in any line of either process.
    settings = engine_settings
    scan = logs.LogScan()
    for what, forbidden in {
        "traveller first name": "Zephyrine",
        "traveller last name": f"Quillfeather{marker}",
        "second traveller's last name": f"Ravensworth{marker}",
        "birth date": "1931-07-29",
        "second birth date": "1929-02-17",
        "document number": f"QX{marker}",
        "second document number": f"RW{marker}",
        "e-mail": email,
        "e-mail, URL-encoded": quote(email),
        "e-mail's local part": f"corr-{marker}",
        "access token": token,
        "card number": CARD_OK,
        "API secret": settings.api_secret,
        "customer-ref key": settings.customer_ref_key,
        "webhook secret": settings.stripe_webhook_secret,
        "codec key": settings.codec_key,
        "Stripe API key": STRIPE_TEST_API_KEY,
        **{f"staff key {n}": key for n, key in enumerate(sorted(settings.staff_key_set))},
    }.items():
        scan.forbid(what, forbidden)
    scan.forbid_shape("a client secret", logs.CLIENT_SECRET)
    leaks = scan.scan((line for _, line in lines), "the processes' logs")
    assert not leaks, "\n".join(map(str, leaks))
