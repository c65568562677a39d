"""The ledger's rows <-> the booking's view: what `SqlBookingStore` writes and reads back.

Money rows derived from `view.payment` (one currency per booking, the contract's rule):

- `payments` row `authorization` once the view has a PaymentIntent or a non-zero `authorized`
  (amount = `authorized`); row `capture` once `captured` is non-zero (amount = `captured`).
- `refunds`: one row once `refunded` or `fees_kept` is non-zero (amount = `refunded`, fee =
  `fees_kept`). Its reason is `cancellation` when an item carries a `cancellation_fee` (confirmed
  items cancelled under their terms; each item's fee stays on its `booking_items` row) and
  `compensation` otherwise (the saga gave back a captured payment).
- `payment.fees_absorbed` (suppliers' fees the merchant bears, never charged) is no money movement
  on the card: it stays on the `bookings` row (`fees_absorbed_minor`, NULL when None).

`booking_view` rebuilds the BookingView from these rows exactly, except `payment.client_secret`:
the 3-D Secure secret belongs to the checkout frontend only and is never written to the ledger.
Traveller document numbers are reduced to a short hint; the access token arrives already hashed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from activities.adapters.sql_personal_data import (
    FieldCipher,
    document_hint,
    open_customer,
    seal_traveller,
)
from activities.adapters.tables import (
    BookingEventRow,
    BookingItemRow,
    BookingRow,
    PaymentRow,
    RefundRow,
    TravellerRow,
)
from activities.ports import BookingSummary, TravellerRecord
from workflows.contracts import (
    AttentionView,
    BookingError,
    BookingView,
    ErrorType,
    ItemView,
    PaymentView,
    TimelineEntry,
)
from workflows.model import (
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemKind,
    ItemStatus,
    Money,
    PaymentStatus,
)


class LedgerError(ValueError):
    """A snapshot the ledger cannot record as sent (e.g. two currencies): retrying cannot help."""


# --- snapshot -> rows ----------------------------------------------------------------------------


def booking_row(
    request: BookingRequest, view: BookingView, now: datetime, committed: int | None
) -> BookingRow:
    """The booking row without its customer fields (`SqlBookingStore` seals them)."""
    minor = _minor_units(view.currency)
    payment = view.payment
    pending = [
        dataclasses.asdict(entry)
        for entry in view.timeline
        if committed is not None and entry.seq > committed
    ]
    return BookingRow(
        booking_id=view.booking_id,
        version=view.version,
        status=view.status.value,
        step=view.step,
        currency=view.currency,
        expected_total_minor=minor(view.expected_total),
        quoted_total_minor=None if view.quoted_total is None else minor(view.quoted_total),
        payment_status=payment.status.value,
        fees_absorbed_minor=_optional_minor(minor, payment.fees_absorbed),
        error_type=None if view.error is None else view.error.type,
        error_message=None if view.error is None else view.error.message,
        attention_step=None if view.attention is None else view.attention.step,
        attention_reason=None if view.attention is None else view.attention.reason,
        attention_since=None if view.attention is None else view.attention.since,
        attention_item_id=None if view.attention is None else view.attention.item_id,
        customer_ref=view.customer_ref,
        customer_ciphertext="",
        customer_email_hash="",
        access_token_hash=request.access_token_hash,
        created_at=(
            _parse_timestamp(view.created_at)
            or _parse_timestamp(request.created_at)
            or _parse_timestamp(view.updated_at)
            or now
        ),
        created_at_text=view.created_at,
        updated_at_text=view.updated_at,
        recorded_at=now,
        pending_timeline=json.dumps(pending) if pending else None,
    )


def item_rows(request: BookingRequest, view: BookingView) -> list[BookingItemRow]:
    """One row per item, in the view's order, with the price the customer was shown."""
    minor = _minor_units(view.currency)
    expected = {item.item_id: minor(item.expected_price) for item in request.items}
    rows = []
    for position, item in enumerate(view.items):
        terms = item.cancellation
        rows.append(
            BookingItemRow(
                booking_id=view.booking_id,
                item_id=item.item_id,
                position=position,
                offer_id=item.offer_id,
                quantity=item.quantity,
                optional=item.optional,
                status=item.status.value,
                price_minor=minor(item.price),
                expected_price_minor=expected.get(item.item_id),
                held_price_minor=_optional_minor(minor, item.held_price),
                kind=None if item.kind is None else item.kind.value,
                supplier=item.supplier,
                hold_ref=item.hold_ref,
                hold_expires_at=item.hold_expires_at,
                supplier_ref=item.supplier_ref,
                confirmation_code=item.confirmation_code,
                cancellation_refundable=None if terms is None else terms.refundable,
                cancellation_free_until=None if terms is None else terms.free_until,
                cancellation_fee_bps=None if terms is None else terms.fee_bps,
                cancellation_cancellable=None if terms is None else terms.cancellable,
                cancellation_fee_minor=_optional_minor(minor, item.cancellation_fee),
                error_type=None if item.error is None else item.error.type,
                error_message=None if item.error is None else item.error.message,
            )
        )
    return rows


