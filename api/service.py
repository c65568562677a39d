"""Booking commands and reads behind the HTTP API: start, find, view, steer, forward webhooks.

Everything here speaks Temporal and the ledger, never HTTP, so the routes stay a thin translation
layer and a test can drive the same logic without a server (the CLI goes through the HTTP API).

A booking's id, access token and request fingerprint are derived (api/identity.py): one
Idempotency-Key is one booking, and a repeat with the same key and another body is told apart from
a retry.

Reads of a booking (`read_for_customer`, `read_for_staff`) answer from the ledger, which the
workflow writes in the very workflow task of every change, before any caller can learn of it, and
whose first row the API writes as it starts the workflow: a poll costs one database read and
nothing at the worker. Temporal answers only what the ledger cannot: a booking not recorded yet
(that first insert failed), one awaiting 3-D Secure (its client secret is never written to
the ledger), or a ledger that is down — the live `view` query when a worker polls, else the final
result or the `view` memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.ports import (
    BookingSummary,
    LedgerStore,
    PersonalData,
    ResetInProgress,
    StaffSearch,
    StoredBooking,
)
from api.identity import (
    BookingKeys,
    fingerprints_match,
    is_booking_id,
    request_fingerprint,
    token_hash,
    token_matches,
)
from passage.reset import BookingReset, ResetRefused
from passage.settings import Settings
from passage.webhook_events import ProcessedWebhookEvents
from workflows import search
from workflows.booking import BookingWorkflow
from workflows.contracts import (
    BookingView,
    CancelBookingRequest,
    PaymentEvent,
    PriceDecision,
    RecordBookingInput,
    StaffAction,
    TimelineEntry,
)
from workflows.memo import MEMO_ACCESS_TOKEN_HASH, MEMO_REQUEST_HASH, MEMO_VIEW
from workflows.model import (
    BookingItemRequest,
    BookingRequest,
    BookingStatus,
    Money,
    Traveller,
    workflow_id_for,
)
from workflows.operator_view import booking_summary
from workflows.state import initial_search_attributes, initial_view

log = structlog.get_logger(__name__)

# --- errors --------------------------------------------------------------------------------------


class BookingNotFound(LookupError):
    """No such booking, or the caller may not know that it exists."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key already names a booking made from another request."""


