"""Which bookings a reset takes, to which step by default, and what `--to` accepts (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from passage.reset import ResetRefused, default_step, normalized_step, refusal_for
from tests.support.ledger_data import booking_lifecycle
from workflows.contracts import BookingView, TimelineEntry
from workflows.model import BookingStatus, ItemStatus, PaymentStatus


def _view(
    *entries: tuple[str, str], status: BookingStatus = BookingStatus.NEEDS_ATTENTION
) -> BookingView:
    view = booking_lifecycle("bk_rules", created_at=datetime(2026, 3, 1, tzinfo=UTC))[-1].view
    timeline = tuple(
        TimelineEntry(seq, "2026-03-01T00:00:00+00:00", step, outcome, "", None)
        for seq, (step, outcome) in enumerate(entries, start=1)
    )
    items = tuple(dataclasses.replace(item, status=ItemStatus.HELD) for item in view.items)
    payment = dataclasses.replace(view.payment, status=PaymentStatus.AUTHORIZED)
    return dataclasses.replace(view, status=status, timeline=timeline, items=items, payment=payment)


def test_the_default_step_is_the_first_forward_step_that_failed() -> None:
    view = _view(("HOLD it_1", "ok"), ("CONFIRM it_2", "failed"), ("CANCEL it_1", "failed"))
    assert default_step(view) == "CONFIRM it_2"
    with pytest.raises(ResetRefused, match="--to"):
        default_step(_view(("HOLD it_1", "ok"), ("CANCEL it_1", "failed")))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("confirm it_1", ("CONFIRM", "it_1")),
        ("AUTHORIZE", ("AUTHORIZE", None)),
        ("QUOTE it_2", ("PRICE", "it_2")),
        (" release  it_3 ", ("RELEASE", "it_3")),
    ],
)
def test_steps_as_the_timeline_names_them(given: str, expected: tuple[str, str | None]) -> None:
    assert normalized_step(given) == expected


@pytest.mark.parametrize("given", ["", "FROBNICATE", "CONFIRM it_1 now", "RECEIVED"])
def test_what_names_no_step_is_refused(given: str) -> None:
    with pytest.raises(ResetRefused, match="not a step"):
        normalized_step(given)


@pytest.mark.parametrize(
    "status",
    [
        BookingStatus.CONFIRMED,
        BookingStatus.CANCELLING,
        BookingStatus.CANCELLED,
        BookingStatus.FAILED,
    ],
)
def test_settled_bookings_are_not_reset(status: BookingStatus) -> None:
    assert refusal_for(_view(status=status), None) is not None


def test_an_accepted_cancel_or_a_real_undo_refuses_a_reset_to_a_forward_step() -> None:
    assert refusal_for(_view(("CONFIRM it_1", "failed")), None) is None
    cancelled = _view(("CONFIRM it_1", "failed"), ("CANCEL", "requested"))
    assert "cancel was accepted" in (refusal_for(cancelled, None) or "")
    view = _view(("CONFIRM it_1", "failed"))
    released = dataclasses.replace(
        view,
        items=(dataclasses.replace(view.items[0], status=ItemStatus.RELEASED), *view.items[1:]),
    )
    assert "it_1 RELEASED" in (refusal_for(released, "CONFIRM") or "")
    assert refusal_for(released, "RELEASE it_2") is None  # within the undo: what came before stays
    voided = dataclasses.replace(
        view, payment=dataclasses.replace(view.payment, status=PaymentStatus.VOIDED)
    )
    assert "payment VOIDED" in (refusal_for(voided, None) or "")
