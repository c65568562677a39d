"""The Stripe emulator as a black box: Stripe's idempotency, nothing on disk, loopback only,
and the harness's latency rules that keep a chosen call in flight."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from aiohttp import web

from passage.dev.stripe_emulator import IdempotencyLayer
from tests.support.stripe import (
    CARD_DECLINED,
    CARD_OK,
    STRIPE_TEST_API_KEY,
    StripeEmulatorProcess,
    StripeHarness,
)


def _authorization(payment_method: str, booking_id: str, amount: int = 5000) -> dict[str, str]:
    return {
        "amount": str(amount),
        "currency": "eur",
        "payment_method": payment_method,
        "confirm": "true",
        "capture_method": "manual",
        "metadata[booking_id]": booking_id,
    }


async def _create(
    harness: StripeHarness, key: str, data: dict[str, str], api_key: str = STRIPE_TEST_API_KEY
) -> httpx.Response:
    return await harness.http.post(
        "/v1/payment_intents",
        data=data,
        headers={"Idempotency-Key": key},
        auth=(api_key, ""),
    )


def _booking() -> str:
    return f"bk_{secrets.token_hex(6)}"


async def test_a_seen_key_replays_the_first_response(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    key = f"{booking_id}:authorize"

    first = await _create(stripe_harness, key, _authorization(payment_method, booking_id))
    second = await _create(stripe_harness, key, _authorization(payment_method, booking_id))

    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    intents = await stripe_harness.payment_intents_for(booking_id)
    assert [intent["id"] for intent in intents] == [first.json()["id"]]
    assert (await stripe_harness.idempotency_keys())[key] == {
        "requests": 2,
        "replayed": 1,
        "rejected": 0,
    }


async def test_parameters_are_compared_in_any_order(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    data = _authorization(payment_method, booking_id)
    key = f"{booking_id}:authorize"

    first = await _create(stripe_harness, key, data)
    reordered = await _create(stripe_harness, key, dict(reversed(list(data.items()))))

    assert reordered.headers["Idempotent-Replayed"] == "true"
    assert reordered.json()["id"] == first.json()["id"]


async def test_a_seen_key_with_other_parameters_is_an_idempotency_error(
    stripe_harness: StripeHarness,
) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    key = f"{booking_id}:authorize"
    await _create(stripe_harness, key, _authorization(payment_method, booking_id, amount=5000))

    other = await _create(
        stripe_harness, key, _authorization(payment_method, booking_id, amount=5001)
    )

    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    assert key in other.json()["error"]["message"]
    assert len(await stripe_harness.payment_intents_for(booking_id)) == 1
    assert (await stripe_harness.idempotency_keys())[key]["rejected"] == 1


async def test_a_key_belongs_to_one_api_key(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    key = f"{booking_id}:authorize"
    data = _authorization(payment_method, booking_id)

    ours = await _create(stripe_harness, key, data)
    theirs = await _create(stripe_harness, key, data, api_key="sk_test_another_account")

    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != ours.json()["id"]


async def test_concurrent_requests_with_one_key_create_one_intent(
    stripe_harness: StripeHarness,
) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    key = f"{booking_id}:authorize"
    data = _authorization(payment_method, booking_id)

    responses = await asyncio.gather(*(_create(stripe_harness, key, data) for _ in range(8)))

    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(await stripe_harness.payment_intents_for(booking_id)) == 1
    assert sum("Idempotent-Replayed" in response.headers for response in responses) == 7


async def test_the_layer_runs_one_request_per_key_at_a_time() -> None:
    """localstripe answers without yielding, so this proves the lock with a handler that waits."""
    calls = 0

    async def slow_create(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return web.json_response({"id": f"pi_{calls}", "object": "payment_intent"})

    layer = IdempotencyLayer()
    app = web.Application(middlewares=[layer.middleware])
    app.router.add_post("/v1/payment_intents", slow_create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/v1/payment_intents",
                        data={"amount": "1"},
                        headers={"Idempotency-Key": "k"},
                    )
                    for _ in range(5)
                )
            )
    finally:
        await runner.cleanup()

    assert calls == 1
    assert {response.json()["id"] for response in responses} == {"pi_1"}


async def test_a_decline_is_replayed_too(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_DECLINED)
    key = f"{booking_id}:authorize"

    first = await _create(stripe_harness, key, _authorization(payment_method, booking_id))
    second = await _create(stripe_harness, key, _authorization(payment_method, booking_id))

    assert first.status_code == second.status_code == 402
    assert first.json()["error"]["code"] == "card_declined"
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(await stripe_harness.payment_intents_for(booking_id)) == 1


async def test_requests_without_a_key_are_not_deduplicated(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    for _ in range(2):
        response = await stripe_harness.http.post(
            "/v1/payment_intents", data=_authorization(payment_method, booking_id)
        )
        assert response.status_code == 200

    assert len(await stripe_harness.payment_intents_for(booking_id)) == 2


async def test_intents_report_stripe_amounts_after_a_partial_capture(
    stripe_harness: StripeHarness,
) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    created = await stripe_harness.http.post(
        "/v1/payment_intents", data=_authorization(payment_method, booking_id, amount=10000)
    )
    intent_id = created.json()["id"]
    assert created.json()["amount_capturable"] == 10000

    captured = await stripe_harness.http.post(
        f"/v1/payment_intents/{intent_id}/capture", data={"amount_to_capture": "6000"}
    )
    read = await stripe_harness.http.get(f"/v1/payment_intents/{intent_id}")

    for intent in (captured.json(), read.json()):
        assert intent["status"] == "succeeded"
        assert intent["amount_received"] == 6000
        assert intent["amount_capturable"] == 0
        # Stripe releases the rest of a partial capture; it is not a refund.
        assert intent["latest_charge"]["amount_captured"] == 6000
        assert intent["latest_charge"]["amount_refunded"] == 0


async def test_nothing_is_written_to_the_temp_folder(
    stripe_emulator: StripeEmulatorProcess, stripe_harness: StripeHarness
) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    response = await stripe_harness.http.post(
        "/v1/payment_intents", data=_authorization(payment_method, booking_id)
    )
    assert response.status_code == 200

    # localstripe pickles its store to this fixed path after every write unless told not to.
    for folder in {Path("/tmp"), Path(tempfile.gettempdir())}:
        pickle = folder / "localstripe.pickle"
        assert not pickle.exists() or pickle.stat().st_mtime < stripe_emulator.started_at


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net")
async def test_it_listens_on_loopback_only(stripe_emulator: StripeEmulatorProcess) -> None:
    listening = _listening_addresses(stripe_emulator.port)

    assert listening == {"127.0.0.1"}


async def test_webhooks_are_signed_for_stripe_construct_event(
    stripe_harness: StripeHarness,
) -> None:
    """localstripe signs `t=<created>,v1=HMAC-SHA256(secret, "<created>.<body>")` like Stripe."""
    secret = "whsec_test_" + secrets.token_hex(8)
    received: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((await request.read(), request.headers["Stripe-Signature"]))
        return web.Response()

    app = web.Application()
    app.router.add_post("/webhooks/stripe", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await stripe_harness.register_webhook(
            f"test-{secret}",
            f"http://127.0.0.1:{port}/webhooks/stripe",
            secret,
            events=["payment_intent.payment_failed"],
        )
        booking_id = _booking()
        payment_method = await stripe_harness.pm_for(CARD_DECLINED)
        await stripe_harness.http.post(
            "/v1/payment_intents", data=_authorization(payment_method, booking_id)
        )
        payload, signature = await _next_event_for(received, booking_id)
    finally:
        await runner.cleanup()

    event = stripe.Webhook.construct_event(payload, signature, secret)
    assert event.type == "payment_intent.payment_failed"
    timestamp, digest = (part.split("=", 1)[1] for part in signature.split(","))
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256)
    assert digest == expected.hexdigest()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, signature, "whsec_wrong")


async def _next_event_for(
    received: asyncio.Queue[tuple[bytes, str]], booking_id: str
) -> tuple[bytes, str]:
    """localstripe delivers each event after about a second, from its own task."""
    async with asyncio.timeout(10):
        while True:
            payload, signature = await received.get()
            event: dict[str, Any] = json.loads(payload)
            if event["data"]["object"]["metadata"].get("booking_id") == booking_id:
                return payload, signature


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, read from /proc/net."""
    addresses: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            assert len(address) == width
            raw = bytes.fromhex(address)
            # /proc/net stores each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.add(".".join(str(b) for b in words) if width == 8 else words.hex(":", 2))
    return addresses


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_a_latency_rule_delays_only_the_next_matching_requests(
    stripe_harness: StripeHarness,
) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    data = _authorization(payment_method, booking_id)
    rule = await stripe_harness.slow_down("POST", "/v1/payment_intents", latency_ms=500)

    slow, slow_seconds = await _timed(stripe_harness.http.post("/v1/payment_intents", data=data))
    fast, fast_seconds = await _timed(stripe_harness.http.post("/v1/payment_intents", data=data))
    intent_id = slow.json()["id"]
    # Another path under the pattern's prefix and another method are not matched.
    _, read_seconds = await _timed(stripe_harness.http.get(f"/v1/payment_intents/{intent_id}"))

    assert slow.status_code == fast.status_code == 200
    assert slow_seconds >= 0.5
    assert fast_seconds < 0.4 and read_seconds < 0.4
    [reported] = await stripe_harness.latency_rules()
    assert reported == {**rule, "remaining": 0, "delayed": 1}


