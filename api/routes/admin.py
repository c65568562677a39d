"""The staff API: search the ledger, read a booking with its audit trail, steer stuck bookings."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from activities.ports import MAX_PAGE_SIZE, InvalidCursor, StaffSearch
from api.deps import BookingIdPath, ServiceDep, StaffDep
from api.errors import ApiError, error_responses
from api.schemas.admin import (
    AdminBookingOut,
    BookingList,
    BookingSummaryOut,
    StaffNote,
    StaffReset,
)
from api.schemas.errors import FieldError
from api.service import BookingRecord, BookingService, CommandResult, UpdateOutcome
from workflows.contracts import CancelBookingRequest, StaffAction
from workflows.model import BookingStatus, workflow_id_for

router = APIRouter(prefix="/admin/bookings", tags=["staff"])

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
#: RFC 3339 date-time with a mandatory offset (`Z` or `+hh:mm`), at most microseconds.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
#: Bounds a search may name: far outside any booking, far inside what datetime can convert.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_SEARCH_PARAMETERS = frozenset(
    {"status", "email", "supplier", "created_from", "created_to", "limit", "cursor"}
)


def _rfc3339_text(value: Any) -> Any:
    """Only RFC 3339 text with an offset (pydantic would also take `0.0` as seconds since 1970)."""
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise PydanticCustomError(
            "datetime_format",
            "must be an RFC 3339 date-time with an offset, e.g. 2026-05-04T10:00:00Z",
        )
    return value


def _in_search_range(value: datetime) -> datetime:
    """Within EARLIEST..LATEST (aware comparisons cannot overflow), then as UTC.

    Converting first could: year 1 at +14:00 is before datetime.min in UTC.
    """
    if value.tzinfo is None or not EARLIEST <= value <= LATEST:
        raise PydanticCustomError(
            "datetime_range",
            "must be between {earliest} and {latest}",
            {"earliest": EARLIEST.isoformat(), "latest": LATEST.isoformat()},
        )
    return value.astimezone(UTC)


SearchBound = Annotated[datetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_search_range)]


def _known_search_parameters(request: Request, staff: StaffDep) -> None:
    """A misspelt filter (`stauts=FAILED`) would silently list everything: refuse it instead.

    Depends on the staff key so that an unauthenticated caller gets 401 before anything else.
    """
    unknown = sorted(set(request.query_params) - _SEARCH_PARAMETERS)
    if unknown:
        raise ApiError(
            422,
            "the request is invalid",
            fields=[FieldError(field=name, message="unknown query parameter") for name in unknown],
        )


@router.get(
    "",
    response_model=BookingList,
    summary="Search bookings",
    responses=error_responses(401, 422, 503),
    dependencies=[Depends(_known_search_parameters)],
)
async def list_bookings(
    staff: StaffDep,
    service: ServiceDep,
    status: Annotated[BookingStatus | None, Query(description="Only this status")] = None,
    email: Annotated[
        str | None,
        Query(max_length=254, pattern=_PRINTABLE, description="Customer e-mail, any case"),
    ] = None,
    supplier: Annotated[
        str | None, Query(max_length=128, pattern=_PRINTABLE, description="Any item's supplier")
    ] = None,
    created_from: Annotated[
        SearchBound | None, Query(description="Inclusive; RFC 3339 with an offset, 1970-2100")
    ] = None,
    created_to: Annotated[
        SearchBound | None, Query(description="Exclusive; RFC 3339 with an offset, 1970-2100")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page")
    ] = None,
) -> BookingList:
    """Newest first, from the ledger; follow `next_cursor` for more."""
    try:
        summaries, next_cursor = await service.search(
            StaffSearch(
                status=status,
                email=email,
                created_from=created_from,
                created_to=created_to,
                supplier=supplier,
                limit=limit,
                cursor=cursor,
            )
        )
    except InvalidCursor as err:
        raise ApiError(
            422,
            "the request is invalid",
            fields=[FieldError(field="cursor", message="not a cursor this API issued")],
        ) from err
    return BookingList(
        bookings=[BookingSummaryOut.of(summary) for summary in summaries], next_cursor=next_cursor
    )


@router.get(
    "/{booking_id}",
    response_model=AdminBookingOut,
    summary="Read a booking with its audit trail",
    responses=error_responses(401, 404, 422, 503),
)
async def get_booking(
    booking_id: BookingIdPath, staff: StaffDep, service: ServiceDep
) -> AdminBookingOut:
    """The booking view, the full audit trail (who, when, note) and the Temporal workflow id."""
    view = await service.read_for_staff(booking_id)
    audit = await service.audit(booking_id, view)
    personal = await service.personal_data(booking_id)
    return AdminBookingOut.of_staff(view, audit, workflow_id_for(booking_id), personal)


@router.post(
    "/{booking_id}/retry",
    response_model=AdminBookingOut,
    summary="Retry the stuck step now",
    responses={
        202: {"model": AdminBookingOut, "description": "Accepted; still running"},
        **error_responses(401, 404, 409, 413, 422, 503),
    },
)
async def retry_booking(
    booking_id: BookingIdPath,
    staff: StaffDep,
    service: ServiceDep,
    response: Response,
    body: StaffNote | None = None,
) -> AdminBookingOut:
    """Retry the step a NEEDS_ATTENTION booking is stuck on (409 when none is stuck)."""
    record = await service.find_for_staff(booking_id)
    action = StaffAction(actor=staff.actor, note=body.note if body else "")
    return await _answer(service, record, await service.retry(record, action), response)


@router.post(
    "/{booking_id}/resolve",
    response_model=AdminBookingOut,
    summary="Mark the stuck step as handled by hand",
    responses={
        202: {"model": AdminBookingOut, "description": "Accepted; still running"},
        **error_responses(401, 404, 409, 413, 422, 503),
    },
)
async def resolve_booking(
    booking_id: BookingIdPath,
    body: StaffNote,
    staff: StaffDep,
    service: ServiceDep,
    response: Response,
) -> AdminBookingOut:
    """The operator did the stuck step by hand (the note says how); the saga goes on."""
    record = await service.find_for_staff(booking_id)
    action = StaffAction(actor=staff.actor, note=body.note)
    return await _answer(service, record, await service.resolve(record, action), response)


@router.post(
    "/{booking_id}/cancel",
    response_model=AdminBookingOut,
    summary="Force a cancellation",
    responses={
        202: {"model": AdminBookingOut, "description": "Accepted; still cancelling"},
        **error_responses(401, 404, 409, 413, 422, 503),
    },
)
async def cancel_booking(
    booking_id: BookingIdPath,
    body: StaffNote,
    staff: StaffDep,
    service: ServiceDep,
    response: Response,
) -> AdminBookingOut:
    """Cancel on the customer's behalf (recorded with the operator and the note)."""
    record = await service.find_for_staff(booking_id)
    request = CancelBookingRequest(actor=staff.actor, note=body.note)
    return await _answer(service, record, await service.cancel(record, request), response)


