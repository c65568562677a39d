"""The floor: Passage's durable shape on bare Temporal, with activities that do nothing.

Three parallel quotes, three parallel holds, an authorization, three parallel confirmations and a
capture: the same activities a 3-item booking schedules on its happy path, in the same order and
with the same parallelism, and none of Passage's own work (no ledger, memo, search attributes,
codec, timeline, compensation bookkeeping). What Temporal itself costs for this shape on this
machine is what Passage is measured against.

Imported by the floor worker's sandbox: stdlib and temporalio only, nothing happens at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

#: Passage's activity timeout (workflows/calls.py), so the scheduled events carry the same options.
ACTIVITY_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class FloorBooking:
    booking_id: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class FloorStep:
    booking_id: str
    item: str = ""


@dataclass(frozen=True)
class FloorAnswer:
    ref: str


@dataclass(frozen=True)
class FloorOutcome:
    booking_id: str
    confirmed: int


@activity.defn(name="floor_quote")
async def floor_quote(step: FloorStep) -> FloorAnswer:
    return FloorAnswer(f"{step.booking_id}:{step.item}:quote")


@activity.defn(name="floor_hold")
async def floor_hold(step: FloorStep) -> FloorAnswer:
    return FloorAnswer(f"{step.booking_id}:{step.item}:hold")


@activity.defn(name="floor_authorize")
async def floor_authorize(step: FloorStep) -> FloorAnswer:
    return FloorAnswer(f"{step.booking_id}:authorize")


@activity.defn(name="floor_confirm")
async def floor_confirm(step: FloorStep) -> FloorAnswer:
    return FloorAnswer(f"{step.booking_id}:{step.item}:confirm")


@activity.defn(name="floor_capture")
async def floor_capture(step: FloorStep) -> FloorAnswer:
    return FloorAnswer(f"{step.booking_id}:capture")


Step = Callable[[FloorStep], Awaitable[FloorAnswer]]
ACTIVITIES = (floor_quote, floor_hold, floor_authorize, floor_confirm, floor_capture)


@workflow.defn(name="BenchFloorWorkflow")
class FloorWorkflow:
    @workflow.run
    async def run(self, booking: FloorBooking) -> FloorOutcome:
        await self._each(booking, floor_quote)
        await self._each(booking, floor_hold)
        await self._one(booking, floor_authorize)
        confirmed = await self._each(booking, floor_confirm)
        await self._one(booking, floor_capture)
        return FloorOutcome(booking.booking_id, len(confirmed))

    @staticmethod
    async def _each(booking: FloorBooking, step: Step) -> list[FloorAnswer]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        step,
                        FloorStep(booking.booking_id, item),
                        start_to_close_timeout=ACTIVITY_TIMEOUT,
                    )
                    for item in booking.items
                )
            )
        )

    @staticmethod
    async def _one(booking: FloorBooking, step: Step) -> FloorAnswer:
        answer: FloorAnswer = await workflow.execute_activity(
            step,
            FloorStep(booking.booking_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        )
        return answer
