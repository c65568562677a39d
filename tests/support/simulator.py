"""Pytest plugin: the supplier simulator as a real subprocess, reset before each test that uses it.

Fixtures:
    simulator_url: (session) base URL of one `python -m simulator` process on a free local port.
    simulator: (function) a `SimulatorControl` on that process, after reset and clearing faults.

The process is real (HTTP over a socket, its own event loop) so tests see what the worker sees:
timeouts, lost answers and concurrent callers behave as they would in `make up`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from passage.dev.supervisor import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 20.0

#: Drop an idle connection before the server (uvicorn: 5 s) closes it, or a reused one can
#: meet "Server disconnected" when a test pauses between waves of requests.
KEEP_ALIVE = httpx.Limits(keepalive_expiry=2.0)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"simulator exited with {process.returncode} before it was healthy:\n"
                f"{log.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"simulator at {url} not healthy after {STARTUP_TIMEOUT_SECONDS} s")


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `python -m simulator` on 127.0.0.1 and a free port; stop it after the session.

    Its output goes to `simulator.log` in the session's temporary directory (shown if it fails to
    start), so answers held back by timeout faults and cut at shutdown do not litter the run.
    """
    port = free_ports("127.0.0.1", 1)[0]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("simulator") / "simulator.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True)
class SimulatorControl:
    """The simulator's control API (`/_sim/*`) plus its catalogue, for test setup and assertions."""

    url: str
    http: httpx.AsyncClient

    async def reset(self) -> None:
        """Initial stock, prices, TTLs and capacities back; holds, bookings and faults gone."""
        (await self.http.post("/_sim/reset")).raise_for_status()
        (await self.http.delete("/_sim/faults")).raise_for_status()

    async def add_fault(
        self,
        mode: str,
        *,
        supplier: str = "*",
        operation: str = "*",
        times: int | None = None,
        rate: float | None = None,
        latency_ms: int | None = None,
        code: str | None = None,
        phase: str | None = None,
    ) -> str:
        """Register a fault (see `simulator.faults`); returns its id."""
        body: dict[str, Any] = {"supplier": supplier, "operation": operation, "mode": mode}
        optional = {
            "times": times,
            "rate": rate,
            "latency_ms": latency_ms,
            "code": code,
            "phase": phase,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        response = await self.http.post("/_sim/faults", json=body)
        response.raise_for_status()
        fault_id: str = response.json()["fault_id"]
        return fault_id

    async def clear_faults(self) -> None:
        (await self.http.delete("/_sim/faults")).raise_for_status()

    async def ledger(self) -> dict[str, Any]:
        response = await self.http.get("/_sim/ledger")
        response.raise_for_status()
        ledger: dict[str, Any] = response.json()
        return ledger

    async def stock(self, offer_id: str) -> dict[str, Any]:
        """The ledger's inventory row of one offer: capacity, free, held, booked."""
        ledger = await self.ledger()
        return next(row for row in ledger["inventory"] if row["offer_id"] == offer_id)

    async def holds_for(self, client_ref: str) -> list[dict[str, Any]]:
        ledger = await self.ledger()
        return [row for row in ledger["holds"] if row["client_ref"] == client_ref]

    async def offers(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {} if kind is None else {"kind": kind}
        response = await self.http.get("/offers", params=params)
        response.raise_for_status()
        offers: list[dict[str, Any]] = response.json()
        return offers

    async def set_price(self, offer_id: str, amount_minor: int) -> None:
        response = await self.http.post(
            f"/_sim/offers/{offer_id}/price", json={"amount": amount_minor}
        )
        response.raise_for_status()

    async def set_hold_ttl(self, seconds: int | None) -> None:
        """Override every hold TTL (None restores the per-kind defaults)."""
        response = await self.http.post("/_sim/config", json={"hold_ttl_seconds": seconds})
        response.raise_for_status()

    async def set_capacity_scale(self, scale: int) -> dict[str, Any]:
        """Load mode: every capacity times `scale`, on a fresh inventory; answers the config."""
        response = await self.http.post("/_sim/config", json={"capacity_scale": scale})
        response.raise_for_status()
        config: dict[str, Any] = response.json()
        return config

    async def assert_inventory_adds_up(self) -> None:
        """Contract invariant 5: `free + held + booked == capacity` for every offer."""
        for row in (await self.ledger())["inventory"]:
            assert row["free"] + row["held"] + row["booked"] == row["capacity"], row
            assert min(row["free"], row["held"], row["booked"]) >= 0, row


@pytest.fixture
async def simulator(simulator_url: str) -> AsyncIterator[SimulatorControl]:
    """The shared simulator process, reset for this test."""
    async with httpx.AsyncClient(base_url=simulator_url, timeout=10, limits=KEEP_ALIVE) as http:
        control = SimulatorControl(url=simulator_url, http=http)
        await control.reset()
        yield control
