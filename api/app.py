"""The API's composition root: `create_app()` builds the FastAPI app; its lifespan wires it.

`uvicorn --factory api.app:create_app` or `python -m api` run it with settings from the
environment; tests pass their own settings (and may share an already connected Temporal client).
Nothing happens at import: settings, the ledger engine and the Temporal client are created when
the app is created or started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

import structlog
from fastapi import Depends, FastAPI
from temporalio.client import Client
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from api import errors, metrics, request_ids
from api.codec_access import CodecAccess, CodecCors
from api.deps import ApiState, TemporalNotConnected
from api.events import BookingWatcher, PostgresChangeListener
from api.identity import BookingKeys
from api.limits import BodySizeLimit
from api.rate_limits import Clock, RateLimiter
from api.routes import admin, booking_events, bookings, checkout, codec, health, webhooks
from api.service import BookingService
from passage.codec import LedgerCipher
from passage.settings import Settings
from passage.temporal import connect, data_converter
from passage.tracing import API_SERVICE, Tracing, tracing_for
from passage.webhook_events import SqlProcessedWebhookEvents

log = structlog.get_logger("passage.api")

DESCRIPTION = """\
Passage books multi-supplier trips as one durable Temporal saga per booking.

* **Checkout** (`/bookings`): start a booking with an `Idempotency-Key`, then read it with the
  `access_token` it returned (`Authorization: Bearer <token>`), follow it live
  (`/bookings/{id}/events`, Server-Sent Events), cancel it or answer a price change.
* **Reference checkout page** (`/checkout`, only where `PASSAGE_CHECKOUT_ENABLED` is on, as under
  `make up`): a page built on the endpoints above, and the offer list it shows.
* **Staff** (`/admin/bookings`, `/codec`): `Authorization: Bearer <staff key>`; the codec also
  admits the Temporal Web UI's operators (their OIDC access token; in development the UI's origin).
* **Stripe** (`/webhooks/stripe`): signed events only.

Every error has one shape: `{"error": {"code", "message", "fields"?}}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    clock: Clock = time.monotonic,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The API. `settings` default to the environment; `client` is connected on start if None.

    `clock` (monotonic seconds) drives the rate limits; tests pass one they can move.
    `tracing` defaults to PASSAGE_OTLP_ENDPOINT's (passage/tracing.py); a given `client` should
    have been connected with the same.
    """
    settings = settings or Settings()
    tracing = tracing or tracing_for(settings, API_SERVICE)
    app = FastAPI(
        title="Passage",
        version="1.0.0",
        summary="Booking orchestration: checkout, staff and webhook API",
        description=DESCRIPTION,
        lifespan=_lifespan(settings, client, clock, tracing),
        dependencies=[Depends(request_ids.bind_path_booking_id)],
    )
    errors.install(app)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(CodecCors, origins=settings.codec_cors_origin_list)
    routers = [bookings.router, booking_events.router, admin.router, webhooks.router]
    routers += [codec.router, health.router]
    if settings.checkout_enabled:
        routers.append(checkout.router)
    for router in routers:
        app.include_router(router)
    if tracing is not None:
        tracing.instrument_api(app)
    metrics.install(app)
    app.add_middleware(request_ids.RequestIds)  # outermost: every line has the id
    return app


def _lifespan(
    settings: Settings, client: Client | None, clock: Clock, tracing: Tracing | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        store = SqlBookingStore(
            engine, LedgerCipher(settings.ledger_key, settings.old_codec_key_list)
        )
        keys = BookingKeys(settings.api_secret.encode(), settings.customer_ref_key.encode())
        processed_events = SqlProcessedWebhookEvents(engine)
        state = ApiState(
            settings=settings,
            store=store,
            keys=keys,
            codec=data_converter(settings).payload_codec,
            processed_events=processed_events,
            service=BookingService(
                cast(Client, TemporalNotConnected()),
                store,
                settings,
                keys,
                processed_events=processed_events,
            ),
            rate_limiter=RateLimiter.from_settings(settings, clock=clock),
            events=BookingWatcher(store, settings.events_poll_seconds),
        )
        app.state.passage = state
        app.state.codec_access = CodecAccess(settings)
        listener = None
        if engine.dialect.name == "postgresql":
            listener = PostgresChangeListener(settings.database_url, state.events)
            listener.start()
        connecting: asyncio.Task[None] | None = None
        if client is not None:
            state.attach(client)
        else:
            # Serve at once (healthz, readyz 503) and connect in the background: `make up` may
            # start the API before Temporal answers.
            connecting = asyncio.create_task(_connect(state, tracing))
        try:
            yield
        finally:
            if connecting is not None:
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
            if listener is not None:
                await listener.close()
            await state.events.close()
            engine.dispose()
            if tracing is not None:
                tracing.flush()

    return lifespan


async def _connect(state: ApiState, tracing: Tracing | None) -> None:
    settings = state.settings
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=5), retry=retry_if_exception_type(Exception)
    ):
        with attempt:
            try:
                client = await connect(settings, tracing)
            except Exception as err:
                log.warning(
                    "waiting for Temporal", address=settings.temporal_address, error=str(err)
                )
                raise
    state.attach(client)
    log.info("connected to Temporal", address=settings.temporal_address)
