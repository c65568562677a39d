"""BookingWorkflow: one durable saga per booking.

Forward: price check -> hold every item -> authorize the total -> confirm every item -> capture.
Every forward call registers its undo first, so a call that succeeded but whose answer was lost
is still undone. On any failure of a non-optional step, on a customer's cancel, on the hold
deadline and on a stop request, the undos run in reverse, shielded from further cancellation, each
retried until it succeeds; an undo refused for good parks the booking in NEEDS_ATTENTION until an
operator retries or resolves it. The workflow never ends with money or inventory still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from workflows import search
from workflows.contracts import (
    ActivityName,
    AttentionView,
    AuthorizePaymentInput,
    BookingError,
    BookingView,
    CancelBookingRequest,
    CancelItemInput,
    CapturePaymentInput,
    ConfirmItemInput,
    ErrorType,
    GetPaymentInput,
    HoldItemInput,
    ItemCancellation,
    ItemConfirmation,
    ItemHold,
    ItemQuote,
    ItemRelease,
    ItemView,
    PaymentAuthorization,
    PaymentCapture,
    PaymentEvent,
    PaymentRefund,
    PaymentState,
    PaymentView,
    PaymentVoid,
    PriceDecision,
    QuoteItemInput,
    RecordBookingInput,
    RefundPaymentInput,
    ReleaseItemInput,
    StaffAction,
    TimelineEntry,
    VoidPaymentInput,
)
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    ItemStatus,
    Money,
    PaymentStatus,
)
from workflows.saga import Compensation, Compensations, UndoKind, price_moved

T = TypeVar("T")

ACTIVITY_TIMEOUT = timedelta(seconds=30)
#: Forward steps give up after a few tries: the saga then compensates instead of holding stock.
FORWARD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)
#: Undo steps retry without limit while the error is transient; refusals are non-retryable.
UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
#: Stop this long before the earliest hold expires so confirmation never races expiry.
MAX_HOLD_MARGIN = timedelta(seconds=30)
#: How often a booking waiting for 3-D Secure re-reads the PaymentIntent when no webhook came.
PAYMENT_POLL_SECONDS = 10.0

CANCEL_REASONS = (
    ErrorType.CANCELLED_BY_CUSTOMER,
    ErrorType.CANCELLED_BY_STAFF,
    ErrorType.STOPPED,
)


class SagaFailedError(Exception):
    """A non-optional forward step failed for good: the saga must compensate."""

    def __init__(self, error: BookingError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_of(err: BaseException, default: ErrorType) -> BookingError:
    """The booking error behind an activity failure (its typed cause, or `default`)."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return BookingError(type=cause.type, message=cause.message)
    if isinstance(cause, TemporalTimeoutError):
        return BookingError(type=default.value, message="timed out")
    return BookingError(type=default.value, message=str(cause or err))


