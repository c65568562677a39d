"""Temporal's remote codec protocol as the API's codec endpoints speak it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import examples


class CodecPayloads(BaseModel):
    """Temporal's remote codec protocol: payloads in protobuf JSON (base64 metadata and data)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [examples.CODEC_PAYLOADS]},
    )

    payloads: list[dict[str, Any]] = Field(max_length=1000)
