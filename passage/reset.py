"""Reset a booking's workflow to the workflow task before a step, once a release fixed a bug.

A retry runs the stuck step again on the path the booking is on; a reset takes the booking off
that path: Temporal starts a new run from the workflow task that scheduled the step (`--to`, by
default the forward step whose failure started the undo) and terminates the old run, and the
workers of the new release carry it on from there. Every step is keyed by business identity
(`<booking>:<item>:hold`, the payment's idempotency key), so the steps the new run repeats find
what the old run did at the supplier and at Stripe: nothing is held, booked or charged twice.

What the new run gets of what came after its reset point: Stripe's payment events (signals) are
reapplied, they only prompt a re-read; updates are not (`RESET_REAPPLY_EXCLUDE_TYPE_UPDATE`): the
staff retries and resolves were answers to the old run's stuck step, and a price decision the
customer gave after the point is asked again. A booking with an accepted cancel is never reset
(the cancel must be carried out), nor one whose workflow has ended or that is confirmed.

The ledger learns of the reset before Temporal is asked (activities/adapters/sql_runs.py): the
new run's writes supersede the old run's from its first one, and its timeline continues after
the old run's entries and a RESET entry with who, when, the step and the note.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyExcludeType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.ports import ResetLedger
from workflows.contracts import ActivityName, BookingView
from workflows.model import BookingStatus, ItemStatus, PaymentStatus, workflow_id_for

#: The step each activity belongs to, as the timeline and `booking.step` name it.
STEP_OF_ACTIVITY = {
    ActivityName.QUOTE_ITEM.value: "PRICE",
    ActivityName.HOLD_ITEM.value: "HOLD",
    ActivityName.AUTHORIZE_PAYMENT.value: "AUTHORIZE",
    ActivityName.GET_PAYMENT.value: "PAYMENT_ACTION",
    ActivityName.CONFIRM_ITEM.value: "CONFIRM",
    ActivityName.CAPTURE_PAYMENT.value: "CAPTURE",
    ActivityName.CANCEL_ITEM.value: "CANCEL",
    ActivityName.RELEASE_ITEM.value: "RELEASE",
    ActivityName.VOID_PAYMENT.value: "VOID",
    ActivityName.REFUND_PAYMENT.value: "REFUND",
}
#: The forward steps, in saga order: the default reset point is the first of them that failed.
FORWARD_STEPS = ("PRICE", "HOLD", "AUTHORIZE", "PAYMENT_ACTION", "CONFIRM", "CAPTURE")
ALIASES = {"QUOTE": "PRICE"}
UNDONE_PAYMENTS = (
    PaymentStatus.VOIDED,
    PaymentStatus.REFUNDED,
    PaymentStatus.PARTIALLY_REFUNDED,
)
#: Statuses with nothing worth resetting: done, or a cancellation that must be carried out.
NOT_RESETTABLE = {
    BookingStatus.CONFIRMED: "it is CONFIRMED: nothing failed; cancel it if it must not stand",
    BookingStatus.CANCELLING: "it is being cancelled, and an accepted cancel is carried out",
    BookingStatus.CANCELLED: "it is CANCELLED: nothing is held or charged",
    BookingStatus.FAILED: "it FAILED and was undone: nothing is held or charged; book again",
}


class ResetRefused(Exception):
    """The booking cannot be reset (to that step); `reason` says why, for the 409."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ResetPoint:
    """Where a reset goes: the step, and the WorkflowTaskCompleted event that scheduled it."""

    step: str
    event_id: int


@dataclass(frozen=True)
class ResetOutcome:
    step: str
    event_id: int
    base_run_id: str
    run_id: str
    #: Whether the new run wrote the ledger within the wait (else it is still starting).
    recorded: bool


def default_step(view: BookingView) -> str:
    """The forward step whose failure started the undo (`CONFIRM it_1`), from the timeline."""
    for entry in view.timeline:
        if entry.outcome == "failed" and entry.step.split(" ")[0] in FORWARD_STEPS:
            return entry.step
    raise ResetRefused(
        "no forward step failed, so there is nothing to reset to by default; "
        f"name one with --to ({', '.join(FORWARD_STEPS)}, optionally with an item: 'CONFIRM it_1')"
    )


def normalized_step(step: str) -> tuple[str, str | None]:
    """(`CONFIRM`, `it_1`) of 'confirm it_1'; refuses what names no step."""
    words = step.split()
    if not words or len(words) > 2:
        raise ResetRefused(f"{step!r} is not a step: name one like 'CONFIRM' or 'CONFIRM it_1'")
    name = ALIASES.get(words[0].upper(), words[0].upper())
    if name not in STEP_OF_ACTIVITY.values():
        known = ", ".join(dict.fromkeys(STEP_OF_ACTIVITY.values()))
        raise ResetRefused(f"{step!r} is not a step: one of {known}, optionally with an item")
    return name, words[1] if len(words) == 2 else None


def refusal_for(view: BookingView, step: str | None) -> str | None:
    """Why a booking in this state is not reset to `step` (None: it may be).

    A reset to a forward step is refused once an undo really changed the outside world (an item
    released or cancelled, the payment voided or refunded): the new run would count on holds,
    bookings or an authorization that are gone. A reset to an undo step inherits the undos
    before it.
    """
    reason = NOT_RESETTABLE.get(view.status)
    if reason is not None:
        return reason
    if any(entry.step == "CANCEL" and entry.outcome == "requested" for entry in view.timeline):
        return "a cancel was accepted and is carried out; a reset would drop it"
    if step is not None and normalized_step(step)[0] not in FORWARD_STEPS:
        return None
    undone = [
        f"{item.item_id} {item.status.value}"
        for item in view.items
        if item.status in (ItemStatus.RELEASED, ItemStatus.CANCELLED)
    ]
    if view.payment.status in UNDONE_PAYMENTS:
        undone.append(f"payment {view.payment.status.value}")
    if undone:
        return (
            f"the old run already undid part of it ({', '.join(undone)}), which a new run from "
            "a forward step would count on; finish the undo with retry or resolve, or reset "
            "--to the undo step"
        )
    return None


