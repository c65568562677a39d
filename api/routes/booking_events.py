"""`GET /bookings/{id}/events`: the booking's status changes and timeline, pushed (SSE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from sse_starlette import EventSourceResponse

from api.deps import AccessTokenDep, BookingIdPath, ServiceDep, StateDep, enforce_rate_limits
from api.errors import error_responses
from api.events import booking_events

router = APIRouter(
    prefix="/bookings", tags=["bookings"], dependencies=[Depends(enforce_rate_limits)]
)

_EXAMPLE = """\
event: booking
data: {"booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12", "status": "HOLDING", "...": "..."}

event: timeline
id: 7
retry: 1000
data: {"seq": 7, "at": "2026-05-04T10:00:00.480000+00:00", "step": "HOLD it_1", \
"outcome": "ok", "detail": "until ...", "actor": null}

event: booking
data: {"booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12", "status": "HOLDING", "...": "..."}

: ping - 2026-05-04 10:00:15.480000+00:00

"""

LastEventIdHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=1_000_000,
        description="The `id:` of the last event received: the stream goes on with the timeline "
        "entry after it (no gaps, no repeats).",
    ),
]


@router.get(
    "/{booking_id}/events",
    summary="Follow a booking live (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "`text/event-stream`: a `timeline` event per timeline entry (`id:` = "
            "its `seq`), a `booking` event (the body of GET /bookings/{id}, no `id:`) on "
            "connecting and after each batch of entries, a `: ping` comment every 15 s; the "
            "stream ends after a terminal status (CONFIRMED, FAILED, CANCELLED).",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        **error_responses(404, 422, 429, 503),
    },
)
async def follow_booking(
    booking_id: BookingIdPath,
    access_token: AccessTokenDep,
    service: ServiceDep,
    state: StateDep,
    last_event_id: LastEventIdHeader = None,
) -> EventSourceResponse:
    """Push every change of the booking as it is recorded (within about 0.1 s).

    Authorized like GET /bookings/{id}, by `Authorization: Bearer <access_token>` (404 when
    wrong): never put the token in the URL. Browsers open it with `fetch()` and read the body
    (EventSource cannot send the header); reconnect with `Last-Event-ID` to resume. Served from
    the ledger: an open stream costs the booking's workflow and its worker nothing.
    """
    await service.authorize_customer(booking_id, access_token)
    assert access_token is not None  # authorize_customer refuses none
    events = booking_events(
        booking_id,
        access_token,
        last_event_id or 0,
        service=service,
        watcher=state.events,
    )
    return EventSourceResponse(
        events,
        ping=state.settings.events_heartbeat_seconds,
        headers={"Cache-Control": "no-store"},
    )
