"""The HTTP shapes of the API: request bodies (validated here, once) and responses.

Pydantic lives only here and in settings; the domain (`workflows.model`, `workflows.contracts`) is
frozen dataclasses, and the functions at the bottom translate between the two.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from activities.adapters.sql_store import BookingSummary, PersonalData
from api.service import NewBooking, NewItem, StartedBooking
from workflows import contracts
from workflows import model as domain
from workflows.model import BookingStatus, ItemKind, ItemStatus, PaymentStatus

# --- field types ---------------------------------------------------------------------------------

#: Printable text with at least one non-blank character (no control characters reach the ledger).
_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=_EMAIL)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
OfferId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
PaymentMethodId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-]+$")
]
Note = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
StepName = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=r"^[\w ]+$")]
#: 10^10 minor units per item: far above any trip, far below int64 once summed.
MAX_AMOUNT_MINOR = 10_000_000_000
MAX_ITEMS = 10
MAX_TRAVELLERS = 9
MAX_QUANTITY = 99

_BIRTH_DATE = r"^(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


def _birth_date_string(value: Any) -> Any:
    """Only `YYYY-MM-DD` from 1900 on (pydantic would also take seconds since 1970)."""
    if not isinstance(value, str) or not re.fullmatch(_BIRTH_DATE, value):
        raise PydanticCustomError("date_format", "must be a date YYYY-MM-DD, 1900 or later")
    return value


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema means it: 3 or 3.0, never 3.5, "3" or true."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_type", "must be an integer")
        return int(value)
    return value


BirthDate = Annotated[
    date, BeforeValidator(_birth_date_string), Field(json_schema_extra={"pattern": _BIRTH_DATE})
]
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class Money(BaseModel):
    """An amount in integer minor units (cents) of one ISO 4217 currency."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": 60000, "currency": "EUR"}]}
    )

    amount: JsonInt = Field(ge=0, le=MAX_AMOUNT_MINOR, description="Minor units, e.g. cents.")
    currency: Currency = Field(description="ISO 4217 code, upper case.")

    @classmethod
    def of(cls, money: domain.Money) -> Money:
        return cls(amount=money.amount_minor, currency=money.currency)

    @classmethod
    def of_optional(cls, money: domain.Money | None) -> Money | None:
        return None if money is None else cls.of(money)


# --- checkout request ----------------------------------------------------------------------------


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name


class TravellerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Name
    last_name: Name
    birth_date: BirthDate
    document_number: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 -]+$")
    ]

    @field_validator("birth_date")
    @classmethod
    def _plausible(cls, value: date) -> date:
        if value > date.today():
            raise PydanticCustomError("date_in_future", "must not be in the future")
        return value


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer_id: OfferId = Field(description="An offer id from the supplier simulator's /offers.")
    quantity: JsonInt = Field(ge=1, le=MAX_QUANTITY)
    expected_price: Money = Field(description="The total price the customer saw for this item.")
    optional: StrictBool = Field(
        default=False, description="An optional item that fails is dropped, not the booking."
    )


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method: PaymentMethodId = Field(description="A Stripe PaymentMethod id (pm_...).")


