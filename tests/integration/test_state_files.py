"""The simulator and the Stripe emulator with `--state-file` (as `make up` runs them) keep their
state across a restart of their process, even one by SIGKILL; without it they start empty.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from passage.dev.supervisor import free_ports
from passage.statefile import StateFile

REPO_ROOT = Path(__file__).resolve().parents[2]
STRIPE_AUTH = {"Authorization": "Bearer sk_test_passage"}


class Service:
    """`python -m <module>` on a free port, started and SIGKILLed at will."""

    def __init__(self, module: str, ready_path: str, log: Path, *extra: str) -> None:
        self.module, self.ready_path, self.log, self.extra = module, ready_path, log, extra
        self.port = free_ports("127.0.0.1", 1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", self.module, "--host", "127.0.0.1"]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [*argv, "--port", str(self.port), *self.extra],
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        pytest.fail(f"{self.module} not answering:\n{self.log.read_text(errors='replace')}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


def test_the_simulator_keeps_holds_bookings_and_faults_across_a_kill(
    tmp_path: Path, services: list[Service]
) -> None:
    state = tmp_path / "simulator.state"
    sim = Service("simulator", "/healthz", tmp_path / "sim.log", "--state-file", str(state))
    services.append(sim)
    sim.start()
    offer = httpx.get(f"{sim.url}/offers", params={"kind": "hotel"}).json()[0]["offer_id"]
    held = httpx.post(
        f"{sim.url}/holds", json={"offer_id": offer, "quantity": 1, "client_ref": "bk_1:it_1:hold"}
    ).json()
    kept = httpx.post(
        f"{sim.url}/holds", json={"offer_id": offer, "quantity": 1, "client_ref": "bk_2:it_1:hold"}
    ).json()
    booked = httpx.post(f"{sim.url}/holds/{held['hold_ref']}/confirm").json()
    httpx.post(
        f"{sim.url}/_sim/faults", json={"supplier": "*", "operation": "quote", "mode": "error"}
    )
    before = httpx.get(f"{sim.url}/_sim/ledger").json()

    sim.kill()
    sim.start()

    after = httpx.get(f"{sim.url}/_sim/ledger").json()
    assert after == before
    hold = next(h for h in after["holds"] if h["ref"] == kept["hold_ref"])
    assert hold["status"] == "active" and hold["expires_at"] == kept["expires_at"]
    assert any(b["ref"] == booked["booking_ref"] for b in after["bookings"])
    # Replays still find what was done before the restart; new references stay unique.
    replay = httpx.post(
        f"{sim.url}/holds", json={"offer_id": offer, "quantity": 1, "client_ref": "bk_2:it_1:hold"}
    )
    assert replay.status_code == 200 and replay.json()["hold_ref"] == kept["hold_ref"]
    fresh = httpx.post(
        f"{sim.url}/holds", json={"offer_id": offer, "quantity": 1, "client_ref": "bk_3:it_1:hold"}
    ).json()
    assert fresh["hold_ref"] not in {h["ref"] for h in before["holds"]}
    assert len(httpx.get(f"{sim.url}/_sim/faults").json()) == 1
    assert not list(tmp_path.glob(".*.tmp"))  # every save was renamed into place


def test_the_stripe_emulator_keeps_payment_intents_and_replays_across_a_kill(
    tmp_path: Path, services: list[Service]
) -> None:
    state = tmp_path / "stripe.state"
    stripe = Service(
        "passage.dev.stripe_emulator",
        "/_harness/idempotency",
        tmp_path / "stripe.log",
        "--state-file",
        str(state),
    )
    services.append(stripe)
    stripe.start()
    card = httpx.post(
        f"{stripe.url}/v1/payment_methods",
        headers=STRIPE_AUTH,
        data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12"}
        | {"card[exp_year]": "2034", "card[cvc]": "123"},
    ).json()
    key = uuid.uuid4().hex
    params = {
        "amount": "60000",
        "currency": "eur",
        "payment_method": card["id"],
        "capture_method": "manual",
        "confirm": "true",
        "metadata[booking_id]": "bk_kept",
    }
    created = httpx.post(
        f"{stripe.url}/v1/payment_intents",
        headers={**STRIPE_AUTH, "Idempotency-Key": key},
        data=params,
    )
    assert created.status_code == 200, created.text
    intent = created.json()

    stripe.kill()
    stripe.start()

    found = httpx.get(f"{stripe.url}/v1/payment_intents/{intent['id']}", headers=STRIPE_AUTH)
    assert found.status_code == 200, found.text
    assert found.json()["status"] == "requires_capture"
    assert found.json()["amount_capturable"] == 60000
    replay = httpx.post(
        f"{stripe.url}/v1/payment_intents",
        headers={**STRIPE_AUTH, "Idempotency-Key": key},
        data=params,
    )
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == intent["id"]
    captured = httpx.post(
        f"{stripe.url}/v1/payment_intents/{intent['id']}/capture", headers=STRIPE_AUTH
    )
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded"


def test_without_a_state_file_the_simulator_starts_empty(
    tmp_path: Path, services: list[Service]
) -> None:
    sim = Service("simulator", "/healthz", tmp_path / "sim.log")
    services.append(sim)
    sim.start()
    offer = httpx.get(f"{sim.url}/offers").json()[0]["offer_id"]
    httpx.post(f"{sim.url}/holds", json={"offer_id": offer, "quantity": 1, "client_ref": "x"})
    sim.kill()
    sim.start()
    assert httpx.get(f"{sim.url}/_sim/ledger").json()["holds"] == []
    assert not list(tmp_path.glob("*.state"))


def test_a_state_file_is_replaced_whole(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "nested" / "service.state")
    assert state.load() is None
    state.save({"n": 1})
    state.save({"n": 2})
    assert state.load() == {"n": 2}
    assert [p.name for p in state.path.parent.iterdir()] == ["service.state"]
