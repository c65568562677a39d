"""The worker's health: `GET /healthz` served inside the worker, and the probe that asks it.

Healthy means the worker runs, Temporal answers, and Temporal lists this worker (by its
identity) among the pollers of its task queue, for workflow tasks and for activity tasks: the
pollers really reach the server, which a process that is merely alive does not show. The
endpoint is served from a thread (the standard library's HTTP server) that asks the worker's
event loop, so a blocked loop is unhealthy too.

`python -m passage.worker_health` (for a container's health check) asks the endpoint of
PASSAGE_WORKER_HEALTH_PORT and exits 0 when healthy, 1 otherwise, printing the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from passage.settings import NO_NEEDS, Settings

PATH = "/healthz"
#: How long one check waits for Temporal.
CHECK_TIMEOUT_SECONDS = 3.0
_TASK_TYPES = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    #: What was checked and what was found (no secrets: names, states, error codes).
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"status": "ok" if self.healthy else "unhealthy", **self.details})


class WorkerHealth:
    """Checks one running worker: its state, and its pollers as Temporal sees them."""

    def __init__(self, client: Client, worker: Worker, task_queue: str) -> None:
        self._client = client
        self._worker = worker
        self._task_queue = task_queue
        self._identity = worker.config().get("identity") or client.identity

    async def check(self) -> HealthReport:
        details = {"task_queue": self._task_queue, "identity": self._identity}
        if not self._worker.is_running:
            return HealthReport(False, {**details, "worker": "not running"})
        details["worker"] = "running"
        for kind, task_type in _TASK_TYPES.items():
            request = DescribeTaskQueueRequest(
                namespace=self._client.namespace,
                task_queue=TaskQueue(
                    name=self._task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
                ),
                task_queue_type=task_type,
            )
            try:
                described = await self._client.workflow_service.describe_task_queue(
                    request, retry=False, timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
                )
            except RPCError as error:
                return HealthReport(
                    False, {**details, "temporal": f"unreachable ({error.status.name})"}
                )
            if not any(poller.identity == self._identity for poller in described.pollers):
                return HealthReport(
                    False, {**details, "temporal": "ok", kind: "this worker is not polling"}
                )
            details[kind] = "polling"
        return HealthReport(True, {**details, "temporal": "ok"})


@contextlib.contextmanager
def serving(health: WorkerHealth, host: str, port: int) -> Iterator[None]:
    """Serve `GET /healthz` on host:port until the context exits (called on the worker's loop)."""
    loop = asyncio.get_running_loop()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
            if self.path.split("?", 1)[0] != PATH:
                self.send_error(404)
                return
            future = asyncio.run_coroutine_threadsafe(health.check(), loop)
            try:
                report = future.result(timeout=2 * CHECK_TIMEOUT_SECONDS + 1)
            except concurrent.futures.TimeoutError:
                future.cancel()
                report = HealthReport(False, {"worker": "its event loop does not answer"})
            body = report.to_json().encode()
            self.send_response(200 if report.healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a probe every few seconds is no news."""

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="worker-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def health_url(settings: Settings) -> str | None:
    """The URL the probe asks (None when the worker serves no health endpoint)."""
    if settings.worker_health_port is None:
        return None
    host = settings.worker_health_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.worker_health_port}{PATH}"


def probe(url: str) -> tuple[bool, str]:
    """Whether the worker at `url` is healthy, and what it answered."""
    try:
        response = httpx.get(url, timeout=2 * CHECK_TIMEOUT_SECONDS + 3)
    except httpx.HTTPError as error:
        return False, f"the worker's health endpoint does not answer: {type(error).__name__}"
    return response.status_code == 200, response.text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m passage.worker_health",
        description="Exit 0 when the worker is healthy (polling, Temporal reachable), else 1.",
    )
    parser.add_argument("--url", help="default: the endpoint of PASSAGE_WORKER_HEALTH_PORT")
    args = parser.parse_args(argv)
    url = args.url or health_url(Settings.for_process("the worker health probe", NO_NEEDS))
    if url is None:
        print("set PASSAGE_WORKER_HEALTH_PORT (the worker's health endpoint)", file=sys.stderr)
        raise SystemExit(2)
    healthy, answer = probe(url)
    print(answer, file=sys.stdout if healthy else sys.stderr)
    raise SystemExit(0 if healthy else 1)


if __name__ == "__main__":
    main()
