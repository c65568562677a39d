"""A small supervisor of child processes, which knows nothing of what they are.

It starts the children in order, each in its own process group with its own log, and waits until
each is ready (`Service.ready`, polled); consecutive children of one batch start together. Then it
watches them: one marked `restart` that dies on its own is started again with a notice, unless it
crashes `CRASH_LIMIT` times within `CRASH_WINDOW_SECONDS`; any other death stops everything (exit
1). Ctrl-C or SIGTERM stops every child in reverse order: SIGTERM to its group, a grace period,
then SIGKILL. The children's pids are kept in the state directory, so after a crash of the
supervisor itself the next start stops what it left running.

A subclass says what to run (passage/dev/devstack.py: Passage under `make up`): `_prepare` (the
children's environment), `_plan` (the services in start order) and `_announce` (once all are
ready).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import itertools
import json
import os
import random
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

import httpx
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay
from tenacity.wait import wait_fixed

#: How long each child gets between SIGTERM and SIGKILL.
GRACE_SECONDS = 10.0
#: How often the supervisor looks at its children.
POLL_SECONDS = 0.5
#: A restartable child that dies this often within the window is crash-looping: stop everything.
CRASH_LIMIT = 3
CRASH_WINDOW_SECONDS = 30.0
_HAS_PROC = Path("/proc/self/stat").exists()


class StartupError(Exception):
    """The children cannot start; the message says why and what to do."""


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


@dataclass
class Service:
    """One supervised child process."""

    name: str
    argv: list[str]
    #: True once the service answers; called repeatedly while it starts.
    ready: Callable[[], bool]
    ready_timeout: float = 60.0
    #: Run once it is ready (setting up what later services rely on).
    after_ready: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Started again when it dies on its own (a child whose state is elsewhere, or in files it
    #: starts from again).
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


class Supervisor(abc.ABC):
    """Starts the services in order, waits for each, supervises them, stops them all.

    Args:
        state_dir: Where the children's logs (`logs/`) and pids (`pids`) are kept.
        title: What the children are together, in the notices ("stopping <title> ...").
        command: How a user starts the supervisor, in its messages ("<command> failed: ...").
    """

    def __init__(self, state_dir: Path, title: str, command: str) -> None:
        self.state_dir = state_dir
        self.logs_dir = state_dir / "logs"
        self.pids_path = state_dir / "pids"
        self.title = title
        self.command = command
        self.services: list[Service] = []
        self._stop = threading.Event()

    # --- what a subclass runs --------------------------------------------------------------------

    def _prepare(self) -> dict[str, str]:
        """Get ready to start the children (after leftovers are stopped); their environment."""
        return dict(os.environ)

    @abc.abstractmethod
    def _plan(self, env: dict[str, str]) -> list[Service]:
        """The children in start order; each may rely on the ones before it."""

    def _announce(self, env: Mapping[str, str]) -> None:
        """Say that everything is ready."""
        print("ready", flush=True)

    # --- the whole run ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything and supervise until a signal (exit 0) or a failure (exit 1)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self._stop_leftovers()
            child_env = self._prepare()
            # Consecutive services of one batch start together, then are waited for.
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
            print(f"\n{self.command} failed: {error}", file=sys.stderr, flush=True)
            return 1
        finally:
            # A second Ctrl-C must not cut the shutdown short and leave children behind.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            self._stop_all()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping {self.title} ...", flush=True)
        self._stop.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    # --- leftovers -------------------------------------------------------------------------------

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
                f"another `{self.command}` (pid {launcher['pid']}) is running with "
                f"{self.state_dir}; stop it first (Ctrl-C in its terminal)"
            )
        for name, entry in (recorded.get("services") or {}).items():
            _stop_leftover(name, entry.get("pid"), entry.get("started"))
        self.pids_path.unlink(missing_ok=True)

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

    # --- starting --------------------------------------------------------------------------------

    def _start(self, service: Service) -> None:
        self._check_stop()
        service.log_path = self.logs_dir / f"{service.name}.log"
        with service.log_path.open("ab") as log:
            service.log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} {self.command}: {' '.join(service.argv)}\n".encode())
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

    # --- running ---------------------------------------------------------------------------------

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
            print(f"{self.title} stopped.", flush=True)
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


def port_free(host: str, port: int) -> bool:
    """True when nobody listens on `host:port`, so a child can bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores sockets in TIME_WAIT, still refuses a port someone listens on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


#: Where free ports are picked: below the kernel's ephemeral range, so that no outgoing connection
#: and no `bind(0)` of another program (the Temporal dev server picks its internal ports so) can
#: take a port between the moment it is picked and the moment its child binds it.
PICKED_PORTS = range(15000, 32768)


def free_ports(host: str, count: int) -> list[int]:
    """`count` distinct TCP ports free on `host` right now, outside the ephemeral range."""
    low, _ = ephemeral_port_range()
    candidates = range(PICKED_PORTS.start, min(PICKED_PORTS.stop, low))
    picked: list[int] = []
    for port in random.sample(candidates, len(candidates)):
        if port_free(host, port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise StartupError(f"no {count} free ports on {host} in {candidates}")


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections and `bind(0)` (Linux's default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def answers(url: str) -> bool:
    """True when `GET url` answers 200 (a readiness probe for HTTP services)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
