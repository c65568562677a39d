"""What crosses the workflow boundary: activity names, inputs and outputs, the booking view.

One frozen dataclass in and one out for every activity, so fields can be added without breaking
callers or histories. Activity names are plain strings here because `workflows/` must not import
the activity implementations (they do I/O); the activities register under these same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from workflows.model import (
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemKind,
    ItemStatus,
    Money,
    PaymentStatus,
)


class ErrorType(StrEnum):
    """Machine-readable failure causes: the `type` of ApplicationErrors and of the booking error."""

    SOLD_OUT = "SOLD_OUT"
    PRICE_CHANGED = "PRICE_CHANGED"
    OFFER_NOT_FOUND = "OFFER_NOT_FOUND"
    INVALID_REQUEST = "INVALID_REQUEST"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    NOT_CANCELLABLE = "NOT_CANCELLABLE"
    SUPPLIER_UNAVAILABLE = "SUPPLIER_UNAVAILABLE"
    SUPPLIER_REFUSED = "SUPPLIER_REFUSED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PAYMENT_ACTION_FAILED = "PAYMENT_ACTION_FAILED"
    PAYMENT_ACTION_TIMEOUT = "PAYMENT_ACTION_TIMEOUT"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAYMENT_UNAVAILABLE = "PAYMENT_UNAVAILABLE"
    CANCELLED_BY_CUSTOMER = "CANCELLED_BY_CUSTOMER"
    CANCELLED_BY_STAFF = "CANCELLED_BY_STAFF"
    STOPPED = "STOPPED"
    INTERNAL = "INTERNAL"

    @classmethod
    def _missing_(cls, value: object) -> ErrorType:
        """Any other type reads as INTERNAL: an activity's unexpected exception is typed by its
        class name, and a view or ledger row written before may carry one, so views still decode.
        """
        return cls.INTERNAL


#: Business refusals: retrying the same call cannot succeed, so activities raise them non-retryable.
NON_RETRYABLE_ERRORS: tuple[ErrorType, ...] = (
    ErrorType.SOLD_OUT,
    ErrorType.PRICE_CHANGED,
    ErrorType.OFFER_NOT_FOUND,
    ErrorType.INVALID_REQUEST,
    ErrorType.HOLD_EXPIRED,
    ErrorType.NOT_CANCELLABLE,
    ErrorType.SUPPLIER_REFUSED,
    ErrorType.PAYMENT_DECLINED,
    ErrorType.PAYMENT_FAILED,
)


class ActivityName(StrEnum):
    QUOTE_ITEM = "quote_item"
    HOLD_ITEM = "hold_item"
    CONFIRM_ITEM = "confirm_item"
    RELEASE_ITEM = "release_item_if_present"
    CANCEL_ITEM = "cancel_item_if_confirmed"
    AUTHORIZE_PAYMENT = "authorize_payment"
    GET_PAYMENT = "get_payment"
    VOID_PAYMENT = "void_payment_if_present"
    CAPTURE_PAYMENT = "capture_payment"
    REFUND_PAYMENT = "refund_payment"
    RECORD_BOOKING = "record_booking"
    #: One call per step for every item of a booking (workflows/calls.py BATCHES).
    QUOTE_ITEMS = "quote_items"
    HOLD_ITEMS = "hold_items"
    CONFIRM_ITEMS = "confirm_items"


def client_ref(booking_id: str, item_id: str, operation: str) -> str:
    """The supplier client reference of one operation: stable across retries and worker restarts."""
    return f"{booking_id}:{item_id}:{operation}"


def idempotency_key(booking_id: str, step: str) -> str:
    """The Stripe idempotency key of one payment step: booking id + step, never random."""
    return f"{booking_id}:{step}"


# --- supplier activities -------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteItemInput:
    booking_id: str
    item_id: str
    offer_id: str
    quantity: int


@dataclass(frozen=True)
class ItemQuote:
    offer_id: str
    kind: ItemKind
    supplier: str
    price: Money
    cancellation: CancellationTerms


@dataclass(frozen=True)
class HoldItemInput:
    booking_id: str
    item_id: str
    offer_id: str
    quantity: int


@dataclass(frozen=True)
class ItemHold:
    """The supplier's hold; `price` is what the supplier holds it at (None if it does not say)."""

    hold_ref: str
    expires_at: str
    price: Money | None = None


