"""`passage replay` against the real Temporal dev server: real bookings' histories, today's code."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from passage import replay
from passage.cli.engine import run_replay
from passage.cli.output import Output
from passage.settings import Settings
from tests.support.bookings import booking_request, start, wait_terminal
from tests.support.reordered_workflow import ReorderedBookingWorkflow
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from workflows.model import BookingStatus


async def _replay(
    capsys: pytest.CaptureFixture[str], settings: Settings, query: str
) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    status = await run_replay(settings, query, None, Output(as_json=True))
    return status, json.loads(capsys.readouterr().out)


async def test_replay_passes_today_s_code_and_catches_two_reordered_steps(
    engine_worker: Engine,
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))
    handle = await start(engine_worker.client, engine_worker, request)
    assert (await wait_terminal(handle)).status == BookingStatus.CONFIRMED
    await handle.terminate("test done")  # replay needs no running workflow

    status, answer = await _replay(
        capsys, engine_settings, replay.booking_query(request.booking_id)
    )
    assert status == 0, answer
    assert answer["replayed"] == 1 and answer["failed"] == 0

    monkeypatch.setattr(replay, "WORKFLOWS", (ReorderedBookingWorkflow,))
    status, answer = await _replay(
        capsys, engine_settings, replay.booking_query(request.booking_id)
    )
    assert status == 1
    [history] = answer["histories"]  # type: ignore[misc]
    assert history["workflow_id"] == f"booking-{request.booking_id}"
    assert "Nondeterminism" in history["failure"]


async def test_replay_selects_bookings_by_time_and_by_query(
    engine_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    query = replay.booking_query(query='BookingStatus = "NEEDS_ATTENTION"')
    assert query == 'WorkflowType = "BookingWorkflow" AND (BookingStatus = "NEEDS_ATTENTION")'
    since = datetime.fromisoformat("2999-01-01T00:00:00+00:00")
    status, answer = await _replay(capsys, engine_settings, replay.booking_query(since=since))
    assert status == 0 and answer["replayed"] == 0