class BookingCreate(BaseModel):
    """A checkout: who travels, what they buy, how they pay. One currency per booking."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                    "travellers": [
                        {
                            "first_name": "Ada",
                            "last_name": "Lovelace",
                            "birth_date": "1990-12-10",
                            "document_number": "X1234567",
                        }
                    ],
                    "items": [
                        {
                            "offer_id": "fl-aurora-cdg-jfk",
                            "quantity": 1,
                            "expected_price": {"amount": 60000, "currency": "EUR"},
                            "optional": False,
                        }
                    ],
                    "payment": {"payment_method": "pm_card_visa"},
                }
            ]
        },
    )

    #: The error type of the one rule that spans fields (reported per item by `api.errors`).
    CROSS_FIELD_ERROR_TYPE: ClassVar[str] = "currency_mismatch"

    customer: Customer
    travellers: list[TravellerIn] = Field(min_length=1, max_length=MAX_TRAVELLERS)
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    payment: PaymentIn

    @model_validator(mode="after")
    def _one_currency(self) -> BookingCreate:
        if len({item.expected_price.currency for item in self.items}) > 1:
            raise PydanticCustomError(
                self.CROSS_FIELD_ERROR_TYPE, "all items must use one currency"
            )
        return self

    @classmethod
    def cross_field_errors(cls, raw: Any) -> list[tuple[tuple[str | int, ...], str]]:
        """Errors of the one-currency rule, per offending field, from the raw body.

        Pydantic runs a model validator only once every field is valid; reading the raw body lets
        a 422 name the mismatched currencies together with every other bad field.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
            return []
        first: str | None = None
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for index, item in enumerate(raw["items"]):
            price = item.get("expected_price") if isinstance(item, dict) else None
            currency = price.get("currency") if isinstance(price, dict) else None
            if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
                continue
            if first is None:
                first = currency
            elif currency != first:
                errors.append(
                    (
                        ("items", index, "expected_price", "currency"),
                        f"all items must use one currency ({first})",
                    )
                )
        return errors

    def to_new_booking(self) -> NewBooking:
        return NewBooking(
            customer_email=self.customer.email,
            customer_name=self.customer.name,
            travellers=tuple(
                domain.Traveller(
                    first_name=traveller.first_name,
                    last_name=traveller.last_name,
                    birth_date=traveller.birth_date.isoformat(),
                    document_number=traveller.document_number,
                )
                for traveller in self.travellers
            ),
            items=tuple(
                NewItem(
                    offer_id=item.offer_id,
                    quantity=item.quantity,
                    expected_price=domain.Money(
                        item.expected_price.amount, item.expected_price.currency
                    ),
                    optional=item.optional,
                )
                for item in self.items
            ),
            payment_method=self.payment.payment_method,
        )


class PriceDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"accept": True}]})

    accept: StrictBool = Field(description="true: book at the new price; false: give up.")


class StaffNote(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "supplier confirmed the cancellation by phone"}]},
    )

    note: Note = Field(default="", description="Why; recorded in the audit trail.")


class StaffReset(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"to": "CONFIRM it_1", "note": "fixed in 1.4.2"}]},
    )

    to: StepName | None = Field(
        default=None,
        description="The step to go back to: PRICE, HOLD, AUTHORIZE, PAYMENT_ACTION, CONFIRM, "
        "CAPTURE (or an undo: CANCEL, RELEASE, VOID, REFUND), optionally with an item "
        "(`CONFIRM it_1`). Default: the forward step whose failure started the undo.",
    )
    note: Note = Field(default="", description="Why; recorded in the audit trail.")


# --- responses -----------------------------------------------------------------------------------


class Links(BaseModel):
    self_: str = Field(alias="self", serialization_alias="self")

    model_config = ConfigDict(populate_by_name=True)


class BookingAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
                    "status": "RECEIVED",
                    "access_token": "q8Xb6m0c1nV4yGkq3u0dY7bq2rB5f3J9c8aW1e2Zx0s",
                    "links": {"self": "/bookings/bk_3f9a1c0d5e7b2a4c6d8e0f12"},
                }
            ]
        }
    )

    booking_id: str
    status: BookingStatus
    access_token: str = Field(description="Bearer token for GET /bookings/{id} and its actions.")
    links: Links

    @classmethod
    def of(cls, started: StartedBooking) -> BookingAccepted:
        return cls(
            booking_id=started.booking_id,
            status=started.status,
            access_token=started.access_token,
            links=Links.model_validate({"self": f"/bookings/{started.booking_id}"}),
        )


class ErrorInfo(BaseModel):
    type: str = Field(description="SOLD_OUT, PRICE_CHANGED, PAYMENT_DECLINED, ...")
    message: str

    @classmethod
    def of(cls, error: contracts.BookingError | None) -> ErrorInfo | None:
        return None if error is None else cls(type=error.type, message=error.message)


class CancellationTermsOut(BaseModel):
    refundable: bool
    free_until: str | None
    fee_bps: int
    cancellable: bool


