"""`passage replay` against the real Temporal dev server: real bookings' histories, today's code."""

from __future__ import annotations

import io
import json

import pytest

from passage import cli, replay
from passage.settings import Settings
from tests.support.bookings import booking_request, start, wait_terminal
from tests.support.reordered_workflow import ReorderedBookingWorkflow
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_OK, StripeHarness
from workflows.model import BookingStatus


async def _replay(settings: Settings, *argv: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    status = await cli.run_replay(cli.build_parser().parse_args(["replay", *argv]), settings, out)
    return status, json.loads(out.getvalue())


async def test_replay_passes_today_s_code_and_catches_two_reordered_steps(
    engine_worker: Engine,
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = await booking_request(simulator, await stripe_harness.pm_for(CARD_OK))
    handle = await start(engine_worker.client, engine_worker, request)
    assert (await wait_terminal(handle)).status == BookingStatus.CONFIRMED
    await handle.terminate("test done")  # replay needs no running workflow

    status, answer = await _replay(engine_settings, "--booking", request.booking_id, "--json")
    assert status == 0, answer
    assert answer["replayed"] == 1 and answer["failed"] == 0

    monkeypatch.setattr(replay, "WORKFLOWS", (ReorderedBookingWorkflow,))
    status, answer = await _replay(engine_settings, "--booking", request.booking_id, "--json")
    assert status == 1
    [history] = answer["histories"]  # type: ignore[misc]
    assert history["workflow_id"] == f"booking-{request.booking_id}"
    assert "Nondeterminism" in history["failure"]


async def test_replay_selects_bookings_by_time_and_by_query(engine_settings: Settings) -> None:
    query = replay.booking_query(query='BookingStatus = "NEEDS_ATTENTION"')
    assert query == 'WorkflowType = "BookingWorkflow" AND (BookingStatus = "NEEDS_ATTENTION")'
    status, answer = await _replay(
        engine_settings, "--since", "2999-01-01T00:00:00+00:00", "--json"
    )
    assert status == 0 and answer["replayed"] == 0
