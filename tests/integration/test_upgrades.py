"""Upgrades on the real engine (docs/upgrades.md): a bug fixed by the next release, a key rotated.

The buggy release fails the booking's workflow task (Temporal retries it) and leaves the holds
and the authorization as they are; once the fixed release polls, the same booking goes on to
CONFIRMED with its one PaymentIntent. After a codec key rotation, what was written under the old
key (the ledger's sealed fields and e-mail hash, the workflow's payloads) is still read.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.client import Client, WorkflowHandle

from passage.codec import KEY_ID_METADATA, key_id, new_key
from passage.settings import Settings
from passage.temporal import connect
from tests.integration.test_api import eventually
from tests.support.api import running_api
from tests.support.bookings import booking_request, live_rows, start, wait_terminal
from tests.support.buggy_workflow import (
    BuggyBookingWorkflow,
    BuggyUndoBookingWorkflow,
    TimingOutBookingWorkflow,
)
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from worker import booking_worker
from workflows.booking import BookingWorkflow
from workflows.contracts import ActivityName, BookingView
from workflows.model import BookingRequest, BookingStatus

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
#: How long (real time) the test waits for the server and the workers; the machine may be loaded.
WAIT = 120.0
REPORTED_PROBLEMS = "TemporalReportedProblems"
_UNDOS = {ActivityName.RELEASE_ITEM, ActivityName.CANCEL_ITEM, ActivityName.VOID_PAYMENT}


async def _task_failure(handle: WorkflowHandle[Any, BookingView]) -> str:
    """`<error type>: <message>` of the first failed workflow task, or empty."""
    for event in (await handle.fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure
            return f"{failure.application_failure_info.type}: {failure.message}"
    return ""


async def _scheduled_activities(handle: WorkflowHandle[Any, BookingView]) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in (await handle.fetch_history()).events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def _reported_problems(handle: WorkflowHandle[Any, BookingView]) -> list[str]:
    problems = (await handle.describe()).search_attributes.get(REPORTED_PROBLEMS) or []
    return [str(problem) for problem in problems]


async def _no_problem(handle: WorkflowHandle[Any, BookingView]) -> bool:
    return not await _reported_problems(handle)


@dataclasses.dataclass
class Releases:
    """Workers of the buggy and the fixed release on a task queue of their own."""

    settings: Settings
    client: Client

    async def start_under_bug(
        self, buggy: type[BookingWorkflow], request: BookingRequest, bug: str
    ) -> WorkflowHandle[Any, BookingView]:
        """Start `request` on a worker of the buggy release and leave once its workflow task
        has failed with `bug` and the server reports the problem; the workflow still runs."""
        async with booking_worker(self.client, self.settings, workflows=(buggy,)):
            handle = await start(self.client, Engine(self.settings, self.client), request)
            assert await eventually(lambda: _task_failure(handle), WAIT) == bug
            problems = await eventually(lambda: _reported_problems(handle), WAIT)
            assert "category=WorkflowTaskFailed" in problems
            description = await handle.describe()
            running = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
            assert description.status == running  # retrying its task, not failed
            assert _UNDOS.isdisjoint(await _scheduled_activities(handle))
        return handle

    async def settle_under_fix(self, handle: WorkflowHandle[Any, BookingView]) -> BookingView:
        """Run the fixed release until the booking settles and the problem is cleared."""
        async with booking_worker(self.client, self.settings):
            view = await wait_terminal(handle)
            await eventually(lambda: _no_problem(handle), WAIT)
        return view


@pytest.fixture
async def releases(engine_settings: Settings) -> Releases:
    settings = engine_settings.model_copy(update={"task_queue": f"upgrade-{uuid.uuid4().hex[:8]}"})
    # Payloads in clear, so the history can be committed for the replay test; the ledger is
    # still sealed with the engine's key (booking_worker reads it from `settings`).
    return Releases(settings, await connect(settings.model_copy(update={"codec_key": ""})))


@pytest.mark.parametrize(
    ("buggy", "bug"),
    [
        (BuggyBookingWorkflow, "ZeroDivisionError: a bug in the confirmation step"),
        (
            TimingOutBookingWorkflow,
            "WorkflowBugError: TimeoutError: a wait in the confirmation step timed out",
        ),
    ],
    ids=["bug", "timeout-error"],
)
async def test_the_release_that_fixes_a_bug_resumes_the_booking_the_bug_stopped(
    releases: Releases,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    buggy: type[BookingWorkflow],
    bug: str,
) -> None:
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))

    handle = await releases.start_under_bug(buggy, request, bug)
    holds, confirmed = live_rows(await simulator.ledger(), request.booking_id)
    assert (len(holds), len(confirmed)) == (2, 0)  # nothing released
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "requires_capture"  # nor voided

    view = await releases.settle_under_fix(handle)
    assert view.status == BookingStatus.CONFIRMED, view.timeline
    holds, confirmed = live_rows(await simulator.ledger(), request.booking_id)
    assert (len(holds), len(confirmed)) == (0, 2)
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == view.payment.captured.amount_minor
    assert _UNDOS.isdisjoint(await _scheduled_activities(handle))
    await handle.terminate("the test is over")
    if buggy is BuggyBookingWorkflow and os.environ.get("PASSAGE_RECORD_HISTORIES"):
        history = await handle.fetch_history()
        (HISTORIES / "bug_fixed_resumed.json").write_text(history.to_json())


async def test_a_bug_in_the_undo_path_waits_for_the_fix_instead_of_failing_the_booking(
    releases: Releases, simulator: SimulatorControl, stripe_harness: StripeHarness
) -> None:
    """A Temporal failure raised by workflow code would fail the workflow and leave the holds
    and the authorization for good; it fails the task, and the fixed release undoes them."""
    await simulator.add_fault("refuse", operation="confirm", code="SOLD_OUT")
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))
    bug = "WorkflowBugError: ApplicationError: a bug in the undo path"

    handle = await releases.start_under_bug(BuggyUndoBookingWorkflow, request, bug)
    holds, confirmed = live_rows(await simulator.ledger(), request.booking_id)
    assert (len(holds), len(confirmed)) == (2, 0)
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "requires_capture"

    view = await releases.settle_under_fix(handle)
    assert view.status == BookingStatus.FAILED, view.timeline
    assert live_rows(await simulator.ledger(), request.booking_id) == ([], [])
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "canceled"


async def test_after_a_key_rotation_staff_find_and_read_a_booking_recorded_under_the_old_key(
    engine_worker: Engine,
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
) -> None:
    """The engine's key becomes the old key: a new API on PostgreSQL with a new writing key still
    finds the booking by e-mail, opens its customer and travellers, and decodes its payloads."""
    email = f"rotation-{uuid.uuid4().hex[:8]}@example.com"
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))
    request = dataclasses.replace(request, customer_email=email)
    handle = await start(engine_worker.client, engine_worker, request)
    assert (await wait_terminal(handle)).status == BookingStatus.CONFIRMED
    old = engine_settings.codec_key
    rotated = engine_settings.model_copy(update={"codec_key": new_key(), "codec_old_keys": old})
    rotated_client = await connect(rotated)

    async def found_by(api: httpx.AsyncClient) -> list[str]:
        response = await api.get(
            "/admin/bookings", params={"email": email.upper()}, headers=staff_headers
        )
        assert response.status_code == 200, response.text
        return [booking["booking_id"] for booking in response.json()["bookings"]]

    async with running_api(rotated, rotated_client) as api:
        assert await eventually(lambda: found_by(api), WAIT) == [request.booking_id]
        staff_view = await api.get(f"/admin/bookings/{request.booking_id}", headers=staff_headers)
        assert staff_view.status_code == 200, staff_view.text
        assert staff_view.json()["customer"]["email"] == email
        assert staff_view.json()["travellers"][0]["last_name"] == "Lovelace"

    started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata[KEY_ID_METADATA] == key_id(old).encode()
    decoded = await rotated_client.data_converter.decode(started.input.payloads, [BookingRequest])
    assert decoded == [request]

    # The same with the old key dropped too early: the booking is no longer found.
    forgetful = engine_settings.model_copy(update={"codec_key": new_key()})
    async with running_api(forgetful, rotated_client) as api:
        assert await found_by(api) == []
