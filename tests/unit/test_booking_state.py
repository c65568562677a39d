"""BookingState's rules without Temporal: confirmation order, cancellability, fees, the view."""

from __future__ import annotations

from datetime import UTC, datetime

from workflows import search
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemStatus,
    Money,
)
from workflows.state import BookingState

EUR = "EUR"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _state(*terms: CancellationTerms | None) -> BookingState:
    items = tuple(
        BookingItemRequest(f"it_{n}", f"of-{n}", 1, Money(10_000, EUR))
        for n in range(1, len(terms) + 1)
    )
    request = BookingRequest(
        booking_id="bk_state",
        customer_ref="cust",
        customer_email="ada@example.com",
        customer_name="Ada",
        currency=EUR,
        items=items,
        payment_method="pm_card_visa",
        created_at=NOW.isoformat(),
    )
    state = BookingState.new(request)
    for n, item_terms in enumerate(terms, start=1):
        state.update_item(f"it_{n}", cancellation=item_terms, status=ItemStatus.HELD)
    return state


def test_confirmation_order_puts_the_costly_undos_last() -> None:
    state = _state(
        CancellationTerms(cancellable=False),
        CancellationTerms(fee_bps=1_000),
        CancellationTerms(free_until="2999-01-01T00:00:00+00:00", fee_bps=5_000),
        CancellationTerms(refundable=False),
        None,
    )
    groups = [[view.item_id for view in group] for group in state.confirmation_order(NOW)]
    # Free first (together), then those with a fee, then each costly one on its own, the
    # non-cancellable one after the non-refundable one.
    assert groups == [["it_3", "it_5"], ["it_2"], ["it_4"], ["it_1"]]
    assert state.order_puts_uncancellable_last(NOW)
    legacy = state.confirmation_order(NOW, uncancellable_last=False)
    assert [[view.item_id for view in group] for group in legacy][2:] == [["it_1"], ["it_4"]]


def test_the_order_changes_only_where_a_non_cancellable_item_came_first() -> None:
    already_last = _state(CancellationTerms(refundable=False), CancellationTerms(cancellable=False))
    assert not already_last.order_puts_uncancellable_last(NOW)
    assert not _state(CancellationTerms(cancellable=False), None).order_puts_uncancellable_last(NOW)


def test_a_fee_that_starts_later_is_free_now() -> None:
    state = _state(CancellationTerms(free_until="2026-12-02T00:00:00+00:00", fee_bps=5_000))
    assert [[v.item_id for v in g] for g in state.confirmation_order(NOW)] == [["it_1"]]
    later = datetime(2026, 12, 3, tzinfo=UTC)
    assert state.item("it_1").cancellation is not None
    assert state.item("it_1").cancellation.fee_for(Money(10_000, EUR), later).amount_minor == 5_000


def test_cancellability_after_confirmation() -> None:
    state = _state(CancellationTerms(), CancellationTerms(cancellable=False))
    for item_id in ("it_1", "it_2"):
        state.update_item(item_id, status=ItemStatus.CONFIRMED)
    assert (
        state.cancellable_after_confirmation() == "item it_2 cannot be cancelled (supplier terms)"
    )
    assert state.still_cancellable()  # it_1 still gives money back

    only_costly = _state(CancellationTerms(refundable=False), CancellationTerms(cancellable=False))
    for item_id in ("it_1", "it_2"):
        only_costly.update_item(item_id, status=ItemStatus.CONFIRMED)
    assert not only_costly.still_cancellable()


def test_absorbed_fees_add_up_and_are_not_charged() -> None:
    state = _state(None)
    state.absorb_fee(Money(300, EUR))
    state.absorb_fee(Money(200, EUR))
    assert state.payment.fees_absorbed == Money(500, EUR)
    assert state.payment.fees_kept == Money(0, EUR)


def test_the_view_and_search_attributes_follow_the_state() -> None:
    state = _state(None, None)
    state.set_status(BookingStatus.HOLDING, "HOLD", NOW.isoformat())
    state.update_item("it_1", supplier="aurora-air")
    state.update_item("it_2", supplier="harbour-hotels", status=ItemStatus.FAILED)
    view = state.view(NOW.isoformat())
    assert view.status == BookingStatus.HOLDING
    assert [entry.step for entry in view.timeline] == ["HOLD"]
    assert view.version == 1
    assert [view.item_id for view in state.active_items()] == ["it_1"]
    attributes = state.search_attributes()
    assert attributes.get(search.BOOKING_STATUS) == "HOLDING"
    assert attributes.get(search.BOOKING_STEP) == "HOLD"
    assert attributes.get(search.NEEDS_ATTENTION) is False
    assert attributes.get(search.SUPPLIERS) == ["aurora-air", "harbour-hotels"]
    assert attributes.get(search.TOTAL_MINOR) == 20_000


def test_a_resumed_state_is_the_view_it_was_carried_in() -> None:
    state = _state(CancellationTerms())
    state.update_item("it_1", status=ItemStatus.CONFIRMED)
    state.set_status(BookingStatus.CONFIRMED, "CONFIRMED", NOW.isoformat())
    view = state.view(NOW.isoformat())
    resumed = BookingState.resumed(state.request, view)
    assert resumed.view(NOW.isoformat()) == view