class ItemOut(BaseModel):
    item_id: str
    offer_id: str
    kind: ItemKind | None
    optional: bool
    quantity: int
    status: ItemStatus
    supplier: str | None
    supplier_ref: str | None
    confirmation_code: str | None
    price: Money
    held_price: Money | None = Field(
        description="The price the supplier holds the item at, when it differs from the quote."
    )
    cancellation: CancellationTermsOut | None
    cancellation_fee: Money | None
    error: ErrorInfo | None

    @classmethod
    def of(cls, item: contracts.ItemView) -> ItemOut:
        terms = item.cancellation
        return cls(
            item_id=item.item_id,
            offer_id=item.offer_id,
            kind=item.kind,
            optional=item.optional,
            quantity=item.quantity,
            status=item.status,
            supplier=item.supplier,
            supplier_ref=item.supplier_ref,
            confirmation_code=item.confirmation_code,
            price=Money.of(item.price),
            held_price=Money.of_optional(item.held_price),
            cancellation=None
            if terms is None
            else CancellationTermsOut(
                refundable=terms.refundable,
                free_until=terms.free_until,
                fee_bps=terms.fee_bps,
                cancellable=terms.cancellable,
            ),
            cancellation_fee=Money.of_optional(item.cancellation_fee),
            error=ErrorInfo.of(item.error),
        )


class PaymentOut(BaseModel):
    status: PaymentStatus
    authorized: Money
    captured: Money
    refunded: Money
    fees_kept: Money = Field(description="Cancellation fees suppliers kept, paid by the customer.")
    fees_absorbed: Money = Field(
        description="Fees suppliers kept while a failed or staff-cancelled booking was undone: "
        "the merchant's cost, never charged to the customer."
    )
    payment_intent_id: str | None
    client_secret: str | None = Field(
        default=None,
        description="Only while AWAITING_PAYMENT_ACTION: for Stripe.js to run 3-D Secure.",
    )


class TimelineEntryOut(BaseModel):
    seq: int
    at: str = Field(description="RFC 3339")
    step: str
    outcome: str
    detail: str
    actor: str | None = Field(description="customer, staff, ... (None: the engine itself)")

    @classmethod
    def of(cls, entry: contracts.TimelineEntry, *, staff: bool) -> TimelineEntryOut:
        actor = entry.actor
        if not staff and actor is not None and actor.startswith("staff"):
            actor = "staff"  # which operator acted is for staff eyes only
        return cls(
            seq=entry.seq,
            at=entry.at,
            step=entry.step,
            outcome=entry.outcome,
            detail=entry.detail,
            actor=actor,
        )


class AttentionOut(BaseModel):
    step: str
    reason: str
    since: str
    item_id: str | None = Field(description="The item the stuck step is about, if any.")

    @classmethod
    def of(cls, attention: contracts.AttentionView | None) -> AttentionOut | None:
        if attention is None:
            return None
        return cls(
            step=attention.step,
            reason=attention.reason,
            since=attention.since,
            item_id=attention.item_id,
        )


