"""The ledger's tables: the durable record of every booking, payment, refund and staff action.

Temporal forgets a workflow's history after its retention period; these rows are what support,
finance and the customer read forever after. Mutable facts (the booking, its items, travellers,
payments and refunds) are keyed by business identity and keep only the newest snapshot; the event
log is append-only (the migration adds triggers that refuse UPDATE and DELETE).

Personal data (the customer's e-mail and name, the travellers) is stored only encrypted, with
keys of the payload key family (passage.codec.LedgerCipher), and the e-mail is searched by a keyed
hash: a dump of these tables shows no one's name, address, birth date or document.

Statuses are plain strings rather than database enums so a new status needs no migration. Money
is integer minor units in the booking's currency. Timestamps are UTC; the RFC 3339 strings the
workflow wrote are kept next to them (`*_text`) so the BookingView is rebuilt byte for byte.
`migrations/versions/` must build exactly these tables (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Index, Text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC
    and made aware again on read. Comparisons and keyset pagination then behave the same on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class BookingRow(SQLModel, table=True):
    """One booking as of its newest recorded snapshot (`version`), with its payment summary."""

    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_created_at_booking_id", "created_at", "booking_id"),
        Index("ix_bookings_status_created_at", "status", "created_at", "booking_id"),
        Index("ix_bookings_customer_email_hash", "customer_email_hash"),
        Index("ix_bookings_customer_ref", "customer_ref"),
    )

    booking_id: str = Field(primary_key=True)
    version: int
    status: str
    step: str
    currency: str
    expected_total_minor: int = Field(sa_type=BigInteger)
    quoted_total_minor: int | None = Field(default=None, sa_type=BigInteger)
    payment_status: str
    #: What suppliers kept while the booking was undone (the merchant's cost); NULL: not reported.
    fees_absorbed_minor: int | None = Field(default=None, sa_type=BigInteger)
    error_type: str | None = None
    error_message: str | None = None
    attention_step: str | None = None
    attention_reason: str | None = None
    attention_since: str | None = None
    #: The item the stuck step is about (an optional item's refused undo), if any.
    attention_item_id: str | None = None
    customer_ref: str
    #: The customer's e-mail and name, encrypted together (`sql_personal_data.seal_customer`);
    #: written with the first insert and never changed.
    customer_ciphertext: str = Field(sa_type=Text)
    #: Keyed hash of the normalized e-mail (`LedgerCipher.email_hash`): staff search by e-mail,
    #: case-insensitive and on an index, with no address in clear.
    customer_email_hash: str
    #: Already a hash when it arrives (the token itself is never stored).
    access_token_hash: str
    #: The sort and range key of staff search; set on first insert and never changed.
    created_at: datetime = Field(sa_type=UtcDateTime)
    created_at_text: str
    updated_at_text: str
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    #: Timeline entries (JSON) of a workflow task that had not completed when this was written;
    #: they move to `booking_events` with a later write. NULL: none.
    pending_timeline: str | None = Field(default=None, sa_type=Text)
    #: Which workflow run wrote this row: 0 until the first reset, then the generation of the
    #: `booking_resets` row whose run wrote it. Ordered before `version`: a reset run starts
    #: again from the lower version of its reset point and still supersedes the old run.
    run_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class BookingItemRow(SQLModel, table=True):
    """One item as of the booking's newest snapshot; `position` keeps the view's order."""

    __tablename__ = "booking_items"
    __table_args__ = (Index("ix_booking_items_supplier", "supplier", "booking_id"),)

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    item_id: str = Field(primary_key=True)
    position: int
    offer_id: str
    quantity: int
    optional: bool
    status: str
    price_minor: int = Field(sa_type=BigInteger)
    expected_price_minor: int | None = Field(default=None, sa_type=BigInteger)
    #: The price the supplier held the item at, when it differs from the quote.
    held_price_minor: int | None = Field(default=None, sa_type=BigInteger)
    kind: str | None = None
    supplier: str | None = None
    hold_ref: str | None = None
    hold_expires_at: str | None = None
    supplier_ref: str | None = None
    confirmation_code: str | None = None
    #: The four cancellation terms are all NULL when the item has no terms yet.
    cancellation_refundable: bool | None = None
    cancellation_free_until: str | None = None
    cancellation_fee_bps: int | None = None
    cancellation_cancellable: bool | None = None
    #: The fee the supplier kept when the item was cancelled after confirmation.
    cancellation_fee_minor: int | None = Field(default=None, sa_type=BigInteger)
    error_type: str | None = None
    error_message: str | None = None


class TravellerRow(SQLModel, table=True):
    """A traveller of a booking, encrypted: names, birth date and a hint of the travel document.

    The document is kept only as its last few characters (at most four, never more than half of
    the number: enough for support to match a passport a customer reads out), and even that only
    inside the ciphertext (`sql_personal_data.seal_traveller`).
    """

    __tablename__ = "booking_travellers"

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    position: int = Field(primary_key=True)
    traveller_ciphertext: str = Field(sa_type=Text)


class PaymentRow(SQLModel, table=True):
    """A money movement on the card: one row per booking and kind (`authorization`, `capture`)."""

    __tablename__ = "payments"

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    kind: str = Field(primary_key=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    payment_intent_id: str | None = None
    recorded_at: datetime = Field(sa_type=UtcDateTime)


class RefundRow(SQLModel, table=True):
    """Money returned to the customer and fees kept by suppliers, one row per booking and reason."""

    __tablename__ = "refunds"

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    reason: str = Field(primary_key=True)
    amount_minor: int = Field(sa_type=BigInteger)
    fee_minor: int = Field(sa_type=BigInteger)
    currency: str
    recorded_at: datetime = Field(sa_type=UtcDateTime)


class BookingEventRow(SQLModel, table=True):
    """One entry of a booking's timeline: a step, a status transition or a staff action (`actor`).

    Append-only: inserted once per (booking, seq), never updated or deleted.
    """

    __tablename__ = "booking_events"

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    seq: int = Field(primary_key=True)
    #: NULL when the workflow wrote a timestamp that does not parse; `at_text` keeps it anyway.
    at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    at_text: str
    step: str
    outcome: str
    detail: str
    actor: str | None = None
    recorded_at: datetime = Field(sa_type=UtcDateTime)


class BookingResetRow(SQLModel, table=True):
    """One staff reset of a booking's workflow: who, when, to which step, and the run it made.

    A reset starts a new workflow run from an earlier workflow task: its snapshots carry lower
    versions and its own timeline numbering from the reset point on. Generation N (1, 2, ...)
    is the run a reset made; the run it replaced (`base_run_id`) is generation N - 1. The row is
    written before the reset is asked of Temporal (`run_id` NULL: the next run that writes claims
    it); at the new run's first write the store finds how many of its timeline entries it
    inherited and continues the trail after the old run's last entry and a RESET entry:
    the run's entry `seq` > `inherited_entries` is the ledger's `seq + timeline_offset`.
    """

    __tablename__ = "booking_resets"

    booking_id: str = Field(primary_key=True, foreign_key="bookings.booking_id")
    generation: int = Field(primary_key=True)
    base_run_id: str
    #: The new run's Temporal run id; NULL until Temporal answered or the run first wrote.
    run_id: str | None = None
    to_step: str
    actor: str
    note: str
    requested_at: datetime = Field(sa_type=UtcDateTime)
    #: NULL until the new run's first write (then the RESET entry is in `booking_events`).
    inherited_entries: int | None = None
    timeline_offset: int | None = None


class WebhookEventRow(SQLModel, table=True):
    """A Stripe webhook event id already handled: each event counts once however often sent."""

    __tablename__ = "processed_webhook_events"

    event_id: str = Field(primary_key=True)
    processed_at: datetime = Field(sa_type=UtcDateTime)