class BookingReset:
    """Resets bookings' workflows: finds the reset point, tells the ledger, asks Temporal."""

    def __init__(
        self,
        client: Client,
        ledger: ResetLedger,
        *,
        rpc_timeout: timedelta = timedelta(seconds=10),
        recorded_within: timedelta = timedelta(seconds=10),
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._rpc_timeout = rpc_timeout
        self._recorded_within = recorded_within

    async def reset(self, view: BookingView, to: str | None, actor: str, note: str) -> ResetOutcome:
        """Reset the booking of `view` (the ledger's) to the task before step `to`.

        Raises:
            ResetRefused: not in a state worth resetting, or no such step in its current run.
        """
        booking_id = view.booking_id
        refusal = refusal_for(view, to)
        if refusal is not None:
            raise ResetRefused(f"{booking_id} cannot be reset: {refusal}")
        handle = self._client.get_workflow_handle(workflow_id_for(booking_id))
        description = await handle.describe(rpc_timeout=self._rpc_timeout)
        if description.status != WorkflowExecutionStatus.RUNNING:
            state = description.status.name if description.status else "closed"
            raise ResetRefused(f"{booking_id} cannot be reset: its workflow is {state}")
        base_run_id = description.run_id
        step = to or default_step(view)
        point = await self.find_point(booking_id, base_run_id, step)
        generation = await self._ledger.begin_reset(
            booking_id, base_run_id, point.step, actor, note
        )
        try:
            response = await self._client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=self._client.namespace,
                    workflow_execution=WorkflowExecution(
                        workflow_id=workflow_id_for(booking_id), run_id=base_run_id
                    ),
                    # In clear in the history: the note (free text) stays in the ledger only.
                    reason=f"passage bookings reset --to {point.step!r} by {actor}",
                    workflow_task_finish_event_id=point.event_id,
                    request_id=str(uuid.uuid4()),
                    reset_reapply_exclude_types=[
                        ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE
                    ],
                    identity=f"passage reset ({actor})",
                ),
                retry=True,
                timeout=self._rpc_timeout,
            )
            run_id = response.run_id
        except Exception:
            # A reset whose answer was lost may have happened: then the pending row must stay
            # for the new run, or the ledger would take it for the old one.
            current = await self._current_run_if_reset(booking_id, base_run_id)
            if current is None:
                with contextlib.suppress(Exception):
                    await self._ledger.abandon_reset(booking_id, generation)
                raise
            run_id = current
        with contextlib.suppress(Exception):  # the new run claims the row by itself anyway
            await self._ledger.name_reset_run(booking_id, generation, run_id)
        recorded = await self._wait_recorded(booking_id, generation)
        return ResetOutcome(point.step, point.event_id, base_run_id, run_id, recorded)

    async def _current_run_if_reset(self, booking_id: str, base_run_id: str) -> str | None:
        """The current run's id if it is no longer `base_run_id` (None: not, or unknown)."""
        try:
            handle = self._client.get_workflow_handle(workflow_id_for(booking_id))
            description = await handle.describe(rpc_timeout=self._rpc_timeout)
        except Exception:
            return None
        return description.run_id if description.run_id != base_run_id else None

    async def find_point(self, booking_id: str, run_id: str, step: str) -> ResetPoint:
        """The workflow task of `run_id` that first scheduled `step` (`CONFIRM`, `CONFIRM it_1`)."""
        name, item_id = normalized_step(step)
        handle = self._client.get_workflow_handle(workflow_id_for(booking_id), run_id=run_id)
        history = await handle.fetch_history(rpc_timeout=self._rpc_timeout)
        for event in history.events:
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                continue
            attributes = event.activity_task_scheduled_event_attributes
            if STEP_OF_ACTIVITY.get(attributes.activity_type.name) != name:
                continue
            if item_id is not None and await self._item_of(event) != item_id:
                continue
            label = f"{name} {item_id}" if item_id else name
            return ResetPoint(label, attributes.workflow_task_completed_event_id)
        raise ResetRefused(
            f"{booking_id} cannot be reset to {step!r}: its current run has not scheduled that "
            "step (a confirmed booking's later runs have no forward steps)"
        )

    async def _item_of(self, event: HistoryEvent) -> str | None:
        """The `item_id` of an activity's input, decoded with the client's codec."""
        payloads: Sequence[Any] = event.activity_task_scheduled_event_attributes.input.payloads
        if not payloads:
            return None
        try:
            [argument] = await self._client.data_converter.decode([payloads[0]])
        except Exception:  # an input this release cannot read names no item
            return None
        item_id = argument.get("item_id") if isinstance(argument, dict) else None
        return item_id if isinstance(item_id, str) else None

    async def _wait_recorded(self, booking_id: str, generation: int) -> bool:
        """Wait (bounded) until the new run has written the ledger, so reads show it."""
        deadline = asyncio.get_running_loop().time() + self._recorded_within.total_seconds()
        while True:
            with contextlib.suppress(Exception):
                if await self._ledger.reset_recorded(booking_id, generation):
                    return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.1)
