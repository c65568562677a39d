"""The invariant checker: what "nothing lost" means (CONTRACT.md, Invariants), over read models.

Pure: `check` takes what the engine, the ledger, the supplier simulator and Stripe report about
each booking (`BookingEvidence`) plus the simulator's inventory rows, and returns every
`Violation` it finds. Nothing here does I/O; `passage.collector` gathers the evidence and
`passage check` prints the answer.

The evidence is read after a drain: every booking should have reached a terminal status or
`NEEDS_ATTENTION`. A booking still moving is itself reported, and its world is not judged (its
holds and authorization are legitimately live). A `NEEDS_ATTENTION` booking is judged on its
attention, its PaymentIntents and the ledger only: an operator is about to change its world.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workflows.contracts import BookingView, client_ref
from workflows.model import BookingStatus, ItemStatus, PaymentStatus

Json = Mapping[str, Any]

#: Simulator rows that still take stock (`GET /_sim/ledger`).
LIVE_HOLD = "active"
LIVE_BOOKING = "confirmed"

#: What the booking view's payment status may be for each PaymentIntent status.
_VIEW_STATUSES_OF_INTENT = {
    "requires_payment_method": {PaymentStatus.NONE},
    "requires_confirmation": {PaymentStatus.NONE},
    "requires_action": {PaymentStatus.NONE},
    "processing": {PaymentStatus.NONE},
    "requires_capture": {PaymentStatus.AUTHORIZED},
    # A 3-D Secure or declined intent is cancelled too; only an authorization becomes VOIDED.
    "canceled": {PaymentStatus.VOIDED, PaymentStatus.NONE},
}


@dataclass(frozen=True)
class Violation:
    """One broken invariant: the booking (None for the inventory), the rule, what was seen."""

    booking_id: str | None
    rule: str
    detail: str


@dataclass(frozen=True)
class BookingEvidence:
    """Everything read about one booking.

    Attributes:
        booking_id: the booking.
        view: the booking as the engine reports it (the workflow's view), None if unknown.
        ledger: the ledger's view of it, None if never recorded.
        holds: the simulator's hold rows made for it (`client_ref` starts with the booking id).
        supplier_bookings: the simulator's booking rows made from those holds.
        payment_intents: the Stripe PaymentIntents whose `metadata.booking_id` is the booking.
    """

    booking_id: str
    view: BookingView | None
    ledger: BookingView | None
    holds: tuple[Json, ...] = ()
    supplier_bookings: tuple[Json, ...] = ()
    payment_intents: tuple[Json, ...] = ()


def check(bookings: Sequence[BookingEvidence], inventory: Sequence[Json] = ()) -> list[Violation]:
    """Every violation in the bookings and the simulator's inventory rows, bookings first."""
    violations = [v for evidence in bookings for v in _booking_violations(evidence)]
    return violations + list(_inventory_violations(inventory))


def amount_refunded(intent: Json) -> int:
    """What Stripe refunded on an intent: its own field, else its (expanded) latest charge's."""
    if "amount_refunded" in intent:
        return int(intent["amount_refunded"] or 0)
    charge = intent.get("latest_charge")
    return int(charge.get("amount_refunded") or 0) if isinstance(charge, Mapping) else 0


def reached_confirmation(view: BookingView) -> bool:
    """Whether the booking was CONFIRMED at some point (its timeline records every status)."""
    return any(
        entry.outcome == "status" and entry.detail == BookingStatus.CONFIRMED.value
        for entry in view.timeline
    )


def cancel_requested(view: BookingView) -> bool:
    """Whether a cancel was accepted: the workflow records it as `CANCEL requested`."""
    return any(entry.step == "CANCEL" and entry.outcome == "requested" for entry in view.timeline)


# --- per booking ---------------------------------------------------------------------------------


def _booking_violations(evidence: BookingEvidence) -> Iterator[Violation]:
    booking_id = evidence.booking_id
    for rule, detail in _problems(evidence):
        yield Violation(booking_id, rule, detail)


def _problems(evidence: BookingEvidence) -> Iterator[tuple[str, str]]:
    view = evidence.view or evidence.ledger
    if view is None:
        yield "known", "neither the engine nor the ledger knows the booking"
        return
    yield from _ledger_problems(evidence)
    yield from _settled_problems(view)
    yield from _intent_count_problems(view, evidence.payment_intents)
    if not (view.status.is_terminal or view.status == BookingStatus.NEEDS_ATTENTION):
        return
    yield from _stripe_problems(view, evidence.payment_intents)
    if view.status == BookingStatus.CONFIRMED:
        yield from _confirmed_problems(view, evidence)
    elif view.status in (BookingStatus.FAILED, BookingStatus.CANCELLED):
        yield from _undone_problems(view, evidence)


def _ledger_problems(evidence: BookingEvidence) -> Iterator[tuple[str, str]]:
    """The ledger agrees with the engine on the status, the payment and every item's status."""
    view, ledger = evidence.view, evidence.ledger
    if ledger is None:
        yield "ledger", "the ledger has no record of the booking"
        return
    if view is None:
        return  # the workflow is gone: the ledger is all there is
    if ledger.status != view.status:
        yield "ledger", f"ledger says {ledger.status.value}, engine {view.status.value}"
    # The 3-D Secure secret is never written to the ledger.
    ledger_payment = _payment_fields(ledger)
    view_payment = _payment_fields(view)
    if ledger_payment != view_payment:
        yield "ledger", f"ledger payment {ledger_payment}, engine {view_payment}"
    ledger_items = {item.item_id: item.status.value for item in ledger.items}
    view_items = {item.item_id: item.status.value for item in view.items}
    if ledger_items != view_items:
        yield "ledger", f"ledger items {ledger_items}, engine {view_items}"


def _payment_fields(view: BookingView) -> dict[str, Any]:
    payment = view.payment
    return {
        "status": payment.status.value,
        "authorized": payment.authorized.amount_minor,
        "captured": payment.captured.amount_minor,
        "refunded": payment.refunded.amount_minor,
        "fees_kept": payment.fees_kept.amount_minor,
        "payment_intent_id": payment.payment_intent_id,
    }


def _settled_problems(view: BookingView) -> Iterator[tuple[str, str]]:
    if view.status == BookingStatus.NEEDS_ATTENTION:
        attention = view.attention
        if attention is None or not attention.step or not attention.reason:
            yield "attention", f"NEEDS_ATTENTION without a step and a reason: {attention}"
    elif not view.status.is_terminal:
        yield "settled", f"still {view.status.value} (step {view.step}) after the drain"
    if cancel_requested(view) and view.status not in (
        BookingStatus.CANCELLED,
        BookingStatus.NEEDS_ATTENTION,
    ):
        yield "cancel-honoured", f"a cancel was accepted but the booking is {view.status.value}"


def _intent_count_problems(view: BookingView, intents: Sequence[Json]) -> Iterator[tuple[str, str]]:
    """At most one PaymentIntent per booking, and exactly one once it authorized."""
    ids = [str(intent.get("id")) for intent in intents]
    if len(intents) > 1:
        yield "one-payment-intent", f"{len(intents)} PaymentIntents: {', '.join(ids)}"
    elif view.payment.authorized.amount_minor and not intents:
        yield "one-payment-intent", "authorized, yet Stripe has no PaymentIntent for the booking"
    known = view.payment.payment_intent_id
    if known is not None and intents and known not in ids:
        yield "one-payment-intent", f"the view's PaymentIntent {known} is not the booking's"


def _stripe_problems(view: BookingView, intents: Sequence[Json]) -> Iterator[tuple[str, str]]:
    """The view's payment status and amounts are Stripe's."""
    payment = view.payment
    intent = _the_intent(view, intents)
    if intent is None:
        if payment.status != PaymentStatus.NONE or payment.captured.amount_minor:
            yield "payment-status", f"view says {payment.status.value}, Stripe has no intent"
        return
    status = str(intent.get("status"))
    received = int(intent.get("amount_received") or 0)
    refunded = amount_refunded(intent)
    expected = _VIEW_STATUSES_OF_INTENT.get(status) or {_captured_status(received, refunded)}
    if payment.status not in expected:
        yield (
            "payment-status",
            f"view says {payment.status.value}, Stripe's {intent.get('id')} is {status} "
            f"(received {received}, refunded {refunded})",
        )
    if payment.captured.amount_minor != received:
        yield "stripe-captured", f"view captured {payment.captured.amount_minor}, Stripe {received}"
    if payment.refunded.amount_minor != refunded:
        yield "stripe-refunded", f"view refunded {payment.refunded.amount_minor}, Stripe {refunded}"


def _the_intent(view: BookingView, intents: Sequence[Json]) -> Json | None:
    for intent in intents:
        if intent.get("id") == view.payment.payment_intent_id:
            return intent
    return intents[0] if intents else None


def _captured_status(received: int, refunded: int) -> PaymentStatus:
    if not refunded:
        return PaymentStatus.CAPTURED
    if refunded >= received:
        return PaymentStatus.REFUNDED
    return PaymentStatus.PARTIALLY_REFUNDED


def _confirmed_problems(view: BookingView, evidence: BookingEvidence) -> Iterator[tuple[str, str]]:
    """Every non-optional item booked exactly once at its supplier; captured = their sum."""
    live = _live_bookings_by_item(view, evidence.supplier_bookings)
    for item in view.items:
        if not item.optional and item.status != ItemStatus.CONFIRMED:
            yield "items-confirmed", f"CONFIRMED but {item.item_id} is {item.status.value}"
        rows = live.get(item.item_id, [])
        if item.status == ItemStatus.CONFIRMED:
            if len(rows) != 1:
                refs = [str(row.get("ref")) for row in rows]
                yield (
                    "confirmed-once",
                    f"{item.item_id} is CONFIRMED; live supplier bookings {refs or 'none'}",
                )
            elif item.supplier_ref and rows[0].get("ref") != item.supplier_ref:
                yield (
                    "confirmed-once",
                    f"{item.item_id} is booked as {rows[0].get('ref')}, "
                    f"the view says {item.supplier_ref}",
                )
        elif rows:
            yield (
                "confirmed-once",
                f"{item.item_id} is {item.status.value} but booked at its supplier",
            )
    yield from _live_hold_problems(view, evidence.holds)
    confirmed = sum(i.price.amount_minor for i in view.items if i.status == ItemStatus.CONFIRMED)
    captured = view.payment.captured.amount_minor
    if captured != confirmed:
        yield "captured-total", f"captured {captured}, the confirmed items cost {confirmed}"
    if view.payment.refunded.amount_minor:
        yield "captured-total", f"CONFIRMED but {view.payment.refunded.amount_minor} refunded"


def _undone_problems(view: BookingView, evidence: BookingEvidence) -> Iterator[tuple[str, str]]:
    """FAILED or CANCELLED: nothing live at a supplier; the payment voided or refunded per terms."""
    status = view.status.value
    yield from _live_hold_problems(view, evidence.holds)
    live = [row for row in evidence.supplier_bookings if row.get("status") == LIVE_BOOKING]
    if live:
        yield "nothing-live", f"{status} but still booked: {[row.get('ref') for row in live]}"
    payment = view.payment
    captured, refunded = payment.captured.amount_minor, payment.refunded.amount_minor
    fees_kept = payment.fees_kept.amount_minor
    after_confirmation = view.status == BookingStatus.CANCELLED and reached_confirmation(view)
    if not after_confirmation and fees_kept:
        yield "payment-undone", f"{status} before confirmation, yet {fees_kept} kept in fees"
    if captured and refunded != captured - fees_kept:
        yield (
            "payment-undone",
            f"captured {captured}, refunded {refunded}, fees kept {fees_kept}: "
            "refunded must be captured - fees kept",
        )
    intent = _the_intent(view, evidence.payment_intents)
    if intent is None:
        return
    intent_status = str(intent.get("status"))
    received = int(intent.get("amount_received") or 0)
    if intent_status == "succeeded":
        if amount_refunded(intent) != received - fees_kept:
            yield (
                "payment-undone",
                f"Stripe captured {received} and refunded {amount_refunded(intent)}, "
                f"fees kept {fees_kept}",
            )
    elif intent_status != "canceled":
        yield "payment-undone", f"{status} but PaymentIntent {intent.get('id')} is {intent_status}"


def _live_hold_problems(view: BookingView, holds: Sequence[Json]) -> Iterator[tuple[str, str]]:
    live = [row for row in holds if row.get("status") == LIVE_HOLD]
    if live:
        refs = [f"{row.get('ref')} ({row.get('client_ref')})" for row in live]
        yield "nothing-live", f"{view.status.value} but holds are live: {refs}"


def _live_bookings_by_item(
    view: BookingView, supplier_bookings: Sequence[Json]
) -> dict[str, list[Json]]:
    hold_refs = {client_ref(view.booking_id, item.item_id, "hold"): item for item in view.items}
    found: dict[str, list[Json]] = {}
    for row in supplier_bookings:
        item = hold_refs.get(str(row.get("hold_client_ref")))
        if row.get("status") == LIVE_BOOKING and item is not None:
            found.setdefault(item.item_id, []).append(row)
    return found


# --- the simulator -------------------------------------------------------------------------------


def _inventory_violations(inventory: Sequence[Json]) -> Iterator[Violation]:
    for row in inventory:
        free, held, booked = (int(row.get(name) or 0) for name in ("free", "held", "booked"))
        capacity = int(row.get("capacity") or 0)
        if free + held + booked != capacity or min(free, held, booked) < 0:
            yield Violation(
                None,
                "inventory",
                f"{row.get('offer_id')}: free {free} + held {held} + booked {booked}, "
                f"capacity {capacity}",
            )
