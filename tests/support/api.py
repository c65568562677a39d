"""Pytest plugin: the HTTP API in process, on the session's real engine.

Fixtures:
- `api_app` (session): `create_app(...)` with the `engine_worker`'s settings and Temporal client,
  its lifespan started (ledger engine, booking service) and stopped at the end.
- `api_client`: an `httpx.AsyncClient` on that app through `httpx.ASGITransport`.
- `staff_headers`: `Authorization: Bearer <staff key>` for the staff endpoints.

`running_api(settings, client)` starts another app the same way (e.g. on a task queue no worker
polls), for tests that need one; `client_on(app, address=...)` is a client calling from an address;
`served_over_tcp(app)` serves an app (lifespan already running) with uvicorn on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from api.app import create_app
from passage.dev.supervisor import free_ports
from passage.settings import Settings
from tests.support.stack import Engine


@contextlib.asynccontextmanager
async def running_api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a freshly created app whose lifespan runs for the block."""
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app), client_on(app) as http:
        yield http


@contextlib.asynccontextmanager
async def served_over_tcp(app: FastAPI, log_level: str = "warning") -> AsyncIterator[str]:
    """A real HTTP server on `app`, as `python -m api` serves it; yields its base URL."""
    port = free_ports("127.0.0.1", 1)[0]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level=log_level)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises why it did not start
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def client_on(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client on `app` whose requests come from `address` (what rate limits key on)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 50000)),
        base_url="http://passage.test",
        timeout=60,
    )


@pytest_asyncio.fixture(scope="session")
async def api_app(engine_worker: Engine) -> AsyncIterator[FastAPI]:
    app = create_app(engine_worker.settings, client=engine_worker.client)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def api_client(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_on(api_app) as http:
        yield http


@pytest.fixture
def staff_headers(engine_settings: Settings) -> dict[str, str]:
    key = sorted(engine_settings.staff_key_set)[0]
    return {"Authorization": f"Bearer {key}"}
