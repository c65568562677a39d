"""The invariant checker on the real stack: a confirmed, a compensated and a cancelled booking
check clean; a hold left live at the simulator for one of them is found (also by `passage check`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage.checker import Violation, check
from passage.cli.engine import run_check
from passage.cli.output import Output
from passage.codec import LedgerCipher
from passage.collector import CheckSources, TemporalEngineViews, collect
from tests.support.bookings import HOTEL, booking_request, start, wait_terminal
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from workflows.booking import BookingWorkflow
from workflows.contracts import CancelBookingRequest, client_ref
from workflows.model import BookingStatus


@pytest.fixture
async def sources(
    engine_worker: Engine, simulator: SimulatorControl, stripe_harness: StripeHarness
) -> AsyncIterator[CheckSources]:
    sql_engine = make_engine(engine_worker.settings.database_url)
    try:
        yield CheckSources(
            SqlBookingStore(sql_engine, LedgerCipher(engine_worker.settings.ledger_key)),
            TemporalEngineViews(engine_worker.client),
            simulator.http,
            stripe_harness.http,
        )
    finally:
        sql_engine.dispose()


async def test_settled_bookings_check_clean_and_a_live_hold_is_found(
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    sources: CheckSources,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = await stripe_harness.pm_for(CARD_OK)
    client = engine_worker.client

    confirmed = await start(client, engine_worker, await booking_request(simulator, card))
    assert (await wait_terminal(confirmed)).status == BookingStatus.CONFIRMED

    await simulator.add_fault(
        "refuse", supplier="harbour-hotels", operation="confirm", code="SOLD_OUT", times=1
    )
    compensated_request = await booking_request(simulator, card)
    compensated = await start(client, engine_worker, compensated_request)
    assert (await wait_terminal(compensated)).status == BookingStatus.FAILED

    cancelled = await start(client, engine_worker, await booking_request(simulator, card))
    assert (await wait_terminal(cancelled)).status == BookingStatus.CONFIRMED
    await cancelled.execute_update(BookingWorkflow.cancel, CancelBookingRequest(note="e2e"))
    assert (await cancelled.result()).status == BookingStatus.CANCELLED

    ids = [handle.id.removeprefix("booking-") for handle in (confirmed, compensated, cancelled)]
    try:
        evidence = await collect(sources, ids)
        assert [len(booking.payment_intents) for booking in evidence.bookings] == [1, 1, 1]
        assert all(booking.view and booking.ledger for booking in evidence.bookings)
        assert [len(booking.supplier_bookings) for booking in evidence.bookings] == [2, 0, 2]
        assert check(evidence.bookings, evidence.inventory) == []

        # A hold the saga never released: made directly at the simulator under the booking's ref.
        broken_id = compensated_request.booking_id
        response = await simulator.http.post(
            "/holds",
            json={
                "offer_id": HOTEL,
                "quantity": 1,
                "client_ref": client_ref(broken_id, "it_9", "hold"),
            },
        )
        response.raise_for_status()
        evidence = await collect(sources, ids)
        [violation] = check(evidence.bookings, evidence.inventory)
        assert violation == Violation(broken_id, "nothing-live", violation.detail)
        assert response.json()["hold_ref"] in violation.detail

        capsys.readouterr()
        assert await run_check(engine_worker.settings, broken_id, Output(as_json=True)) == 1
        answer = json.loads(capsys.readouterr().out)
        assert answer["checked"] == 1
        assert [v["rule"] for v in answer["violations"]] == ["nothing-live"]
    finally:
        await confirmed.terminate("test done")  # ends the 30-day cancellation window early
