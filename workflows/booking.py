"""BookingWorkflow: one durable saga per booking.

Forward: quote every item -> hold every item -> authorize the total -> confirm every item (the
cheapest to undo first) -> capture what was confirmed. Every forward call registers its undo first,
so a call that succeeded but whose answer was lost is still undone.

Interruptions are state, never task cancellation (docs/interruptions.md): a customer or staff
cancel, a Temporal cancel, the hold deadline and the price or 3-D Secure timeouts set the stop
reason; every forward step races its activity against it, waits for the call in flight to land,
and then the undos run in reverse, each retried until it succeeds. An undo refused for good parks
the booking in NEEDS_ATTENTION until an operator retries or resolves it. The workflow never ends
with money or inventory still held, and never returns before every accepted message is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from workflows import calls, operator_view
from workflows.contracts import (
    ActivityName,
    AttentionView,
    AuthorizePaymentInput,
    BookingError,
    BookingView,
    CancelBookingRequest,
    CancelItemInput,
    CancellationStatus,
    CapturePaymentInput,
    ConfirmItemInput,
    ErrorType,
    GetPaymentInput,
    HoldItemInput,
    IntentStatus,
    ItemView,
    PaymentEvent,
    PriceDecision,
    QuoteItemInput,
    RecordBookingInput,
    RefundPaymentInput,
    ReleaseItemInput,
    StaffAction,
    VoidPaymentInput,
    VoidStatus,
)
from workflows.memo import MEMO_VIEW
from workflows.model import BookingRequest, BookingStatus, ItemStatus, Money, PaymentStatus
from workflows.saga import Compensation, Compensations, UndoKind, price_moved
from workflows.state import BookingState

T = TypeVar("T")
InputT = TypeVar("InputT")

#: Stop this long before the earliest hold expires so confirmation never races expiry.
MAX_HOLD_MARGIN = timedelta(seconds=30)
#: Authorization retries an outage until the hold deadline stops it; this bounds it otherwise.
AUTHORIZE_WINDOW = timedelta(hours=1)
#: How often a booking waiting for 3-D Secure re-reads the PaymentIntent when no webhook came:
#: after 10 s, then (since LEAN_HISTORY_PATCH) twice as long each time up to a minute, because
#: the webhook is what normally wakes it, and a thousand waiting bookings polling every 10 s
#: kept the worker and the server busy (bench: 0.43 s of server CPU per second).
PAYMENT_POLL_SECONDS = 10.0
PAYMENT_POLL_MAX_SECONDS = 60.0

#: Bookings started since this patch publish once per activation, and write the ledger as a local
#: activity with no memo upserts (docs/performance.md); older histories replay the old way.
LEAN_HISTORY_PATCH = "lean-history"
#: Bookings confirmed since this patch confirm non-cancellable items after the non-refundable ones
#: (BookingState.confirmation_order); the marker is written only where the order changes.
UNCANCELLABLE_LAST_PATCH = "uncancellable-last"
#: Bookings hit by a bug since this patch fail their workflow task instead of being undone, so the
#: release that fixes the bug resumes them (docs/upgrades.md); older histories replay the old way.
BUGS_FAIL_THE_TASK_PATCH = "bugs-fail-the-task"
#: Bookings started since this patch make each item step's first call for all its items in one
#: activity (workflows/calls.py BatchSpec); older histories replay item by item.
BATCHED_ITEMS_PATCH = "batched-items"
CANCELS = (ErrorType.CANCELLED_BY_CUSTOMER, ErrorType.CANCELLED_BY_STAFF, ErrorType.STOPPED)
CONFIRMATION_STATUSES = (BookingStatus.CONFIRMING, BookingStatus.CAPTURING)


class SagaFailedError(Exception):
    """A non-optional forward step failed for good: the saga must compensate."""

    def __init__(self, error: BookingError) -> None:
        super().__init__(error.message)
        self.error = error


class SagaStoppedError(Exception):
    """The stop reason won the race against a forward step (its call has landed)."""


class WorkflowBugError(RuntimeError):
    """A bug in workflow code that would otherwise fail the whole workflow: it fails the task.

    The SDK fails the workflow, not the task, for a Temporal failure (an activity's failure that
    escaped the saga) and for `TimeoutError`; raised in their stead, this keeps the booking's
    workflow task retrying until a release without the bug resumes it.
    """


@dataclass(frozen=True)
class OperatorCommand:
    """A staff retry or resolve, bound to the one stuck step (attention) it was sent for."""

    attention: int
    command: str
    action: StaffAction


def _typed_error(error_type: str, message: str) -> BookingError:
    """A booking error from a failure's type; a type not ours stays named in the message."""
    typed = ErrorType(error_type)
    if typed != error_type:
        return BookingError(type=typed, message=f"{error_type}: {message}")
    return BookingError(type=typed, message=message)


