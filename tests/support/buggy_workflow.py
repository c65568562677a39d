"""Releases with a bug in workflow code: the booking workflow failing as it confirms or undoes."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.booking import BookingWorkflow
    from workflows.contracts import BookingView
    from workflows.model import BookingRequest


@workflow.defn(name="BookingWorkflow")
class BuggyBookingWorkflow(BookingWorkflow):
    """Fails once the items are held and the payment authorized: a fixed release must find
    them still held and authorized, and go on from there."""

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        return await super().run(request)

    async def _confirm_items(self) -> None:
        raise ZeroDivisionError("a bug in the confirmation step")


@workflow.defn(name="BookingWorkflow")
class TimingOutBookingWorkflow(BookingWorkflow):
    """The same bug as a `TimeoutError` (a `wait_condition` timeout nobody catches), which the
    SDK would turn into a failed workflow rather than a failed workflow task."""

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        return await super().run(request)

    async def _confirm_items(self) -> None:
        raise TimeoutError("a wait in the confirmation step timed out")


@workflow.defn(name="BookingWorkflow")
class BuggyUndoBookingWorkflow(BookingWorkflow):
    """A bug in the undo path, raised as a Temporal failure (which the SDK would turn into a
    failed workflow, leaving the holds and the authorization in place for good)."""

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        return await super().run(request)

    async def _compensate(self) -> None:
        raise ApplicationError("a bug in the undo path")
