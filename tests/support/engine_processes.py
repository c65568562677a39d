"""The API and a worker as real processes (`python -m api`, `python -m worker`) on the session's
engine (Temporal dev server, simulator, Stripe emulator, PostgreSQL ledger), each writing its
stdout and stderr to a file: for tests of what the processes log and serve (logs, metrics).

They run on a task queue of their own, so the session's in-process worker never takes their tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from passage.dev.supervisor import free_ports
from passage.settings import Settings, variable

REPO_ROOT = Path(__file__).resolve().parents[2]
#: A loaded machine starts a Python process with the Temporal SDK in several seconds.
START_WITHIN = 120.0


@dataclass(frozen=True)
class EngineProcesses:
    api_url: str
    api_log: Path
    worker_log: Path
    environ: dict[str, str]

    def log_lines(self) -> Iterator[tuple[str, str]]:
        """(process, line) for every line either process wrote so far."""
        for process, path in (("api", self.api_log), ("worker", self.worker_log)):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                yield process, line


def process_environ(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment a production process would get for `settings` (the fields set on it)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PASSAGE_")}
    environ.pop("DATABASE_URL", None)
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if value is not None:
            environ[variable(name)] = str(value)
    environ["PYTHONUNBUFFERED"] = "1"  # every line in the log file as it is written
    environ.update(overrides)
    return environ


@contextlib.asynccontextmanager
async def engine_processes(
    settings: Settings, logs_dir: Path, **overrides: str
) -> AsyncIterator[EngineProcesses]:
    """A worker and an API process for `settings` (`overrides`: more PASSAGE_* variables)."""
    api_port = free_ports("127.0.0.1", 1)[0]
    environ = process_environ(
        settings,
        PASSAGE_TASK_QUEUE=f"passage-processes-{uuid.uuid4().hex[:8]}",
        PASSAGE_API_HOST="127.0.0.1",
        PASSAGE_API_PORT=str(api_port),
        PASSAGE_API_URL=f"http://127.0.0.1:{api_port}",
        **overrides,
    )
    api_log, worker_log = logs_dir / "api.log", logs_dir / "worker.log"
    started: list[subprocess.Popen[bytes]] = []
    try:
        for module, log in (("worker", worker_log), ("api", api_log)):
            with log.open("wb") as out:
                started.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module],
                        cwd=REPO_ROOT,
                        env=environ,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        processes = EngineProcesses(f"http://127.0.0.1:{api_port}", api_log, worker_log, environ)
        await _wait_ready(processes, started)
        yield processes
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


async def _wait_ready(processes: EngineProcesses, started: list[subprocess.Popen[bytes]]) -> None:
    """Until the API answers /readyz 200 and the worker said it started."""
    deadline = time.monotonic() + START_WITHIN
    async with httpx.AsyncClient(base_url=processes.api_url, timeout=5) as http:
        while True:
            for process in started:
                if process.poll() is not None:
                    logs = "\n".join(line for _, line in processes.log_lines())
                    raise AssertionError(f"{process.args} exited {process.returncode}:\n{logs}")
            worker_up = "worker started" in processes.worker_log.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if worker_up and (await http.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(line for _, line in processes.log_lines())
                raise AssertionError(f"the API and the worker did not start:\n{logs}")
            await asyncio.sleep(0.3)
