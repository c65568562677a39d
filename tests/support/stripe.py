"""Pytest plugin: the Stripe emulator as a real subprocess, a gateway on it, and harness calls.

Fixtures:
- `stripe_emulator` (session): `python -m passage.dev.stripe_emulator` on a free 127.0.0.1 port.
- `stripe_url` (session): its base URL, e.g. `http://127.0.0.1:54321`.
- `stripe_harness`: what tests do outside the product: payment methods for a test card
  (`pm_for`), 3-D Secure (`authenticate`), the PaymentIntents of a booking, the idempotency keys
  the emulator saw, webhook registration, and slow calls (`slow_down`, `wait_until_delayed`);
  latency rules are cleared when the test ends.
- `stripe_gateway`: a `StripePaymentGateway` on the emulator.

The emulator's state lives for the whole session: tests tell their data apart by booking id.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.adapters.stripe_gateway import StripePaymentGateway
from passage.dev.supervisor import free_ports
from worker import make_stripe_gateway

STRIPE_TEST_API_KEY = "sk_test_passage"
REPO_ROOT = Path(__file__).resolve().parents[2]

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"
CARD_3DS = "4000002500003155"


@dataclass(frozen=True)
class StripeEmulatorProcess:
    url: str
    port: int
    pid: int
    started_at: float


@pytest.fixture(scope="session")
def stripe_emulator() -> Iterator[StripeEmulatorProcess]:
    port = free_ports("127.0.0.1", 1)[0]
    started_at = time.time()
    # An anonymous temporary file (gone when closed) keeps the output for a failed start without
    # a pipe that could fill up and block the emulator.
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "passage.dev.stripe_emulator", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_answering(url, process, output)
            yield StripeEmulatorProcess(url, port, process.pid, started_at)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def stripe_url(stripe_emulator: StripeEmulatorProcess) -> str:
    return stripe_emulator.url


class StripeHarness:
    """Calls to the emulator that only tests make (the product never creates payment methods)."""

    def __init__(self, base_url: str, api_key: str = STRIPE_TEST_API_KEY) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, auth=(api_key, ""), timeout=10)

    async def pm_for(self, card_number: str) -> str:
        """A PaymentMethod id for a test card, as Stripe.js would create in the browser."""
        response = await self.http.post(
            "/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": card_number,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        response.raise_for_status()
        return str(response.json()["id"])

    async def authenticate(
        self, payment_intent_id: str, client_secret: str, *, success: bool = True
    ) -> dict[str, Any]:
        """Finish (or fail) 3-D Secure, as the customer would in the frontend."""
        response = await self.http.post(
            f"/v1/payment_intents/{payment_intent_id}/_authenticate",
            data={"client_secret": client_secret, "success": "true" if success else "false"},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def payment_intents_for(self, booking_id: str) -> list[dict[str, Any]]:
        """Every PaymentIntent whose metadata names the booking (localstripe has no search)."""
        return (await self.payment_intents_by_booking()).get(booking_id, [])

    async def payment_intents_by_booking(self) -> dict[str, list[dict[str, Any]]]:
        """Every PaymentIntent, by the booking its metadata names: one pass over all pages."""
        found: dict[str, list[dict[str, Any]]] = {}
        params: dict[str, str] = {"limit": "100"}
        while True:
            response = await self.http.get("/v1/payment_intents", params=params)
            response.raise_for_status()
            page = response.json()
            for intent in page["data"]:
                found.setdefault(str(intent["metadata"].get("booking_id")), []).append(intent)
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    async def idempotency_keys(self) -> dict[str, dict[str, int]]:
        """The idempotency keys the emulator saw, with `requests`, `replayed`, `rejected`."""
        response = await self.http.get("/_harness/idempotency")
        response.raise_for_status()
        keys: dict[str, dict[str, int]] = response.json()["keys"]
        return keys

    async def slow_down(
        self, method: str, path: str, latency_ms: int, *, times: int = 1
    ) -> dict[str, Any]:
        """Delay the next `times` requests matching `method` and `path` by `latency_ms`.

        `path` may name segments, e.g. `/v1/payment_intents/{id}/capture` for any intent. The
        delay comes before the emulator handles the request: the call is in flight meanwhile.
        Returns the rule as the emulator reports it (`rule_id`, `remaining`, `delayed`, ...).
        """
        response = await self.http.post(
            "/_harness/latency",
            json={"method": method, "path": path, "latency_ms": latency_ms, "times": times},
        )
        response.raise_for_status()
        rule: dict[str, Any] = response.json()
        return rule

    async def latency_rules(self) -> list[dict[str, Any]]:
        response = await self.http.get("/_harness/latency")
        response.raise_for_status()
        rules: list[dict[str, Any]] = response.json()["rules"]
        return rules

    async def wait_until_delayed(
        self, rule: dict[str, Any], count: int = 1, within_seconds: float = 10.0
    ) -> None:
        """Return once `count` requests reached the rule: that many calls are now in flight."""
        async with asyncio.timeout(within_seconds):
            while True:
                rules = {r["rule_id"]: r for r in await self.latency_rules()}
                if rules[rule["rule_id"]]["delayed"] >= count:
                    return
                await asyncio.sleep(0.05)

    async def clear_latency(self) -> None:
        (await self.http.delete("/_harness/latency")).raise_for_status()

    async def register_webhook(
        self, webhook_id: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """Make localstripe POST its events to `url`, signed with `secret` (Stripe-Signature)."""
        data = {"url": url, "secret": secret}
        for index, event in enumerate(events or []):
            data[f"events[{index}]"] = event
        response = await self.http.post(f"/_config/webhooks/{webhook_id}", data=data)
        response.raise_for_status()


@pytest.fixture
async def stripe_harness(stripe_url: str) -> AsyncIterator[StripeHarness]:
    harness = StripeHarness(stripe_url)
    yield harness
    # A rule a failed test left unused must not slow the next test down.
    await harness.clear_latency()
    await harness.http.aclose()


@pytest.fixture
async def stripe_gateway(stripe_url: str) -> AsyncIterator[StripePaymentGateway]:
    gateway = make_stripe_gateway(STRIPE_TEST_API_KEY, stripe_url)
    yield gateway
    await gateway.aclose()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], output: Any) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"stripe emulator exited: {output.read().decode(errors='replace')}")
        try:
            if httpx.get(f"{url}/_harness/idempotency", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"stripe emulator did not answer on {url} within 20 s")
