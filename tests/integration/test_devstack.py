"""`make up` end to end: `python -m passage.dev.devstack` as a user runs it, on free ports.

Every port is moved by its variable and the state goes to a temporary `PASSAGE_STATE_DIR`, so the
tests run next to a developer's own `make up`. They check what the README promises: the engine
becomes ready, books over HTTP, keeps its bookings (at Passage, the simulator and the Stripe
emulator) across a restart, even one in the middle of a booking, restarts a worker or API that
dies (and the Temporal dev server, on its database file) and gives up on one that keeps
crashing, and a stop leaves no process behind, not even when one of the children dies on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.engine import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 60.0
STRIPE_TEST_API_KEY = "sk_test_passage"


@dataclass
class Stack:
    """One launcher process and where its services listen."""

    env: dict[str, str]
    state_dir: Path
    output: Path
    process: subprocess.Popen[bytes] | None = None

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    @property
    def api(self) -> str:
        return self.url("PASSAGE_API_PORT")

    def start(self) -> None:
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "passage.dev.devstack"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Not in pytest's process group: a Ctrl-C of the test run is not a test of ours.
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Until `GET /readyz` is 200 and the launcher has said "ready"."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make up exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200
                if ready and "\nready\n" in self.log():
                    return
            time.sleep(0.25)
        pytest.fail(f"make up not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a process manager would; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make up still running {STOP_TIMEOUT_SECONDS:.0f} s after SIGTERM")

    def children(self) -> dict[str, int]:
        """The pids the launcher recorded for its children (`pids` in the state directory)."""
        recorded = json.loads((self.state_dir / "pids").read_text())
        return {name: entry["pid"] for name, entry in recorded["services"].items()}

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def kill_everything(self) -> None:
        """Test clean-up only: whatever is still running after a failed test goes."""
        pids = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids = list(self.children().values())
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its parent counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_nothing_left(pids: dict[str, int]) -> None:
    deadline = time.monotonic() + 5  # the kernel reaps what init inherited a moment later
    while time.monotonic() < deadline:
        left = {n: p for n, p in pids.items() if _alive(p) or _group_alive(p)}
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"processes left running after make up stopped: {left}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A launcher configured like a developer's, on free ports, not started yet."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PASSAGE_") and name != "DATABASE_URL"
    }
    ports = free_ports(5)
    env.update(
        {
            "PASSAGE_ENV": "development",  # as `make up` sets it
            "PASSAGE_STATE_DIR": str(tmp_path / "state"),
            "PASSAGE_API_PORT": str(ports[0]),
            "PASSAGE_TEMPORAL_PORT": str(ports[1]),
            "PASSAGE_TEMPORAL_UI_PORT": str(ports[2]),
            "PASSAGE_SIMULATOR_PORT": str(ports[3]),
            "PASSAGE_STRIPE_PORT": str(ports[4]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    launched = Stack(env, tmp_path / "state", tmp_path / "make-up.log")
    try:
        yield launched
    finally:
        launched.kill_everything()


def book_a_flight(stack: Stack, price_moves_by: int = 0) -> tuple[str, str]:
    """A one-flight booking over HTTP, as the checkout frontend makes it; (booking_id, token).

    With `price_moves_by`, the supplier's price moves after the customer saw it, so the booking
    waits in AWAITING_PRICE_ACCEPTANCE for the customer's decision.
    """
    card = httpx.post(
        f"{stack.url('PASSAGE_STRIPE_PORT')}/v1/payment_methods",
        headers={"Authorization": f"Bearer {STRIPE_TEST_API_KEY}"},
        data={
            "type": "card",
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
        timeout=10,
    )
    card.raise_for_status()
    offers = httpx.get(
        f"{stack.url('PASSAGE_SIMULATOR_PORT')}/offers", params={"kind": "flight"}, timeout=10
    )
    offers.raise_for_status()
    flight = max(offers.json(), key=lambda offer: offer["capacity_left"])
    if price_moves_by:
        moved = httpx.post(
            f"{stack.url('PASSAGE_SIMULATOR_PORT')}/_sim/offers/{flight['offer_id']}/price",
            json={"amount": flight["price"]["amount"] + price_moves_by},
            timeout=10,
        )
        moved.raise_for_status()
    body = {
        "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "travellers": [
            {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "birth_date": "1990-12-10",
                "document_number": "X1234567",
            }
        ],
        "items": [
            {
                "offer_id": flight["offer_id"],
                "quantity": 1,
                "expected_price": flight["price"],
                "optional": False,
            }
        ],
        "payment": {"payment_method": card.json()["id"]},
    }
    created = httpx.post(
        f"{stack.api}/bookings",
        json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=15,
    )
    assert created.status_code == 202, created.text
    return created.json()["booking_id"], created.json()["access_token"]


def booking_view(stack: Stack, booking_id: str, token: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api}/bookings/{booking_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def wait_settled(stack: Stack, booking_id: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    view = booking_view(stack, booking_id, token)
    while view["status"] not in ("CONFIRMED", "FAILED", "CANCELLED", "NEEDS_ATTENTION"):
        assert time.monotonic() < deadline, f"booking stuck: {view}"
        time.sleep(0.25)
        view = booking_view(stack, booking_id, token)
    return view


def supplier_bookings(stack: Stack, booking_id: str) -> list[dict[str, Any]]:
    """The simulator's live bookings made for `booking_id` (client references start with it)."""
    ledger = httpx.get(f"{stack.url('PASSAGE_SIMULATOR_PORT')}/_sim/ledger", timeout=10)
    ledger.raise_for_status()
    return [
        row
        for row in ledger.json()["bookings"]
        if row["hold_client_ref"].startswith(f"{booking_id}:") and row["status"] == "confirmed"
    ]


