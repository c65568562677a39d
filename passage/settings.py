"""Settings from the environment (the same for `make up`, CI and production).

Built explicitly by each composition root (worker, API, CLI, devstack): nothing is read at import.

Secrets fail closed: outside development (`PASSAGE_ENV=development`, which `make up` and the test
fixtures set) a missing or placeholder secret is a validation error naming its variable, so the
API and the worker refuse to start instead of signing tokens with a key everybody knows. Each
process demands only what it uses (`API_NEEDS`, `WORKER_NEEDS`, ...): the worker never holds the
key that derives every access token, and `passage migrate` needs the ledger, not the webhook secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".passage")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


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
#: through the API with a staff key) need no secret.
API_NEEDS = frozenset({"api_secret", "customer_ref_key", "stripe_webhook_secret", "codec_key"})
WORKER_NEEDS = frozenset({"codec_key"})
LEDGER_TOOL_NEEDS = frozenset({"database_url", "codec_key"})
DATABASE_NEEDS = frozenset({"database_url"})
REPLAY_NEEDS = frozenset({"codec_key"})
NO_NEEDS: frozenset[str] = frozenset()
#: The settings named in messages, in this order (DATABASE_URL has no PASSAGE_ prefix).
_VARIABLES = {
    "api_secret": "PASSAGE_API_SECRET",
    "customer_ref_key": "PASSAGE_CUSTOMER_REF_KEY",
    "stripe_webhook_secret": "PASSAGE_STRIPE_WEBHOOK_SECRET",
    "codec_key": "PASSAGE_CODEC_KEY",
    "database_url": "DATABASE_URL",
}


class Settings(BaseSettings):
    """Every setting of every process; `Settings()` demands what the API needs (all secrets)."""

    #: What must be given outside development; `for_process` narrows it per process.
    needs: ClassVar[frozenset[str]] = API_NEEDS

    model_config = SettingsConfigDict(
        env_prefix="PASSAGE_", extra="ignore", hide_input_in_errors=True
    )

    #: `development` allows the development secrets; anything else is production.
    env: Environment = Environment.PRODUCTION

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "passage-bookings"

    supplier_url: str = "http://127.0.0.1:8100"
    supplier_timeout_seconds: float = 5.0

    stripe_api_base: str = "http://127.0.0.1:8420"
    stripe_api_key: str = "sk_test_passage"
    #: Endpoint secret that verifies `Stripe-Signature`.
    stripe_webhook_secret: str = Field(default="", repr=False)

    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'ledger.sqlite3'}", validation_alias="DATABASE_URL"
    )

    api_url: str = "http://127.0.0.1:8000"
    #: Key of the HMACs that derive booking ids and access tokens.
    api_secret: str = Field(default="", repr=False)
    staff_keys: str = ""
    #: Key of the payload codec (urlsafe base64 of 32 bytes) and root of the ledger's keys;
    #: required outside development; empty in development leaves payloads unencrypted.
    codec_key: str = Field(default="", repr=False)
    #: Key of the keyed hash that turns an e-mail into `CustomerRef` (never the e-mail in clear).
    customer_ref_key: str = Field(default="", repr=False)

    price_tolerance_minor: int = 0
    price_acceptance_timeout_seconds: int = 15 * 60
    payment_action_timeout_seconds: int = 15 * 60

    #: Token buckets of the public `/bookings` endpoints (api/rate_limits.py): per client IP and
    #: per booking id, tokens per second and burst. Generous so `make up`, the demo and load tests
    #: from one address are not throttled; a rate of 0 turns that limit off.
    rate_limit_client_per_second: float = Field(default=20.0, ge=0)
    rate_limit_client_burst: int = Field(default=60, ge=0)
    rate_limit_booking_per_second: float = Field(default=10.0, ge=0)
    rate_limit_booking_burst: int = Field(default=30, ge=0)
    #: Buckets kept per kind (least recently used dropped first): bounds memory under a flood.
    rate_limit_max_keys: int = Field(default=10_000, ge=1)

    #: The reference checkout page (`GET /checkout`) and the offer list it shows; `make up` turns
    #: it on, production leaves it off unless asked.
    checkout_enabled: bool = False
    #: The Stripe.js the page loads: Stripe's own, or the Stripe emulator's fake one (`make up`).
    stripe_js_url: str = "https://js.stripe.com/v3/"
    #: The publishable key the page hands Stripe.js (`pk_...`; a secret key is refused).
    stripe_publishable_key: str = "pk_test_passage"
    #: Event streams (`GET /bookings/{id}/events`): how often the API's one shared poller reads the
    #: watched bookings' versions from the ledger, and how often an idle stream sends a heartbeat.
    events_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    events_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable(cls, value: str) -> str:
        if not value.startswith("pk_"):
            raise ValueError("PASSAGE_STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_...)")
        return value

    @field_validator("stripe_api_key")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        if value.strip() in ("", "changeme", "sk_live_changeme"):
            raise ValueError("PASSAGE_STRIPE_API_KEY is a placeholder")
        return value

    @field_validator("codec_key")
    @classmethod
    def _a_codec_key(cls, value: str) -> str:
        if value.strip():
            try:
                size = len(base64.urlsafe_b64decode(value.strip()))
            except (binascii.Error, ValueError):
                size = 0
            if size != 32:
                raise ValueError(
                    "PASSAGE_CODEC_KEY must be urlsafe base64 of 32 bytes "
                    "(python -c 'from passage.codec import new_key; print(new_key())')"
                )
        return value.strip()

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
            if name in needs
            and name != "database_url"
            and getattr(self, name).strip().lower() in PLACEHOLDERS | {""}
        ]
        problems = []
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
                f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}"
                for item in error.errors()
            )
            print(f"{process} cannot start: {problems}", file=sys.stderr, flush=True)
            raise SystemExit(2) from error

    @property
    def staff_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.staff_keys.split(",") if key.strip())


@functools.cache
def _requiring(needs: frozenset[str]) -> type[Settings]:
    """Settings that demand `needs` outside development (one class per set, made once)."""
    if needs == Settings.needs:
        return Settings
    return type("Settings", (Settings,), {"needs": needs, "__module__": __name__})
