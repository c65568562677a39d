"""Temporal's remote codec protocol, so authorized operators see payloads decoded in the Web UI.

`POST /codec/encode` and `/codec/decode` take and return `{"payloads": [...]}` with each payload
in protobuf JSON (base64 `metadata` values and `data`). Who may call them (the Web UI's operators,
staff) is `api.codec_access`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Header
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from api.codec_access import CodecCallerDep
from api.deps import CodecDep
from api.errors import ApiError, error_responses
from api.schemas.codec import CodecPayloads

router = APIRouter(prefix="/codec", tags=["codec"])

NamespaceHeader = Annotated[
    str | None, Header(alias="X-Namespace", description="Sent by the Temporal UI; informative")
]


@router.post(
    "/encode",
    response_model=CodecPayloads,
    summary="Encode payloads with the payload codec",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def encode(
    body: CodecPayloads, caller: CodecCallerDep, codec: CodecDep, namespace: NamespaceHeader = None
) -> CodecPayloads:
    """Encrypt payloads as the worker would (identity when no codec key is configured)."""
    return await _apply(body, None if codec is None else codec.encode)


@router.post(
    "/decode",
    response_model=CodecPayloads,
    summary="Decode payloads with the payload codec",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def decode(
    body: CodecPayloads, caller: CodecCallerDep, codec: CodecDep, namespace: NamespaceHeader = None
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
