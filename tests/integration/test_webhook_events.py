"""Webhook events across a crash and concurrent redeliveries, on both ledger backends: the API
holds no database lock while it signals, so nothing waits on the webhook path and a redelivery
during a failing first delivery is processed, not answered "duplicate".

The real API app on a migrated ledger (PostgreSQL and the embedded SQLite) with a Temporal client
whose signal hangs until released (Temporal cannot be paused mid-signal); the end-to-end
mark-after-signal tests against a real Temporal are in test_api.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any, cast

import httpx
import psycopg
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.adapters.sql_engine import make_engine
from bench.engine import payment_intent_event, signed
from passage.settings import Environment, Settings
from passage.webhook_events import SqlProcessedWebhookEvents
from tests.support.api import running_api

SECRET = "whsec_webhook_events_test"


class HangingSignal:
    """A Temporal client whose signals wait until released, then succeed or fail as told."""

    def __init__(self) -> None:
        self.signalling = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = False
        self.signals = 0

    def get_workflow_handle_for(self, *_args: Any, **_kwargs: Any) -> HangingSignal:
        return self

    async def signal(self, *_args: Any, **_kwargs: Any) -> None:
        self.signalling.set()
        await self.release.wait()
        if self.fail:
            raise RPCError("connection reset", RPCStatusCode.UNAVAILABLE, b"")
        self.signals += 1


class InstantSignal(HangingSignal):
    def __init__(self) -> None:
        super().__init__()
        self.release.set()


def take_the_write_lock_without_waiting(database_url: str) -> None:
    """Write to the event table from another connection, refusing to wait for any lock."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")  # the database's one write lock, now or fail
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database
    ) as connection:
        # Fails at once if any transaction holds any lock on the table (even a claimed row).
        connection.execute("LOCK TABLE processed_webhook_events IN ACCESS EXCLUSIVE MODE NOWAIT")
        connection.rollback()


async def deliver(api: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed(event, SECRET)
    return await api.post("/webhooks/stripe", content=body, headers=headers)


async def test_no_lock_is_held_while_signalling_and_a_concurrent_redelivery_counts(
    ledger_database_url: str,
) -> None:
    settings = Settings(
        env=Environment.DEVELOPMENT,
        database_url=ledger_database_url,
        stripe_webhook_secret=SECRET,
    )
    # A booking the ledger has not recorded yet: the API cannot tell, so it signals.
    event = payment_intent_event("pi_x", "bk_unrecorded0", "payment_intent.succeeded")
    event["id"] = f"evt_{uuid.uuid4().hex}"
    first_client, second_client = HangingSignal(), InstantSignal()
    first_client.fail = True
    engine = make_engine(ledger_database_url)
    try:
        processed = SqlProcessedWebhookEvents(engine)
        async with (
            running_api(settings, cast(Client, first_client)) as first_api,
            running_api(settings, cast(Client, second_client)) as second_api,
        ):
            first = asyncio.create_task(deliver(first_api, event))
            await asyncio.wait_for(first_client.signalling.wait(), 10)

            # Mid-signal: the ledger's write lock is free, nothing is claimed or marked...
            await asyncio.to_thread(take_the_write_lock_without_waiting, ledger_database_url)
            assert not await processed.contains(event["id"])
            # ...and Stripe's redelivery is processed, not taken for a duplicate.
            redelivered = await deliver(second_api, event)
            assert redelivered.status_code == 200, redelivered.text
            assert redelivered.json()["outcome"] == "forwarded"

            first_client.release.set()
            failed = await first
            assert failed.status_code == 503, failed.text
            # The failure did not undo the redelivery's mark: a third delivery is a duplicate.
            assert (await deliver(second_api, event)).json()["outcome"] == "duplicate"
        assert second_client.signals == 1
        assert await processed.contains(event["id"])
    finally:
        engine.dispose()
