"""Typed dependencies of the routes: the service, settings, callers' credentials, the codec.

Everything is built by the app's lifespan (`api.app`) and kept on `app.state.passage`; these
functions only hand it to the routes, so a route's signature says what it needs.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client
from temporalio.converter import PayloadCodec

from activities.ports import LedgerStore
from api.errors import ApiError
from api.events import BookingWatcher
from api.identity import BookingKeys
from api.rate_limits import RateLimiter, retry_after
from api.service import BookingService, EngineUnavailable
from passage.settings import Settings
from passage.webhook_events import ProcessedWebhookEvents


class TemporalNotConnected:
    """Stands in for the Temporal client until it connects: any use is a 503, after validation.

    So the service exists from the start: input is still validated (422 before 503) and what
    needs only the ledger (staff search) works while Temporal is starting.
    """

    def __getattr__(self, name: str) -> object:
        raise EngineUnavailable("the booking engine is starting; Temporal is not connected yet")


@dataclass
class ApiState:
    """What the lifespan built; `connected` once Temporal answered."""

    settings: Settings
    store: LedgerStore
    keys: BookingKeys
    codec: PayloadCodec | None
    processed_events: ProcessedWebhookEvents
    service: BookingService
    rate_limiter: RateLimiter
    #: The one ledger poller behind every event stream of this process (api/events.py).
    events: BookingWatcher
    connected: bool = False

    def attach(self, client: Client) -> None:
        self.service = BookingService(
            client,
            self.store,
            self.settings,
            self.keys,
            processed_events=self.processed_events,
        )
        self.connected = True


@dataclass(frozen=True)
class Staff:
    """An authenticated operator, known by a fingerprint of their key (never the key)."""

    fingerprint: str

    @property
    def actor(self) -> str:
        return f"staff:{self.fingerprint}"


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.passage
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_service(state: StateDep) -> BookingService:
    return state.service


ServiceDep = Annotated[BookingService, Depends(get_service)]


def get_codec(state: StateDep) -> PayloadCodec | None:
    return state.codec


CodecDep = Annotated[PayloadCodec | None, Depends(get_codec)]


def enforce_rate_limits(request: Request, state: StateDep) -> None:
    """429 with `Retry-After` when the client or the booking in the path is over its limit."""
    client = request.client.host if request.client is not None else "unknown"
    booking_id = request.path_params.get("booking_id")
    wait = state.rate_limiter.admit(client, booking_id if isinstance(booking_id, str) else None)
    if wait > 0:
        raise ApiError(
            429,
            "too many requests; retry later",
            headers={"Retry-After": retry_after(wait)},
        )


_customer_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="The `access_token` POST /bookings returned for this booking.",
)
_staff_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="StaffKey",
    description="A staff key from PASSAGE_STAFF_KEYS.",
)


def get_access_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_customer_bearer)],
) -> str | None:
    """The customer's bearer token, if any: checking it is the service's job (404 if wrong)."""
    return None if credentials is None else credentials.credentials


AccessTokenDep = Annotated[str | None, Depends(get_access_token)]


def get_staff(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_staff_bearer)],
) -> Staff:
    """The operator behind a staff key; anything else (a customer token, nothing) is 401."""
    staff = staff_for_key(settings, "" if credentials is None else credentials.credentials)
    if staff is None:
        raise ApiError(
            401, "a staff key is required", headers={"WWW-Authenticate": 'Bearer realm="staff"'}
        )
    return staff


def staff_for_key(settings: Settings, presented: str) -> Staff | None:
    """The operator whose staff key `presented` is, or None."""
    # Compared against every key, in constant time, so timing reveals nothing about the keys.
    matched = False
    for key in settings.staff_key_set:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    if not presented or not matched:
        return None
    return Staff(hashlib.sha256(presented.encode()).hexdigest()[:8])


StaffDep = Annotated[Staff, Depends(get_staff)]

IdempotencyKeyDep = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="One key per checkout attempt: a retry with the same key and body gets the "
        "same booking; the same key with another body is refused (409).",
    ),
]

BookingIdPath = Annotated[
    str,
    Path(
        description="The booking id POST /bookings returned (`bk_...`).",
        examples=["bk_3f9a1c0d5e7b2a4c6d8e0f12"],
    ),
]
