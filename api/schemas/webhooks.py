"""The answer to a Stripe webhook delivery."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"received": True, "outcome": "forwarded"}]}
    )

    received: bool = True
    outcome: str = Field(description="forwarded, duplicate or ignored")
