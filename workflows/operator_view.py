"""What operators read about a booking in the Temporal Web UI: summaries and current details.

The UI shows a workflow's static summary in its list, its current details on its page, and each
activity's and timer's summary in the event history. These texts are built here from the booking's
state, without personal data (no names, e-mails or travellers: ids, suppliers, money and steps),
so the history reads like the booking's timeline. Pure functions: the workflow passes `now`.
"""

from __future__ import annotations

from workflows.contracts import ItemView
from workflows.model import BookingRequest, BookingStatus, Money
from workflows.state import BookingState

#: Minor-unit digits of the currencies that do not have two (ISO 4217).
_EXPONENTS = {"BIF": 0, "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "VND": 0, "BHD": 3, "KWD": 3}

#: What a booking in each waiting status waits for, in an operator's words.
_WAITING_FOR = {
    BookingStatus.AWAITING_PRICE_ACCEPTANCE: "the customer to accept or decline a changed price",
    BookingStatus.AWAITING_PAYMENT_ACTION: "the customer's 3-D Secure authentication",
    BookingStatus.NEEDS_ATTENTION: "an operator to retry or resolve the stuck step",
    BookingStatus.CONFIRMED: "a cancellation, while the terms allow one",
}


def money(amount: Money) -> str:
    """`123456 EUR` as `1,234.56 EUR` (integer arithmetic: minor units stay exact)."""
    digits = _EXPONENTS.get(amount.currency, 2)
    sign = "-" if amount.amount_minor < 0 else ""
    units, minor = divmod(abs(amount.amount_minor), 10**digits)
    fraction = f".{minor:0{digits}d}" if digits else ""
    return f"{sign}{units:,}{fraction} {amount.currency}"


def booking_summary(request: BookingRequest) -> str:
    """The one line the UI lists the booking by, e.g. `3 items · 1,234.56 EUR`."""
    count = len(request.items)
    return f"{count} item{'s' if count != 1 else ''} · {money(request.expected_total)}"


def item_label(view: ItemView) -> str:
    """An item as a step names it: `it_2 · harbour-hotels` once its supplier is known."""
    return f"{view.item_id} · {view.supplier}" if view.supplier else view.item_id


def current_details(state: BookingState, now: str) -> str:
    """The booking's current details (Temporal markdown): status, step, wait, last error."""
    since = _status_since(state)
    lines = [
        f"**{state.status.value}** · step `{state.step}` · since {since}",
        booking_summary(state.request),
    ]
    suppliers = sorted({view.supplier for view in state.items.values() if view.supplier})
    if suppliers:
        lines.append(f"Suppliers: {', '.join(suppliers)}")
    if state.attention is not None:
        lines.append(
            f"Waiting for an operator since {state.attention.since}: "
            f"`{state.attention.step}` failed with {state.attention.reason}"
        )
    elif state.status in _WAITING_FOR:
        lines.append(f"Waiting for {_WAITING_FOR[state.status]} since {since}")
    elif not state.status.is_terminal:
        lines.append(f"Working on `{state.step}` (as of {now})")
    if state.error is not None:
        lines.append(f"Last error: {state.error.type}: {state.error.message}")
    return "\n\n".join(lines)


def _status_since(state: BookingState) -> str:
    """When the booking entered its current status (its latest status entry)."""
    for entry in reversed(state.timeline):
        if entry.outcome == "status" and entry.detail == state.status.value:
            return entry.at
    return state.created_at
