"""Interruptions end to end (docs/interruptions.md): a cancel or a stop that arrives while a
payment call is in flight, or while no worker polls, on the real Temporal dev server, simulator,
Stripe emulator and PostgreSQL ledger.

A Stripe call is kept in flight by an emulator latency rule; each message is sent once the booking
shows the step *and* the call has reached the emulator, so nothing here waits on a guessed sleep.
Every test ends on the invariants: one PaymentIntent per booking, nothing held or booked at the
supplier that the booking does not keep, the simulator's stock adding up, and the ledger agreeing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.update.v1 import UpdateRef, WaitPolicy
from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from passage.settings import Settings
from tests.support.bookings import (
    FLIGHT,
    assert_ledger_matches,
    booking_request,
    live_rows,
    start,
)
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from worker import booking_worker
from workflows.booking import BookingWorkflow
from workflows.contracts import BookingView, CancelBookingRequest
from workflows.model import BookingRequest, BookingStatus, Money, PaymentStatus

Handle = WorkflowHandle[Any, BookingView]
Book = Callable[..., Awaitable[Handle]]
InFlight = Callable[[tuple[str, str], BookingStatus], Awaitable[tuple[BookingRequest, Handle]]]

#: How long the slowed Stripe call stays in flight.
SLOW_MS = 3_000
#: How long an accepted cancel (or a stop) may take to settle the booking.
SETTLE_SECONDS = 15.0
CREATE_INTENT = ("POST", "/v1/payment_intents")
CAPTURE_INTENT = ("POST", "/v1/payment_intents/{id}/capture")
SETTLED = (BookingStatus.CANCELLED, BookingStatus.FAILED, BookingStatus.NEEDS_ATTENTION)


@pytest.fixture
async def card(stripe_harness: StripeHarness) -> str:
    return await stripe_harness.pm_for(CARD_OK)


@pytest.fixture
async def book(engine_worker: Engine) -> AsyncIterator[Book]:
    """Start bookings; any still running when the test ends is terminated (a failed test's
    booking would otherwise wait out its 30-day cancellation window)."""
    handles: list[Handle] = []

    async def book(request: BookingRequest, *, task_queue: str | None = None) -> Handle:
        handle = await start(engine_worker.client, engine_worker, request, task_queue=task_queue)
        handles.append(handle)
        return handle

    yield book
    for handle in handles:
        with contextlib.suppress(RPCError):  # it has ended by itself
            await handle.terminate("test over")


@pytest.fixture
def in_flight(
    book: Book, simulator: SimulatorControl, stripe_harness: StripeHarness, card: str
) -> InFlight:
    """Start a booking whose Stripe `call` is held in flight, and return once the booking shows
    `status` and the call has reached the emulator (it stays there for SLOW_MS)."""

    async def in_flight(
        call: tuple[str, str], status: BookingStatus
    ) -> tuple[BookingRequest, Handle]:
        request = await booking_request(simulator, card)
        slow = await stripe_harness.slow_down(*call, latency_ms=SLOW_MS)
        handle = await book(request)
        await wait_for_status(handle, status)
        await stripe_harness.wait_until_delayed(slow)
        return request, handle

    return in_flight


def story(view: BookingView | None) -> str:
    """The booking's status and timeline, for a failure message."""
    if view is None:
        return "no view"
    steps = "; ".join(f"{e.step} {e.outcome} {e.detail}".strip() for e in view.timeline)
    return f"{view.status.value} after: {steps}"


async def wait_for_status(
    handle: Handle, *statuses: BookingStatus, within: float = SETTLE_SECONDS
) -> BookingView:
    view: BookingView | None = None
    try:
        async with asyncio.timeout(within):
            while view is None or view.status not in statuses:
                if view is not None:
                    await asyncio.sleep(0.05)
                view = await handle.query(BookingWorkflow.view)
    except TimeoutError:
        wanted = "/".join(status.value for status in statuses)
        raise AssertionError(f"not {wanted} within {within} s: {story(view)}") from None
    return view