def payment_intents(stack: Stack, booking_id: str) -> list[dict[str, Any]]:
    """The Stripe emulator's PaymentIntents for `booking_id` (by metadata)."""
    response = httpx.get(
        f"{stack.url('PASSAGE_STRIPE_PORT')}/v1/payment_intents",
        params={"limit": "100"},
        headers={"Authorization": f"Bearer {STRIPE_TEST_API_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    return [pi for pi in response.json()["data"] if pi["metadata"].get("booking_id") == booking_id]


def slow_down_the_next_capture(stack: Stack, latency_ms: int) -> None:
    response = httpx.post(
        f"{stack.url('PASSAGE_STRIPE_PORT')}/_harness/latency",
        json={
            "method": "POST",
            "path": "/v1/payment_intents/{id}/capture",
            "latency_ms": latency_ms,
            "times": 1,
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text


def wait_until_a_capture_is_delayed(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rules = httpx.get(f"{stack.url('PASSAGE_STRIPE_PORT')}/_harness/latency", timeout=10)
        if any(rule["delayed"] for rule in rules.json()["rules"]):
            return
        time.sleep(0.1)
    pytest.fail(f"no capture reached the emulator:\n{stack.log()}")


def book_a_flight_awaiting_a_price_decision(stack: Stack) -> tuple[str, str]:
    """A one-flight booking whose price moved, waiting for the customer's answer."""
    booking_id, token = book_a_flight(stack, price_moves_by=1_000)
    deadline = time.monotonic() + 30
    while booking_view(stack, booking_id, token)["status"] != "AWAITING_PRICE_ACCEPTANCE":
        assert time.monotonic() < deadline, booking_view(stack, booking_id, token)
        time.sleep(0.1)
    return booking_id, token


def confirm_after_the_restart(
    stack: Stack, booking_id: str, token: str, within: float
) -> dict[str, Any]:
    """Accept the changed price once the restarted engine answers; the booking then confirms."""
    accept_the_new_price(stack, booking_id, token, within=within)
    view = wait_settled(stack, booking_id, token)
    assert view["status"] == "CONFIRMED", view
    return view


def accept_the_new_price(stack: Stack, booking_id: str, token: str, within: float) -> None:
    """Send the customer's "accept", again while the API answers 503 or cannot be reached.

    A 503 is what the checkout page retries; a decision sent then may still land, and the retry is
    then told the booking went on (CONFIRMING, CAPTURING or CONFIRMED).
    """
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.HTTPError):
            accepted = httpx.post(
                f"{stack.api}/bookings/{booking_id}/price-decision",
                json={"accept": True},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            if accepted.status_code != 503:
                break
        assert time.monotonic() < deadline, stack.log()
        time.sleep(0.5)
    went_on = accepted.status_code == 409 and "not awaiting a price decision" in accepted.text
    assert accepted.status_code == 200 or went_on, accepted.text


def wait_until_the_launcher_says(stack: Stack, text: str, within: float) -> None:
    deadline = time.monotonic() + within
    while text not in stack.log():
        assert stack.process is not None and stack.process.poll() is None, stack.log()
        assert time.monotonic() < deadline, stack.log()
        time.sleep(0.1)


def wait_for_a_new_pid(stack: Stack, name: str, old: int) -> int:
    """The pid of `name` once the launcher has started it again after `old` died."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = stack.children()[name]
            if pid != old:
                return pid
        time.sleep(0.05)
    pytest.fail(f"{name} was not restarted:\n{stack.log()}")


def assert_live_everywhere(stack: Stack, booking_id: str, view: dict[str, Any]) -> None:
    """Confirmed at the simulator with the codes Passage shows; one PaymentIntent, captured."""
    codes = {row["confirmation_code"] for row in supplier_bookings(stack, booking_id)}
    assert codes == {item["confirmation_code"] for item in view["items"]}, view
    intents = payment_intents(stack, booking_id)
    assert [pi["status"] for pi in intents] == ["succeeded"], intents


def test_make_up_books_keeps_bookings_across_a_restart_and_stops_cleanly(stack: Stack) -> None:
    stack.start()
    stack.wait_ready()
    log = stack.log()
    for url in (stack.api, stack.url("PASSAGE_TEMPORAL_UI_PORT")):
        assert url in log
    assert (stack.state_dir / "staff_key").read_text().strip() in log

    booking_id, token = book_a_flight(stack)
    view = wait_settled(stack, booking_id, token)
    assert view["status"] == "CONFIRMED", view
    assert view["payment"]["status"] == "CAPTURED", view
    # `make up` serves the reference checkout page, on the Stripe emulator's fake Stripe.js.
    assert f"{stack.api}/checkout" in log
    page = httpx.get(f"{stack.api}/checkout", timeout=5)
    assert page.status_code == 200, page.text
    assert f'src="{stack.url("PASSAGE_STRIPE_PORT")}/js.stripe.com/v3/"' in page.text

    children = stack.children()
    assert set(children) == {"temporal", "simulator", "stripe", "worker", "api"}
    assert stack.stop() == 0, stack.log()
    assert_nothing_left(children)
    assert not (stack.state_dir / "pids").exists()

    # The same state directory again: the booking, its token and its status are all still there,
    # and so are its booking at the supplier and its PaymentIntent.
    stack.start()
    stack.wait_ready()
    again = booking_view(stack, booking_id, token)
    assert again["status"] == "CONFIRMED", again
    assert again["items"] == view["items"]
    assert_live_everywhere(stack, booking_id, view)

    # Stopped in the middle of a booking (its capture held up at "Stripe"): after the next start
    # it finishes, on the holds and the authorization made before the stop.
    slow_down_the_next_capture(stack, latency_ms=2000)
    second_id, second_token = book_a_flight(stack)
    wait_until_a_capture_is_delayed(stack)
    assert stack.stop() == 0, stack.log()
    stack.start()
    stack.wait_ready()
    second = wait_settled(stack, second_id, second_token)
    assert second["status"] == "CONFIRMED", second
    assert_live_everywhere(stack, second_id, second)
    assert_live_everywhere(stack, booking_id, view)
    children = stack.children()
    assert stack.stop() == 0, stack.log()
    assert_nothing_left(children)


def test_a_killed_worker_is_restarted_and_a_crash_looping_api_stops_everything(
    stack: Stack,
) -> None:
    stack.start()
    stack.wait_ready()
    worker = stack.children()["worker"]

    # A booking in flight, waiting for the customer's answer to a price change, when the worker
    # is killed: the restarted worker carries it through to CONFIRMED.
    booking_id, token = book_a_flight_awaiting_a_price_decision(stack)
    os.kill(worker, signal.SIGKILL)
    wait_until_the_launcher_says(stack, "worker     ready again", within=30)
    assert "worker (pid" in stack.log() and "restarting it" in stack.log()
    # Until Temporal gives up on the dead worker's sticky queue (seconds) the answer may be a 503.
    confirm_after_the_restart(stack, booking_id, token, within=30)
    assert stack.children()["worker"] != worker
    assert stack.process is not None and stack.process.poll() is None

    # The API dying over and over is not something a restart fixes: everything stops, exit 1.
    api = stack.children()["api"]
    for crash in range(1, 4):
        children = stack.children()
        os.kill(api, signal.SIGKILL)
        if crash < 3:
            api = wait_for_a_new_pid(stack, "api", old=api)
    assert stack.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 1
    assert "crashed 3 times within 30 s; stopping everything" in stack.log()
    assert_nothing_left(children)


def test_a_killed_temporal_server_is_restarted_on_its_database_file(stack: Stack) -> None:
    stack.start()
    stack.wait_ready()
    temporal = stack.children()["temporal"]

    # A booking waiting for the customer's answer to a price change when the Temporal dev server
    # dies: restarted on its kept database file, it still has the booking, which goes on.
    booking_id, token = book_a_flight_awaiting_a_price_decision(stack)
    os.killpg(temporal, signal.SIGKILL)
    wait_until_the_launcher_says(stack, "temporal   ready again", within=60)
    assert f"restarting it on its kept database file {stack.state_dir / 'temporal.db'}" in (
        stack.log()
    )
    assert stack.children()["temporal"] != temporal
    # The API and the worker reconnect by themselves; until they have, the answer may be a 503.
    view = confirm_after_the_restart(stack, booking_id, token, within=60)
    assert_live_everywhere(stack, booking_id, view)
    children = stack.children()
    assert stack.stop() == 0, stack.log()
    assert_nothing_left(children)


def test_a_child_that_dies_stops_everything_with_an_error(stack: Stack) -> None:
    stack.start()
    stack.wait_ready()
    children = stack.children()

    os.kill(children["simulator"], signal.SIGKILL)

    assert stack.process is not None
    assert stack.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 1
    assert "simulator" in stack.log() and "exited unexpectedly" in stack.log()
    assert_nothing_left(children)


def test_a_port_held_by_another_program_is_named_with_its_variable(stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(stack.env["PASSAGE_SIMULATOR_PORT"])))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "passage.dev.devstack"],
            cwd=REPO_ROOT,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "PASSAGE_SIMULATOR_PORT" in result.stderr, result.stderr
    assert "starting" not in result.stdout  # nothing was started
