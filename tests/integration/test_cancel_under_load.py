"""Customer cancels under a mixed load, through the HTTP API on the real engine.

N bookings (`PASSAGE_LOAD_BOOKINGS`, default 40) of 1-3 simulator offers run with bounded
concurrency; some pay with the 3-D Secure card, the simulator adds small latencies, and about half
get a customer cancel after a random delay, so cancels land in every step. Once every booking has
settled, the test checks what docs/interruptions.md and the contract promise: an accepted cancel
ends CANCELLED, a refusal is a 409 with its reason, nothing answers 5xx, Stripe and the simulator's
ledger agree with the booking views, and the inventory adds up.

The simulator has no `capacity_scale`, so bookings run in waves of at most `WAVE`, each on a reset
inventory, and each wave is checked before the next resets it. `PASSAGE_LOAD_SEED` replays a run's
plan (timings still vary); `PASSAGE_LOAD_CANCEL_WITHIN` widens the cancel delays (default 1.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.service import RPCError

from tests.integration.test_api import (
    bearer,
    checkout,
    deliver,
    handle_of,
    payment_event,
)
from tests.support.bookings import live_rows
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_3DS, CARD_OK, StripeHarness

Json = dict[str, Any]

BOOKINGS = int(os.environ.get("PASSAGE_LOAD_BOOKINGS", "40"))
SEED = int(os.environ.get("PASSAGE_LOAD_SEED", "20240611"))
#: Customer cancels come 0 to this many seconds after the 202.
CANCEL_WITHIN = float(os.environ.get("PASSAGE_LOAD_CANCEL_WITHIN", "1.5"))
CONCURRENCY = 10
#: Bookings per inventory reset: what the catalogue's stock serves with some contention left.
WAVE = 40
#: How long one booking may take to settle once its cancel (if any) was answered.
SETTLE_SECONDS = 45.0
#: Offers with fewer units than this are left out (the 1-2 unit offers would sell out at once).
MIN_CAPACITY = 3

SETTLED = {"CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"}
IN_CONFIRMATION = {"CONFIRMING", "CAPTURING"}
LATENCIES = [  # (operation, rate, latency_ms): short enough for the 2 s supplier timeout
    ("hold", 0.3, 250),
    ("confirm", 0.4, 600),
    ("cancel", 0.3, 300),
    ("release", 0.3, 200),
]


@dataclass(frozen=True)
class Plan:
    index: int
    offers: tuple[str, ...]
    optional: tuple[bool, ...]
    three_ds: bool
    #: Seconds after the 202 at which the customer cancels; None: no cancel.
    cancel_after: float | None
    #: Seconds the 3-D Secure customer takes once the challenge is shown.
    authenticate_after: float


@dataclass
class Run:
    """What one booking's customer did and saw."""

    plan: Plan
    booking: Json | None = None
    #: (seconds since the wave began, call, HTTP status, short note)
    log: list[tuple[float, str, int, str]] = field(default_factory=list)
    #: (call, status, body) of every cancel sent.
    cancels: list[tuple[str, int, Json]] = field(default_factory=list)
    final: Json | None = None

    @property
    def booking_id(self) -> str:
        return self.booking["booking_id"] if self.booking else f"#{self.plan.index}"

    @property
    def accepted_cancel(self) -> bool:
        return any(200 <= status < 300 for _, status, _ in self.cancels)


