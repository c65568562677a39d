"""Realistic ledger snapshots: what a BookingWorkflow records for one booking, version by version.

`booking_lifecycle` plays one booking through the saga the way `workflows/booking.py` does (a
timeline entry per step, a status entry per transition, `version` = number of entries, a snapshot
at every status change) and returns every snapshot in order; the last one is the final state.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from workflows.contracts import (
    AttentionView,
    BookingError,
    BookingView,
    ItemView,
    PaymentView,
    RecordBookingInput,
    TimelineEntry,
)
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemKind,
    ItemStatus,
    Money,
    PaymentStatus,
    Traveller,
)

Ending = Literal["confirmed", "cancelled", "compensated", "needs_attention"]

CURRENCY = "EUR"
FLIGHT = Money(60_000, CURRENCY)
HOTEL = Money(45_000, CURRENCY)
TOUR = Money(8_000, CURRENCY)


def document_numbers(booking_id: str) -> tuple[str, str]:
    """The travellers' passport numbers: distinct per booking, never to be stored in clear."""
    digest = hashlib.sha256(booking_id.encode()).hexdigest().upper()
    return f"X{digest[:8]}", f"P{digest[8:16]}"


def booking_request(
    booking_id: str, *, created_at: datetime, email: str = "ada@example.com"
) -> BookingRequest:
    first, second = document_numbers(booking_id)
    return BookingRequest(
        booking_id=booking_id,
        customer_ref=f"cref_{hashlib.sha256(email.lower().encode()).hexdigest()[:16]}",
        customer_email=email,
        customer_name="Ada Lovelace",
        currency=CURRENCY,
        items=(
            BookingItemRequest("it_1", "off_flight_cdg_jfk", 1, FLIGHT),
            BookingItemRequest("it_2", "off_hotel_nyc_3n", 1, HOTEL),
            BookingItemRequest("it_3", "off_tour_harbour", 2, TOUR, optional=True),
        ),
        payment_method="pm_card_visa",
        travellers=(
            Traveller("Ada", "Lovelace", "1990-12-10", first),
            Traveller("Charles", "Babbage", "1991-12-26", second),
        ),
        access_token_hash=hashlib.sha256(f"token-{booking_id}".encode()).hexdigest(),
        created_at=created_at.isoformat(),
    )


@dataclass
class _Saga:
    """The mutable state of one booking while the story is told; emits a snapshot per status."""

    request: BookingRequest
    clock: datetime
    suppliers: tuple[str, str, str]
    status: BookingStatus = BookingStatus.RECEIVED
    step: str = "RECEIVED"
    items: dict[str, ItemView] = field(default_factory=dict)
    payment: PaymentView = field(
        default_factory=lambda: PaymentView(
            PaymentStatus.NONE,
            Money.zero(CURRENCY),
            Money.zero(CURRENCY),
            Money.zero(CURRENCY),
            Money.zero(CURRENCY),
        )
    )
    quoted_total: Money | None = None
    error: BookingError | None = None
    attention: AttentionView | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    snapshots: list[RecordBookingInput] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.created_at = self.clock.isoformat()
        for request, supplier, kind in zip(
            self.request.items,
            self.suppliers,
            (ItemKind.FLIGHT, ItemKind.HOTEL, ItemKind.ACTIVITY),
            strict=True,
        ):
            self.items[request.item_id] = ItemView(
                item_id=request.item_id,
                offer_id=request.offer_id,
                quantity=request.quantity,
                optional=request.optional,
                status=ItemStatus.PENDING,
                price=request.expected_price,
                kind=kind,
                supplier=supplier,
            )

    def now(self) -> str:
        self.clock += timedelta(seconds=1, microseconds=250_000)
        return self.clock.isoformat()

    def event(self, step: str, outcome: str, detail: str = "", actor: str | None = None) -> None:
        entry = TimelineEntry(len(self.timeline) + 1, self.now(), step, outcome, detail, actor)
        self.timeline.append(entry)

    def set_status(self, status: BookingStatus, step: str) -> None:
        self.status, self.step = status, step
        self.event(step, "status", status.value)
        self.snapshots.append(RecordBookingInput(self.request, self.view()))

    def update(self, item_id: str, **changes: Any) -> None:
        self.items[item_id] = dataclasses.replace(self.items[item_id], **changes)

    def pay(self, **changes: Any) -> None:
        self.payment = dataclasses.replace(self.payment, **changes)

    def view(self) -> BookingView:
        return BookingView(
            booking_id=self.request.booking_id,
            status=self.status,
            step=self.step,
            currency=CURRENCY,
            expected_total=self.request.expected_total,
            quoted_total=self.quoted_total,
            items=tuple(self.items.values()),
            payment=self.payment,
            timeline=tuple(self.timeline),
            error=self.error,
            attention=self.attention,
            version=len(self.timeline),
            updated_at=self.clock.isoformat(),
            created_at=self.created_at,
            customer_ref=self.request.customer_ref,
        )


