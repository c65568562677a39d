"""A request id on every log line of an API request, and the booking id where the path has one.

The id is the caller's `X-Request-ID` when it looks like an id (a proxy or the checkout set it, so
one id follows the request through every hop), else a new one; it is echoed in the response's
`X-Request-ID`. Anything else in the header (an e-mail, a long string) is not trusted into the
logs: a new id replaces it. Both ids are bound as structlog context variables for the request, so
the API's own lines and uvicorn's access line (rendered by passage/logs.py) carry them.
"""

from __future__ import annotations

import re
import uuid

import structlog
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.identity import BOOKING_ID

HEADER = "x-request-id"
#: What a caller's id may look like: a UUID, a trace id, `req-123`... and nothing with an `@`.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def request_id_of(scope: Scope) -> str:
    """The caller's `X-Request-ID` if it is sane, else a new random id."""
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            candidate = str(value.decode("latin-1")).strip()
            if SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestIds:
    """Binds `request_id` (and `booking_id`) for the request and echoes `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        await self.app(scope, receive, send_with_id)
        # Unbound only after a normal end: when the app raises, the error handler outside this
        # middleware logs the failure in this same context, so its line keeps the ids (the
        # context ends with the request's task).
        structlog.contextvars.reset_contextvars(**tokens)
        structlog.contextvars.unbind_contextvars("booking_id")


async def bind_path_booking_id(request: Request) -> None:
    """App dependency: the `{booking_id}` of the route's path, when it has the shape of one (a
    path is the caller's text and may be anything). Async, so the binding is made in the
    request's own context (a sync dependency would run in a thread's copy of it)."""
    booking_id = request.path_params.get("booking_id")
    if isinstance(booking_id, str) and BOOKING_ID.fullmatch(booking_id):
        bind_booking_id(booking_id)


def bind_booking_id(booking_id: str) -> None:
    """Name the booking on the request's remaining lines once a route learns it (`POST
    /bookings` creates the id)."""
    structlog.contextvars.bind_contextvars(booking_id=booking_id)
