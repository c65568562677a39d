"""Bookings end to end: real Temporal dev server, simulator, Stripe emulator, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from passage.settings import Settings
from tests.support.bookings import (
    FLIGHT,
    HOTEL,
    assert_ledger_matches,
    booking_request,
    live_rows,
    start,
    wait_terminal,
)
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_DECLINED, CARD_OK, StripeHarness
from workflows.booking import BookingWorkflow
from workflows.contracts import CancelBookingRequest
from workflows.model import BookingStatus, ItemStatus, Money, PaymentStatus

NOT_CANCELLABLE_TICKET = "ac-city-louvre"
NON_REFUNDABLE_ROOM = "ht-meridian-osl-1n"


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

    await handle.terminate("test done")  # ends the 30-day cancellation window early
    await assert_ledger_matches(engine_worker, view)


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
    await assert_ledger_matches(engine_worker, await handle.result())


async def test_a_non_cancellable_item_is_confirmed_last_so_a_failure_before_it_undoes_all(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    # The ticket nobody can cancel comes first in the request; the non-refundable room fails.
    request = await booking_request(simulator, card, NOT_CANCELLABLE_TICKET, NON_REFUNDABLE_ROOM)
    await simulator.add_fault(
        "refuse", supplier="meridian-stays", operation="confirm", code="SOLD_OUT", times=1
    )
    handle = await start(engine_worker.client, engine_worker, request)
    view = await wait_terminal(handle)

    # Confirmed first, the ticket would now be booked for good and the saga stuck on its cancel.
    assert view.status == BookingStatus.FAILED, view.timeline
    steps = [(entry.step, entry.outcome) for entry in view.timeline]
    assert ("CONFIRM it_1", "ok") not in steps
    holds, bookings = live_rows(await simulator.ledger(), request.booking_id)
    assert holds == [] and bookings == []
    assert [
        pi["status"] for pi in await stripe_harness.payment_intents_for(request.booking_id)
    ] == ["canceled"]
    await simulator.assert_inventory_adds_up()


async def test_a_booking_cancelled_after_confirmation_refunds_per_terms(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    request = await booking_request(simulator, card)  # the flight keeps a 10 % fee
    handle = await start(engine_worker.client, engine_worker, request)
    assert (await wait_terminal(handle)).status == BookingStatus.CONFIRMED
    cancelled = await handle.execute_update(
        BookingWorkflow.cancel, CancelBookingRequest(actor="customer", note="plans changed")
    )
    final = await handle.result()

    assert cancelled.status == final.status == BookingStatus.CANCELLED
    flight_price = request.items[0].expected_price.amount_minor
    fee = flight_price * 1_000 // 10_000
    assert final.payment.fees_kept == Money(fee, "EUR")
    assert final.payment.refunded == final.payment.captured - Money(fee, "EUR")
    assert final.payment.status == PaymentStatus.PARTIALLY_REFUNDED
    holds, bookings = live_rows(await simulator.ledger(), request.booking_id)
    assert holds == [] and bookings == []
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["amount_received"] == final.payment.captured.amount_minor
    assert intent["latest_charge"]["amount_refunded"] == final.payment.refunded.amount_minor
    await assert_ledger_matches(engine_worker, final)


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


def worker_process(settings: Settings, task_queue: str, log: Any) -> subprocess.Popen[bytes]:
    """`python worker.py` as production runs it: settings only from the environment."""
    env = {
        **os.environ,
        "PASSAGE_ENV": "development",
        "PASSAGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "PASSAGE_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "PASSAGE_TASK_QUEUE": task_queue,
        "PASSAGE_SUPPLIER_URL": settings.supplier_url,
        "PASSAGE_SUPPLIER_TIMEOUT_SECONDS": str(settings.supplier_timeout_seconds),
        "PASSAGE_STRIPE_API_BASE": settings.stripe_api_base,
        "PASSAGE_STRIPE_API_KEY": settings.stripe_api_key,
        "PASSAGE_CODEC_KEY": settings.codec_key,
        "DATABASE_URL": settings.database_url,
    }
    return subprocess.Popen(
        [sys.executable, "worker.py"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


async def test_a_worker_killed_mid_saga_finishes_with_one_payment_and_no_double_booking(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
    tmp_path: Path,
) -> None:
    settings = engine_worker.settings
    task_queue = f"passage-kill-{uuid.uuid4().hex[:8]}"
    request = await booking_request(simulator, card)
    # Every confirm takes 3 s at the supplier: the worker dies while one is in flight.
    await simulator.add_fault("latency", operation="confirm", latency_ms=3000)
    log = (tmp_path / "worker.log").open("wb")
    first = worker_process(settings, task_queue, log)
    try:
        handle = await engine_worker.client.start_workflow(
            BookingWorkflow.run,
            request,
            id=f"booking-{request.booking_id}",
            task_queue=task_queue,
            execution_timeout=timedelta(minutes=10),
        )
        for _ in range(300):
            view = await handle.query(BookingWorkflow.view)
            if view.status == BookingStatus.CONFIRMING:
                break
            await asyncio.sleep(0.1)
        assert view.status == BookingStatus.CONFIRMING, view.status
        await asyncio.sleep(0.5)  # the confirm calls are now at the supplier
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        await simulator.clear_faults()
        second = worker_process(settings, task_queue, log)
        try:
            # The lost attempts time out (30 s start-to-close) and are retried on the new worker.
            for _ in range(900):
                view = await handle.query(BookingWorkflow.view)
                if view.status.is_terminal:
                    break
                await asyncio.sleep(0.1)
        finally:
            await handle.terminate("test done")
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()

    assert view.status == BookingStatus.CONFIRMED, view.timeline
    intents = await stripe_harness.payment_intents_for(request.booking_id)
    assert len(intents) == 1
    assert intents[0]["amount_received"] == view.payment.captured.amount_minor
    ledger = await simulator.ledger()
    mine = [b for b in ledger["bookings"] if b["hold_client_ref"].startswith(request.booking_id)]
    assert sorted(b["offer_id"] for b in mine) == sorted([FLIGHT, HOTEL])
    assert all(b["status"] == "confirmed" for b in mine)
    holds = [h for h in ledger["holds"] if h["client_ref"].startswith(request.booking_id)]
    assert len(holds) == 2
    keys = await stripe_harness.idempotency_keys()
    assert keys[f"{request.booking_id}:authorize"]["requests"] >= 1
    await simulator.assert_inventory_adds_up()