class Customers:
    """Drives every booking of a wave through the API and records each answer."""

    def __init__(
        self,
        api: httpx.AsyncClient,
        simulator: SimulatorControl,
        stripe: StripeHarness,
        webhook_secret: str,
        cards: dict[bool, str],
    ) -> None:
        self.api, self.simulator, self.stripe = api, simulator, stripe
        self.webhook_secret = webhook_secret
        self.cards = cards
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.started = time.monotonic()
        self.gate = asyncio.Semaphore(CONCURRENCY)

    async def call(
        self, run: Run, what: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = await self.api.request(method, path, **kwargs)
            status, text = response.status_code, response.text
        except Exception as err:  # an exception out of the app is what a server answers 500 to
            status, text = 599, f"{type(err).__name__}: {err}"
            response = None
        self.statuses[status] += 1
        note = text[:160] if status >= 300 else ""
        run.log.append((round(time.monotonic() - self.started, 3), what, status, note))
        if status >= 500:
            self.server_errors.append(f"{run.booking_id} {what} -> {status}: {text[:300]}")
        return response

    async def view(self, run: Run) -> Json | None:
        assert run.booking is not None
        response = await self.call(
            run,
            "get",
            "GET",
            f"/bookings/{run.booking_id}",
            headers=bearer(run.booking["access_token"]),
        )
        if response is None or response.status_code != 200:
            return None
        view: Json = response.json()
        return view

    async def poll(self, run: Run, done: Any, within: float) -> Json | None:
        """The booking's view once `done(view)`, or the last one seen after `within` seconds."""
        deadline = time.monotonic() + within
        view = await self.view(run)
        while (view is None or not done(view)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            view = await self.view(run) or view
        return view

    async def drive(self, run: Run) -> None:
        async with self.gate:
            plan = run.plan
            body = await checkout(
                self.simulator,
                self.cards[plan.three_ds],
                *plan.offers,
                email=f"load-{plan.index}@example.com",
            )
            for item, optional in zip(body["items"], plan.optional, strict=True):
                item["optional"] = optional
            headers = {"Idempotency-Key": f"load-{uuid.uuid4()}"}
            created = await self.call(
                run, "create", "POST", "/bookings", json=body, headers=headers
            )
            if created is None or created.status_code != 202:
                return
            run.booking = created.json()
            customer = []
            if plan.cancel_after is not None:
                customer.append(self.cancel(run, plan.cancel_after))
            if plan.three_ds:
                customer.append(self.authenticate(run, plan.authenticate_after))
            await asyncio.gather(*customer)

            def settled(view: Json) -> bool:
                # A booking whose cancel was accepted has not settled while it is CONFIRMED.
                confirmed_yet = view["status"] == "CONFIRMED" and run.accepted_cancel
                return view["status"] in SETTLED and not confirmed_yet

            run.final = await self.poll(run, settled, SETTLE_SECONDS)

    async def cancel(self, run: Run, delay: float) -> None:
        assert run.booking is not None
        await asyncio.sleep(delay)
        path, headers = f"/bookings/{run.booking_id}/cancel", bearer(run.booking["access_token"])
        response = await self.call(run, "cancel", "POST", path, headers=headers)
        if response is None:
            return
        run.cancels.append(("cancel", response.status_code, response.json()))
        message = (response.json().get("error") or {}).get("message", "")
        if response.status_code != 409 or "confirmation in progress" not in message:
            return
        # As the 409 asks: cancel again once the booking is CONFIRMED.
        view = await self.poll(run, lambda v: v["status"] not in IN_CONFIRMATION, SETTLE_SECONDS)
        if view is not None and view["status"] == "CONFIRMED":
            again = await self.call(run, "cancel again", "POST", path, headers=headers)
            if again is not None:
                run.cancels.append(("cancel again", again.status_code, again.json()))

    async def authenticate(self, run: Run, delay: float) -> None:
        """Pass 3-D Secure as the customer would, then Stripe's webhook tells the engine."""
        view = await self.poll(
            run,
            lambda v: v["status"] == "AWAITING_PAYMENT_ACTION" or v["status"] in SETTLED,
            SETTLE_SECONDS,
        )
        if view is None or view["status"] != "AWAITING_PAYMENT_ACTION":
            return
        await asyncio.sleep(delay)
        payment = view["payment"]
        intent_id = payment["payment_intent_id"]
        try:
            await self.stripe.authenticate(intent_id, payment["client_secret"])
        except httpx.HTTPStatusError as err:  # cancelled meanwhile: the intent is gone
            elapsed = round(time.monotonic() - self.started, 3)
            run.log.append((elapsed, "3ds", err.response.status_code, err.response.text[:160]))
            return
        event = payment_event(
            f"evt_{uuid.uuid4().hex}",
            "payment_intent.amount_capturable_updated",
            intent_id,
            run.booking_id,
        )
        response = await deliver(self.api, event, self.webhook_secret)
        self.statuses[response.status_code] += 1
        run.log.append(
            (round(time.monotonic() - self.started, 3), "webhook", response.status_code, "")
        )
        if response.status_code >= 500:
            self.server_errors.append(f"{run.booking_id} webhook -> {response.text[:300]}")


def plans(rng: random.Random, offers: list[Json], first: int, count: int) -> list[Plan]:
    stocked = [offer for offer in offers if offer["capacity_left"] >= MIN_CAPACITY]
    weights = [offer["capacity_left"] for offer in stocked]
    drawn = []
    for index in range(first, first + count):
        size = rng.choice((1, 1, 2, 2, 3))
        chosen: list[str] = []
        while len(chosen) < size:
            offer_id = rng.choices(stocked, weights)[0]["offer_id"]
            if offer_id not in chosen:
                chosen.append(offer_id)
        drawn.append(
            Plan(
                index=index,
                offers=tuple(chosen),
                # The first item is the trip; a later one is optional now and then.
                optional=tuple(i > 0 and rng.random() < 0.25 for i in range(size)),
                three_ds=rng.random() < 0.25,
                cancel_after=rng.uniform(0.0, CANCEL_WITHIN) if rng.random() < 0.5 else None,
                authenticate_after=rng.uniform(0.0, 0.6),
            )
        )
    return drawn


# --- what must hold once a wave has settled ------------------------------------------------------


def amount(money: Json | None) -> int:
    return int(money["amount"]) if money else 0


def at_stripe(intent: Json | None) -> tuple[str, int, int]:
    """(the view's payment status this PaymentIntent stands for, received, refunded)."""
    if intent is None:
        return "NONE", 0, 0
    charge = intent.get("latest_charge") or {}
    received, refunded = int(intent["amount_received"]), int(charge.get("amount_refunded", 0))
    status = {"canceled": "VOIDED", "requires_capture": "AUTHORIZED"}.get(intent["status"])
    if status is None and intent["status"] != "succeeded":
        status = f"stripe:{intent['status']}"
    elif status is None:
        status = "CAPTURED" if refunded == 0 else "PARTIALLY_REFUNDED"
        status = "REFUNDED" if 0 < received <= refunded else status
    return status, received, refunded


def payment_breaks(view: Json, intents: list[Json]) -> list[str]:
    payment, status = view["payment"], view["status"]
    captured, refunded = amount(payment["captured"]), amount(payment["refunded"])
    kept = amount(payment["fees_kept"])
    stripe_status, received, stripe_refunded = at_stripe(intents[0] if intents else None)
    breaks = []
    if len(intents) > 1:
        breaks.append(f"{len(intents)} PaymentIntents: {[i['id'] for i in intents]}")
    if stripe_status != payment["status"]:
        breaks.append(f"payment {payment['status']} in the view, {stripe_status} at Stripe")
    if (received, stripe_refunded) != (captured, refunded):
        breaks.append(
            f"view captured {captured} refunded {refunded}, "
            f"Stripe received {received} refunded {stripe_refunded}"
        )
    items = view["items"]
    if status == "CONFIRMED":
        confirmed = sum(amount(i["price"]) for i in items if i["status"] == "CONFIRMED")
        if captured != confirmed:
            breaks.append(f"captured {captured} != confirmed items {confirmed}")
        missing = [i["item_id"] for i in items if not i["optional"] and i["status"] != "CONFIRMED"]
        if missing:
            breaks.append(f"CONFIRMED without its items {missing}")
    elif status == "CANCELLED" and captured > 0:  # after capture: the terms apply
        fees = sum(amount(i.get("cancellation_fee")) for i in items)
        if (refunded, kept) != (captured - fees, fees):
            breaks.append(f"refunded {refunded}, captured {captured}, kept {kept}, fees {fees}")
    elif status in ("CANCELLED", "FAILED") and stripe_status not in ("NONE", "VOIDED", "REFUNDED"):
        breaks.append(f"{status}: PaymentIntent is {stripe_status}, not voided or refunded")
    return breaks


def booking_breaks(run: Run, ledger: Json, intents: list[Json]) -> list[str]:
    creates = [entry for entry in run.log if entry[1] == "create"]
    if run.booking is None:
        return [f"create answered {creates[-1][2] if creates else 'nothing'}: {creates}"]
    view = run.final
    if view is None:
        return ["no view could be read"]
    status = view["status"]
    breaks = []
    if status not in SETTLED:
        breaks.append(f"still {status} after {SETTLE_SECONDS} s")
    if run.accepted_cancel and status != "CANCELLED":
        answers = [(what, code, body.get("status")) for what, code, body in run.cancels]
        breaks.append(f"cancel accepted {answers}, ended {status}")
    for what, code, body in run.cancels:
        if code == 409 and not (body.get("error") or {}).get("message"):
            breaks.append(f"{what}: 409 without a reason: {body}")
        elif code not in (200, 202, 409):
            breaks.append(f"{what}: answered {code}: {body}")
    holds, booked = live_rows(ledger, run.booking_id)
    if status in SETTLED and holds:
        breaks.append(f"live holds at the supplier: {[h['ref'] for h in holds]}")
    confirmed_refs = {i["supplier_ref"] for i in view["items"] if i["status"] == "CONFIRMED"}
    if status == "CONFIRMED" and {b["ref"] for b in booked} != confirmed_refs:
        breaks.append(f"supplier bookings {[b['ref'] for b in booked]} != view {confirmed_refs}")
    if status in ("CANCELLED", "FAILED") and booked:
        breaks.append(f"live supplier bookings: {[b['ref'] for b in booked]}")
    return breaks + payment_breaks(view, intents)


def timeline_of(run: Run) -> str:
    lines = [f"  booking {run.booking_id} plan={run.plan}"]
    lines += [
        f"    t={t:7.3f} {what} -> {code} {note}"
        for t, what, code, note in run.log
        if what != "get"
    ]
    for entry in (run.final or {}).get("timeline", []):
        lines.append(
            f"    {entry['at']} {entry['step']}: {entry['outcome']} {entry.get('detail') or ''}"
        )
    if run.final:
        lines.append(f"    final {run.final['status']} payment={run.final['payment']}")
    return "\n".join(lines)


def landed_during(run: Run) -> str:
    """The booking's status when the saga recorded the customer's (first) cancel."""
    status = "RECEIVED"
    for entry in (run.final or {}).get("timeline", []):
        if entry["step"] == "CANCEL" and entry["outcome"] == "requested":
            return status
        if entry["outcome"] == "status":
            status = entry["detail"]
    return f"unrecorded (last {status})"


async def settled_ledger(simulator: SimulatorControl, runs: list[Run]) -> Json:
    """The ledger once no finished booking holds anything (optional undos run in the background)."""
    deadline = time.monotonic() + 10
    while True:
        ledger = await simulator.ledger()
        held = any(live_rows(ledger, run.booking_id)[0] for run in runs if run.booking is not None)
        if not held or time.monotonic() > deadline:
            return ledger
        await asyncio.sleep(0.2)


# --- the test ------------------------------------------------------------------------------------


async def test_every_cancel_under_a_mixed_load_is_answered_and_carried_out(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    rng = random.Random(SEED)
    cards = {
        False: await stripe_harness.pm_for(CARD_OK),
        True: await stripe_harness.pm_for(CARD_3DS),
    }
    started = time.monotonic()
    runs: list[Run] = []
    violations: list[str] = []
    statuses: Counter[int] = Counter()
    for first in range(0, BOOKINGS, WAVE):
        await simulator.reset()
        for operation, rate, latency_ms in LATENCIES:
            await simulator.add_fault(
                "latency", operation=operation, rate=rate, latency_ms=latency_ms
            )
        wave = [
            Run(plan)
            for plan in plans(rng, await simulator.offers(), first, min(WAVE, BOOKINGS - first))
        ]
        customers = Customers(
            api_client,
            simulator,
            stripe_harness,
            engine_worker.settings.stripe_webhook_secret,
            cards,
        )
        await asyncio.gather(*(customers.drive(run) for run in wave))
        await simulator.clear_faults()
        ledger = await settled_ledger(simulator, wave)
        for row in ledger["inventory"]:
            if (
                row["free"] + row["held"] + row["booked"] != row["capacity"]
                or min(row["free"], row["held"], row["booked"]) < 0
            ):
                violations.append(f"inventory does not add up: {row}")
        intents = await stripe_harness.payment_intents_by_booking()  # one scan, not one per run
        for run in wave:
            breaks = booking_breaks(run, ledger, intents.get(run.booking_id, []))
            if breaks:
                violations.append(f"{run.booking_id}: {'; '.join(breaks)}\n{timeline_of(run)}")
        violations += customers.server_errors
        statuses += customers.statuses
        runs += wave
        for run in wave:  # confirmed sagas wait for a cancel for days: end them before the reset
            if run.booking is not None and run.final and run.final["status"] != "CANCELLED":
                with contextlib.suppress(RPCError):
                    await handle_of(engine_worker, run.booking_id).terminate("load test done")

    elapsed = time.monotonic() - started
    outcomes = Counter(run.final["status"] if run.final else "unread" for run in runs)
    answers = Counter(f"{what}:{code}" for run in runs for what, code, _ in run.cancels)
    reasons = Counter(
        body["error"]["message"].split(":")[0]
        for run in runs
        for _, code, body in run.cancels
        if code == 409
    )
    landed = Counter(landed_during(run) for run in runs if run.accepted_cancel)
    after_capture = sum(
        1
        for run in runs
        if run.final
        and run.final["status"] == "CANCELLED"
        and amount(run.final["payment"]["captured"])
    )
    summary = {
        "outcomes": outcomes,
        "cancelled after capture": after_capture,
        "cancel answers": answers,
        "409 reasons": reasons,
        "accepted cancels landed in": landed,
        "HTTP": statuses,
    }
    waves = math.ceil(BOOKINGS / WAVE)
    print(
        f"\nload: {len(runs)} bookings in {elapsed:.1f} s (seed {SEED}, {waves} waves, "
        f"concurrency {CONCURRENCY}); "
        + "; ".join(
            f"{name} {dict(sorted(value.items())) if isinstance(value, Counter) else value}"
            for name, value in summary.items()
        )
        + f"; violations {len(violations)}"
    )
    assert not violations, "\n".join(violations)