@dataclass(frozen=True)
class ConfirmItemInput:
    booking_id: str
    item_id: str
    hold_ref: str


@dataclass(frozen=True)
class ItemConfirmation:
    supplier_ref: str
    confirmation_code: str


@dataclass(frozen=True)
class StepFailure:
    """One item's failed call in a batch: what that item's own activity would have raised."""

    type: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class QuoteOutcome:
    """One item's answer in a `quote_items` batch: its quote, or why it has none."""

    result: ItemQuote | None = None
    failure: StepFailure | None = None


@dataclass(frozen=True)
class QuoteItemsInput:
    items: tuple[QuoteItemInput, ...]


@dataclass(frozen=True)
class ItemQuotes:
    """The answers of a `quote_items` batch, in the order of its items."""

    outcomes: tuple[QuoteOutcome, ...]


@dataclass(frozen=True)
class HoldOutcome:
    """One item's answer in a `hold_items` batch."""

    result: ItemHold | None = None
    failure: StepFailure | None = None


@dataclass(frozen=True)
class HoldItemsInput:
    items: tuple[HoldItemInput, ...]


@dataclass(frozen=True)
class ItemHolds:
    outcomes: tuple[HoldOutcome, ...]


@dataclass(frozen=True)
class ConfirmOutcome:
    """One item's answer in a `confirm_items` batch."""

    result: ItemConfirmation | None = None
    failure: StepFailure | None = None


@dataclass(frozen=True)
class ConfirmItemsInput:
    items: tuple[ConfirmItemInput, ...]


@dataclass(frozen=True)
class ItemConfirmations:
    outcomes: tuple[ConfirmOutcome, ...]


@dataclass(frozen=True)
class ReleaseItemInput:
    """Release the item's hold if still live; `hold_ref` is None when the hold call was lost."""

    booking_id: str
    item_id: str
    hold_ref: str | None = None


class ReleaseStatus(StrEnum):
    """What release-if-present found: the hold is released (now or before), had lapsed, was
    confirmed (a booking, left alone), or never existed."""

    RELEASED = "released"
    EXPIRED = "expired"
    CONFIRMED = "confirmed"
    ABSENT = "absent"


@dataclass(frozen=True)
class ItemRelease:
    status: ReleaseStatus


@dataclass(frozen=True)
class CancelItemInput:
    """Cancel the item's supplier booking if any; refs are None when the confirm answer was lost."""

    booking_id: str
    item_id: str
    supplier_ref: str | None = None
    hold_ref: str | None = None


class CancellationStatus(StrEnum):
    """What cancel-if-confirmed found: a booking, cancelled (now or before), or none at all."""

    CANCELLED = "cancelled"
    ABSENT = "absent"


@dataclass(frozen=True)
class ItemCancellation:
    """`fee` is what the supplier reports it keeps (None: it kept nothing or did not say)."""

    status: CancellationStatus
    fee: Money | None = None


# --- payment activities --------------------------------------------------------------------------


