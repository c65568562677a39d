"""The simulator's wire format: request bodies (validated by FastAPI) and JSON renderings.

Pydantic stays at this HTTP edge; the state machine works on plain frozen dataclasses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.faults import ANY, Fault, Mode, Phase
from simulator.inventory import (
    Booking,
    Cancellation,
    Hold,
    Inventory,
    Ledger,
    OfferView,
    Quote,
    Release,
)

JSON = dict[str, Any]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class QuoteBody(_Body):
    offer_id: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1, strict=True)


class HoldBody(_Body):
    offer_id: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1, strict=True)
    client_ref: str = Field(min_length=1, max_length=255)


class RefBody(_Body):
    """The body of confirm, release and cancel: the caller's reference for this operation."""

    client_ref: str = ""


class FaultBody(_Body):
    supplier: str = Field(default=ANY, min_length=1)
    operation: Literal["quote", "hold", "confirm", "cancel", "release", "*"] = "*"
    mode: Mode
    times: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, ge=0, le=1)
    latency_ms: int | None = Field(default=None, ge=0)
    code: str | None = Field(default=None, min_length=1)
    phase: Phase = Phase.AFTER

    def to_fault(self) -> Fault:
        return Fault(
            fault_id="",
            supplier=self.supplier,
            operation=self.operation,
            mode=self.mode,
            times=self.times,
            rate=self.rate,
            latency_ms=self.latency_ms,
            code=self.code,
            phase=self.phase,
        )


class PriceBody(_Body):
    amount: int = Field(ge=0, strict=True)


class ConfigBody(_Body):
    """Only the fields present change: `{"capacity_scale": 10}` leaves the hold TTL alone."""

    #: Every hold's TTL in seconds; `null` restores each kind's default.
    hold_ttl_seconds: int | None = Field(default=None, ge=0)
    #: Load mode: every offer's capacity times this, on a fresh inventory (1 is the catalogue).
    capacity_scale: int | None = Field(default=None, ge=1, strict=True)

    @field_validator("capacity_scale", mode="before")
    @classmethod
    def _scale_is_not_null(cls, value: object) -> object:
        # Absent means "leave it"; an explicit null is neither that nor a scale.
        if value is None:
            raise ValueError("capacity_scale must be an integer of at least 1, not null")
        return value


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def money(amount_minor: int, currency: str) -> JSON:
    return {"amount": amount_minor, "currency": currency}


def error(code: str, message: str) -> JSON:
    return {"error": {"code": code, "message": message}}


def offer_json(view: OfferView) -> JSON:
    offer = view.offer
    return {
        "offer_id": offer.offer_id,
        "kind": offer.kind.value,
        "supplier": offer.supplier,
        "description": offer.description,
        "price": money(view.price_minor, offer.currency),
        "capacity": view.capacity,
        "capacity_left": view.capacity_left,
        "cancellation": offer.cancellation.as_json(),
        "hold_ttl_seconds": view.hold_ttl_seconds,
    }


def quote_json(quote: Quote) -> JSON:
    offer = quote.offer
    return {
        "offer_id": offer.offer_id,
        "kind": offer.kind.value,
        "supplier": offer.supplier,
        "description": offer.description,
        "quantity": quote.quantity,
        "unit_price": money(quote.unit_price_minor, offer.currency),
        "price": money(quote.price_minor, offer.currency),
        "cancellation": offer.cancellation.as_json(),
        "hold_ttl_seconds": quote.hold_ttl_seconds,
    }


def hold_json(hold: Hold) -> JSON:
    return {
        "hold_ref": hold.hold_ref,
        "client_ref": hold.client_ref,
        "offer_id": hold.offer_id,
        "supplier": hold.supplier,
        "quantity": hold.quantity,
        "status": hold.status.value,
        "expires_at": rfc3339(hold.expires_at),
        "price": money(hold.price_minor, hold.currency),
    }


def booking_json(booking: Booking) -> JSON:
    return {
        "booking_ref": booking.booking_ref,
        "hold_ref": booking.hold_ref,
        "client_ref": booking.client_ref,
        "offer_id": booking.offer_id,
        "supplier": booking.supplier,
        "quantity": booking.quantity,
        "confirmation_code": booking.confirmation_code,
        "status": booking.status.value,
        "price": money(booking.price_minor, booking.currency),
        "cancellation": booking.cancellation.as_json(),
    }


def release_json(release: Release) -> JSON:
    return {"hold_ref": release.hold_ref, "status": release.status}


def cancellation_json(cancellation: Cancellation) -> JSON:
    booking = cancellation.booking
    if booking is None or booking.cancellation_fee_minor is None:
        return {"booking_ref": None, "status": cancellation.status, "fee": None}
    return {
        "booking_ref": booking.booking_ref,
        "status": cancellation.status,
        "fee": money(booking.cancellation_fee_minor, booking.currency),
        "price": money(booking.price_minor, booking.currency),
    }


def config_json(inventory: Inventory) -> JSON:
    return {
        "hold_ttl_seconds": inventory.hold_ttl_override,
        "capacity_scale": inventory.capacity_scale,
    }


def fault_json(fault: Fault) -> JSON:
    return {
        "fault_id": fault.fault_id,
        "supplier": fault.supplier,
        "operation": fault.operation,
        "mode": fault.mode.value,
        "times": fault.times,
        "rate": fault.rate,
        "latency_ms": fault.latency_ms,
        "code": fault.code,
        "phase": fault.phase.value,
    }


def ledger_json(ledger: Ledger) -> JSON:
    bookings: list[JSON] = []
    for booking in ledger.bookings:
        row: JSON = {
            "ref": booking.booking_ref,
            "offer_id": booking.offer_id,
            "quantity": booking.quantity,
            "status": booking.status.value,
            "client_ref": booking.client_ref,
            "hold_client_ref": booking.hold_client_ref,
            "hold_ref": booking.hold_ref,
            "supplier": booking.supplier,
            "confirmation_code": booking.confirmation_code,
            "price": money(booking.price_minor, booking.currency),
        }
        if booking.cancellation_fee_minor is not None:
            row["cancellation_fee"] = money(booking.cancellation_fee_minor, booking.currency)
        bookings.append(row)
    return {
        "holds": [
            {
                "ref": hold.hold_ref,
                "offer_id": hold.offer_id,
                "quantity": hold.quantity,
                "status": hold.status.value,
                "expires_at": rfc3339(hold.expires_at),
                "client_ref": hold.client_ref,
                "supplier": hold.supplier,
            }
            for hold in ledger.holds
        ],
        "bookings": bookings,
        "inventory": [
            {
                "offer_id": row.offer_id,
                "supplier": row.supplier,
                "kind": row.kind.value,
                "capacity": row.capacity,
                "free": row.free,
                "held": row.held,
                "booked": row.booked,
            }
            for row in ledger.stock
        ],
    }
