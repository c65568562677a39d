"""How the saga calls its activities: one typed spec per activity, with its timeout and retries.

Temporal owns retries, so the policy *is* the business rule: supplier steps give up after a few
tries and the saga compensates; payment steps outlast an outage (authorization until the hold
deadline stops it, capture until the authorization is about to expire); undos never give up while
the error is transient. Forward calls wait for a cancelled attempt to land
(`WAIT_CANCELLATION_COMPLETED`), so an undo always sees what its step really did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar, cast

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.contracts import (
    ActivityName,
    AuthorizePaymentInput,
    CancelItemInput,
    CapturePaymentInput,
    ConfirmItemInput,
    ConfirmItemsInput,
    GetPaymentInput,
    HoldItemInput,
    HoldItemsInput,
    ItemCancellation,
    ItemConfirmation,
    ItemConfirmations,
    ItemHold,
    ItemHolds,
    ItemQuote,
    ItemQuotes,
    ItemRelease,
    PaymentAuthorization,
    PaymentCapture,
    PaymentRefund,
    PaymentState,
    PaymentVoid,
    QuoteItemInput,
    QuoteItemsInput,
    RecordBookingInput,
    RefundPaymentInput,
    ReleaseItemInput,
    StepFailure,
    VoidPaymentInput,
)

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")
ResultT_co = TypeVar("ResultT_co", covariant=True)

ACTIVITY_TIMEOUT = timedelta(seconds=30)

#: Supplier steps give up after a few tries: the saga then compensates instead of holding stock.
SUPPLIER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)
#: Payment steps and undos retry transient errors without limit; refusals are non-retryable. A
#: forward payment step is bounded by what it races (the hold deadline) or by its own deadline.
UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
#: A ledger write in the workflow task: two quick tries, then the saga falls back to
#: `start_record`. Bounded by attempts, so a slow or hung database holds the task (and every
#: command the saga issued in it) at most about 3 s, well before the task's heartbeat.
RECORD_LOCALLY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)
RECORD_LOCALLY_ATTEMPT = timedelta(milliseconds=1500)
#: Card authorizations last about seven days; capture stops trying a day before that.
CAPTURE_WINDOW = timedelta(days=6)
#: Steps whose transient failures are the card processor's, not a supplier's.
PAYMENT_ACTIVITIES = (
    ActivityName.AUTHORIZE_PAYMENT,
    ActivityName.GET_PAYMENT,
    ActivityName.CAPTURE_PAYMENT,
    ActivityName.VOID_PAYMENT,
    ActivityName.REFUND_PAYMENT,
)


@dataclass(frozen=True)
class ActivitySpec(Generic[InputT, OutputT]):
    """One activity as the workflow calls it: its name, result type and retry policy."""

    name: ActivityName
    result_type: type[OutputT]
    retry: RetryPolicy


QUOTE_ITEM = ActivitySpec[QuoteItemInput, ItemQuote](
    ActivityName.QUOTE_ITEM, ItemQuote, SUPPLIER_RETRY
)
HOLD_ITEM = ActivitySpec[HoldItemInput, ItemHold](ActivityName.HOLD_ITEM, ItemHold, SUPPLIER_RETRY)
CONFIRM_ITEM = ActivitySpec[ConfirmItemInput, ItemConfirmation](
    ActivityName.CONFIRM_ITEM, ItemConfirmation, SUPPLIER_RETRY
)
AUTHORIZE_PAYMENT = ActivitySpec[AuthorizePaymentInput, PaymentAuthorization](
    ActivityName.AUTHORIZE_PAYMENT, PaymentAuthorization, UNTIL_DONE
)
GET_PAYMENT = ActivitySpec[GetPaymentInput, PaymentState](
    ActivityName.GET_PAYMENT, PaymentState, UNTIL_DONE
)
CAPTURE_PAYMENT = ActivitySpec[CapturePaymentInput, PaymentCapture](
    ActivityName.CAPTURE_PAYMENT, PaymentCapture, UNTIL_DONE
)
RELEASE_ITEM = ActivitySpec[ReleaseItemInput, ItemRelease](
    ActivityName.RELEASE_ITEM, ItemRelease, UNTIL_DONE
)
CANCEL_ITEM = ActivitySpec[CancelItemInput, ItemCancellation](
    ActivityName.CANCEL_ITEM, ItemCancellation, UNTIL_DONE
)
VOID_PAYMENT = ActivitySpec[VoidPaymentInput, PaymentVoid](
    ActivityName.VOID_PAYMENT, PaymentVoid, UNTIL_DONE
)
REFUND_PAYMENT = ActivitySpec[RefundPaymentInput, PaymentRefund](
    ActivityName.REFUND_PAYMENT, PaymentRefund, UNTIL_DONE
)


class Outcome(Protocol[ResultT_co]):
    """One item's answer in a batch: its result, or the failure its own activity would raise."""

    @property
    def result(self) -> ResultT_co | None: ...

    @property
    def failure(self) -> StepFailure | None: ...


class Outcomes(Protocol[ResultT_co]):
    """A batch's result: one outcome per item, in the order of its items."""

    @property
    def outcomes(self) -> Sequence[Outcome[ResultT_co]]: ...


@dataclass(frozen=True)
class BatchSpec(Generic[InputT, OutputT]):
    """One activity making `item`'s call for every item of a step, each item answered apart.

    Fewer round trips through Temporal than one activity per item (docs/performance.md): the
    batch is each item's first attempt; an item whose call failed retryably then goes on alone
    with the attempts its own policy has left (`retry_alone`), so per item the rule is the same.
    """

    name: ActivityName
    item: ActivitySpec[InputT, OutputT]
    #: The batch's input (its items, a tuple) and result (`outcomes`, one per item, in order).
    input_type: type[Any]
    result_type: type[Any]


QUOTE_ITEMS = BatchSpec[QuoteItemInput, ItemQuote](
    ActivityName.QUOTE_ITEMS, QUOTE_ITEM, QuoteItemsInput, ItemQuotes
)
HOLD_ITEMS = BatchSpec[HoldItemInput, ItemHold](
    ActivityName.HOLD_ITEMS, HOLD_ITEM, HoldItemsInput, ItemHolds
)
CONFIRM_ITEMS = BatchSpec[ConfirmItemInput, ItemConfirmation](
    ActivityName.CONFIRM_ITEMS, CONFIRM_ITEM, ConfirmItemsInput, ItemConfirmations
)
#: The item steps that go as one batch when a step has more than one item.
BATCHES: dict[ActivityName, BatchSpec[Any, Any]] = {
    batch.item.name: batch for batch in (QUOTE_ITEMS, HOLD_ITEMS, CONFIRM_ITEMS)
}


@dataclass
class OpenBatch:
    """The item calls of one step joining one batch activity (BookingWorkflow._in_batch).

    Here rather than in workflows/booking.py: this module passes through the sandbox, so the
    class is not created again for every booking (passage/tuning.py).
    """

    spec: BatchSpec[Any, Any]
    args: list[Any] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    started: asyncio.Future[workflow.ActivityHandle[Outcomes[Any]] | None] | None = None
    cancel_requested: bool = False


#: A batch is tried once: what failed in it is retried item by item.
BATCH_RETRY = RetryPolicy(maximum_attempts=1)


def retry_alone(spec: ActivitySpec[Any, Any]) -> RetryPolicy:
    """An item's own retry policy, less the attempt its batch made."""
    attempts = spec.retry.maximum_attempts
    return replace(spec.retry, maximum_attempts=max(attempts - 1, 1) if attempts else 0)


def start_forward(
    spec: ActivitySpec[InputT, OutputT],
    arg: InputT,
    *,
    schedule_to_close: timedelta | None = None,
    summary: str | None = None,
    retry: RetryPolicy | None = None,
) -> workflow.ActivityHandle[OutputT]:
    """Start a forward step; cancelling its handle waits for the attempt in flight to land.

    `summary` is the line the Temporal UI shows for it (workflows/operator_view.py).
    """
    return workflow.start_activity(
        spec.name.value,
        arg,
        result_type=spec.result_type,
        summary=summary,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        schedule_to_close_timeout=schedule_to_close,
        retry_policy=retry or spec.retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


def start_batch(
    spec: BatchSpec[InputT, OutputT], args: list[InputT], summary: str
) -> workflow.ActivityHandle[Outcomes[OutputT]]:
    """Start a forward step for several items at once; cancelled as `start_forward` is."""
    handle = workflow.start_activity(
        spec.name.value,
        spec.input_type(tuple(args)),
        result_type=spec.result_type,
        summary=summary,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=BATCH_RETRY,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
    return cast("workflow.ActivityHandle[Outcomes[OutputT]]", handle)


async def run_undo(
    spec: ActivitySpec[InputT, OutputT], arg: InputT, summary: str | None = None
) -> OutputT:
    """Run an undo step to its end: transient errors are retried without limit."""
    result: OutputT = await workflow.execute_activity(
        spec.name.value,
        arg,
        result_type=spec.result_type,
        summary=summary,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=spec.retry,
    )
    return result


def record_locally(snapshot: RecordBookingInput) -> workflow.ActivityHandle[None]:
    """Write a ledger snapshot as a local activity, before the workflow task completes.

    The history keeps one small marker instead of the snapshot, and the ledger is written before
    any caller learns of the transition. A write that does not land in two quick tries fails, and
    the caller hands the snapshot to `start_record`, which outlasts an outage.
    """
    return workflow.start_local_activity(
        ActivityName.RECORD_BOOKING.value,
        snapshot,
        summary=_record_summary(snapshot),
        start_to_close_timeout=RECORD_LOCALLY_ATTEMPT,
        retry_policy=RECORD_LOCALLY_RETRY,
    )


def start_record(snapshot: RecordBookingInput) -> workflow.ActivityHandle[None]:
    """Write a ledger snapshot in the background (a database outage never blocks the saga)."""
    return workflow.start_activity(
        ActivityName.RECORD_BOOKING.value,
        snapshot,
        summary=_record_summary(snapshot),
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=RECORD_RETRY,
    )


def _record_summary(snapshot: RecordBookingInput) -> str:
    view = snapshot.view
    return f"ledger: version {view.version}, {view.status.value}"
