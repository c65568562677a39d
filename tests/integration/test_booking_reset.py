"""`POST /admin/bookings/{id}/reset` end to end, and the ledger's run generations behind it.

The engine is the session's real one (Temporal dev server, worker, simulator, Stripe emulator,
PostgreSQL ledger). A booking is made to fail the way a bug would (the simulator refuses the
flight's confirmation, then the hotel's cancellation, so it waits for an operator with its money
authorized and its rooms booked); the faults are cleared (the release that fixed it); a reset
takes it back before its authorization, and it ends CONFIRMED with one PaymentIntent at Stripe
and one booking per item at the simulator, its ledger showing the new run, not the old one.

Every wait is bounded (`wait_for`, `eventually`, `asyncio.timeout`): a reset run that waits for
something never reapplied, or a ledger that ignores the new run, fails here instead of hanging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage.checker import check
from passage.codec import LedgerCipher
from passage.collector import CheckSources, TemporalEngineViews, collect
from tests.integration.test_api import (
    FLIGHT,
    HOTEL,
    STAFF_KEY,
    book,
    checkout,
    eventually,
    handle_of,
    wait_for,
)
from tests.support.bookings import live_rows
from tests.support.ledger_data import booking_lifecycle
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine as TemporalEngine
from tests.support.stripe import CARD_3DS, CARD_OK, StripeHarness

Json = dict[str, Any]
ACTOR = f"staff:{hashlib.sha256(STAFF_KEY.encode()).hexdigest()[:8]}"


@pytest.fixture
async def card(stripe_harness: StripeHarness) -> str:
    return await stripe_harness.pm_for(CARD_OK)


async def stuck_booking(api: httpx.AsyncClient, simulator: SimulatorControl, card: str) -> Json:
    """Flight + hotel, stuck on `CANCEL it_2` after the flight's confirmation was refused."""
    await simulator.add_fault("refuse", supplier="aurora-air", operation="confirm", code="SOLD_OUT")
    await simulator.add_fault(
        "refuse", supplier="meridian-stays", operation="cancel", code="NOT_CANCELLABLE"
    )
    booking = await book(api, await checkout(simulator, card, FLIGHT, HOTEL))
    stuck = await wait_for(api, booking, "NEEDS_ATTENTION", within=60)
    assert stuck["attention"]["step"] == "CANCEL it_2"
    return booking