def traveller_rows(request: BookingRequest, cipher: FieldCipher) -> list[TravellerRow]:
    """One sealed row per traveller, by position (the document reduced to its hint)."""
    return [
        TravellerRow(
            booking_id=request.booking_id,
            position=position,
            traveller_ciphertext=seal_traveller(
                cipher,
                request.booking_id,
                position,
                TravellerRecord(
                    first_name=traveller.first_name,
                    last_name=traveller.last_name,
                    birth_date=traveller.birth_date,
                    document_hint=document_hint(traveller),
                ),
            ),
        )
        for position, traveller in enumerate(request.travellers)
    ]


def payment_rows(view: BookingView, now: datetime) -> list[PaymentRow]:
    """The `authorization` and `capture` rows the view's payment has reached."""
    minor = _minor_units(view.currency)
    payment = view.payment
    rows = []
    authorized, captured = minor(payment.authorized), minor(payment.captured)
    for kind, amount, present in (
        ("authorization", authorized, payment.payment_intent_id is not None or authorized != 0),
        ("capture", captured, captured != 0),
    ):
        if present:
            rows.append(
                PaymentRow(
                    booking_id=view.booking_id,
                    kind=kind,
                    amount_minor=amount,
                    currency=view.currency,
                    payment_intent_id=payment.payment_intent_id,
                    recorded_at=now,
                )
            )
    return rows


def refund_rows(view: BookingView, now: datetime) -> list[RefundRow]:
    """The booking's one refund row, once money or a fee went back (see the module's notes)."""
    minor = _minor_units(view.currency)
    refunded, fees_kept = minor(view.payment.refunded), minor(view.payment.fees_kept)
    if refunded == 0 and fees_kept == 0:
        return []
    cancelled = any(item.cancellation_fee is not None for item in view.items)
    return [
        RefundRow(
            booking_id=view.booking_id,
            reason="cancellation" if cancelled else "compensation",
            amount_minor=refunded,
            fee_minor=fees_kept,
            currency=view.currency,
            recorded_at=now,
        )
    ]


def event_row(booking_id: str, entry: TimelineEntry, now: datetime) -> BookingEventRow:
    """A timeline entry as its audit-trail row."""
    return BookingEventRow(
        booking_id=booking_id,
        seq=entry.seq,
        at=_parse_timestamp(entry.at),
        at_text=entry.at,
        step=entry.step,
        outcome=entry.outcome,
        detail=entry.detail,
        actor=entry.actor,
        recorded_at=now,
    )


def _minor_units(currency: str) -> Callable[[Money], int]:
    """Amount in minor units of `currency`; refuses a second currency in one booking."""

    def minor(money: Money) -> int:
        if money.currency != currency:
            raise LedgerError(f"booking in {currency} carries an amount in {money.currency}")
        return money.amount_minor

    return minor


def _optional_minor(minor: Callable[[Money], int], money: Money | None) -> int | None:
    return None if money is None else minor(money)


def _parse_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- rows -> view --------------------------------------------------------------------------------


