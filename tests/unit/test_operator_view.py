"""The texts operators read in the Temporal UI, built from a booking's state without Temporal."""

from __future__ import annotations

from workflows import operator_view
from workflows.contracts import AttentionView, BookingError
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    Money,
    Traveller,
)
from workflows.state import BookingState

NOW = "2026-12-02T10:00:00+00:00"


def _state(*prices: int) -> BookingState:
    request = BookingRequest(
        booking_id="bk_ops",
        customer_ref="cref",
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        currency="EUR",
        items=tuple(
            BookingItemRequest(f"it_{n}", f"of-{n}", 1, Money(price, "EUR"))
            for n, price in enumerate(prices, start=1)
        ),
        payment_method="pm_card_visa",
        travellers=(Traveller("Ada", "Lovelace", "1990-12-10", "X1234567"),),
        created_at="2026-12-02T09:00:00+00:00",
    )
    return BookingState.new(request)


def test_money_is_written_in_its_currency_s_minor_units() -> None:
    assert operator_view.money(Money(123_456, "EUR")) == "1,234.56 EUR"
    assert operator_view.money(Money(5, "EUR")) == "0.05 EUR"
    assert operator_view.money(Money(-250, "EUR")) == "-2.50 EUR"
    assert operator_view.money(Money(1_500, "JPY")) == "1,500 JPY"
    assert operator_view.money(Money(1_234, "KWD")) == "1.234 KWD"


def test_the_summary_counts_items_and_totals_them() -> None:
    assert operator_view.booking_summary(_state(10_000).request) == "1 item · 100.00 EUR"
    assert operator_view.booking_summary(_state(10_000, 2_550).request) == "2 items · 125.50 EUR"


def test_details_say_what_the_booking_waits_for_and_since_when() -> None:
    state = _state(10_000, 5_000)
    state.update_item("it_1", supplier="aurora-air")
    state.set_status(BookingStatus.AWAITING_PAYMENT_ACTION, "PAYMENT_ACTION", NOW)
    details = operator_view.current_details(state, NOW)
    assert details.startswith(f"**AWAITING_PAYMENT_ACTION** · step `PAYMENT_ACTION` · since {NOW}")
    assert "Suppliers: aurora-air" in details
    assert f"Waiting for the customer's 3-D Secure authentication since {NOW}" in details


def test_details_of_a_stuck_booking_name_the_step_the_reason_and_the_last_error() -> None:
    state = _state(10_000)
    state.error = BookingError("SOLD_OUT", "supplier refused (409 SOLD_OUT)")
    state.attention = AttentionView("CANCEL it_1", "NOT_CANCELLABLE: refused", NOW, "it_1")
    state.set_status(BookingStatus.NEEDS_ATTENTION, "CANCEL it_1", NOW)
    details = operator_view.current_details(state, NOW)
    assert f"Waiting for an operator since {NOW}: `CANCEL it_1` failed with NOT_CANCELLABLE" in (
        details
    )
    assert "Last error: SOLD_OUT: supplier refused (409 SOLD_OUT)" in details
    for personal in ("Ada", "Lovelace", "example.com", "X1234567", "1990-12-10"):
        assert personal not in details
