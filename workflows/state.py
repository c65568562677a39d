"""BookingState: what one booking is right now, as plain data and pure rules.

The workflow owns one BookingState and changes it only through these methods; the view, the memo,
the ledger snapshot and the search attributes are all derived from it. Nothing here touches
Temporal's clock or I/O: the caller passes `now`, so the rules are unit-testable without a server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from workflows import search
from workflows.contracts import (
    AttentionView,
    BookingError,
    BookingView,
    ErrorType,
    ItemView,
    PaymentView,
    TimelineEntry,
)
from workflows.model import BookingRequest, BookingStatus, ItemStatus, Money, PaymentStatus

#: Item statuses of items the saga is still booking (not given up, not undone).
_GIVEN_UP = (ItemStatus.FAILED, ItemStatus.RELEASED, ItemStatus.CANCELLED)


@dataclass
class BookingState:
    """A booking's items, payment, timeline and status; the source of every published view."""

    request: BookingRequest
    items: dict[str, ItemView]
    payment: PaymentView
    status: BookingStatus = BookingStatus.RECEIVED
    step: str = "RECEIVED"
    timeline: list[TimelineEntry] = field(default_factory=list)
    error: BookingError | None = None
    attention: AttentionView | None = None
    quoted_total: Money | None = None
    version: int = 0
    created_at: str = ""

    @classmethod
    def new(cls, request: BookingRequest) -> BookingState:
        """The state of a booking nobody has worked on yet (also the API's first view)."""
        zero = Money.zero(request.currency)
        items = {
            item.item_id: ItemView(
                item_id=item.item_id,
                offer_id=item.offer_id,
                quantity=item.quantity,
                optional=item.optional,
                status=ItemStatus.PENDING,
                price=item.expected_price,
            )
            for item in request.items
        }
        payment = PaymentView(PaymentStatus.NONE, zero, zero, zero, zero, fees_absorbed=zero)
        return cls(request=request, items=items, payment=payment, created_at=request.created_at)

    @classmethod
    def resumed(cls, request: BookingRequest, view: BookingView) -> BookingState:
        """The state carried over a continue-as-new (the view holds everything but the request)."""
        return cls(
            request=request,
            items={item.item_id: item for item in view.items},
            payment=view.payment,
            status=view.status,
            step=view.step,
            timeline=list(view.timeline),
            error=view.error,
            attention=view.attention,
            quoted_total=view.quoted_total,
            version=view.version,
            created_at=view.created_at,
        )

    # --- items -----------------------------------------------------------------------------------

    def item(self, item_id: str) -> ItemView:
        return self.items[item_id]

    def update_item(self, item_id: str, **changes: Any) -> ItemView:
        self.items[item_id] = dataclasses.replace(self.items[item_id], **changes)
        return self.items[item_id]

    def active_items(self) -> list[ItemView]:
        """Items still being booked, in request order."""
        return [view for view in self.items.values() if view.status not in _GIVEN_UP]

    def confirmed_items(self) -> list[ItemView]:
        return [view for view in self.items.values() if view.status == ItemStatus.CONFIRMED]

    def total(self, items: Iterable[ItemView]) -> Money:
        return Money.total((view.price for view in items), self.request.currency)

    def first_item_error(self) -> BookingError:
        for view in self.items.values():
            if view.error is not None:
                return view.error
        return BookingError(ErrorType.SUPPLIER_REFUSED, "no item could be booked")

    def confirmation_order(
        self, at: datetime, *, uncancellable_last: bool = True
    ) -> list[list[ItemView]]:
        """Active items grouped by what undoing them would cost, cheapest group first.

        Free-to-cancel items are confirmed together, then those that would keep a fee, then the
        non-refundable ones one at a time, then the non-cancellable ones one at a time: a failure
        after a non-refundable item costs its fee, while one after a non-cancellable item leaves a
        booking nobody can undo. `uncancellable_last=False` is the order before that rule (kept
        for histories started before UNCANCELLABLE_LAST_PATCH).
        """
        free: list[ItemView] = []
        fee: list[ItemView] = []
        final: list[ItemView] = []
        for view in self.active_items():
            terms = view.cancellation
            if terms is not None and (not terms.cancellable or not terms.refundable):
                final.append(view)
            elif terms is not None and terms.fee_for(view.price, at).amount_minor:
                fee.append(view)
            else:
                free.append(view)
        if uncancellable_last:
            final.sort(key=_uncancellable)
        return [group for group in (free, fee) if group] + [[view] for view in final]

    def order_puts_uncancellable_last(self, at: datetime) -> bool:
        """Whether the uncancellable-last rule changes this booking's confirmation order."""

        def ids(groups: list[list[ItemView]]) -> list[list[str]]:
            return [[view.item_id for view in group] for group in groups]

        old = self.confirmation_order(at, uncancellable_last=False)
        return ids(self.confirmation_order(at)) != ids(old)

    def cancellable_after_confirmation(self) -> str | None:
        """None when every confirmed item may be cancelled, else why not."""
        for view in self.confirmed_items():
            terms = view.cancellation
            if terms is not None and not terms.cancellable:
                return f"item {view.item_id} cannot be cancelled (supplier terms)"
        return None

    def still_cancellable(self) -> bool:
        """Whether a cancel could still give anything back (keeps the workflow open for it)."""
        return any(
            view.cancellation is None
            or (view.cancellation.cancellable and view.cancellation.refundable)
            for view in self.confirmed_items()
        )

    # --- payment ---------------------------------------------------------------------------------

    def update_payment(self, **changes: Any) -> PaymentView:
        self.payment = dataclasses.replace(self.payment, **changes)
        return self.payment

    def absorb_fee(self, fee: Money) -> None:
        """A fee a supplier kept while a failed booking was undone: the merchant's cost."""
        absorbed = self.payment.fees_absorbed or Money.zero(self.request.currency)
        self.update_payment(fees_absorbed=absorbed + fee)

    # --- status and timeline ---------------------------------------------------------------------

    def set_status(self, status: BookingStatus, step: str, now: str) -> None:
        self.status = status
        self.step = step
        self.event(step, "status", status.value, now)

    def event(
        self, step: str, outcome: str, detail: str, now: str, actor: str | None = None
    ) -> None:
        self.version += 1
        self.timeline.append(
            TimelineEntry(len(self.timeline) + 1, now, step, outcome, detail, actor)
        )

    # --- what is published -----------------------------------------------------------------------

    def view(self, now: str) -> BookingView:
        return BookingView(
            booking_id=self.request.booking_id,
            status=self.status,
            step=self.step,
            currency=self.request.currency,
            expected_total=self.request.expected_total,
            quoted_total=self.quoted_total,
            items=tuple(self.items.values()),
            payment=self.payment,
            timeline=tuple(self.timeline),
            error=self.error,
            attention=self.attention,
            version=self.version,
            updated_at=now,
            created_at=self.created_at,
            customer_ref=self.request.customer_ref,
        )

    def search_attributes(self) -> TypedSearchAttributes:
        """The six search attributes operators filter on; PII-free by construction."""
        suppliers = sorted({view.supplier for view in self.items.values() if view.supplier})
        total = self.quoted_total or self.request.expected_total
        return TypedSearchAttributes(
            [
                SearchAttributePair(search.BOOKING_STATUS, self.status.value),
                SearchAttributePair(search.BOOKING_STEP, self.step),
                SearchAttributePair(
                    search.NEEDS_ATTENTION, self.status == BookingStatus.NEEDS_ATTENTION
                ),
                SearchAttributePair(search.CUSTOMER_REF, self.request.customer_ref),
                SearchAttributePair(search.SUPPLIERS, suppliers),
                SearchAttributePair(search.TOTAL_MINOR, total.amount_minor),
            ]
        )


def initial_view(request: BookingRequest) -> BookingView:
    """The view before the workflow ran: what the memo shows until a worker picks the saga up."""
    return BookingState.new(request).view(request.created_at)


def initial_search_attributes(request: BookingRequest) -> TypedSearchAttributes:
    """All six search attributes from the first moment, so the UI lists the booking at once."""
    return BookingState.new(request).search_attributes()


def _uncancellable(view: ItemView) -> bool:
    return view.cancellation is not None and not view.cancellation.cancellable
