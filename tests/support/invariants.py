"""What must hold when a booking has settled, however it was interrupted (docs/interruptions.md).

Shared by the interruption matrix and the property test: both drive a booking with
`tests.support.booking_run.BookingRun`, then hand the settled view, the fake's world and every
update they sent to `check_settled_booking`. The checks read the world the fakes keep (what the
suppliers and the card processor really hold), not only what the workflow says about itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.fake_activities import FakeBookingActivities
from workflows.contracts import BookingView
from workflows.model import BookingStatus, ItemStatus, PaymentStatus

#: The statuses a booking can settle in; NEEDS_ATTENTION waits for an operator.
SETTLED = frozenset(
    {
        BookingStatus.CONFIRMED,
        BookingStatus.FAILED,
        BookingStatus.CANCELLED,
        BookingStatus.NEEDS_ATTENTION,
    }
)
#: Where a customer's cancel stops the saga (first workflow task included).
BEFORE_CONFIRMATION = frozenset(
    {
        BookingStatus.RECEIVED,
        BookingStatus.PRICING,
        BookingStatus.AWAITING_PRICE_ACCEPTANCE,
        BookingStatus.HOLDING,
        BookingStatus.AUTHORIZING,
        BookingStatus.AWAITING_PAYMENT_ACTION,
    }
)


@dataclass
class SentUpdate:
    """One update a test sent, and what became of it."""

    name: str  # "cancel" or "decide_price"
    actor: str
    #: The booking's status just before it was sent, and just after it was accepted or rejected
    #: (the acceptance rules are only checked when both agree: nothing moved in between).
    status_before: BookingStatus
    status_after: BookingStatus | None = None
    rejection: str | None = None  # the validator's reason when rejected
    answer: BookingView | None = None  # the accepted update's result
    unanswered: str | None = None  # why an accepted update got no answer

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    def __str__(self) -> str:
        outcome = f"rejected ({self.rejection})" if self.rejection is not None else "accepted"
        return f"{self.name} by {self.actor} at {self.status_before.value}: {outcome}"


def cancel_is_accepted(actor: str, status: BookingStatus) -> bool | None:
    """Whether `cancel` by `actor` is accepted in `status` (None: it depends on more than that).

    The table of docs/interruptions.md: a customer cannot cancel while the confirms turn holds
    into bookings, nor a booking that failed; staff can force the stop until the booking failed.
    """
    staff = actor.startswith("staff:")
    if status in BEFORE_CONFIRMATION or status in (
        BookingStatus.CANCELLING,
        BookingStatus.CANCELLED,
    ):
        return True
    if status in (BookingStatus.CONFIRMING, BookingStatus.CAPTURING, BookingStatus.COMPENSATING):
        return staff
    if status == BookingStatus.FAILED:
        return False
    if status == BookingStatus.NEEDS_ATTENTION:
        return True if staff else None  # a customer's is idempotent if already cancelling
    return None  # CONFIRMED: the items' terms decide


def reached_confirmation(fake: FakeBookingActivities) -> bool:
    """Whether the booking was CONFIRMED at some point (the ledger gets every status change)."""
    return any(snapshot.view.status == BookingStatus.CONFIRMED for snapshot in fake.snapshots)


def check_settled_booking(
    view: BookingView, fake: FakeBookingActivities, updates: Sequence[SentUpdate] = ()
) -> None:
    """Assert every invariant of a settled booking; the message names what was broken."""
    world = fake.world
    context = (
        f"\nstatus {view.status.value}, error {view.error}, world {world}"
        f"\ncalls {fake.calls}\nupdates {[str(update) for update in updates]}"
    )
    problems = _status_problems(view) + _update_problems(view, updates)
    if view.status != BookingStatus.NEEDS_ATTENTION:
        problems += _world_problems(view, fake)
    assert not problems, "\n".join(problems) + context


def _status_problems(view: BookingView) -> list[str]:
    if view.status not in SETTLED:
        return [f"the booking did not settle: still {view.status.value}"]
    if view.status == BookingStatus.NEEDS_ATTENTION:
        attention = view.attention
        if attention is None or not attention.step or not attention.reason:
            return [f"NEEDS_ATTENTION without a step and a reason: {attention}"]
        return []
    if view.attention is not None:
        return [f"{view.status.value} but still asking for attention: {view.attention}"]
    return []


def _update_problems(view: BookingView, updates: Sequence[SentUpdate]) -> list[str]:
    problems: list[str] = []
    for update in updates:
        if not update.accepted:
            if not update.rejection:
                problems.append(f"{update}: rejected without a reason")
        elif update.answer is None:
            problems.append(f"{update}: accepted but never answered ({update.unanswered})")
        if update.name != "cancel":
            continue
        stable = update.status_after in (None, update.status_before)
        expected = cancel_is_accepted(update.actor, update.status_before) if stable else None
        if expected is not None and expected != update.accepted:
            should = "accepted" if expected else "rejected"
            problems.append(f"{update}: should have been {should}")
        if not update.accepted:
            continue
        honoured = (BookingStatus.CANCELLED, BookingStatus.NEEDS_ATTENTION)
        if view.status not in honoured:
            problems.append(f"{update}: accepted but the booking ended {view.status.value}")
        if update.answer is not None and update.answer.status not in honoured:
            problems.append(f"{update}: answered with {update.answer.status.value}")
    return problems


def _world_problems(view: BookingView, fake: FakeBookingActivities) -> list[str]:
    world = fake.world
    problems: list[str] = []
    if world.live_holds():
        problems.append(f"holds left live at the suppliers: {world.live_holds()}")
    if world.payment_intents > 1:
        problems.append(f"{world.payment_intents} PaymentIntents for one booking")
    if view.payment.captured.amount_minor != world.captured:
        problems.append(f"view captured {view.payment.captured}, processor {world.captured}")
    if view.payment.refunded.amount_minor != world.refunded:
        problems.append(f"view refunded {view.payment.refunded}, processor {world.refunded}")
    if view.status == BookingStatus.CONFIRMED:
        problems += _confirmed_problems(view, fake)
    else:
        problems += _undone_problems(view, fake)
    return problems


def _confirmed_problems(view: BookingView, fake: FakeBookingActivities) -> list[str]:
    world = fake.world
    problems: list[str] = []
    live = set(world.live_bookings())
    for item in view.items:
        if not item.optional and (
            world.bookings.get(item.item_id) != "confirmed"
            or world.holds.get(item.item_id) != "confirmed"
        ):
            problems.append(f"CONFIRMED but {item.item_id} is not booked at its supplier")
        if (item.status == ItemStatus.CONFIRMED) != (item.item_id in live):
            problems.append(f"{item.item_id} is {item.status.value} but the supplier disagrees")
    expected = sum(world.prices[item] for item in live)
    if world.payment != "captured" or world.captured != expected:
        problems.append(
            f"CONFIRMED: captured {world.captured} ({world.payment}), "
            f"confirmed items cost {expected}"
        )
    if world.refunded:
        problems.append(f"CONFIRMED but {world.refunded} refunded")
    return problems


def _undone_problems(view: BookingView, fake: FakeBookingActivities) -> list[str]:
    """FAILED or CANCELLED: nothing booked, the payment voided, or refunded less the fees kept."""
    world = fake.world
    problems: list[str] = []
    if world.live_bookings():
        problems.append(f"{view.status.value} but still booked: {world.live_bookings()}")
    if world.payment == "authorized":
        problems.append(f"{view.status.value} but the authorization is left live")
    if world.payment == "voided" and view.payment.status != PaymentStatus.VOIDED:
        problems.append(f"voided, but the view says {view.payment.status.value}")
    fees = sum(world.fees.values())
    fees_kept = view.payment.fees_kept.amount_minor
    if reached_confirmation(fake) and view.status == BookingStatus.CANCELLED:
        # Cancelled after confirmation: the items' fees are the customer's.
        if fees_kept != fees:
            problems.append(
                f"cancelled after confirmation: fees kept {fees_kept}, suppliers {fees}"
            )
    else:
        # Never confirmed: the customer gets everything back, the merchant absorbs the fees.
        if fees_kept:
            problems.append(f"never confirmed, yet the customer was charged {fees_kept} in fees")
        absorbed = view.payment.fees_absorbed
        if fees and (absorbed is None or absorbed.amount_minor != fees):
            problems.append(f"suppliers kept {fees} in fees, fees absorbed {absorbed}")
    if world.captured and world.refunded != world.captured - fees_kept:
        problems.append(
            f"captured {world.captured}, refunded {world.refunded}, fees kept {fees_kept}: "
            "refunded must be captured - fees kept"
        )
    return problems
