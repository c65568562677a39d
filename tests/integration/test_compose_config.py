"""`docker-compose --env-file .env.example config` validates, and what it resolves is runnable.

Debian's `docker-compose` (1.29) resolves the file as a newcomer's machine would (no Docker
engine is needed for `config`); the Makefile installs it for `make test`. The resolved services
are then checked against `passage.settings`: each Passage process is given what it needs and
nothing it must not hold, refuses the template's placeholders, starts on real values, and the
addresses, ports and health checks agree with each other.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from passage import worker_health
from passage.codec import new_key
from passage.settings import (
    API_NEEDS,
    LEDGER_TOOL_NEEDS,
    NO_NEEDS,
    WORKER_NEEDS,
    Settings,
    is_placeholder,
    variable,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO_ROOT / ".env.example"
#: The Passage processes of the file: service -> (process name, what it must be given).
PASSAGE_SERVICES = {
    "api": ("the API", API_NEEDS),
    "worker": ("the worker", WORKER_NEEDS),
    "migrate": ("passage migrate upgrade", LEDGER_TOOL_NEEDS),
    "temporal-setup": ("python -m passage.temporal_setup", NO_NEEDS),
}
#: Secrets only the API may hold (the worker never derives access tokens nor verifies webhooks).
API_ONLY = ("PASSAGE_API_SECRET", "PASSAGE_CUSTOMER_REF_KEY", "PASSAGE_STRIPE_WEBHOOK_SECRET")
LONG_RUNNING = ("always", "unless-stopped")


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(
            "docker-compose is not installed and this is not root: "
            "`sudo apt-get install -y docker-compose` (or `make test` as root installs it)"
        )
    pytest.fail("docker-compose is missing: `make docker-compose` installs Debian's package")


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with only `env_file`: no variable of this shell leaks in."""
    environ = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", "docker-compose.yml", "config"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def resolved(env_file: Path) -> dict[str, Any]:
    done = compose_config(env_file)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def filled_template(directory: Path) -> Path:
    """.env.example with every placeholder replaced as its comments say (a newcomer's `.env`)."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and value and is_placeholder(value):
            prefix = re.match(r"^(sk_test_|whsec_|staff_)?", value)
            real = new_key() if name == "PASSAGE_CODEC_KEY" else secrets.token_hex(24)
            line = f"{name}={prefix[0] if prefix else ''}{real}"
        lines.append(line)
    filled = directory / ".env"
    filled.write_text("\n".join(lines) + "\n")
    return filled


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The services as `.env.example` resolves them (placeholders in)."""
    return resolved(ENV_EXAMPLE)["services"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The services as a filled-in copy of `.env.example` resolves them."""
    return resolved(filled_template(tmp_path_factory.mktemp("compose")))["services"]


def settings_of(
    monkeypatch: pytest.MonkeyPatch, services: dict[str, Any], service: str
) -> Settings:
    """The settings the service's process builds from its environment (exit 2 when refused)."""
    for name in list(os.environ):
        if name.startswith("PASSAGE_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in (services[service].get("environment") or {}).items():
        monkeypatch.setenv(name, str(value))
    process, needs = PASSAGE_SERVICES[service]
    return Settings.for_process(process, needs)


def ports(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(host address, published port or range, container port) of each published port.

    docker-compose 1.29 prints a port with a host address in the short syntax, others long.
    """
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, str):
            host_ip, published, target = port.split("/")[0].rsplit(":", 2)
            found.append((host_ip, published, int(target)))
        else:
            found.append((port.get("host_ip", ""), str(port["published"]), int(port["target"])))
    return found


def test_the_template_validates_and_nothing_else_does(tmp_path: Path) -> None:
    assert compose_config(ENV_EXAMPLE).returncode == 0
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = compose_config(empty)
    assert refused.returncode != 0
    assert "POSTGRES_PASSWORD" in refused.stderr, refused.stderr


def test_every_service_has_an_image_and_a_restart_policy(template: dict[str, Any]) -> None:
    for name, service in template.items():
        assert service.get("image") or service.get("build"), name
        assert service.get("restart"), name
    # One image for every Passage process, built from this repository.
    for name in (*PASSAGE_SERVICES, "simulator"):
        assert template[name]["image"] == "passage:local", name
        assert Path(template[name]["build"]["context"]) == REPO_ROOT, name


def test_every_long_running_service_has_a_health_check(template: dict[str, Any]) -> None:
    long_running = {name for name, s in template.items() if s["restart"] in LONG_RUNNING}
    assert {"postgres", "temporal", "temporal-ui", "simulator", "worker", "api"} <= long_running
    for name in long_running:
        test = template[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert template["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "passage.worker_health",
    ]
    one_shots = set(template) - long_running
    assert one_shots == {"temporal-schema", "temporal-setup", "migrate"}
    assert all(template[name]["restart"].startswith("on-failure") for name in one_shots)


def test_dependencies_wait_for_health_or_completion(template: dict[str, Any]) -> None:
    for name, service in template.items():
        for needed, how in (service.get("depends_on") or {}).items():
            assert needed in template, (name, needed)
            condition = how["condition"]
            if template[needed]["restart"] in LONG_RUNNING:
                assert condition == "service_healthy", (name, needed, condition)
            else:
                assert condition == "service_completed_successfully", (name, needed, condition)
    for name in ("worker", "api"):
        assert {"migrate", "temporal-setup", "simulator"} <= set(template[name]["depends_on"])
    assert template["temporal-setup"]["command"] == ["python", "-m", "passage.temporal_setup"]


def test_each_process_gets_what_it_needs_and_the_worker_no_api_secret(
    template: dict[str, Any],
) -> None:
    for service, (_, needs) in PASSAGE_SERVICES.items():
        given = set(template[service].get("environment") or {})
        assert {variable(name) for name in needs} <= given, service
    worker = set(template["worker"]["environment"])
    assert not worker & {*API_ONLY, "PASSAGE_STAFF_KEYS"}
    assert {
        "PASSAGE_STRIPE_API_KEY",
        "PASSAGE_SUPPLIER_URL",
        "PASSAGE_WORKER_HEALTH_PORT",
    } <= worker
    assert "PASSAGE_STAFF_KEYS" in template["api"]["environment"]
    for service in template:
        assert "PASSAGE_ENV" not in (template[service].get("environment") or {}), service


#: Checked by their fields, so reported before (and without) the other missing secrets.
FORMAT_CHECKED = {
    "PASSAGE_CODEC_KEY": new_key,
    "PASSAGE_STRIPE_API_KEY": lambda: "sk_test_" + secrets.token_hex(12),
}


@pytest.mark.parametrize("service", ["api", "worker", "migrate"])
def test_the_template_placeholders_stop_each_process_naming_them(
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    service: str,
) -> None:
    env = template[service]["environment"]
    # An empty value is an optional setting left unset, not a secret to fill in.
    placeholders = {name for name, value in env.items() if value and is_placeholder(str(value))}
    assert "PASSAGE_CODEC_KEY" in placeholders
    with pytest.raises(SystemExit) as refused:
        settings_of(monkeypatch, template, service)
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith(f"{PASSAGE_SERVICES[service][0]} cannot start"), message
    for name in placeholders & set(FORMAT_CHECKED):
        assert name in message, (name, message)
    # Those fixed, every other placeholder is named, the database password by its variable.
    fixed = {**env, **{name: make() for name, make in FORMAT_CHECKED.items() if name in env}}
    with pytest.raises(SystemExit):
        settings_of(monkeypatch, {service: {"environment": fixed}}, service)
    message = capsys.readouterr().err
    for name in placeholders - set(FORMAT_CHECKED):
        assert name in message, (name, message)
    assert "POSTGRES_PASSWORD" in message, message


def test_a_filled_template_starts_every_process(
    filled: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in PASSAGE_SERVICES:
        settings = settings_of(monkeypatch, filled, service)
        assert settings.env.value == "production", service


def test_addresses_and_ports_agree_with_the_settings(
    filled: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = settings_of(monkeypatch, filled, "api")
    worker = settings_of(monkeypatch, filled, "worker")
    for settings in (api, worker):
        # Temporal, the simulator and PostgreSQL are the composed services, on their ports.
        host, port = settings.temporal_address.rsplit(":", 1)
        assert host == "temporal" and port == "7233"
        supplier = urlsplit(settings.supplier_url)
        assert supplier.hostname == "simulator"
        simulator = filled["simulator"]
        assert str(supplier.port) == simulator["command"][simulator["command"].index("--port") + 1]
        assert f"127.0.0.1:{supplier.port}/healthz" in " ".join(simulator["healthcheck"]["test"])
        ledger = urlsplit(settings.database_url)
        postgres = filled["postgres"]["environment"]
        assert (ledger.hostname, ledger.port) == ("postgres", 5432)
        assert ledger.username == postgres["POSTGRES_USER"]
        assert ledger.password == postgres["POSTGRES_PASSWORD"]
        assert ledger.path == f"/{postgres['POSTGRES_DB']}"
        assert settings.task_queue == api.task_queue  # every worker polls the API's queue
    # The API listens on every interface, on the port it publishes and probes.
    assert api.api_host == "0.0.0.0"
    ((_, published, target),) = ports(filled["api"])
    assert target == api.api_port
    assert f"127.0.0.1:{api.api_port}/readyz" in " ".join(filled["api"]["healthcheck"]["test"])
    assert urlsplit(api.api_url).port == int(published.split("-")[0])
    # The worker serves its health where the probe of its health check asks.
    assert (
        worker_health.health_url(worker) == f"http://127.0.0.1:{worker.worker_health_port}/healthz"
    )


def test_the_web_ui_decodes_through_the_api_from_an_allowed_origin(
    filled: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = settings_of(monkeypatch, filled, "api")
    ui = filled["temporal-ui"]
    env = ui["environment"]
    assert env["TEMPORAL_ADDRESS"] == api.temporal_address
    assert env["TEMPORAL_CODEC_ENDPOINT"] == f"{api.api_url}/codec"
    assert env["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    assert api.codec_cors_origin_list == [env["TEMPORAL_CORS_ORIGINS"]]
    # The origin is where the UI is published (loopback only: the UI has no login here).
    ((host_ip, published, target),) = ports(ui)
    assert (host_ip, target) == ("127.0.0.1", 8080)
    assert urlsplit(api.codec_cors_origin_list[0]).port == int(published)
