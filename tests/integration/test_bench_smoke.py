"""A tiny `make bench`: every figure and every ratio is in bench's JSON, the ratios are computed
from the figures of the same run, and the plot is drawn. Benchmarks are not timed tests: nothing
here judges a figure, only that the run measured and reported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = (1, 2)
#: 11 items is over the API's limit: that size is started on Temporal directly.
GROWTH = (1, 11)
OPEN = 5

PHASE = {"bookings", "confirmed", "throughput_per_s", "latency_ms", "cpu_seconds_per_booking"}
PASSAGE = PHASE | {"post_ms", "get_ms", "first_get_ms", "webhook_ms", "history"}
FLOOR = PHASE | {"history"}
QUANTILES = ("p50", "p95", "p99")


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)


def expected_ratios(results: dict[str, Any], key: str) -> dict[str, float]:
    """The ratios as this test computes them from the run's own figures."""
    passage, floor, peer = (results[name][key] for name in ("passage", "floor", "peer"))
    expected = {}
    for name, other in (("floor", floor), ("peer", peer)):
        expected[f"passage_over_{name}_throughput_{key}"] = ratio(
            passage["throughput_per_s"], other["throughput_per_s"]
        )
        for q in QUANTILES:
            expected[f"passage_over_{name}_latency_{q}_{key}"] = ratio(
                passage["latency_ms"][q], other["latency_ms"][q]
            )
    for measure in ("events", "bytes", "activities", "workflow_tasks"):
        expected[f"passage_over_floor_history_{measure}_{key}"] = ratio(
            passage["history"][measure], floor["history"][measure]
        )
    p_cpu, f_cpu = passage["cpu_seconds_per_booking"], floor["cpu_seconds_per_booking"]
    for name, process in (("worker", "worker"), ("server", "temporal"), ("engine", "engine")):
        if f_cpu[process]:
            expected[f"passage_over_floor_cpu_{name}_{key}"] = ratio(p_cpu[process], f_cpu[process])
    if peer["cpu_seconds_per_booking"]["peer"]:
        expected[f"passage_over_peer_cpu_engine_{key}"] = ratio(
            p_cpu["engine"], peer["cpu_seconds_per_booking"]["peer"]
        )
    return expected


@pytest.mark.timeout(240)
def test_a_tiny_bench_reports_every_figure_and_ratio(tmp_path: Path) -> None:
    results_path, plot_path = tmp_path / "results.json", tmp_path / "bench.png"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BENCH_KEEP", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--bookings", "3", "--warmup", "2"]
        + ["--concurrency", ",".join(map(str, CONCURRENCY))]
        + ["--growth", ",".join(map(str, GROWTH)), "--growth-bookings", "1"]
        + ["--open-bookings", str(OPEN), "--open-3ds", str(OPEN), "--open-idle-seconds", "1"]
        + ["--results", str(results_path), "--plot", str(plot_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "| measure | C=1 | C=2 |" in result.stdout, output
    results = json.loads(results_path.read_text())

    for key in (f"c{c}" for c in CONCURRENCY):
        for system, fields in (("passage", PASSAGE), ("floor", FLOOR), ("peer", PHASE)):
            figures = results[system][key]
            assert fields <= figures.keys(), (system, key, figures.keys())
            assert figures["confirmed"] == figures["bookings"] == 3, (system, key, figures)
            assert figures["throughput_per_s"] > 0 and figures["latency_ms"]["p50"] > 0
        passage = results["passage"][key]
        assert passage["history"]["events"] > 0 and passage["history"]["bytes"] > 0
        assert passage["webhook_ms"]["count"] == 3
        assert passage["cpu_seconds_per_booking"]["worker"] > 0
        for name, value in expected_ratios(results, key).items():
            assert results["ratios"][name] == pytest.approx(value, abs=0.002), name

    keys = {name.rsplit("_", 1)[0] for name in results["ratios"]}
    assert {"passage_over_floor_throughput", "passage_over_peer_throughput"} <= keys
    assert {"passage_over_floor_latency_p50", "passage_over_peer_latency_p99"} <= keys
    assert all(name.startswith(("passage_over_floor_", "passage_over_peer_")) for name in keys)
    for size in GROWTH:
        growth = results["growth"][f"items_{size}"]
        assert growth["items"] == size and growth["confirmed"] == 1, growth
        assert growth["history"]["activities"] > 0
    assert results["growth"]["items_11"]["via"].startswith("temporal")
    for key, waiting_for in (("open_bookings", "price acceptance"), ("open_3ds", "3-D Secure")):
        held = results[key]
        assert held["waiting_for"] == waiting_for, held
        assert held["bookings"] == held["waiting"] == held["waiting_when_measured"] == OPEN, held
        answers = held["cancel_answers"]
        assert sum(answers.values()) == OPEN, held
        assert all(a.startswith(("200 ", "202 ")) for a in answers), held
        assert held["worker_rss_mib_open"] > 0

    png = plot_path.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