class IntentStatus(StrEnum):
    """A Stripe PaymentIntent's status, in Stripe's words."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class AuthorizePaymentInput:
    booking_id: str
    amount: Money
    payment_method: str
    customer_ref: str


@dataclass(frozen=True)
class PaymentAuthorization:
    """The PaymentIntent once confirmed: `requires_capture`, or `requires_action` for 3-D Secure."""

    payment_intent_id: str
    status: IntentStatus
    amount: Money
    client_secret: str | None = None


@dataclass(frozen=True)
class GetPaymentInput:
    payment_intent_id: str


@dataclass(frozen=True)
class PaymentState:
    payment_intent_id: str
    status: IntentStatus
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    failure_message: str | None = None


@dataclass(frozen=True)
class VoidPaymentInput:
    """Void the booking's authorization if one exists.

    When `payment_intent_id` is None the authorize call's outcome was lost; the gateway learns it by
    replaying the authorization request with its idempotency key (`authorization`).
    """

    authorization: AuthorizePaymentInput
    payment_intent_id: str | None = None


class VoidStatus(StrEnum):
    """How void-if-present left the payment: authorization cancelled, capture refunded, or no
    PaymentIntent was ever created."""

    VOIDED = "voided"
    REFUNDED = "refunded"
    ABSENT = "absent"


@dataclass(frozen=True)
class PaymentVoid:
    status: VoidStatus
    refunded: Money | None = None


@dataclass(frozen=True)
class CapturePaymentInput:
    booking_id: str
    payment_intent_id: str
    amount: Money


@dataclass(frozen=True)
class PaymentCapture:
    amount: Money


@dataclass(frozen=True)
class RefundPaymentInput:
    """Refund `amount` of a captured PaymentIntent; `reason` names the step (part of the key)."""

    booking_id: str
    payment_intent_id: str
    amount: Money
    reason: str


@dataclass(frozen=True)
class PaymentRefund:
    refund_id: str
    amount: Money


# --- the booking view (query result, memo, ledger snapshot) -------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: str
    step: str
    outcome: str
    detail: str = ""
    actor: str | None = None


@dataclass(frozen=True)
class BookingError:
    type: ErrorType
    message: str


@dataclass(frozen=True)
class ItemView:
    item_id: str
    offer_id: str
    quantity: int
    optional: bool
    status: ItemStatus
    price: Money
    kind: ItemKind | None = None
    supplier: str | None = None
    hold_ref: str | None = None
    hold_expires_at: str | None = None
    supplier_ref: str | None = None
    confirmation_code: str | None = None
    cancellation: CancellationTerms | None = None
    cancellation_fee: Money | None = None
    error: BookingError | None = None
    #: The price the supplier held the item at, when it differs from the quote.
    held_price: Money | None = None


@dataclass(frozen=True)
class PaymentView:
    """The booking's payment. `fees_kept` is what the customer paid in cancellation fees, so
    `refunded == captured - fees_kept` once cancelled; `fees_absorbed` is what suppliers kept
    while a failed or force-cancelled booking was undone, a cost to the merchant, never charged.
    """

    status: PaymentStatus
    authorized: Money
    captured: Money
    refunded: Money
    fees_kept: Money
    payment_intent_id: str | None = None
    client_secret: str | None = None
    fees_absorbed: Money | None = None


@dataclass(frozen=True)
class AttentionView:
    """Why a booking is stuck and on which step; cleared by an operator's retry or resolve."""

    step: str
    reason: str
    since: str
    item_id: str | None = None


@dataclass(frozen=True)
class BookingView:
    booking_id: str
    status: BookingStatus
    step: str
    currency: str
    expected_total: Money
    quoted_total: Money | None
    items: tuple[ItemView, ...]
    payment: PaymentView
    timeline: tuple[TimelineEntry, ...]
    error: BookingError | None
    attention: AttentionView | None
    version: int
    updated_at: str
    created_at: str
    customer_ref: str


# --- workflow messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelBookingRequest:
    actor: str = "customer"
    note: str = ""


@dataclass(frozen=True)
class PriceDecision:
    accept: bool
    actor: str = "customer"


@dataclass(frozen=True)
class PaymentEvent:
    """A Stripe webhook forwarded to the workflow: a hint to re-read the PaymentIntent."""

    event_id: str
    type: str
    payment_intent_id: str


@dataclass(frozen=True)
class StaffAction:
    actor: str
    note: str = ""


@dataclass(frozen=True)
class RecordBookingInput:
    """A snapshot of the booking for the ledger; the store keeps only the newest `view.version`.

    `recorded_through` = N says an earlier write of this workflow run has landed: the ledger holds
    the booking, its travellers and timeline entries 1..N, so only what follows is written.
    `committed_through` = M says entries after M were made in the workflow task that is writing
    (a local activity), which history may not keep as they are; None: every entry is kept.
    """

    request: BookingRequest
    view: BookingView
    recorded_through: int = 0
    committed_through: int | None = None
