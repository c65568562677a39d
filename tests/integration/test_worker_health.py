"""The worker's health endpoint and its probe (passage/worker_health.py) against a real worker
process (`python -m worker`) on its own Temporal dev server: healthy once its pollers reach
Temporal, unhealthy (exit 1) once Temporal is gone although the process still runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from passage import worker_health
from passage.dev.supervisor import free_ports
from tests.support.temporal import BIN_DIR
from workflows import search

REPO_ROOT = Path(__file__).resolve().parents[2]


async def run_probe(url: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "passage.worker_health", "--url", url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_probe_follows_the_workers_reach_of_temporal(tmp_path: Path) -> None:
    temporal = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN_DIR / "temporal"), search_attributes=search.ALL
    )
    port = free_ports("127.0.0.1", 1)[0]
    url = f"http://127.0.0.1:{port}{worker_health.PATH}"
    environ = {
        **os.environ,
        "PASSAGE_ENV": "development",
        "PASSAGE_TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
        "PASSAGE_TASK_QUEUE": "health-probe",
        "DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "PASSAGE_WORKER_HEALTH_PORT": str(port),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        healthy, answer = False, ""
        while not healthy and time.monotonic() < deadline:
            healthy, answer = await asyncio.to_thread(worker_health.probe, url)
            if not healthy:
                await asyncio.sleep(0.5)
        assert healthy, answer
        assert '"workflow": "polling"' in answer and '"activity": "polling"' in answer

        ok = await run_probe(url)
        assert ok.returncode == 0, ok.stdout + ok.stderr

        await temporal.shutdown()
        gone = await run_probe(url)
        assert worker.poll() is None  # alive, and yet not healthy
        assert gone.returncode == 1, gone.stdout + gone.stderr
        assert '"status": "unhealthy"' in gone.stderr
        assert "unreachable" in gone.stderr
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        await temporal.shutdown()
