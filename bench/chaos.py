"""`make chaos`: the chaos campaign against a throwaway engine, judged by the invariant checker.

Starts its own engine (the `make up` launcher, `passage.dev.devstack`, on free ports with a
temporary state directory, `PASSAGE_ENV=development`), then:

- submits N bookings over the HTTP API at concurrency C: random itineraries of 1-4 items across
  every kind, some optional, some paid with the declined card or the 3-D Secure card (which the
  customer passes at the emulator, after which the signed webhook is delivered, now and then twice),
  each with travellers, e-mail and document numbers of their own;
- delivers signed Stripe events out of order and stale, as Stripe may: a failure hint before the
  customer has passed the challenge, an older event after a newer one, events for bookings that
  have moved on (mid-saga or settled) and old event ids again; none may move a booking;
- injects simulator faults on every operation (error, timeout, latency, refuse, each with a rate);
- sends a customer cancel at a random moment to about a third of the bookings (a 409 "confirmation
  in progress" is sent again once the booking is CONFIRMED, as the 409 asks);
- SIGKILLs the worker K times, the Temporal dev server once and the API once (the launcher
  restarts each: Temporal on its kept database file), and restarts the whole engine once (SIGTERM
  to the launcher, then a start on the same state directory: the Temporal dev server on its
  database file, the API, the simulator and the Stripe emulator on their state files);
- drains: clears the faults, retries NEEDS_ATTENTION bookings through the staff API (then resolves
  the ones a retry does not move, as staff would), waits for every booking to settle;
- runs the invariant checker (`passage check --json`, with the launcher's codec key), stops the
  engine and scans every log line of every process of the run (launcher, Temporal, simulator,
  Stripe emulator, worker, API) for the travellers' data, access tokens, client secrets, card
  numbers and secrets it used; prints a table. Exit status 1 on any violation, leak, webhook that
  moved a booking, or booking that could not be driven; 0 otherwise.

    python -m bench.chaos [--bookings N] [--concurrency C] [--kills K] [--no-temporal-restart]
                          [--no-api-restart] [--no-engine-restart] [--no-log-scan]

Environment: CHAOS_BOOKINGS, CHAOS_CONCURRENCY, CHAOS_KILLS, CHAOS_SEED, CHAOS_CANCEL_SHARE,
CHAOS_DECLINED_SHARE (share of bookings paid with the declined card), CHAOS_STALE_WEBHOOK_SHARE,
CHAOS_TEMPORAL_RESTART, CHAOS_API_RESTART, CHAOS_ENGINE_RESTART, CHAOS_LOG_SCAN (0 to skip each),
CHAOS_KEEP (keep the state directory and print where it is).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.engine import (
    CARD_3DS,
    CARD_DECLINED,
    CARD_NAMES,
    CARD_OK,
    REPO_ROOT,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    Engine,
    booking_body,
    payment_intent_event,
    payment_methods,
    signed,
)
from passage import logs
from passage.settings import DEV_SECRETS

Json = dict[str, Any]

KINDS = ("flight", "hotel", "cruise", "ferry", "activity")
SETTLED = {"CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"}
IN_CONFIRMATION = {"CONFIRMING", "CAPTURING"}
#: How long the API may be unreachable (the engine restart) before a call gives up.
UNREACHABLE_FOR = 150.0
#: How long one booking may take to settle while the chaos goes on.
SETTLE_SECONDS = 150.0
#: Worker kills this far apart at least: the launcher gives up after 3 crashes within 30 s.
KILL_SPACING = 16.0
#: Any two crashes or restarts this far apart at least, each after the one before has recovered.
EVENT_SPACING = 4.0
#: When, as a share of the submissions, the Temporal dev server, the engine and the API go down.
TEMPORAL_AT, ENGINE_AT, API_AT = 0.35, 0.5, 0.65
#: The travellers' data, distinctive enough for the log scan to find anywhere: first names and
#: birth dates as they are; every last name, e-mail and document number holds the run's marker.
FIRST_NAMES = ("Zephyrine", "Bartholomew", "Ottoline", "Peregrine", "Wilhelmina", "Evander")
LAST_NAMES = ("Quillfeather", "Ravensworth", "Thistlewood", "Marchbanks")
BIRTH_DATES = ("1931-07-29", "1929-02-17", "1944-11-03", "1957-05-21")
#: Letters that are no hexadecimal digit: the marker never turns up in an id by chance.
MARKER_LETTERS = "ghjkmnpqrstvwxyz"
#: Stale events delivered for a booking that has moved on (any may come late from Stripe).
STALE_TYPES = (
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.canceled",
    "payment_intent.succeeded",
)
#: Where the launcher announces the staff key it generated (CONTRACT: `make up` prints it).
STAFF_KEY_ANNOUNCEMENT = "  Staff key "
#: Faults on every operation: (mode, rate, latency_ms). Timeouts stay below the hold TTL.
FAULTS: list[tuple[str, float, int | None]] = [
    ("error", 0.06, None),
    ("timeout", 0.03, 2500),
    ("refuse", 0.015, None),
    ("latency", 0.15, 300),
]
OPERATIONS = ("quote", "hold", "confirm", "cancel", "release")


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- one booking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    index: int
    offers: tuple[str, ...]
    optional: tuple[bool, ...]
    card: str
    cancel_after: float | None
    duplicate_webhook: bool
    #: A failure hint before the challenge is passed, an older event after the newer one.
    out_of_order_webhooks: bool = False
    #: Stale events while the booking moves on and after it settled, and an old event id again.
    stale_webhooks: bool = False


@dataclass
class Run:
    plan: Plan
    booking: Json | None = None
    cancels: list[tuple[str, int, str]] = field(default_factory=list)
    final: Json | None = None
    problem: str | None = None
    #: The customer passed the 3-D Secure challenge at the emulator.
    authenticated: bool = False
    #: Events delivered for it (to deliver an old one again).
    events: list[Json] = field(default_factory=list)
    #: What a webhook made of it that it should not have (set when seen).
    misled: str | None = None

    @property
    def booking_id(self) -> str:
        return self.booking["booking_id"] if self.booking else f"#{self.plan.index}"

    @property
    def token(self) -> str:
        assert self.booking is not None
        return str(self.booking["access_token"])

    @property
    def accepted_cancel(self) -> bool:
        return any(200 <= status < 300 for _, status, _ in self.cancels)


class Campaign:
    def __init__(self, engine: Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.args = args
        self.rng = random.Random(args.seed)
        self.runs: list[Run] = []
        self.http_statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.faults: Counter[str] = Counter()
        self.kills = 0
        self.restarts: list[str] = []
        #: Crashes of the Temporal dev server and of the API: service -> what happened.
        self.crashes: dict[str, list[str]] = {"temporal": [], "api": []}
        self.webhooks: Counter[str] = Counter()
        self.webhook_answers: Counter[str] = Counter()
        self.tokens: list[str] = []
        self.marker = "Zq" + "".join(random.Random(args.seed).choices(MARKER_LETTERS, k=8))
        self.staff: Counter[str] = Counter()
        self.submitted = 0
        self.done = 0
        self.cards: dict[str, str] = {}
        self.offers: dict[str, list[Json]] = {}

    # HTTP with the patience an engine restart needs
    async def call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        deadline = time.monotonic() + UNREACHABLE_FOR
        while True:
            try:
                response = await client.request(method, url, **kwargs)
            except httpx.HTTPError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{method} {url}: unreachable: {err}") from err
                await asyncio.sleep(0.5)
                continue
            self.http_statuses[response.status_code] += 1
            if response.status_code in (502, 503) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # not ready yet (the engine restarts)
                continue
            if response.status_code >= 500:
                self.server_errors.append(
                    f"{method} {url} -> {response.status_code}: {response.text[:200]}"
                )
            return response

    async def view(self, api: httpx.AsyncClient, run: Run) -> Json | None:
        response = await self.call(
            api,
            "GET",
            f"/bookings/{run.booking_id}",
            headers={"Authorization": f"Bearer {run.token}"},
        )
        return response.json() if response.status_code == 200 else None

    async def poll(self, api: httpx.AsyncClient, run: Run, done: Any, within: float) -> Json | None:
        deadline = time.monotonic() + within
        view = await self.view(api, run)
        while (view is None or not done(view)) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            view = await self.view(api, run) or view
        return view

    # set-up
    async def prepare(self, sim: httpx.AsyncClient, stripe: httpx.AsyncClient) -> None:
        self.cards = await payment_methods(stripe, (CARD_OK, CARD_DECLINED, CARD_3DS))
        for kind in KINDS:
            response = await self.call(sim, "GET", "/offers", params={"kind": kind})
            response.raise_for_status()
            self.offers[kind] = response.json()
        await self.inject_faults(sim)

    async def inject_faults(self, sim: httpx.AsyncClient) -> None:
        if self.args.no_faults:
            return
        for operation in OPERATIONS:
            for mode, rate, latency_ms in FAULTS:
                body: Json = {"supplier": "*", "operation": operation, "mode": mode, "rate": rate}
                if latency_ms is not None:
                    body["latency_ms"] = latency_ms
                response = await self.call(sim, "POST", "/_sim/faults", json=body)
                response.raise_for_status()

    def plans(self) -> list[Plan]:
        drawn = []
        for index in range(self.args.bookings):
            size = self.rng.choice((1, 1, 2, 2, 3, 4))
            kinds = self.rng.sample(KINDS, size)
            offers = tuple(
                self.rng.choices(
                    self.offers[kind], [max(1, o["capacity_left"]) for o in self.offers[kind]]
                )[0]["offer_id"]
                for kind in kinds
            )
            declined = self.args.declined_share
            card = self.rng.choices(
                (CARD_OK, CARD_DECLINED, CARD_3DS), (0.82 - declined, declined, 0.18)
            )[0]
            drawn.append(
                Plan(
                    index=index,
                    offers=offers,
                    optional=tuple(i > 0 and self.rng.random() < 0.25 for i in range(size)),
                    card=card,
                    cancel_after=(
                        self.rng.uniform(0.0, 4.0)
                        if self.rng.random() < self.args.cancel_share
                        else None
                    ),
                    duplicate_webhook=self.rng.random() < 0.5,
                    out_of_order_webhooks=self.rng.random() < 0.75,
                    stale_webhooks=self.rng.random() < self.args.stale_webhook_share,
                )
            )
        return drawn

    def body(self, plan: Plan) -> Json:
        prices = {o["offer_id"]: o["price"] for kind in KINDS for o in self.offers[kind]}
        items = [
            (offer_id, prices[offer_id], optional)
            for offer_id, optional in zip(plan.offers, plan.optional, strict=True)
        ]
        body = booking_body(f"chaos-{plan.index}", items, self.cards[plan.card])
        return {**body, **self.people(plan.index)}

    def people(self, index: int) -> Json:
        """The customer and one or two travellers of booking `index`, each value traceable."""
        tag = f"{self.marker}{index}"
        travellers = [
            {
                "first_name": FIRST_NAMES[(index + n) % len(FIRST_NAMES)],
                "last_name": f"{LAST_NAMES[(index + n) % len(LAST_NAMES)]}{tag}",
                "birth_date": BIRTH_DATES[(index + n) % len(BIRTH_DATES)],
                "document_number": f"P{tag}{n}",
            }
            for n in range(1 + index % 2)
        ]
        lead = travellers[0]
        return {
            "customer": {
                "email": f"{lead['first_name'].lower()}.{tag}@example.org",
                "name": f"{lead['first_name']} {lead['last_name']}",
            },
            "travellers": travellers,
        }

    # the customers
    async def drive(
        self, gate: asyncio.Semaphore, api: httpx.AsyncClient, stripe: httpx.AsyncClient, run: Run
    ) -> None:
        async with gate:
            try:
                await self._drive(api, stripe, run)
            except Exception as err:  # noqa: BLE001 - reported as a problem of the run
                run.problem = f"{type(err).__name__}: {err}"
            finally:
                self.done += 1

    async def _drive(self, api: httpx.AsyncClient, stripe: httpx.AsyncClient, run: Run) -> None:
        plan = run.plan
        self.submitted += 1
        key = f"chaos-{uuid.uuid4()}"
        created = await self.call(
            api, "POST", "/bookings", json=self.body(plan), headers={"Idempotency-Key": key}
        )
        if created.status_code not in (200, 202):
            run.problem = f"create answered {created.status_code}: {created.text[:200]}"
            return
        run.booking = created.json()
        self.tokens.append(run.token)
        tasks = []
        if plan.cancel_after is not None:
            tasks.append(self.cancel(api, run, plan.cancel_after))
        if plan.card == CARD_3DS:
            tasks.append(self.authenticate(api, stripe, run))
        if plan.stale_webhooks:
            tasks.append(self.stale_while_moving_on(api, run))
        await asyncio.gather(*tasks)

        def settled(view: Json) -> bool:
            return view["status"] in SETTLED and not (
                view["status"] == "CONFIRMED" and run.accepted_cancel
            )

        run.final = await self.poll(api, run, settled, SETTLE_SECONDS)
        error = (run.final or {}).get("error") or {}
        if run.authenticated and error.get("type") == "PAYMENT_ACTION_FAILED":
            run.misled = "the customer passed 3-D Secure, the booking failed PAYMENT_ACTION_FAILED"
        if plan.stale_webhooks and run.final is not None and settled(run.final):
            await self.stale_after_settling(api, run)

    async def cancel(self, api: httpx.AsyncClient, run: Run, delay: float) -> None:
        await asyncio.sleep(delay)
        path, headers = (
            f"/bookings/{run.booking_id}/cancel",
            {"Authorization": f"Bearer {run.token}"},
        )
        response = await self.call(api, "POST", path, headers=headers)
        message = _message(response)
        run.cancels.append(("cancel", response.status_code, message))
        if response.status_code != 409 or "confirmation in progress" not in message:
            return
        view = await self.poll(
            api, run, lambda v: v["status"] not in IN_CONFIRMATION, SETTLE_SECONDS
        )
        if view is not None and view["status"] == "CONFIRMED":
            again = await self.call(api, "POST", path, headers=headers)
            run.cancels.append(("cancel again", again.status_code, _message(again)))

    async def authenticate(
        self, api: httpx.AsyncClient, stripe: httpx.AsyncClient, run: Run
    ) -> None:
        view = await self.poll(
            api,
            run,
            lambda v: v["status"] == "AWAITING_PAYMENT_ACTION" or v["status"] in SETTLED,
            SETTLE_SECONDS,
        )
        if view is None or view["status"] != "AWAITING_PAYMENT_ACTION":
            return
        await asyncio.sleep(self.rng.uniform(0.0, 1.0))
        payment = view["payment"]
        intent_id = payment["payment_intent_id"]
        out_of_order = run.plan.out_of_order_webhooks
        if out_of_order:
            # Out of order: a failure hint (an event the API must not take at its word) arrives
            # while the customer is still at the challenge; the PaymentIntent says requires_action.
            await self.deliver(
                api,
                run,
                payment_intent_event(intent_id, run.booking_id, "payment_intent.payment_failed"),
                "failure hint before the challenge was passed",
            )
        response = await self.call(
            stripe,
            "POST",
            f"/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": payment["client_secret"], "success": "true"},
        )
        if response.status_code >= 400:  # cancelled meanwhile: the intent is gone
            return
        run.authenticated = True
        event = payment_intent_event(
            intent_id, run.booking_id, "payment_intent.amount_capturable_updated"
        )
        await self.deliver(api, run, event, "3-D Secure passed, in order")
        if run.plan.duplicate_webhook:
            await self.deliver(api, run, event, "the same event again (duplicate)")
        if out_of_order:
            older = payment_intent_event(
                intent_id,
                run.booking_id,
                "payment_intent.requires_action",
                created=event["created"] - 60,
            )
            await self.deliver(api, run, older, "an older event after the newer one")

    async def stale_while_moving_on(self, api: httpx.AsyncClient, run: Run) -> None:
        """A late event for a booking that has moved past its payment step (mid-saga)."""

        def moved_on(view: Json) -> bool:
            paid = _intent_id(view) is not None and view["status"] != "AWAITING_PAYMENT_ACTION"
            return paid or view["status"] in SETTLED

        view = await self.poll(api, run, moved_on, SETTLE_SECONDS)
        await asyncio.sleep(self.rng.uniform(0.0, 1.0))
        intent_id = None if view is None else _intent_id(view)
        if view is None or intent_id is None or not moved_on(view):
            return
        stale = payment_intent_event(
            intent_id,
            run.booking_id,
            self.rng.choice(STALE_TYPES),
            created=int(time.time()) - self.rng.randint(60, 86_400),
        )
        await self.deliver(api, run, stale, "stale, mid-saga")

    async def stale_after_settling(self, api: httpx.AsyncClient, run: Run) -> None:
        """Stale events and an old event id again for a settled booking: nothing may move."""
        assert run.final is not None
        before = run.final
        intent_id = _intent_id(before)
        if intent_id is not None:
            for event_type in self.rng.sample(STALE_TYPES, 2):
                stale = payment_intent_event(
                    intent_id,
                    run.booking_id,
                    event_type,
                    created=int(time.time()) - self.rng.randint(60, 86_400),
                )
                await self.deliver(api, run, stale, "stale, after settling")
        if run.events:
            await self.deliver(
                api, run, self.rng.choice(run.events), "an old event id again, after settling"
            )
        if intent_id is None and not run.events:
            return
        await asyncio.sleep(1.0)
        after = await self.view(api, run)
        # NEEDS_ATTENTION waits for staff; the terminal statuses must not move at all.
        terminal = before["status"] in ("CONFIRMED", "FAILED", "CANCELLED")
        if terminal and after is not None and after["status"] != before["status"]:
            run.misled = (
                f"stale webhooks moved the settled booking from {before['status']} to "
                f"{after['status']}"
            )

    async def deliver(self, api: httpx.AsyncClient, run: Run, event: Json, kind: str) -> None:
        """One signed delivery, as Stripe makes it (retried while the API is not ready)."""
        body, headers = signed(event)
        response = await self.call(api, "POST", "/webhooks/stripe", content=body, headers=headers)
        self.webhooks[kind] += 1
        run.events.append(event)
        if response.status_code == 200:
            self.webhook_answers[str(response.json().get("outcome"))] += 1
        else:
            self.webhook_answers[str(response.status_code)] += 1
            run.problem = f"a signed webhook answered {response.status_code}: {response.text[:200]}"

    # the chaos
    async def chaos(self, sim: httpx.AsyncClient) -> None:
        """K worker kills, a Temporal and an API crash, an engine restart, over the submissions."""
        n, kills = self.args.bookings, self.args.kills
        events: list[tuple[float, str]] = [((i + 1) / (kills + 2), "worker") for i in range(kills)]
        if self.args.temporal_restart:
            events.append((TEMPORAL_AT, "temporal"))
        if self.args.engine_restart:
            events.append((ENGINE_AT, "engine"))
        if self.args.api_restart:
            events.append((API_AT, "api"))
        events.sort()
        last_kill = last_event = -KILL_SPACING
        for share, what in events:
            deadline = time.monotonic() + 4 * SETTLE_SECONDS
            while time.monotonic() < deadline:
                if self.submitted >= share * n or self.done >= n:
                    break
                await asyncio.sleep(0.2)
            # The launcher gives up on a service that crashes 3 times within 30 s: worker kills
            # are spaced for it (a new launcher after the engine restart starts counting afresh).
            earliest = last_event + EVENT_SPACING
            if what == "worker":
                earliest = max(earliest, last_kill + KILL_SPACING)
            if earliest > time.monotonic():
                await asyncio.sleep(earliest - time.monotonic())
            if what == "engine":
                await self.restart_engine(sim)
            else:
                await asyncio.to_thread(self.crash, what)
            last_event = time.monotonic()
            if what == "worker":
                last_kill = last_event

    def crash(self, name: str) -> None:
        """SIGKILL one service's process group and wait until the launcher has it ready again."""
        before = self.engine.children()[name]
        offset = len(self.engine.log())
        at = f"{self.submitted}/{self.args.bookings} submitted"
        started = time.monotonic()
        os.killpg(before, signal.SIGKILL)
        if name == "worker":
            self.kills += 1
            log(f"SIGKILL worker pid {before} (kill {self.kills} of {self.args.kills})")
        else:
            log(f"SIGKILL {name} pid {before} ({at})")
        deadline = started + 90
        while f"{name:<10} ready again" not in self.engine.log()[offset:]:
            if time.monotonic() > deadline or self.engine.process is None:
                raise RuntimeError(
                    f"the launcher did not restart the {name}:\n{self.engine.tail()}"
                )
            if self.engine.process.poll() is not None:
                raise RuntimeError(
                    f"the launcher stopped after the {name} died:\n{self.engine.tail()}"
                )
            time.sleep(0.2)
        took = time.monotonic() - started
        pid = self.engine.children()[name]
        log(f"{name} restarted by the launcher (pid {pid}), ready again after {took:.1f} s")
        if name != "worker":
            kept = " on its kept temporal.db" if name == "temporal" else ""
            self.crashes[name].append(
                f"SIGKILL at {at}; restarted by the launcher{kept}, ready again in {took:.1f} s"
            )

    async def restart_engine(self, sim: httpx.AsyncClient) -> None:
        log(
            "restarting the engine: the Temporal dev server (kept database file), the API, "
            "the simulator and the Stripe emulator"
        )
        started = time.monotonic()
        code = await asyncio.to_thread(self.engine.stop)
        took = await asyncio.to_thread(self.engine.start)
        response = await self.call(sim, "GET", "/_sim/faults")
        if response.status_code == 200 and not response.json():
            await self.inject_faults(sim)  # the simulator's state file did not keep them
        self.restarts.append(
            f"engine restart (launcher exit {code}, ready again in {took:.1f} s, "
            f"down {time.monotonic() - started:.1f} s)"
        )
        log(f"engine back after {time.monotonic() - started:.1f} s")

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(5)
            log(
                f"{self.submitted}/{self.args.bookings} submitted, {self.done} settled, "
                f"{self.kills} kills, {len(self.crashes['temporal'])} Temporal and "
                f"{len(self.crashes['api'])} API crashes, {len(self.restarts)} engine restarts"
            )

    # the drain
    async def drain(
        self, api: httpx.AsyncClient, sim: httpx.AsyncClient, staff: httpx.AsyncClient
    ) -> float:
        started = time.monotonic()
        await self.call(sim, "DELETE", "/_sim/faults")
        booked = [run for run in self.runs if run.booking is not None]
        retried: Counter[str] = Counter()
        deadline = started + self.args.drain_timeout
        while time.monotonic() < deadline:
            pending = 0
            for run in booked:
                view = await self.view(api, run)
                if view is None:
                    pending += 1
                    continue
                run.final = view
                status = view["status"]
                if status == "NEEDS_ATTENTION":
                    pending += 1
                    path = f"/admin/bookings/{run.booking_id}"
                    if retried[run.booking_id] < 2:
                        retried[run.booking_id] += 1
                        response = await self.call(
                            staff, "POST", f"{path}/retry", json={"note": "chaos drain"}
                        )
                        self.staff[f"retry {response.status_code}"] += 1
                    else:
                        response = await self.call(
                            staff,
                            "POST",
                            f"{path}/resolve",
                            json={"note": "chaos drain: handled by hand"},
                        )
                        self.staff[f"resolve {response.status_code}"] += 1
                        retried[run.booking_id] = 0
                elif status not in SETTLED or (status == "CONFIRMED" and run.accepted_cancel):
                    pending += 1
            if not pending:
                break
            await asyncio.sleep(2)
        # Optional items are undone in the background: give the last releases a moment.
        for _ in range(30):
            ledger = (await self.call(sim, "GET", "/_sim/ledger")).json()
            settled_ids = {
                run.booking_id
                for run in booked
                if run.final and run.final["status"] in ("FAILED", "CANCELLED")
            }
            if not any(
                str(h.get("client_ref", "")).split(":")[0] in settled_ids
                and h["status"] == "active"
                for h in ledger["holds"]
            ):
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - started

    def check(self) -> Json:
        result = subprocess.run(
            [sys.executable, "-c", "from passage.cli import main; main()", "check", "--json"],
            cwd=REPO_ROOT,
            env=self.engine.client_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        try:
            answer: Json = json.loads(result.stdout)
        except ValueError:
            raise RuntimeError(
                f"passage check failed ({result.returncode}): {result.stderr[-2000:]}"
            ) from None
        return answer


def _intent_id(view: Json) -> str | None:
    intent_id = (view.get("payment") or {}).get("payment_intent_id")
    return str(intent_id) if intent_id else None


def _message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str((response.json().get("error") or {}).get("message") or "")
    return ""


# --- the report ----------------------------------------------------------------------------------


def report(campaign: Campaign, answer: Json, drain: float, elapsed: float) -> list[tuple[str, str]]:
    runs = campaign.runs
    states = Counter(run.final["status"] if run.final else "unread" for run in runs)
    sent = sum(1 for run in runs if run.cancels)
    accepted = [run for run in runs if run.accepted_cancel]
    honoured = sum(1 for run in accepted if run.final and run.final["status"] == "CANCELLED")
    refused = Counter(
        message.split(":")[0] for run in runs for _, status, message in run.cancels if status == 409
    )
    cards = Counter(CARD_NAMES[run.plan.card] for run in runs)
    sizes = Counter(len(run.plan.offers) for run in runs)
    fault_kinds = (
        "none"
        if campaign.args.no_faults
        else ", ".join(
            f"{mode} {rate:.1%}" + (f" ({ms} ms)" if ms else "") for mode, rate, ms in FAULTS
        )
        + f" on each of {', '.join(OPERATIONS)}"
    )
    rows = [
        (
            "bookings",
            f"{len(runs)} (concurrency {campaign.args.concurrency}, seed {campaign.args.seed})",
        ),
        ("itineraries", ", ".join(f"{k} item(s): {v}" for k, v in sorted(sizes.items()))),
        ("cards", ", ".join(f"{k} {v}" for k, v in sorted(cards.items()))),
        ("final state", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))),
        ("faults (rate per call)", fault_kinds),
        ("saga step outcomes", _outcomes(runs)),
        (
            "worker SIGKILLs",
            f"{campaign.kills} (restarted by the launcher: {_restart_notices(campaign.engine)})",
        ),
        ("Temporal dev server SIGKILLs", "; ".join(campaign.crashes["temporal"]) or "none"),
        ("API SIGKILLs", "; ".join(campaign.crashes["api"]) or "none"),
        ("engine restarts", "; ".join(campaign.restarts) or "none"),
        ("cancels sent / accepted / honoured", f"{sent} / {len(accepted)} / {honoured}"),
        ("cancels refused (409)", ", ".join(f"{k} {v}" for k, v in refused.items()) or "none"),
        (
            "staff actions in the drain",
            ", ".join(f"{k}: {v}" for k, v in sorted(campaign.staff.items())) or "none",
        ),
        ("HTTP answers", ", ".join(f"{k}: {v}" for k, v in sorted(campaign.http_statuses.items()))),
        ("API 5xx", str(len(campaign.server_errors))),
        (
            "webhooks we delivered",
            ", ".join(f"{k} {v}" for k, v in sorted(campaign.webhooks.items())) or "none",
        ),
        (
            "webhook answers",
            ", ".join(f"{k} {v}" for k, v in sorted(campaign.webhook_answers.items())) or "none",
        ),
        ("bookings a webhook misled", str(sum(1 for run in runs if run.misled))),
        ("bookings not driven", str(sum(1 for run in runs if run.problem))),
        ("checked by passage check", str(answer.get("checked"))),
        ("violations", str(len(answer.get("violations", [])))),
        ("drain time", f"{drain:.1f} s"),
        ("total time", f"{elapsed:.1f} s"),
    ]
    return rows


