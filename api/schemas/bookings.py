"""The checkout: its body, the customer's commands, and the booking as the customer sees it."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.schemas import examples
from api.schemas.fields import (
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_TRAVELLERS,
    BirthDate,
    Email,
    JsonInt,
    Money,
    Name,
    OfferId,
    PaymentMethodId,
)
from api.service import NewBooking, NewItem, StartedBooking
from workflows import contracts
from workflows import model as domain
from workflows.model import BookingStatus, ItemKind, ItemStatus, PaymentStatus


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
        json_schema_extra={"examples": [examples.BOOKING_CREATE]},
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


class Links(BaseModel):
    self_: str = Field(alias="self", serialization_alias="self")

    model_config = ConfigDict(populate_by_name=True)


class BookingAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.BOOKING_ACCEPTED]})

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


class BookingOut(BaseModel):
    """A booking as the customer (and staff) see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.BOOKING]})

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
