"""Settings from the environment (the same for `make up`, CI and production).

Built explicitly by each composition root (worker, API, CLI, devstack): nothing is read at import.

Secrets fail closed: outside development (`PASSAGE_ENV=development`, which `make up` and the test
fixtures set) a missing or placeholder secret is a validation error naming its variable, so the
API and the worker refuse to start instead of signing tokens with a key everybody knows. Each
process demands only what it uses (`API_NEEDS`, `WORKER_NEEDS`, ...): the worker never holds the
key that derives every access token, and `passage migrate` needs the ledger, not the webhook secret.

A process that cannot start says which variable is wrong (`Settings.for_process`), and the
README's settings table is generated from the fields' docstrings: `python -m passage.settings
--markdown` prints it, `--readme README.md` rewrites it there (a test keeps the two equal).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import hashlib
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    FilePath,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import HttpUrl as _HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".passage")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    """How log lines are written: JSON lines for a collector, or coloured lines for a person."""

    JSON = "json"
    CONSOLE = "console"


#: Development values of the secrets: filled in when unset in development, refused elsewhere.
DEV_SECRETS = {
    "api_secret": "passage-dev-api-secret",
    "customer_ref_key": "passage-dev-customer-ref-key",
    "stripe_webhook_secret": "whsec_passage_dev",
}
#: Values that are never a real secret (compared case-insensitively, blanks stripped).
PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "placeholder", "replace-me", "todo", "xxx"}
    | {"whsec_changeme", "whsec_...", "whsec_xxx"}
    | set(DEV_SECRETS.values())
)
#: How the templates' placeholders begin (`.env.example`: `change-me-...`, `sk_test_change-me`).
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me", "replace-me", "replace_me")
#: The prefixes real keys carry, stripped before the placeholder test (`whsec_change-me`).
_KEY_PREFIXES = re.compile(r"^(sk_live_|sk_test_|rk_live_|rk_test_|whsec_|staff_)")


def is_placeholder(value: str) -> bool:
    """Whether `value` is a template's stand-in rather than a secret (blank counts as one)."""
    text = value.strip().lower()
    bare = _KEY_PREFIXES.sub("", text)
    return (
        not bare
        or text in PLACEHOLDERS
        or bare in PLACEHOLDERS
        or bare.startswith(PLACEHOLDER_PREFIXES)
    )


#: The root of the ledger's keys in development when PASSAGE_CODEC_KEY is unset (payloads then
#: stay unencrypted, as before); outside development the codec key is required instead.
DEV_LEDGER_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"passage-dev-ledger-key").digest()
).decode()

#: What each process must be given outside development, by setting (each process uses these):
#: the API signs tokens, derives customer refs, verifies webhooks and reads the ledger's
#: personal data; the worker writes the ledger (codec and ledger keys) and nothing else;
#: `passage migrate` and `passage check` work on a named ledger with its key; `passage replay`
#: decodes workflow payloads; `migrate current` and the staff CLI's booking commands (which go
#: through the API with a staff key) need no secret. The API and the worker name their ledger
#: too: a container that silently wrote an SQLite file of its own would lose every booking.
API_NEEDS = frozenset(
    {"api_secret", "customer_ref_key", "stripe_webhook_secret", "codec_key", "database_url"}
)
WORKER_NEEDS = frozenset({"codec_key", "database_url"})
LEDGER_TOOL_NEEDS = frozenset({"database_url", "codec_key"})
DATABASE_NEEDS = frozenset({"database_url"})
REPLAY_NEEDS = frozenset({"codec_key"})
NO_NEEDS: frozenset[str] = frozenset()
#: The processes that demand settings, as the README's settings table names them.
PROCESS_NEEDS: dict[str, frozenset[str]] = {
    "the API": API_NEEDS,
    "the worker": WORKER_NEEDS,
    "`passage migrate upgrade`/`downgrade` and `passage check`": LEDGER_TOOL_NEEDS,
    "`passage migrate current`": DATABASE_NEEDS,
    "`passage replay`": REPLAY_NEEDS,
}
#: The settings named in messages, in this order (DATABASE_URL has no PASSAGE_ prefix).
_VARIABLES = {
    "api_secret": "PASSAGE_API_SECRET",
    "customer_ref_key": "PASSAGE_CUSTOMER_REF_KEY",
    "stripe_webhook_secret": "PASSAGE_STRIPE_WEBHOOK_SECRET",
    "codec_key": "PASSAGE_CODEC_KEY",
    "database_url": "DATABASE_URL",
}