def booking_lifecycle(
    booking_id: str,
    *,
    created_at: datetime,
    email: str = "ada@example.com",
    suppliers: tuple[str, str, str] = ("skyways", "grandhotel", "harbourtours"),
    ending: Ending = "confirmed",
) -> list[RecordBookingInput]:
    """Every snapshot the workflow records for one booking that ends as `ending`, in order."""
    saga = _Saga(
        booking_request(booking_id, created_at=created_at, email=email), created_at, suppliers
    )
    saga.set_status(BookingStatus.RECEIVED, "RECEIVED")
    saga.set_status(BookingStatus.PRICING, "QUOTE")
    for item_id in saga.items:
        terms = {
            "it_1": CancellationTerms(refundable=True, fee_bps=1_000),
            "it_2": CancellationTerms(free_until=(created_at + timedelta(days=10)).isoformat()),
            "it_3": CancellationTerms(refundable=False),
        }[item_id]
        saga.update(item_id, cancellation=terms)
        saga.event(f"QUOTE {item_id}", "ok", f"{saga.items[item_id].price.amount_minor} EUR")
    saga.quoted_total = saga.request.expected_total
    saga.set_status(BookingStatus.HOLDING, "HOLD")
    saga.update("it_1", status=ItemStatus.HELD, hold_ref=f"h-{booking_id}-1",
                hold_expires_at=saga.now())  # fmt: skip
    saga.event("HOLD it_1", "ok", f"h-{booking_id}-1")
    if ending == "compensated":
        saga.update("it_2", status=ItemStatus.FAILED, error=BookingError("SOLD_OUT", "no rooms"))
        saga.event("HOLD it_2", "failed", "SOLD_OUT: no rooms")
        saga.error = BookingError("SOLD_OUT", "no rooms")
        saga.set_status(BookingStatus.COMPENSATING, "COMPENSATE")
        saga.update("it_1", status=ItemStatus.RELEASED)
        saga.event("RELEASE it_1", "ok", "released")
        saga.set_status(BookingStatus.FAILED, "FAILED")
        return saga.snapshots
    saga.update("it_2", status=ItemStatus.HELD, hold_ref=f"h-{booking_id}-2")
    saga.event("HOLD it_2", "ok", f"h-{booking_id}-2")
    saga.update("it_3", status=ItemStatus.FAILED, error=BookingError("SOLD_OUT", "tour full"))
    saga.event("HOLD it_3", "failed", "SOLD_OUT: tour full")
    saga.quoted_total = FLIGHT + HOTEL
    total = FLIGHT + HOTEL
    saga.set_status(BookingStatus.AUTHORIZING, "AUTHORIZE")
    saga.pay(
        status=PaymentStatus.AUTHORIZED, authorized=total, payment_intent_id=f"pi_{booking_id}"
    )
    saga.event("AUTHORIZE", "ok", f"pi_{booking_id}")
    saga.set_status(BookingStatus.CONFIRMING, "CONFIRM")
    for item_id in ("it_1", "it_2"):
        saga.update(item_id, status=ItemStatus.CONFIRMED, supplier_ref=f"s-{booking_id}-{item_id}",
                    confirmation_code=f"PNR{item_id[-1]}{booking_id[-4:].upper()}")  # fmt: skip
        saga.event(f"CONFIRM {item_id}", "ok", saga.items[item_id].confirmation_code or "")
    if ending == "needs_attention":
        saga.event("CAPTURE", "failed", "SUPPLIER_UNAVAILABLE: stripe 503")
        saga.attention = AttentionView("CAPTURE", "SUPPLIER_UNAVAILABLE: stripe 503", saga.now())
        saga.set_status(BookingStatus.NEEDS_ATTENTION, "CAPTURE")
        return saga.snapshots
    saga.set_status(BookingStatus.CAPTURING, "CAPTURE")
    saga.pay(status=PaymentStatus.CAPTURED, captured=total)
    saga.event("CAPTURE", "ok", f"{total.amount_minor} EUR")
    saga.set_status(BookingStatus.CONFIRMED, "CONFIRMED")
    if ending == "confirmed":
        return saga.snapshots
    saga.event("CANCEL", "requested", "customer called: flight moved", actor="staff:grace")
    saga.set_status(BookingStatus.CANCELLING, "CANCEL")
    fees = Money.zero(CURRENCY)
    for item_id in ("it_2", "it_1"):
        view = saga.items[item_id]
        assert view.cancellation is not None
        fee = view.cancellation.fee_for(view.price, saga.clock)
        fees = fees + fee
        saga.update(item_id, status=ItemStatus.CANCELLED, cancellation_fee=fee)
        saga.event(f"CANCEL {item_id}", "ok", f"fee {fee.amount_minor} EUR")
    refund = total - fees
    saga.event("REFUND", "ok", f"{refund.amount_minor} EUR")
    saga.pay(refunded=refund, fees_kept=fees, status=PaymentStatus.PARTIALLY_REFUNDED)
    saga.set_status(BookingStatus.CANCELLED, "CANCELLED")
    return saga.snapshots
