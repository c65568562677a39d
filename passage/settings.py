"""Settings from the environment (the same for `make up`, CI and production).

Built explicitly by each composition root (worker, API, CLI, devstack): nothing is read at import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".passage")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSAGE_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "passage-bookings"

    supplier_url: str = "http://127.0.0.1:8100"
    supplier_timeout_seconds: float = 5.0

    stripe_api_base: str = "http://127.0.0.1:8420"
    stripe_api_key: str = "sk_test_passage"
    stripe_webhook_secret: str = "whsec_passage_dev"

    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'ledger.sqlite3'}", validation_alias="DATABASE_URL"
    )

    api_url: str = "http://127.0.0.1:8000"
    staff_keys: str = ""
    #: Key of the payload codec (urlsafe base64 of 32 bytes); empty leaves payloads unencrypted.
    codec_key: str = ""
    #: Key of the keyed hash that turns an e-mail into `CustomerRef` (never the e-mail in clear).
    customer_ref_key: str = "passage-dev-customer-ref-key"

    price_tolerance_minor: int = 0
    price_acceptance_timeout_seconds: int = 15 * 60
    payment_action_timeout_seconds: int = 15 * 60

    @field_validator("stripe_api_key")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        if value.strip() in ("", "changeme", "sk_live_changeme"):
            raise ValueError("PASSAGE_STRIPE_API_KEY is a placeholder")
        return value

    @property
    def staff_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.staff_keys.split(",") if key.strip())
