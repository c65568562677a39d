"""Which Stripe webhook events the ledger already counts as processed (a read of its table).

The ledger store (`SqlBookingStore`) marks an event processed, after its booking was signalled;
it has no read of its own, which the webhook path needs to answer "duplicate" without signalling
again. This reads the same table (`processed_webhook_events`) and nothing else, in a short read
of its own: no lock is held while the booking is signalled, so a redelivery arriving meanwhile is
never blocked, and never answered "duplicate" before the first delivery has succeeded.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sqlalchemy import Engine, select

from activities.adapters.tables import WebhookEventRow


class ProcessedWebhookEvents(Protocol):
    async def contains(self, event_id: str) -> bool: ...


class SqlProcessedWebhookEvents:
    """`ProcessedWebhookEvents` on the ledger's database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def contains(self, event_id: str) -> bool:
        """True once the event was marked processed (after its booking was signalled)."""
        return await asyncio.to_thread(self._contains, event_id)

    def _contains(self, event_id: str) -> bool:
        column = WebhookEventRow.__table__.c.event_id  # type: ignore[attr-defined]
        with self._engine.connect() as conn:
            return conn.execute(select(column).where(column == event_id)).first() is not None
