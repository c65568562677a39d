"""The booking domain: money, items, statuses, the booking request and cancellation terms.

Pure values only: this module is imported by workflow code, activities, the API and the store, so it
does no I/O and depends on nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units (cents) of one ISO 4217 currency; never a float."""

    amount_minor: int
    currency: str

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} and {other.currency}")

    @staticmethod
    def zero(currency: str) -> Money:
        return Money(0, currency)

    @staticmethod
    def total(amounts: Iterable[Money], currency: str) -> Money:
        result = Money.zero(currency)
        for amount in amounts:
            result = result + amount
        return result


class ItemKind(StrEnum):
    FLIGHT = "flight"
    HOTEL = "hotel"
    CRUISE = "cruise"
    FERRY = "ferry"
    ACTIVITY = "activity"


class BookingStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PRICING = "PRICING"
    AWAITING_PRICE_ACCEPTANCE = "AWAITING_PRICE_ACCEPTANCE"
    HOLDING = "HOLDING"
    AUTHORIZING = "AUTHORIZING"
    AWAITING_PAYMENT_ACTION = "AWAITING_PAYMENT_ACTION"
    CONFIRMING = "CONFIRMING"
    CAPTURING = "CAPTURING"
    CONFIRMED = "CONFIRMED"
    COMPENSATING = "COMPENSATING"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"

    @property
    def is_terminal(self) -> bool:
        return self in (BookingStatus.CONFIRMED, BookingStatus.FAILED, BookingStatus.CANCELLED)


class ItemStatus(StrEnum):
    PENDING = "PENDING"
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class PaymentStatus(StrEnum):
    NONE = "NONE"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"


@dataclass(frozen=True)
class CancellationTerms:
    """How much of an item's price a supplier keeps when it is cancelled after confirmation.

    Free until `free_until` (RFC 3339, or never when None); after that the supplier keeps
    `fee_bps` basis points of the price. A non-refundable item keeps everything; a
    non-cancellable one cannot be cancelled at all.
    """

    refundable: bool = True
    free_until: str | None = None
    fee_bps: int = 0
    cancellable: bool = True

    def fee_for(self, price: Money, at: datetime) -> Money:
        """The fee kept when the item is cancelled at `at` (integer arithmetic, rounded down)."""
        if not self.refundable:
            return price
        if self.free_until is not None and at <= datetime.fromisoformat(self.free_until):
            return Money.zero(price.currency)
        return Money(price.amount_minor * self.fee_bps // 10_000, price.currency)


@dataclass(frozen=True)
class BookingItemRequest:
    """One item the customer asked for: an offer from the supplier catalogue."""

    item_id: str
    offer_id: str
    quantity: int
    expected_price: Money
    optional: bool = False


@dataclass(frozen=True)
class Traveller:
    """Personal data: only in codec-encrypted payloads, never in logs or search attributes."""

    first_name: str
    last_name: str
    birth_date: str
    document_number: str


@dataclass(frozen=True)
class BookingRequest:
    """Everything a BookingWorkflow needs to run one booking saga.

    `customer_ref` is a pseudonym of the customer (a keyed hash of the e-mail), safe for search
    attributes; the e-mail and travellers stay inside encrypted payloads.
    """

    booking_id: str
    customer_ref: str
    customer_email: str
    customer_name: str
    currency: str
    items: tuple[BookingItemRequest, ...]
    payment_method: str
    travellers: tuple[Traveller, ...] = ()
    access_token_hash: str = ""
    price_tolerance_minor: int = 0
    price_acceptance_timeout_seconds: int = 15 * 60
    payment_action_timeout_seconds: int = 15 * 60
    #: A confirmed booking waits for a cancel in windows this long, continuing as new in between,
    cancellable_for_seconds: int = 30 * 24 * 3600
    #: ...until this long after it was created (beyond any service date Passage sells).
    cancel_horizon_seconds: int = 400 * 24 * 3600
    created_at: str = ""
    metadata: tuple[tuple[str, str], ...] = field(default=())

    @property
    def expected_total(self) -> Money:
        return Money.total((item.expected_price for item in self.items), self.currency)

    def item(self, item_id: str) -> BookingItemRequest:
        return next(item for item in self.items if item.item_id == item_id)


def workflow_id_for(booking_id: str) -> str:
    """The Temporal workflow id of a booking: one workflow per booking, forever."""
    return f"booking-{booking_id}"
