"""`PASSAGE_WORKERS=N make up`: N worker processes, each with its own name, health port and
metrics address; a bad N or a taken worker port fails at start, naming the variable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from passage.dev import devstack, supervisor
from passage.dev.devstack import DevStack, Endpoints, workers_from_env
from passage.dev.supervisor import StartupError
from passage.settings import Environment, Settings


def launcher(tmp_path: Path, workers: int, **environ: str) -> DevStack:
    settings = Settings(env=Environment.DEVELOPMENT)
    if "PASSAGE_WORKER_HEALTH_PORT" in environ:
        settings = settings.model_copy(
            update={"worker_health_port": int(environ["PASSAGE_WORKER_HEALTH_PORT"])}
        )
    return DevStack(environ, settings, tmp_path, Endpoints(), workers)


@pytest.mark.parametrize("raw", ["0", "-1", "x", "1.5"])
def test_a_bad_number_of_workers_fails_at_start_naming_the_variable(
    raw: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PASSAGE_WORKERS", raw)
    with pytest.raises(SystemExit) as exited:
        devstack.main()
    assert exited.value.code == 2
    assert f"PASSAGE_WORKERS={raw!r}" in capsys.readouterr().err


def test_the_number_of_workers_defaults_to_one() -> None:
    assert workers_from_env({}) == 1
    assert workers_from_env({"PASSAGE_WORKERS": " 3 "}) == 3


def test_one_worker_keeps_its_name_and_several_are_numbered(tmp_path: Path) -> None:
    (single,) = launcher(tmp_path, 1)._plan_workers()
    assert single.name == "worker"
    slots = launcher(tmp_path, 3)._plan_workers()
    assert [slot.name for slot in slots] == ["worker-1", "worker-2", "worker-3"]
    ports = [slot.health_port for slot in slots]
    ports += [int(slot.metrics_address.rsplit(":", 1)[1]) for slot in slots]
    assert len(set(ports)) == 6  # each its own health port and metrics address
    assert slots[1].health_url == f"http://127.0.0.1:{slots[1].health_port}/healthz"
    assert slots[1].env() == {
        "PASSAGE_WORKER_HEALTH_PORT": str(slots[1].health_port),
        "PASSAGE_WORKER_METRICS_ADDRESS": slots[1].metrics_address,
    }


def test_each_worker_is_a_restartable_service_with_its_own_ports(tmp_path: Path) -> None:
    stack = launcher(tmp_path, 2)
    stack.worker_slots = stack._plan_workers()
    workers = [s for s in stack._plan({"PASSAGE_ENV": "development"}) if "worker" in s.name]
    assert [w.name for w in workers] == ["worker-1", "worker-2"]
    assert all(w.restart for w in workers)
    assert (
        workers[0].env["PASSAGE_WORKER_HEALTH_PORT"] != workers[1].env["PASSAGE_WORKER_HEALTH_PORT"]
    )
    assert workers[0].env["PASSAGE_ENV"] == "development"


def test_given_ports_count_up_and_a_taken_one_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(StartupError, match="PASSAGE_WORKER_HEALTH_PORT"):
            launcher(tmp_path, 2, PASSAGE_WORKER_HEALTH_PORT=str(taken))._plan_workers()
        with pytest.raises(StartupError, match="PASSAGE_WORKER_METRICS_ADDRESS"):
            launcher(
                tmp_path, 2, PASSAGE_WORKER_METRICS_ADDRESS=f"127.0.0.1:{taken - 1}"
            )._plan_workers()
    with pytest.raises(StartupError, match="leaves no port for worker 2"):
        launcher(tmp_path, 2, PASSAGE_WORKER_HEALTH_PORT="65535")._plan_workers()
    with pytest.raises(StartupError, match="is not host:port"):
        launcher(tmp_path, 1, PASSAGE_WORKER_METRICS_ADDRESS="9464")._plan_workers()


def test_free_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    """A port picked in the ephemeral range can be taken by an outgoing connection or another
    program's `bind(0)` before the child binds it (seen: worker-2's health port, CI)."""
    low, _ = supervisor.ephemeral_port_range()

    ports = supervisor.free_ports("127.0.0.1", 40)

    assert len(set(ports)) == 40
    assert all(supervisor.PICKED_PORTS.start <= port < low for port in ports)
    assert all(supervisor.port_free("127.0.0.1", port) for port in ports)
