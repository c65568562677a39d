"""No personal data, token, card number or secret in any log line of the API or the worker.

Bookings run end to end through the API served by uvicorn as `python -m api` serves it (access log
on, level INFO, structlog JSON from passage/logs.py) on the session's in-process worker, while
every line is captured: structlog's and uvicorn's (stdout/stderr) and every stdlib log record
(temporalio, httpx, stripe, sqlalchemy...). Then each secret is searched for in every line.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from fastapi import FastAPI

from passage import logs
from tests.integration.test_api import HOTEL, bearer, checkout, new_key, wait_for
from tests.support.api import served_over_tcp
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import (
    CARD_3DS,
    CARD_DECLINED,
    CARD_OK,
    STRIPE_TEST_API_KEY,
    StripeHarness,
)

Json = dict[str, Any]


@pytest.fixture
def json_logs() -> Any:
    """structlog configured as the API and worker configure it, restored afterwards."""
    saved = structlog.get_config()
    logs.configure("INFO")
    yield
    structlog.configure(**saved)


def traveller_body(base: Json, marker: str, email: str) -> Json:
    return {
        **base,
        "customer": {"email": email, "name": f"Zephyrine Quillfeather{marker}"},
        "travellers": [
            {
                "first_name": "Zephyrine",
                "last_name": f"Quillfeather{marker}",
                "birth_date": "1931-07-29",
                "document_number": f"QX{marker}",
            },
            {
                "first_name": "Bartholomew",
                "last_name": f"Ravensworth{marker}",
                "birth_date": "1929-02-17",
                "document_number": f"RW{marker}",
            },
        ],
    }


async def test_no_personal_data_token_card_or_secret_in_any_log_line(
    api_app: FastAPI,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    marker = uuid.uuid4().hex[:10]
    email = f"zq.leak-{marker}@example.org"
    ok_card = await stripe_harness.pm_for(CARD_OK)
    declined_card = await stripe_harness.pm_for(CARD_DECLINED)
    three_ds_card = await stripe_harness.pm_for(CARD_3DS)
    tokens: list[str] = []

    async def book(http: httpx.AsyncClient, card: str) -> Json:
        body = traveller_body(await checkout(simulator, card, HOTEL), marker, email)
        response = await http.post("/bookings", json=body, headers={"Idempotency-Key": new_key()})
        assert response.status_code == 202, response.text
        accepted: Json = response.json()
        tokens.append(accepted["access_token"])
        return accepted

    # As api/__main__.py runs it: level info, uvicorn's access log on.
    async with (
        served_over_tcp(api_app, log_level="info") as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=60) as http,
    ):
        # Confirmed, then cancelled by the customer.
        confirmed = await book(http, ok_card)
        await wait_for(http, confirmed, "CONFIRMED")
        path = f"/bookings/{confirmed['booking_id']}"
        cancel = await http.post(f"{path}/cancel", headers=bearer(confirmed["access_token"]))
        assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED"
        # Declined card: compensated, FAILED.
        declined = await book(http, declined_card)
        failed = await wait_for(http, declined, "FAILED")
        assert failed["error"]["type"] == "PAYMENT_DECLINED"
        # 3-D Secure: the view carries the PaymentIntent's client secret; cancelled while waiting.
        challenged = await book(http, three_ds_card)
        waiting = await wait_for(http, challenged, "AWAITING_PAYMENT_ACTION")
        assert logs.CLIENT_SECRET.fullmatch(waiting["payment"]["client_secret"])
        challenged_path = f"/bookings/{challenged['booking_id']}/cancel"
        withdrawn = await http.post(challenged_path, headers=bearer(challenged["access_token"]))
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "CANCELLED"
        # Staff: search by e-mail, read the booking with its audit trail, force a cancel.
        staffed = await book(http, ok_card)
        await wait_for(http, staffed, "CONFIRMED")
        found = await http.get("/admin/bookings", params={"email": email}, headers=staff_headers)
        assert found.status_code == 200, found.text
        admin_path = f"/admin/bookings/{staffed['booking_id']}"
        assert (await http.get(admin_path, headers=staff_headers)).status_code == 200
        forced = await http.post(
            f"{admin_path}/cancel", json={"note": "called in"}, headers=staff_headers
        )
        assert forced.status_code == 200 and forced.json()["status"] == "CANCELLED"
        # Wrong credentials and bad input with personal data in it.
        assert (await http.get(path, headers=bearer(f"{tokens[1]}x"))).status_code == 404
        bad = traveller_body(await checkout(simulator, ok_card, HOTEL), marker, email)
        bad["items"][0]["quantity"] = 0
        invalid = await http.post("/bookings", json=bad, headers={"Idempotency-Key": new_key()})
        assert invalid.status_code == 422, invalid.text

        # The test's own HTTP client (httpx logs each request it sends) is not the API.
        ours = re.compile(rf"HTTP Request: [A-Z]+ {re.escape(str(http.base_url).rstrip('/'))}/")

    captured = capsys.readouterr()
    # (passage.logs renders stdlib records too, so the client's lines are in stdout as well.)
    everything = [*captured.out.splitlines(), *captured.err.splitlines(), *caplog.text.splitlines()]
    lines = [line for line in everything if not ours.search(line)]
    # The capture saw what the API and the worker log, or the scan below proves nothing.
    text = "\n".join(lines)
    for expected in (
        '"event": "supplier.held"',
        '"event": "ledger.recorded"',
        "POST /bookings",
        "email=REDACTED",
    ):
        assert expected in text, f"{expected!r} was not captured"

    settings = engine_worker.settings
    forbidden = {
        "traveller first name": "Zephyrine",
        "traveller last name": f"Quillfeather{marker}",
        "second traveller's last name": f"Ravensworth{marker}",
        "birth date": "1931-07-29",
        "second birth date": "1929-02-17",
        "document number": f"QX{marker}",
        "second document number": f"RW{marker}",
        "e-mail": email,
        "e-mail, URL-encoded": quote(email),
        "e-mail's local part": f"leak-{marker}",
        **{f"access token {n}": token for n, token in enumerate(tokens)},
        **{f"staff key {n}": key for n, key in enumerate(sorted(settings.staff_key_set))},
        "card number": CARD_OK,
        "3-D Secure card number": CARD_3DS,
        "declined card number": CARD_DECLINED,
        "API secret": settings.api_secret,
        "customer-ref key": settings.customer_ref_key,
        "webhook secret": settings.stripe_webhook_secret,
        "codec key": settings.codec_key,
        "Stripe API key": STRIPE_TEST_API_KEY,
    }
    scan = logs.LogScan()
    for what, value in forbidden.items():
        scan.forbid(what, value)
    scan.forbid_shape("a client secret", logs.CLIENT_SECRET)
    leaks = scan.scan(lines, "the captured output")
    assert not leaks, "\n".join(map(str, leaks))