_BOOKING_EXAMPLE: dict[str, Any] = {
    "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
    "status": "CONFIRMED",
    "step": "CONFIRMED",
    "items": [
        {
            "item_id": "it_1",
            "offer_id": "fl-aurora-cdg-jfk",
            "kind": "flight",
            "optional": False,
            "quantity": 1,
            "status": "CONFIRMED",
            "supplier": "aurora-air",
            "supplier_ref": "AUR-7K2M9Q",
            "confirmation_code": "QX7T2M",
            "price": {"amount": 60000, "currency": "EUR"},
            "held_price": None,
            "cancellation": {
                "refundable": True,
                "free_until": "2020-01-01T00:00:00+00:00",
                "fee_bps": 1000,
                "cancellable": True,
            },
            "cancellation_fee": None,
            "error": None,
        }
    ],
    "payment": {
        "status": "CAPTURED",
        "authorized": {"amount": 60000, "currency": "EUR"},
        "captured": {"amount": 60000, "currency": "EUR"},
        "refunded": {"amount": 0, "currency": "EUR"},
        "fees_kept": {"amount": 0, "currency": "EUR"},
        "fees_absorbed": {"amount": 0, "currency": "EUR"},
        "payment_intent_id": "pi_3PqL0a2eZvKYlo2C",
        "client_secret": None,
    },
    "timeline": [
        {
            "seq": 1,
            "at": "2026-05-04T10:00:00.120000+00:00",
            "step": "RECEIVED",
            "outcome": "ok",
            "detail": "1 item(s)",
            "actor": None,
        },
        {
            "seq": 5,
            "at": "2026-05-04T10:00:00.480000+00:00",
            "step": "HOLD it_1",
            "outcome": "ok",
            "detail": "until 2026-05-04T10:30:00+00:00",
            "actor": None,
        },
    ],
    "error": None,
    "expected_total": {"amount": 60000, "currency": "EUR"},
    "quoted_total": {"amount": 60000, "currency": "EUR"},
    "attention": None,
    "created_at": "2026-05-04T10:00:00.100000+00:00",
    "updated_at": "2026-05-04T10:00:01.900000+00:00",
}


class BookingOut(BaseModel):
    """A booking as the customer (and staff) see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BOOKING_EXAMPLE]})

    booking_id: str
    status: BookingStatus
    step: str
    items: list[ItemOut]
    payment: PaymentOut
    timeline: list[TimelineEntryOut]
    error: ErrorInfo | None
    expected_total: Money
    quoted_total: Money | None
    attention: AttentionOut | None
    created_at: str
    updated_at: str

    @classmethod
    def fields_of(cls, view: contracts.BookingView, *, staff: bool) -> dict[str, Any]:
        payment = view.payment
        awaiting_action = view.status == BookingStatus.AWAITING_PAYMENT_ACTION
        return {
            "booking_id": view.booking_id,
            "status": view.status,
            "step": view.step,
            "items": [ItemOut.of(item) for item in view.items],
            "payment": PaymentOut(
                status=payment.status,
                authorized=Money.of(payment.authorized),
                captured=Money.of(payment.captured),
                refunded=Money.of(payment.refunded),
                fees_kept=Money.of(payment.fees_kept),
                fees_absorbed=Money.of(payment.fees_absorbed or domain.Money.zero(view.currency)),
                payment_intent_id=payment.payment_intent_id,
                client_secret=payment.client_secret if awaiting_action else None,
            ),
            "timeline": [TimelineEntryOut.of(entry, staff=staff) for entry in view.timeline],
            "error": ErrorInfo.of(view.error),
            "expected_total": Money.of(view.expected_total),
            "quoted_total": Money.of_optional(view.quoted_total),
            "attention": AttentionOut.of(view.attention),
            "created_at": view.created_at,
            "updated_at": view.updated_at,
        }

    @classmethod
    def of(cls, view: contracts.BookingView) -> BookingOut:
        return cls(**cls.fields_of(view, staff=False))


class CustomerOut(BaseModel):
    email: str
    name: str


class TravellerOut(BaseModel):
    first_name: str
    last_name: str
    birth_date: str
    document_hint: str = Field(description="The document number's last characters only.")


class AdminBookingOut(BookingOut):
    """The booking view plus what staff need: the audit trail, where to find the workflow, and
    the customer and travellers (decrypted from the ledger, which keeps them encrypted)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_BOOKING_EXAMPLE,
                    "workflow_id": "booking-bk_3f9a1c0d5e7b2a4c6d8e0f12",
                    "customer_ref": "cref_9b1d3c2a7e5f4d6c8b0a1e2f3d4c5b6a",
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                    "travellers": [
                        {
                            "first_name": "Ada",
                            "last_name": "Lovelace",
                            "birth_date": "1990-12-10",
                            "document_hint": "4567",
                        }
                    ],
                    "audit": _BOOKING_EXAMPLE["timeline"],
                }
            ]
        },
    )

    workflow_id: str
    customer_ref: str
    customer: CustomerOut | None = Field(
        default=None, description="Null until the ledger has recorded the booking."
    )
    travellers: list[TravellerOut] = Field(default_factory=list)
    audit: list[TimelineEntryOut] = Field(description="Every step and staff action, in order.")

    @classmethod
    def of_staff(
        cls,
        view: contracts.BookingView,
        audit: Sequence[contracts.TimelineEntry],
        workflow_id: str,
        personal: PersonalData | None = None,
    ) -> AdminBookingOut:
        return cls(
            **cls.fields_of(view, staff=True),
            workflow_id=workflow_id,
            customer_ref=view.customer_ref,
            customer=(
                None
                if personal is None
                else CustomerOut(email=personal.customer_email, name=personal.customer_name)
            ),
            travellers=[
                TravellerOut(
                    first_name=traveller.first_name,
                    last_name=traveller.last_name,
                    birth_date=traveller.birth_date,
                    document_hint=traveller.document_hint,
                )
                for traveller in (personal.travellers if personal else ())
            ],
            audit=[TimelineEntryOut.of(entry, staff=True) for entry in audit],
        )