def _restart_notices(engine: Engine) -> int:
    return engine.log().count("worker (pid") - engine.log().count("not restarted")


def _outcomes(runs: list[Run]) -> str:
    """How the sagas' steps ended, from the final timelines (retries show the faults they met)."""
    counts = Counter(
        entry["outcome"]
        for run in runs
        for entry in (run.final or {}).get("timeline", [])
        if entry["outcome"] != "status"
    )
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def scan_logs(campaign: Campaign) -> tuple[list[logs.Leak], str]:
    """Every log line of every process of the run, searched for what the run must not log.

    The launcher's output (`launcher.log`) and each child's log (`state/logs/*.log`: Temporal,
    simulator, Stripe emulator, worker, API), read after the engine stopped. The one line allowed
    to hold a secret is the launcher's announcement of the staff key it generated, which the
    contract asks `make up` to print.
    """
    engine = campaign.engine
    scan = logs.LogScan()
    scan.forbid("a traveller's last name, e-mail or document number", campaign.marker)
    for name in FIRST_NAMES:
        scan.forbid("a traveller's first name", name)
    for birth_date in BIRTH_DATES:
        scan.forbid("a birth date", birth_date)
    for card, name in CARD_NAMES.items():
        scan.forbid(f"the {name} card number", card)
    secrets = {
        "the staff key": engine.kept("staff_key"),
        "the API secret": engine.kept("api_secret"),
        "the codec key": engine.kept("codec_key"),
        "the webhook secret": WEBHOOK_SECRET,
        "the customer-ref key": DEV_SECRETS["customer_ref_key"],
        "the Stripe API key": STRIPE_KEY,
    }
    for what, value in secrets.items():
        scan.forbid(what, value)
    scan.forbid_shape("an access token", logs.ACCESS_TOKEN_SHAPE, only=campaign.tokens)
    scan.forbid_shape("a client secret", logs.CLIENT_SECRET)
    paths = [engine.output, *sorted((engine.state_dir / "logs").glob("*.log"))]
    leaks: list[logs.Leak] = []
    lines = 0
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as text:
            lines += sum(1 for _ in text)
        announcement = (
            (lambda line: line.startswith(STAFF_KEY_ANNOUNCEMENT))
            if path == engine.output
            else None
        )
        leaks += scan.scan_file(path, allowed=announcement)
    names = ", ".join(path.name for path in paths)
    return leaks, f"{lines} lines in {len(paths)} logs ({names})"


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print("\n" + "=" * 78)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("=" * 78, flush=True)


