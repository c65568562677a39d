"""Reading `GET /bookings/{id}/events` as a client does: a Server-Sent Events parser on httpx.

`stream_events(http, booking, ...)` yields `Event`s (with the monotonic time each arrived) until
the server ends the stream, `until` says stop, or `within` seconds pass (AssertionError).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    event: str
    data: dict[str, Any]
    id: str | None
    received: float  # time.monotonic() when it arrived


@dataclass
class Stream:
    """What one stream delivered and how it ended."""

    events: list[Event]
    heartbeats: int = 0
    #: True when the server ended the stream (not the client).
    ended_by_server: bool = False

    def timeline(self) -> list[Event]:
        return [event for event in self.events if event.event == "timeline"]

    def ids(self) -> list[int]:
        return [int(event.id or 0) for event in self.timeline()]

    def last_booking(self) -> dict[str, Any]:
        return [event for event in self.events if event.event == "booking"][-1].data


async def read_stream(
    http: httpx.AsyncClient,
    booking_id: str,
    token: str,
    *,
    last_event_id: int | None = None,
    until: Callable[[Event], bool] = lambda _event: False,
    within: float = 30.0,
    for_seconds: float | None = None,
) -> Stream:
    """Read the booking's events until the server ends the stream or `until(event)` is true.

    With `for_seconds`, reading also stops (without an error) once that long has passed;
    otherwise a stream still open after `within` seconds is an AssertionError.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    stream = Stream(events=[])
    try:
        async with asyncio.timeout(for_seconds or within):
            async with http.stream(
                "GET", f"/bookings/{booking_id}/events", headers=headers
            ) as reply:
                assert reply.status_code == 200, await reply.aread()
                assert reply.headers["content-type"].startswith("text/event-stream")
                async for event in _parse(reply, stream):
                    stream.events.append(event)
                    if until(event):
                        return stream
    except TimeoutError:
        if for_seconds is None:
            raise AssertionError(f"the stream was still open after {within} s") from None
        return stream
    stream.ended_by_server = True
    return stream


async def _parse(reply: httpx.Response, stream: Stream) -> AsyncIterator[Event]:
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in reply.aiter_lines():
        if line == "":
            if data:
                yield Event(
                    fields.get("event", "message"),
                    json.loads("\n".join(data)),
                    fields.get("id"),
                    time.monotonic(),
                )
            fields, data = {}, []
        elif line.startswith(":"):
            stream.heartbeats += 1
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
