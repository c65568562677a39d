"""The interruption matrix: every step of a booking, blocked, meets every interruption.

Each cell blocks one step of the saga (a forward call, the price or 3-D Secure wait, or an undo),
delivers one interruption while it is blocked, releases the step, lets the booking settle and
checks the invariants of tests/support/invariants.py, then what docs/interruptions.md says this
interruption does at this step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.booking_run import BookingRun
from tests.support.fake_activities import BLOCK, FakeBookingActivities, Offer, refuse
from tests.support.invariants import check_settled_booking
from tests.workflows.test_booking_saga import booking_request
from workflows.model import BookingStatus, CancellationTerms

CONFIRMED, FAILED, CANCELLED = (
    BookingStatus.CONFIRMED,
    BookingStatus.FAILED,
    BookingStatus.CANCELLED,
)
#: The hold TTL of the hold-deadline cells; the deadline fires a little before it.
SHORT_HOLD_SECONDS = 20
#: The price-acceptance and 3-D Secure timeouts of the timeout cells.
SHORT_TIMEOUT_SECONDS = 15
#: Time skipped while a step is blocked: past both, inside the 30 s activity timeout.
SKIPPED_SECONDS = 22


@dataclass(frozen=True)
class Step:
    """A step held blocked while the interruption arrives, and how the booking gets there."""

    name: str
    #: The fake call held blocked; None for the price-acceptance wait (nothing is in flight).
    call: str | None
    #: How the booking ends when nothing interrupts it, and its error type.
    ends: BookingStatus
    error: str | None = None
    #: Calls refused for good, to send the booking into compensation before the step.
    refused: tuple[tuple[str, str], ...] = field(default=())
    before_confirmation: bool = False
    undo: bool = False


STEPS = (
    Step("quote", "QUOTE it_1", CONFIRMED, before_confirmation=True),
    Step("price", None, CONFIRMED, before_confirmation=True),
    Step("hold", "HOLD it_1", CONFIRMED, before_confirmation=True),
    Step("authorize", "AUTHORIZE", CONFIRMED, before_confirmation=True),
    Step("3ds", "GET_PAYMENT", CONFIRMED, before_confirmation=True),
    Step("confirm", "CONFIRM it_1", CONFIRMED),
    Step("capture", "CAPTURE", CONFIRMED),
    Step("release", "RELEASE it_1", FAILED, "SOLD_OUT", (("HOLD it_2", "SOLD_OUT"),), undo=True),
    Step(
        "void",
        "VOID",
        FAILED,
        "SUPPLIER_REFUSED",
        (("CONFIRM it_2", "SUPPLIER_REFUSED"),),
        undo=True,
    ),
    Step(
        "cancel_item",
        "CANCEL it_1",
        FAILED,
        "PAYMENT_FAILED",
        (("CAPTURE", "PAYMENT_FAILED"),),
        undo=True,
    ),
    # Cancelling the confirmed booking: it_1 keeps a 10 % fee, so 19 000 of 20 000 go back.
    Step("refund", "REFUND 19000", CANCELLED),
)
INTERRUPTIONS = (
    "customer_cancel",
    "staff_cancel",
    "workflow_cancel",
    "hold_deadline",
    "timeout",
    "worker_restart",
)
CELLS = [
    pytest.param(step, interruption, id=f"{step.name}-{interruption}")
    for step, interruption in itertools.product(STEPS, INTERRUPTIONS)
]

#: "Any error": the cell checks the status only.
ANY_ERROR = "*"


def expected_ending(step: Step, interruption: str) -> tuple[set[BookingStatus], str | None]:
    """How the booking must end (statuses allowed, error type) per docs/interruptions.md."""
    baseline = ({step.ends}, step.error)
    if step.name == "refund":  # a cancelled booking stays cancelled, whatever comes after
        return {CANCELLED}, ANY_ERROR if interruption == "workflow_cancel" else None
    if interruption == "customer_cancel":
        # Refused (409) while confirming, capturing and compensating: the booking goes on.
        return ({CANCELLED}, None) if step.before_confirmation else baseline
    if interruption == "staff_cancel":
        return {CANCELLED}, None if not step.undo else ANY_ERROR
    if interruption == "workflow_cancel":
        if step.undo:  # the first reason wins; the undo goes on
            return {FAILED, CANCELLED}, ANY_ERROR
        return {CANCELLED}, "STOPPED"
    if interruption == "hold_deadline":
        if step.name in ("hold", "authorize", "3ds"):
            return {FAILED}, "HOLD_EXPIRED"
        if step.name in ("quote", "price"):  # the short holds come after the step
            return {CONFIRMED, FAILED}, ANY_ERROR
        return baseline  # confirming: the holds are being converted, the deadline is over
    if interruption == "timeout":
        if step.name == "price":
            return {FAILED}, "PRICE_CHANGED"
        if step.name == "3ds":
            return {FAILED}, "PAYMENT_ACTION_TIMEOUT"
    return baseline


def _arrange(step: Step, interruption: str) -> tuple[FakeBookingActivities, dict[str, Any]]:
    fake = FakeBookingActivities()
    overrides: dict[str, Any] = {}
    ttl = SHORT_HOLD_SECONDS if interruption == "hold_deadline" else 1800
    fake.offers["fl-1"] = Offer(hold_ttl_seconds=ttl)
    fake.offers["ht-1"] = Offer(hold_ttl_seconds=ttl)
    if interruption == "timeout":
        overrides["price_acceptance_timeout_seconds"] = SHORT_TIMEOUT_SECONDS
        overrides["payment_action_timeout_seconds"] = SHORT_TIMEOUT_SECONDS
    if step.name == "price":
        fake.offers["fl-1"].unit_price = 12_000
    if step.name == "3ds":
        fake.payment_status = "requires_action"
        fake.payment_status_after_action = "requires_action"
    if step.name == "refund":
        fake.offers["fl-1"].cancellation = CancellationTerms(fee_bps=1_000)
    for call, error_type in step.refused:
        fake.script[call] = [refuse(error_type)]
    if step.call is not None:
        fake.script[step.call] = [BLOCK]
    return fake, overrides


async def _reach(run: BookingRun, step: Step) -> None:
    """Drive the booking to the step, and wait until it is blocked there."""
    if step.name == "price":
        await run.wait_for(lambda v: v.status == BookingStatus.AWAITING_PRICE_ACCEPTANCE)
        return
    if step.name == "3ds":
        await run.wait_for(lambda v: v.status == BookingStatus.AWAITING_PAYMENT_ACTION)
        await run.payment_event("evt_poke")  # a webhook: re-read the PaymentIntent now
    if step.name == "refund":
        await run.wait_for(lambda v: v.status == CONFIRMED)
        cancel = await run.cancel("customer", note="plans changed")
        assert cancel.accepted, cancel
    assert step.call is not None
    await run.wait_started(step.call)


async def _interrupt(run: BookingRun, step: Step, interruption: str) -> None:
    if interruption == "customer_cancel":
        await run.cancel("customer")
    elif interruption == "staff_cancel":
        await run.cancel("staff:ops", note="forced by ops")
    elif interruption == "workflow_cancel":
        await run.stop()
    elif interruption in ("hold_deadline", "timeout"):
        await run.skip(SKIPPED_SECONDS, while_blocked=step.call is not None)
    else:
        await run.restart_worker()
        return
    assert await run.wait_idle()


async def _release(run: BookingRun, step: Step) -> None:
    if step.name == "price":
        if not (await run.closed()):
            await run.decide_price(True)
        return
    if step.name == "3ds":
        run.fake.payment_status_after_action = "requires_capture"  # the customer authenticated
    assert step.call is not None
    run.fake.release(step.call)


@pytest.mark.parametrize(("step", "interruption"), CELLS)
async def test_a_blocked_step_meets_an_interruption(
    time_skipping_env: WorkflowEnvironment, step: Step, interruption: str
) -> None:
    fake, overrides = _arrange(step, interruption)
    request = booking_request(**overrides)
    restartable = interruption == "worker_restart"
    async with BookingRun(time_skipping_env, fake, request, restartable=restartable) as run:
        await _reach(run, step)
        assert await run.wait_quiet(in_flight=0 if step.call is None else 1)
        await _interrupt(run, step, interruption)
        await _release(run, step)
        view = await run.settle()

    check_settled_booking(view, fake, run.updates)
    statuses, error = expected_ending(step, interruption)
    assert view.status in statuses, f"ended {view.status.value}, expected {statuses}: {view.error}"
    if error != ANY_ERROR:
        assert (view.error.type if view.error else None) == error, view.error
