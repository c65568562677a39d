"""The error body: one shape for every endpoint and status, with every bad field named."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import examples


class FieldError(BaseModel):
    field: str = Field(description="Path of the field, e.g. items[0].quantity")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: VALIDATION_ERROR, NOT_FOUND, CONFLICT, ...")
    message: str
    fields: list[FieldError] | None = Field(
        default=None, description="Every bad field (validation errors only)."
    )


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint and every status."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.ERROR_RESPONSE]})

    error: ErrorDetail
