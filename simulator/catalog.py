"""The simulator's fixed catalogue: offers of every kind from several suppliers.

The data is deterministic (same ids, prices, capacities and terms on every start) so tests, the demo
and the acceptance suite can name offers directly. Capacities are small on purpose, and a few offers
have one or two units, so concurrent bookings really compete for the last seat, cabin or ticket.
Cancellation deadlines are fixed dates far in the past or future so an offer's terms never change
meaning with the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

#: The catalogue's only currency; every price is in its minor units (cents).
CURRENCY = "EUR"

#: A deadline that has always passed: cancelling such an offer costs `fee_bps`.
PAST_DEADLINE = "2020-01-01T00:00:00+00:00"
#: A deadline that never passes in practice: cancelling such an offer is free.
FUTURE_DEADLINE = "2099-12-31T23:59:59+00:00"


class Kind(StrEnum):
    """Kinds of travel product sold (the values of `workflows.model.ItemKind`)."""

    FLIGHT = "flight"
    HOTEL = "hotel"
    CRUISE = "cruise"
    FERRY = "ferry"
    ACTIVITY = "activity"


#: How long a hold lasts before the supplier takes the stock back, by kind (published APIs: cruise
#: cabins are held for minutes, flights until a ticketing limit).
HOLD_TTL_SECONDS: dict[Kind, int] = {
    Kind.CRUISE: 15 * 60,
    Kind.FLIGHT: 30 * 60,
    Kind.HOTEL: 20 * 60,
    Kind.FERRY: 20 * 60,
    Kind.ACTIVITY: 30 * 60,
}


@dataclass(frozen=True)
class CancellationPolicy:
    """What a supplier keeps when a confirmed booking is cancelled.

    Field names match `workflows.model.CancellationTerms` so the JSON maps one to one; the simulator
    keeps its own copy because it plays an outside party that computes its fees by itself.
    """

    refundable: bool = True
    free_until: str | None = None
    fee_bps: int = 0
    cancellable: bool = True

    def fee_for(self, price_minor: int, at: datetime) -> int:
        """The fee in minor units when cancelling at `at` (basis points, rounded down)."""
        if not self.refundable:
            return price_minor
        if self.free_until is not None and at <= datetime.fromisoformat(self.free_until):
            return 0
        return price_minor * self.fee_bps // 10_000

    def as_json(self) -> dict[str, object]:
        return {
            "refundable": self.refundable,
            "free_until": self.free_until,
            "fee_bps": self.fee_bps,
            "cancellable": self.cancellable,
        }


FREE = CancellationPolicy(refundable=True, free_until=None, fee_bps=0)
NON_REFUNDABLE = CancellationPolicy(refundable=False, free_until=None, fee_bps=10_000)
NOT_CANCELLABLE = CancellationPolicy(
    refundable=False, free_until=None, fee_bps=10_000, cancellable=False
)


def fee_applies(fee_bps: int) -> CancellationPolicy:
    """Terms whose free period is over: every cancellation costs `fee_bps`."""
    return CancellationPolicy(refundable=True, free_until=PAST_DEADLINE, fee_bps=fee_bps)


def free_for_now(fee_bps: int) -> CancellationPolicy:
    """Terms that are free now and only charge `fee_bps` after a deadline that does not come."""
    return CancellationPolicy(refundable=True, free_until=FUTURE_DEADLINE, fee_bps=fee_bps)


@dataclass(frozen=True)
class Offer:
    """One sellable product with a fixed stock; the price can be moved by the control API."""

    offer_id: str
    kind: Kind
    supplier: str
    description: str
    price_minor: int
    capacity: int
    cancellation: CancellationPolicy
    currency: str = CURRENCY

    @property
    def hold_ttl_seconds(self) -> int:
        return HOLD_TTL_SECONDS[self.kind]


def default_offers() -> tuple[Offer, ...]:
    """The catalogue every simulator starts (and resets) with."""
    return (
        # --- flights ---------------------------------------------------------------------------
        Offer("fl-aurora-cdg-jfk", Kind.FLIGHT, "aurora-air",
              "Paris CDG to New York JFK, economy, one way", 60_000, 9, fee_applies(1_000)),
        Offer("fl-aurora-jfk-cdg", Kind.FLIGHT, "aurora-air",
              "New York JFK to Paris CDG, economy, one way", 55_000, 9, free_for_now(1_500)),
        Offer("fl-borealis-osl-kef", Kind.FLIGHT, "borealis-airways",
              "Oslo to Reykjavik, basic fare", 18_900, 2, NON_REFUNDABLE),
        Offer("fl-borealis-lhr-osl", Kind.FLIGHT, "borealis-airways",
              "London Heathrow to Oslo, last seat in flex", 12_900, 1, FREE),
        # --- hotels ----------------------------------------------------------------------------
        Offer("ht-harbour-nyc-3n", Kind.HOTEL, "harbour-hotels",
              "Harbour Hotel Manhattan, double room, 3 nights", 84_000, 5, free_for_now(2_000)),
        Offer("ht-harbour-rkv-2n", Kind.HOTEL, "harbour-hotels",
              "Harbour Hotel Reykjavik, twin room, 2 nights", 42_000, 2, fee_applies(5_000)),
        Offer("ht-meridian-par-2n", Kind.HOTEL, "meridian-stays",
              "Meridian Saint-Germain, double room, 2 nights", 38_000, 12, FREE),
        Offer("ht-meridian-osl-1n", Kind.HOTEL, "meridian-stays",
              "Meridian Oslo Central, single room, 1 night, prepaid", 14_500, 3, NON_REFUNDABLE),
        # --- cruise cabins ---------------------------------------------------------------------
        Offer("cr-polaris-fjords-inside", Kind.CRUISE, "polaris-cruises",
              "Norwegian fjords, 7 nights, inside cabin", 129_900, 4, fee_applies(2_500)),
        Offer("cr-polaris-fjords-suite", Kind.CRUISE, "polaris-cruises",
              "Norwegian fjords, 7 nights, owner's suite", 459_900, 1, NON_REFUNDABLE),
        Offer("cr-coral-med-balcony", Kind.CRUISE, "coral-line",
              "Western Mediterranean, 5 nights, balcony cabin", 219_900, 3, free_for_now(1_000)),
        Offer("cr-coral-med-oceanview", Kind.CRUISE, "coral-line",
              "Western Mediterranean, 5 nights, ocean-view cabin", 169_900, 6, FREE),
        # --- ferry crossings -------------------------------------------------------------------
        Offer("fe-tyrrhenian-gen-tun-car", Kind.FERRY, "tyrrhenian-ferries",
              "Genoa to Tunis, 2 adults and a car", 32_000, 6, free_for_now(1_000)),
        Offer("fe-tyrrhenian-gen-tun-cabin", Kind.FERRY, "tyrrhenian-ferries",
              "Genoa to Tunis, last 2-berth cabin", 9_000, 1, fee_applies(3_000)),
        Offer("fe-channel-dov-cal-foot", Kind.FERRY, "channel-link",
              "Dover to Calais, foot passenger", 4_500, 20, FREE),
        Offer("fe-channel-dov-cal-van", Kind.FERRY, "channel-link",
              "Dover to Calais, van up to 6 m", 16_500, 3, fee_applies(1_000)),
        # --- activities ------------------------------------------------------------------------
        Offer("ac-fjord-kayak", Kind.ACTIVITY, "fjord-tours",
              "Geirangerfjord sea-kayak tour, half day", 8_900, 8, FREE),
        Offer("ac-fjord-glacier-hike", Kind.ACTIVITY, "fjord-tours",
              "Briksdal glacier hike, small group", 12_900, 2, fee_applies(1_000)),
        Offer("ac-city-louvre", Kind.ACTIVITY, "city-passes",
              "Louvre timed-entry ticket", 2_200, 20, NOT_CANCELLABLE),
        Offer("ac-city-broadway", Kind.ACTIVITY, "city-passes",
              "Broadway evening show, orchestra seat", 15_900, 3, NON_REFUNDABLE),
    )  # fmt: skip
