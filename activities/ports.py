"""The outside world as the activities see it: one Protocol per port, adapters at the edge.

Adapters raise `activities.errors.BusinessError` for refusals (never retried) and let transport
failures (5xx, timeouts, connection errors) escape as `activities.errors.TransientError`, so one
place decides what Temporal retries.

The ledger's port (`LedgerStore`) is also what the API, the staff CLI and the evidence collector
read: its read models, its staff-search query and the errors it raises live here, so they depend
on the port and only the composition roots name the SQL adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from workflows.contracts import (
    AttentionView,
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
    TimelineEntry,
    VoidPaymentInput,
)
from workflows.model import BookingStatus, Money


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


# --- the ledger as the API, the CLI and the webhook endpoint read it -----------------------------

#: The largest page staff search serves; bigger requests are refused rather than silently cut.
MAX_PAGE_SIZE = 500

#: PostgreSQL only: every recorded snapshot NOTIFYs this channel with its booking id (no other
#: data) when its transaction commits; the API's event streams LISTEN (api/events.py).
BOOKING_CHANGED_CHANNEL = "passage_booking_changed"


class InvalidCursor(ValueError):
    """A search cursor the ledger did not issue (tampered, truncated or from another sort)."""


class ResetInProgress(Exception):
    """Another reset of the booking was asked for moments ago and its run has not written yet."""


@dataclass(frozen=True)
class StaffSearch:
    """One page of a staff search: filters combine with AND, newest first, `limit` per page.

    `email` matches case-insensitively, `created_from` is inclusive and `created_to` exclusive
    (naive datetimes are UTC), `supplier` matches any item; `cursor` is the next-page cursor the
    previous page of the same search returned.
    """

    status: BookingStatus | str | None = None
    email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    supplier: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class BookingSummary:
    """One line of the staff booking list: enough to pick the booking, not the whole view."""

    booking_id: str
    status: BookingStatus
    step: str
    customer_email: str
    customer_name: str
    total: Money
    suppliers: tuple[str, ...]
    created_at: str
    updated_at: str
    attention: AttentionView | None


@dataclass(frozen=True)
class StoredBooking:
    """A booking as the ledger holds it: its newest view and the hash that authorizes reading it."""

    view: BookingView
    access_token_hash: str | None


@dataclass(frozen=True)
class TravellerRecord:
    """A traveller as the ledger keeps them (the document as a hint of its last characters)."""

    first_name: str
    last_name: str
    birth_date: str
    document_hint: str


@dataclass(frozen=True)
class PersonalData:
    """A booking's customer and travellers, decrypted: for staff, never for logs or the view."""

    customer_email: str
    customer_name: str
    travellers: tuple[TravellerRecord, ...]


@dataclass(frozen=True)
class LedgerTotals:
    """The ledger now. Money is integer minor units, by currency."""

    #: Bookings by their current status (`CONFIRMED`, `NEEDS_ATTENTION`, ...).
    bookings_by_status: dict[str, int] = field(default_factory=dict)
    #: Undo steps that ran, by (step kind, outcome): `("RELEASE", "ok")`.
    undos: dict[tuple[str, str], int] = field(default_factory=dict)
    captured_minor: dict[str, int] = field(default_factory=dict)
    refunded_minor: dict[str, int] = field(default_factory=dict)
    fees_kept_minor: dict[str, int] = field(default_factory=dict)


class ResetLedger(Protocol):
    """The ledger's side of a staff reset (passage/reset.py, around Temporal's reset)."""

    async def begin_reset(
        self, booking_id: str, base_run_id: str, to_step: str, actor: str, note: str
    ) -> int: ...

    async def name_reset_run(self, booking_id: str, generation: int, run_id: str) -> None: ...

    async def abandon_reset(self, booking_id: str, generation: int) -> None: ...

    async def reset_recorded(self, booking_id: str, generation: int) -> bool: ...


class LedgerStore(BookingStore, ResetLedger, Protocol):
    """BookingStore plus what the API, the CLI and the webhook endpoint read from the ledger."""

    async def record_if_absent(self, snapshot: RecordBookingInput) -> bool:
        """The API's first row of a booking it started: inserted only if the ledger has none."""

    async def read(self, booking_id: str) -> StoredBooking | None: ...

    async def get_access_token_hash(self, booking_id: str) -> str | None: ...

    async def events(self, booking_id: str) -> tuple[TimelineEntry, ...]: ...

    async def personal_data(self, booking_id: str) -> PersonalData | None: ...

    async def totals(self) -> LedgerTotals: ...

    async def changes(self, booking_ids: Sequence[str]) -> dict[str, str]: ...

    async def search(self, query: StaffSearch) -> tuple[list[BookingSummary], str | None]:
        """One page of summaries and the cursor of the next (None on the last page).

        Raises:
            InvalidCursor: the cursor was not issued by this store.
            ValueError: `limit` is outside 1..MAX_PAGE_SIZE.
        """

    async def mark_webhook_event_processed(self, event_id: str) -> bool: ...
