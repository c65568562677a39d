"""`make demo`: sample bookings through the HTTP API of a running `make up`, as a frontend would.

Three itineraries, each followed live (every new timeline entry and status is printed):

1. a flight and a hotel that are confirmed and paid;
2. a flight and a hotel whose hotel supplier refuses the confirmation once (a fault injected at
   the supplier simulator): the saga undoes what it did, in reverse, and the booking fails with
   nothing left held at the suppliers and the payment voided;
3. a flight and a hotel confirmed, then cancelled by the customer: both are cancelled at their
   suppliers and the payment is refunded per each item's cancellation terms.

It ends with the URL of the reference checkout page (`/checkout`), to book one by hand.

The URLs come from the same variables as `make up` (PASSAGE_API_PORT, PASSAGE_SIMULATOR_PORT,
PASSAGE_STRIPE_PORT, ...). Exits 1 when a booking does not end as expected.

    python -m passage.dev.demo
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from passage.dev.devstack import Endpoints
from passage.dev.supervisor import StartupError

#: Statuses after which a booking changes no more by itself.
SETTLED = frozenset({"CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"})
POLL_SECONDS = 0.3
BOOKING_TIMEOUT_SECONDS = 120.0
TEST_CARD = "4242424242424242"

JSON = dict[str, Any]


class DemoFailed(Exception):
    """A booking did not end as the scenario expects."""


@dataclass(frozen=True)
class Outcome:
    title: str
    booking_id: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class Scenario:
    title: str
    #: Picks the offers to book from the simulator's catalogue (by kind).
    choose: Callable[[dict[str, list[JSON]]], list[JSON]]
    #: Returns "" when the finished booking (and the world around it) is as expected, else why not.
    check: Callable[[Demo, JSON], str]
    refuse_confirm_of_kind: str | None = None
    cancel_when_confirmed: bool = False


class Demo:
    """Books through the API, watches the bookings, and checks the outcome of each."""

    def __init__(self, endpoints: Endpoints, stripe_api_key: str, http: httpx.Client) -> None:
        self.endpoints = endpoints
        self.stripe_api_key = stripe_api_key
        self.http = http

    def run(self, scenarios: Sequence[Scenario]) -> int:
        if not self._api_ready():
            print(
                f"Passage is not running at {self.endpoints.api_url} "
                "(GET /readyz did not answer 200): start it with `make up`.",
                file=sys.stderr,
            )
            return 1
        outcomes = []
        for number, scenario in enumerate(scenarios, start=1):
            print(f"\n[{number}] {scenario.title}")
            try:
                outcomes.append(self._book(scenario))
            except (DemoFailed, httpx.HTTPError) as error:
                print(f"    FAILED: {error}")
                outcomes.append(Outcome(scenario.title, "-", False, str(error)))
        print("\nSummary")
        for outcome in outcomes:
            mark = "ok  " if outcome.ok else "FAIL"
            print(f"  {mark} {outcome.title:<34} {outcome.booking_id:<24} {outcome.summary}")
        print(
            f"\nBook one yourself in the reference checkout: {self.endpoints.checkout_url}\n"
            "  (test cards: 4242424242424242 accepted, 4000000000000341 declined, "
            "4000002500003155 asks for 3-D Secure)"
        )
        return 0 if all(outcome.ok for outcome in outcomes) else 1

    # --- one booking -----------------------------------------------------------------------------

    def _book(self, scenario: Scenario) -> Outcome:
        offers = scenario.choose(self._catalogue())
        for offer in offers:
            price = _money(offer["price"])
            print(
                f"    {offer['kind']:<8} {offer['offer_id']:<28} {price:>14}  {offer['supplier']}"
            )
        fault = self._refuse_confirm(offers, scenario.refuse_confirm_of_kind)
        try:
            booking_id, token = self._create(offers, self._payment_method())
            view = self._follow(booking_id, token)
            if scenario.cancel_when_confirmed and view["status"] == "CONFIRMED":
                print("    customer cancels the confirmed booking")
                response = self.http.post(
                    f"{self.endpoints.api_url}/bookings/{booking_id}/cancel",
                    headers=_bearer(token),
                )
                if response.status_code not in (200, 202):
                    raise DemoFailed(f"cancel answered {response.status_code}: {response.text}")
                view = self._follow(booking_id, token, seen=view)
        finally:
            if fault:
                self._clear_faults()
        problem = scenario.check(self, view)
        return Outcome(scenario.title, booking_id, not problem, problem or _describe(view))

    def _catalogue(self) -> dict[str, list[JSON]]:
        catalogue: dict[str, list[JSON]] = {}
        for kind in ("flight", "hotel"):
            response = self.http.get(
                f"{self.endpoints.simulator_url}/offers", params={"kind": kind}
            )
            response.raise_for_status()
            catalogue[kind] = response.json()
        return catalogue

    def _payment_method(self) -> str:
        """A card PaymentMethod, as Stripe.js would create in the customer's browser."""
        response = self.http.post(
            f"{self.endpoints.stripe_url}/v1/payment_methods",
            headers=_bearer(self.stripe_api_key),
            data={
                "type": "card",
                "card[number]": TEST_CARD,
                "card[exp_month]": "12",
                "card[exp_year]": str(datetime.now(UTC).year + 3),
                "card[cvc]": "123",
            },
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def _create(self, offers: list[JSON], payment_method: str) -> tuple[str, str]:
        body = {
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
                    "offer_id": offer["offer_id"],
                    "quantity": 1,
                    "expected_price": offer["price"],
                    "optional": False,
                }
                for offer in offers
            ],
            "payment": {"payment_method": payment_method},
        }
        response = self.http.post(
            f"{self.endpoints.api_url}/bookings",
            json=body,
            headers={"Idempotency-Key": f"demo-{uuid.uuid4().hex}"},
        )
        if response.status_code not in (200, 202):
            raise DemoFailed(f"POST /bookings answered {response.status_code}: {response.text}")
        created = response.json()
        print(f"    booking {created['booking_id']} accepted: {created['status']}")
        return str(created["booking_id"]), str(created["access_token"])

    def _follow(self, booking_id: str, token: str, seen: JSON | None = None) -> JSON:
        """Poll the booking, printing each new timeline entry and status, until it settles.

        With `seen`, what that earlier view showed is not printed again.
        """
        printed = len(seen["timeline"]) if seen else 0
        status = seen["status"] if seen else ""
        deadline = time.monotonic() + BOOKING_TIMEOUT_SECONDS
        while True:
            response = self.http.get(
                f"{self.endpoints.api_url}/bookings/{booking_id}", headers=_bearer(token)
            )
            if response.status_code != 200:
                raise DemoFailed(f"GET /bookings/{booking_id} answered {response.status_code}")
            view: JSON = response.json()
            for entry in view["timeline"][printed:]:
                print(
                    f"      {_clock(entry['at'])}  {entry['step']:<22} {entry['outcome']:<10}"
                    f" {entry.get('detail') or ''}"
                )
            printed = len(view["timeline"])
            if view["status"] != status:
                status = view["status"]
                print(f"    status {status}")
            if status in SETTLED and (seen is None or status != seen["status"]):
                return view
            if time.monotonic() > deadline:
                raise DemoFailed(f"still {status} after {BOOKING_TIMEOUT_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)

    # --- the simulator's control API -------------------------------------------------------------

    def _refuse_confirm(self, offers: list[JSON], kind: str | None) -> bool:
        if kind is None:
            return False
        supplier = next(offer["supplier"] for offer in offers if offer["kind"] == kind)
        response = self.http.post(
            f"{self.endpoints.simulator_url}/_sim/faults",
            json={"supplier": supplier, "operation": "confirm", "mode": "refuse", "times": 1},
        )
        response.raise_for_status()
        print(f"    (fault injected: {supplier} refuses its next confirmation)")
        return True

    def _clear_faults(self) -> None:
        self.http.delete(f"{self.endpoints.simulator_url}/_sim/faults").raise_for_status()

    def live_at_suppliers(self, booking_id: str) -> list[str]:
        """References of holds and bookings still live at the simulator for this booking."""
        response = self.http.get(f"{self.endpoints.simulator_url}/_sim/ledger")
        response.raise_for_status()
        ledger = response.json()
        live = [
            row
            for row in ledger["holds"]
            if row["status"] == "active" and booking_id in row.get("client_ref", "")
        ]
        live += [
            row
            for row in ledger["bookings"]
            if row["status"] == "confirmed" and booking_id in row.get("client_ref", "")
        ]
        return [str(row["ref"]) for row in live]

    def _api_ready(self) -> bool:
        try:
            return self.http.get(f"{self.endpoints.api_url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False


# --- the scenarios -------------------------------------------------------------------------------


def _roomiest(offers: list[JSON], accept: Callable[[JSON], bool] = lambda _: True) -> JSON:
    """The acceptable offer with the most stock left (the demo may be run many times)."""
    candidates = [offer for offer in offers if offer["capacity_left"] > 0 and accept(offer)]
    if not candidates:
        raise DemoFailed(f"no {offers[0]['kind'] if offers else ''} offer left in stock")
    return max(candidates, key=lambda offer: offer["capacity_left"])


def _refundable(offer: JSON) -> bool:
    terms = offer.get("cancellation") or {}
    return bool(terms.get("refundable")) and terms.get("cancellable", True) is not False


def _flight_and_hotel(catalogue: dict[str, list[JSON]]) -> list[JSON]:
    return [_roomiest(catalogue["flight"]), _roomiest(catalogue["hotel"])]


def _refundable_flight_and_hotel(catalogue: dict[str, list[JSON]]) -> list[JSON]:
    return [
        _roomiest(catalogue["flight"], _refundable),
        _roomiest(catalogue["hotel"], _refundable),
    ]


def _confirmed(demo: Demo, view: JSON) -> str:
    payment = view["payment"]
    if view["status"] != "CONFIRMED":
        return f"expected CONFIRMED, got {view['status']} {view.get('error') or ''}"
    if payment["status"] != "CAPTURED":
        return f"expected the payment CAPTURED, got {payment['status']}"
    total = sum(item["price"]["amount"] for item in view["items"])
    if (payment.get("captured") or {}).get("amount") != total:
        return f"captured {payment.get('captured')} is not the items' total {total}"
    return ""


def _compensated(demo: Demo, view: JSON) -> str:
    if view["status"] != "FAILED":
        return f"expected FAILED after compensation, got {view['status']}"
    if not view.get("error"):
        return "a failed booking must say why (error is empty)"
    if view["payment"]["status"] not in ("NONE", "VOIDED", "REFUNDED"):
        return f"expected the payment voided, got {view['payment']['status']}"
    live = demo.live_at_suppliers(view["booking_id"])
    if live:
        return f"still held or booked at the suppliers: {', '.join(live)}"
    return ""


def _refunded(demo: Demo, view: JSON) -> str:
    payment = view["payment"]
    if view["status"] != "CANCELLED":
        return f"expected CANCELLED, got {view['status']}"
    if payment["status"] not in ("REFUNDED", "PARTIALLY_REFUNDED"):
        return f"expected the payment refunded, got {payment['status']}"
    if not (payment.get("refunded") or {}).get("amount"):
        return "nothing was refunded"
    live = demo.live_at_suppliers(view["booking_id"])
    if live:
        return f"still booked at the suppliers: {', '.join(live)}"
    return ""


SCENARIOS = (
    Scenario("flight + hotel, confirmed", _flight_and_hotel, _confirmed),
    Scenario(
        "hotel refuses: compensated",
        _flight_and_hotel,
        _compensated,
        refuse_confirm_of_kind="hotel",
    ),
    Scenario(
        "confirmed, then cancelled",
        _refundable_flight_and_hotel,
        _refunded,
        cancel_when_confirmed=True,
    ),
)


# --- formatting ----------------------------------------------------------------------------------


def _money(money: JSON | None) -> str:
    if not money:
        return "-"
    amount = int(money["amount"])
    return f"{amount // 100}.{amount % 100:02d} {money['currency']}"


def _describe(view: JSON) -> str:
    payment = view["payment"]
    parts = [view["status"]]
    if view.get("error"):
        parts.append(f"({view['error']['type']})")
    parts.append(f"payment {payment['status']}")
    for label in ("captured", "refunded"):
        if (payment.get(label) or {}).get("amount"):
            parts.append(f"{label} {_money(payment[label])}")
    return " ".join(parts)


def _clock(at: str) -> str:
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return at


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m passage.dev.demo", description=__doc__)
    parser.parse_args(argv)
    try:
        endpoints = Endpoints.from_env(os.environ)
    except StartupError as error:
        print(f"make demo: {error}", file=sys.stderr)
        sys.exit(2)
    stripe_api_key = os.environ.get("PASSAGE_STRIPE_API_KEY", "sk_test_passage")
    with httpx.Client(timeout=15) as http:
        code = Demo(endpoints, stripe_api_key, http).run(SCENARIOS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as worker.py: exit without interpreter teardown


if __name__ == "__main__":
    main()
