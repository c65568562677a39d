"""What staff send and read: notes and resets, the booking with its customer and audit trail,
and the search list.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from activities.ports import BookingSummary, PersonalData
from api.schemas import examples
from api.schemas.bookings import AttentionOut, BookingOut, TimelineEntryOut
from api.schemas.fields import Money, Note, StepName
from workflows import contracts
from workflows.model import BookingStatus


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
        json_schema_extra={"examples": [examples.ADMIN_BOOKING]},
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
    model_config = ConfigDict(json_schema_extra={"examples": [examples.BOOKING_LIST]})

    bookings: list[BookingSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")