async def test_a_path_placeholder_matches_any_one_segment(stripe_harness: StripeHarness) -> None:
    payment_method = await stripe_harness.pm_for(CARD_OK)
    intents = []
    for _ in range(3):
        created = await stripe_harness.http.post(
            "/v1/payment_intents", data=_authorization(payment_method, _booking())
        )
        intents.append(created.json()["id"])
    rule = await stripe_harness.slow_down(
        "POST", "/v1/payment_intents/{id}/capture", latency_ms=300, times=2
    )

    _, cancel_seconds = await _timed(
        stripe_harness.http.post(f"/v1/payment_intents/{intents[0]}/cancel")
    )
    timings = [
        (await _timed(stripe_harness.http.post(f"/v1/payment_intents/{intent}/capture")))[1]
        for intent in intents
    ]

    assert cancel_seconds < 0.3
    assert timings[0] >= 0.3 and timings[1] >= 0.3 and timings[2] < 0.3
    [reported] = await stripe_harness.latency_rules()
    assert (reported["rule_id"], reported["delayed"]) == (rule["rule_id"], 2)


async def test_a_delayed_request_holds_up_no_other(stripe_harness: StripeHarness) -> None:
    booking_id = _booking()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    rule = await stripe_harness.slow_down("POST", "/v1/payment_intents", latency_ms=1500)
    slow = asyncio.create_task(
        stripe_harness.http.post(
            "/v1/payment_intents", data=_authorization(payment_method, booking_id)
        )
    )

    await stripe_harness.wait_until_delayed(rule)
    # The request is in flight: nothing exists at "Stripe" yet, and other calls answer at once.
    listed, list_seconds = await _timed(stripe_harness.http.get("/v1/payment_intents"))
    assert list_seconds < 1.0
    assert booking_id not in {pi["metadata"].get("booking_id") for pi in listed.json()["data"]}
    assert not slow.done()

    assert (await slow).status_code == 200
    assert len(await stripe_harness.payment_intents_for(booking_id)) == 1