async def answer_of(handle: Handle, update: asyncio.Task[BookingView]) -> BookingView:
    """The cancel's answer; a cancel that was accepted and never answers fails with the story.

    `asyncio.wait`, not a timeout: the SDK turns the cancellation of an update call into its own
    error, which a timeout would let through instead of a TimeoutError.
    """
    done, _ = await asyncio.wait({update}, timeout=SETTLE_SECONDS)
    if not done:
        update.cancel()
        view = await handle.query(BookingWorkflow.view)
        raise AssertionError(
            f"the cancel was sent but not answered within {SETTLE_SECONDS} s: {story(view)}"
        )
    return update.result()


async def customer_cancel(handle: Handle, note: str = "changed my mind") -> BookingView:
    request = CancelBookingRequest(actor="customer", note=note)
    update = asyncio.create_task(handle.execute_update(BookingWorkflow.cancel, request))
    return await answer_of(handle, update)


async def refusal_of(handle: Handle, request: CancelBookingRequest) -> str:
    """Why the booking refuses this cancel (its validator's message); fails if it is accepted.

    `start_update` does not raise on a refusal: the handle carries the outcome, which its
    `result()` raises at once, whereas an accepted cancel's `result()` waits for the booking.
    """
    update = await handle.start_update(
        BookingWorkflow.cancel, request, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    outcome = asyncio.create_task(update.result())
    done, _ = await asyncio.wait({outcome}, timeout=1.0)
    if not done:
        outcome.cancel()
        view = await handle.query(BookingWorkflow.view)
        raise AssertionError(f"the cancel was accepted, not refused: {story(view)}")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        outcome.result()
    return str(refused.value.cause)


async def assert_one_intent(stripe_harness: StripeHarness, booking_id: str) -> dict[str, Any]:
    intents = await stripe_harness.payment_intents_for(booking_id)
    assert len(intents) == 1, [(pi["id"], pi["status"]) for pi in intents]
    return intents[0]


async def assert_nothing_live(simulator: SimulatorControl, booking_id: str) -> None:
    holds, bookings = live_rows(await simulator.ledger(), booking_id)
    assert holds == [] and bookings == [], (holds, bookings)
    await simulator.assert_inventory_adds_up()


def flight_fee(request: BookingRequest) -> Money:
    """The fee the flight keeps on any cancel: 10 % of its price (the hotel's cancel is free)."""
    [flight] = [item for item in request.items if item.offer_id == FLIGHT]
    price = flight.expected_price
    return Money(price.amount_minor * 1_000 // 10_000, price.currency)


async def test_a_customer_cancel_during_authorization_voids_it_and_releases_the_holds(
    engine_worker: Engine,
    in_flight: InFlight,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    request, handle = await in_flight(CREATE_INTENT, BookingStatus.AUTHORIZING)

    cancelled = await customer_cancel(handle)

    assert cancelled.status == BookingStatus.CANCELLED, story(cancelled)
    assert cancelled.error is None  # the customer's own cancel is not an error
    assert cancelled.payment.status == PaymentStatus.VOIDED
    assert cancelled.payment.captured.amount_minor == 0
    intent = await assert_one_intent(stripe_harness, request.booking_id)
    assert (intent["status"], intent["amount_received"]) == ("canceled", 0)
    await assert_nothing_live(simulator, request.booking_id)
    await assert_ledger_matches(engine_worker, await handle.result())


async def test_a_customer_cancel_during_capture_is_refused_and_works_once_confirmed(
    engine_worker: Engine,
    in_flight: InFlight,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    request, handle = await in_flight(CAPTURE_INTENT, BookingStatus.CAPTURING)
    total = sum(item.expected_price.amount_minor for item in request.items)

    reason = await refusal_of(handle, CancelBookingRequest(actor="customer", note="too soon"))
    assert re.search(r"confirmation (is )?in progress", reason, re.I), reason

    confirmed = await wait_for_status(handle, BookingStatus.CONFIRMED)
    assert confirmed.payment.captured == Money(total, "EUR")
    intent = await assert_one_intent(stripe_harness, request.booking_id)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", total)

    cancelled = await customer_cancel(handle, note="now it is confirmed")

    fee = flight_fee(request)
    assert cancelled.status == BookingStatus.CANCELLED, story(cancelled)
    assert cancelled.payment.fees_kept == fee
    assert cancelled.payment.refunded == cancelled.payment.captured - fee
    assert cancelled.payment.status == PaymentStatus.PARTIALLY_REFUNDED
    intent = await assert_one_intent(stripe_harness, request.booking_id)
    assert intent["latest_charge"]["amount_refunded"] == total - fee.amount_minor
    await assert_nothing_live(simulator, request.booking_id)
    await assert_ledger_matches(engine_worker, await handle.result())


async def test_a_workflow_cancel_during_capture_refunds_in_full_and_cancels_the_items(
    engine_worker: Engine,
    in_flight: InFlight,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    request, handle = await in_flight(CAPTURE_INTENT, BookingStatus.CAPTURING)

    await handle.cancel()
    final = await wait_for_status(handle, *SETTLED)

    assert final.status == BookingStatus.CANCELLED, story(final)
    assert final.error is not None and final.error.type == "STOPPED"
    # The customer gets everything back: the fees the suppliers keep are the merchant's cost.
    assert final.payment.fees_kept == Money.zero("EUR")
    intent = await assert_one_intent(stripe_harness, request.booking_id)
    if intent["status"] == "succeeded":
        assert final.payment.status == PaymentStatus.REFUNDED
        assert final.payment.refunded == final.payment.captured
        assert intent["latest_charge"]["amount_refunded"] == intent["amount_received"] > 0
    else:
        assert final.payment.status == PaymentStatus.VOIDED
        assert (intent["status"], intent["amount_received"]) == ("canceled", 0)
    await assert_nothing_live(simulator, request.booking_id)
    await assert_ledger_matches(engine_worker, final)


async def test_a_cancel_sent_while_no_worker_polls_is_honoured_when_one_is_back(
    engine_worker: Engine,
    book: Book,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    client = engine_worker.client
    settings: Settings = engine_worker.settings.model_copy(
        update={"task_queue": f"passage-idle-{uuid.uuid4().hex[:8]}"}
    )
    request = await booking_request(simulator, card)
    handle = await book(request, task_queue=settings.task_queue)  # nobody polls this queue yet
    update_id = f"cancel-{request.booking_id}"
    update = asyncio.create_task(
        handle.execute_update(
            BookingWorkflow.cancel,
            CancelBookingRequest(actor="customer", note="sent while the engine was down"),
            id=update_id,
        )
    )
    try:
        await wait_until_admitted(client, handle.id, update_id)
        assert not update.done()

        async with booking_worker(client, settings):
            cancelled = await answer_of(handle, update)
            final = await wait_for_status(handle, *SETTLED)  # queries need the worker too
    finally:
        update.cancel()

    assert cancelled.status == final.status == BookingStatus.CANCELLED, story(final)
    assert cancelled.error is None
    intents = await stripe_harness.payment_intents_for(request.booking_id)
    assert all(pi["status"] == "canceled" for pi in intents), intents
    assert len(intents) <= 1
    await assert_nothing_live(simulator, request.booking_id)


async def wait_until_admitted(client: Client, workflow_id: str, update_id: str) -> None:
    """Return once the server holds the update (stage ADMITTED), before any worker has seen it.

    The SDK cannot wait for ADMITTED, so this polls the service until the update is known.
    """
    poll = PollWorkflowExecutionUpdateRequest(
        namespace=client.namespace,
        update_ref=UpdateRef(
            workflow_execution=WorkflowExecution(workflow_id=workflow_id), update_id=update_id
        ),
        identity="interruptions-e2e",
        wait_policy=WaitPolicy(lifecycle_stage=WorkflowUpdateStage.ADMITTED),
    )
    async with asyncio.timeout(10):
        while True:
            try:
                await client.workflow_service.poll_workflow_execution_update(
                    poll, timeout=timedelta(seconds=2)
                )
                return
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.05)
