"""Bookings for end-to-end tests: requests built from the simulator's live offers, starting a
booking workflow, waiting for it, and the invariants read back from the simulator and the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage.codec import LedgerCipher
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from workflows.booking import BookingWorkflow
from workflows.contracts import BookingView
from workflows.model import BookingItemRequest, BookingRequest, BookingStatus, Money, Traveller

#: A flight whose cancellation keeps a 10 % fee, and a hotel that cancels for free.
FLIGHT = "fl-aurora-cdg-jfk"
HOTEL = "ht-harbour-nyc-3n"


async def offer(simulator: SimulatorControl, offer_id: str) -> dict[str, Any]:
    response = await simulator.http.get(f"/offers/{offer_id}")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def booking_request(
    simulator: SimulatorControl, payment_method: str, *offer_ids: str
) -> BookingRequest:
    """A booking of `offer_ids` (the flight and the hotel by default) at their current prices."""
    items = []
    for index, offer_id in enumerate(offer_ids or (FLIGHT, HOTEL), start=1):
        price = (await offer(simulator, offer_id))["price"]
        items.append(
            BookingItemRequest(
                f"it_{index}", offer_id, 1, Money(price["amount"], price["currency"])
            )
        )
    return BookingRequest(
        booking_id=f"bk_{uuid.uuid4().hex[:16]}",
        customer_ref="cref_e2e",
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        currency="EUR",
        items=tuple(items),
        payment_method=payment_method,
        travellers=(Traveller("Ada", "Lovelace", "1990-12-10", "X1234567"),),
    )


async def start(
    client: Client, engine: Engine, request: BookingRequest, *, task_queue: str | None = None
) -> WorkflowHandle[Any, BookingView]:
    """Start the booking's workflow on the engine's task queue (or on `task_queue`)."""
    return await client.start_workflow(
        BookingWorkflow.run,
        request,
        id=f"booking-{request.booking_id}",
        task_queue=task_queue or engine.settings.task_queue,
        execution_timeout=timedelta(minutes=10),
    )


async def wait_terminal(handle: WorkflowHandle[Any, BookingView]) -> BookingView:
    for _ in range(600):
        view = await handle.query(BookingWorkflow.view)
        if view.status.is_terminal or view.status == BookingStatus.NEEDS_ATTENTION:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"booking stuck in {view.status}")


def live_rows(ledger: dict[str, Any], booking_id: str) -> tuple[list[Any], list[Any]]:
    """The simulator's active holds and confirmed bookings made for `booking_id`."""
    holds = [
        h
        for h in ledger["holds"]
        if h["client_ref"].startswith(booking_id) and h["status"] == "active"
    ]
    bookings = [
        b
        for b in ledger["bookings"]
        if b["hold_client_ref"].startswith(booking_id) and b["status"] == "confirmed"
    ]
    return holds, bookings


async def assert_ledger_matches(engine: Engine, view: BookingView) -> None:
    """The ledger's record of a booking is the workflow's view: statuses, amounts, events."""
    sql_engine = make_engine(engine.settings.database_url)
    try:
        store = SqlBookingStore(sql_engine, LedgerCipher(engine.settings.ledger_key))
        recorded = await store.get_view(view.booking_id)
        for _ in range(50):  # the last snapshot is written by an activity just before the end
            if recorded is not None and recorded.version >= view.version:
                break
            await asyncio.sleep(0.1)
            recorded = await store.get_view(view.booking_id)
        assert recorded is not None
        assert dataclasses.replace(recorded, updated_at="") == dataclasses.replace(
            view, updated_at=""
        )
        assert await store.events(view.booking_id) == view.timeline
    finally:
        sql_engine.dispose()
