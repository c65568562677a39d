"""A child that exits while starting is started once more when it may: the Temporal dev server
picks its HTTP and metrics ports itself, and another process can take one before it binds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from passage.dev.devstack import DevStack, Endpoints
from passage.dev.supervisor import Service, StartupError
from passage.settings import Environment, Settings

#: Exits 2 on its first run (as the dev server does when its port was taken), then stays up.
FLAKY_ONCE = (
    "import pathlib, sys, time\n"
    "mark = pathlib.Path(sys.argv[1])\n"
    "if not mark.exists():\n"
    "    mark.touch()\n"
    "    sys.exit(2)\n"
    "pathlib.Path(sys.argv[2]).touch()\n"
    "time.sleep(60)\n"
)


def stack(tmp_path: Path) -> DevStack:
    (tmp_path / "logs").mkdir()
    settings = Settings(env=Environment.DEVELOPMENT)
    return DevStack({}, settings, tmp_path, Endpoints())


def flaky_service(tmp_path: Path, retries: int) -> Service:
    ready = tmp_path / "ready"
    argv = [sys.executable, "-c", FLAKY_ONCE, str(tmp_path / "ran"), str(ready)]
    return Service("flaky", argv, ready=ready.exists, ready_timeout=20, start_retries=retries)


def test_a_service_that_exits_while_starting_is_started_once_more(tmp_path: Path) -> None:
    launcher = stack(tmp_path)
    service = flaky_service(tmp_path, retries=1)
    try:
        launcher._start_until_ready(service)
        assert service.process is not None and service.process.poll() is None
    finally:
        launcher._stop_all()


def test_without_retries_the_exit_is_a_startup_error(tmp_path: Path) -> None:
    launcher = stack(tmp_path)
    try:
        with pytest.raises(StartupError, match="flaky exited with code 2 while starting"):
            launcher._start_until_ready(flaky_service(tmp_path, retries=0))
    finally:
        launcher._stop_all()
