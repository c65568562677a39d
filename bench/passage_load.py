"""Passage under load as its customers and Stripe see it: bookings over the HTTP API.

A customer posts a booking, reads it once (`GET /bookings/{id}`, the page loading), then follows
it as the reference checkout page does, on its event stream (`GET /bookings/{id}/events`) until it
settles, and reads it once more; with `follow="poll"` it polls `GET /bookings/{id}` every
`poll_interval` seconds instead, as a frontend without the stream would. How long the booking
took is read from the booking itself, not from the follower: from `created_at` (stamped by the
API when it accepted the `POST`) to the `at` of the timeline entry that made it CONFIRMED, both
Passage's clock. The client times its own calls too (`POST /bookings`, every `GET`, every webhook
delivery, every cancel).

Itineraries larger than the API accepts (`api.schemas.fields.MAX_ITEMS`) are started the way the API
starts them, on Temporal directly (`DirectBookings`), and read with the workflow's `view` query.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from temporalio.client import Client

from bench.engine import booking_body, payment_intent_event, signed
from workflows.booking import BookingWorkflow
from workflows.contracts import BookingView
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    Money,
    Traveller,
    workflow_id_for,
)

Json = dict[str, Any]
#: (offer_id, price as the API takes it, optional)
Item = tuple[str, Json, bool]

SETTLED = frozenset({"CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"})
#: How a customer learns that its booking moved on.
Follow = Literal["stream", "poll"]
#: How long one booking may take to settle before the run calls it a problem.
SETTLE_SECONDS = 300.0


def confirmed_after(created_at: str, timeline: Sequence[tuple[str, str, str]]) -> float | None:
    """Seconds from `created_at` to the timeline's CONFIRMED status entry (None: never)."""
    for at, outcome, detail in timeline:
        if outcome == "status" and detail == "CONFIRMED":
            start = datetime.fromisoformat(created_at or timeline[0][0])
            return (datetime.fromisoformat(at) - start).total_seconds()
    return None


@dataclass
class BookingRun:
    """One booking as its customer lived it."""

    tag: str
    booking_id: str | None = None
    token: str | None = None
    status: str | None = None
    post_seconds: float | None = None
    get_seconds: list[float] = field(default_factory=list)
    latency_seconds: float | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    payment_intent_id: str | None = None
    problem: str | None = None

    @property
    def workflow_id(self) -> str:
        assert self.booking_id is not None
        return workflow_id_for(self.booking_id)

    def settle(self, view: Json | BookingView) -> None:
        """Take the booking's own figures from its (last) view."""
        if isinstance(view, BookingView):
            status, created = view.status.value, view.created_at
            timeline = [(e.at, e.outcome, e.detail) for e in view.timeline]
            intent = view.payment.payment_intent_id
        else:
            status, created = view["status"], view.get("created_at", "")
            timeline = [(e["at"], e["outcome"], e.get("detail", "")) for e in view["timeline"]]
            intent = view["payment"].get("payment_intent_id")
        self.status = status
        self.payment_intent_id = intent
        self.latency_seconds = confirmed_after(created, timeline)
        if self.latency_seconds is not None:
            self.created_at = datetime.fromisoformat(created or timeline[0][0])
            self.confirmed_at = self.created_at + timedelta(seconds=self.latency_seconds)


async def server_sent_events(response: httpx.Response) -> Any:
    """(event, JSON data, id) of each message of a `text/event-stream` body; comments skipped."""
    event, data, event_id = "message", [], ""
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), event_id
            event, data, event_id = "message", [], ""
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                event_id = value


