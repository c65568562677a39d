"""Temporal's remote codec protocol, so authorized operators see payloads decoded in the Web UI.

`POST /codec/encode` and `/codec/decode` take and return `{"payloads": [...]}` with each payload
in protobuf JSON (base64 `metadata` values and `data`). Staff key required; CORS lets the UI's
origin call it (see `api.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Header
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from api.deps import CodecDep, StaffDep
from api.errors import ApiError, error_responses
from api.schemas import CodecPayloads

router = APIRouter(prefix="/codec", tags=["codec"])

NamespaceHeader = Annotated[
    str | None, Header(alias="X-Namespace", description="Sent by the Temporal UI; informative")
]


@router.post(
    "/encode",
    response_model=CodecPayloads,
    summary="Encode payloads with the payload codec",
    responses=error_responses(400, 401, 413, 422),
)
async def encode(
    body: CodecPayloads, staff: StaffDep, codec: CodecDep, namespace: NamespaceHeader = None
) -> CodecPayloads:
    """Encrypt payloads as the worker would (identity when no codec key is configured)."""
    return await _apply(body, None if codec is None else codec.encode)


@router.post(
    "/decode",
    response_model=CodecPayloads,
    summary="Decode payloads with the payload codec",
    responses=error_responses(400, 401, 413, 422),
)
async def decode(
    body: CodecPayloads, staff: StaffDep, codec: CodecDep, namespace: NamespaceHeader = None
) -> CodecPayloads:
    """Decrypt payloads for the Temporal Web UI or CLI (`--codec-endpoint`, `--codec-auth`)."""
    return await _apply(body, None if codec is None else codec.decode)


async def _apply(
    body: CodecPayloads, transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]] | None
) -> CodecPayloads:
    try:
        payloads = [json_format.ParseDict(item, Payload()) for item in body.payloads]
    except (json_format.ParseError, ValueError, TypeError) as err:
        raise ApiError(400, "payloads are not protobuf JSON", code="MALFORMED_PAYLOAD") from err
    if transform is not None:
        try:
            payloads = await transform(payloads)
        except (InvalidTag, ValueError) as err:
            raise ApiError(400, "a payload cannot be decoded", code="MALFORMED_PAYLOAD") from err
    return CodecPayloads(payloads=[json_format.MessageToDict(payload) for payload in payloads])
