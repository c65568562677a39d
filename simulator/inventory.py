"""The simulator's state machine: stock per offer, holds, bookings and their transitions.

Pure and synchronous: no I/O, no awaits, time comes from an injected clock and references from an
injected random generator, so every transition is atomic under the service's lock and testable with
a fake clock. A hold moves `active -> confirmed | released | expired`; a booking (made by confirming
a hold) moves `confirmed -> cancelled`. Every operation is idempotent by reference, as a supplier
facing retrying clients must be.

Stock is kept as a `free` counter per offer that each transition moves, while `held` and `booked`
are recounted from the records; the invariant `free + held + booked == capacity` therefore checks
that no transition loses or invents a unit.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from simulator.catalog import CancellationPolicy, Kind, Offer

Clock = Callable[[], datetime]


class HoldStatus(StrEnum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class BookingStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Refusal(Exception):
    """A business refusal with the machine-readable code the HTTP layer returns."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OfferView:
    """An offer as sold right now: its capacity (scaled), price, stock left and hold TTL."""

    offer: Offer
    price_minor: int
    capacity_left: int
    hold_ttl_seconds: int
    capacity: int


@dataclass(frozen=True)
class Quote:
    offer: Offer
    quantity: int
    unit_price_minor: int
    hold_ttl_seconds: int

    @property
    def price_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(frozen=True)
class Hold:
    hold_ref: str
    client_ref: str
    offer_id: str
    supplier: str
    quantity: int
    unit_price_minor: int
    currency: str
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    booking_ref: str | None = None

    @property
    def price_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(frozen=True)
class Booking:
    booking_ref: str
    hold_ref: str
    hold_client_ref: str
    client_ref: str
    offer_id: str
    supplier: str
    quantity: int
    price_minor: int
    currency: str
    confirmation_code: str
    cancellation: CancellationPolicy
    status: BookingStatus
    confirmed_at: datetime
    cancellation_fee_minor: int | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True)
class Release:
    """The outcome of release-if-present: `hold_ref` is None when no hold matched (`absent`)."""

    hold_ref: str | None
    status: str


@dataclass(frozen=True)
class Cancellation:
    """The outcome of cancel-if-confirmed: `booking` is None when nothing was booked (`absent`)."""

    booking: Booking | None

    @property
    def status(self) -> str:
        return "absent" if self.booking is None else self.booking.status.value


@dataclass(frozen=True)
class StockRow:
    offer_id: str
    supplier: str
    kind: Kind
    capacity: int
    free: int
    held: int
    booked: int


@dataclass(frozen=True)
class Ledger:
    holds: tuple[Hold, ...]
    bookings: tuple[Booking, ...]
    stock: tuple[StockRow, ...]


ABSENT = "absent"