@workflow.defn(name="BookingWorkflow")
class BookingWorkflow:
    @workflow.init
    def __init__(self, request: BookingRequest) -> None:
        self._request = request
        currency = request.currency
        zero = Money.zero(currency)
        self._status = BookingStatus.RECEIVED
        self._step = "RECEIVED"
        self._items: dict[str, ItemView] = {
            item.item_id: ItemView(
                item_id=item.item_id,
                offer_id=item.offer_id,
                quantity=item.quantity,
                optional=item.optional,
                status=ItemStatus.PENDING,
                price=item.expected_price,
            )
            for item in request.items
        }
        self._payment = PaymentView(PaymentStatus.NONE, zero, zero, zero, zero)
        self._timeline: list[TimelineEntry] = []
        self._error: BookingError | None = None
        self._attention: AttentionView | None = None
        self._quoted_total: Money | None = None
        self._version = 0
        self._created_at = request.created_at
        self._published_status: BookingStatus | None = None

        self._compensations = Compensations()
        self._forward_task: asyncio.Task[None] | None = None
        self._stop_reason: BookingError | None = None
        self._authorization_input: AuthorizePaymentInput | None = None
        self._price_decision: PriceDecision | None = None
        self._payment_events: set[str] = set()
        self._payment_hint = False
        self._operator: tuple[str, StaffAction] | None = None
        self._cancel_request: CancelBookingRequest | None = None
        self._records: list[workflow.ActivityHandle[None]] = []

    # --- run -------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: BookingRequest) -> BookingView:
        if not self._created_at:
            self._created_at = workflow.now().isoformat()
        self._event("RECEIVED", "ok", f"{len(request.items)} item(s)")
        self._forward_task = asyncio.ensure_future(self._forward())
        confirmed = False
        try:
            await self._forward_task
            confirmed = True
        except SagaFailedError as failure:
            self._stop(failure.error)
        except asyncio.CancelledError:
            self._stop(BookingError(ErrorType.STOPPED.value, "the workflow was asked to stop"))
        except BaseException as err:
            if not isinstance(err, Exception):
                raise  # the SDK evicting the workflow from its cache: not a saga failure
            # A bug or an unexpected error: undo first, then let Temporal see the failure.
            self._stop(BookingError("INTERNAL", type(err).__name__))
            await self._shielded(self._compensate())
            raise
        if confirmed:
            await self._shielded(self._after_confirmation())
        else:
            await self._shielded(self._compensate())
        await self._shielded(self._flush_records())
        return self._view()

    async def _forward(self) -> None:
        await self._check_prices()
        await self._hold_all()
        deadline = asyncio.ensure_future(self._hold_deadline())
        try:
            await self._authorize()
            await self._confirm_all()
        finally:
            deadline.cancel()
        await self._capture()
        self._compensations.clear()
        self._set_status(BookingStatus.CONFIRMED, "CONFIRMED")

    # --- forward steps ---------------------------------------------------------------------------

    async def _check_prices(self) -> None:
        self._set_status(BookingStatus.PRICING, "PRICE")
        await self._each_item(self._active_items(), self._quote_item)
        included = self._active_items()
        if not included:
            raise SagaFailedError(self._first_item_error())
        currency = self._request.currency
        expected = Money.total((item.expected_price for item in included), currency)
        quoted = Money.total((self._items[item.item_id].price for item in included), currency)
        self._quoted_total = quoted
        if not price_moved(expected, quoted, self._request.price_tolerance_minor):
            self._event("PRICE", "ok", f"total {quoted.amount_minor} {currency}")
            return
        detail = f"expected {expected.amount_minor}, quoted {quoted.amount_minor} {currency}"
        self._event("PRICE", "changed", detail)
        timeout = self._request.price_acceptance_timeout_seconds
        if timeout <= 0:
            raise SagaFailedError(BookingError(ErrorType.PRICE_CHANGED.value, detail))
        self._set_status(BookingStatus.AWAITING_PRICE_ACCEPTANCE, "PRICE_ACCEPTANCE")
        try:
            await workflow.wait_condition(
                lambda: self._price_decision is not None, timeout=timedelta(seconds=timeout)
            )
        except TimeoutError:
            raise SagaFailedError(
                BookingError(ErrorType.PRICE_CHANGED.value, f"{detail}; not accepted in time")
            ) from None
        decision = self._price_decision
        assert decision is not None
        self._event(
            "PRICE_ACCEPTANCE",
            "accepted" if decision.accept else "declined",
            detail,
            actor=decision.actor,
        )
        if not decision.accept:
            raise SagaFailedError(
                BookingError(ErrorType.PRICE_CHANGED.value, f"{detail}; declined")
            )

    async def _quote_item(self, item: BookingItemRequest) -> None:
        quote = await self._call(
            ActivityName.QUOTE_ITEM,
            QuoteItemInput(self._request.booking_id, item.item_id, item.offer_id, item.quantity),
            ItemQuote,
        )
        self._update_item(
            item.item_id,
            kind=quote.kind,
            supplier=quote.supplier,
            price=quote.price,
            cancellation=quote.cancellation,
        )
        self._upsert_search_attributes()

    async def _hold_all(self) -> None:
        self._set_status(BookingStatus.HOLDING, "HOLD")
        await self._each_item(self._active_items(), self._hold_item)
        if not self._active_items():
            raise SagaFailedError(self._first_item_error())

    async def _hold_item(self, item: BookingItemRequest) -> None:
        self._compensations.register(Compensation(UndoKind.RELEASE_HOLD, item.item_id))
        hold = await self._call(
            ActivityName.HOLD_ITEM,
            HoldItemInput(
                self._request.booking_id,
                item.item_id,
                item.offer_id,
                item.quantity,
                self._items[item.item_id].supplier or "",
            ),
            ItemHold,
        )
        self._update_item(
            item.item_id,
            status=ItemStatus.HELD,
            hold_ref=hold.hold_ref,
            hold_expires_at=hold.expires_at,
        )
        self._event(f"HOLD {item.item_id}", "ok", f"until {hold.expires_at}")

    async def _hold_deadline(self) -> None:
        """Stop the saga before the earliest hold expires (a timer, never an execution timeout)."""
        expiries = [
            datetime.fromisoformat(view.hold_expires_at)
            for view in self._items.values()
            if view.status == ItemStatus.HELD and view.hold_expires_at
        ]
        if not expiries:
            return
        remaining = min(expiries) - workflow.now()
        delay = remaining - min(MAX_HOLD_MARGIN, remaining / 10)
        if delay.total_seconds() > 0:
            await workflow.sleep(delay)
        self._stop(BookingError(ErrorType.HOLD_EXPIRED.value, "holds expired before confirmation"))
        if self._forward_task is not None:
            self._forward_task.cancel()

    async def _authorize(self) -> None:
        self._set_status(BookingStatus.AUTHORIZING, "AUTHORIZE")
        amount = Money.total(
            (self._items[item.item_id].price for item in self._active_items()),
            self._request.currency,
        )
        request = AuthorizePaymentInput(
            self._request.booking_id,
            amount,
            self._request.payment_method,
            self._request.customer_ref,
        )
        self._authorization_input = request
        self._compensations.register(Compensation(UndoKind.VOID_PAYMENT))
        try:
            auth = await self._call(ActivityName.AUTHORIZE_PAYMENT, request, PaymentAuthorization)
        except SagaFailedError as failure:
            self._event("AUTHORIZE", "failed", failure.error.message)
            raise
        self._payment = dataclasses.replace(self._payment, payment_intent_id=auth.payment_intent_id)
        if auth.status == "requires_action":
            self._payment = dataclasses.replace(self._payment, client_secret=auth.client_secret)
            await self._await_payment_action(auth.payment_intent_id)
        elif auth.status != "requires_capture":
            raise SagaFailedError(
                BookingError(ErrorType.PAYMENT_FAILED.value, f"payment is {auth.status}")
            )
        self._payment = dataclasses.replace(
            self._payment, status=PaymentStatus.AUTHORIZED, authorized=amount, client_secret=None
        )
        self._event("AUTHORIZE", "ok", f"{amount.amount_minor} {amount.currency}")

    async def _await_payment_action(self, payment_intent_id: str) -> None:
        """Wait for 3-D Secure: a webhook is a hint to re-read the PaymentIntent; poll meanwhile."""
        self._set_status(BookingStatus.AWAITING_PAYMENT_ACTION, "PAYMENT_ACTION")
        deadline = workflow.now() + timedelta(seconds=self._request.payment_action_timeout_seconds)
        while True:
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                raise SagaFailedError(
                    BookingError(ErrorType.PAYMENT_ACTION_TIMEOUT.value, "3-D Secure not completed")
                )
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._payment_hint,
                    timeout=timedelta(seconds=min(PAYMENT_POLL_SECONDS, remaining)),
                )
            self._payment_hint = False
            state = await self._call(
                ActivityName.GET_PAYMENT, GetPaymentInput(payment_intent_id), PaymentState
            )
            if state.status == "requires_capture":
                self._event("PAYMENT_ACTION", "ok", "customer authenticated")
                return
            if state.status in ("requires_payment_method", "canceled"):
                raise SagaFailedError(
                    BookingError(
                        ErrorType.PAYMENT_ACTION_FAILED.value,
                        state.failure_message or "3-D Secure authentication failed",
                    )
                )

    async def _confirm_all(self) -> None:
        self._set_status(BookingStatus.CONFIRMING, "CONFIRM")
        await self._each_item(self._active_items(), self._confirm_item)

    async def _confirm_item(self, item: BookingItemRequest) -> None:
        view = self._items[item.item_id]
        self._compensations.register(Compensation(UndoKind.CANCEL_BOOKING, item.item_id))
        confirmation = await self._call(
            ActivityName.CONFIRM_ITEM,
            ConfirmItemInput(
                self._request.booking_id, item.item_id, view.hold_ref or "", view.supplier or ""
            ),
            ItemConfirmation,
        )
        self._update_item(
            item.item_id,
            status=ItemStatus.CONFIRMED,
            supplier_ref=confirmation.supplier_ref,
            confirmation_code=confirmation.confirmation_code,
        )
        self._event(f"CONFIRM {item.item_id}", "ok", confirmation.supplier_ref)

    async def _capture(self) -> None:
        self._set_status(BookingStatus.CAPTURING, "CAPTURE")
        amount = Money.total(
            (view.price for view in self._items.values() if view.status == ItemStatus.CONFIRMED),
            self._request.currency,
        )
        payment_intent_id = self._payment.payment_intent_id
        assert payment_intent_id is not None
        try:
            capture = await self._call(
                ActivityName.CAPTURE_PAYMENT,
                CapturePaymentInput(self._request.booking_id, payment_intent_id, amount),
                PaymentCapture,
            )
        except SagaFailedError as failure:
            self._event("CAPTURE", "failed", failure.error.message)
            raise
        self._payment = dataclasses.replace(
            self._payment, status=PaymentStatus.CAPTURED, captured=capture.amount
        )
        self._event("CAPTURE", "ok", f"{capture.amount.amount_minor} {capture.amount.currency}")

    async def _each_item(
        self,
        items: list[BookingItemRequest],
        step: Callable[[BookingItemRequest], Awaitable[None]],
    ) -> None:
        """Run one step for every item concurrently; an optional item's failure is undone alone.

        Every item's call is allowed to finish (so every undo is registered) before the first
        failure of a non-optional item ends the saga.
        """
        results = await asyncio.gather(*(step(item) for item in items), return_exceptions=True)
        failures: list[SagaFailedError] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, SagaFailedError):
                self._update_item(item.item_id, error=result.error)
                self._event(f"{self._step} {item.item_id}", "failed", result.error.message)
                if item.optional:
                    await self._undo_item(item.item_id)
                    self._update_item(item.item_id, status=ItemStatus.FAILED)
                else:
                    failures.append(result)
            elif isinstance(result, BaseException):
                raise result
        if failures:
            raise failures[0]

    # --- undo ------------------------------------------------------------------------------------

    async def _compensate(self) -> None:
        cancelling = self._stop_reason is not None and self._stop_reason.type in CANCEL_REASONS
        if len(self._compensations):
            self._set_status(
                BookingStatus.CANCELLING if cancelling else BookingStatus.COMPENSATING, "UNDO"
            )
        while (compensation := self._compensations.pop()) is not None:
            await self._undo(compensation)
        for view in self._items.values():
            if view.status == ItemStatus.PENDING:
                self._update_item(view.item_id, status=ItemStatus.FAILED)
        if cancelling:
            self._set_status(BookingStatus.CANCELLED, "CANCELLED")
        else:
            self._set_status(BookingStatus.FAILED, "FAILED")

    async def _undo_item(self, item_id: str) -> None:
        for compensation in self._compensations.for_item(item_id):
            await self._undo(compensation)
            self._compensations.remove(compensation)

    async def _undo(self, compensation: Compensation) -> None:
        booking_id = self._request.booking_id
        step = compensation.step
        if compensation.kind == UndoKind.VOID_PAYMENT:
            if self._authorization_input is None:
                return
            void_input = VoidPaymentInput(
                self._authorization_input, self._payment.payment_intent_id
            )
            void = await self._until_done(
                step, lambda: self._undo_call(ActivityName.VOID_PAYMENT, void_input, PaymentVoid)
            )
            if void is not None and void.status == "refunded" and void.refunded is not None:
                self._payment = dataclasses.replace(
                    self._payment,
                    status=PaymentStatus.REFUNDED,
                    refunded=self._payment.refunded + void.refunded,
                )
            elif void is not None and void.status == "voided":
                self._payment = dataclasses.replace(self._payment, status=PaymentStatus.VOIDED)
            self._event(
                step,
                "ok" if void is not None else "resolved",
                void.status if void is not None else "",
            )
            return
        assert compensation.item_id is not None
        view = self._items[compensation.item_id]
        if compensation.kind == UndoKind.RELEASE_HOLD:
            release_input = ReleaseItemInput(
                booking_id, view.item_id, view.hold_ref, view.supplier or ""
            )
            release = await self._until_done(
                step,
                lambda: self._undo_call(ActivityName.RELEASE_ITEM, release_input, ItemRelease),
            )
            if self._items[view.item_id].status in (ItemStatus.PENDING, ItemStatus.HELD):
                self._update_item(view.item_id, status=ItemStatus.RELEASED)
            self._event(
                step,
                "ok" if release is not None else "resolved",
                release.status if release is not None else "",
            )
        else:
            cancel_input = CancelItemInput(
                booking_id, view.item_id, view.supplier_ref, view.hold_ref, view.supplier or ""
            )
            cancel = await self._until_done(
                step,
                lambda: self._undo_call(ActivityName.CANCEL_ITEM, cancel_input, ItemCancellation),
            )
            if cancel is None or cancel.status == "cancelled":
                self._update_item(view.item_id, status=ItemStatus.CANCELLED)
            self._event(
                step,
                "ok" if cancel is not None else "resolved",
                cancel.status if cancel is not None else "",
            )

    async def _until_done(self, step: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Run an undo until it succeeds; a refusal waits for an operator to retry or resolve.

        Returns None when an operator resolved the step by hand.
        """
        while True:
            try:
                return await call()
            except ActivityError as err:
                error = _error_of(err, ErrorType.SUPPLIER_UNAVAILABLE)
                self._event(step, "failed", f"{error.type}: {error.message}")
                if await self._wait_for_operator(step, error) == "resolve":
                    return None

    async def _wait_for_operator(self, step: str, error: BookingError) -> str:
        previous = (self._status, self._step)
        self._attention = AttentionView(step, f"{error.type}: {error.message}", self._now())
        self._set_status(BookingStatus.NEEDS_ATTENTION, step)
        await workflow.wait_condition(lambda: self._operator is not None)
        assert self._operator is not None
        command, action = self._operator
        self._operator = None
        self._attention = None
        self._event(step, f"staff {command}", action.note, actor=action.actor)
        self._set_status(*previous)
        return command

    # --- after confirmation ----------------------------------------------------------------------

    async def _after_confirmation(self) -> None:
        try:
            await workflow.wait_condition(
                lambda: self._cancel_request is not None,
                timeout=timedelta(seconds=self._request.cancellable_for_seconds),
            )
        except TimeoutError:
            return
        await self._cancel_confirmed()

    async def _cancel_confirmed(self) -> None:
        """Cancel every confirmed item at its supplier and refund what its terms give back."""
        request = self._cancel_request
        assert request is not None
        self._set_status(BookingStatus.CANCELLING, "CANCEL")
        currency = self._request.currency
        fees = Money.zero(currency)
        for view in reversed(list(self._items.values())):
            if view.status != ItemStatus.CONFIRMED:
                continue
            step = f"CANCEL {view.item_id}"
            cancel_input = CancelItemInput(
                self._request.booking_id,
                view.item_id,
                view.supplier_ref,
                view.hold_ref,
                view.supplier or "",
            )
            cancel = await self._until_done(
                step,
                lambda cancel_input=cancel_input: self._undo_call(  # type: ignore[misc]
                    ActivityName.CANCEL_ITEM, cancel_input, ItemCancellation
                ),
            )
            terms = view.cancellation
            fee = terms.fee_for(view.price, workflow.now()) if terms else Money.zero(currency)
            fees = fees + fee
            self._update_item(view.item_id, status=ItemStatus.CANCELLED, cancellation_fee=fee)
            self._event(
                step,
                "ok" if cancel is not None else "resolved",
                f"fee {fee.amount_minor} {currency}",
            )
        refund_amount = self._payment.captured - fees
        if refund_amount.amount_minor > 0 and self._payment.payment_intent_id:
            refund_input = RefundPaymentInput(
                self._request.booking_id,
                self._payment.payment_intent_id,
                refund_amount,
                "cancellation",
            )
            refund = await self._until_done(
                "REFUND",
                lambda: self._undo_call(ActivityName.REFUND_PAYMENT, refund_input, PaymentRefund),
            )
            self._event(
                "REFUND",
                "ok" if refund is not None else "resolved",
                f"{refund_amount.amount_minor} {currency}",
            )
            self._payment = dataclasses.replace(
                self._payment, refunded=self._payment.refunded + refund_amount
            )
        self._payment = dataclasses.replace(
            self._payment,
            fees_kept=fees,
            status=PaymentStatus.PARTIALLY_REFUNDED
            if fees.amount_minor
            else PaymentStatus.REFUNDED,
        )
        self._set_status(BookingStatus.CANCELLED, "CANCELLED")

    # --- messages --------------------------------------------------------------------------------

    @workflow.query
    def view(self) -> BookingView:
        return self._view()

    @workflow.update
    async def cancel(self, request: CancelBookingRequest) -> BookingView:
        if self._status == BookingStatus.CONFIRMED:
            self._cancel_request = self._cancel_request or request
            self._event("CANCEL", "requested", request.note, actor=request.actor)
        elif self._stop_reason is None:
            reason = (
                ErrorType.CANCELLED_BY_CUSTOMER
                if request.actor == "customer"
                else ErrorType.CANCELLED_BY_STAFF
            )
            self._stop(BookingError(reason.value, request.note or "cancelled before confirmation"))
            self._event("CANCEL", "requested", request.note, actor=request.actor)
            if self._forward_task is not None:
                self._forward_task.cancel()
        await workflow.wait_condition(
            lambda: (
                self._status
                in (BookingStatus.CANCELLED, BookingStatus.FAILED, BookingStatus.NEEDS_ATTENTION)
            )
        )
        return self._view()

    @cancel.validator
    def _validate_cancel(self, request: CancelBookingRequest) -> None:
        status = self._status
        if status in (BookingStatus.CANCELLED, BookingStatus.CANCELLING):
            return
        if self._stop_reason is not None and self._stop_reason.type in CANCEL_REASONS:
            return
        if self._cancel_request is not None:
            return
        if status in (BookingStatus.FAILED, BookingStatus.COMPENSATING):
            raise ValueError("the booking failed and is being or has been undone")
        if status == BookingStatus.NEEDS_ATTENTION:
            raise ValueError("the booking is waiting for an operator")
        if status == BookingStatus.CONFIRMED:
            for view in self._items.values():
                terms = view.cancellation
                if view.status == ItemStatus.CONFIRMED and terms and not terms.cancellable:
                    raise ValueError(f"item {view.item_id} cannot be cancelled (supplier terms)")

    @workflow.update
    async def decide_price(self, decision: PriceDecision) -> BookingView:
        self._price_decision = decision
        await workflow.wait_condition(
            lambda: self._status != BookingStatus.AWAITING_PRICE_ACCEPTANCE
        )
        return self._view()

    @decide_price.validator
    def _validate_price_decision(self, decision: PriceDecision) -> None:
        if self._status != BookingStatus.AWAITING_PRICE_ACCEPTANCE:
            raise ValueError(f"the booking is {self._status.value}, not awaiting a price decision")

    @workflow.signal
    def payment_event(self, event: PaymentEvent) -> None:
        """A Stripe event: each id counts once; it only prompts a re-read of the PaymentIntent."""
        if event.event_id in self._payment_events:
            return
        self._payment_events.add(event.event_id)
        ours = self._payment.payment_intent_id
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
        if self._status != BookingStatus.NEEDS_ATTENTION or self._operator is not None:
            raise ValueError(f"the booking is {self._status.value}, not waiting for an operator")

    async def _operator_command(self, command: str, action: StaffAction) -> BookingView:
        self._operator = (command, action)
        await workflow.wait_condition(lambda: self._operator is None)
        return self._view()

    # --- activities ------------------------------------------------------------------------------

    async def _call(self, name: ActivityName, arg: Any, result_type: type[T]) -> T:
        """A forward step: bounded retries; its failure becomes a SagaFailedError."""
        try:
            result: T = await workflow.execute_activity(
                name.value,
                arg,
                result_type=result_type,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=FORWARD_RETRY,
                # On a stop, wait for the attempt in flight to end, so that its undo cannot run
                # before a hold it was making lands at the supplier.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            return result
        except ActivityError as err:
            default = (
                ErrorType.PAYMENT_FAILED
                if name in (ActivityName.AUTHORIZE_PAYMENT, ActivityName.CAPTURE_PAYMENT)
                else ErrorType.SUPPLIER_UNAVAILABLE
            )
            raise SagaFailedError(_error_of(err, default)) from err

    async def _undo_call(self, name: ActivityName, arg: Any, result_type: type[T]) -> T:
        """An undo step: retried without limit while transient."""
        result: T = await workflow.execute_activity(
            name.value,
            arg,
            result_type=result_type,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=UNDO_RETRY,
        )
        return result

    @staticmethod
    async def _shielded(work: Awaitable[None]) -> None:
        """Run `work` to the end even if the workflow is asked to stop meanwhile."""
        task = asyncio.ensure_future(work)
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    raise
                workflow.logger.warning("stop requested while undoing; the undo goes on")
        task.result()

    async def _flush_records(self) -> None:
        await asyncio.gather(*self._records)

    # --- state -----------------------------------------------------------------------------------

    def _stop(self, error: BookingError) -> None:
        """Remember why the saga stops (the first reason wins) and what the customer is told."""
        if self._stop_reason is not None:
            return
        self._stop_reason = error
        if error.type not in (ErrorType.CANCELLED_BY_CUSTOMER, ErrorType.CANCELLED_BY_STAFF):
            self._error = error

    def _active_items(self) -> list[BookingItemRequest]:
        return [
            item
            for item in self._request.items
            if self._items[item.item_id].status not in (ItemStatus.FAILED, ItemStatus.RELEASED)
        ]

    def _first_item_error(self) -> BookingError:
        for view in self._items.values():
            if view.error is not None:
                return view.error
        return BookingError(ErrorType.SUPPLIER_REFUSED.value, "no item could be booked")

    def _update_item(self, item_id: str, **changes: Any) -> None:
        self._items[item_id] = dataclasses.replace(self._items[item_id], **changes)

    def _now(self) -> str:
        return workflow.now().isoformat()

    def _set_status(self, status: BookingStatus, step: str) -> None:
        self._status = status
        self._step = step
        self._event(step, "status", status.value)

    def _event(self, step: str, outcome: str, detail: str = "", actor: str | None = None) -> None:
        self._timeline.append(
            TimelineEntry(len(self._timeline) + 1, self._now(), step, outcome, detail, actor)
        )
        self._publish()

    def _publish(self) -> None:
        """Make the new state visible to operators, the API and the ledger.

        Search attributes follow every change; the memo (read by the API when no worker polls) and
        the ledger snapshot follow every status change, and the snapshot carries the whole
        timeline, so the ledger's event log misses nothing.
        """
        self._version += 1
        self._upsert_search_attributes()
        if self._published_status == self._status:
            return
        self._published_status = self._status
        view = self._view()
        workflow.upsert_memo({"view": view})
        self._records = [handle for handle in self._records if not handle.done()]
        self._records.append(
            workflow.start_activity(
                ActivityName.RECORD_BOOKING.value,
                RecordBookingInput(self._request, view),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RECORD_RETRY,
            )
        )

    def _upsert_search_attributes(self) -> None:
        suppliers = sorted({view.supplier for view in self._items.values() if view.supplier})
        total = self._quoted_total or self._request.expected_total
        wanted = TypedSearchAttributes(
            [
                SearchAttributePair(search.BOOKING_STATUS, self._status.value),
                SearchAttributePair(search.BOOKING_STEP, self._step),
                SearchAttributePair(
                    search.NEEDS_ATTENTION, self._status == BookingStatus.NEEDS_ATTENTION
                ),
                SearchAttributePair(search.CUSTOMER_REF, self._request.customer_ref),
                SearchAttributePair(search.SUPPLIERS, suppliers),
                SearchAttributePair(search.TOTAL_MINOR, total.amount_minor),
            ]
        )
        current = workflow.info().typed_search_attributes
        updates = [
            pair.key.value_set(pair.value) for pair in wanted if current.get(pair.key) != pair.value
        ]
        if updates:
            workflow.upsert_search_attributes(updates)

    def _view(self) -> BookingView:
        return BookingView(
            booking_id=self._request.booking_id,
            status=self._status,
            step=self._step,
            currency=self._request.currency,
            expected_total=self._request.expected_total,
            quoted_total=self._quoted_total,
            items=tuple(self._items.values()),
            payment=self._payment,
            timeline=tuple(self._timeline),
            error=self._error,
            attention=self._attention,
            version=self._version,
            updated_at=self._now(),
            created_at=self._created_at,
            customer_ref=self._request.customer_ref,
        )