def booking_view(
    booking: BookingRow,
    items: Sequence[BookingItemRow],
    payments: Sequence[PaymentRow],
    refunds: Sequence[RefundRow],
    events: Sequence[BookingEventRow],
) -> BookingView:
    """The view the booking's rows record (items in position order, events in `seq` order)."""
    currency = booking.currency
    by_kind = {payment.kind: payment for payment in payments}
    authorization, capture = by_kind.get("authorization"), by_kind.get("capture")
    return BookingView(
        booking_id=booking.booking_id,
        status=BookingStatus(booking.status),
        step=booking.step,
        currency=currency,
        expected_total=Money(booking.expected_total_minor, currency),
        quoted_total=_optional_money(booking.quoted_total_minor, currency),
        items=tuple(_item_view(item, currency) for item in items),
        payment=PaymentView(
            status=PaymentStatus(booking.payment_status),
            authorized=Money(0 if authorization is None else authorization.amount_minor, currency),
            captured=Money(0 if capture is None else capture.amount_minor, currency),
            refunded=Money(sum(refund.amount_minor for refund in refunds), currency),
            fees_kept=Money(sum(refund.fee_minor for refund in refunds), currency),
            payment_intent_id=None if authorization is None else authorization.payment_intent_id,
            fees_absorbed=_optional_money(booking.fees_absorbed_minor, currency),
        ),
        timeline=booking_timeline(booking, events),
        error=(
            None
            if booking.error_type is None
            else BookingError(ErrorType(booking.error_type), booking.error_message or "")
        ),
        attention=_attention(booking),
        version=booking.version,
        updated_at=booking.updated_at_text,
        created_at=booking.created_at_text,
        customer_ref=booking.customer_ref,
    )


def _item_view(item: BookingItemRow, currency: str) -> ItemView:
    terms = None
    if item.cancellation_refundable is not None:
        terms = CancellationTerms(
            refundable=item.cancellation_refundable,
            free_until=item.cancellation_free_until,
            fee_bps=item.cancellation_fee_bps or 0,
            cancellable=bool(item.cancellation_cancellable),
        )
    return ItemView(
        item_id=item.item_id,
        offer_id=item.offer_id,
        quantity=item.quantity,
        optional=item.optional,
        status=ItemStatus(item.status),
        price=Money(item.price_minor, currency),
        kind=None if item.kind is None else ItemKind(item.kind),
        supplier=item.supplier,
        hold_ref=item.hold_ref,
        hold_expires_at=item.hold_expires_at,
        supplier_ref=item.supplier_ref,
        confirmation_code=item.confirmation_code,
        cancellation=terms,
        cancellation_fee=_optional_money(item.cancellation_fee_minor, currency),
        error=(
            None
            if item.error_type is None
            else BookingError(ErrorType(item.error_type), item.error_message or "")
        ),
        held_price=_optional_money(item.held_price_minor, currency),
    )


def _optional_money(amount_minor: int | None, currency: str) -> Money | None:
    return None if amount_minor is None else Money(amount_minor, currency)


def _attention(booking: BookingRow) -> AttentionView | None:
    if booking.attention_step is None:
        return None
    return AttentionView(
        step=booking.attention_step,
        reason=booking.attention_reason or "",
        since=booking.attention_since or "",
        item_id=booking.attention_item_id,
    )


def booking_timeline(
    booking: BookingRow, events: Sequence[BookingEventRow]
) -> tuple[TimelineEntry, ...]:
    """The audit trail, then the entries still pending on the booking row."""
    recorded = tuple(_timeline_entry(event) for event in events)
    last = recorded[-1].seq if recorded else 0
    pending = json.loads(booking.pending_timeline) if booking.pending_timeline else []
    return recorded + tuple(TimelineEntry(**entry) for entry in pending if entry["seq"] > last)


def _timeline_entry(row: BookingEventRow) -> TimelineEntry:
    return TimelineEntry(
        seq=row.seq,
        at=row.at_text,
        step=row.step,
        outcome=row.outcome,
        detail=row.detail,
        actor=row.actor,
    )


def booking_summary(
    booking: BookingRow, suppliers: tuple[str, ...], cipher: FieldCipher
) -> BookingSummary:
    """The staff list's line of a booking, its customer decrypted (quoted total, else expected)."""
    total = booking.quoted_total_minor
    if total is None:
        total = booking.expected_total_minor
    email, name = open_customer(cipher, booking.booking_id, booking.customer_ciphertext)
    return BookingSummary(
        booking_id=booking.booking_id,
        status=BookingStatus(booking.status),
        step=booking.step,
        customer_email=email,
        customer_name=name,
        total=Money(total, booking.currency),
        suppliers=suppliers,
        created_at=booking.created_at_text,
        updated_at=booking.updated_at_text,
        attention=_attention(booking),
    )
