"""The checkout API: start a booking, read it with its access token, cancel it, answer a price."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api import request_ids
from api.deps import (
    AccessTokenDep,
    BookingIdPath,
    IdempotencyKeyDep,
    ServiceDep,
    enforce_rate_limits,
)
from api.errors import error_responses
from api.schemas.bookings import BookingAccepted, BookingCreate, BookingOut, PriceDecisionIn
from api.service import UpdateOutcome
from workflows.contracts import CancelBookingRequest, PriceDecision

#: Every checkout endpoint is rate limited per client and per booking (api/rate_limits.py).
router = APIRouter(
    prefix="/bookings", tags=["bookings"], dependencies=[Depends(enforce_rate_limits)]
)


def _booking_links() -> dict[str, dict[str, object]]:
    """OpenAPI links from a started booking to what its id and token open (clients, stateful tests).

    The staff operations take the id only: their staff key is not the booking's to give.
    """
    by_token = {
        "path.booking_id": "$response.body#/booking_id",
        "header.Authorization": "Bearer {$response.body#/access_token}",
    }
    by_id = {"path.booking_id": "$response.body#/booking_id"}
    targets = {
        "ReadBooking": ("/bookings/{booking_id}", "get", by_token),
        "CancelBooking": ("/bookings/{booking_id}/cancel", "post", by_token),
        "DecidePrice": ("/bookings/{booking_id}/price-decision", "post", by_token),
        "StaffReadBooking": ("/admin/bookings/{booking_id}", "get", by_id),
        "StaffRetryBooking": ("/admin/bookings/{booking_id}/retry", "post", by_id),
        "StaffResolveBooking": ("/admin/bookings/{booking_id}/resolve", "post", by_id),
        "StaffCancelBooking": ("/admin/bookings/{booking_id}/cancel", "post", by_id),
    }
    return {
        name: {
            "operationRef": f"#/paths/{path.replace('/', '~1')}/{method}",
            "parameters": parameters,
        }
        for name, (path, method, parameters) in targets.items()
    }


@router.post(
    "",
    status_code=202,
    response_model=BookingAccepted,
    response_description="Accepted: the saga started",
    summary="Start a booking",
    responses={
        202: {"links": _booking_links()},
        200: {
            "model": BookingAccepted,
            "description": "Repeat of an earlier request (same key "
            "and body): the same booking and token",
            "links": _booking_links(),
        },
        **error_responses(409, 413, 422, 429, 503),
    },
)
async def create_booking(
    body: BookingCreate,
    idempotency_key: IdempotencyKeyDep,
    service: ServiceDep,
    response: Response,
) -> BookingAccepted:
    """Start the booking saga; it runs on after this answers (poll GET /bookings/{id})."""
    started = await service.start(idempotency_key, body.to_new_booking())
    request_ids.bind_booking_id(started.booking_id)
    if not started.created:
        response.status_code = 200
    return BookingAccepted.of(started)


@router.get(
    "/{booking_id}",
    response_model=BookingOut,
    summary="Read a booking",
    responses=error_responses(404, 422, 429, 503),
)
async def get_booking(
    booking_id: BookingIdPath, access_token: AccessTokenDep, service: ServiceDep
) -> BookingOut:
    """The booking's current state: items, payment and timeline (404 without its token)."""
    return BookingOut.of(await service.read_for_customer(booking_id, access_token))


@router.post(
    "/{booking_id}/cancel",
    response_model=BookingOut,
    summary="Cancel a booking",
    responses={
        202: {"model": BookingOut, "description": "Accepted; the cancellation is still running"},
        **error_responses(404, 409, 413, 422, 429, 503),
    },
)
async def cancel_booking(
    booking_id: BookingIdPath, access_token: AccessTokenDep, service: ServiceDep, response: Response
) -> BookingOut:
    """Before confirmation: undo everything. After: cancel per terms and refund. Idempotent."""
    record = await service.find_for_customer(booking_id, access_token)
    result = await service.cancel(record, CancelBookingRequest(actor="customer"))
    if result.outcome == UpdateOutcome.IN_PROGRESS:
        response.status_code = 202
    return BookingOut.of(result.view)


@router.post(
    "/{booking_id}/price-decision",
    response_model=BookingOut,
    summary="Accept or decline a changed price",
    responses={
        202: {"model": BookingOut, "description": "Accepted; the booking is still moving on"},
        **error_responses(404, 409, 413, 422, 429, 503),
    },
)
async def decide_price(
    booking_id: BookingIdPath,
    body: PriceDecisionIn,
    access_token: AccessTokenDep,
    service: ServiceDep,
    response: Response,
) -> BookingOut:
    """Answer AWAITING_PRICE_ACCEPTANCE; 409 when the booking is not waiting for it."""
    record = await service.find_for_customer(booking_id, access_token)
    result = await service.decide_price(record, PriceDecision(accept=body.accept))
    if result.outcome == UpdateOutcome.IN_PROGRESS:
        response.status_code = 202
    return BookingOut.of(result.view)
