"""Request body limits: a body above its path's limit is refused with 413 before any route runs.

The limit is checked on the declared `Content-Length` and again on the bytes actually received
(a chunked or lying client), so an oversized body is never read past the limit nor parsed.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

KIB = 1024
#: Every POST body by default: a checkout of 10 items and 9 travellers is well under 16 KiB.
DEFAULT_MAX_BODY = 64 * KIB
#: Larger limits by path prefix: Stripe events carry whole objects; the Temporal UI sends many
#: encrypted payloads to the codec at once.
MAX_BODY_BY_PREFIX: Mapping[str, int] = {
    "/webhooks/": 512 * KIB,
    "/codec/": 4 * 1024 * KIB,
}


def max_body_for(path: str) -> int:
    for prefix, limit in MAX_BODY_BY_PREFIX.items():
        if path.startswith(prefix):
            return limit
    return DEFAULT_MAX_BODY


class BodySizeLimit:
    """ASGI middleware: 413 (the one error shape) for a request body above its limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = max_body_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit, scope, receive, send)
            return
        # Read the body up to the limit, then replay it: the app never sees a byte beyond it.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit, scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        413, f"the request body is larger than {limit // KIB} KiB", code="PAYLOAD_TOO_LARGE"
    )
    await response(scope, receive, send)