@pytest.mark.parametrize(
    "rule",
    [
        {"method": "POST", "latency_ms": 100},
        {"method": "POST", "path": "v1/payment_intents", "latency_ms": 100},
        {"method": "POST", "path": "/v1/payment_intents", "latency_ms": -1},
        {"method": "POST", "path": "/v1/payment_intents", "latency_ms": 600_000},
        {"method": "POST", "path": "/v1/payment_intents", "latency_ms": 100, "times": 0},
    ],
)
async def test_a_bad_latency_rule_is_refused(
    stripe_harness: StripeHarness, rule: dict[str, Any]
) -> None:
    response = await stripe_harness.http.post("/_harness/latency", json=rule)

    assert response.status_code == 400
    assert "bad latency rule" in response.json()["error"]
    assert await stripe_harness.latency_rules() == []


async def test_clearing_drops_unused_rules(stripe_harness: StripeHarness) -> None:
    await stripe_harness.slow_down("POST", "/v1/payment_intents", latency_ms=2000, times=5)

    await stripe_harness.clear_latency()
    payment_method = await stripe_harness.pm_for(CARD_OK)
    _, seconds = await _timed(
        stripe_harness.http.post(
            "/v1/payment_intents", data=_authorization(payment_method, _booking())
        )
    )

    assert seconds < 1.0
    assert await stripe_harness.latency_rules() == []
