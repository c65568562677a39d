"""The invariant checker over hand-made read models: each broken rule is reported, and only it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from passage.checker import BookingEvidence, Violation, check
from passage.cli.engine import show_violations
from passage.cli.output import Output
from workflows.contracts import (
    AttentionView,
    BookingView,
    ItemView,
    PaymentView,
    TimelineEntry,
)
from workflows.model import BookingStatus, ItemStatus, Money, PaymentStatus

BOOKING = "bk_checker"
EUR = "EUR"
FLIGHT, HOTEL = 30_000, 20_000
TOTAL = FLIGHT + HOTEL
FEE = 3_000  # the flight keeps 10 % once cancelled
INVENTORY = ({"offer_id": "fl-1", "capacity": 10, "free": 9, "held": 0, "booked": 1},)


def eur(amount: int) -> Money:
    return Money(amount, EUR)


def entry(seq: int, step: str, outcome: str, detail: str = "") -> TimelineEntry:
    return TimelineEntry(seq, "2026-12-01T10:00:00+00:00", step, outcome, detail)


def item(item_id: str, price: int, status: ItemStatus, *, optional: bool = False) -> ItemView:
    return ItemView(
        item_id=item_id,
        offer_id=f"of-{item_id}",
        quantity=1,
        optional=optional,
        status=status,
        price=eur(price),
        supplier="sup",
        hold_ref=f"H-{item_id}",
        supplier_ref=f"B-{item_id}" if status == ItemStatus.CONFIRMED else None,
    )


def payment(
    status: PaymentStatus, captured: int = 0, refunded: int = 0, fees_kept: int = 0
) -> PaymentView:
    return PaymentView(
        status=status,
        authorized=eur(TOTAL),
        captured=eur(captured),
        refunded=eur(refunded),
        fees_kept=eur(fees_kept),
        payment_intent_id="pi_1",
        fees_absorbed=eur(0),
    )


def view(
    status: BookingStatus,
    items: tuple[ItemView, ...],
    pay: PaymentView,
    *timeline: TimelineEntry,
    attention: AttentionView | None = None,
) -> BookingView:
    return BookingView(
        booking_id=BOOKING,
        status=status,
        step=status.value,
        currency=EUR,
        expected_total=eur(TOTAL),
        quoted_total=eur(TOTAL),
        items=items,
        payment=pay,
        timeline=timeline or (entry(1, status.value, "status", status.value),),
        error=None,
        attention=attention,
        version=len(timeline) or 1,
        updated_at="2026-12-01T10:00:00+00:00",
        created_at="2026-12-01T10:00:00+00:00",
        customer_ref="cref",
    )


def hold_row(item_id: str, status: str) -> dict[str, Any]:
    return {"ref": f"H-{item_id}", "client_ref": f"{BOOKING}:{item_id}:hold", "status": status}


def booking_row(item_id: str, status: str, ref: str | None = None) -> dict[str, Any]:
    return {
        "ref": ref or f"B-{item_id}",
        "hold_client_ref": f"{BOOKING}:{item_id}:hold",
        "status": status,
    }


def intent(status: str, received: int = 0, refunded: int = 0, pi_id: str = "pi_1") -> Any:
    charge = {"amount_refunded": refunded}
    return {"id": pi_id, "status": status, "amount": TOTAL, "amount_received": received} | {
        "latest_charge": charge
    }


def confirmed() -> BookingEvidence:
    booked = view(
        BookingStatus.CONFIRMED,
        (item("it_1", FLIGHT, ItemStatus.CONFIRMED), item("it_2", HOTEL, ItemStatus.CONFIRMED)),
        payment(PaymentStatus.CAPTURED, captured=TOTAL),
        entry(1, "CONFIRMED", "status", "CONFIRMED"),
    )
    return BookingEvidence(
        BOOKING,
        booked,
        booked,
        holds=(hold_row("it_1", "confirmed"), hold_row("it_2", "confirmed")),
        supplier_bookings=(booking_row("it_1", "confirmed"), booking_row("it_2", "confirmed")),
        payment_intents=(intent("succeeded", received=TOTAL),),
    )


def failed() -> BookingEvidence:
    undone = view(
        BookingStatus.FAILED,
        (item("it_1", FLIGHT, ItemStatus.RELEASED), item("it_2", HOTEL, ItemStatus.RELEASED)),
        payment(PaymentStatus.VOIDED),
    )
    return BookingEvidence(
        BOOKING,
        undone,
        undone,
        holds=(hold_row("it_1", "released"), hold_row("it_2", "released")),
        payment_intents=(intent("canceled"),),
    )


def cancelled_after_confirmation() -> BookingEvidence:
    cancelled = view(
        BookingStatus.CANCELLED,
        (item("it_1", FLIGHT, ItemStatus.CANCELLED), item("it_2", HOTEL, ItemStatus.CANCELLED)),
        payment(
            PaymentStatus.PARTIALLY_REFUNDED, captured=TOTAL, refunded=TOTAL - FEE, fees_kept=FEE
        ),
        entry(1, "CONFIRMED", "status", "CONFIRMED"),
        entry(2, "CANCEL", "requested", "plans changed"),
        entry(3, "CANCELLED", "status", "CANCELLED"),
    )
    return BookingEvidence(
        BOOKING,
        cancelled,
        cancelled,
        holds=(hold_row("it_1", "confirmed"), hold_row("it_2", "confirmed")),
        supplier_bookings=(booking_row("it_1", "cancelled"), booking_row("it_2", "cancelled")),
        payment_intents=(intent("succeeded", received=TOTAL, refunded=TOTAL - FEE),),
    )


def with_view(evidence: BookingEvidence, **changes: Any) -> BookingEvidence:
    """The evidence with the same change made to the engine's and the ledger's view."""
    assert evidence.view is not None
    changed = dataclasses.replace(evidence.view, **changes)
    return dataclasses.replace(evidence, view=changed, ledger=changed)


def rules(violations: list[Violation]) -> set[str]:
    return {violation.rule for violation in violations}


@pytest.mark.parametrize("evidence", [confirmed(), failed(), cancelled_after_confirmation()])
def test_a_clean_booking_and_inventory_are_reported_clean(evidence: BookingEvidence) -> None:
    assert check([evidence], INVENTORY) == []


def test_a_second_payment_intent_is_reported() -> None:
    evidence = confirmed()
    second = dataclasses.replace(
        evidence, payment_intents=(*evidence.payment_intents, intent("canceled", pi_id="pi_2"))
    )
    [violation] = check([second])
    assert violation == Violation(BOOKING, "one-payment-intent", violation.detail)
    assert "pi_2" in violation.detail


def test_an_authorized_booking_without_a_payment_intent_is_reported() -> None:
    evidence = dataclasses.replace(confirmed(), payment_intents=())
    assert "one-payment-intent" in rules(check([evidence]))


def test_a_confirmed_booking_with_an_unconfirmed_required_item_is_reported() -> None:
    evidence = confirmed()
    assert evidence.view is not None
    items = (evidence.view.items[0], item("it_2", HOTEL, ItemStatus.RELEASED))
    evidence = dataclasses.replace(
        with_view(evidence, items=items), supplier_bookings=evidence.supplier_bookings[:1]
    )
    found = rules(check([evidence]))
    assert "items-confirmed" in found and "captured-total" in found


def test_an_optional_item_left_out_of_a_confirmed_booking_is_fine() -> None:
    evidence = confirmed()
    assert evidence.view is not None
    items = (evidence.view.items[0], item("it_2", HOTEL, ItemStatus.RELEASED, optional=True))
    evidence = with_view(evidence, items=items, payment=payment(PaymentStatus.CAPTURED, FLIGHT))
    evidence = dataclasses.replace(
        evidence,
        supplier_bookings=evidence.supplier_bookings[:1],
        payment_intents=(intent("succeeded", received=FLIGHT),),
    )
    assert check([evidence]) == []


def test_an_item_booked_twice_or_not_at_all_at_its_supplier_is_reported() -> None:
    evidence = confirmed()
    twice = dataclasses.replace(
        evidence,
        supplier_bookings=(*evidence.supplier_bookings, booking_row("it_1", "confirmed", "B-x")),
    )
    never = dataclasses.replace(evidence, supplier_bookings=evidence.supplier_bookings[1:])
    assert rules(check([twice])) == {"confirmed-once"}
    assert rules(check([never])) == {"confirmed-once"}


def test_a_capture_that_is_not_the_confirmed_items_sum_is_reported() -> None:
    evidence = with_view(confirmed(), payment=payment(PaymentStatus.CAPTURED, captured=FLIGHT))
    evidence = dataclasses.replace(evidence, payment_intents=(intent("succeeded", FLIGHT),))
    assert rules(check([evidence])) == {"captured-total"}


def test_stripe_receiving_another_amount_than_the_view_is_reported() -> None:
    evidence = dataclasses.replace(confirmed(), payment_intents=(intent("succeeded", FLIGHT),))
    assert rules(check([evidence])) == {"stripe-captured"}


def test_a_view_payment_status_stripe_disagrees_with_is_reported() -> None:
    evidence = dataclasses.replace(failed(), payment_intents=(intent("requires_capture"),))
    found = check([evidence])
    assert rules(found) == {"payment-status", "payment-undone"}


@pytest.mark.parametrize("status", ["active"])
def test_a_hold_left_live_after_a_failure_is_reported(status: str) -> None:
    evidence = failed()
    evidence = dataclasses.replace(evidence, holds=(*evidence.holds, hold_row("it_9", status)))
    [violation] = check([evidence])
    assert violation.rule == "nothing-live" and f"{BOOKING}:it_9:hold" in violation.detail


def test_a_supplier_booking_left_live_after_a_cancel_is_reported() -> None:
    evidence = cancelled_after_confirmation()
    live = (booking_row("it_1", "confirmed"), evidence.supplier_bookings[1])
    assert rules(check([dataclasses.replace(evidence, supplier_bookings=live)])) == {"nothing-live"}


def test_a_refund_that_is_not_captured_less_fees_is_reported() -> None:
    evidence = cancelled_after_confirmation()
    short = payment(
        PaymentStatus.PARTIALLY_REFUNDED, TOTAL, refunded=TOTAL - 2 * FEE, fees_kept=FEE
    )
    evidence = dataclasses.replace(
        with_view(evidence, payment=short),
        payment_intents=(intent("succeeded", TOTAL, refunded=TOTAL - 2 * FEE),),
    )
    assert rules(check([evidence])) == {"payment-undone"}


def test_stripe_refunding_another_amount_than_the_view_is_reported() -> None:
    evidence = dataclasses.replace(
        cancelled_after_confirmation(), payment_intents=(intent("succeeded", TOTAL, TOTAL),)
    )
    assert {"stripe-refunded", "payment-undone", "payment-status"} <= rules(check([evidence]))


def test_fees_kept_from_a_booking_that_never_confirmed_are_reported() -> None:
    evidence = failed()
    charged = payment(PaymentStatus.PARTIALLY_REFUNDED, TOTAL, refunded=TOTAL - FEE, fees_kept=FEE)
    evidence = dataclasses.replace(
        with_view(evidence, payment=charged),
        payment_intents=(intent("succeeded", TOTAL, refunded=TOTAL - FEE),),
    )
    [violation] = check([evidence])
    assert violation.rule == "payment-undone" and "before confirmation" in violation.detail


def test_an_authorization_left_live_after_a_failure_is_reported() -> None:
    evidence = with_view(failed(), payment=payment(PaymentStatus.AUTHORIZED))
    evidence = dataclasses.replace(evidence, payment_intents=(intent("requires_capture"),))
    assert rules(check([evidence])) == {"payment-undone"}


def test_a_ledger_that_disagrees_with_the_engine_is_reported() -> None:
    evidence = confirmed()
    assert evidence.view is not None
    ledger = dataclasses.replace(
        evidence.view,
        status=BookingStatus.CAPTURING,
        payment=payment(PaymentStatus.AUTHORIZED),
        items=(evidence.view.items[0], item("it_2", HOTEL, ItemStatus.HELD)),
    )
    found = check([dataclasses.replace(evidence, ledger=ledger)])
    assert [v.rule for v in found] == ["ledger"] * 3


def test_a_booking_the_ledger_never_recorded_is_reported() -> None:
    assert rules(check([dataclasses.replace(confirmed(), ledger=None)])) == {"ledger"}


def test_a_booking_still_moving_after_the_drain_is_reported() -> None:
    nothing_yet = dataclasses.replace(payment(PaymentStatus.NONE), authorized=eur(0))
    holding = view(BookingStatus.HOLDING, (item("it_1", FLIGHT, ItemStatus.HELD),), nothing_yet)
    evidence = BookingEvidence(BOOKING, holding, holding, holds=(hold_row("it_1", "active"),))
    assert rules(check([evidence])) == {"settled"}


def test_needs_attention_needs_a_step_and_a_reason() -> None:
    stuck = with_view(
        failed(),
        status=BookingStatus.NEEDS_ATTENTION,
        attention=AttentionView(step="VOID", reason="", since="2026-12-01T10:00:00+00:00"),
    )
    assert rules(check([stuck])) == {"attention"}
    answered = with_view(
        stuck, attention=AttentionView("VOID", "card processor refused", "2026-12-01")
    )
    assert check([answered]) == []


def test_an_accepted_cancel_must_end_cancelled() -> None:
    evidence = confirmed()
    assert evidence.view is not None
    timeline = (*evidence.view.timeline, entry(2, "CANCEL", "requested", "by staff"))
    assert rules(check([with_view(evidence, timeline=timeline)])) == {"cancel-honoured"}


def test_inventory_that_does_not_add_up_is_reported() -> None:
    rows = ({"offer_id": "fl-1", "capacity": 10, "free": 9, "held": 1, "booked": 1},)
    assert check([], rows) == [Violation(None, "inventory", check([], rows)[0].detail)]
    assert "fl-1" in check([], rows)[0].detail


def test_passage_check_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    show_violations(
        3, [Violation(BOOKING, "nothing-live", "FAILED but holds are live")], Output(False)
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0].split() == ["BOOKING", "RULE", "DETAIL"]
    assert lines[2].split()[:2] == [BOOKING, "nothing-live"]
    assert lines[-1] == "3 bookings checked: 1 violations"
    show_violations(3, [], Output(False))
    assert capsys.readouterr().out == "3 bookings checked: every invariant holds\n"
