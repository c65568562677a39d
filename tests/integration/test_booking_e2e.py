"""Bookings end to end: real Temporal dev server, simulator, Stripe emulator, PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from activities.adapters.sql_store import SqlBookingStore, make_engine
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_DECLINED, CARD_OK, StripeHarness
from workflows.booking import BookingWorkflow
from workflows.contracts import BookingView
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    ItemStatus,
    Money,
    PaymentStatus,
    Traveller,
)

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
    client: Client, engine: Engine, request: BookingRequest
) -> WorkflowHandle[Any, BookingView]:
    return await client.start_workflow(
        BookingWorkflow.run,
        request,
        id=f"booking-{request.booking_id}",
        task_queue=engine.settings.task_queue,
        execution_timeout=timedelta(minutes=10),
    )


async def wait_terminal(handle: WorkflowHandle[Any, BookingView]) -> BookingView:
    import asyncio

    for _ in range(600):
        view = await handle.query(BookingWorkflow.view)
        if view.status.is_terminal or view.status == BookingStatus.NEEDS_ATTENTION:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"booking stuck in {view.status}")


def live_rows(ledger: dict[str, Any], booking_id: str) -> tuple[list[Any], list[Any]]:
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


@pytest.fixture
async def card(stripe_harness: StripeHarness) -> str:
    return await stripe_harness.pm_for(CARD_OK)


async def test_a_booking_confirms_at_the_suppliers_and_captures_once(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    request = await booking_request(simulator, card)
    handle = await start(engine_worker.client, engine_worker, request)
    view = await wait_terminal(handle)

    assert view.status == BookingStatus.CONFIRMED, view.timeline
    assert [item.status for item in view.items] == [ItemStatus.CONFIRMED] * 2
    total = sum(item.expected_price.amount_minor for item in request.items)
    ledger = await simulator.ledger()
    holds, bookings = live_rows(ledger, request.booking_id)
    assert holds == []
    assert sorted(b["offer_id"] for b in bookings) == sorted([FLIGHT, HOTEL])
    assert {b["ref"] for b in bookings} == {item.supplier_ref for item in view.items}
    intents = await stripe_harness.payment_intents_for(request.booking_id)
    assert len(intents) == 1
    assert intents[0]["status"] == "succeeded"
    assert intents[0]["amount_received"] == total
    assert view.payment.captured == Money(total, "EUR")
    await simulator.assert_inventory_adds_up()

    # The ledger agrees with the workflow: the final snapshot is the view the query returns.
    store = SqlBookingStore(make_engine(engine_worker.settings.database_url))
    await handle.terminate("test done")  # ends the 30-day cancellation window early
    recorded = await store.get_view(request.booking_id)
    assert recorded is not None
    assert recorded.status == BookingStatus.CONFIRMED
    assert recorded.items == view.items
    assert recorded.payment == view.payment


async def test_a_sold_out_item_is_compensated_and_the_authorization_voided(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    request = await booking_request(simulator, card)
    await simulator.add_fault(
        "refuse", supplier="harbour-hotels", operation="confirm", code="SOLD_OUT", times=1
    )
    handle = await start(engine_worker.client, engine_worker, request)
    view = await wait_terminal(handle)

    assert view.status == BookingStatus.FAILED
    assert view.error is not None and view.error.type == "SOLD_OUT"
    holds, bookings = live_rows(await simulator.ledger(), request.booking_id)
    assert holds == [] and bookings == []
    intents = await stripe_harness.payment_intents_for(request.booking_id)
    assert [pi["status"] for pi in intents] == ["canceled"]
    assert view.payment.status == PaymentStatus.VOIDED
    await simulator.assert_inventory_adds_up()


async def test_a_declined_card_fails_with_nothing_held(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    card = await stripe_harness.pm_for(CARD_DECLINED)
    request = await booking_request(simulator, card)
    handle = await start(engine_worker.client, engine_worker, request)
    view = await wait_terminal(handle)

    assert view.status == BookingStatus.FAILED
    assert view.error is not None and view.error.type == "PAYMENT_DECLINED"
    assert [item.status for item in view.items] == [ItemStatus.RELEASED] * 2
    holds, bookings = live_rows(await simulator.ledger(), request.booking_id)
    assert holds == [] and bookings == []
    intents = await stripe_harness.payment_intents_for(request.booking_id)
    assert len(intents) <= 1 and all(pi["status"] != "succeeded" for pi in intents)