@router.post(
    "/{booking_id}/reset",
    response_model=AdminBookingOut,
    summary="Reset the workflow to the task before a step (after a bug fix)",
    responses={
        202: {"model": AdminBookingOut, "description": "Reset; the new run is still starting"},
        **error_responses(401, 404, 409, 413, 422, 503),
    },
)
async def reset_booking(
    booking_id: BookingIdPath,
    staff: StaffDep,
    service: ServiceDep,
    response: Response,
    body: StaffReset | None = None,
) -> AdminBookingOut:
    """Temporal's reset to the workflow task that scheduled step `to`, for a booking stuck on a
    bug a new release fixed: the new run goes on from there with the new code, the idempotency
    keys keep anything from being held or charged twice. 409 naming why when the booking cannot
    be reset (confirmed, ended, cancelled, or no such step in its run)."""
    action = StaffAction(actor=staff.actor, note=body.note if body else "")
    result = await service.reset(booking_id, body.to if body else None, action)
    record = await service.find_for_staff(booking_id)
    return await _answer(service, record, result, response)


async def _answer(
    service: BookingService, record: BookingRecord, result: CommandResult, response: Response
) -> AdminBookingOut:
    if result.outcome == UpdateOutcome.IN_PROGRESS:
        response.status_code = 202
    audit = await service.audit(record.booking_id, result.view)
    personal = await service.personal_data(record.booking_id)
    return AdminBookingOut.of_staff(
        result.view, audit, workflow_id_for(record.booking_id), personal
    )
