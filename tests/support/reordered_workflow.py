"""A release with a bug replay must catch: the booking workflow authorizing before it holds."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.booking import BookingWorkflow
    from workflows.contracts import BookingView
    from workflows.model import BookingRequest


@workflow.defn(name="BookingWorkflow")
class ReorderedBookingWorkflow(BookingWorkflow):
    """Two steps swapped without `workflow.patched`: every running booking's history breaks."""

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        return await super().run(request)

    async def _book(self) -> None:
        await self._price_items()
        await self._authorize()  # before the holds: the commands come in another order
        await self._hold_items()
        deadline = asyncio.ensure_future(self._hold_deadline())
        deadline.cancel()
        await self._confirm_items()
        await self._capture()