async def test_a_reset_before_the_authorization_confirms_with_one_payment_and_one_booking_each(
    api_client: httpx.AsyncClient,
    engine_worker: TemporalEngine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    booking = await stuck_booking(api_client, simulator, card)
    booking_id = booking["booking_id"]
    before = (await api_client.get(f"/admin/bookings/{booking_id}", headers=staff_headers)).json()
    old_run = (await handle_of(engine_worker, booking_id).describe()).run_id
    [intent] = await stripe_harness.payment_intents_for(booking_id)
    assert intent["status"] == "requires_capture"

    await simulator.clear_faults()  # the release that fixes the bug is out
    async with asyncio.timeout(60):
        response = await api_client.post(
            f"/admin/bookings/{booking_id}/reset",
            json={"to": "AUTHORIZE", "note": "SOLD_OUT was our adapter's bug, fixed in 1.4.2"},
            headers=staff_headers,
        )
    assert response.status_code in (200, 202), response.text

    confirmed = await wait_for(api_client, booking, "CONFIRMED", within=60)
    assert confirmed["payment"]["status"] == "CAPTURED"
    assert confirmed["error"] is None
    description = await handle_of(engine_worker, booking_id).describe()
    assert description.run_id != old_run

    # Nothing charged or booked twice: the new run's steps found what the old run had done.
    [intent] = await stripe_harness.payment_intents_for(booking_id)
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == confirmed["payment"]["captured"]["amount"]
    holds, bookings = live_rows(await simulator.ledger(), booking_id)
    assert holds == []
    assert sorted(b["offer_id"] for b in bookings) == sorted([FLIGHT, HOTEL])
    await simulator.assert_inventory_adds_up()

    # The ledger follows the new run, and its trail continues after the old run's entries.
    async def audited() -> Json | None:
        detail = await api_client.get(f"/admin/bookings/{booking_id}", headers=staff_headers)
        body: Json = detail.json()
        return body if body["status"] == "CONFIRMED" else None

    detail = await eventually(audited, within=30)
    audit = detail["audit"]
    seqs = [entry["seq"] for entry in audit]
    assert seqs == list(range(1, len(audit) + 1)), seqs
    assert audit[: len(before["audit"])] == before["audit"]  # the old run's entries stay
    [reset] = [entry for entry in audit if entry["outcome"] == "staff reset"]
    assert reset["step"] == "RESET to AUTHORIZE"
    assert reset["actor"] == ACTOR
    assert reset["detail"] == "SOLD_OUT was our adapter's bug, fixed in 1.4.2"
    after_reset = [entry["step"] for entry in audit[audit.index(reset) + 1 :]]
    assert "AUTHORIZE" in after_reset and "CONFIRM it_1" in after_reset
    assert after_reset[-1] == "CONFIRMED"
    assert [e["seq"] for e in confirmed["timeline"]] == seqs  # the customer reads the same trail

    # The invariant checker sees a clean CONFIRMED booking: one PaymentIntent, the capture the
    # confirmed items' sum, the ledger agreeing with the engine.
    sql_engine = make_engine(engine_worker.settings.database_url)
    try:
        sources = CheckSources(
            SqlBookingStore(sql_engine, LedgerCipher(engine_worker.settings.ledger_key)),
            TemporalEngineViews(engine_worker.client),
            simulator.http,
            stripe_harness.http,
        )
        evidence = await collect(sources, [booking_id])
        assert check(evidence.bookings, evidence.inventory) == []
    finally:
        sql_engine.dispose()

    # A confirmed booking is not reset: 409 naming why.
    again = await api_client.post(f"/admin/bookings/{booking_id}/reset", headers=staff_headers)
    assert again.status_code == 409, again.text
    assert "CONFIRMED" in again.json()["error"]["message"]
    await handle_of(engine_worker, booking_id).terminate("test done")  # its cancellation window


async def test_a_reset_is_refused_with_the_reason(
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    booking = await stuck_booking(api_client, simulator, card)
    booking_id = booking["booking_id"]
    path = f"/admin/bookings/{booking_id}/reset"
    unknown = await api_client.post(path, json={"to": "FROBNICATE"}, headers=staff_headers)
    assert unknown.status_code == 409 and "not a step" in unknown.json()["error"]["message"]
    never = await api_client.post(path, json={"to": "CAPTURE"}, headers=staff_headers)
    assert never.status_code == 409 and "has not scheduled" in never.json()["error"]["message"]
    bad = await api_client.post(path, json={"to": "CONFIRM\nit_1"}, headers=staff_headers)
    assert bad.status_code == 422
    nobody = await api_client.post(path, json={"to": "CONFIRM"})
    assert nobody.status_code == 401
    missing = await api_client.post("/admin/bookings/bk_nothing00000/reset", headers=staff_headers)
    assert missing.status_code == 404
    # Still stuck and untouched; a forced cancel then settles it (and a reset is refused after).
    await simulator.clear_faults()
    forced = await api_client.post(
        f"/admin/bookings/{booking_id}/cancel", json={"note": "give up"}, headers=staff_headers
    )
    assert forced.status_code in (200, 202), forced.text
    await wait_for(api_client, booking, "CANCELLED", within=60)
    ended = await api_client.post(path, headers=staff_headers)
    assert ended.status_code == 409 and "CANCELLED" in ended.json()["error"]["message"]


# --- the ledger alone: two runs of one booking ---------------------------------------------------


async def test_a_reset_run_supersedes_the_old_run_and_continues_its_trail(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    """The old run got to version 5 and timeline entry 5; the reset run forks after entry 2 and
    writes lower versions; the old run's late writes are then ignored."""
    snapshots = booking_lifecycle("bk_runs", created_at=datetime(2026, 2, 1, tzinfo=UTC))
    old = snapshots[-1]
    for snapshot in snapshots:
        await store.record(snapshot, run_id="run-old")
    old_view = await store.get_view("bk_runs")
    assert old_view is not None
    old_trail = old_view.timeline
    assert len(old_trail) >= 4

    generation = await store.begin_reset("bk_runs", "run-old", "HOLD", "staff:x", "fixed")
    assert generation == 1
    inherited = old_trail[:2]
    fork = dataclasses.replace(
        old.view,
        version=2,
        status=old.view.status,
        timeline=(
            *inherited,
            dataclasses.replace(old_trail[2], seq=3, at="2026-02-02T00:00:00+00:00"),
        ),
    )
    first = dataclasses.replace(old, view=fork, recorded_through=2, committed_through=None)
    await store.record(first, run_id="run-new")
    assert await store.reset_recorded("bk_runs", generation)

    view = await store.get_view("bk_runs")
    assert view is not None and view.version == 2  # lower, and written all the same
    seqs = [entry.seq for entry in view.timeline]
    assert seqs == list(range(1, len(old_trail) + 3))
    assert view.timeline[: len(old_trail)] == old_trail
    reset_entry = view.timeline[len(old_trail)]
    assert (reset_entry.step, reset_entry.outcome, reset_entry.actor) == (
        "RESET to HOLD",
        "staff reset",
        "staff:x",
    )
    assert view.timeline[-1].at == "2026-02-02T00:00:00+00:00"

    # A late write of the terminated run changes nothing, not even the trail.
    await store.record(old, run_id="run-old")
    assert await store.get_view("bk_runs") == view
    # The new run goes on (and a run continuing it as new, unknown to the ledger, too).
    later = dataclasses.replace(
        fork,
        version=3,
        timeline=(
            *fork.timeline,
            dataclasses.replace(old_trail[3], seq=4, at="2026-02-02T00:00:01+00:00"),
        ),
    )
    await store.record(
        dataclasses.replace(first, view=later, recorded_through=3), run_id="run-continued"
    )
    newest = await store.get_view("bk_runs")
    assert newest is not None and newest.version == 3
    assert [entry.seq for entry in newest.timeline] == [*seqs, seqs[-1] + 1]
    with ledger_engine.connect() as connection:
        generation_of_row = connection.execute(
            text("SELECT run_generation FROM bookings WHERE booking_id = 'bk_runs'")
        ).scalar_one()
    assert generation_of_row == 1

    # A second reset forks the new run after its own first entry: the trail goes on again.
    assert await store.begin_reset("bk_runs", "run-new", "CONFIRM", "staff:y", "again") == 2
    second = dataclasses.replace(
        fork,
        version=3,
        timeline=(
            *fork.timeline,
            dataclasses.replace(old_trail[3], seq=4, at="2026-02-03T00:00:00+00:00"),
        ),
    )
    await store.record(
        dataclasses.replace(first, view=second, recorded_through=3), run_id="run-newest"
    )
    twice = await store.get_view("bk_runs")
    assert twice is not None
    assert twice.timeline[: len(newest.timeline)] == newest.timeline
    assert [(e.step, e.actor) for e in twice.timeline[len(newest.timeline) :]] == [
        ("RESET to CONFIRM", "staff:y"),
        (old_trail[3].step, None),
    ]
    assert [e.seq for e in twice.timeline] == list(range(1, len(twice.timeline) + 1))
    await store.record(dataclasses.replace(first, view=later), run_id="run-new")  # superseded
    assert await store.get_view("bk_runs") == twice


async def test_a_refused_reset_leaves_the_old_run_in_charge(store: SqlBookingStore) -> None:
    snapshots = booking_lifecycle("bk_abandon", created_at=datetime(2026, 2, 1, tzinfo=UTC))
    for snapshot in snapshots[:2]:
        await store.record(snapshot, run_id="run-old")
    generation = await store.begin_reset("bk_abandon", "run-old", "HOLD", "staff:x", "")
    await store.abandon_reset("bk_abandon", generation)
    for snapshot in snapshots[2:]:
        await store.record(snapshot, run_id="run-old")
    view = await store.get_view("bk_abandon")
    assert view is not None and view.version == snapshots[-1].view.version
    assert not await store.reset_recorded("bk_abandon", generation)


async def test_a_reset_to_a_forward_step_is_refused_once_an_undo_changed_something(
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    # The hotel is cancelled and the payment voided before the flight's release is refused.
    await simulator.add_fault("refuse", supplier="aurora-air", operation="confirm", code="SOLD_OUT")
    await simulator.add_fault(
        "refuse", supplier="aurora-air", operation="release", code="NOT_RELEASABLE"
    )
    booking = await book(api_client, await checkout(simulator, card, FLIGHT, HOTEL))
    stuck = await wait_for(api_client, booking, "NEEDS_ATTENTION", within=60)
    assert stuck["attention"]["step"] == "RELEASE it_1"
    assert stuck["payment"]["status"] == "VOIDED"
    refused = await api_client.post(
        f"/admin/bookings/{booking['booking_id']}/reset", headers=staff_headers
    )
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "it_2 CANCELLED" in message and "payment VOIDED" in message
    await simulator.clear_faults()
    resolved = await api_client.post(
        f"/admin/bookings/{booking['booking_id']}/retry", headers=staff_headers
    )
    assert resolved.status_code in (200, 202), resolved.text
    await wait_for(api_client, booking, "FAILED", within=60)


async def test_a_booking_reset_while_awaiting_3ds_waits_again_and_reads_with_one_trail(
    api_client: httpx.AsyncClient,
    engine_worker: TemporalEngine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
) -> None:
    """The new run authorizes again (the same PaymentIntent) and waits for 3-D Secure again; the
    customer's view, which comes from the live workflow while it waits, numbers its timeline as
    the ledger does; authentication then confirms it."""
    card = await stripe_harness.pm_for(CARD_3DS)
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION", within=60)
    response = await api_client.post(
        f"/admin/bookings/{booking['booking_id']}/reset",
        json={"to": "AUTHORIZE", "note": "3DS test"},
        headers=staff_headers,
    )
    assert response.status_code in (200, 202), response.text

    async def waiting_again() -> Json | None:
        view = await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION", within=60)
        return view if any(e["outcome"] == "staff reset" for e in view["timeline"]) else None

    waiting = await eventually(waiting_again, within=60)
    seqs = [entry["seq"] for entry in waiting["timeline"]]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    [intent] = await stripe_harness.payment_intents_for(booking["booking_id"])
    await stripe_harness.authenticate(intent["id"], waiting["payment"]["client_secret"])
    confirmed = await wait_for(api_client, booking, "CONFIRMED", within=60)
    assert [i["id"] for i in await stripe_harness.payment_intents_for(booking["booking_id"])] == [
        intent["id"]
    ]
    assert confirmed["payment"]["status"] == "CAPTURED"
    await handle_of(engine_worker, booking["booking_id"]).terminate("test done")
