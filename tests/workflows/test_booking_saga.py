"""BookingWorkflow's logic on the time-skipping test server, with scripted fake activities."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.support.fake_activities import (
    BLOCK,
    TRANSIENT,
    FakeBookingActivities,
    Offer,
    refuse,
)
from workflows import search
from workflows.booking import BookingWorkflow
from workflows.contracts import (
    ActivityName,
    BookingView,
    CancelBookingRequest,
    PaymentEvent,
    PriceDecision,
    StaffAction,
)
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemStatus,
    Money,
    PaymentStatus,
)

EUR = "EUR"


def booking_request(
    *items: BookingItemRequest, booking_id: str | None = None, **overrides: object
) -> BookingRequest:
    items = items or (
        BookingItemRequest("it_1", "fl-1", 1, Money(10_000, EUR)),
        BookingItemRequest("it_2", "ht-1", 1, Money(10_000, EUR)),
    )
    fields: dict[str, object] = dict(
        booking_id=booking_id or f"bk_{uuid.uuid4().hex[:12]}",
        customer_ref="cust_ref_1",
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        currency=EUR,
        items=tuple(items),
        payment_method="pm_card_visa",
        cancellable_for_seconds=3600,
        cancel_horizon_seconds=3600,
    )
    fields.update(overrides)
    return BookingRequest(**fields)  # type: ignore[arg-type]


@dataclass
class Saga:
    handle: WorkflowHandle[BookingWorkflow, BookingView]
    fake: FakeBookingActivities
    client: Client

    async def view(self) -> BookingView:
        return await self.handle.query(BookingWorkflow.view)

    async def wait_for(
        self, predicate: Callable[[BookingView], bool], within: float = 20
    ) -> BookingView:
        """Poll the live view (time does not skip while we poll)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            view = await self.view()
            if predicate(view):
                return view
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; last status {view.status}: {view.timeline}")
            await asyncio.sleep(0.05)

    async def status(self, status: BookingStatus) -> BookingView:
        return await self.wait_for(lambda view: view.status == status)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a fake's state (what it holds is plain data, with no event to wait on)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.05)


@asynccontextmanager
async def run_saga(
    env: WorkflowEnvironment, fake: FakeBookingActivities, request: BookingRequest
) -> AsyncIterator[Saga]:
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[BookingWorkflow],
        activities=fake.activities(),
    ):
        handle = await env.client.start_workflow(
            BookingWorkflow.run,
            request,
            id=f"booking-{request.booking_id}",
            task_queue=task_queue,
            execution_timeout=timedelta(days=3),
        )
        try:
            yield Saga(handle, fake, env.client)
        finally:
            fake.unblock.set()


@pytest.fixture
def fake() -> FakeBookingActivities:
    return FakeBookingActivities()


