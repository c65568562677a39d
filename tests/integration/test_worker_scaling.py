"""`PASSAGE_WORKERS=2 make up`: two workers share the task queue, and one of them SIGKILLed in the
middle of a burst of bookings, while it is capturing a payment, costs no booking and no money.

The launcher runs on free ports (the fixtures of test_devstack.py). Captures are slowed at the
Stripe emulator so a worker is caught with a capture in flight; it is killed then. The booking it
was capturing waits out the activity timeout and is captured again elsewhere, under the same
idempotency key; the others go on at the surviving worker while the killed one is started again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client

from tests.integration.test_devstack import (
    STRIPE_TEST_API_KEY,
    Stack,
    assert_nothing_left,
    book_a_flight,
    booking_view,
)
from tests.integration.test_devstack import stack as stack  # noqa: F401  (the fixture)
from workflows.calls import ACTIVITY_TIMEOUT
from workflows.model import workflow_id_for

BOOKINGS = 20
#: Every capture of the burst takes this long at "Stripe", so one is in flight when we kill.
CAPTURE_LATENCY = timedelta(seconds=2)
#: Beyond the activity timeout, for a loaded machine (a guard, not a measurement).
SETTLE_MARGIN_SECONDS = 90.0
SETTLED = ("CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION")
WORKER_ROW = re.compile(r"^\s+(worker-\d+)\s+health (\S+)\s+metrics (\S+)$", re.MULTILINE)


@pytest.fixture
def two_workers(stack: Stack) -> Iterator[Stack]:  # noqa: F811  (the imported fixture)
    stack.env["PASSAGE_WORKERS"] = "2"
    # One test client books 20 trips and polls them all from one address.
    stack.env["PASSAGE_RATE_LIMIT_CLIENT_PER_SECOND"] = "0"
    stack.env["PASSAGE_RATE_LIMIT_BOOKING_PER_SECOND"] = "0"
    stack.start()
    stack.wait_ready()
    yield stack


def restock_and_slow_the_captures(stack: Stack) -> None:
    """Room for the whole burst on every offer; every capture of the burst slowed."""
    restocked = httpx.post(
        f"{stack.url('PASSAGE_SIMULATOR_PORT')}/_sim/config",
        json={"capacity_scale": 100},
        timeout=10,
    )
    restocked.raise_for_status()
    slowed = httpx.post(
        f"{stack.url('PASSAGE_STRIPE_PORT')}/_harness/latency",
        json={
            "method": "POST",
            "path": "/v1/payment_intents/{id}/capture",
            "latency_ms": int(CAPTURE_LATENCY.total_seconds() * 1000),
            "times": BOOKINGS,
        },
        timeout=10,
    )
    assert slowed.status_code == 201, slowed.text


def worker_identities(stack: Stack) -> dict[str, str]:
    """name -> the identity the worker polls with, as its health endpoint reports it."""
    rows = WORKER_ROW.findall(stack.log())
    assert [name for name, _, _ in rows] == ["worker-1", "worker-2"], stack.log()
    metrics = {address for _, _, address in rows}
    assert len(metrics) == 2, rows  # each its own metrics address
    identities = {}
    for name, health, _ in rows:
        answer = httpx.get(health, timeout=15)
        assert answer.status_code == 200, answer.text
        assert answer.json()["workflow"] == answer.json()["activity"] == "polling"
        identities[name] = answer.json()["identity"]
    return identities


async def a_capture_in_flight(
    client: Client, booking_ids: list[str], identities: dict[str, str]
) -> tuple[str, str]:
    """(booking id, worker name) of a capture one of the workers is running right now."""
    by_identity = {identity: name for name, identity in identities.items()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for booking_id in list(booking_ids):
            described = await client.get_workflow_handle(workflow_id_for(booking_id)).describe()
            for pending in described.raw_description.pending_activities:
                started = pending.last_started_time.ToDatetime(UTC)
                if (
                    pending.activity_type.name == "capture_payment"
                    and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    and pending.last_worker_identity in by_identity
                    # Far from its end: it cannot complete before the kill lands.
                    and datetime.now(UTC) - started < CAPTURE_LATENCY / 2
                ):
                    return booking_id, by_identity[pending.last_worker_identity]
        await asyncio.sleep(0.1)
    pytest.fail(f"no capture seen in flight at a worker among {booking_ids}")


def wait_all_settled(
    stack: Stack, bookings: list[tuple[str, str]], deadline: float
) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    while len(views) < len(bookings):
        for booking_id, token in bookings:
            if booking_id not in views:
                view = booking_view(stack, booking_id, token)
                if view["status"] in SETTLED:
                    views[booking_id] = view
        if len(views) < len(bookings):
            assert time.monotonic() < deadline, f"settled: {sorted(views)}\n{stack.log()}"
            time.sleep(0.5)
    return views


def payment_intents_by_booking(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    response = httpx.get(
        f"{stack.url('PASSAGE_STRIPE_PORT')}/v1/payment_intents",
        params={"limit": "100"},
        headers={"Authorization": f"Bearer {STRIPE_TEST_API_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    intents: dict[str, list[dict[str, Any]]] = {}
    for intent in response.json()["data"]:
        intents.setdefault(intent["metadata"].get("booking_id", ""), []).append(intent)
    return intents


async def test_a_worker_killed_mid_burst_loses_no_booking_and_charges_nothing_twice(
    two_workers: Stack,
) -> None:
    stack = two_workers
    children = stack.children()
    assert {"worker-1", "worker-2"} <= set(children) and "worker" not in children
    identities = await asyncio.to_thread(worker_identities, stack)
    assert identities["worker-1"] != identities["worker-2"]
    await asyncio.to_thread(restock_and_slow_the_captures, stack)
    client = await Client.connect(f"127.0.0.1:{stack.env['PASSAGE_TEMPORAL_PORT']}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        burst = [pool.submit(book_a_flight, stack) for _ in range(BOOKINGS)]
        made: list[str] = []

        async def booked_so_far() -> None:
            while len(made) < BOOKINGS:
                made[:] = [f.result()[0] for f in burst if f.done()]
                await asyncio.sleep(0.05)

        watching = asyncio.create_task(booked_so_far())
        interrupted, victim = await a_capture_in_flight(client, made, identities)
        os.kill(children[victim], signal.SIGKILL)
        killed_at = datetime.now(UTC)
        deadline = time.monotonic() + ACTIVITY_TIMEOUT.total_seconds() + SETTLE_MARGIN_SECONDS
        bookings = await asyncio.to_thread(lambda: [f.result(timeout=60) for f in burst])
        await watching
    survivor = next(name for name in identities if name != victim)

    views = await asyncio.to_thread(wait_all_settled, stack, bookings, deadline)
    assert {view["status"] for view in views.values()} == {"CONFIRMED"}, views
    # Nothing charged twice: one PaymentIntent per booking, captured once, for its total.
    intents = await asyncio.to_thread(payment_intents_by_booking, stack)
    for booking_id, view in views.items():
        assert [pi["status"] for pi in intents.get(booking_id, [])] == ["succeeded"], intents
        (intent,) = intents[booking_id]
        assert intent["id"] == view["payment"]["payment_intent_id"], view
        assert intent["amount_received"] == view["payment"]["captured"]["amount"], (intent, view)

    # The interrupted capture timed out at the dead worker and was run again by a live one.
    history = await client.get_workflow_handle(workflow_id_for(interrupted)).fetch_history()
    captures = [
        event.activity_task_started_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and any(
            scheduled.event_id == event.activity_task_started_event_attributes.scheduled_event_id
            and scheduled.activity_task_scheduled_event_attributes.activity_type.name
            == "capture_payment"
            for scheduled in history.events
        )
    ]
    assert [c.attempt > 1 and c.identity != identities[victim] for c in captures] == [True]

    # The surviving worker went on working after the kill: with a single worker, only the dead
    # one and its restarted successor (a new identity) would appear after this instant.
    after_the_kill = 0
    for booking_id in views:
        history = await client.get_workflow_handle(workflow_id_for(booking_id)).fetch_history()
        after_the_kill += sum(
            1
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            and event.workflow_task_completed_event_attributes.identity == identities[survivor]
            and event.event_time.ToDatetime(UTC) > killed_at
        )
    assert after_the_kill > 0

    # The killed worker was started again with a notice; the survivor was left alone.
    log = stack.log()
    assert f"{victim} (pid {children[victim]}) exited unexpectedly" in log
    assert "restarting it" in log
    assert stack.children()[survivor] == children[survivor]
    assert stack.children()[victim] != children[victim]
    final = stack.children()
    assert stack.stop() == 0, stack.log()
    assert_nothing_left(final)
