"""`passage` as staff use it, on the session's real engine: the API served over TCP, the worker,
Temporal, the simulator and the Stripe emulator. Most commands through typer's CliRunner (the
same command tree as the console script), one through the installed `passage` executable."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from typer.testing import CliRunner

from passage.cli import build_app
from passage.settings import Settings
from tests.integration.test_api import (
    FLIGHT,
    HOTEL,
    STAFF_KEY,
    book,
    checkout,
    eventually,
    wait_for,
)
from tests.support.api import served_over_tcp
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_OK, StripeHarness

PASSAGE = str(Path(sys.executable).with_name("passage"))
Json = dict[str, Any]


@pytest_asyncio.fixture
async def api_url(api_app: FastAPI) -> AsyncIterator[str]:
    async with served_over_tcp(api_app) as base_url:
        yield base_url


def passage(*argv: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(argv), env=env)
    return result.exit_code, result.stdout, result.stderr


def json_document(text: str) -> Json:
    """The one JSON document a command printed; the worker shares this process in these tests,
    and CliRunner captures its log lines too, so the document is found at the start of a line."""
    start = 0 if text.startswith("{") else text.index("\n{") + 1
    document, _ = json.JSONDecoder().raw_decode(text, start)
    assert isinstance(document, dict), text
    return document


async def run(api_url: str, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    env = {
        "PASSAGE_STAFF_KEY": STAFF_KEY,
        "PASSAGE_API_URL": api_url,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    return await asyncio.to_thread(passage, *argv, **env)


async def test_list_show_cancel_with_json_and_exit_codes(
    api_url: str,
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    tmp_path: Path,
) -> None:
    email = f"cli-{os.urandom(4).hex()}@example.com"
    card = await stripe_harness.pm_for(CARD_OK)
    booking = await book(api_client, await checkout(simulator, card, HOTEL, email=email))
    await wait_for(api_client, booking, "CONFIRMED")
    booking_id = booking["booking_id"]

    async def listed() -> str | None:
        status, out, _ = await run(api_url, tmp_path, "bookings", "list", "--email", email)
        return out if status == 0 and booking_id in out else None

    listing = await eventually(listed)
    assert "CONFIRMED" in listing and email in listing
    status, out, _ = await run(api_url, tmp_path, "bookings", "list", "--email", email, "--json")
    assert status == 0
    assert [b["booking_id"] for b in json.loads(out)["bookings"]] == [booking_id]

    status, shown, _ = await run(api_url, tmp_path, "bookings", "show", booking_id)
    assert status == 0 and f"booking-{booking_id}" in shown and "Audit trail" in shown
    assert f"Ada Lovelace <{email}>" in shown
    assert "Ada Lovelace, born 1990-12-10, document ending 4567" in shown
    status, raw, _ = await run(api_url, tmp_path, "bookings", "show", booking_id, "--json")
    assert status == 0 and json.loads(raw)["booking_id"] == booking_id

    status, out, err = await run(api_url, tmp_path, "bookings", "retry", booking_id, "--json")
    assert status == 1 and out == ""  # nothing is stuck: the API's 409
    assert json.loads(err)["error"]["status"] == 409

    status, cancelled, _ = await run(
        api_url, tmp_path, "bookings", "cancel", booking_id, "--note", "from the CLI"
    )
    assert status == 0 and "CANCELLED" in cancelled
    assert "from the CLI" in cancelled and "staff:" in cancelled
    status, _, err = await run(
        api_url, tmp_path, "bookings", "resolve", booking_id, "--note", "x", "--json"
    )
    assert status == 1 and json.loads(err)["error"]["status"] == 409  # nothing to resolve
    status, _, err = await run(api_url, tmp_path, "bookings", "reset", booking_id, "--json")
    assert status == 1 and json.loads(err)["error"]["status"] == 409  # cancelled: not worth it
    status, _, err = await run(api_url, tmp_path, "bookings", "show", "bk_nothing00000")
    assert status == 1 and "no such booking" in err

    # The installed executable, as a user runs it.
    env = {**os.environ, "PASSAGE_STAFF_KEY": STAFF_KEY, "PASSAGE_API_URL": api_url}
    real = await asyncio.to_thread(
        subprocess.run,
        [PASSAGE, "bookings", "show", booking_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["status"] == "CANCELLED"


async def test_a_stuck_booking_through_every_support_command(
    api_url: str,
    api_client: httpx.AsyncClient,
    engine_settings: Settings,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    tmp_path: Path,
) -> None:
    """list, show, cancel (refused without --force), retry, reset, cancel --force, resolve,
    replay: one booking stuck in NEEDS_ATTENTION (the flight's confirmation and then the hotel's
    cancellation refused), each command's --json parsed and its exit status checked."""

    async def cli(*argv: str, expect: int = 0) -> Json:
        status, out, err = await run(api_url, tmp_path, *argv, "--json")
        assert status == expect, (argv, status, out, err)
        parsed = json_document(out if status == 0 else err)
        return parsed

    await simulator.add_fault("refuse", supplier="aurora-air", operation="confirm", code="SOLD_OUT")
    await simulator.add_fault(
        "refuse", supplier="meridian-stays", operation="cancel", code="NOT_CANCELLABLE"
    )
    card = await stripe_harness.pm_for(CARD_OK)
    booking = await book(api_client, await checkout(simulator, card, FLIGHT, HOTEL))
    booking_id = booking["booking_id"]
    await wait_for(api_client, booking, "NEEDS_ATTENTION", within=60)

    listed = await cli("bookings", "list", "--status", "NEEDS_ATTENTION", "--all")
    [summary] = [b for b in listed["bookings"] if b["booking_id"] == booking_id]
    assert summary["status"] == "NEEDS_ATTENTION"
    shown = await cli("bookings", "show", booking_id)
    assert shown["status"] == "NEEDS_ATTENTION"
    assert shown["attention"]["step"] == "CANCEL it_2"
    assert shown["workflow_id"] == f"booking-{booking_id}"

    refused = await cli("bookings", "cancel", booking_id, expect=1)
    assert refused["error"]["code"] == "FORCE_REQUIRED" and refused["exit_code"] == 1

    retried = await cli("bookings", "retry", booking_id, "--note", "hotel back?")
    assert retried["booking_id"] == booking_id
    await wait_for(api_client, booking, "NEEDS_ATTENTION")  # refused again

    # Reset with the bug still there: the new run confirms the flight again, is refused again
    # and waits for an operator again, on the same step; the trail says so after a RESET entry.
    reset = await cli("bookings", "reset", booking_id, "--note", "try the new release")
    [entry] = [e for e in reset["audit"] if e["outcome"] == "staff reset"]
    assert entry["step"] == "RESET to CONFIRM it_1" and entry["detail"] == "try the new release"

    async def stuck_again() -> Json | None:
        view = await cli("bookings", "show", booking_id)
        after = view["audit"][[e["outcome"] for e in view["audit"]].index("staff reset") + 1 :]
        stuck = view["status"] == "NEEDS_ATTENTION" and any(
            e["detail"] == "NEEDS_ATTENTION" for e in after
        )
        return view if stuck else None

    await eventually(stuck_again, within=60)

    forced = await cli("bookings", "cancel", booking_id, "--force", "--note", "customer called")
    assert forced["booking_id"] == booking_id
    resolved = await cli("bookings", "resolve", booking_id, "--note", "cancelled by phone, ref 42")
    assert resolved["booking_id"] == booking_id
    await wait_for(api_client, booking, "CANCELLED", within=60)
    notes = [e["detail"] for e in (await cli("bookings", "show", booking_id))["audit"]]
    for note in ("hotel back?", "try the new release", "customer called", "cancelled by phone"):
        assert any(note in detail for detail in notes), (note, notes)

    not_again = await cli("bookings", "reset", booking_id, expect=1)
    assert not_again["error"]["status"] == 409 and "CANCELLED" in not_again["error"]["message"]
    nothing_stuck = await cli("bookings", "retry", booking_id, expect=1)
    assert nothing_stuck["error"]["status"] == 409

    # Both runs (the one the reset terminated and the new one) replay with today's code.
    replay_env = {
        "PASSAGE_ENV": "development",
        "PASSAGE_TEMPORAL_ADDRESS": engine_settings.temporal_address,
        "PASSAGE_TEMPORAL_NAMESPACE": engine_settings.temporal_namespace,
        "PASSAGE_CODEC_KEY": engine_settings.codec_key,
    }
    status, out, err = await asyncio.to_thread(
        passage, "replay", "--booking", booking_id, "--json", **replay_env
    )
    assert status == 0, (out, err)
    replayed = json.loads(out)
    assert replayed["failed"] == 0 and replayed["replayed"] >= 2
    assert {h["workflow_id"] for h in replayed["histories"]} == {f"booking-{booking_id}"}


def test_usage_errors_exit_2() -> None:
    status, _, _ = passage("bookings", "list", "--status", "NOT_A_STATUS")
    assert status == 2
    status, _, _ = passage("bookings", "frobnicate")
    assert status == 2


def test_the_config_file_gives_the_key_and_must_be_private(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('api_url = "http://127.0.0.1:9"\nstaff_key = "from-the-file"\n')
    config.chmod(0o644)
    env = {"PASSAGE_CONFIG": str(config), "PASSAGE_STAFF_KEY": "", "PASSAGE_STAFF_KEYS": ""}
    status, _, err = passage("bookings", "list", **env)
    assert status == 2 and "chmod 600" in err
    config.chmod(0o600)
    status, _, err = passage("bookings", "list", "--json", **env)
    assert status == 3  # the file's key and URL are used: nobody listens there
    assert json.loads(err)["error"]["code"] == "UNREACHABLE" and "127.0.0.1:9" in err
    config.write_text('staf_key = "typo"\n')
    status, _, err = passage("bookings", "list", **env)
    assert status == 2 and "staf_key" in err
