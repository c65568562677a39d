"""Defects of the booking saga under interruptions, one test per defect (docs/interruptions.md).

Each test states the behaviour docs/interruptions.md promises; they failed on the workflow these
semantics were written against. The helpers come from test_booking_saga; `settle` waits for a
status without waiting for the workflow's result, because a confirmed booking stays open for its
cancellation window (and continues as new), so its result may never come.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.support.fake_activities import (
    BLOCK,
    TRANSIENT,
    FakeBookingActivities,
    Offer,
    refuse,
)
from tests.workflows.test_booking_saga import EUR, Saga, booking_request, run_saga
from workflows.booking import BookingWorkflow
from workflows.contracts import (
    ActivityName,
    BookingView,
    CancelBookingRequest,
    ItemView,
    PaymentEvent,
    PaymentVoid,
    PriceDecision,
    StaffAction,
    VoidPaymentInput,
)
from workflows.model import (
    BookingItemRequest,
    BookingStatus,
    CancellationTerms,
    ItemStatus,
    Money,
    PaymentStatus,
    workflow_id_for,
)

SETTLED = (
    BookingStatus.CONFIRMED,
    BookingStatus.FAILED,
    BookingStatus.CANCELLED,
    BookingStatus.NEEDS_ATTENTION,
)
STAFF = CancelBookingRequest(actor="staff:ops", note="forced by ops")
#: More failed attempts than the old forward policy allowed (5 attempts, ~30 s of backoff).
OUTAGE_ATTEMPTS = 8


async def settle(
    saga: Saga,
    *statuses: BookingStatus,
    env: WorkflowEnvironment | None = None,
    skip: float = 5,
    within: float = 30,
) -> BookingView:
    """The view once the booking reaches one of `statuses` (by default: it settled).

    With `env`, the test server's clock moves `skip` seconds between polls, so that retries and
    timers run; without it the clock stands still while we poll.
    """
    wanted = statuses or SETTLED
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        view = await saga.view()
        if view.status in wanted:
            return view
        if loop.time() > deadline:
            raise AssertionError(f"still {view.status}: {view.timeline}")
        if env is not None:
            await env.sleep(skip)
        else:
            await asyncio.sleep(0.05)


async def started(fake: FakeBookingActivities, name: str) -> None:
    await asyncio.wait_for(fake.started[name].wait(), 20)


async def start_cancel(
    handle: WorkflowHandle[BookingWorkflow, BookingView], request: CancelBookingRequest
) -> WorkflowUpdateHandle[BookingView]:
    """Send a cancel and return once the workflow accepted or rejected it (`result()` tells)."""
    return await handle.start_update(
        BookingWorkflow.cancel, request, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )


def item(view: BookingView, item_id: str) -> ItemView:
    return next(view_item for view_item in view.items if view_item.item_id == item_id)


def forward_calls(fake: FakeBookingActivities, *ops: str) -> list[str]:
    """Every attempted call of the given operations (attempts, not only the ones that landed)."""
    return [name for name, count in fake.attempts.items() if count and name.split(" ")[0] in ops]


def eur(amount: int) -> Money:
    return Money(amount, EUR)


# --- 1. an interruption while AUTHORIZE is in flight -------------------------------------------

#: Short enough to wait for in real time: the test server's clock stands still while an activity
#: is running, so the deadline that fires during a blocked AUTHORIZE cannot be skipped to.
HOLD_TTL = 3


@pytest.mark.parametrize("interruption", ["customer cancel", "workflow cancel", "hold deadline"])
async def test_1_an_interruption_during_authorize_voids_and_never_captures(
    time_skipping_env: WorkflowEnvironment, interruption: str
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.script["AUTHORIZE"] = [BLOCK] * 5
    if interruption == "hold deadline":
        fake.offers["fl-1"] = Offer(hold_ttl_seconds=HOLD_TTL)
    expected = {
        "customer cancel": (BookingStatus.CANCELLED, None),
        "workflow cancel": (BookingStatus.CANCELLED, "STOPPED"),
        "hold deadline": (BookingStatus.FAILED, "HOLD_EXPIRED"),
    }[interruption]
    async with run_saga(env, fake, booking_request()) as saga:
        await started(fake, "AUTHORIZE")
        update = None
        if interruption == "customer cancel":
            update = await start_cancel(saga.handle, CancelBookingRequest())
        elif interruption == "workflow cancel":
            await saga.handle.cancel()
        else:
            await asyncio.sleep(HOLD_TTL + 0.5)  # the deadline fires while AUTHORIZE is blocked
        await asyncio.sleep(0.2)
        fake.release("AUTHORIZE")  # ...and the authorization lands after the stop
        final = await settle(saga, env=env)
        assert (final.status, final.error and final.error.type) == expected
        if update is not None:
            answer = await asyncio.wait_for(update.result(), 20)
            assert answer.status == BookingStatus.CANCELLED

    assert forward_calls(fake, "CONFIRM", "CAPTURE") == []
    assert final.payment.status == PaymentStatus.VOIDED
    assert fake.world.payment == "voided"
    assert fake.world.live_holds() == []


async def test_1_a_cancel_accepted_while_a_stop_is_pending_ends_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The hold deadline fired, AUTHORIZE has not landed yet: the booking is still AUTHORIZING,
    so a customer cancel is accepted, and accepted means it ends CANCELLED, not FAILED."""
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.script["AUTHORIZE"] = [BLOCK]
    fake.offers["fl-1"] = Offer(hold_ttl_seconds=HOLD_TTL)
    async with run_saga(env, fake, booking_request()) as saga:
        await started(fake, "AUTHORIZE")
        stopping = await saga.wait_for(lambda v: v.error is not None, within=HOLD_TTL + 5)
        assert (stopping.status, stopping.error and stopping.error.type) == (
            BookingStatus.AUTHORIZING,
            "HOLD_EXPIRED",
        )
        update = await start_cancel(saga.handle, CancelBookingRequest())
        await asyncio.sleep(0.2)
        fake.release("AUTHORIZE")
        final = await settle(saga, env=env)
        answer = await asyncio.wait_for(update.result(), 20)
    assert final.status == answer.status == BookingStatus.CANCELLED
    assert final.error is not None and final.error.type == "HOLD_EXPIRED"  # why it stopped
    assert final.payment.status == PaymentStatus.VOIDED
    assert fake.world.live_holds() == []


