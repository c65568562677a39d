"""A bug in workflow code, then the release that fixes it, on the real Temporal dev server.

The buggy release fails the booking's workflow task (Temporal retries it) and leaves the holds
and the authorization as they are; once the fixed release polls, the same booking goes on to
CONFIRMED with its one PaymentIntent (docs/upgrades.md).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.client import WorkflowHandle

from passage.settings import Settings
from passage.temporal import connect
from tests.integration.test_api import eventually
from tests.support.bookings import booking_request, live_rows, start, wait_terminal
from tests.support.buggy_workflow import BuggyBookingWorkflow, TimingOutBookingWorkflow
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from worker import booking_worker
from workflows.booking import BookingWorkflow
from workflows.contracts import ActivityName, BookingView
from workflows.model import BookingStatus

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
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    buggy: type[BookingWorkflow],
    bug: str,
) -> None:
    settings = engine_settings.model_copy(update={"task_queue": f"upgrade-{uuid.uuid4().hex[:8]}"})
    # Payloads in clear, so the history can be committed for the replay test; the ledger is
    # still sealed with the engine's key (booking_worker reads it from `settings`).
    client = await connect(settings.model_copy(update={"codec_key": ""}))
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))

    async with booking_worker(client, settings, workflows=(buggy,)):
        handle = await start(client, Engine(settings, client), request)
        assert await eventually(lambda: _task_failure(handle), WAIT) == bug
        problems = await eventually(lambda: _reported_problems(handle), WAIT)
        assert "category=WorkflowTaskFailed" in problems
        description = await handle.describe()
        # Retrying its task, not failed: the workflow is running, nothing undone.
        assert description.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        holds, confirmed = live_rows(await simulator.ledger(), request.booking_id)
        assert (len(holds), len(confirmed)) == (2, 0)
        [intent] = await stripe_harness.payment_intents_for(request.booking_id)
        assert intent["status"] == "requires_capture"
        assert _UNDOS.isdisjoint(await _scheduled_activities(handle))

    async with booking_worker(client, settings):  # the fixed release
        view = await wait_terminal(handle)
        assert view.status == BookingStatus.CONFIRMED, view.timeline
        await eventually(lambda: _no_problem(handle), WAIT)

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
