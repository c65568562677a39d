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

import httpx
import pytest_asyncio
from fastapi import FastAPI
from typer.testing import CliRunner

from passage.cli import build_app
from tests.integration.test_api import HOTEL, STAFF_KEY, book, checkout, eventually, wait_for
from tests.support.api import served_over_tcp
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_OK, StripeHarness

PASSAGE = str(Path(sys.executable).with_name("passage"))


@pytest_asyncio.fixture
async def api_url(api_app: FastAPI) -> AsyncIterator[str]:
    async with served_over_tcp(api_app) as base_url:
        yield base_url


def passage(*argv: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(argv), env=env)
    return result.exit_code, result.stdout, result.stderr


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
    # The staff API has no reset endpoint yet: the command says so rather than fail obscurely.
    status, _, err = await run(api_url, tmp_path, "bookings", "reset", booking_id, "--json")
    assert status == 1 and json.loads(err)["error"]["code"] == "RESET_UNSUPPORTED"
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