class NotApplicable(Exception):
    """The command does not apply to the booking in its current state; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EngineUnavailable(Exception):
    """Temporal (or the workflow's worker) did not answer in time: a dependency failure."""


# --- inputs and outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewItem:
    offer_id: str
    quantity: int
    expected_price: Money
    optional: bool = False


@dataclass(frozen=True)
class NewBooking:
    """A validated checkout request (the API has checked every field already)."""

    customer_email: str
    customer_name: str
    travellers: tuple[Traveller, ...]
    items: tuple[NewItem, ...]
    payment_method: str

    @property
    def currency(self) -> str:
        return self.items[0].expected_price.currency


@dataclass(frozen=True)
class StartedBooking:
    booking_id: str
    access_token: str
    status: BookingStatus
    #: True when this call started the saga, False when it found the one an earlier call started.
    created: bool


@dataclass(frozen=True)
class BookingRecord:
    """What is known about a booking before reading its view (one describe or one ledger read)."""

    booking_id: str
    access_token_hash: str | None
    #: None when the workflow is gone from Temporal and only the ledger knows the booking.
    description: WorkflowExecutionDescription | None
    memo_view: BookingView | None

    @property
    def running(self) -> bool:
        return (
            self.description is not None
            and self.description.status == WorkflowExecutionStatus.RUNNING
        )


class UpdateOutcome(StrEnum):
    DONE = "done"
    #: Accepted by the workflow but not finished within the wait (e.g. a supplier is slow).
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class CommandResult:
    outcome: UpdateOutcome
    view: BookingView


class WebhookOutcome(StrEnum):
    FORWARDED = "forwarded"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceTimeouts:
    #: A live query waits this long for a worker before the memo answers instead.
    query: timedelta = timedelta(seconds=2)
    #: Describe, start and signal calls.
    rpc: timedelta = timedelta(seconds=10)
    #: How long a command waits for the workflow to accept it (a worker must be polling).
    accept: timedelta = timedelta(seconds=10)
    #: How long a command waits for its result before answering "in progress".
    result: timedelta = timedelta(seconds=20)


class BookingService:
    """Starts, reads and steers booking workflows; reads the ledger when Temporal forgot."""

    def __init__(
        self,
        client: Client,
        store: LedgerStore,
        settings: Settings,
        keys: BookingKeys,
        timeouts: ServiceTimeouts | None = None,
        *,
        processed_events: ProcessedWebhookEvents,
    ) -> None:
        self._client = client
        self._store = store
        self._processed_events = processed_events
        self._settings = settings
        self._keys = keys
        self._timeouts = timeouts or ServiceTimeouts()

    # --- start -----------------------------------------------------------------------------------

    async def start(self, idempotency_key: str, booking: NewBooking) -> StartedBooking:
        """Start the booking named by `idempotency_key`, or find the one an earlier call started.

        Raises:
            IdempotencyConflict: the key was used with another request.
        """
        booking_id = self._keys.booking_id(idempotency_key)
        access_token = self._keys.access_token(booking_id)
        fingerprint = request_fingerprint(booking)
        if await self._store.get_access_token_hash(booking_id) is not None:
            # Known to the ledger: a repeat. Checked first so that a booking whose workflow
            # Temporal already forgot (retention) is never started a second time.
            return await self._repeat(booking_id, access_token, fingerprint)
        request = self._request(booking_id, access_token, booking)
        view = initial_view(request)
        try:
            await self._client.start_workflow(
                BookingWorkflow.run,
                request,
                id=workflow_id_for(booking_id),
                task_queue=self._settings.task_queue,
                # FAIL on a running workflow and REJECT_DUPLICATE on a closed one: the server
                # decides atomically which of two concurrent calls starts the saga, and the
                # other one learns it is a repeat (WorkflowAlreadyStartedError).
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={
                    MEMO_VIEW: view,
                    MEMO_REQUEST_HASH: fingerprint,
                    MEMO_ACCESS_TOKEN_HASH: request.access_token_hash,
                },
                search_attributes=initial_search_attributes(request),
                static_summary=booking_summary(request),
                rpc_timeout=self._timeouts.rpc,
            )
        except WorkflowAlreadyStartedError:
            return await self._repeat(booking_id, access_token, fingerprint)
        await self._record_started(request, view)
        return StartedBooking(booking_id, access_token, BookingStatus.RECEIVED, created=True)

    async def _record_started(self, request: BookingRequest, view: BookingView) -> None:
        """Write the booking's first ledger row, so no read of it needs a workflow query.

        Checkouts read a booking most right after starting it, before a worker has run its
        first workflow task; without this row every such read asks Temporal (a query that costs
        the worker, or a describe). The row is the memo's initial view and the access-token
        hash. It follows the start, so the ledger never holds a booking Temporal does not run: a
        row written before a start that failed would make the client's retry a "repeat" of a
        booking that does not exist. It goes in only if the ledger has none: the workflow may
        have written first, and its own first write supersedes this one
        (activities/adapters/sql_store.py `record_if_absent`). A crash before it, or a failed
        insert, costs only the old read path (the workflow records the booking anyway), so the
        POST does not fail for it; an idempotent repeat is told apart by the memo as before.
        """
        try:
            await self._store.record_if_absent(RecordBookingInput(request, view))
        except (SQLAlchemyError, ValueError) as err:
            log.warning(
                "ledger insert failed: the workflow records the booking",
                booking_id=request.booking_id,
                error=type(err).__name__,
            )

    async def _repeat(self, booking_id: str, access_token: str, fingerprint: str) -> StartedBooking:
        description = await self._describe(booking_id)
        if description is None:
            raise IdempotencyConflict(
                "this Idempotency-Key belongs to an earlier booking that can no longer be compared"
            )
        stored = await description.memo_value(MEMO_REQUEST_HASH, None, type_hint=str)
        if not fingerprints_match(stored, fingerprint):
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request"
            )
        status = description.typed_search_attributes.get(search.BOOKING_STATUS)
        return StartedBooking(
            booking_id,
            access_token,
            BookingStatus(status) if status else BookingStatus.RECEIVED,
            created=False,
        )

    def _request(self, booking_id: str, access_token: str, booking: NewBooking) -> BookingRequest:
        settings = self._settings
        return BookingRequest(
            booking_id=booking_id,
            customer_ref=self._keys.customer_ref(booking.customer_email),
            customer_email=booking.customer_email,
            customer_name=booking.customer_name,
            currency=booking.currency,
            items=tuple(
                BookingItemRequest(
                    item_id=f"it_{position}",
                    offer_id=item.offer_id,
                    quantity=item.quantity,
                    expected_price=item.expected_price,
                    optional=item.optional,
                )
                for position, item in enumerate(booking.items, start=1)
            ),
            payment_method=booking.payment_method,
            travellers=booking.travellers,
            access_token_hash=token_hash(access_token),
            price_tolerance_minor=settings.price_tolerance_minor,
            price_acceptance_timeout_seconds=settings.price_acceptance_timeout_seconds,
            payment_action_timeout_seconds=settings.payment_action_timeout_seconds,
            created_at=datetime.now(UTC).isoformat(),
        )

    # --- reads -----------------------------------------------------------------------------------

    async def find(self, booking_id: str) -> BookingRecord | None:
        """The booking's workflow description (or its ledger row when Temporal forgot it)."""
        if not is_booking_id(booking_id):
            return None
        description = await self._describe(booking_id)
        if description is not None:
            memo_view = await description.memo_value(MEMO_VIEW, None, type_hint=BookingView)
            token = await description.memo_value(MEMO_ACCESS_TOKEN_HASH, None, type_hint=str)
            return BookingRecord(booking_id, token, description, memo_view)
        stored_hash = await self._store.get_access_token_hash(booking_id)
        if stored_hash is None:
            return None
        return BookingRecord(booking_id, stored_hash, None, None)

    async def find_for_customer(self, booking_id: str, access_token: str | None) -> BookingRecord:
        """The booking if `access_token` is its token; otherwise BookingNotFound (no hint)."""
        if not access_token:
            raise BookingNotFound(booking_id)
        record = await self.find(booking_id)
        if record is None or not token_matches(access_token, record.access_token_hash):
            raise BookingNotFound(booking_id)
        return record

    async def find_for_staff(self, booking_id: str) -> BookingRecord:
        record = await self.find(booking_id)
        if record is None:
            raise BookingNotFound(booking_id)
        return record

    async def read_for_customer(self, booking_id: str, access_token: str | None) -> BookingView:
        """The booking's view if `access_token` is its token (else BookingNotFound, no hint)."""
        if not access_token or not is_booking_id(booking_id):
            raise BookingNotFound(booking_id)
        stored = await self._stored(booking_id)
        if stored is not None:
            if not token_matches(access_token, stored.access_token_hash):
                raise BookingNotFound(booking_id)
            if _ledger_answers(stored.view):
                return stored.view
        live = await self.view(await self.find_for_customer(booking_id, access_token))
        return _numbered_as_ledger(live, stored)

    async def authorize_customer(self, booking_id: str, access_token: str | None) -> None:
        """BookingNotFound (no hint) unless `access_token` is the booking's token.

        The ledger's hash answers when it has the booking; a booking it has not recorded yet (the
        API's first insert failed and no workflow task has run) is checked against the memo (a
        describe, no query).
        """
        if not access_token or not is_booking_id(booking_id):
            raise BookingNotFound(booking_id)
        try:
            stored_hash = await self._store.get_access_token_hash(booking_id)
        except SQLAlchemyError as err:
            log.warning("ledger read failed: asking Temporal", error=type(err).__name__)
            stored_hash = None
        if stored_hash is None:
            await self.find_for_customer(booking_id, access_token)
        elif not token_matches(access_token, stored_hash):
            raise BookingNotFound(booking_id)

    async def read_for_staff(self, booking_id: str) -> BookingView:
        stored = await self._stored(booking_id) if is_booking_id(booking_id) else None
        if stored is not None and _ledger_answers(stored.view):
            return stored.view
        return _numbered_as_ledger(await self.view(await self.find_for_staff(booking_id)), stored)

    async def _stored(self, booking_id: str) -> StoredBooking | None:
        """The ledger's record of the booking; None when it has none or cannot answer now."""
        try:
            return await self._store.read(booking_id)
        except SQLAlchemyError as err:
            log.warning("ledger read failed: asking Temporal", error=type(err).__name__)
            return None

    async def view(self, record: BookingRecord) -> BookingView:
        """From Temporal: the live query when a worker answers; else the result; else the memo."""
        handle = self._handle(record.booking_id)
        if record.running:
            try:
                return await handle.query(BookingWorkflow.view, rpc_timeout=self._timeouts.query)
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                pass  # no worker answered in time: the ledger or the memo answers
            stored = await self._stored(record.booking_id)
            if stored is not None:
                return stored.view
        elif record.description is not None:
            if record.description.status == WorkflowExecutionStatus.COMPLETED:
                with contextlib.suppress(RPCError):
                    return await handle.result(rpc_timeout=self._timeouts.rpc)
            stored = await self._stored(record.booking_id)
            if stored is not None:
                return stored.view
        if record.memo_view is not None:
            return record.memo_view
        view = await self._store.get_view(record.booking_id)
        if view is None:
            raise BookingNotFound(record.booking_id)
        return view

    async def audit(self, booking_id: str, view: BookingView) -> tuple[TimelineEntry, ...]:
        """The ledger's audit trail, completed with live entries it has not recorded yet."""
        recorded = await self._store.events(booking_id)
        last = max((entry.seq for entry in recorded), default=0)
        return recorded + tuple(entry for entry in view.timeline if entry.seq > last)

    async def personal_data(self, booking_id: str) -> PersonalData | None:
        """The customer and travellers, decrypted from the ledger: staff reads only.

        None when the ledger has not recorded the booking yet (its first write lands with the
        workflow's first task) or cannot answer now; never logged.
        """
        if not is_booking_id(booking_id):
            return None
        try:
            return await self._store.personal_data(booking_id)
        except SQLAlchemyError as err:
            log.warning("ledger read failed: no personal data", error=type(err).__name__)
            return None

    async def search(self, query: StaffSearch) -> tuple[list[BookingSummary], str | None]:
        """Staff search over the ledger (raises InvalidCursor / ValueError on bad paging)."""
        return await self._store.search(query)

    # --- commands --------------------------------------------------------------------------------

    async def cancel(self, record: BookingRecord, request: CancelBookingRequest) -> CommandResult:
        """Cancel (idempotent: an already cancelled booking answers with its view)."""
        try:
            return await self._command(record, BookingWorkflow.cancel, request)
        except NotApplicable:
            view = await self._closed_view(record)
            if view is not None and view.status == BookingStatus.CANCELLED:
                return CommandResult(UpdateOutcome.DONE, view)
            raise

    async def decide_price(self, record: BookingRecord, decision: PriceDecision) -> CommandResult:
        return await self._command(record, BookingWorkflow.decide_price, decision)

    async def retry(self, record: BookingRecord, action: StaffAction) -> CommandResult:
        return await self._command(record, BookingWorkflow.retry, action)

    async def resolve(self, record: BookingRecord, action: StaffAction) -> CommandResult:
        return await self._command(record, BookingWorkflow.resolve, action)

    async def reset(self, booking_id: str, to: str | None, action: StaffAction) -> CommandResult:
        """Reset the booking's workflow to the task before step `to` (passage/reset.py).

        DONE once the new run has written the ledger (the view shows it), IN_PROGRESS before.

        Raises:
            BookingNotFound: no such booking.
            NotApplicable: it cannot be reset (to that step), or another reset is under way.
        """
        view = await self.read_for_staff(booking_id)
        resetter = BookingReset(self._client, self._store, rpc_timeout=self._timeouts.rpc)
        try:
            outcome = await resetter.reset(view, to, action.actor, action.note)
        except ResetRefused as err:
            raise NotApplicable(err.reason) from err
        except ResetInProgress as err:
            raise NotApplicable(
                f"{booking_id} is being reset already: wait until its new run shows, then "
                "reset again if needed"
            ) from err
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise NotApplicable(f"Temporal refused the reset: {err.message}") from err
            raise
        except LookupError as err:
            raise NotApplicable(f"{booking_id} is not in the ledger yet: nothing to reset") from err
        answer = UpdateOutcome.DONE if outcome.recorded else UpdateOutcome.IN_PROGRESS
        return CommandResult(answer, await self.read_for_staff(booking_id))

    async def _command(self, record: BookingRecord, update: Any, argument: Any) -> CommandResult:
        """Run a workflow update: rejected by its validator or on a closed booking -> NotApplicable.

        The update is first awaited until the workflow accepts it (bounded: a worker must be
        polling), then its result for a while; a slow one answers IN_PROGRESS with the live view.
        """
        if not record.running:
            raise NotApplicable(await self._closed_reason(record))
        handle = self._handle(record.booking_id)
        try:
            async with asyncio.timeout(self._timeouts.accept.total_seconds()):
                update_handle = await handle.start_update(
                    update,
                    argument,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    rpc_timeout=self._timeouts.accept,
                )
        except WorkflowUpdateFailedError as err:
            raise NotApplicable(_rejection_reason(err)) from err
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            raise EngineUnavailable("the booking's workflow did not accept the command") from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # it closed in the meantime
                raise NotApplicable(await self._closed_reason(record)) from err
            raise
        try:
            async with asyncio.timeout(self._timeouts.result.total_seconds()):
                view: BookingView = await update_handle.result()
        except WorkflowUpdateFailedError as err:
            raise NotApplicable(_rejection_reason(err)) from err
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return CommandResult(UpdateOutcome.IN_PROGRESS, await self.view(record))
        return CommandResult(UpdateOutcome.DONE, view)

    async def _closed_view(self, record: BookingRecord) -> BookingView | None:
        fresh = await self.find(record.booking_id)
        if fresh is None or fresh.running:
            return None
        return await self.view(fresh)

    async def _closed_reason(self, record: BookingRecord) -> str:
        view = await self._closed_view(record)
        if view is None:
            return "the booking is not running"
        return f"the booking is {view.status.value} and no longer running"

    # --- webhooks --------------------------------------------------------------------------------

    async def forward_payment_event(
        self, event_id: str, event_type: str, payment_intent_id: str, booking_id: str
    ) -> WebhookOutcome:
        """Signal a payment event to its booking once per event id, however often it arrives.

        The booking is signalled first and the id marked processed after, so a mark always means
        "signalled": a crash between the two, or a delivery failing while a concurrent redelivery
        runs, leaves the id unmarked and the next delivery signals again, which is harmless because
        the workflow drops an event id it has seen. Only a marked id is answered "duplicate".

        An event is only a hint to re-read the PaymentIntent, and only a booking awaiting 3-D
        Secure waits for one; the others are not signalled (a signal costs the booking a workflow
        task), which one ledger read tells. The ledger shows AWAITING_PAYMENT_ACTION before the
        customer can see the challenge (it is written in the workflow task that asks for it); when
        the ledger cannot tell, the event is signalled, and a booking that missed one re-reads
        the PaymentIntent within a minute anyway.
        """
        if not is_booking_id(booking_id):
            return WebhookOutcome.IGNORED
        if await self._processed_events.contains(event_id):
            return WebhookOutcome.DUPLICATE
        stored = await self._stored(booking_id)
        if stored is not None and stored.view.status != BookingStatus.AWAITING_PAYMENT_ACTION:
            await self._store.mark_webhook_event_processed(event_id)
            return WebhookOutcome.IGNORED
        outcome = WebhookOutcome.FORWARDED
        try:
            await self._handle(booking_id).signal(
                BookingWorkflow.payment_event,
                PaymentEvent(event_id, event_type, payment_intent_id),
                rpc_timeout=self._timeouts.rpc,
            )
        except RPCError as err:
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                raise EngineUnavailable("the payment event could not be delivered") from err
            outcome = WebhookOutcome.IGNORED  # unknown or finished booking: nothing waits for it
        # False when a concurrent delivery marked it first: it was signalled either way.
        await self._store.mark_webhook_event_processed(event_id)
        return outcome

    # --- health ----------------------------------------------------------------------------------

    async def temporal_ready(self) -> bool:
        try:
            return await self._client.service_client.check_health(timeout=timedelta(seconds=2))
        except RPCError:
            return False

    # --- small pieces ----------------------------------------------------------------------------

    def _handle(self, booking_id: str) -> WorkflowHandle[BookingWorkflow, BookingView]:
        return self._client.get_workflow_handle_for(
            BookingWorkflow.run, workflow_id_for(booking_id)
        )

    async def _describe(self, booking_id: str) -> WorkflowExecutionDescription | None:
        try:
            return await self._handle(booking_id).describe(rpc_timeout=self._timeouts.rpc)
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise


def _ledger_answers(view: BookingView) -> bool:
    """Whether the ledger's view is the whole view (3-D Secure's client secret is never in it)."""
    return view.status != BookingStatus.AWAITING_PAYMENT_ACTION


def _numbered_as_ledger(live: BookingView, stored: StoredBooking | None) -> BookingView:
    """A live view of a reset booking with the ledger's trail: the new run numbers its own
    timeline from its reset point, the ledger (and every event stream) continues the old one."""
    if stored is None or not any(e.outcome == "staff reset" for e in stored.view.timeline):
        return live
    return dataclasses.replace(live, timeline=stored.view.timeline)


def _rejection_reason(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.message:
        return cause.message
    return str(cause or err)
