"""docker-compose.yml, .env.example and the Dockerfile hold what production needs, and no secret.

Read as data (no Docker here): every service the contract needs, PostgreSQL behind the worker
and the API, health checks the start order waits on, secrets only as required variables whose
template values the settings refuse, and Temporal's search attributes registered from the
workflow's own definitions (workflows/search.py), not written out again. What docker-compose
resolves is checked in tests/integration/test_compose_config.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import setuptools
import yaml

from passage.settings import Settings, is_placeholder
from workflows import search

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}$")
#: An optional secret (e.g. the codec's old keys): a variable with no default, never a value.
OPTIONAL = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-\}$")
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|_KEY|_KEYS|TOKEN")
SECRET_VALUE = re.compile(r"sk_(live|test)_|whsec_|rk_live_|BEGIN [A-Z ]*PRIVATE KEY")
#: `${NAME}`, `${NAME:-default}`, `${NAME:?message}`: the variables the file reads.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z0-9_]+)(?P<rest>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(command)


def test_every_service_the_engine_needs_is_there(services: dict[str, Any]) -> None:
    assert {"postgres", "temporal", "temporal-ui", "simulator", "worker", "api"} <= set(services)


def test_worker_and_api_keep_the_ledger_in_postgresql(services: dict[str, Any]) -> None:
    for name in ("worker", "api"):
        url = environment(services[name])["DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://"), (name, url)
        assert "@postgres:5432/" in url, (name, url)


def test_worker_and_api_talk_to_the_composed_temporal_and_simulator(
    services: dict[str, Any],
) -> None:
    for name in ("worker", "api"):
        env = environment(services[name])
        assert env["PASSAGE_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert "simulator:8100" in env["PASSAGE_SUPPLIER_URL"]
        assert "api.stripe.com" in env["PASSAGE_STRIPE_API_BASE"]  # no emulator in production


def test_the_worker_runs_the_worker_and_the_api_serves_the_api(services: dict[str, Any]) -> None:
    assert re.search(r"python -m worker\b|python worker\.py", command_text(services["worker"]))
    api_command = command_text(services["api"])
    assert api_command in ("", "python -m api"), api_command  # "" = the image's CMD
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "api"]' in dockerfile
    published = [str(port) for port in services["api"].get("ports", [])]
    assert any(port.endswith(":8000") for port in published), published


def test_stateful_and_serving_services_have_health_checks(services: dict[str, Any]) -> None:
    for name in ("postgres", "temporal", "temporal-ui", "simulator", "worker", "api"):
        assert services[name].get("healthcheck", {}).get("test"), name


def test_start_order_waits_on_health_not_on_container_start(services: dict[str, Any]) -> None:
    for name in ("worker", "api"):
        depends = services[name]["depends_on"]
        # The ledger is migrated, by a one-shot job that waits for a healthy PostgreSQL.
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        # Temporal is usable once the namespace and search attributes exist.
        assert depends["temporal-setup"]["condition"] == "service_completed_successfully", name
        assert depends["simulator"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "passage.migrate upgrade" in command_text(services["migrate"])
    assert services["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    temporal_needs = services["temporal"]["depends_on"]
    assert temporal_needs["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["temporal-schema"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_postgresql_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["postgres"]["volumes"]
    named = [
        mount.split(":", 1)[0] for mount in mounts if mount.endswith("/var/lib/postgresql/data")
    ]
    assert named and named[0] in compose["volumes"], mounts


def test_secrets_are_required_variables_never_values(services: dict[str, Any]) -> None:
    for service_name, service in services.items():
        for name, value in environment(service).items():
            assert not SECRET_VALUE.search(value), (service_name, name)
            if SECRET_NAME.search(name) and value not in ("true", "false"):  # not a flag
                assert REQUIRED.match(value) or OPTIONAL.match(value), (
                    f"{service_name}.{name} must be ${{{name}:?...}} or ${{{name}:-}}"
                )
        if "DATABASE_URL" in environment(service):
            url = environment(service)["DATABASE_URL"]
            parts = re.findall(r"\$\{[^}]*\}", url)
            # user, password and database are variables; the password a required one.
            assert re.sub(r"\$\{[^}]*\}", "$", url) == "postgresql+psycopg://$:$@postgres:5432/$"
            assert REQUIRED.match(parts[1]), (service_name, url)


def test_temporal_setup_registers_the_workflows_search_attributes_itself(
    services: dict[str, Any],
) -> None:
    setup = services["temporal-setup"]
    assert command_text(setup) == "python -m passage.temporal_setup"
    assert setup["image"] == services["worker"]["image"]  # Passage's image, its search.py
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    written_out = [key.name for key in search.ALL if key.name in text]
    assert not written_out, f"search attributes written out in the compose file: {written_out}"


def test_temporal_gets_its_dynamic_config_from_a_file_in_the_repository(
    services: dict[str, Any],
) -> None:
    (mount,) = services["temporal"]["volumes"]
    source, target = mount.split(":")[:2]
    assert (REPO_ROOT / source).is_file(), source
    assert services["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"] == target
    config = yaml.safe_load((REPO_ROOT / source).read_text())
    assert config["frontend.enableUpdateWorkflowExecution"] == [{"value": True}]


def env_example() -> dict[str, str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_the_template_sets_every_variable_the_file_reads_and_no_other() -> None:
    lines = (REPO_ROOT / "docker-compose.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    read = {match["name"]: match["rest"] for match in VARIABLE.finditer(text)}
    template = env_example()
    assert template.pop("COMPOSE_PROJECT_NAME") == "passage"  # Compose's own, not the file's
    assert set(template) == set(read)
    for name, rest in read.items():
        if rest.startswith(":?"):  # required: a secret, so a placeholder the settings refuse
            assert is_placeholder(template[name]), f"{name}={template[name]}"
        else:  # a default: the template says the same
            assert rest.startswith(":-") and template[name] == rest[2:], (name, rest)


def test_the_templates_generators_make_keys_the_settings_accept() -> None:
    comments = (REPO_ROOT / ".env.example").read_text()
    generators = dict(
        re.findall(r"#\s+a (secret|password|codec key):\s+python3 -c \"(.*)\"", comments)
    )
    assert set(generators) == {"secret", "password", "codec key"}
    made = {
        kind: subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for kind, code in generators.items()
    }
    settings = Settings(
        api_secret=made["secret"],
        customer_ref_key=made["secret"],
        stripe_webhook_secret="whsec_" + made["secret"],
        codec_key=made["codec key"],
        database_url=f"postgresql+psycopg://passage:{made['password']}@postgres:5432/passage",
    )
    assert settings.codec_key == made["codec key"]
    assert re.fullmatch(r"[0-9a-f]+", made["password"])  # URL-safe, goes into DATABASE_URL


def test_the_image_installs_the_package_and_runs_unprivileged() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.MULTILINE)
    assert "pip install" in dockerfile and " -e " not in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0"), user
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".passage", ".env"} <= set(ignored)


def test_the_package_and_the_image_leave_out_the_development_harness() -> None:
    """passage/dev/ (make up, the demo, the Stripe emulator on localstripe) is not shipped."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    find = project["tool"]["setuptools"]["packages"]["find"]
    shipped = setuptools.find_packages(REPO_ROOT, include=find["include"], exclude=find["exclude"])
    assert {"passage", "passage.cli", "api", "activities", "workflows", "simulator"} <= set(shipped)
    assert not [
        name for name in shipped if name == "passage.dev" or name.startswith("passage.dev.")
    ]
    required = " ".join(project["project"]["dependencies"])
    assert "localstripe" not in required and "aiohttp" not in required
    assert "passage/dev" in (REPO_ROOT / ".dockerignore").read_text().split()
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "[dev]" not in dockerfile and "passage/dev" not in dockerfile


def test_the_migration_job_gets_what_it_uses_and_no_api_secret(services: dict[str, Any]) -> None:
    env = environment(services["migrate"])
    assert set(env) == {"DATABASE_URL", "PASSAGE_CODEC_KEY"}
    assert REQUIRED.match(env["PASSAGE_CODEC_KEY"])
