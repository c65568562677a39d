"""The pure domain and saga plan: money, cancellation fees, the compensation stack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workflows.model import BookingStatus, CancellationTerms, Money
from workflows.saga import Compensation, Compensations, UndoKind, price_moved

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_money_adds_within_one_currency_only() -> None:
    assert Money(100, "EUR") + Money(250, "EUR") == Money(350, "EUR")
    assert Money(100, "EUR") - Money(30, "EUR") == Money(70, "EUR")
    assert Money.total([Money(1, "EUR"), Money(2, "EUR")], "EUR") == Money(3, "EUR")
    with pytest.raises(ValueError, match="currency mismatch"):
        _ = Money(100, "EUR") + Money(100, "USD")


@pytest.mark.parametrize(
    ("terms", "fee"),
    [
        (CancellationTerms(), 0),
        (CancellationTerms(fee_bps=1_000), 3_333),  # 10 % of 33 333, rounded down
        (CancellationTerms(free_until="2026-12-01T00:00:00+00:00", fee_bps=1_000), 0),
        (CancellationTerms(free_until="2026-11-01T00:00:00+00:00", fee_bps=2_500), 8_333),
        (CancellationTerms(refundable=False), 33_333),
    ],
)
def test_cancellation_fee_follows_the_terms(terms: CancellationTerms, fee: int) -> None:
    assert terms.fee_for(Money(33_333, "EUR"), NOW) == Money(fee, "EUR")


def test_compensations_run_newest_first_and_register_once() -> None:
    stack = Compensations()
    release_1 = Compensation(UndoKind.RELEASE_HOLD, "it_1")
    release_2 = Compensation(UndoKind.RELEASE_HOLD, "it_2")
    void = Compensation(UndoKind.VOID_PAYMENT)
    cancel_1 = Compensation(UndoKind.CANCEL_BOOKING, "it_1")
    for undo in (release_1, release_2, void, cancel_1, release_1):
        stack.register(undo)
    assert len(stack) == 4
    assert stack.for_item("it_1") == [cancel_1, release_1]
    stack.remove(cancel_1)
    popped = [stack.pop() for _ in range(4)]
    assert [u.step if u else None for u in popped] == ["VOID", "RELEASE it_2", "RELEASE it_1", None]


def test_price_moved_beyond_tolerance_only() -> None:
    assert not price_moved(Money(10_000, "EUR"), Money(10_050, "EUR"), 50)
    assert price_moved(Money(10_000, "EUR"), Money(10_051, "EUR"), 50)
    assert price_moved(Money(10_000, "EUR"), Money(9_000, "EUR"), 0)


def test_terminal_statuses() -> None:
    terminal = {s for s in BookingStatus if s.is_terminal}
    assert terminal == {BookingStatus.CONFIRMED, BookingStatus.FAILED, BookingStatus.CANCELLED}
