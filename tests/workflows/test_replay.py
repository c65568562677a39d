"""Replay guards determinism: today's BookingWorkflow must replay the histories it wrote before.

Committed histories live in tests/histories/; `PASSAGE_RECORD_HISTORIES=1` rewrites them from the
scenarios below (do that only for a change that is meant to be compatible, and keep old files when
a change needs `workflow.patched`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.support.fake_activities import FakeBookingActivities, refuse
from tests.workflows.test_booking_saga import booking_request, run_saga
from workflows.booking import BookingWorkflow
from workflows.contracts import CancelBookingRequest, StaffAction
from workflows.model import BookingStatus

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def _history(env: WorkflowEnvironment, scenario: str) -> WorkflowHistory:
    fake = FakeBookingActivities()
    if scenario == "compensated":
        fake.script["CONFIRM it_2"] = [refuse("SOLD_OUT")]
    if scenario == "needs_attention":
        fake.script["CAPTURE"] = [refuse("PAYMENT_FAILED")]
        fake.script["CANCEL it_1"] = [refuse("NOT_CANCELLABLE")]
    async with run_saga(env, fake, booking_request(booking_id=f"bk_replay_{scenario}")) as saga:
        if scenario == "cancelled":
            await saga.status(BookingStatus.CONFIRMED)
            await saga.handle.execute_update(BookingWorkflow.cancel, CancelBookingRequest())
        if scenario == "needs_attention":
            await saga.status(BookingStatus.NEEDS_ATTENTION)
            await saga.handle.execute_update(BookingWorkflow.resolve, StaffAction("staff:ops"))
        await saga.handle.result()
        return await saga.handle.fetch_history()


@pytest.mark.parametrize("scenario", ["confirmed", "compensated", "cancelled", "needs_attention"])
async def test_fresh_histories_replay(
    time_skipping_env: WorkflowEnvironment, scenario: str
) -> None:
    history = await _history(time_skipping_env, scenario)
    await Replayer(workflows=[BookingWorkflow]).replay_workflow(history)
    if os.environ.get("PASSAGE_RECORD_HISTORIES"):
        (HISTORIES / f"{scenario}.json").write_text(history.to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_committed_histories_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"booking-{path.stem}", path.read_text())
    await Replayer(workflows=[BookingWorkflow]).replay_workflow(history)


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= {
        "confirmed",
        "compensated",
        "cancelled",
        "needs_attention",
    }
