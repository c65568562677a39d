"""A worker whose Temporal Worker fails fatally exits 1 and logs why, traceback included.

A process that stays alive polling nothing looks healthy to a supervisor that only watches for
exits (`make up`, a compose restart policy); once it exits, it is started again. The server
rejecting the worker is the fatal error here: a namespace Temporal does not know.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_SECONDS = 90.0


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


async def test_a_worker_the_server_rejects_exits_1_with_the_traceback_logged(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PASSAGE_")},
        "PASSAGE_ENV": "development",
        "PASSAGE_LOG_FORMAT": "json",  # development's default is readable lines
        "PASSAGE_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "PASSAGE_TEMPORAL_NAMESPACE": "no-such-namespace",
        "PASSAGE_TASK_QUEUE": "fatal-exit",
        "DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
    }
    worker = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_SECONDS,
        check=False,
    )
    output = worker.stdout + worker.stderr
    assert worker.returncode == 1, output
    failed = [line for line in json_lines(output) if line.get("event") == "worker failed"]
    assert len(failed) == 1, output
    assert failed[0]["level"] == "error" and failed[0]["task_queue"] == "fatal-exit"
    traceback = failed[0]["exception"]
    assert traceback.startswith("Traceback (most recent call last):"), traceback
    assert "Namespace no-such-namespace is not found" in traceback, traceback