# --- 2. a cancel delivered in the workflow's first task ----------------------------------------


async def test_2_a_cancel_in_the_first_workflow_task_stops_before_anything_is_held(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    request = booking_request()
    task_queue = f"tq-{uuid.uuid4().hex}"
    handle = await env.client.start_workflow(
        BookingWorkflow.run,
        request,
        id=workflow_id_for(request.booking_id),
        task_queue=task_queue,
        execution_timeout=timedelta(days=3),
    )
    accepting = asyncio.ensure_future(
        start_cancel(handle, CancelBookingRequest(note="changed my mind"))
    )
    await asyncio.sleep(0.5)  # the update waits for the first workflow task: no worker yet
    assert not accepting.done()
    try:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[BookingWorkflow],
            activities=fake.activities(),
        ):
            update = await asyncio.wait_for(accepting, 20)
            final = await settle(Saga(handle, fake, env.client))
            assert final.status == BookingStatus.CANCELLED
            answer = await asyncio.wait_for(update.result(), 20)
            fake.unblock.set()
    finally:
        accepting.cancel()
    assert answer.status == BookingStatus.CANCELLED
    assert forward_calls(fake, "HOLD", "AUTHORIZE", "CONFIRM", "CAPTURE") == []
    assert fake.world.holds == {} and fake.world.payment == "none"


# --- 3. payment steps outlast a one-minute outage ----------------------------------------------


