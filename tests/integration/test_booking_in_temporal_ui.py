"""What an operator reads in the Temporal UI about a real booking: summaries and current details.

A booking started through the API carries a static summary, keeps its current details up to date
(the `__temporal_workflow_metadata` query the UI calls) and names every activity and timer, all
decoded through Passage's codec and free of personal data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from bench.engine import booking_body
from tests.support.bookings import FLIGHT, HOTEL
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness

Json = dict[str, Any]
TAG = "operator-view"


async def _book(api: httpx.AsyncClient, simulator: SimulatorControl, card: str) -> Json:
    items = []
    for offer_id in (FLIGHT, HOTEL):
        offer = (await simulator.http.get(f"/offers/{offer_id}")).json()
        items.append((offer_id, offer["price"], False))
    body = booking_body(TAG, items, card)
    response = await api.post(
        "/bookings", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 202, response.text
    accepted: Json = response.json()
    accepted["total"] = sum(price["amount"] for _, price, _ in items)
    accepted["personal"] = [body["customer"]["email"], *body["travellers"][0].values()]
    return accepted


async def _details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def _decoded(engine: Engine, payload: Payload) -> str:
    [text] = await engine.client.data_converter.decode([payload], [str])
    return str(text)


async def test_a_booking_reads_like_its_timeline_in_the_temporal_ui(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    card = await stripe_harness.pm_for(CARD_OK)
    booking = await _book(api_client, simulator, card)
    handle = engine_worker.client.get_workflow_handle(f"booking-{booking['booking_id']}")
    deadline = time.monotonic() + 30
    while "**CONFIRMED**" not in (details := await _details(handle)):
        assert time.monotonic() < deadline, details
        await asyncio.sleep(0.2)

    described = await handle.describe()
    euros, cents = divmod(booking["total"], 100)
    assert await described.static_summary() == f"2 items · {euros:,}.{cents:02d} EUR"
    assert "step `CONFIRMED`" in details
    assert "Suppliers: aurora-air, harbour-hotels" in details
    assert "Waiting for a cancellation" in details

    summaries: dict[str, list[str]] = {}
    history = await handle.fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            summary = event.user_metadata.summary
            assert summary.metadata["encoding"] == b"binary/encrypted"  # encrypted like the rest
            summaries.setdefault(name, []).append(await _decoded(engine_worker, summary))
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            summaries.setdefault("timer", []).append(
                await _decoded(engine_worker, event.user_metadata.summary)
            )

    def item_calls(step: str) -> list[str]:
        """Each item's call of a step: alone, or in a batch whose summary names each one."""
        texts = summaries.get(f"{step}_item", []) + summaries.get(f"{step}_items", [])
        return sorted(call for text in texts for call in text.split("; "))

    assert summaries["hold_items"]  # the items of a step go in one activity
    assert item_calls("hold") == ["HOLD it_1 · aurora-air", "HOLD it_2 · harbour-hotels"]
    assert item_calls("confirm") == ["CONFIRM it_1 · aurora-air", "CONFIRM it_2 · harbour-hotels"]
    assert summaries["authorize_payment"] == [f"AUTHORIZE {euros:,}.{cents:02d} EUR"]
    assert summaries["capture_payment"] == [f"CAPTURE {euros:,}.{cents:02d} EUR"]
    assert "cancellation window: continue as new at its end" in summaries["timer"]
    every_text = [details, *(text for texts in summaries.values() for text in texts)]
    assert not [text for text in every_text for word in booking["personal"] if word in text]
    await handle.terminate("test done")
