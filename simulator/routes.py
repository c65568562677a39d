"""HTTP routes: the supplier API (`/offers`, `/quotes`, `/holds`, `/bookings`) and the control API
(`/_sim/*`) that tests and the demo use to inject faults, read the ledger and move prices.

References in paths use the `path` converter so a client reference containing `/` still routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from simulator import schemas
from simulator.catalog import Kind
from simulator.faults import Operation
from simulator.inventory import Inventory
from simulator.service import Simulator


def get_simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


SimulatorDep = Annotated[Simulator, Depends(get_simulator)]

supplier_router = APIRouter(tags=["supplier"])
control_router = APIRouter(prefix="/_sim", tags=["simulator control"])


@supplier_router.get("/healthz")
async def healthz() -> schemas.JSON:
    return {"status": "ok"}


@supplier_router.get("/offers")
async def list_offers(simulator: SimulatorDep, kind: Kind | None = None) -> list[schemas.JSON]:
    views = await simulator.read(lambda inventory: inventory.offers(kind))
    return [schemas.offer_json(view) for view in views]


@supplier_router.get("/offers/{offer_id}")
async def get_offer(simulator: SimulatorDep, offer_id: str) -> schemas.JSON:
    return schemas.offer_json(await simulator.read(lambda inventory: inventory.offer(offer_id)))


@supplier_router.post("/quotes")
async def quote(simulator: SimulatorDep, body: schemas.QuoteBody) -> schemas.JSON:
    result = await simulator.perform(
        Operation.QUOTE,
        lambda inventory: inventory.supplier_of_offer(body.offer_id),
        lambda inventory: inventory.quote(body.offer_id, body.quantity),
    )
    return schemas.quote_json(result)


@supplier_router.post("/holds")
async def hold(simulator: SimulatorDep, body: schemas.HoldBody, response: Response) -> schemas.JSON:
    held, created = await simulator.perform(
        Operation.HOLD,
        lambda inventory: inventory.supplier_of_offer(body.offer_id),
        lambda inventory: inventory.hold(body.offer_id, body.quantity, body.client_ref),
    )
    response.status_code = 201 if created else 200
    return schemas.hold_json(held)


@supplier_router.post("/holds/{ref:path}/confirm")
async def confirm(
    simulator: SimulatorDep, ref: str, body: schemas.RefBody | None = None
) -> schemas.JSON:
    client_ref = body.client_ref if body is not None else ""
    booking = await simulator.perform(
        Operation.CONFIRM,
        lambda inventory: inventory.supplier_of(ref),
        lambda inventory: inventory.confirm(ref, client_ref),
    )
    return schemas.booking_json(booking)


@supplier_router.post("/holds/{ref:path}/release")
async def release(
    simulator: SimulatorDep, ref: str, body: schemas.RefBody | None = None
) -> schemas.JSON:
    result = await simulator.perform(
        Operation.RELEASE,
        lambda inventory: inventory.supplier_of(ref),
        lambda inventory: inventory.release(ref),
    )
    return schemas.release_json(result)


@supplier_router.post("/bookings/{ref:path}/cancel")
async def cancel(
    simulator: SimulatorDep, ref: str, body: schemas.RefBody | None = None
) -> schemas.JSON:
    result = await simulator.perform(
        Operation.CANCEL,
        lambda inventory: inventory.supplier_of(ref),
        lambda inventory: inventory.cancel(ref),
    )
    return schemas.cancellation_json(result)


@control_router.post("/faults", status_code=201)
async def add_fault(simulator: SimulatorDep, body: schemas.FaultBody) -> schemas.JSON:
    fault = await simulator.change(lambda _: simulator.faults.add(body.to_fault()))
    return {"fault_id": fault.fault_id}


@control_router.get("/faults")
async def list_faults(simulator: SimulatorDep) -> list[schemas.JSON]:
    faults = await simulator.read(lambda _: simulator.faults.active())
    return [schemas.fault_json(fault) for fault in faults]


@control_router.delete("/faults")
async def clear_faults(simulator: SimulatorDep) -> schemas.JSON:
    await simulator.change(lambda _: simulator.faults.clear())
    return {"status": "cleared"}


@control_router.post("/reset")
async def reset(simulator: SimulatorDep) -> schemas.JSON:
    await simulator.reset()
    return {"status": "reset"}


@control_router.get("/ledger")
async def ledger(simulator: SimulatorDep) -> schemas.JSON:
    return schemas.ledger_json(await simulator.read(lambda inventory: inventory.ledger()))


@control_router.post("/offers/{offer_id}/price")
async def set_price(
    simulator: SimulatorDep, offer_id: str, body: schemas.PriceBody
) -> schemas.JSON:
    view = await simulator.change(lambda inventory: inventory.set_price(offer_id, body.amount))
    return schemas.offer_json(view)


@control_router.get("/config")
async def read_config(simulator: SimulatorDep) -> schemas.JSON:
    return await simulator.read(schemas.config_json)


@control_router.post("/config")
async def configure(simulator: SimulatorDep, body: schemas.ConfigBody) -> schemas.JSON:
    """Change the fields given, in one step; answers the configuration now in force."""

    def apply(inventory: Inventory) -> schemas.JSON:
        if body.capacity_scale is not None:  # first: it restocks, the TTL then applies to all
            inventory.set_capacity_scale(body.capacity_scale)
        if "hold_ttl_seconds" in body.model_fields_set:
            inventory.set_hold_ttl(body.hold_ttl_seconds)
        return schemas.config_json(inventory)

    return await simulator.change(apply)
