"""One booking driven through interruptions on the time-skipping server, with the scripted fakes.

`BookingRun` starts a worker and a BookingWorkflow, and gives the tests what they deliver while a
step is blocked: cancel updates (recorded as accepted or rejected, their answers collected), a
Temporal workflow cancel, a worker restart, and skipped time. `settle` then lets time pass until
the booking settles and every accepted update has its answer.

Time on the test server: it skips only while someone unlocks it (awaiting a workflow's result, or
`env.sleep`), and every activity in flight holds a lock of its own. A blocked fake therefore
freezes the clock; `skip(..., while_blocked=True)` lifts that one lock for exactly the time
skipped, which must stay shorter than the activities' 30 s start-to-close timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.support.fake_activities import FakeBookingActivities
from tests.support.invariants import SETTLED, SentUpdate
from workflows.booking import BookingWorkflow
from workflows.contracts import (
    ActivityName,
    BookingView,
    CancelBookingRequest,
    PaymentEvent,
    PriceDecision,
)
from workflows.model import BookingRequest

#: How long (real time) a test waits for something the workflow does without timers.
REAL_WAIT = 20.0
_TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


class BookingRun:
    """A BookingWorkflow on its own task queue, and every update sent to it."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        fake: FakeBookingActivities,
        request: BookingRequest,
        *,
        restartable: bool = False,
    ) -> None:
        self.env = env
        self.fake = fake
        self.request = request
        self.updates: list[SentUpdate] = []
        self._restartable = restartable
        self._task_queue = f"tq-{uuid.uuid4().hex}"
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []
        self._draining: list[asyncio.Task[None]] = []
        self._answers: dict[int, asyncio.Task[BookingView]] = {}
        self._handle: WorkflowHandle[Any, BookingView] | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> BookingRun:
        self._start_worker(first=True)
        self._handle = await self.env.client.start_workflow(
            BookingWorkflow.run,
            self.request,
            id=f"booking-{self.request.booking_id}",
            task_queue=self._task_queue,
            execution_timeout=timedelta(days=3),
            # A workflow task handed to the stopped worker's last poll is lost until this timeout.
            task_timeout=timedelta(seconds=1) if self._restartable else None,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.fake.unblock.set()
        for task in self._answers.values():
            task.cancel()
        await asyncio.gather(*self._answers.values(), return_exceptions=True)
        if self._handle is not None and not await self.closed():
            # A booking left waiting (NEEDS_ATTENTION): end it before its worker goes.
            await self._handle.terminate("the test is over")
        for worker, _ in self._workers:
            await worker.shutdown()
        await asyncio.gather(*self._draining, return_exceptions=True)

    def _start_worker(self, *, first: bool = False) -> None:
        options: dict[str, Any] = {}
        if first and self._restartable:
            # No sticky cache: the next workflow task must go to whichever worker polls, and the
            # blocked activity may finish on this worker while it drains.
            options = {
                "max_cached_workflows": 0,
                "graceful_shutdown_timeout": timedelta(seconds=10),
            }
        worker = Worker(
            self.env.client,
            task_queue=self._task_queue,
            workflows=[BookingWorkflow],
            activities=self.fake.activities(),
            **options,
        )
        self._workers.append((worker, asyncio.ensure_future(worker.run())))

    async def restart_worker(self) -> None:
        """Stop the worker (its activity in flight may finish while it drains) and start another.

        The new worker has nothing cached, so it replays the history before it goes on.
        """
        assert self._restartable, "start the run with restartable=True"
        worker, _ = self._workers.pop()
        self._draining.append(asyncio.ensure_future(worker.shutdown()))
        await asyncio.sleep(0.1)  # let its pollers stop before the new worker polls
        self._start_worker()

    # --- reading ---------------------------------------------------------------------------------

    @property
    def handle(self) -> WorkflowHandle[Any, BookingView]:
        assert self._handle is not None
        return self._handle

    async def view(self) -> BookingView:
        if await self.closed():
            return await self.handle.result()
        return await self.handle.query(BookingWorkflow.view)

    async def closed(self) -> bool:
        description = await self.handle.describe()
        status = description.raw_description.workflow_execution_info.status
        return status not in (
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING,
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW,
        )

    async def wait_for(
        self, predicate: Callable[[BookingView], bool], within: float = REAL_WAIT
    ) -> BookingView:
        """Poll the live view in real time (the clock does not skip meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            view = await self.view()
            if predicate(view):
                return view
            if loop.time() > deadline:
                raise AssertionError(f"timed out; last status {view.status}: {view.timeline}")
            await asyncio.sleep(0.02)

    async def wait_quiet(self, in_flight: int = 0, within: float = REAL_WAIT) -> bool:
        """Wait until only `in_flight` calls (the blocked ones) are pending and no workflow task.

        Interrupt a booking only when it is quiet: when a call lands while the workflow task that
        cancels it is in flight, the test server refuses that task ("ACTIVITY_UNKNOWN") and the
        workflow stalls, where a real server would hand it a new task at once. Ledger snapshots
        (`record_booking`, never cancelled) do not count. False if not quiet within `within`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if await self._quiet(in_flight):
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)

    async def wait_idle(self, within: float = REAL_WAIT) -> bool:
        """Wait until the workflow has handled what arrived (no workflow task is pending)."""
        return await self.wait_quiet(in_flight=-1, within=within)

    async def _quiet(self, in_flight: int) -> bool:
        if await self.closed():
            return True
        description = await self.handle.describe()
        if in_flight >= 0:
            pending = description.raw_description.pending_activities
            calls = [a for a in pending if a.activity_type.name != ActivityName.RECORD_BOOKING]
            if len(calls) != in_flight:
                return False
        events = (await self.handle.fetch_history()).events
        kinds = [event.event_type for event in events]
        completed = [i for i, kind in enumerate(kinds) if kind == _TASK_COMPLETED]
        return _TASK_SCHEDULED not in (kinds[completed[-1] + 1 :] if completed else kinds)

    async def wait_started(self, name: str, within: float = REAL_WAIT) -> None:
        """Wait until the fake call `name` has started (e.g. "AUTHORIZE", "HOLD it_1")."""
        await asyncio.wait_for(self.fake.started[name].wait(), within)

    # --- messages --------------------------------------------------------------------------------

    async def cancel(self, actor: str = "customer", note: str = "") -> SentUpdate:
        """Send `cancel`; it is accepted (its answer is collected later) or rejected."""
        return await self._update("cancel", actor, CancelBookingRequest(actor=actor, note=note))

    async def decide_price(self, accept: bool, actor: str = "customer") -> SentUpdate:
        return await self._update("decide_price", actor, PriceDecision(accept, actor=actor))

    async def _update(self, name: str, actor: str, arg: object) -> SentUpdate:
        before = (await self.view()).status
        sent = SentUpdate(name=name, actor=actor, status_before=before)
        self.updates.append(sent)
        method = BookingWorkflow.cancel if name == "cancel" else BookingWorkflow.decide_price
        try:
            handle: WorkflowUpdateHandle[BookingView] = await self.handle.start_update(
                method,  # type: ignore[arg-type]
                arg,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        except RPCError as err:
            if not await self.closed():
                raise
            sent.rejection = f"the workflow has completed ({err.message})"
            sent.status_after = before
            return sent
        answer = asyncio.ensure_future(handle.result())
        # A rejection comes back with the start (the validator's reason as the failure).
        await asyncio.wait({answer}, timeout=0.05)
        failure = answer.exception() if answer.done() else None
        if isinstance(failure, WorkflowUpdateFailedError):
            sent.rejection = str(failure.cause or failure)
        else:
            self._answers[id(sent)] = answer
        sent.status_after = (await self.view()).status
        return sent

    async def stop(self) -> None:
        """Ask Temporal to cancel the workflow (what `temporal workflow cancel` does)."""
        await self.handle.cancel()

    async def payment_event(self, event_id: str) -> None:
        payment_intent = f"pi_{self.request.booking_id}"
        event = PaymentEvent(event_id, "payment_intent.amount_capturable_updated", payment_intent)
        await self.handle.signal(BookingWorkflow.payment_event, event)

    # --- time ------------------------------------------------------------------------------------

    async def skip(self, seconds: float, *, while_blocked: bool) -> None:
        """Skip `seconds` of server time; `while_blocked` when a fake call holds the clock."""
        test_service = self.env.client.test_service
        before = await self.env.get_current_time()
        if while_blocked:
            await test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
        try:
            await asyncio.wait_for(self.env.sleep(seconds), REAL_WAIT)
        finally:
            if while_blocked:
                await test_service.lock_time_skipping(LockTimeSkippingRequest())
        skipped = (await self.env.get_current_time() - before).total_seconds()
        assert seconds <= skipped < seconds + 5, f"asked to skip {seconds} s, skipped {skipped} s"

    async def settle(
        self, rounds: int = 60, step: float = 10.0, within: float = 25.0
    ) -> BookingView:
        """Let time pass until the booking settles, nothing runs, and every update is answered.

        Gives up after `rounds` steps of `step` seconds of server time (10 minutes, well inside
        the booking's timeouts), or after `within` seconds of real time when something holds the
        clock; the caller's invariant checks then say what is missing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        view = await self.view()
        for _ in range(rounds):
            answered = all(task.done() for task in self._answers.values())
            # Quiet too: an optional item's undo may still run after CONFIRMED.
            if view.status in SETTLED and answered and await self._quiet(0):
                break
            if loop.time() > deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.env.sleep(step)), step)
            view = await self.view()
        await self._collect_answers()
        return view

    async def _collect_answers(self) -> None:
        for sent in self.updates:
            task = self._answers.get(id(sent))
            if task is None:
                continue
            if not task.done():
                task.cancel()
                sent.unanswered = "still waiting when the booking settled"
                continue
            try:
                sent.answer = task.result()
            except asyncio.CancelledError:
                sent.unanswered = "cancelled"
            except Exception as err:  # the workflow ended or failed under it
                sent.unanswered = f"{type(err).__name__}: {err}"
