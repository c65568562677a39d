"""Replay guards determinism: today's BookingWorkflow must replay the histories it wrote before.

Committed histories live in tests/histories/; `PASSAGE_RECORD_HISTORIES=1` rewrites them from the
scenarios below (do that only for a change that is meant to be compatible). A change behind
`workflow.patched` keeps the histories written before it in a folder named after the patch
(tests/histories/before-lean-history/, before-uncancellable-last/, before-batched-items/), and they
replay forever.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.support.fake_activities import BLOCK, FakeBookingActivities, Offer, refuse
from tests.support.temporal import wait_for_history_event
from tests.workflows.test_booking_saga import booking_request, run_saga
from workflows.booking import BookingWorkflow
from workflows.contracts import CancelBookingRequest, PaymentEvent, PriceDecision, StaffAction
from workflows.model import BookingStatus, CancellationTerms

SCENARIOS = [
    "confirmed",
    "compensated",
    "cancelled",
    "needs_attention",
    "cancelled_while_authorizing",
    "stopped",
    "price_accepted",
    "optional_failed",
    "uncancellable_last",
    "three_d_secure",
    "retried_then_resolved",
]

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def _history(env: WorkflowEnvironment, scenario: str) -> WorkflowHistory:
    fake = FakeBookingActivities()
    if scenario == "compensated":
        fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    if scenario == "needs_attention":
        fake.script["CAPTURE"] = [refuse("PAYMENT_FAILED")]
        fake.script["CANCEL it_1"] = [refuse("NOT_CANCELLABLE")]
    if scenario in ("cancelled_while_authorizing", "stopped"):
        fake.script["AUTHORIZE"] = [BLOCK]
    if scenario == "price_accepted":
        fake.offers["fl-1"] = Offer(held_unit_price=11_000)
    if scenario == "optional_failed":
        fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    if scenario == "three_d_secure":
        fake.payment_status = "requires_action"
        fake.payment_status_after_action = "requires_capture"
    if scenario == "retried_then_resolved":
        fake.script["CAPTURE"] = [refuse("PAYMENT_FAILED")]
        fake.script["CANCEL it_1"] = [refuse("NOT_CANCELLABLE"), refuse("NOT_CANCELLABLE")]
    if scenario == "uncancellable_last":
        fake.offers["fl-1"] = Offer(cancellation=CancellationTerms(cancellable=False))
        fake.offers["ht-1"] = Offer(cancellation=CancellationTerms(refundable=False))
        fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    request = booking_request(booking_id=f"bk_replay_{scenario}")
    if scenario == "optional_failed":
        request = dataclasses.replace(
            request, items=(request.items[0], dataclasses.replace(request.items[1], optional=True))
        )
    async with run_saga(env, fake, request) as saga:
        if scenario in ("cancelled_while_authorizing", "stopped"):
            await saga.status(BookingStatus.AUTHORIZING)
            await fake.started["AUTHORIZE"].wait()
            if scenario == "stopped":
                await saga.handle.cancel()
            else:
                await saga.handle.start_update(
                    BookingWorkflow.cancel,
                    CancelBookingRequest(),
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                )
            await wait_for_history_event(
                saga.handle, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
            )
            fake.release("AUTHORIZE")
        if scenario == "price_accepted":
            await saga.status(BookingStatus.AWAITING_PRICE_ACCEPTANCE)
            await saga.handle.execute_update(BookingWorkflow.decide_price, PriceDecision(True))
        if scenario == "cancelled":
            await saga.status(BookingStatus.CONFIRMED)
            await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        if scenario == "needs_attention":
            await saga.status(BookingStatus.NEEDS_ATTENTION)
            await saga.handle.execute_update(BookingWorkflow.resolve, StaffAction("staff:ops"))
        if scenario == "three_d_secure":
            await saga.status(BookingStatus.AWAITING_PAYMENT_ACTION)
            event = PaymentEvent("evt_1", "payment_intent.amount_capturable_updated", "pi_x")
            await saga.handle.signal(BookingWorkflow.payment_event, event)
        if scenario == "retried_then_resolved":
            await saga.status(BookingStatus.NEEDS_ATTENTION)
            await saga.handle.execute_update(BookingWorkflow.retry, StaffAction("staff:ops"))
            await saga.wait_for(
                lambda view: (
                    view.status == BookingStatus.NEEDS_ATTENTION
                    and any(entry.outcome == "staff retry" for entry in view.timeline)
                )
            )
            await saga.handle.execute_update(BookingWorkflow.resolve, StaffAction("staff:ops"))
        await saga.handle.result()
        return await saga.handle.fetch_history()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_fresh_histories_replay(
    time_skipping_env: WorkflowEnvironment, scenario: str
) -> None:
    history = await _history(time_skipping_env, scenario)
    await Replayer(workflows=[BookingWorkflow]).replay_workflow(history)
    if os.environ.get("PASSAGE_RECORD_HISTORIES"):
        (HISTORIES / f"{scenario}.json").write_text(history.to_json())


@pytest.mark.parametrize(
    "path",
    sorted(HISTORIES.rglob("*.json")),
    ids=lambda p: str(p.relative_to(HISTORIES).with_suffix("")),
)
async def test_committed_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"booking-{path.stem}", path.read_text())
    await Replayer(workflows=[BookingWorkflow]).replay_workflow(history)


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= set(SCENARIOS)
