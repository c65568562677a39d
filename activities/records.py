"""The ledger activity: write a booking snapshot to the durable record at every transition.

The workflow starts it without waiting, so it runs more than once and out of order; the store keeps
only the newest version and inserts each timeline entry once, which makes every retry harmless.
Database trouble is left to Temporal's retries; a snapshot the store refuses as invalid fails
non-retryably because sending it again cannot succeed.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from activities.errors import BusinessError, application_errors
from activities.ports import BookingStore
from workflows.contracts import ActivityName, ErrorType, RecordBookingInput


class RecordActivities:
    """The record activity, bound to one `BookingStore` by the worker's composition root."""

    def __init__(self, store: BookingStore) -> None:
        self._store = store
        self._log = structlog.get_logger(__name__)

    @activity.defn(name=ActivityName.RECORD_BOOKING.value)
    async def record_booking(self, snapshot: RecordBookingInput) -> None:
        view = snapshot.view
        with application_errors(
            self._log, "ledger", ActivityName.RECORD_BOOKING, booking_id=view.booking_id
        ):
            try:
                await self._store.record(snapshot, run_id=activity.info().workflow_run_id)
            except ValueError as error:
                message = f"ledger refused snapshot: {error}"
                raise BusinessError(ErrorType.INVALID_REQUEST, message) from error
        # Ids and states only: the snapshot also carries the customer's e-mail and travellers.
        self._log.info(
            "ledger.recorded",
            booking_id=view.booking_id,
            version=view.version,
            status=view.status.value,
            attempt=activity.info().attempt,
        )