async def test_happy_path_confirms_captures_and_publishes(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["ht-1"] = Offer(supplier="harbour-hotels", unit_price=10_000)
    request = booking_request()
    async with run_saga(time_skipping_env, fake, request) as saga:
        live = await saga.status(BookingStatus.CONFIRMED)
        described = await saga.handle.describe()
        attributes = described.typed_search_attributes
        assert attributes.get(search.BOOKING_STATUS) == "CONFIRMED"
        assert attributes.get(search.NEEDS_ATTENTION) is False
        assert attributes.get(search.CUSTOMER_REF) == "cust_ref_1"
        assert sorted(attributes.get(search.SUPPLIERS) or []) == ["aurora-air", "harbour-hotels"]
        assert attributes.get(search.TOTAL_MINOR) == 20_000
        final = await saga.handle.result()

    assert live.status == final.status == BookingStatus.CONFIRMED
    # Items run concurrently within a step; the steps run in this order.
    assert [call.split(" ")[0] for call in fake.calls] == [
        "QUOTE", "QUOTE", "HOLD", "HOLD", "AUTHORIZE", "CONFIRM", "CONFIRM", "CAPTURE",
    ]  # fmt: skip
    assert sorted(fake.calls) == sorted(
        ["QUOTE it_1", "QUOTE it_2", "HOLD it_1", "HOLD it_2", "AUTHORIZE",
         "CONFIRM it_1", "CONFIRM it_2", "CAPTURE"]
    )  # fmt: skip
    assert [item.status for item in final.items] == [ItemStatus.CONFIRMED] * 2
    assert all(item.confirmation_code and item.supplier_ref for item in final.items)
    assert final.payment.status == PaymentStatus.CAPTURED
    assert final.payment.authorized == final.payment.captured == Money(20_000, EUR)
    assert final.error is None
    # The ledger got a snapshot in every workflow task that changed the booking, one at a time
    # and in order (so never a stale one after a newer), each with only timeline entries the
    # history keeps, the last one (written after the final task) equal to the final view.
    versions = [snapshot.view.version for snapshot in fake.snapshots]
    assert versions == sorted(versions)
    assert all(
        final.timeline[: len(snapshot.view.timeline)] == snapshot.view.timeline
        for snapshot in fake.snapshots
    )
    newest = fake.snapshots[-1].view
    assert newest.status == BookingStatus.CONFIRMED
    assert newest.timeline == final.timeline
    assert {snapshot.view.status for snapshot in fake.snapshots} >= {
        BookingStatus.PRICING, BookingStatus.HOLDING, BookingStatus.AUTHORIZING,
        BookingStatus.CONFIRMING, BookingStatus.CAPTURING, BookingStatus.CONFIRMED,
    }  # fmt: skip


FORWARD_FAILURES = [
    pytest.param("QUOTE it_2", "OFFER_NOT_FOUND", [], id="quote"),
    pytest.param("HOLD it_2", "SOLD_OUT", ["RELEASE it_2", "RELEASE it_1"], id="hold"),
    pytest.param(
        "AUTHORIZE", "PAYMENT_DECLINED", ["VOID", "RELEASE it_2", "RELEASE it_1"], id="authorize"
    ),
    pytest.param(
        "CONFIRM it_2",
        "HOLD_EXPIRED",
        ["CANCEL it_2", "CANCEL it_1", "VOID", "RELEASE it_2", "RELEASE it_1"],
        id="confirm",
    ),
    pytest.param(
        "CAPTURE",
        "PAYMENT_FAILED",
        ["CANCEL it_2", "CANCEL it_1", "VOID", "RELEASE it_2", "RELEASE it_1"],
        id="capture",
    ),
]


@pytest.mark.parametrize(("failing", "error_type", "undo"), FORWARD_FAILURES)
async def test_a_failing_step_is_compensated_in_reverse(
    time_skipping_env: WorkflowEnvironment,
    fake: FakeBookingActivities,
    failing: str,
    error_type: str,
    undo: list[str],
) -> None:
    fake.script[failing] = [refuse(error_type)]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await saga.handle.result()

    assert fake.undo_calls() == undo
    assert final.status == BookingStatus.FAILED
    assert final.error is not None and final.error.type == error_type
    assert all(
        item.status in (ItemStatus.RELEASED, ItemStatus.CANCELLED, ItemStatus.FAILED)
        for item in final.items
    )
    if failing == "AUTHORIZE":  # declined: no authorization was ever made
        assert final.payment.status == PaymentStatus.NONE
    elif "VOID" in undo:
        assert final.payment.status == PaymentStatus.VOIDED
    assert "CAPTURE" not in fake.calls or failing == "CAPTURE"


async def test_the_items_of_a_step_make_their_calls_in_one_activity(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    """Fewer round trips through Temporal: one quote, one hold and one confirm activity for both
    items (both free to cancel, so one confirmation group), each item still answered apart."""
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await saga.handle.result()
        history = await saga.handle.fetch_history()
    scheduled = [
        event.activity_task_scheduled_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert [a.activity_type.name for a in scheduled] == [
        "quote_items", "hold_items", "authorize_payment", "confirm_items", "capture_payment",
    ]  # fmt: skip
    assert [len(a.input.payloads) for a in scheduled] == [1] * 5  # one argument, items inside
    assert sorted(fake.calls) == sorted(
        ["QUOTE it_1", "QUOTE it_2", "HOLD it_1", "HOLD it_2", "AUTHORIZE",
         "CONFIRM it_1", "CONFIRM it_2", "CAPTURE"]
    )  # fmt: skip
    booking = final.booking_id
    assert [item.hold_ref for item in final.items] == [f"H-{booking}-it_1", f"H-{booking}-it_2"]
    assert [item.supplier_ref for item in final.items] == ["B-it_1", "B-it_2"]
    assert len(history.events) <= 60


async def test_an_item_that_fails_in_its_batch_is_retried_alone_with_the_attempts_left(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["HOLD it_2"] = [TRANSIENT] * 10
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await saga.handle.result()
        history = await saga.handle.fetch_history()
    # Five tries in all, as for a hold of its own: the batch's, then four alone.
    assert fake.attempts["HOLD it_2"] == 5
    assert fake.attempts["HOLD it_1"] == 1  # it_1 held in the batch is not asked again
    assert final.status == BookingStatus.FAILED
    assert final.error is not None and final.error.type == "SUPPLIER_UNAVAILABLE"
    assert sorted(fake.undo_calls()) == ["RELEASE it_1", "RELEASE it_2"]
    alone = [
        event.activity_task_scheduled_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "hold_item"
    ]
    assert [a.retry_policy.maximum_attempts for a in alone] == [4]


async def test_transient_errors_in_forward_steps_are_retried(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["HOLD it_1"] = [TRANSIENT, TRANSIENT]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.CONFIRMED)
    assert fake.attempts["HOLD it_1"] == 3
    assert fake.undo_calls() == []


async def test_a_transient_compensation_failure_is_retried_until_it_succeeds(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["HOLD it_2"] = [refuse("SOLD_OUT")]
    fake.script["RELEASE it_1"] = [TRANSIENT] * 6
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await saga.handle.result()
    assert fake.attempts["RELEASE it_1"] == 7
    assert fake.undo_calls() == ["RELEASE it_2", "RELEASE it_1"]
    assert final.status == BookingStatus.FAILED
    assert final.items[0].status == ItemStatus.RELEASED


async def test_a_refused_compensation_waits_in_needs_attention_until_resolved(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["CAPTURE"] = [refuse("PAYMENT_FAILED")]
    fake.script["CANCEL it_1"] = [refuse("NOT_CANCELLABLE")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        stuck = await saga.status(BookingStatus.NEEDS_ATTENTION)
        assert stuck.attention is not None
        assert stuck.attention.step == "CANCEL it_1"
        assert "NOT_CANCELLABLE" in stuck.attention.reason
        attributes = (await saga.handle.describe()).typed_search_attributes
        assert attributes.get(search.BOOKING_STATUS) == "NEEDS_ATTENTION"
        assert attributes.get(search.NEEDS_ATTENTION) is True
        assert attributes.get(search.BOOKING_STEP) == "CANCEL it_1"
        # Nothing later in the undo order has run while the booking waits.
        assert fake.undo_calls() == ["CANCEL it_2"]

        await saga.handle.execute_update(
            BookingWorkflow.resolve, StaffAction(actor="staff:ops", note="cancelled by phone")
        )
        final = await saga.handle.result()

    assert fake.undo_calls() == ["CANCEL it_2", "VOID", "RELEASE it_2", "RELEASE it_1"]
    assert final.status == BookingStatus.FAILED
    assert final.attention is None
    staff = [entry for entry in final.timeline if entry.actor == "staff:ops"]
    assert [(e.step, e.outcome, e.detail) for e in staff] == [
        ("CANCEL it_1", "staff resolve", "cancelled by phone")
    ]


async def test_an_operator_retry_runs_the_stuck_compensation_again(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["HOLD it_2"] = [refuse("SOLD_OUT")]
    fake.script["RELEASE it_1"] = [refuse("SUPPLIER_REFUSED")]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.NEEDS_ATTENTION)
        with pytest.raises(WorkflowUpdateFailedError):
            await saga.handle.execute_update(BookingWorkflow.decide_price, PriceDecision(True))
        await saga.handle.execute_update(BookingWorkflow.retry, StaffAction(actor="staff:ops"))
        final = await saga.handle.result()
    assert fake.attempts["RELEASE it_1"] == 2
    assert fake.undo_calls() == ["RELEASE it_2", "RELEASE it_1"]
    assert final.status == BookingStatus.FAILED
    assert final.items[0].status == ItemStatus.RELEASED


async def test_the_hold_deadline_compensates_before_holds_expire(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["fl-1"] = Offer(hold_ttl_seconds=600)
    fake.payment_status = "requires_action"
    fake.payment_status_after_action = "requires_action"
    request = booking_request(payment_action_timeout_seconds=3600)
    async with run_saga(time_skipping_env, fake, request) as saga:
        final = await saga.handle.result()
    assert final.status == BookingStatus.FAILED
    assert final.error is not None and final.error.type == "HOLD_EXPIRED"
    assert fake.undo_calls() == ["VOID", "RELEASE it_2", "RELEASE it_1"]
    # The deadline fired before the 10-minute hold expired, not after the hour of 3-D Secure.
    hold_at = next(e.at for e in final.timeline if e.step == "HOLD it_1")
    failed_at = next(e.at for e in final.timeline if e.outcome == "status" and e.step == "UNDO")
    from datetime import datetime

    waited = datetime.fromisoformat(failed_at) - datetime.fromisoformat(hold_at)
    assert timedelta(minutes=8) < waited < timedelta(minutes=10)


async def test_an_optional_item_that_fails_is_released_and_left_out(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["ac-1"] = Offer(unit_price=3_000)
    request = booking_request(
        BookingItemRequest("it_1", "fl-1", 1, Money(10_000, EUR)),
        BookingItemRequest("it_2", "ac-1", 1, Money(3_000, EUR), optional=True),
    )
    fake.script["CONFIRM it_2"] = [refuse("HOLD_EXPIRED")]
    async with run_saga(time_skipping_env, fake, request) as saga:
        final = await saga.handle.result()
    assert final.status == BookingStatus.CONFIRMED
    assert final.items[0].status == ItemStatus.CONFIRMED
    assert final.items[1].status == ItemStatus.FAILED
    assert final.items[1].error is not None and final.items[1].error.type == "HOLD_EXPIRED"
    assert fake.undo_calls() == ["CANCEL it_2", "RELEASE it_2"]
    assert final.payment.authorized == Money(13_000, EUR)
    assert final.payment.captured == Money(10_000, EUR)


async def test_an_optional_item_sold_out_at_hold_is_not_authorized(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    request = booking_request(
        BookingItemRequest("it_1", "fl-1", 1, Money(10_000, EUR)),
        BookingItemRequest("it_2", "ac-1", 2, Money(20_000, EUR), optional=True),
    )
    fake.script["HOLD it_2"] = [refuse("SOLD_OUT")]
    async with run_saga(time_skipping_env, fake, request) as saga:
        final = await saga.handle.result()
    assert final.status == BookingStatus.CONFIRMED
    assert [i.status for i in final.items] == [ItemStatus.CONFIRMED, ItemStatus.FAILED]
    assert final.payment.authorized == final.payment.captured == Money(10_000, EUR)
    assert "CONFIRM it_2" not in fake.calls


async def test_a_stop_request_while_holding_releases_everything(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.script["HOLD it_2"] = [BLOCK]
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await asyncio.wait_for(fake.started["HOLD it_2"].wait(), 20)
        # it_1 is held at the supplier (the saga learns it with it_2's answer: one batch).
        await asyncio.wait_for(_until(lambda: fake.world.holds.get("it_1") == "active"), 20)
        await saga.handle.cancel()
        await asyncio.sleep(0.3)
        assert fake.undo_calls() == []  # the undo waits for the hold in flight to end
        fake.unblock.set()  # ...which lands at the supplier after the stop request
        final = await saga.handle.result()
    # it_2's hold landed after the stop: its release was registered first and frees it.
    assert fake.undo_calls() == ["RELEASE it_2", "RELEASE it_1"]
    assert final.status == BookingStatus.CANCELLED
    assert final.error is not None and final.error.type == "STOPPED"
    assert "AUTHORIZE" not in fake.calls


async def test_a_price_change_ends_the_saga_when_not_accepted_in_time(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["fl-1"] = Offer(unit_price=12_000)
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        waiting = await saga.status(BookingStatus.AWAITING_PRICE_ACCEPTANCE)
        assert waiting.quoted_total == Money(22_000, EUR)
        final = await saga.handle.result()
    assert final.status == BookingStatus.FAILED
    assert final.error is not None and final.error.type == "PRICE_CHANGED"
    assert not any(call.startswith("HOLD") for call in fake.calls)


async def test_a_price_change_within_tolerance_goes_on(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["fl-1"] = Offer(unit_price=10_050)
    request = booking_request(price_tolerance_minor=100)
    async with run_saga(time_skipping_env, fake, request) as saga:
        view = await saga.status(BookingStatus.CONFIRMED)
    assert view.payment.captured == Money(20_050, EUR)


@pytest.mark.parametrize("accept", [True, False])
async def test_a_price_change_waits_for_the_customer(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities, accept: bool
) -> None:
    fake.offers["fl-1"] = Offer(unit_price=12_000)
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.AWAITING_PRICE_ACCEPTANCE)
        await saga.handle.execute_update(BookingWorkflow.decide_price, PriceDecision(accept))
        final = await saga.handle.result()
    if accept:
        assert final.status == BookingStatus.CONFIRMED
        assert final.payment.captured == Money(22_000, EUR)
    else:
        assert final.status == BookingStatus.FAILED
        assert final.error is not None and final.error.type == "PRICE_CHANGED"


async def test_three_d_secure_waits_for_the_webhook_and_counts_each_event_once(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.payment_status = "requires_action"
    fake.payment_status_after_action = "requires_capture"
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        waiting = await saga.status(BookingStatus.AWAITING_PAYMENT_ACTION)
        assert waiting.payment.client_secret == "pi_secret"
        event = PaymentEvent("evt_1", "payment_intent.amount_capturable_updated", "pi_x")
        for _ in range(3):
            await saga.handle.signal(BookingWorkflow.payment_event, event)
        final = await saga.handle.result()
    assert final.status == BookingStatus.CONFIRMED
    assert final.payment.client_secret is None
    assert fake.attempts["GET_PAYMENT"] >= 1


async def test_three_d_secure_failure_compensates(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.payment_status = "requires_action"
    fake.payment_status_after_action = "requires_payment_method"
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        final = await saga.handle.result()
    assert final.status == BookingStatus.FAILED
    assert final.error is not None and final.error.type == "PAYMENT_ACTION_FAILED"
    assert fake.undo_calls() == ["VOID", "RELEASE it_2", "RELEASE it_1"]


async def test_cancel_before_confirmation_stops_and_undoes(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.payment_status = "requires_action"
    fake.payment_status_after_action = "requires_action"
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.AWAITING_PAYMENT_ACTION)
        view = await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        assert view.status == BookingStatus.CANCELLED
        try:
            again = await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        except RPCError:  # it closed meanwhile: the API answers a repeat from the final view
            again = await saga.handle.result()
        assert again.status == BookingStatus.CANCELLED
        final = await saga.handle.result()
    assert fake.undo_calls() == ["VOID", "RELEASE it_2", "RELEASE it_1"]
    assert final.error is None
    assert final.payment.status == PaymentStatus.VOIDED


async def test_cancel_after_confirmation_refunds_per_terms(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(fee_bps=1_000))
    fake.offers["ht-1"] = Offer(cancellation=CancellationTerms(free_until="2999-01-01T00:00:00Z"))
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.CONFIRMED)
        view = await saga.handle.execute_update(
            BookingWorkflow.cancel, CancelBookingRequest(note="plans changed")
        )
    assert view.status == BookingStatus.CANCELLED
    assert fake.undo_calls() == ["CANCEL it_2", "CANCEL it_1", "REFUND 19000"]
    assert [i.cancellation_fee for i in view.items] == [Money(1_000, EUR), Money(0, EUR)]
    assert view.payment.refunded == Money(19_000, EUR)
    assert view.payment.fees_kept == Money(1_000, EUR)
    assert view.payment.status == PaymentStatus.PARTIALLY_REFUNDED


async def test_a_non_cancellable_confirmed_booking_refuses_cancel(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(cancellable=False))
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.CONFIRMED)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        assert "it_1 cannot be cancelled" in str(refused.value.cause)
        assert (await saga.view()).status == BookingStatus.CONFIRMED
    assert fake.undo_calls() == []


async def test_a_ledger_outage_slows_no_step_and_loses_no_write(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    fake.ledger_down = True
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        live = await saga.status(BookingStatus.CONFIRMED)
        # The local writes gave up and regular activities took over (retrying in the background).
        assert fake.failed_writes > 0 and fake.snapshots == []
        fake.ledger_down = False
        for _ in range(600):  # the background writes retry with backoff (real time here)
            if any(s.view.version >= live.version for s in fake.snapshots):
                break
            await asyncio.sleep(0.1)
    newest = max(fake.snapshots, key=lambda snapshot: snapshot.view.version)
    assert newest.view.status == BookingStatus.CONFIRMED
    assert newest.view.timeline[: len(live.timeline)] == live.timeline
    # They ran after their workflow task completed: every entry they carry is kept by history.
    assert all(snapshot.committed_through is None for snapshot in fake.snapshots)


async def test_a_booking_awaiting_3ds_polls_less_and_less_often(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    """The webhook wakes it; the poll is the fallback: after 10 s, then doubling up to 60 s."""
    fake.payment_status = "requires_action"
    fake.payment_status_after_action = "requires_action"
    request = booking_request(payment_action_timeout_seconds=3_600)
    async with run_saga(time_skipping_env, fake, request) as saga:
        await saga.status(BookingStatus.AWAITING_PAYMENT_ACTION)
        await time_skipping_env.sleep(310)
        polls = fake.calls.count("GET_PAYMENT")
        await saga.handle.terminate("test done")
    # At 10, 30, 70, 130, 190, 250 and 310 s: 7 reads, where polling every 10 s made 31.
    assert 5 <= polls <= 8, polls


async def test_a_booking_writes_no_snapshot_into_its_history(
    time_skipping_env: WorkflowEnvironment, fake: FakeBookingActivities
) -> None:
    """Lean history: the ledger is written by local activities (a marker each, never the snapshot)
    and the memo is left as the API set it, so the history stays small and linear in items."""
    async with run_saga(time_skipping_env, fake, booking_request()) as saga:
        await saga.status(BookingStatus.CONFIRMED)
        history = await saga.handle.fetch_history()
        await saga.handle.terminate("test done")
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert ActivityName.RECORD_BOOKING.value not in scheduled
    assert not any(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED
        for event in history.events
    )
    markers = [
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    writes = [name for name in markers if name == "core_local_activity"]
    assert len(writes) >= 4  # a ledger write per workflow task with a change
    assert len(writes) + markers.count("core_patch") == len(markers)
    assert len(fake.snapshots) == len(writes)
