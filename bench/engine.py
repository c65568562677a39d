"""A throwaway engine for `make chaos` and `make bench`, and what their load generators share.

`Engine` runs the `make up` launcher (`python -m passage.dev.devstack`) on free ports with a
temporary state directory and `PASSAGE_ENV=development`, waits until it prints "ready" and the API
answers `/readyz`, and stops it (SIGTERM, then SIGKILL of every child it recorded in `pids`). It
also reads its children's CPU time and memory from `/proc`, which is how the benchmark charges each
process.

The rest builds what a checkout frontend and Stripe send: booking bodies, card payment methods at
the Stripe emulator, and signed webhook events (the development webhook secret).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from passage.dev import supervisor

Json = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[1]
STRIPE_KEY = "sk_test_passage"
#: The development webhook secret (passage.settings.DEV_SECRETS), which the launcher's children use.
WEBHOOK_SECRET = "whsec_passage_dev"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"
CARD_3DS = "4000002500003155"
CARD_NAMES = {CARD_OK: "ok", CARD_DECLINED: "declined", CARD_3DS: "3-D Secure"}
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 90.0
#: Clock ticks per second of /proc/<pid>/stat's utime and stime.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now (the launcher's own picking)."""
    return supervisor.free_ports("127.0.0.1", count)


class Engine:
    """The `make up` launcher on free ports and a temporary state directory.

    Args:
        root: A directory of its own: the state directory and the launcher's output go below it.
        env: Extra variables for the launcher and its children (e.g. a log level).
    """

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.output = root / "launcher.log"
        ports = free_ports(5)
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PASSAGE_") and name != "DATABASE_URL"
        }
        self.env.update(
            {
                "PASSAGE_ENV": "development",
                # One load generator on one address: the public rate limits would throttle it.
                "PASSAGE_RATE_LIMIT_CLIENT_PER_SECOND": "0",
                "PASSAGE_RATE_LIMIT_BOOKING_PER_SECOND": "0",
                "PASSAGE_STATE_DIR": str(self.state_dir),
                "PASSAGE_API_PORT": str(ports[0]),
                "PASSAGE_TEMPORAL_PORT": str(ports[1]),
                "PASSAGE_TEMPORAL_UI_PORT": str(ports[2]),
                "PASSAGE_SIMULATOR_PORT": str(ports[3]),
                "PASSAGE_STRIPE_PORT": str(ports[4]),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.env[variable]}"

    @property
    def api(self) -> str:
        return self.url("PASSAGE_API_PORT")

    @property
    def simulator(self) -> str:
        return self.url("PASSAGE_SIMULATOR_PORT")

    @property
    def stripe(self) -> str:
        return self.url("PASSAGE_STRIPE_PORT")

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.env['PASSAGE_TEMPORAL_PORT']}"

    def kept(self, name: str) -> str:
        """A key the launcher generated and kept in the state directory (`staff_key`, ...)."""
        return (self.state_dir / name).read_text().strip()

    def client_env(self) -> dict[str, str]:
        """The environment of a Passage process (the CLI, a client) talking to this engine."""
        return {
            **self.env,
            "DATABASE_URL": f"sqlite:///{self.state_dir / 'ledger.sqlite3'}",
            "PASSAGE_TEMPORAL_ADDRESS": self.temporal_address,
            "PASSAGE_SUPPLIER_URL": self.simulator,
            "PASSAGE_STRIPE_API_BASE": self.stripe,
            "PASSAGE_CODEC_KEY": self.kept("codec_key"),
            "PASSAGE_API_SECRET": self.kept("api_secret"),
        }

    def start(self) -> float:
        """Start the launcher and wait until it is ready; returns the seconds it took."""
        started = time.monotonic()
        offset = self.output.stat().st_size if self.output.exists() else 0
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "passage.dev.devstack"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the launcher exited with {self.process.returncode}:\n{self.tail()}"
                )
            if "\nready\n" in self.log()[offset:]:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200:
                        return time.monotonic() - started
            time.sleep(0.25)
        raise RuntimeError(f"the engine was not ready after {READY_TIMEOUT:.0f} s:\n{self.tail()}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill_everything()
            return None

    def children(self) -> dict[str, int]:
        """The launcher's children by name (temporal, simulator, stripe, worker, api) -> pid."""
        recorded = json.loads((self.state_dir / "pids").read_text())
        return {name: int(entry["pid"]) for name, entry in recorded["services"].items()}

    def kill_everything(self) -> None:
        """Clean-up after a failure: the launcher and the children it recorded."""
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids = list(self.children().values())
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# --- processes: CPU time and memory from /proc ----------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and ")": split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _family(pid: int) -> list[int]:
    """`pid` and the live processes it started, except those in sessions of their own.

    Every launcher child leads its own session (and so does the floor worker), so the benchmark
    process is charged for itself alone and each child for itself and its helpers.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(int(entry.name))
            if int(fields[3]) != int(entry.name):  # field 6, session: not a session leader
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by `pid` and its helpers (Linux)."""
    total = 0
    for each in _family(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(each)
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` now (VmRSS), 0 when it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class CpuMeter:
    """CPU seconds of named processes between two readings."""

    pids: Mapping[str, int]

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    @staticmethod
    def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


# --- what a checkout frontend and Stripe send -----------------------------------------------------


def card_form(card: str) -> dict[str, str]:
    """The form of `POST /v1/payment_methods` for a test card number."""
    return {
        "type": "card",
        "card[number]": card,
        "card[exp_month]": "12",
        "card[exp_year]": "2034",
        "card[cvc]": "123",
    }


async def payment_methods(stripe: httpx.AsyncClient, cards: Iterable[str]) -> dict[str, str]:
    """A payment method at the Stripe emulator for each card: card number -> `pm_...`."""
    methods = {}
    for card in cards:
        response = await stripe.post("/v1/payment_methods", data=card_form(card))
        response.raise_for_status()
        methods[card] = str(response.json()["id"])
    return methods


def booking_body(tag: str, items: Sequence[tuple[str, Json, bool]], payment_method: str) -> Json:
    """A `POST /bookings` body: one traveller named after `tag`, items (offer, price, optional)."""
    return {
        "customer": {"email": f"{tag}@example.com", "name": "Load Customer"},
        "travellers": [
            {
                "first_name": "Load",
                "last_name": f"Traveller {tag}",
                "birth_date": "1990-12-10",
                "document_number": "X" + hashlib.sha256(tag.encode()).hexdigest()[:7].upper(),
            }
        ],
        "items": [
            {"offer_id": offer_id, "quantity": 1, "expected_price": price, "optional": optional}
            for offer_id, price, optional in items
        ],
        "payment": {"payment_method": payment_method},
    }


def payment_intent_event(
    intent_id: str,
    booking_id: str,
    event_type: str,
    event_id: str | None = None,
    created: int | None = None,
) -> Json:
    """A Stripe event about a booking's PaymentIntent, as Stripe posts it to the webhook.

    `created` (Unix seconds, default now) dates it: an older event may be delivered after a newer.
    """
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "api_version": "2017-08-15",
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "metadata": {"booking_id": booking_id},
            }
        },
    }


def signed(event: Json, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The event's body and the headers of a delivery signed as Stripe signs it."""
    body = json.dumps(event, sort_keys=True).encode()
    stamp = int(time.time())
    signature = hmac.new(secret.encode(), b"%d.%s" % (stamp, body), hashlib.sha256).hexdigest()
    return body, {
        "Stripe-Signature": f"t={stamp},v1={signature}",
        "Content-Type": "application/json",
    }
