"""Settings fail closed: outside development, missing or placeholder secrets stop the processes,
and each process demands only what it uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import worker
from api import __main__ as api_main
from api.app import create_app
from passage.codec import new_key
from passage.settings import DEV_LEDGER_KEY, DEV_SECRETS, WORKER_NEEDS, Environment, Settings

SECRETS = {
    "PASSAGE_API_SECRET": "a3f1c9e07b5d4e2f8a6c1b9d0e7f3a5c",
    "PASSAGE_CUSTOMER_REF_KEY": "0c5e8f2a9b7d1e4c6a3f5b8d2e9c7a1f",
    "PASSAGE_STRIPE_WEBHOOK_SECRET": "whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}
CODEC_KEY = "PASSAGE_CODEC_KEY"
#: Everything the API needs: the secrets and the codec key (the ledger's personal data).
API_SECRETS = {**SECRETS, CODEC_KEY: "4mO0m0sDq2yZk1m5q0Xb7rV3hJ8cN6tL9pW2eA5fG1s="}
#: The ledger the API and the worker name outside development.
LEDGER = {"DATABASE_URL": "postgresql+psycopg://passage:a3f1c9e07b5d@db:5432/passage"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only what each test sets: nothing of the developer's environment leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("PASSAGE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def refused_variables(error: ValidationError) -> set[str]:
    message = str(error)
    return {name for name in API_SECRETS if name in message}


def test_production_refuses_missing_secrets_naming_each_variable() -> None:
    with pytest.raises(ValidationError) as missing:
        Settings()
    assert refused_variables(missing.value) == set(API_SECRETS)


@pytest.mark.parametrize("variable", sorted(SECRETS))
@pytest.mark.parametrize("placeholder", ["", "  ", "changeme", "CHANGEME", "dev-value"])
def test_production_refuses_a_placeholder_secret(
    clean_environment: pytest.MonkeyPatch, variable: str, placeholder: str
) -> None:
    field = variable.removeprefix("PASSAGE_").lower()
    value = DEV_SECRETS[field] if placeholder == "dev-value" else placeholder
    clean_environment.setenv("DATABASE_URL", LEDGER["DATABASE_URL"])
    for name, real in API_SECRETS.items():
        clean_environment.setenv(name, value if name == variable else real)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert refused_variables(refused.value) == {variable}
    if value.strip():  # the refused value is not echoed into logs
        assert value.strip() not in str(refused.value)


def test_production_runs_on_real_secrets_and_never_shows_them(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    for name, value in {**API_SECRETS, **LEDGER}.items():
        clean_environment.setenv(name, value)
    settings = Settings()
    assert settings.env == Environment.PRODUCTION
    assert settings.ledger_key == API_SECRETS[CODEC_KEY]
    assert settings.api_secret == SECRETS["PASSAGE_API_SECRET"]
    assert settings.customer_ref_key == SECRETS["PASSAGE_CUSTOMER_REF_KEY"]
    assert settings.stripe_webhook_secret == SECRETS["PASSAGE_STRIPE_WEBHOOK_SECRET"]
    assert not any(value in repr(settings) for value in API_SECRETS.values())


def test_development_may_run_on_the_development_secrets(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("PASSAGE_ENV", "development")
    settings = Settings()
    assert settings.api_secret == DEV_SECRETS["api_secret"]
    assert settings.customer_ref_key == DEV_SECRETS["customer_ref_key"]
    assert settings.stripe_webhook_secret == DEV_SECRETS["stripe_webhook_secret"]
    clean_environment.setenv("PASSAGE_API_SECRET", SECRETS["PASSAGE_API_SECRET"])
    assert Settings().api_secret == SECRETS["PASSAGE_API_SECRET"]


def test_an_unknown_environment_is_refused(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("PASSAGE_ENV", "dev")
    with pytest.raises(ValidationError, match="env"):
        Settings()


def test_the_api_and_the_worker_refuse_to_start_without_what_they_use(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_environment.setenv("PASSAGE_API_SECRET", SECRETS["PASSAGE_API_SECRET"])
    with pytest.raises(ValidationError, match="PASSAGE_CUSTOMER_REF_KEY"):
        create_app()
    with pytest.raises(SystemExit) as exited:
        api_main.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("the API cannot start")
    for variable in ("PASSAGE_CUSTOMER_REF_KEY", "PASSAGE_STRIPE_WEBHOOK_SECRET", CODEC_KEY):
        assert variable in err
    assert "PASSAGE_API_SECRET" not in err and SECRETS["PASSAGE_API_SECRET"] not in err
    # The worker writes the ledger's personal data: it needs the codec key, and only that.
    with pytest.raises(SystemExit) as exited:
        worker.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("the worker cannot start") and CODEC_KEY in err
    assert "PASSAGE_CUSTOMER_REF_KEY" not in err and "PASSAGE_STRIPE_WEBHOOK_SECRET" not in err


def test_the_worker_never_needs_the_api_secrets(clean_environment: pytest.MonkeyPatch) -> None:
    """Least privilege: a worker host need not hold the key that derives every access token."""
    clean_environment.setenv(CODEC_KEY, API_SECRETS[CODEC_KEY])
    clean_environment.setenv("DATABASE_URL", LEDGER["DATABASE_URL"])
    settings = Settings.for_process("the worker", WORKER_NEEDS)
    assert settings.ledger_key == API_SECRETS[CODEC_KEY]
    assert settings.api_secret == "" and settings.stripe_webhook_secret == ""


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ=", new_key()[:-4]])
def test_a_malformed_codec_key_is_refused_without_echoing_it(
    clean_environment: pytest.MonkeyPatch, key: str
) -> None:
    for development in (False, True):
        with pytest.raises(
            ValidationError, match="PASSAGE_CODEC_KEY must be urlsafe base64"
        ) as bad:
            Settings(
                env=Environment.DEVELOPMENT if development else Environment.PRODUCTION,
                codec_key=key,
            )
        assert key not in str(bad.value)


def test_the_ledger_key_is_the_codec_key_and_a_fixed_one_only_in_development(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    assert Settings(env=Environment.DEVELOPMENT).ledger_key == DEV_LEDGER_KEY
    key = new_key()
    assert Settings(env=Environment.DEVELOPMENT, codec_key=key).ledger_key == key
    tool = Settings.for_process("passage", frozenset())
    with pytest.raises(RuntimeError, match="PASSAGE_CODEC_KEY"):
        tool.ledger_key  # noqa: B018  (a tool that did not ask for the key never gets a default)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PASSAGE_API_PORT", "eighty"),
        ("PASSAGE_API_PORT", "70000"),
        ("PASSAGE_LOG_LEVEL", "LOUD"),
        ("PASSAGE_LOG_FORMAT", "xml"),
        ("PASSAGE_WORKER_METRICS_ADDRESS", "9100"),
        ("PASSAGE_TEMPORAL_ADDRESS", "temporal"),
        ("PASSAGE_SUPPLIER_URL", "simulator:8100"),
        ("PASSAGE_CODEC_CORS_ORIGINS", "http://localhost:8080/ui"),
        ("PASSAGE_WORKER_HEALTH_PORT", "0"),
        ("DATABASE_URL", "postgres-at-db"),
        ("PASSAGE_TEMPORAL_TLS_CLIENT_CERT", "/nonexistent/client.pem"),
        ("PASSAGE_STAFF_KEYS", "changeme"),
        ("PASSAGE_STRIPE_API_KEY", "sk_live_"),
        ("PASSAGE_STRIPE_API_KEY", "sk_test_change-me"),
    ],
)
def test_a_malformed_value_stops_every_process_naming_its_variable(
    clean_environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    for name, real in {**API_SECRETS, **LEDGER}.items():
        clean_environment.setenv(name, real)
    clean_environment.setenv(variable, value)
    for process, main in (("the API", api_main.main), ("the worker", worker.main)):
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{process} cannot start") and variable in err, err


def test_the_readme_table_is_the_settings_table() -> None:
    """Generated from `Settings`: a field added, removed or redocumented shows up here."""
    from pathlib import Path

    from passage.settings import with_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert with_table(readme) == readme, (
        "README.md's settings table differs from Settings: "
        "run `python -m passage.settings --readme README.md`"
    )


#: The stand-ins of `.env.example` (and the like): each refused outside development.
TEMPLATE_PLACEHOLDERS = {
    "PASSAGE_API_SECRET": "change-me-api-secret",
    "PASSAGE_CUSTOMER_REF_KEY": "CHANGE-ME-customer-ref-key",
    "PASSAGE_STRIPE_WEBHOOK_SECRET": "whsec_change-me",
    "PASSAGE_CODEC_KEY": "change-me-codec-key",
    "PASSAGE_STRIPE_API_KEY": "sk_test_change-me",
    "PASSAGE_STAFF_KEYS": "staff_change-me-1,staff_3f9a0c5e8b1d7f2a",
    "DATABASE_URL": "postgresql+psycopg://passage:change-me-postgres-password@db:5432/passage",
}


@pytest.mark.parametrize("variable", sorted(TEMPLATE_PLACEHOLDERS))
def test_a_template_placeholder_stops_the_api_naming_its_variable(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    for name, real in {**API_SECRETS, **LEDGER}.items():
        clean_environment.setenv(name, real)
    clean_environment.setenv(variable, TEMPLATE_PLACEHOLDERS[variable])
    with pytest.raises(SystemExit) as exited:
        Settings.for_process("the API")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert variable in err, err
    assert TEMPLATE_PLACEHOLDERS[variable] not in err  # the value is not echoed into logs


def test_a_real_secret_that_merely_contains_change_is_accepted(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    for name, real in {**API_SECRETS, **LEDGER}.items():
        clean_environment.setenv(name, real)
    clean_environment.setenv("PASSAGE_API_SECRET", "exchange-me-not-8f2a9b7d1e4c6a3f5b8d")
    assert Settings().api_secret.startswith("exchange")