# --- main ----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", "-n", type=int, default=int(env("CHAOS_BOOKINGS", "300")))
    parser.add_argument(
        "--concurrency", "-c", type=int, default=int(env("CHAOS_CONCURRENCY", "20"))
    )
    parser.add_argument("--kills", "-k", type=int, default=int(env("CHAOS_KILLS", "5")))
    parser.add_argument("--seed", type=int, default=int(env("CHAOS_SEED", "20261201")))
    parser.add_argument(
        "--cancel-share", type=float, default=float(env("CHAOS_CANCEL_SHARE", "0.33"))
    )
    parser.add_argument(
        "--declined-share", type=float, default=float(env("CHAOS_DECLINED_SHARE", "0.07"))
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=float(env("CHAOS_DRAIN_TIMEOUT", "240"))
    )
    parser.add_argument(
        "--stale-webhook-share",
        type=float,
        default=float(env("CHAOS_STALE_WEBHOOK_SHARE", "0.3")),
        help="share of bookings sent stale events mid-saga and after settling",
    )
    for name, what in (
        ("temporal-restart", "the SIGKILL of the Temporal dev server (restarted by the launcher)"),
        ("api-restart", "the SIGKILL of the API (restarted by the launcher)"),
        ("engine-restart", "the restart of the whole engine (a new launcher)"),
        ("log-scan", "the scan of every log line of the run for personal data and secrets"),
    ):
        parser.add_argument(
            f"--no-{name}",
            dest=name.replace("-", "_"),
            action="store_false",
            default=env(f"CHAOS_{name.replace('-', '_').upper()}", "1") != "0",
            help=f"skip {what}",
        )
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--summary", type=Path, help="also write the table and violations as JSON")
    parser.add_argument("--keep", action="store_true", default=bool(env("CHAOS_KEEP")))
    return parser.parse_args(argv)