class PassageCustomers:
    """The checkout frontend and Stripe's webhook deliveries, over one HTTP client."""

    def __init__(
        self, api: httpx.AsyncClient, poll_interval: float, follow: Follow = "stream"
    ) -> None:
        self.api = api
        self.poll_interval = poll_interval
        self.follow = follow

    async def create(self, tag: str, items: Sequence[Item], payment_method: str) -> BookingRun:
        run = BookingRun(tag)
        started = time.perf_counter()
        response = await self.api.post(
            "/bookings",
            json=booking_body(tag, items, payment_method),
            headers={"Idempotency-Key": f"bench-{tag}-{uuid.uuid4().hex}"},
        )
        run.post_seconds = time.perf_counter() - started
        if response.status_code not in (200, 202):
            run.problem = f"POST /bookings answered {response.status_code}: {response.text[:200]}"
            return run
        created = response.json()
        run.booking_id, run.token = created["booking_id"], created["access_token"]
        return run

    async def view(self, run: BookingRun) -> Json | None:
        started = time.perf_counter()
        response = await self.api.get(
            f"/bookings/{run.booking_id}", headers={"Authorization": f"Bearer {run.token}"}
        )
        run.get_seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            run.problem = f"GET /bookings answered {response.status_code}: {response.text[:200]}"
            return None
        view: Json = response.json()
        return view

    async def wait(
        self,
        run: BookingRun,
        done: Callable[[Json], bool] = lambda view: view["status"] in SETTLED,
        interval: float | None = None,
    ) -> None:
        """Follow the booking until `done(view)`, then take its figures from that view."""
        if run.booking_id is None:
            return
        if self.follow == "stream":
            await self.stream(run, done)
            return
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            view = await self.view(run)
            if view is not None and done(view):
                run.settle(view)
                return
            await asyncio.sleep(interval if interval is not None else self.poll_interval)
        run.problem = f"not settled after {SETTLE_SECONDS:.0f} s"

    async def stream(self, run: BookingRun, done: Callable[[Json], bool]) -> None:
        """Read the booking once, follow its event stream until `done`, then read it once more.

        The stream ends after a terminal status; a booking `done` waits past that (or a dropped
        connection) is followed again from the last timeline entry received (`Last-Event-ID`).
        """
        first = await self.view(run)
        if first is not None and done(first):
            run.settle(first)
            return
        headers = {"Authorization": f"Bearer {run.token}", "Accept": "text/event-stream"}
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            try:
                async with self.api.stream(
                    "GET", f"/bookings/{run.booking_id}/events", headers=headers
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        run.problem = f"GET /events answered {response.status_code}"
                        return
                    async for event, data, event_id in server_sent_events(response):
                        if event_id:
                            headers["Last-Event-ID"] = event_id
                        if event == "booking" and done(data):
                            await self.view(run)
                            run.settle(data)
                            return
            except httpx.TransportError:
                await asyncio.sleep(self.poll_interval)
        run.problem = f"not settled after {SETTLE_SECONDS:.0f} s"

    async def book(self, tag: str, items: Sequence[Item], payment_method: str) -> BookingRun:
        run = await self.create(tag, items, payment_method)
        await self.wait(run)
        return run

    async def cancel(self, run: BookingRun) -> tuple[int, float, str]:
        """The customer's cancel: (HTTP status, seconds, booking status it answered)."""
        started = time.perf_counter()
        response = await self.api.post(
            f"/bookings/{run.booking_id}/cancel",
            headers={"Authorization": f"Bearer {run.token}"},
            timeout=SETTLE_SECONDS,
        )
        seconds = time.perf_counter() - started
        status = ""
        if response.status_code in (200, 202):
            status = str(response.json()["status"])
        return response.status_code, seconds, status

    async def webhook(
        self, booking_id: str, intent_id: str, event_id: str | None = None
    ) -> tuple[str, int, float, str]:
        """Deliver a signed `payment_intent.succeeded`: (event id, status, seconds, outcome)."""
        event = payment_intent_event(intent_id, booking_id, "payment_intent.succeeded", event_id)
        body, headers = signed(event)
        started = time.perf_counter()
        response = await self.api.post("/webhooks/stripe", content=body, headers=headers)
        seconds = time.perf_counter() - started
        outcome = response.json().get("outcome", "") if response.status_code == 200 else ""
        return str(event["id"]), response.status_code, seconds, str(outcome)


class DirectBookings:
    """Bookings started on Temporal as the API starts them, for itineraries it would refuse."""

    def __init__(self, client: Client, task_queue: str, poll_interval: float) -> None:
        self.client = client
        self.task_queue = task_queue
        self.poll_interval = poll_interval

    async def book(self, tag: str, items: Sequence[Item], payment_method: str) -> BookingRun:
        run = BookingRun(tag, booking_id=f"bk_bench_{uuid.uuid4().hex[:20]}")
        assert run.booking_id is not None
        request = BookingRequest(
            booking_id=run.booking_id,
            customer_ref=f"cref_{tag}",
            customer_email=f"{tag}@example.com",
            customer_name="Load Customer",
            currency=items[0][1]["currency"],
            items=tuple(
                BookingItemRequest(
                    f"it_{position}",
                    offer_id,
                    1,
                    Money(price["amount"], price["currency"]),
                    optional,
                )
                for position, (offer_id, price, optional) in enumerate(items, start=1)
            ),
            payment_method=payment_method,
            travellers=(Traveller("Load", f"Traveller {tag}", "1990-12-10", "X1234567"),),
            created_at=datetime.now(UTC).isoformat(),
        )
        started = time.perf_counter()
        handle = await self.client.start_workflow(
            BookingWorkflow.run, request, id=run.workflow_id, task_queue=self.task_queue
        )
        run.post_seconds = time.perf_counter() - started
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            started = time.perf_counter()
            view = await handle.query(BookingWorkflow.view)
            run.get_seconds.append(time.perf_counter() - started)
            if view.status.value in SETTLED or view.status == BookingStatus.NEEDS_ATTENTION:
                run.settle(view)
                return run
            await asyncio.sleep(self.poll_interval)
        run.problem = f"not settled after {SETTLE_SECONDS:.0f} s"
        return run