class Inventory:
    """All offers, holds and bookings of the simulated suppliers.

    Args:
        offers: The catalogue; `reset` returns to it.
        clock: Current time (timezone-aware); holds expire against it.
        refs: Source of hold and booking references and confirmation codes. It is not reseeded on
            reset, so references stay unique for the life of the process and a stale reference from
            before a reset never addresses a new hold.
    """

    def __init__(self, offers: Sequence[Offer], clock: Clock, refs: random.Random) -> None:
        self._catalogue = {offer.offer_id: offer for offer in offers}
        self._clock = clock
        self._refs = refs
        self._prices: dict[str, int] = {}
        self._free: dict[str, int] = {}
        self._ttl_override: int | None = None
        self._capacity_scale = 1
        self._holds: dict[str, Hold] = {}
        self._bookings: dict[str, Booking] = {}
        self._hold_by_client_ref: dict[str, str] = {}
        self._hold_by_confirm_ref: dict[str, str] = {}
        self.reset()

    # --- control ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Restore the initial stock, prices, TTLs and capacities; forget every hold and booking.

        Load mode ends here too (the scale goes back to 1), so a reset between tests never leaves
        one test's scaled-up stock to the next.
        """
        self._prices = {o.offer_id: o.price_minor for o in self._catalogue.values()}
        self._ttl_override = None
        self._capacity_scale = 1
        self._restock()

    def set_capacity_scale(self, scale: int) -> None:
        """Load mode: every offer's capacity times `scale`, on a fresh inventory.

        Every hold and booking is forgotten and each offer's whole (scaled) capacity is free again,
        so `free + held + booked == capacity` holds from the first call on. Prices and the hold TTL
        override are configuration, not stock: they stay as they are.
        """
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise Refusal("INVALID_REQUEST", "capacity_scale must be an integer of at least 1")
        self._capacity_scale = scale
        self._restock()

    def _restock(self) -> None:
        self._free = {o.offer_id: self._capacity(o) for o in self._catalogue.values()}
        self._holds.clear()
        self._bookings.clear()
        self._hold_by_client_ref.clear()
        self._hold_by_confirm_ref.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything `restore` needs to continue where this inventory is (clock excluded).

        Holds keep their absolute `expires_at`, so a hold restored after a restart expires when it
        would have; the reference generator's state comes along so references stay unique.
        """
        return {
            "catalogue": self._catalogue,
            "prices": self._prices,
            "free": self._free,
            "ttl_override": self._ttl_override,
            "capacity_scale": self._capacity_scale,
            "holds": self._holds,
            "bookings": self._bookings,
            "hold_by_client_ref": self._hold_by_client_ref,
            "hold_by_confirm_ref": self._hold_by_confirm_ref,
            "refs": self._refs.getstate(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a `snapshot` (taken by this class, possibly in an earlier process)."""
        self._catalogue = dict(snapshot["catalogue"])
        self._prices = dict(snapshot["prices"])
        self._free = dict(snapshot["free"])
        self._ttl_override = snapshot["ttl_override"]
        # Snapshots written before load mode existed were all at scale 1.
        self._capacity_scale = snapshot.get("capacity_scale", 1)
        self._holds = dict(snapshot["holds"])
        self._bookings = dict(snapshot["bookings"])
        self._hold_by_client_ref = dict(snapshot["hold_by_client_ref"])
        self._hold_by_confirm_ref = dict(snapshot["hold_by_confirm_ref"])
        self._refs.setstate(snapshot["refs"])

    def set_price(self, offer_id: str, price_minor: int) -> OfferView:
        """Move an offer's price; existing holds keep the price they were made at."""
        if price_minor < 0:
            raise Refusal("INVALID_REQUEST", "price must not be negative")
        self._offer(offer_id)
        self._prices[offer_id] = price_minor
        return self._view(offer_id)

    def set_hold_ttl(self, seconds: int | None) -> None:
        """Override every kind's hold TTL (None restores the per-kind defaults)."""
        if seconds is not None and seconds < 0:
            raise Refusal("INVALID_REQUEST", "hold_ttl_seconds must not be negative")
        self._ttl_override = seconds

    @property
    def hold_ttl_override(self) -> int | None:
        """The TTL every hold gets now (None: each kind's default)."""
        return self._ttl_override

    @property
    def capacity_scale(self) -> int:
        """What every offer's catalogue capacity is multiplied by (1 unless in load mode)."""
        return self._capacity_scale

    # --- reads -----------------------------------------------------------------------------------

    def offers(self, kind: Kind | None = None) -> list[OfferView]:
        return [
            self._view(offer_id)
            for offer_id, offer in self._catalogue.items()
            if kind is None or offer.kind is kind
        ]

    def offer(self, offer_id: str) -> OfferView:
        self._offer(offer_id)
        return self._view(offer_id)

    def supplier_of_offer(self, offer_id: str) -> str | None:
        """The supplier selling an offer (None for an unknown offer)."""
        offer = self._catalogue.get(offer_id)
        return None if offer is None else offer.supplier

    def supplier_of(self, ref: str) -> str | None:
        """The supplier behind a hold or booking reference (None when nothing matches)."""
        hold = self._find_hold(ref)
        return None if hold is None else hold.supplier

    def ledger(self) -> Ledger:
        holds = tuple(self._holds.values())
        bookings = tuple(self._bookings.values())
        stock = tuple(
            StockRow(
                offer_id=offer.offer_id,
                supplier=offer.supplier,
                kind=offer.kind,
                capacity=self._capacity(offer),
                free=self._free[offer.offer_id],
                held=sum(
                    h.quantity
                    for h in holds
                    if h.offer_id == offer.offer_id and h.status is HoldStatus.ACTIVE
                ),
                booked=sum(
                    b.quantity
                    for b in bookings
                    if b.offer_id == offer.offer_id and b.status is BookingStatus.CONFIRMED
                ),
            )
            for offer in self._catalogue.values()
        )
        return Ledger(holds=holds, bookings=bookings, stock=stock)

    # --- transitions -----------------------------------------------------------------------------

    def expire_due(self) -> list[Hold]:
        """Expire every active hold whose deadline has passed, returning its stock to the offer."""
        now = self._clock()
        expired = [
            h for h in self._holds.values() if h.status is HoldStatus.ACTIVE and now >= h.expires_at
        ]
        for hold in expired:
            self._free[hold.offer_id] += hold.quantity
            self._holds[hold.hold_ref] = dataclasses.replace(hold, status=HoldStatus.EXPIRED)
        return [self._holds[h.hold_ref] for h in expired]

    def quote(self, offer_id: str, quantity: int) -> Quote:
        self._check_quantity(quantity)
        view = self.offer(offer_id)
        return Quote(view.offer, quantity, view.price_minor, view.hold_ttl_seconds)

    def hold(self, offer_id: str, quantity: int, client_ref: str) -> tuple[Hold, bool]:
        """Hold stock for `client_ref`, or return the hold already made for it.

        Returns:
            The hold and whether it was created by this call (False for a replay, whatever the
            hold's status is now).

        Raises:
            Refusal: OFFER_NOT_FOUND, INVALID_REQUEST, SOLD_OUT, or CLIENT_REF_CONFLICT when the
                reference was already used for another offer or quantity.
        """
        self.expire_due()
        if not client_ref:
            raise Refusal("INVALID_REQUEST", "client_ref is required")
        existing = self._hold_by_client_ref.get(client_ref)
        if existing is not None:
            hold = self._holds[existing]
            if (hold.offer_id, hold.quantity) != (offer_id, quantity):
                raise Refusal(
                    "CLIENT_REF_CONFLICT",
                    f"client_ref {client_ref} was used for {hold.quantity} x {hold.offer_id}",
                )
            return hold, False
        self._check_quantity(quantity)
        view = self.offer(offer_id)
        if view.capacity_left < quantity:
            raise Refusal(
                "SOLD_OUT", f"{offer_id}: {quantity} requested, {view.capacity_left} left"
            )
        now = self._clock()
        hold = Hold(
            hold_ref=self._new_ref("H"),
            client_ref=client_ref,
            offer_id=offer_id,
            supplier=view.offer.supplier,
            quantity=quantity,
            unit_price_minor=view.price_minor,
            currency=view.offer.currency,
            status=HoldStatus.ACTIVE,
            created_at=now,
            expires_at=now + timedelta(seconds=view.hold_ttl_seconds),
        )
        self._free[offer_id] -= quantity
        self._holds[hold.hold_ref] = hold
        self._hold_by_client_ref[client_ref] = hold.hold_ref
        return hold, True

    def confirm(self, ref: str, client_ref: str = "") -> Booking:
        """Turn an active hold into a booking; confirming a confirmed hold returns its booking.

        Raises:
            Refusal: NOT_FOUND for an unknown reference, HOLD_EXPIRED when the hold was released,
                expired, or confirmed and then cancelled.
        """
        self.expire_due()
        hold = self._find_hold(ref)
        if hold is None:
            raise Refusal("NOT_FOUND", f"no hold {ref}")
        if hold.booking_ref is not None:
            booking = self._bookings[hold.booking_ref]
            if booking.status is BookingStatus.CANCELLED:
                raise Refusal("HOLD_EXPIRED", f"hold {hold.hold_ref} was booked and cancelled")
            return booking
        if hold.status is not HoldStatus.ACTIVE:
            raise Refusal("HOLD_EXPIRED", f"hold {hold.hold_ref} is {hold.status.value}")
        offer = self._offer(hold.offer_id)
        booking = Booking(
            booking_ref=self._new_ref("B"),
            hold_ref=hold.hold_ref,
            hold_client_ref=hold.client_ref,
            client_ref=client_ref or hold.client_ref,
            offer_id=hold.offer_id,
            supplier=hold.supplier,
            quantity=hold.quantity,
            price_minor=hold.price_minor,
            currency=hold.currency,
            confirmation_code=self._confirmation_code(),
            cancellation=offer.cancellation,
            status=BookingStatus.CONFIRMED,
            confirmed_at=self._clock(),
        )
        # The units move from held to booked: `free` does not change.
        self._holds[hold.hold_ref] = dataclasses.replace(
            hold, status=HoldStatus.CONFIRMED, booking_ref=booking.booking_ref
        )
        self._bookings[booking.booking_ref] = booking
        if client_ref:
            self._hold_by_confirm_ref.setdefault(client_ref, hold.hold_ref)
        return booking

    def release(self, ref: str) -> Release:
        """Release a hold if it is active; otherwise report its state (`absent` when unknown).

        A confirmed hold is left alone: releasing never touches a booking.
        """
        self.expire_due()
        hold = self._find_hold(ref)
        if hold is None:
            return Release(hold_ref=None, status=ABSENT)
        if hold.status is HoldStatus.ACTIVE:
            self._free[hold.offer_id] += hold.quantity
            hold = dataclasses.replace(hold, status=HoldStatus.RELEASED)
            self._holds[hold.hold_ref] = hold
        return Release(hold_ref=hold.hold_ref, status=hold.status.value)

    def cancel(self, ref: str) -> Cancellation:
        """Cancel the booking behind `ref` if there is one, keeping the fee its terms set now.

        Raises:
            Refusal: NOT_CANCELLABLE when the offer's terms forbid cancellation.
        """
        self.expire_due()
        hold = self._find_hold(ref)
        if hold is None or hold.booking_ref is None:
            return Cancellation(booking=None)
        booking = self._bookings[hold.booking_ref]
        if booking.status is BookingStatus.CANCELLED:
            return Cancellation(booking=booking)
        if not booking.cancellation.cancellable:
            raise Refusal("NOT_CANCELLABLE", f"booking {booking.booking_ref} cannot be cancelled")
        now = self._clock()
        booking = dataclasses.replace(
            booking,
            status=BookingStatus.CANCELLED,
            cancellation_fee_minor=booking.cancellation.fee_for(booking.price_minor, now),
            cancelled_at=now,
        )
        self._bookings[booking.booking_ref] = booking
        self._free[booking.offer_id] += booking.quantity
        return Cancellation(booking=booking)

    # --- internals -------------------------------------------------------------------------------

    def _offer(self, offer_id: str) -> Offer:
        offer = self._catalogue.get(offer_id)
        if offer is None:
            raise Refusal("OFFER_NOT_FOUND", f"no offer {offer_id}")
        return offer

    def _view(self, offer_id: str) -> OfferView:
        offer = self._catalogue[offer_id]
        ttl = offer.hold_ttl_seconds if self._ttl_override is None else self._ttl_override
        return OfferView(
            offer, self._prices[offer_id], self._free[offer_id], ttl, self._capacity(offer)
        )

    def _capacity(self, offer: Offer) -> int:
        return offer.capacity * self._capacity_scale

    def _find_hold(self, ref: str) -> Hold | None:
        """Resolve any reference a client may hold: hold ref, booking ref, or a client ref."""
        hold_ref: str | None = None
        if ref in self._holds:
            hold_ref = ref
        elif ref in self._bookings:
            hold_ref = self._bookings[ref].hold_ref
        elif ref in self._hold_by_client_ref:
            hold_ref = self._hold_by_client_ref[ref]
        elif ref in self._hold_by_confirm_ref:
            hold_ref = self._hold_by_confirm_ref[ref]
        return None if hold_ref is None else self._holds[hold_ref]

    @staticmethod
    def _check_quantity(quantity: int) -> None:
        if quantity < 1:
            raise Refusal("INVALID_REQUEST", "quantity must be at least 1")

    def _new_ref(self, prefix: str) -> str:
        return f"{prefix}-{self._refs.getrandbits(48):012X}"

    def _confirmation_code(self) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        return "".join(self._refs.choice(alphabet) for _ in range(6))