async def campaign_main(campaign: Campaign) -> tuple[Json, float]:
    engine = campaign.engine
    timeout = httpx.Timeout(30.0)
    staff_headers = {"Authorization": f"Bearer {engine.kept('staff_key')}"}
    async with (
        httpx.AsyncClient(base_url=engine.api, timeout=timeout) as api,
        httpx.AsyncClient(base_url=engine.api, timeout=timeout, headers=staff_headers) as staff,
        httpx.AsyncClient(base_url=engine.simulator, timeout=timeout) as sim,
        httpx.AsyncClient(base_url=engine.stripe, timeout=timeout, auth=(STRIPE_KEY, "")) as stripe,
    ):
        await campaign.prepare(sim, stripe)
        campaign.runs = [Run(plan) for plan in campaign.plans()]
        gate = asyncio.Semaphore(campaign.args.concurrency)
        progress = asyncio.create_task(campaign.progress())
        chaos = asyncio.create_task(campaign.chaos(sim))
        try:
            await asyncio.gather(*(campaign.drive(gate, api, stripe, run) for run in campaign.runs))
            await chaos  # the last kills, if the bookings were quicker
        finally:
            progress.cancel()
            chaos.cancel()
        log("every booking submitted and settled or timed out; draining")
        drain = await campaign.drain(api, sim, staff)
        log(f"drained in {drain:.1f} s; running the invariant checker")
    return await asyncio.to_thread(campaign.check), drain


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    root = Path(tempfile.mkdtemp(prefix="passage-chaos-"))
    engine = Engine(root)
    started = time.monotonic()
    switches = {
        "Temporal SIGKILL": args.temporal_restart,
        "API SIGKILL": args.api_restart,
        "engine restart": args.engine_restart,
        "log scan": args.log_scan,
    }
    log(
        f"{args.bookings} bookings at concurrency {args.concurrency}, {args.kills} worker kills, "
        + ", ".join(f"{what} {'on' if on else 'off'}" for what, on in switches.items())
        + f"; state in {root}"
    )
    campaign = Campaign(engine, args)
    try:
        took = engine.start()
        log(f"engine ready in {took:.1f} s at {engine.api}")
        answer, drain = asyncio.run(campaign_main(campaign))
    except Exception as err:
        log(f"chaos run failed: {type(err).__name__}: {err}\n{engine.tail()}")
        engine.kill_everything()
        return 2
    finally:
        if engine.process is not None and engine.process.poll() is None:
            engine.stop()
    leaks: list[logs.Leak] = []
    rows = report(campaign, answer, drain, time.monotonic() - started)
    if args.log_scan:
        leaks, scanned = scan_logs(campaign)
        rows.insert(-2, ("log scan", f"{scanned}: {len(leaks)} hit(s)"))
    print_table(rows)
    violations = answer.get("violations", [])
    plans = {run.booking_id: run for run in campaign.runs}
    for violation in violations:
        run = plans.get(violation["booking_id"] or "")
        seen = ""
        if run is not None:
            card = CARD_NAMES[run.plan.card]
            seen = f" [card {card}, items {run.plan.offers}, cancels {run.cancels}]"
        print(
            f"VIOLATION {violation['booking_id'] or '-'} {violation['rule']}: "
            f"{violation['detail']}{seen}"
        )
    for run in campaign.runs:
        if run.problem:
            print(f"NOT DRIVEN {run.booking_id}: {run.problem}")
        if run.misled:
            print(f"MISLED BY A WEBHOOK {run.booking_id}: {run.misled}")
    for leak in leaks[:50]:
        print(f"LEAK {leak}")
    for line in campaign.server_errors[:20]:
        print(f"5xx {line}")
    if args.summary is not None:
        summary = {
            "table": dict(rows),
            "violations": violations,
            "kills": campaign.kills,
            "engine_restarts": len(campaign.restarts),
            "temporal_restarts": len(campaign.crashes["temporal"]),
            "api_restarts": len(campaign.crashes["api"]),
            "webhooks": dict(campaign.webhooks),
            "misled": [run.misled for run in campaign.runs if run.misled],
            "log_scan": None if not args.log_scan else [str(leak) for leak in leaks],
            "cancels_sent": sum(1 for run in campaign.runs if run.cancels),
            "cancels_accepted": sum(1 for run in campaign.runs if run.accepted_cancel),
            "not_driven": [run.problem for run in campaign.runs if run.problem],
        }
        args.summary.write_text(json.dumps(summary, indent=2))
    if args.keep:
        print(f"state kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    failed = violations or leaks or any(run.problem or run.misled for run in campaign.runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
