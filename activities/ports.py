"""The outside world as the activities see it: one Protocol per port, adapters at the edge.

Adapters raise `activities.errors.BusinessError` for refusals (never retried) and let transport
failures (5xx, timeouts, connection errors) escape as `activities.errors.TransientError`, so one
place decides what Temporal retries.
"""

from __future__ import annotations

from typing import Protocol

from workflows.contracts import (
    AuthorizePaymentInput,
    BookingView,
    CancelItemInput,
    CapturePaymentInput,
    ConfirmItemInput,
    GetPaymentInput,
    HoldItemInput,
    ItemCancellation,
    ItemConfirmation,
    ItemHold,
    ItemQuote,
    ItemRelease,
    PaymentAuthorization,
    PaymentCapture,
    PaymentRefund,
    PaymentState,
    PaymentVoid,
    QuoteItemInput,
    RecordBookingInput,
    RefundPaymentInput,
    ReleaseItemInput,
    VoidPaymentInput,
)


class SupplierClient(Protocol):
    """One adapter for every supplier: quote, hold, confirm, cancel, release (all idempotent)."""

    async def quote(self, request: QuoteItemInput) -> ItemQuote: ...

    async def hold(self, request: HoldItemInput) -> ItemHold: ...

    async def confirm(self, request: ConfirmItemInput) -> ItemConfirmation: ...

    async def release(self, request: ReleaseItemInput) -> ItemRelease: ...

    async def cancel(self, request: CancelItemInput) -> ItemCancellation: ...


class PaymentGateway(Protocol):
    """Card payments: authorize (manual capture), read, void, capture, refund; keyed by step."""

    async def authorize(self, request: AuthorizePaymentInput) -> PaymentAuthorization: ...

    async def get(self, request: GetPaymentInput) -> PaymentState: ...

    async def void(self, request: VoidPaymentInput) -> PaymentVoid: ...

    async def capture(self, request: CapturePaymentInput) -> PaymentCapture: ...

    async def refund(self, request: RefundPaymentInput) -> PaymentRefund: ...


class BookingStore(Protocol):
    """The durable ledger of bookings: written by the record activity, read by the API."""

    async def record(self, snapshot: RecordBookingInput, run_id: str | None = None) -> None:
        """`run_id`: the workflow run that sent it (a reset's new run supersedes the old one)."""

    async def get_view(self, booking_id: str) -> BookingView | None: ...