class BookingSummaryOut(BaseModel):
    booking_id: str
    status: BookingStatus
    step: str
    customer_email: str
    customer_name: str
    total: Money
    suppliers: list[str]
    created_at: str
    updated_at: str
    attention: AttentionOut | None

    @classmethod
    def of(cls, summary: BookingSummary) -> BookingSummaryOut:
        return cls(
            booking_id=summary.booking_id,
            status=summary.status,
            step=summary.step,
            customer_email=summary.customer_email,
            customer_name=summary.customer_name,
            total=Money.of(summary.total),
            suppliers=list(summary.suppliers),
            created_at=summary.created_at,
            updated_at=summary.updated_at,
            attention=AttentionOut.of(summary.attention),
        )


class BookingList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bookings": [
                        {
                            "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
                            "status": "NEEDS_ATTENTION",
                            "step": "UNDO CANCEL it_1",
                            "customer_email": "ada@example.com",
                            "customer_name": "Ada Lovelace",
                            "total": {"amount": 60000, "currency": "EUR"},
                            "suppliers": ["aurora-air"],
                            "created_at": "2026-05-04T10:00:00.100000+00:00",
                            "updated_at": "2026-05-04T10:00:03.000000+00:00",
                            "attention": {
                                "step": "UNDO CANCEL it_1",
                                "reason": "NOT_CANCELLABLE: refused by the supplier",
                                "since": "2026-05-04T10:00:03.000000+00:00",
                                "item_id": "it_1",
                            },
                        }
                    ],
                    "next_cursor": "WyIyMDI2LTA1LTA0VDEwOjAwOjAwLjEwMDAwMCswMDowMCIsImJrXzEiXQ",
                }
            ]
        }
    )

    bookings: list[BookingSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"received": True, "outcome": "forwarded"}]}
    )

    received: bool = True
    outcome: str = Field(description="forwarded, duplicate or ignored")


class CodecPayloads(BaseModel):
    """Temporal's remote codec protocol: payloads in protobuf JSON (base64 metadata and data)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "payloads": [
                        {
                            "metadata": {"encoding": "anNvbi9wbGFpbg=="},
                            "data": "eyJhY2NlcHQiOiB0cnVlfQ==",
                        }
                    ]
                }
            ]
        },
    )

    payloads: list[dict[str, Any]] = Field(max_length=1000)


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "temporal": "ok"}]}
    )

    status: str = Field(description="ready or unavailable")
    temporal: str = Field(description="ok or unavailable")


# --- the error shape -----------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="Path of the field, e.g. items[0].quantity")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: VALIDATION_ERROR, NOT_FOUND, CONFLICT, ...")
    message: str
    fields: list[FieldError] | None = Field(
        default=None, description="Every bad field (validation errors only)."
    )


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint and every status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "VALIDATION_ERROR",
                        "message": "the request is invalid",
                        "fields": [
                            {
                                "field": "items[0].quantity",
                                "message": "Input should be greater than or equal to 1",
                            }
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorDetail
