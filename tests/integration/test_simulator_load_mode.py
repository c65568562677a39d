"""The simulator's load mode over HTTP: `POST /_sim/config {"capacity_scale": N}` against the real
simulator process (the one the benchmark drives), so the wire format and validation are checked too.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.simulator import SimulatorControl

TWO_SEATS = "fl-borealis-osl-kef"  # capacity 2 in the catalogue
FLIGHT = "fl-aurora-cdg-jfk"  # capacity 9


async def hold(simulator: SimulatorControl, offer_id: str, ref: str) -> tuple[int, Any]:
    response = await simulator.http.post(
        "/holds", json={"offer_id": offer_id, "quantity": 1, "client_ref": ref}
    )
    return response.status_code, response.json()


async def holds_until_sold_out(simulator: SimulatorControl, offer_id: str, limit: int) -> int:
    """How many single-unit holds succeed before SOLD_OUT (at most `limit`)."""
    for n in range(limit):
        status, body = await hold(simulator, offer_id, f"load-{offer_id}-{n}")
        if status == 409:
            assert body["error"]["code"] == "SOLD_OUT", body
            return n
        assert status == 201, body
    return limit


async def capacities(simulator: SimulatorControl) -> dict[str, tuple[int, int]]:
    return {o["offer_id"]: (o["capacity"], o["capacity_left"]) for o in await simulator.offers()}


async def test_an_offer_sells_out_after_its_capacity_at_scale_one_but_not_at_scale_ten(
    simulator: SimulatorControl,
) -> None:
    assert await holds_until_sold_out(simulator, TWO_SEATS, 25) == 2

    config = await simulator.set_capacity_scale(10)

    assert config == {"capacity_scale": 10, "hold_ttl_seconds": None}
    assert await holds_until_sold_out(simulator, TWO_SEATS, 25) == 20
    await simulator.assert_inventory_adds_up()


async def test_every_offer_is_multiplied_and_the_inventory_starts_afresh(
    simulator: SimulatorControl,
) -> None:
    before = await capacities(simulator)
    status, held = await hold(simulator, FLIGHT, "load-confirmed")
    assert status == 201
    confirmed = await simulator.http.post(f"/holds/{held['hold_ref']}/confirm", json={})
    assert confirmed.status_code == 200
    assert (await hold(simulator, TWO_SEATS, "load-held"))[0] == 201

    await simulator.set_capacity_scale(7)

    after = await capacities(simulator)
    assert after == {offer: (7 * cap, 7 * cap) for offer, (cap, _) in before.items()}
    ledger = await simulator.ledger()
    assert ledger["holds"] == [] and ledger["bookings"] == []
    released = await simulator.http.post(f"/holds/{held['hold_ref']}/release", json={})
    assert released.json()["status"] == "absent"
    await simulator.assert_inventory_adds_up()


async def test_setting_the_scale_again_resets_and_a_reset_ends_load_mode(
    simulator: SimulatorControl,
) -> None:
    await simulator.set_capacity_scale(5)
    assert await holds_until_sold_out(simulator, TWO_SEATS, 15) == 10

    await simulator.set_capacity_scale(5)  # the same scale: a fresh inventory all the same
    assert (await simulator.stock(TWO_SEATS))["free"] == 10
    assert await holds_until_sold_out(simulator, TWO_SEATS, 15) == 10

    await simulator.reset()
    assert (await simulator.http.get("/_sim/config")).json()["capacity_scale"] == 1
    assert (await capacities(simulator))[TWO_SEATS] == (2, 2)


async def test_the_scale_leaves_the_hold_ttl_and_prices_alone(
    simulator: SimulatorControl,
) -> None:
    await simulator.set_hold_ttl(5)
    await simulator.set_price(FLIGHT, 1234)

    await simulator.set_capacity_scale(3)

    offer = next(o for o in await simulator.offers("flight") if o["offer_id"] == FLIGHT)
    assert offer["hold_ttl_seconds"] == 5 and offer["price"]["amount"] == 1234
    both = await simulator.http.post(
        "/_sim/config", json={"capacity_scale": 2, "hold_ttl_seconds": None}
    )
    assert both.json() == {"capacity_scale": 2, "hold_ttl_seconds": None}
    offer = next(o for o in await simulator.offers("flight") if o["offer_id"] == FLIGHT)
    assert (offer["capacity"], offer["hold_ttl_seconds"]) == (18, 1800)


@pytest.mark.parametrize("scale", [0, -3, 1.5, "10", True, None, [2]])
async def test_a_scale_that_is_not_an_integer_of_at_least_one_is_422_naming_the_field(
    simulator: SimulatorControl, scale: object
) -> None:
    assert (await hold(simulator, TWO_SEATS, "load-kept"))[0] == 201

    response = await simulator.http.post("/_sim/config", json={"capacity_scale": scale})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert [d["field"] for d in error["details"]] == ["body.capacity_scale"], error
    assert (await simulator.http.get("/_sim/config")).json()["capacity_scale"] == 1
    assert await simulator.holds_for("load-kept") != []
    assert (await simulator.stock(TWO_SEATS))["free"] == 1
