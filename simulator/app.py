"""The supplier simulator's FastAPI application (built by `create_app`, never at import)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from passage.statefile import StateFile
from simulator import routes, schemas
from simulator.inventory import Clock, Refusal
from simulator.service import Simulator, Sleep, SupplierTimeout, SupplierUnavailable

#: HTTP status of each refusal code; every other refusal is a 409 Conflict.
REFUSAL_STATUS: dict[str, int] = {
    "NOT_FOUND": 404,
    "OFFER_NOT_FOUND": 404,
    "INVALID_REQUEST": 422,
}


def create_app(
    clock: Clock | None = None,
    seed: int = 0,
    sweep_interval_seconds: float = 1.0,
    sleep: Sleep = asyncio.sleep,
    state_file: StateFile | None = None,
) -> FastAPI:
    """Build a simulator with fresh state, or with the state kept in `state_file`.

    Args:
        clock: Current time (timezone-aware); defaults to the system clock.
        seed: Makes references, confirmation codes and `rate` faults reproducible.
        sweep_interval_seconds: How often the background task expires due holds, so stock comes
            back even when no request arrives (requests also expire holds before they act).
        sleep: How latency and timeout faults wait.
        state_file: Loaded at start and saved after every change (`make up`); None keeps the
            state in memory only (tests).
    """
    simulator = Simulator(clock=clock, seed=seed, sleep=sleep, state_file=state_file)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_forever(simulator, sweep_interval_seconds))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    app = FastAPI(title="Passage supplier simulator", lifespan=lifespan)
    app.state.simulator = simulator
    app.include_router(routes.supplier_router)
    app.include_router(routes.control_router)
    app.add_exception_handler(Refusal, _refusal)
    app.add_exception_handler(SupplierUnavailable, _unavailable)
    app.add_exception_handler(SupplierTimeout, _timeout)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


async def _sweep_forever(simulator: Simulator, interval_seconds: float) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        await simulator.sweep()


async def _refusal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refusal)
    return JSONResponse(schemas.error(exc.code, exc.message), REFUSAL_STATUS.get(exc.code, 409))


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(schemas.error("SUPPLIER_UNAVAILABLE", str(exc)), 503)


async def _timeout(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(schemas.error("SUPPLIER_TIMEOUT", str(exc)), 504)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    body = schemas.error(
        "INVALID_REQUEST", "; ".join(f"{d['field']}: {d['message']}" for d in details)
    )
    body["error"]["details"] = details
    return JSONResponse(body, 422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(schemas.error(code, str(exc.detail)), exc.status_code)
