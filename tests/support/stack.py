"""The whole engine for end-to-end tests: real Temporal dev server, the supplier simulator over
HTTP, the Stripe emulator, a migrated PostgreSQL ledger and a worker with the real adapters.

`engine_settings` is what a production process would read from its environment; `engine_worker`
runs the real worker (worker.booking_worker) in this process for the whole session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from passage.settings import Environment, Settings
from passage.temporal import connect
from tests.support.stripe import STRIPE_TEST_API_KEY
from worker import booking_worker


@pytest.fixture(scope="session")
def engine_settings(
    dev_env: WorkflowEnvironment,
    simulator_url: str,
    stripe_url: str,
    postgres_ledger_url: str,
    ledger_key: str,
) -> Settings:
    """The engine's settings; its codec key is the session's ledger key, because the store tests
    write the same PostgreSQL ledger and the staff API lists all of it."""
    return Settings(
        env=Environment.DEVELOPMENT,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=f"passage-e2e-{uuid.uuid4().hex[:8]}",
        supplier_url=simulator_url,
        supplier_timeout_seconds=2.0,
        stripe_api_base=stripe_url,
        stripe_api_key=STRIPE_TEST_API_KEY,
        database_url=postgres_ledger_url,
        codec_key=ledger_key,
        staff_keys="staff-key-e2e",
        # Every test customer comes from one address and polls its booking: the public rate
        # limits are off here, and their own test turns them on with a clock it controls.
        rate_limit_client_per_second=0,
        rate_limit_booking_per_second=0,
    )


@pytest_asyncio.fixture(scope="session")
async def engine_client(engine_settings: Settings) -> Client:
    """A client like the API's: same namespace, same payload codec."""
    return await connect(engine_settings)


@dataclass
class Engine:
    settings: Settings
    client: Client


@pytest_asyncio.fixture(scope="session")
async def engine_worker(engine_settings: Settings, engine_client: Client) -> AsyncIterator[Engine]:
    """The real worker, polling for the whole session."""
    async with booking_worker(engine_client, engine_settings):
        yield Engine(engine_settings, engine_client)
