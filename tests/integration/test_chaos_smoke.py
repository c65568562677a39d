"""A small `make chaos` run: 35 bookings, 2 worker kills, a SIGKILL of the Temporal dev server
(restarted on its kept database file) and one of the API, simulator faults on every operation,
random customer cancels, declined and 3-D Secure cards, duplicate, out-of-order and stale signed
webhooks; the invariant checker must find nothing, and the scan of every log line of every process
of the run no personal data, token, card number or secret.

The whole-engine restart (a new launcher on the state directory) is left to `make chaos`: it adds
30 s or more here, and the state files it relies on have tests of their own (test_state_files.py,
test_devstack.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import chaos
from bench.engine import Engine

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_a_small_chaos_run_breaks_no_invariant(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for variable in [name for name in env if name.startswith("CHAOS_") and name != "CHAOS_SEED"]:
        env.pop(variable)
    summary_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--bookings", "35", "--concurrency", "10"]
        + ["--kills", "2", "--seed", os.environ.get("CHAOS_SEED", "20261201")]
        + ["--no-engine-restart"]
        + ["--summary", str(summary_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = json.loads(summary_path.read_text())
    assert summary["violations"] == [], output
    assert summary["table"]["checked by passage check"] == "35", output
    assert summary["kills"] == 2, output
    assert summary["temporal_restarts"] == 1, output
    assert summary["api_restarts"] == 1, output
    assert summary["engine_restarts"] == 0, output
    assert summary["webhooks"].get("stale, after settling", 0) > 0, output
    assert summary["misled"] == [], output
    assert summary["log_scan"] == [], output
    assert summary["cancels_sent"] > 0 and summary["cancels_accepted"] > 0, output
    assert summary["not_driven"] == [], output


def test_the_run_s_log_scan_finds_personal_data_and_tokens_in_any_process_log(
    tmp_path: Path,
) -> None:
    """What `make chaos` scans, and what it allows: planted lines in a run's logs, no engine."""
    engine = Engine(tmp_path)
    (engine.state_dir / "logs").mkdir(parents=True)
    for name in ("staff_key", "api_secret", "codec_key"):
        (engine.state_dir / name).write_text(f"{name}-of-this-run\n")
    campaign = chaos.Campaign(engine, chaos.parse([]))
    people = campaign.people(7)
    traveller = people["travellers"][0]
    campaign.tokens.append("Jq3xV0b9mYtR2kLs8dHw1nZcE5uA7fGp4oQiKrTyWvM")
    engine.output.write_text(
        "  Staff key    staff_key-of-this-run  (kept in state/staff_key)\n"  # the contract's
        "ready\n"
    )
    (engine.state_dir / "logs" / "simulator.log").write_text(f"hold for {traveller['last_name']}\n")
    (engine.state_dir / "logs" / "worker.log").write_text(
        '{"event": "supplier.held", "booking_id": "bk_1"}\n'
        f"Bearer {campaign.tokens[0]} and {people['customer']['email']}\n"
    )
    (engine.state_dir / "logs" / "api.log").write_text(
        f"born {traveller['birth_date']}, codec key codec_key-of-this-run\n"
    )

    leaks, scanned = chaos.scan_logs(campaign)

    assert sorted((leak.where, leak.what) for leak in leaks) == [
        ("api.log:1", "a birth date"),
        ("api.log:1", "the codec key"),
        ("simulator.log:1", "a traveller's last name, e-mail or document number"),
        ("worker.log:2", "a traveller's last name, e-mail or document number"),
        ("worker.log:2", "an access token"),
    ]
    assert scanned.startswith("6 lines in 4 logs")
