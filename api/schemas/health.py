"""The liveness and readiness answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "temporal": "ok"}]}
    )

    status: str = Field(description="ready or unavailable")
    temporal: str = Field(description="ok or unavailable")