#: Log levels a process accepts (`PASSAGE_LOG_LEVEL`, any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_HTTP_URLS: TypeAdapter[_HttpUrl] = TypeAdapter(_HttpUrl)


def _an_http_url(value: str) -> str:
    """An http(s) URL, kept as given (pydantic's `HttpUrl` would add a trailing slash)."""
    _HTTP_URLS.validate_python(value)
    return value


#: An http(s) URL as text.
Url = Annotated[str, AfterValidator(_an_http_url)]


class Settings(BaseSettings):
    """Every setting of every process; `Settings()` demands what the API needs (all secrets).

    Each field's docstring is its line in the README's settings table.
    """

    #: What must be given outside development; `for_process` narrows it per process.
    needs: ClassVar[frozenset[str]] = API_NEEDS

    model_config = SettingsConfigDict(
        env_prefix="PASSAGE_",
        extra="ignore",
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    env: Environment = Environment.PRODUCTION
    """`development` lets every process run on the development secrets (`make up` and the tests
    set it); in any other mode a process refuses to start (exit 2, naming the variable) while a
    setting it uses is unset or a placeholder (`changeme`, the development values, ...)."""

    temporal_address: str = "127.0.0.1:7233"
    """Temporal frontend (gRPC), `host:port`; Temporal Cloud:
    `<namespace>.<account>.tmprl.cloud:7233` (mTLS) or `<region>.<cloud>.api.temporal.io:7233`
    (API key)."""
    temporal_namespace: str = "default"
    """Temporal namespace (Temporal Cloud: `<namespace>.<account>`)."""
    task_queue: str = "passage-bookings"
    """Task queue the workers poll and the API starts bookings on (every worker of a deployment
    shares it)."""
    temporal_api_key: str = Field(default="", repr=False)
    """Temporal Cloud API key (sent as `Authorization: Bearer`); turns TLS on."""
    temporal_tls: bool | None = None
    """TLS to Temporal: unset turns it on with an API key or a client certificate; `true` with the
    system's roots; `false` forces plaintext."""
    temporal_tls_client_cert: FilePath | None = None
    """mTLS: PEM file of the client certificate (with `PASSAGE_TEMPORAL_TLS_CLIENT_KEY`)."""
    temporal_tls_client_key: FilePath | None = None
    """mTLS: PEM file of the client certificate's private key."""
    temporal_tls_server_ca_cert: FilePath | None = None
    """PEM file of the CA that signed the server's certificate (default: the system's roots)."""
    temporal_tls_server_name: str = ""
    """Server name for SNI and the certificate check, when it is not the address's host."""

    supplier_url: Url = "http://127.0.0.1:8100"
    """Supplier API (the simulator)."""
    supplier_timeout_seconds: float = Field(default=5.0, gt=0)
    """Timeout of one supplier call."""

    stripe_api_base: Url = "http://127.0.0.1:8420"
    """Stripe API base (the emulator; production `https://api.stripe.com`)."""
    stripe_api_key: str = Field(default="sk_test_passage", repr=False)
    """Stripe secret key (placeholders are refused)."""
    stripe_webhook_secret: str = Field(default="", repr=False)
    """Endpoint secret that verifies `Stripe-Signature`."""

    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'ledger.sqlite3'}", validation_alias="DATABASE_URL"
    )
    """The booking ledger (SQLAlchemy URL; production:
    `postgresql+psycopg://user:password@host:5432/db`)."""

    api_url: Url = "http://127.0.0.1:8000"
    """Where the API is reached (the staff CLI, the demo)."""
    api_host: str = "127.0.0.1"
    """Address `python -m api` listens on (`0.0.0.0` in a container)."""
    api_port: int = Field(default=8000, ge=1, le=65535)
    """Port `python -m api` listens on."""
    api_secret: str = Field(default="", repr=False)
    """Key of the HMACs that derive booking ids and access tokens (`openssl rand -hex 32`)."""
    staff_keys: str = Field(default="", repr=False)
    """Comma-separated staff API keys (`staff_$(openssl rand -hex 24)` each)."""
    codec_key: str = Field(default="", repr=False)
    """AES-256-GCM key of the payload codec (urlsafe base64 of 32 bytes: `python -c "from
    passage.codec import new_key; print(new_key())"`) and root of the ledger's keys: the customer
    and the travellers are stored encrypted, the e-mail searched by a keyed hash. Development:
    empty leaves payloads unencrypted."""
    codec_old_keys: str = Field(default="", repr=False)
    """Comma-separated codec keys that were `PASSAGE_CODEC_KEY` before a rotation: still read
    (payloads, ledger fields, the e-mail search), never written (docs/upgrades.md)."""
    customer_ref_key: str = Field(default="", repr=False)
    """Key of the keyed hash that turns an e-mail into `CustomerRef` (never the e-mail in clear;
    `openssl rand -hex 32`)."""
    codec_cors_origins: str = "http://127.0.0.1:8233,http://localhost:8233"
    """Comma-separated origins allowed to call the API's codec endpoint (the Temporal Web UI);
    empty: none. In development a request from one of them on loopback may decode."""
    codec_oidc_issuer: str = ""
    """Issuer (`iss`) of the OIDC access tokens the Temporal Web UI forwards to the codec endpoint
    (`TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`); empty: no token is accepted, only staff keys."""
    codec_oidc_audience: str = ""
    """Audience (`aud`) those access tokens must name (required with the issuer)."""
    codec_oidc_jwks_url: str = ""
    """The identity provider's signing keys (JWKS); empty: discovered from the issuer's
    `/.well-known/openid-configuration`."""

    log_level: str = "INFO"
    """Log level of every process: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."""
    log_format: LogFormat | None = None
    """`json` (one JSON object a line) or `console` (readable lines); unset: `console` in
    development, `json` anywhere else."""
    otlp_endpoint: str = ""
    """OpenTelemetry traces: base URL of an OTLP/HTTP receiver (e.g. `http://otel-collector:4318`;
    spans go to `<it>/v1/traces`), to which the API and the worker export their spans; empty:
    no tracing at all."""

    worker_health_host: str = "127.0.0.1"
    """Address of the worker's health endpoint."""
    worker_health_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of the worker's health endpoint (`GET /healthz`, probed by `python -m
    passage.worker_health`); unset: none."""
    worker_metrics_address: str | None = None
    """`host:port` where each worker serves the Temporal SDK's Prometheus metrics (`GET
    /metrics`: workflow task latency, activity failures, ...); unset: none."""

    price_tolerance_minor: int = 0
    """Price movement (minor units) accepted without asking the customer."""
    price_acceptance_timeout_seconds: int = 15 * 60
    """How long a booking waits for a price decision."""
    payment_action_timeout_seconds: int = 15 * 60
    """How long a booking waits for 3-D Secure."""

    # Token buckets of the public `/bookings` endpoints (api/rate_limits.py): per client IP and
    # per booking id, tokens per second and burst. Generous so `make up`, the demo and load tests
    # from one address are not throttled; a rate of 0 turns that limit off.
    rate_limit_client_per_second: float = Field(default=20.0, ge=0)
    """Token bucket per client IP on `/bookings...` (429 + `Retry-After`): tokens per second;
    `0` turns it off."""
    rate_limit_client_burst: int = Field(default=60, ge=0)
    """Burst of the bucket per client IP."""
    rate_limit_booking_per_second: float = Field(default=10.0, ge=0)
    """Token bucket per booking id on `/bookings/{id}...`: tokens per second; `0` turns it off."""
    rate_limit_booking_burst: int = Field(default=30, ge=0)
    """Burst of the bucket per booking id."""
    rate_limit_max_keys: int = Field(default=10_000, ge=1)
    """Buckets kept per kind (least recently used dropped first): bounds memory under a flood."""

    checkout_enabled: bool = False
    """Serve the reference checkout page at `/checkout` and the offer list it shows
    (`/checkout/offers`); `make up` turns it on."""
    stripe_js_url: str = "https://js.stripe.com/v3/"
    """The Stripe.js the checkout page loads (`make up`: the emulator's)."""
    stripe_publishable_key: str = "pk_test_passage"
    """The publishable key the checkout page hands Stripe.js (anything but `pk_...` is
    refused)."""
    events_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    """How often the API's one shared poller reads the watched bookings' versions for the event
    streams (on PostgreSQL, NOTIFY wakes them and the poll is a 1 s safety net)."""
    events_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    """How often an idle event stream sends a heartbeat comment."""

    @field_validator("worker_metrics_address")
    @classmethod
    def _optional_host_and_port(cls, value: str | None) -> str | None:
        return cls._host_and_port(value) if value and value.strip() else None

    @field_validator("temporal_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        match = _HOST_PORT.match(value.strip())
        if not match or not 1 <= int(match["port"]) <= 65535:
            raise ValueError("must be host:port, e.g. temporal:7233")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _a_database_url(cls, value: str) -> str:
        if not _URL_SCHEME.match(value.strip()):
            raise ValueError(
                "must be an SQLAlchemy URL, e.g. postgresql+psycopg://user:password@host:5432/db"
            )
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _a_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("otlp_endpoint")
    @classmethod
    def _an_otlp_endpoint(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if value.strip() and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.query
        ):
            raise ValueError(
                "PASSAGE_OTLP_ENDPOINT must be an http(s) URL, e.g. http://otel-collector:4318"
            )
        return value.strip()

    @field_validator("codec_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (part.strip() for part in value.split(",")):
            parts = urlsplit(origin)
            if origin and (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or parts.query
            ):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port], no path), "
                    "e.g. http://localhost:8080"
                )
        return value

    @model_validator(mode="after")
    def _an_oidc_issuer_with_its_audience(self) -> Self:
        if self.codec_oidc_issuer.strip() and not self.codec_oidc_audience.strip():
            raise ValueError(
                "PASSAGE_CODEC_OIDC_AUDIENCE must be set with PASSAGE_CODEC_OIDC_ISSUER (a token "
                "issued for another application must not open the codec)"
            )
        return self

    @field_validator("codec_oidc_jwks_url")
    @classmethod
    def _a_jwks_url(cls, value: str) -> str:
        return _an_http_url(value.strip()) if value.strip() else ""

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable(cls, value: str) -> str:
        if not value.startswith("pk_"):
            raise ValueError("PASSAGE_STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_...)")
        return value

    @field_validator("stripe_api_key")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        if is_placeholder(value):
            raise ValueError("PASSAGE_STRIPE_API_KEY is a placeholder")
        return value

    @field_validator("codec_key")
    @classmethod
    def _a_codec_key(cls, value: str) -> str:
        return _a_codec_key(value, "PASSAGE_CODEC_KEY")

    @field_validator("codec_old_keys")
    @classmethod
    def _old_codec_keys(cls, value: str) -> str:
        keys = [key.strip() for key in value.split(",") if key.strip()]
        return ",".join(_a_codec_key(key, "PASSAGE_CODEC_OLD_KEYS (each)") for key in keys)

    @model_validator(mode="after")
    def _old_keys_with_a_writing_key(self) -> Self:
        if self.codec_old_keys and not self.codec_key:
            raise ValueError(
                "PASSAGE_CODEC_OLD_KEYS needs PASSAGE_CODEC_KEY: the old keys are only read, "
                "the codec key writes"
            )
        return self

    @model_validator(mode="after")
    def _a_client_certificate_with_its_key(self) -> Self:
        if (self.temporal_tls_client_cert is None) != (self.temporal_tls_client_key is None):
            raise ValueError(
                "PASSAGE_TEMPORAL_TLS_CLIENT_CERT and PASSAGE_TEMPORAL_TLS_CLIENT_KEY go together "
                "(mTLS needs the certificate and its key)"
            )
        return self

    @model_validator(mode="after")
    def _fail_closed(self) -> Self:
        """Development may run on the development secrets; anything else needs what it uses."""
        if self.env == Environment.DEVELOPMENT:
            for name, dev_value in DEV_SECRETS.items():
                if not getattr(self, name).strip():
                    setattr(self, name, dev_value)
            return self
        needs = type(self).needs
        refused = [
            variable
            for name, variable in _VARIABLES.items()
            if name in needs and name != "database_url" and is_placeholder(getattr(self, name))
        ]
        # Optional secrets: unset is fine, a placeholder is not.
        optional = {
            "PASSAGE_TEMPORAL_API_KEY": [self.temporal_api_key],
            "PASSAGE_STAFF_KEYS": [key.strip() for key in self.staff_keys.split(",")],
        }
        refused += [
            variable
            for variable, values in optional.items()
            if any(is_placeholder(value) for value in values if value.strip())
        ]
        problems = []
        password = _password(self.database_url)
        if password and is_placeholder(password):
            problems.append(
                "DATABASE_URL has a placeholder password (docker-compose: POSTGRES_PASSWORD)"
            )
        if refused:
            problems.append(
                f"{', '.join(refused)} must be set to a real secret (missing or a placeholder)"
            )
        if "database_url" in needs and "database_url" not in self.model_fields_set:
            problems.append(
                "DATABASE_URL must be set (outside development no tool assumes the embedded "
                "SQLite file of the current directory)"
            )
        if problems:
            raise ValueError(
                "; ".join(problems) + "; only PASSAGE_ENV=development runs on the development "
                "defaults"
            )
        return self

    @property
    def ledger_key(self) -> str:
        """The root of the ledger's keys (passage.codec.LedgerCipher): the codec key.

        In development a fixed key stands in when PASSAGE_CODEC_KEY is unset; elsewhere a
        process that reads or writes the ledger's personal data requires the codec key.
        """
        if self.codec_key:
            return self.codec_key
        if self.env == Environment.DEVELOPMENT:
            return DEV_LEDGER_KEY
        raise RuntimeError("PASSAGE_CODEC_KEY is not set: the ledger's personal data needs it")

    @classmethod
    def for_process(
        cls, process: str, needs: frozenset[str] = API_NEEDS, **values: Any
    ) -> Settings:
        """The settings of a composition root, or exit 2 with what is wrong (no traceback).

        Args:
            process: named in the message, e.g. "the API".
            needs: what this process must be given outside development (e.g. WORKER_NEEDS).
            values: settings given on the command line (they count as set).
        """
        try:
            return _requiring(needs)(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{variable(str(item['loc'][0])) if item['loc'] else 'settings'}: {item['msg']}"
                for item in error.errors()
            )
            print(f"{process} cannot start: {problems}", file=sys.stderr, flush=True)
            raise SystemExit(2) from error

    @property
    def log_json(self) -> bool:
        """Whether log lines are JSON: `PASSAGE_LOG_FORMAT`, or JSON outside development."""
        if self.log_format is not None:
            return self.log_format == LogFormat.JSON
        return self.env != Environment.DEVELOPMENT

    @property
    def codec_cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.codec_cors_origins.split(",") if origin.strip()]

    @property
    def old_codec_key_list(self) -> tuple[str, ...]:
        """The codec keys still read after a rotation (`PASSAGE_CODEC_OLD_KEYS`)."""
        return tuple(key for key in self.codec_old_keys.split(",") if key)

    @property
    def staff_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.staff_keys.split(",") if key.strip())


@functools.cache
def _requiring(needs: frozenset[str]) -> type[Settings]:
    """Settings that demand `needs` outside development (one class per set, made once)."""
    if needs == Settings.needs:
        return Settings
    return type("Settings", (Settings,), {"needs": needs, "__module__": __name__})


def variable(field: str) -> str:
    """The environment variable of a field (`api_port` -> `PASSAGE_API_PORT`), or `field` itself
    when it is no field (e.g. already a variable such as `DATABASE_URL`)."""
    info = Settings.model_fields.get(field)
    if info is None:
        return field
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _a_codec_key(value: str, variable: str) -> str:
    """`value` stripped, if it is empty or a codec key; the message names `variable`, never the
    value."""
    if value.strip() and is_placeholder(value):
        raise ValueError(
            f"{variable} is a placeholder: generate a key with "
            "python -c 'from passage.codec import new_key; print(new_key())'"
        )
    if value.strip():
        try:
            size = len(base64.urlsafe_b64decode(value.strip()))
        except (binascii.Error, ValueError):
            size = 0
        if size != 32:
            raise ValueError(
                f"{variable} must be urlsafe base64 of 32 bytes "
                "(python -c 'from passage.codec import new_key; print(new_key())')"
            )
    return value.strip()


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


# --- the README's settings table ---------------------------------------------------------------

#: The lines around the generated table in README.md.
TABLE_BEGIN = (
    "<!-- settings table: generated by `python -m passage.settings --readme README.md` -->"
)
TABLE_END = "<!-- end of the settings table -->"


def markdown_table() -> str:
    """One row per field of `Settings`: its variable, its default and its docstring."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        if not info.description:
            raise ValueError(f"Settings.{name} has no docstring: the README table needs one")
        default = _default_text(info.default)
        required_by = [process for process, needs in PROCESS_NEEDS.items() if name in needs]
        if required_by:
            default += f"; required outside development by {', '.join(required_by)}"
        if name in DEV_SECRETS:
            default += "; development: a development value"
        meaning = " ".join(info.description.split())
        rows.append(f"| `{variable(name)}` | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str) -> str:
    """`readme` with the text between TABLE_BEGIN and TABLE_END replaced by `markdown_table()`."""
    before, begin, rest = readme.partition(TABLE_BEGIN + "\n")
    _, end, after = rest.partition(TABLE_END)
    if not begin or not end:
        raise ValueError(f"the README has no {TABLE_BEGIN!r} ... {TABLE_END!r} section")
    return before + begin + markdown_table() + end + after


def _default_text(default: object) -> str:
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, StrEnum):
        return f"`{default.value}`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m passage.settings", description="The settings table of the README."
    )
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--markdown", action="store_true", help="print the table")
    output.add_argument("--readme", type=Path, help="rewrite the table in this README")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(), end="")
    else:
        args.readme.write_text(with_table(args.readme.read_text()))


if __name__ == "__main__":
    main()