def _error_of(err: BaseException, default: ErrorType) -> BookingError:
    """The booking error behind an activity failure (its typed cause, or `default`)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return _typed_error(cause.type, cause.message)
    if isinstance(cause, TemporalTimeoutError):
        return BookingError(type=default, message="timed out")
    return BookingError(type=default, message=str(cause or err))


@workflow.defn(name="BookingWorkflow")
class BookingWorkflow:
    @workflow.init
    def __init__(self, request: BookingRequest) -> None:
        # A confirmed booking continues as new with its view in the memo (see _serve_cancellation).
        resumed = (
            workflow.memo_value(MEMO_VIEW, type_hint=BookingView)
            if workflow.info().continued_run_id
            else None
        )
        self._request = request
        self._state = (
            BookingState.resumed(request, resumed) if resumed else BookingState.new(request)
        )
        self._compensations = Compensations()
        self._stop_reason: BookingError | None = None
        self._workflow_cancelled = False
        #: A cancel accepted while a failed booking is (about to be) undone: it ends CANCELLED.
        self._cancelled_while_undoing = False
        self._confirmation_begun = resumed is not None
        self._confirmed = resumed is not None
        self._authorization: AuthorizePaymentInput | None = None
        self._authorized_at: datetime | None = None
        self._price_decision: PriceDecision | None = None
        self._payment_events: set[str] = set()
        self._payment_hint = False
        self._cancel_request: CancelBookingRequest | None = None
        self._attention_seq = 0
        self._operator: OperatorCommand | None = None
        self._optional_undos: list[asyncio.Task[None]] = []
        self._deferred_undos: list[Compensation] = []
        self._records: list[workflow.ActivityHandle[None]] = []
        self._published_status: BookingStatus | None = resumed.status if resumed else None
        self._lean = False
        self._batching = False
        self._open_batches: dict[ActivityName, calls.OpenBatch] = {}
        self._publisher: asyncio.Future[None] | None = None
        #: Lean publishing: a change not published yet, and a publication in flight.
        self._unpublished = False
        self._publishing = False
        #: Timeline entries a landed ledger write holds (later writes send only what follows).
        self._recorded_through = 0
        #: Timeline entries that a completed workflow task made (history keeps them for good).
        self._committed_entries = 0
        self._entries_seen = 0
        self._task_history_length = 0

    # --- run -------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        self._lean = workflow.patched(LEAN_HISTORY_PATCH)
        if self._lean:
            self._publisher = asyncio.ensure_future(self._publish_changes())
            self._batching = workflow.patched(BATCHED_ITEMS_PATCH)
        resumed = self._confirmed
        if not self._state.created_at:
            self._state.created_at = self._now()
        self._describe()
        if not resumed:
            self._event("RECEIVED", "ok", f"{len(request.items)} item(s)")
        saga = asyncio.ensure_future(self._saga(resumed))
        while not saga.done():
            try:
                await asyncio.shield(saga)
            except asyncio.CancelledError:
                # A Temporal cancel: a stop request like any other, never a cancelled step.
                if saga.done():
                    break
                self._workflow_cancelled = True
                if not self._confirmed:  # a confirmed booking is only undone by a cancel update
                    self._stop(BookingError(ErrorType.STOPPED, "the workflow was asked to stop"))
        saga.result()  # re-raises continue-as-new, and a bug in histories before the patch
        return self._view()

    async def _saga(self, resumed: bool) -> None:
        try:
            await self._run_saga(resumed)
        except (FailureError, TimeoutError) as err:
            # Escaping the saga, in any step or undo, these are bugs too: the SDK would fail the
            # workflow for them, a WorkflowBugError fails only the task.
            if not workflow.patched(BUGS_FAIL_THE_TASK_PATCH):
                raise
            raise WorkflowBugError(f"{type(err).__name__}: {err}") from err

    async def _run_saga(self, resumed: bool) -> None:
        try:
            if not resumed:
                await self._book()
        except (SagaFailedError, SagaStoppedError) as ended:
            if isinstance(ended, SagaFailedError):
                self._stop(ended.error)
            await self._compensate()
        except Exception as err:
            if workflow.patched(BUGS_FAIL_THE_TASK_PATCH):
                # A bug: fail this workflow task, which Temporal retries, and leave everything
                # held and authorized as it is, so the release that fixes it resumes the booking.
                raise
            # Before the patch: undo first, then let Temporal see the failure.
            self._stop(BookingError(ErrorType.INTERNAL, type(err).__name__))
            await self._compensate()
            await self._finish()
            raise
        else:
            await self._serve_cancellation()
        await self._finish()

    async def _book(self) -> None:
        self._raise_if_stopped()  # a cancel may arrive in the very first workflow task
        await self._price_items()
        await self._hold_items()
        deadline = asyncio.ensure_future(self._hold_deadline())
        try:
            await self._check_held_prices()
            await self._authorize()
        finally:
            deadline.cancel()
        self._confirmation_begun = True
        await self._confirm_items()
        await self._capture()
        self._compensations.clear()
        self._confirmed = True
        self._set_status(BookingStatus.CONFIRMED, "CONFIRMED")
        await self._settle_optional_undos()

    async def _finish(self) -> None:
        """Before returning or continuing as new: ledger writes landed, every caller answered."""
        await self._settle_optional_undos()
        await workflow.wait_condition(
            lambda: (
                (
                    workflow.all_handlers_finished()
                    and not self._unpublished
                    and not self._publishing
                )
                or (self._publisher is not None and self._publisher.done())
            )
        )
        if self._publisher is not None and self._publisher.done():
            self._publisher.result()  # a bug stopped publishing: fail the task, never end silently
        await asyncio.gather(*self._records)

    # --- forward steps ---------------------------------------------------------------------------

    async def _price_items(self) -> None:
        self._set_status(BookingStatus.PRICING, "PRICE")
        await self._each_item(self._state.active_items(), self._quote_item)
        included = self._state.active_items()
        expected = Money.total(
            (self._request.item(view.item_id).expected_price for view in included),
            self._request.currency,
        )
        quoted = self._state.total(included)
        self._state.quoted_total = quoted
        await self._agree_price("PRICE", expected, quoted)

    async def _quote_item(self, view: ItemView) -> None:
        quote = await self._forward(
            calls.QUOTE_ITEM,
            QuoteItemInput(self._request.booking_id, view.item_id, view.offer_id, view.quantity),
            summary=f"QUOTE {view.item_id} · {view.offer_id}",
        )
        self._state.update_item(
            view.item_id,
            kind=quote.kind,
            supplier=quote.supplier,
            price=quote.price,
            cancellation=quote.cancellation,
        )

    async def _agree_price(self, step: str, agreed: Money, offered: Money) -> None:
        """Go on if `offered` is within tolerance of `agreed`; otherwise ask the customer."""
        currency = self._request.currency
        if not price_moved(agreed, offered, self._request.price_tolerance_minor):
            self._event(step, "ok", f"total {offered.amount_minor} {currency}")
            return
        detail = f"expected {agreed.amount_minor}, now {offered.amount_minor} {currency}"
        self._event(step, "changed", detail)
        timeout = self._request.price_acceptance_timeout_seconds
        if timeout <= 0:
            raise SagaFailedError(BookingError(ErrorType.PRICE_CHANGED, detail))
        previous = (self._state.status, self._state.step)
        self._price_decision = None
        self._set_status(BookingStatus.AWAITING_PRICE_ACCEPTANCE, "PRICE_ACCEPTANCE")
        timed_out = BookingError(ErrorType.PRICE_CHANGED, f"{detail}; not accepted in time")
        async with self._deadline(timedelta(seconds=timeout), timed_out):
            await workflow.wait_condition(
                lambda: self._price_decision is not None or self._stopping()
            )
        self._raise_if_stopped()
        decision = self._price_decision
        assert decision is not None
        outcome = "accepted" if decision.accept else "declined"
        self._event("PRICE_ACCEPTANCE", outcome, detail, actor=decision.actor)
        if not decision.accept:
            raise SagaFailedError(BookingError(ErrorType.PRICE_CHANGED, f"{detail}; declined"))
        self._state.quoted_total = offered
        self._set_status(*previous)

    async def _hold_items(self) -> None:
        self._set_status(BookingStatus.HOLDING, "HOLD")
        await self._each_item(self._state.active_items(), self._hold_item)

    async def _hold_item(self, view: ItemView) -> None:
        self._compensations.register(Compensation(UndoKind.RELEASE_HOLD, view.item_id))
        hold = await self._forward(
            calls.HOLD_ITEM,
            HoldItemInput(
                self._request.booking_id,
                view.item_id,
                view.offer_id,
                view.quantity,
            ),
            summary=f"HOLD {operator_view.item_label(view)}",
        )
        held_price = hold.price if hold.price is not None and hold.price != view.price else None
        self._state.update_item(
            view.item_id,
            status=ItemStatus.HELD,
            hold_ref=hold.hold_ref,
            hold_expires_at=hold.expires_at,
            held_price=held_price,
        )
        self._event(f"HOLD {view.item_id}", "ok", f"until {hold.expires_at}")

    async def _check_held_prices(self) -> None:
        """The supplier holds at its price, which may have moved since the quote."""
        active = self._state.active_items()
        moved = [view for view in active if view.held_price is not None]
        if not moved:
            return
        quoted = self._state.total(active)
        held = Money.total((view.held_price or view.price for view in active), quoted.currency)
        await self._agree_price("HOLD_PRICE", quoted, held)
        for view in moved:  # the supplier charges what it holds at
            self._state.update_item(view.item_id, price=view.held_price)
        self._state.quoted_total = held

    async def _hold_deadline(self) -> None:
        """Stop the saga before the earliest hold expires (a timer, never an execution timeout)."""
        expiries = [
            datetime.fromisoformat(view.hold_expires_at)
            for view in self._state.active_items()
            if view.status == ItemStatus.HELD and view.hold_expires_at
        ]
        if not expiries:
            return
        remaining = min(expiries) - workflow.now()
        delay = remaining - min(MAX_HOLD_MARGIN, remaining / 10)
        if delay.total_seconds() > 0:
            await workflow.sleep(delay, summary="hold deadline: stop before the first hold expires")
        self._stop(BookingError(ErrorType.HOLD_EXPIRED, "holds expired before confirmation"))

    async def _authorize(self) -> None:
        self._set_status(BookingStatus.AUTHORIZING, "AUTHORIZE")
        amount = self._state.total(self._state.active_items())
        request = AuthorizePaymentInput(
            self._request.booking_id,
            amount,
            self._request.payment_method,
            self._request.customer_ref,
        )
        self._authorization = request
        self._compensations.register(Compensation(UndoKind.VOID_PAYMENT))
        try:
            auth = await self._forward(
                calls.AUTHORIZE_PAYMENT,
                request,
                schedule_to_close=AUTHORIZE_WINDOW,
                summary=f"AUTHORIZE {operator_view.money(amount)}",
            )
        except SagaFailedError as failure:
            self._event("AUTHORIZE", "failed", failure.error.message)
            raise
        self._authorized_at = workflow.now()
        self._state.update_payment(payment_intent_id=auth.payment_intent_id)
        self._raise_if_stopped()
        if auth.status == IntentStatus.REQUIRES_ACTION:
            self._state.update_payment(client_secret=auth.client_secret)
            await self._await_payment_action(auth.payment_intent_id)
        elif auth.status != IntentStatus.REQUIRES_CAPTURE:
            raise SagaFailedError(
                BookingError(ErrorType.PAYMENT_FAILED, f"payment is {auth.status}")
            )
        self._state.update_payment(status=PaymentStatus.AUTHORIZED, authorized=amount)
        self._state.update_payment(client_secret=None)
        self._event("AUTHORIZE", "ok", f"{amount.amount_minor} {amount.currency}")

    async def _await_payment_action(self, payment_intent_id: str) -> None:
        """Wait for 3-D Secure: a webhook is a hint to re-read the PaymentIntent; poll meanwhile."""
        self._set_status(BookingStatus.AWAITING_PAYMENT_ACTION, "PAYMENT_ACTION")
        timed_out = BookingError(ErrorType.PAYMENT_ACTION_TIMEOUT, "3-D Secure not completed")
        timeout = timedelta(seconds=self._request.payment_action_timeout_seconds)
        poll = PAYMENT_POLL_SECONDS
        async with self._deadline(timeout, timed_out):
            while True:
                try:
                    await workflow.wait_condition(
                        lambda: self._payment_hint or self._stopping(),
                        timeout=timedelta(seconds=poll),
                        timeout_summary="re-read the PaymentIntent if no webhook came",
                    )
                except TimeoutError:
                    if self._lean:
                        poll = min(poll * 2, PAYMENT_POLL_MAX_SECONDS)
                self._raise_if_stopped()
                self._payment_hint = False
                state = await self._forward(
                    calls.GET_PAYMENT,
                    GetPaymentInput(payment_intent_id),
                    summary="PAYMENT_ACTION: read the PaymentIntent",
                )
                self._raise_if_stopped()
                if state.status == IntentStatus.REQUIRES_CAPTURE:
                    self._event("PAYMENT_ACTION", "ok", "customer authenticated")
                    return
                if state.status in (IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.CANCELED):
                    raise SagaFailedError(
                        BookingError(
                            ErrorType.PAYMENT_ACTION_FAILED,
                            state.failure_message or "3-D Secure authentication failed",
                        )
                    )

    async def _confirm_items(self) -> None:
        self._set_status(BookingStatus.CONFIRMING, "CONFIRM")
        now = workflow.now()
        uncancellable_last = self._state.order_puts_uncancellable_last(now) and workflow.patched(
            UNCANCELLABLE_LAST_PATCH
        )
        for group in self._state.confirmation_order(now, uncancellable_last=uncancellable_last):
            await self._each_item(group, self._confirm_item)
        if not self._state.confirmed_items():
            raise SagaFailedError(self._state.first_item_error())

    async def _confirm_item(self, view: ItemView) -> None:
        self._compensations.register(Compensation(UndoKind.CANCEL_BOOKING, view.item_id))
        confirmation = await self._forward(
            calls.CONFIRM_ITEM,
            ConfirmItemInput(self._request.booking_id, view.item_id, view.hold_ref or ""),
            summary=f"CONFIRM {operator_view.item_label(view)}",
        )
        self._state.update_item(
            view.item_id,
            status=ItemStatus.CONFIRMED,
            supplier_ref=confirmation.supplier_ref,
            confirmation_code=confirmation.confirmation_code,
        )
        self._event(f"CONFIRM {view.item_id}", "ok", confirmation.supplier_ref)

    async def _capture(self) -> None:
        self._set_status(BookingStatus.CAPTURING, "CAPTURE")
        amount = self._state.total(self._state.confirmed_items())
        payment_intent_id = self._state.payment.payment_intent_id
        assert payment_intent_id is not None and self._authorized_at is not None
        window = self._authorized_at + calls.CAPTURE_WINDOW - workflow.now()
        try:
            capture = await self._forward(
                calls.CAPTURE_PAYMENT,
                CapturePaymentInput(self._request.booking_id, payment_intent_id, amount),
                schedule_to_close=max(window, timedelta(minutes=1)),
                summary=f"CAPTURE {operator_view.money(amount)}",
            )
        except SagaFailedError as failure:
            self._event("CAPTURE", "failed", failure.error.message)
            raise
        self._state.update_payment(status=PaymentStatus.CAPTURED, captured=capture.amount)
        self._event("CAPTURE", "ok", f"{capture.amount.amount_minor} {capture.amount.currency}")
        self._raise_if_stopped()

    async def _each_item(
        self, items: list[ItemView], step: Callable[[ItemView], Awaitable[None]]
    ) -> None:
        """Run one step for every item concurrently; an optional item's failure is undone alone.

        Every item's call lands (so every undo is registered and sees its result) before the first
        failure of a non-optional item, or a stop, ends the saga.
        """
        results = await asyncio.gather(*(step(view) for view in items), return_exceptions=True)
        failures: list[SagaFailedError] = []
        for view, result in zip(items, results, strict=True):
            if isinstance(result, SagaFailedError):
                self._state.update_item(view.item_id, error=result.error)
                self._event(f"{self._state.step} {view.item_id}", "failed", result.error.message)
                if view.optional:
                    self._undo_optional(view.item_id)
                else:
                    failures.append(result)
            elif isinstance(result, BaseException) and not isinstance(result, SagaStoppedError):
                raise result
        self._raise_if_stopped()
        if failures:
            raise failures[0]
        if not self._state.active_items():
            raise SagaFailedError(self._state.first_item_error())

    async def _forward(
        self,
        spec: calls.ActivitySpec[InputT, T],
        arg: InputT,
        *,
        schedule_to_close: timedelta | None = None,
        summary: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Race a forward step against the stop reason; a stopped step still lands first.

        Returns the step's result even when the stop won meanwhile (the caller records it, so its
        undo sees it); raises SagaStoppedError when the step was cancelled by the stop, and
        SagaFailedError when it failed for good. An item step of several items goes in one batch.
        """
        batch = calls.BATCHES.get(spec.name) if self._batching and retry is None else None
        if batch is not None:
            return await self._in_batch(batch, spec, arg, summary or spec.name.value)
        handle = calls.start_forward(
            spec, arg, schedule_to_close=schedule_to_close, summary=summary, retry=retry
        )
        await workflow.wait_condition(lambda: handle.done() or self._stopping())
        if not handle.done():
            handle.cancel()
        try:
            return await handle
        except ActivityError as err:
            if self._stopping() and isinstance(err.cause, CancelledError):
                raise SagaStoppedError() from err
            default = (
                ErrorType.PAYMENT_UNAVAILABLE
                if spec.name in calls.PAYMENT_ACTIVITIES
                else ErrorType.SUPPLIER_UNAVAILABLE
            )
            raise SagaFailedError(_error_of(err, default)) from err
        except asyncio.CancelledError:
            if not self._stopping():
                raise  # the worker is evicting this workflow: not ours to handle
            raise SagaStoppedError() from None  # cancelled before it was scheduled

    async def _in_batch(
        self,
        batch_spec: calls.BatchSpec[InputT, T],
        spec: calls.ActivitySpec[InputT, T],
        arg: InputT,
        summary: str,
    ) -> T:
        """`_forward` for one item of a step whose items call together (calls.BatchSpec).

        The same race and the same answers per item: a landed batch answers every item even when
        the stop won meanwhile; an item refused for good fails; an item whose call failed
        retryably, or whose batch failed as a whole, goes on alone with the attempts left.
        """
        batch = self._open_batches.get(spec.name)
        if batch is None:
            batch = self._open_batches[spec.name] = calls.OpenBatch(batch_spec)
            batch.started = asyncio.ensure_future(self._start_batch(batch))
        index = len(batch.args)
        batch.args.append(arg)
        batch.summaries.append(summary)
        assert batch.started is not None
        handle = await batch.started
        if handle is None:  # the step's only item: its own activity, as before batches
            return await self._forward(spec, arg, summary=summary, retry=spec.retry)
        await workflow.wait_condition(lambda: handle.done() or self._stopping())
        if not handle.done() and not batch.cancel_requested:
            batch.cancel_requested = True
            handle.cancel()
        try:
            outcome = (await handle).outcomes[index]
        except (ActivityError, asyncio.CancelledError) as err:
            if self._stopping():
                raise SagaStoppedError() from err
            if isinstance(err, asyncio.CancelledError):
                raise  # the worker is evicting this workflow: not ours to handle
            workflow.logger.warning("batch failed: its items go on alone")
            return await self._alone_after_batch(spec, arg, summary)
        if outcome.failure is None:
            result: T | None = outcome.result
            assert result is not None
            return result
        if not outcome.failure.retryable:
            raise SagaFailedError(_typed_error(outcome.failure.type, outcome.failure.message))
        return await self._alone_after_batch(spec, arg, summary)

    async def _start_batch(
        self, batch: calls.OpenBatch
    ) -> workflow.ActivityHandle[calls.Outcomes[Any]] | None:
        await asyncio.sleep(0)  # no timer: the step's other items join in this same activation
        del self._open_batches[batch.spec.item.name]
        if len(batch.args) == 1:
            return None
        return calls.start_batch(batch.spec, batch.args, "; ".join(batch.summaries))

    async def _alone_after_batch(
        self, spec: calls.ActivitySpec[InputT, T], arg: InputT, summary: str
    ) -> T:
        """Retry one item on its own after its batch attempt, first pausing as Temporal would."""
        pause = spec.retry.initial_interval or timedelta(seconds=1)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                self._stopping, timeout=pause, timeout_summary=f"{summary}: retry alone"
            )
        self._raise_if_stopped()
        return await self._forward(spec, arg, summary=summary, retry=calls.retry_alone(spec))

    # --- stopping --------------------------------------------------------------------------------

    def _stop(self, error: BookingError) -> None:
        """Remember why the saga stops (the first reason wins) and what the customer is told."""
        if self._stop_reason is not None:
            return
        self._stop_reason = error
        if error.type not in (ErrorType.CANCELLED_BY_CUSTOMER, ErrorType.CANCELLED_BY_STAFF):
            self._state.error = error

    def _stopping(self) -> bool:
        return self._stop_reason is not None

    def _raise_if_stopped(self) -> None:
        if self._stop_reason is not None:
            raise SagaStoppedError()

    @contextlib.asynccontextmanager
    async def _deadline(self, after: timedelta, error: BookingError) -> AsyncIterator[None]:
        """Stop the saga with `error` if the block has not finished `after` from now."""

        async def expire() -> None:
            await workflow.sleep(after, summary=f"deadline: {error.type}")
            self._stop(error)

        timer = asyncio.ensure_future(expire())
        try:
            yield
        finally:
            timer.cancel()

    # --- undo ------------------------------------------------------------------------------------

    async def _compensate(self) -> None:
        reason = self._stop_reason
        cancelling = reason is not None and reason.type in CANCELS
        if len(self._compensations):
            status = BookingStatus.CANCELLING if cancelling else BookingStatus.COMPENSATING
            self._set_status(status, "UNDO")
        while (compensation := self._compensations.pop()) is not None:
            await self._undo(compensation, absorb_fees=True)
        await self._settle_optional_undos()
        for view in self._state.items.values():
            if view.status == ItemStatus.PENDING:
                self._state.update_item(view.item_id, status=ItemStatus.FAILED)
        if cancelling or self._cancelled_while_undoing:
            self._set_status(BookingStatus.CANCELLED, "CANCELLED")
        else:
            self._set_status(BookingStatus.FAILED, "FAILED")

    def _undo_optional(self, item_id: str) -> None:
        """Undo a failed optional item in the background: it never holds up the trip."""
        self._state.update_item(item_id, status=ItemStatus.FAILED)
        compensations = self._compensations.for_item(item_id)
        for compensation in compensations:
            self._compensations.remove(compensation)

        async def undo() -> None:
            for compensation in compensations:
                if not await self._undo(compensation, absorb_fees=True, defer_refusal=True):
                    self._deferred_undos.append(compensation)

        self._optional_undos.append(asyncio.ensure_future(undo()))

    async def _settle_optional_undos(self) -> None:
        """Wait for background undos; a refused one now waits for an operator."""
        while self._optional_undos:
            await self._optional_undos.pop(0)
        while self._deferred_undos:
            await self._undo(self._deferred_undos.pop(0), absorb_fees=True)

    async def _undo(
        self, compensation: Compensation, *, absorb_fees: bool, defer_refusal: bool = False
    ) -> bool:
        """Run one undo; False when it was refused and `defer_refusal` asked to try later."""
        if compensation.kind == UndoKind.VOID_PAYMENT:
            return await self._void_payment(compensation.step, defer_refusal)
        assert compensation.item_id is not None
        if compensation.kind == UndoKind.RELEASE_HOLD:
            return await self._release_hold(compensation.item_id, defer_refusal)
        return await self._cancel_supplier_booking(compensation.item_id, defer_refusal, absorb_fees)

    async def _release_hold(self, item_id: str, defer_refusal: bool) -> bool:
        view = self._state.item(item_id)
        step = f"{UndoKind.RELEASE_HOLD.value} {item_id}"
        release_input = ReleaseItemInput(self._request.booking_id, item_id, view.hold_ref)
        done, release = await self._until_done(
            step,
            lambda: calls.run_undo(calls.RELEASE_ITEM, release_input, self._undo_summary(step)),
            defer_refusal,
            item_id,
        )
        if not done:
            return False
        if self._state.item(item_id).status in (ItemStatus.PENDING, ItemStatus.HELD):
            self._state.update_item(item_id, status=ItemStatus.RELEASED)
        self._event(step, "ok" if release else "resolved", release.status if release else "")
        return True

    async def _cancel_supplier_booking(
        self, item_id: str, defer_refusal: bool, absorb_fees: bool
    ) -> bool:
        """Cancel a confirmed item; the fee the supplier reports is recorded, never dropped."""
        view = self._state.item(item_id)
        step = f"{UndoKind.CANCEL_BOOKING.value} {item_id}"
        cancel_input = CancelItemInput(
            self._request.booking_id, item_id, view.supplier_ref, view.hold_ref
        )
        done, cancel = await self._until_done(
            step,
            lambda: calls.run_undo(calls.CANCEL_ITEM, cancel_input, self._undo_summary(step)),
            defer_refusal,
            item_id,
        )
        if not done:
            return False
        currency = self._request.currency
        fee = Money.zero(currency)
        if cancel is not None and cancel.status == CancellationStatus.CANCELLED:
            if cancel.fee is not None:
                fee = cancel.fee
            elif view.cancellation is not None:
                fee = view.cancellation.fee_for(view.price, workflow.now())
        if cancel is None or cancel.status == CancellationStatus.CANCELLED:
            status = ItemStatus.CANCELLED
        else:  # nothing was booked at the supplier: the hold is released next
            status = self._state.item(item_id).status
        self._state.update_item(item_id, status=status, cancellation_fee=fee)
        if absorb_fees and fee.amount_minor:
            self._state.absorb_fee(fee)
        outcome = cancel.status if cancel else ""
        self._event(
            step, "ok" if cancel else "resolved", f"{outcome} fee {fee.amount_minor} {currency}"
        )
        return True

    async def _void_payment(self, step: str, defer_refusal: bool) -> bool:
        if self._authorization is None:
            return True
        void_input = VoidPaymentInput(self._authorization, self._state.payment.payment_intent_id)
        done, void = await self._until_done(
            step,
            lambda: calls.run_undo(calls.VOID_PAYMENT, void_input, self._undo_summary(step)),
            defer_refusal,
            None,
        )
        if not done:
            return False
        payment = self._state.payment
        if void is not None and void.status == VoidStatus.REFUNDED and void.refunded is not None:
            self._state.update_payment(
                status=PaymentStatus.REFUNDED, refunded=payment.refunded + void.refunded
            )
        elif void is not None and void.status == VoidStatus.VOIDED:
            self._state.update_payment(status=PaymentStatus.VOIDED)
        elif void is not None:  # no PaymentIntent was ever created: nothing is authorized
            self._state.update_payment(
                status=PaymentStatus.NONE, authorized=Money.zero(self._request.currency)
            )
        self._event(step, "ok" if void else "resolved", void.status if void else "")
        return True

    async def _until_done(
        self,
        step: str,
        call: Callable[[], Awaitable[T]],
        defer_refusal: bool,
        item_id: str | None,
    ) -> tuple[bool, T | None]:
        """Run an undo until it succeeds; a refusal waits for an operator to retry or resolve.

        Returns (True, result), (True, None) when an operator resolved the step by hand, or
        (False, None) when refused and `defer_refusal` asked to come back to it later.
        """
        while True:
            try:
                return True, await call()
            except ActivityError as err:
                error = _error_of(err, ErrorType.SUPPLIER_UNAVAILABLE)
                self._event(step, "failed", f"{error.type}: {error.message}")
                if defer_refusal:
                    return False, None
                if await self._wait_for_operator(step, error, item_id) == "resolve":
                    return True, None

    async def _wait_for_operator(self, step: str, error: BookingError, item_id: str | None) -> str:
        previous = (self._state.status, self._state.step)
        self._attention_seq += 1
        attention = self._attention_seq
        self._state.attention = AttentionView(
            step, f"{error.type}: {error.message}", self._now(), item_id
        )
        self._set_status(BookingStatus.NEEDS_ATTENTION, step)
        # Nothing cancels this wait (interruptions are state); only an eviction leaves it early.
        await workflow.wait_condition(
            lambda: self._operator is not None and self._operator.attention == attention
        )
        command = self._operator
        assert command is not None
        self._operator = None
        self._state.attention = None
        self._event(step, f"staff {command.command}", command.action.note, command.action.actor)
        self._set_status(*previous)
        return command.command

    # --- after confirmation ----------------------------------------------------------------------

    async def _serve_cancellation(self) -> None:
        """Serve cancellation while the terms allow it, continuing as new window by window."""
        window = timedelta(seconds=self._request.cancellable_for_seconds)
        try:
            await workflow.wait_condition(
                lambda: self._cancel_request is not None or self._workflow_cancelled,
                timeout=window,
                timeout_summary="cancellation window: continue as new at its end",
            )
        except TimeoutError:
            created = datetime.fromisoformat(self._state.created_at)
            horizon = timedelta(seconds=self._request.cancel_horizon_seconds)
            if self._state.still_cancellable() and workflow.now() + window - created < horizon:
                await self._finish()
                memo = {**workflow.memo(), MEMO_VIEW: self._view()}  # keeps the token hash
                workflow.continue_as_new(self._request, memo=memo)
            return
        if self._cancel_request is not None:
            await self._cancel_confirmed()
        else:
            self._event("STOP", "ok", "the workflow was asked to stop; the booking stays CONFIRMED")

    async def _cancel_confirmed(self) -> None:
        """Cancel every confirmed item at its supplier and refund what the suppliers give back."""
        self._set_status(BookingStatus.CANCELLING, "CANCEL")
        currency = self._request.currency
        for view in reversed(self._state.confirmed_items()):
            await self._cancel_supplier_booking(view.item_id, False, absorb_fees=False)
        fees = Money.total(
            (
                view.cancellation_fee
                for view in self._state.items.values()
                if view.status == ItemStatus.CANCELLED and view.cancellation_fee is not None
            ),
            currency,
        )
        payment = self._state.payment
        refund_amount = payment.captured - fees
        if refund_amount.amount_minor > 0 and payment.payment_intent_id:
            refund_input = RefundPaymentInput(
                self._request.booking_id, payment.payment_intent_id, refund_amount, "cancellation"
            )
            _, refund = await self._until_done(
                "REFUND",
                lambda: calls.run_undo(
                    calls.REFUND_PAYMENT,
                    refund_input,
                    f"REFUND {operator_view.money(refund_amount)}",
                ),
                False,
                None,
            )
            detail = f"{refund_amount.amount_minor} {currency}"
            self._event("REFUND", "ok" if refund else "resolved", detail)
            self._state.update_payment(refunded=payment.refunded + refund_amount)
        if refund_amount.amount_minor <= 0:
            status = PaymentStatus.CAPTURED  # nothing comes back: the suppliers kept it all
        elif fees.amount_minor:
            status = PaymentStatus.PARTIALLY_REFUNDED
        else:
            status = PaymentStatus.REFUNDED
        self._state.update_payment(fees_kept=fees, status=status)
        self._set_status(BookingStatus.CANCELLED, "CANCELLED")

    # --- messages --------------------------------------------------------------------------------

    @workflow.query
    def view(self) -> BookingView:
        return self._view()

    @workflow.update
    async def cancel(self, request: CancelBookingRequest) -> BookingView:
        attention = self._attention_seq
        staff = request.actor != "customer"
        if not self._cancel_accepted():
            self._event("CANCEL", "requested", request.note, actor=request.actor)
            if self._confirmed:
                self._cancel_request = request
            elif self._stop_reason is not None:  # already undoing a failure: it ends CANCELLED
                self._cancelled_while_undoing = True
            else:
                reason = ErrorType.CANCELLED_BY_STAFF if staff else ErrorType.CANCELLED_BY_CUSTOMER
                self._stop(BookingError(reason, request.note or "cancelled"))
        if staff and self._state.status == BookingStatus.NEEDS_ATTENTION and self._operator is None:
            # Staff force the cancel through: the stuck step is tried again now.
            self._operator = OperatorCommand(
                attention, "retry", StaffAction(request.actor, request.note)
            )
        await workflow.wait_condition(
            lambda: (
                self._state.status in (BookingStatus.CANCELLED, BookingStatus.FAILED)
                or (
                    self._state.status == BookingStatus.NEEDS_ATTENTION
                    and self._attention_seq > attention
                )
            )
        )
        return self._view()

    @cancel.validator
    def _validate_cancel(self, request: CancelBookingRequest) -> None:
        staff = request.actor != "customer"
        status = self._state.status
        if self._cancel_accepted():
            return
        if status == BookingStatus.FAILED:
            raise ValueError("the booking failed and has been undone")
        if status == BookingStatus.NEEDS_ATTENTION and not staff:
            raise ValueError("the booking is waiting for an operator")
        if status == BookingStatus.COMPENSATING and not staff:
            raise ValueError("the booking failed and is being undone")
        if self._confirmed:
            reason = self._state.cancellable_after_confirmation()
            if reason is not None:
                raise ValueError(reason)
            return
        if self._confirmation_begun and not staff:
            raise ValueError("confirmation in progress: cancel again once the booking is CONFIRMED")

    def _cancel_accepted(self) -> bool:
        """Whether a cancel was already accepted (a repeat is answered, not applied twice)."""
        if self._state.status in (BookingStatus.CANCELLING, BookingStatus.CANCELLED):
            return True
        if self._cancel_request is not None or self._cancelled_while_undoing:
            return True
        return self._stop_reason is not None and self._stop_reason.type in CANCELS

    @workflow.update
    async def decide_price(self, decision: PriceDecision) -> BookingView:
        self._price_decision = decision
        await workflow.wait_condition(
            lambda: self._state.status != BookingStatus.AWAITING_PRICE_ACCEPTANCE
        )
        return self._view()

    @decide_price.validator
    def _validate_price_decision(self, decision: PriceDecision) -> None:
        status = self._state.status
        if status != BookingStatus.AWAITING_PRICE_ACCEPTANCE or self._stopping():
            raise ValueError(f"the booking is {status.value}, not awaiting a price decision")
        if self._price_decision is not None:
            raise ValueError("a price decision was already given")

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        """A Stripe event: each id counts once; it only prompts a re-read of the PaymentIntent."""
        if event.event_id in self._payment_events:
            return
        self._payment_events.add(event.event_id)
        ours = self._state.payment.payment_intent_id
        if ours is None or ours == event.payment_intent_id:
            self._payment_hint = True

    @workflow.update
    async def retry(self, action: StaffAction) -> BookingView:
        return await self._operator_command("retry", action)

    @retry.validator
    def _validate_retry(self, action: StaffAction) -> None:
        self._require_attention()

    @workflow.update
    async def resolve(self, action: StaffAction) -> BookingView:
        return await self._operator_command("resolve", action)

    @resolve.validator
    def _validate_resolve(self, action: StaffAction) -> None:
        self._require_attention()

    def _require_attention(self) -> None:
        if self._state.status != BookingStatus.NEEDS_ATTENTION or self._operator is not None:
            status = self._state.status.value
            raise ValueError(f"the booking is {status}, not waiting for an operator")

    async def _operator_command(self, command: str, action: StaffAction) -> BookingView:
        sent = OperatorCommand(self._attention_seq, command, action)
        self._operator = sent
        await workflow.wait_condition(lambda: self._operator is not sent)
        return self._view()

    # --- publishing ------------------------------------------------------------------------------

    def _now(self) -> str:
        return workflow.now().isoformat()

    def _view(self) -> BookingView:
        return self._state.view(self._now())

    def _set_status(self, status: BookingStatus, step: str) -> None:
        self._state.set_status(status, step, self._now())
        # Replay-safe (quiet while a history replays); the SDK adds the workflow's ids, and
        # passage/logs.py renders the "passage" extra as fields. Ids and states only.
        workflow.logger.info("booking.status", extra={"passage": {"status": status, "step": step}})
        self._publish()

    def _event(self, step: str, outcome: str, detail: str = "", actor: str | None = None) -> None:
        self._state.event(step, outcome, detail, self._now(), actor)
        self._publish()

    def _publish(self) -> None:
        """Make the new state visible to operators, the API and the ledger.

        Lean (since LEAN_HISTORY_PATCH): `_publish_changes` publishes once per activation. Before:
        search attributes followed every change; the memo and a ledger snapshot activity followed
        every status change.
        """
        if self._lean:
            self._unpublished = True
            return
        self._upsert_search_attributes()
        self._describe()
        if self._published_status == self._state.status:
            return
        self._published_status = self._state.status
        view = self._view()
        workflow.upsert_memo({MEMO_VIEW: view})
        self._records = [handle for handle in self._records if not handle.done()]
        self._records.append(calls.start_record(RecordBookingInput(self._request, view)))

    async def _publish_changes(self) -> None:
        """Publish what changed once per activation: search attributes, then the ledger.

        It wakes only once the saga and the handlers have gone as far as they can in this
        activation, so a burst of changes costs one upsert and one ledger write. The write runs
        before this workflow task completes, so it tells which timeline entries completed tasks
        made: a task that fails is run again and may order new messages differently, so the
        ledger keeps this task's entries apart until a later write (its audit trail is
        append-only).
        """
        while True:
            await workflow.wait_condition(lambda: self._unpublished)
            self._unpublished = False
            self._publishing = True
            try:
                self._upsert_search_attributes()
                self._describe()
                view = self._view()
                committed = self._committed_timeline()
                snapshot = RecordBookingInput(
                    self._request, view, self._recorded_through, committed
                )
                if await self._record(snapshot):
                    self._recorded_through = committed
            finally:
                self._publishing = False

    def _committed_timeline(self) -> int:
        """How many timeline entries were made in workflow tasks that have completed."""
        history_length = workflow.info().get_current_history_length()
        if history_length != self._task_history_length:  # a new task: the earlier ones completed
            self._task_history_length = history_length
            self._committed_entries = self._entries_seen
        self._entries_seen = len(self._state.timeline)
        return self._committed_entries

    async def _record(self, snapshot: RecordBookingInput) -> bool:
        """The ledger write in this workflow task (True once it landed); in the background while
        the ledger is slow or down (False)."""
        self._records = [handle for handle in self._records if not handle.done()]
        if not self._records:
            try:
                await calls.record_locally(snapshot)
                return True
            except FailureError:  # a local activity's failure is raised as its cause itself
                workflow.logger.warning("ledger slow or down: recording in the background")
        # An activity runs once this task has completed: every entry it carries is kept.
        self._records.append(calls.start_record(replace(snapshot, committed_through=None)))
        return False

    def _undo_summary(self, step: str) -> str:
        """An undo step as the UI shows it: `RELEASE it_2 · harbour-hotels`."""
        kind, _, item_id = step.partition(" ")
        if item_id and item_id in self._state.items:
            return f"{kind} {operator_view.item_label(self._state.item(item_id))}"
        return step

    def _describe(self) -> None:
        """The booking's current details for the UI (a query answer, not a history event)."""
        workflow.set_current_details(operator_view.current_details(self._state, self._now()))

    def _upsert_search_attributes(self) -> None:
        current = workflow.info().typed_search_attributes
        updates = [
            pair.key.value_set(pair.value)
            for pair in self._state.search_attributes()
            if current.get(pair.key) != pair.value
        ]
        if updates:
            workflow.upsert_search_attributes(updates)
