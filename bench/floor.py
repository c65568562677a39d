"""The floor's worker process and its load: bare Temporal running Passage's durable shape.

The worker runs in a process of its own, like Passage's, so its CPU is measured the same way, and
with the options Passage's worker gets (`passage.tuning.WORKER_OPTIONS`), on the same dev server
and a task queue of its own:

    python -m bench.floor --address 127.0.0.1:7233 --task-queue bench-floor

The benchmark starts it with `FloorWorker` and drives it with `run_floor`: workflow start to
result, as the client sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench.engine import REPO_ROOT
from bench.floor_workflow import ACTIVITIES, FloorBooking, FloorWorkflow
from bench.measure import closed_loop
from passage.tuning import WORKER_OPTIONS, cache_sandbox_bytecode

#: Printed once the worker polls its task queue.
READY_MARK = "floor worker started"
READY_TIMEOUT = 60.0
#: A floor workflow takes milliseconds: one that does not finish in this long is broken.
RESULT_TIMEOUT = 120.0


# --- the worker process --------------------------------------------------------------------------


async def serve(address: str, namespace: str, task_queue: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    cache_sandbox_bytecode([FloorWorkflow])  # as Passage's worker does
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=list(ACTIVITIES),
        **WORKER_OPTIONS,
    )
    async with worker:
        print(f"{READY_MARK} on {task_queue}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.namespace, args.task_queue))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # sdk-python issue 300: avoid a crash at interpreter exit


# --- from the benchmark --------------------------------------------------------------------------


class FloorWorker:
    """`python -m bench.floor` as a child of the benchmark, its output in `log_path`."""

    def __init__(self, address: str, task_queue: str, log_path: Path) -> None:
        self.address = address
        self.task_queue = task_queue
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.floor", "--address", self.address]
                + ["--task-queue", self.task_queue],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the floor worker exited:\n{self.log_path.read_text()}")
            if READY_MARK in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the floor worker did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class FloorRun:
    workflow_id: str
    started: float
    finished: float
    confirmed: int

    @property
    def seconds(self) -> float:
        return self.finished - self.started


async def run_floor(
    client: Client, task_queue: str, tag: str, n: int, concurrency: int, items: int = 3
) -> tuple[list[FloorRun], float]:
    """`n` floor workflows at `concurrency`, each timed from its start call to its result."""

    async def one(index: int) -> FloorRun:
        workflow_id = f"floor-{tag}-{index}"
        started = time.monotonic()
        handle = await client.start_workflow(
            FloorWorkflow.run,
            FloorBooking(workflow_id, tuple(f"it_{k + 1}" for k in range(items))),
            id=workflow_id,
            task_queue=task_queue,
        )
        outcome = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        return FloorRun(workflow_id, started, time.monotonic(), outcome.confirmed)

    return await closed_loop(f"floor C={concurrency}", n, concurrency, one)


if __name__ == "__main__":
    main()