@pytest.mark.parametrize("step", ["CAPTURE", "GET_PAYMENT"])
async def test_3_payment_steps_outlast_a_minute_long_outage(
    time_skipping_env: WorkflowEnvironment, step: str
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.script[step] = [TRANSIENT] * OUTAGE_ATTEMPTS
    if step == "GET_PAYMENT":
        fake.payment_status = "requires_action"
        fake.payment_status_after_action = "requires_capture"
    request = booking_request()
    async with run_saga(env, fake, request) as saga:
        if step == "GET_PAYMENT":
            await settle(saga, BookingStatus.AWAITING_PAYMENT_ACTION, *SETTLED)
            event = PaymentEvent("evt_1", "payment_intent.succeeded", f"pi_{request.booking_id}")
            await saga.handle.signal(BookingWorkflow.payment_event, event)
        final = await settle(saga, env=env)

    assert final.status == BookingStatus.CONFIRMED, final.error
    assert fake.attempts[step] > OUTAGE_ATTEMPTS
    assert fake.undo_calls() == []
    assert final.payment.status == PaymentStatus.CAPTURED
    assert final.payment.captured == eur(20_000) and fake.world.captured == 20_000


# --- 4. compensation records supplier fees; confirm order --------------------------------------


async def test_4_compensation_records_the_fee_the_supplier_keeps(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(fee_bps=1_000), reported_fee=1_500)
    # it_2 cannot be cancelled, so it is confirmed after it_1 (which carries a fee) has been.
    fake.offers["ht-1"] = Offer(cancellation=CancellationTerms(cancellable=False))
    fake.script["CONFIRM it_2"] = [refuse("SUPPLIER_REFUSED")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await settle(saga)

    assert final.status == BookingStatus.FAILED
    assert "CANCEL it_1" in fake.calls and fake.world.fees == {"it_1": 1_500}
    assert item(final, "it_1").cancellation_fee == eur(1_500)
    assert final.payment.fees_absorbed == eur(1_500)
    assert final.payment.fees_kept == eur(0)
    assert final.payment.status == PaymentStatus.VOIDED and fake.world.payment == "voided"


@pytest.mark.parametrize("free_confirm", ["ok", "refused"])
async def test_4_a_non_cancellable_item_is_confirmed_after_the_free_ones(
    time_skipping_env: WorkflowEnvironment, free_confirm: str
) -> None:
    fake = FakeBookingActivities()
    fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(cancellable=False))  # it_1
    fake.script["CONFIRM it_2"] = [BLOCK if free_confirm == "ok" else refuse("SOLD_OUT")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        if free_confirm == "ok":
            await started(fake, "CONFIRM it_2")
            await asyncio.sleep(0.3)
            assert not fake.started["CONFIRM it_1"].is_set()
            fake.release("CONFIRM it_2")
        final = await settle(saga)

    if free_confirm == "ok":
        assert final.status == BookingStatus.CONFIRMED
        assert fake.calls.index("CONFIRM it_2") < fake.calls.index("CONFIRM it_1")
    else:
        assert final.status == BookingStatus.FAILED
        assert fake.attempts["CONFIRM it_1"] == 0
        assert fake.world.bookings == {} and fake.world.live_holds() == []


# --- 5. the fee the supplier reports; the price the supplier holds at --------------------------


async def test_5_a_cancel_after_confirmation_keeps_the_fee_the_supplier_reports(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    # The terms say 10 % (1 000); the supplier reports that it keeps 2 500.
    fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(fee_bps=1_000), reported_fee=2_500)
    fake.offers["ht-1"] = Offer(cancellation=CancellationTerms(free_until="2999-01-01T00:00:00Z"))
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await settle(saga)
        view = await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())

    assert view.status == BookingStatus.CANCELLED
    assert item(view, "it_1").cancellation_fee == eur(2_500)
    assert view.payment.fees_kept == eur(2_500)
    assert view.payment.refunded == view.payment.captured - view.payment.fees_kept == eur(17_500)
    assert "REFUND 17500" in fake.calls and fake.world.refunded == 17_500


@pytest.mark.parametrize("accept", [True, False])
async def test_5_a_held_price_beyond_tolerance_waits_for_the_customer(
    time_skipping_env: WorkflowEnvironment, accept: bool
) -> None:
    fake = FakeBookingActivities()
    fake.offers["fl-1"] = Offer(held_unit_price=12_000)  # quoted at 10 000, held at 12 000
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        waiting = await settle(saga, BookingStatus.AWAITING_PRICE_ACCEPTANCE, *SETTLED)
        assert waiting.status == BookingStatus.AWAITING_PRICE_ACCEPTANCE
        assert "HOLD it_1" in fake.calls
        assert item(waiting, "it_1").held_price == eur(12_000)
        await saga.handle.execute_update(BookingWorkflow.decide_price, PriceDecision(accept))
        final = await settle(saga)

    if accept:
        assert final.status == BookingStatus.CONFIRMED
        assert final.payment.captured == eur(22_000) and fake.world.captured == 22_000
    else:
        assert final.status == BookingStatus.FAILED
        assert final.error is not None and final.error.type == "PRICE_CHANGED"
        assert fake.world.live_holds() == [] and fake.world.payment in ("none", "voided")


# --- 6. an optional item's refused undo does not undo the trip ---------------------------------


@pytest.mark.parametrize("undo", ["CANCEL it_2", "RELEASE it_2"])
async def test_6_a_refused_undo_of_an_optional_item_waits_until_the_trip_is_confirmed(
    time_skipping_env: WorkflowEnvironment, undo: str
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.offers["ac-1"] = Offer(unit_price=3_000)
    request = booking_request(
        BookingItemRequest("it_1", "fl-1", 1, eur(10_000)),
        BookingItemRequest("it_2", "ac-1", 1, eur(3_000), optional=True),
    )
    fake.script["CONFIRM it_2"] = [refuse("HOLD_EXPIRED")]
    fake.script[undo] = [refuse("SUPPLIER_REFUSED")] * 3
    async with run_saga(env, fake, request) as saga:
        stuck = await settle(
            saga,
            BookingStatus.NEEDS_ATTENTION,
            BookingStatus.FAILED,
            BookingStatus.CANCELLED,
            env=env,
        )
        assert stuck.status == BookingStatus.NEEDS_ATTENTION
        # The trip was confirmed and captured before the optional item's undo asked for help.
        assert fake.world.captured == 10_000 and stuck.payment.captured == eur(10_000)
        assert fake.world.live_bookings() == ["it_1"]
        assert stuck.attention is not None and stuck.attention.item_id == "it_2"
        await saga.handle.execute_update(BookingWorkflow.resolve, StaffAction(actor="staff:ops"))
        final = await settle(saga)

    assert final.status == BookingStatus.CONFIRMED
    assert final.attention is None
    assert item(final, "it_1").status == ItemStatus.CONFIRMED
    assert forward_calls(fake, "VOID", "REFUND") == [] and "CANCEL it_1" not in fake.attempts


# --- 7. operator state -------------------------------------------------------------------------


async def test_7_a_stuck_cancel_forced_by_staff_ends_without_attention(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    fake.script["CANCEL it_1"] = [refuse("SUPPLIER_REFUSED")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await settle(saga)
        customer = await start_cancel(saga.handle, CancelBookingRequest())
        stuck = await settle(saga, BookingStatus.NEEDS_ATTENTION, BookingStatus.CANCELLED)
        assert stuck.status == BookingStatus.NEEDS_ATTENTION and stuck.attention is not None
        forced = await saga.handle.execute_update(BookingWorkflow.cancel, STAFF)
        assert forced.status == BookingStatus.CANCELLED
        final = await settle(saga, BookingStatus.CANCELLED, BookingStatus.FAILED)
        answered = await asyncio.wait_for(customer.result(), 20)

    assert answered.status in (BookingStatus.NEEDS_ATTENTION, BookingStatus.CANCELLED)
    assert final.status == BookingStatus.CANCELLED
    assert final.attention is None
    assert fake.attempts["CANCEL it_1"] == 2 and fake.world.live_bookings() == []


async def test_7_a_retry_is_spent_on_its_own_stuck_step_only(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    fake.script["CANCEL it_2"] = [refuse("SUPPLIER_REFUSED")]
    fake.script["RELEASE it_1"] = [refuse("SUPPLIER_REFUSED")]
    retry = StaffAction(actor="staff:ops")
    async with run_saga(env, fake, booking_request()) as saga:
        first = await settle(saga)
        assert first.attention is not None and first.attention.step == "CANCEL it_2"
        answers = await asyncio.gather(
            saga.handle.execute_update(BookingWorkflow.retry, retry),
            saga.handle.execute_update(BookingWorkflow.retry, retry),
            return_exceptions=True,
        )
        assert all(isinstance(a, BookingView | WorkflowUpdateFailedError) for a in answers)
        assert any(isinstance(a, BookingView) for a in answers)
        second = await settle(saga, env=env)
        assert second.attention is not None and second.attention.step == "RELEASE it_1"
        await env.sleep(120)  # nothing left over retries the new stuck step
        await asyncio.sleep(0.3)
        still = await saga.view()
        assert still.status == BookingStatus.NEEDS_ATTENTION
        assert fake.attempts["RELEASE it_1"] == 1
        await saga.handle.execute_update(BookingWorkflow.retry, retry)
        final = await settle(saga)

    assert fake.attempts["CANCEL it_2"] == 2
    assert final.status == BookingStatus.FAILED and final.attention is None
    assert fake.world.live_holds() == [] and fake.world.live_bookings() == []


# --- 8. cancel lifecycle -----------------------------------------------------------------------


async def test_8_staff_force_cancel_retries_the_stuck_undo_and_ends_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    fake.script["CAPTURE"] = [refuse("PAYMENT_FAILED")]
    fake.script["CANCEL it_1"] = [refuse("NOT_CANCELLABLE")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        stuck = await settle(saga)
        assert stuck.status == BookingStatus.NEEDS_ATTENTION
        forced = await saga.handle.execute_update(BookingWorkflow.cancel, STAFF)
        final = await settle(saga, BookingStatus.CANCELLED, BookingStatus.FAILED)

    assert forced.status == final.status == BookingStatus.CANCELLED
    assert final.attention is None
    assert fake.attempts["CANCEL it_1"] == 2
    assert final.payment.status == PaymentStatus.VOIDED and fake.world.payment == "voided"
    assert fake.world.live_bookings() == [] and fake.world.live_holds() == []


async def test_8_a_confirmed_booking_stays_cancellable_past_one_window(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    async with run_saga(env, fake, booking_request(cancellable_for_seconds=60)) as saga:
        await settle(saga)
        await env.sleep(150)  # more than two windows: the booking continues as new
        fresh = env.client.get_workflow_handle_for(BookingWorkflow.run, saga.handle.id)
        assert (await fresh.describe()).status == WorkflowExecutionStatus.RUNNING
        answer = await fresh.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        final = await asyncio.wait_for(fresh.result(), 20)

    assert answer.status == final.status == BookingStatus.CANCELLED
    assert final.payment.refunded == eur(20_000) and "REFUND 20000" in fake.calls
    assert fake.world.live_bookings() == []


async def test_8_a_cancel_during_confirmation_is_refused_or_forced_and_always_answered(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    fake.script["CONFIRM it_1"] = [BLOCK]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await started(fake, "CONFIRM it_1")
        customer = await start_cancel(saga.handle, CancelBookingRequest())
        with pytest.raises(WorkflowUpdateFailedError):  # rejected: "confirmation in progress"
            await asyncio.wait_for(customer.result(), 10)
        forced = await start_cancel(saga.handle, STAFF)
        fake.release("CONFIRM it_1")
        final = await settle(saga)
        assert final.status == BookingStatus.CANCELLED
        answer = await asyncio.wait_for(forced.result(), 20)

    assert answer.status == BookingStatus.CANCELLED
    assert fake.attempts["CAPTURE"] == 0
    assert final.payment.status == PaymentStatus.VOIDED
    assert fake.world.live_bookings() == [] and fake.world.live_holds() == []


# --- 9. types and statuses ---------------------------------------------------------------------


async def test_9_a_payment_outage_is_an_outage_not_a_payment_failure(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    fake = FakeBookingActivities()
    fake.offers["fl-1"] = Offer(hold_ttl_seconds=600)
    fake.script["AUTHORIZE"] = [TRANSIENT] * 500
    async with run_saga(env, fake, booking_request()) as saga:
        final = await settle(saga, env=env, skip=30)

    assert final.status == BookingStatus.FAILED
    # Authorization is retried until the hold deadline stops it (that reason wins), and nothing
    # calls the outage a payment failure or a decline.
    assert fake.attempts["AUTHORIZE"] > 5
    assert final.error is not None
    assert final.error.type in ("PAYMENT_UNAVAILABLE", "HOLD_EXPIRED")
    said = [final.error.type, final.error.message]
    said += [f"{entry.step} {entry.outcome} {entry.detail}" for entry in final.timeline]
    assert not any("PAYMENT_FAILED" in text or "PAYMENT_DECLINED" in text for text in said)
    assert final.payment.status != PaymentStatus.AUTHORIZED and fake.world.payment == "none"
    assert forward_calls(fake, "CONFIRM", "CAPTURE") == []


async def test_9_an_all_optional_booking_with_no_confirmed_item_fails_without_capture(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    request = booking_request(
        BookingItemRequest("it_1", "fl-1", 1, eur(10_000), optional=True),
        BookingItemRequest("it_2", "ht-1", 1, eur(10_000), optional=True),
    )
    fake.script["CONFIRM it_1"] = [refuse("HOLD_EXPIRED")]
    fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    async with run_saga(time_skipping_env, fake, request) as saga:
        final = await settle(saga)

    assert final.status == BookingStatus.FAILED
    assert fake.attempts["CAPTURE"] == 0
    assert final.payment.status == PaymentStatus.VOIDED and fake.world.payment == "voided"
    assert fake.world.live_holds() == []


async def test_9_a_non_refundable_cancellation_keeps_the_capture(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = FakeBookingActivities()
    non_refundable = CancellationTerms(refundable=False)
    fake.offers["fl-1"] = Offer(cancellation=non_refundable)
    fake.offers["ht-1"] = Offer(cancellation=non_refundable)
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await settle(saga)
        view = await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())

    assert view.status == BookingStatus.CANCELLED
    assert view.payment.status == PaymentStatus.CAPTURED
    assert view.payment.refunded == eur(0)
    assert view.payment.fees_kept == view.payment.captured == eur(20_000)
    assert forward_calls(fake, "REFUND") == []


@dataclass
class VoidFindsNothing(FakeBookingActivities):
    """A card processor that reports no authorization to void (it expired, or never existed)."""

    @activity.defn(name=ActivityName.VOID_PAYMENT.value)
    async def void_payment_if_present(self, request: VoidPaymentInput) -> PaymentVoid:
        await self._play("VOID")
        self.world.payment = "none"
        return PaymentVoid(status="absent")


async def test_9_a_failed_booking_whose_void_finds_nothing_is_not_shown_authorized(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    fake = VoidFindsNothing()
    fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await settle(saga)

    assert final.status == BookingStatus.FAILED
    assert "VOID" in fake.calls
    assert final.payment.status != PaymentStatus.AUTHORIZED
