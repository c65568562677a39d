"""A small `make chaos` run: about 35 bookings, 2 worker kills, an engine restart (the Temporal
dev server on its kept database file, and the API), simulator faults on every operation and
random customer cancels, declined and 3-D Secure cards; the invariant checker must find nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_a_small_chaos_run_breaks_no_invariant(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CHAOS_KEEP", None)
    summary_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--bookings", "35", "--concurrency", "10"]
        + ["--kills", "2", "--seed", os.environ.get("CHAOS_SEED", "20261201")]
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
    assert summary["engine_restarts"] == 1, output
    assert summary["cancels_sent"] > 0 and summary["cancels_accepted"] > 0, output
    assert summary["not_driven"] == [], output
