"""Gathers what `passage.checker` judges: each booking as the engine, the ledger, the supplier
simulator and Stripe report it, plus the simulator's inventory.

Sources, each read once per run:

- the ledger (`LedgerStore`): which bookings exist (staff search, every page) and their views;
- the engine (`EngineViews`): the workflow's live `view` query, its result once it completed,
  else the view memo it keeps (a worker is down, or the workflow was terminated);
- the simulator's `GET /_sim/ledger`: holds and supplier bookings, told apart by their client
  reference (`<booking_id>:<item_id>:hold`, `workflows.contracts.client_ref`), and the inventory;
- the Stripe API: every PaymentIntent, grouped by `metadata.booking_id` (localstripe has no
  search endpoint, so the list is paged through, as `tests.support.stripe` does).

The last snapshot of a booking reaches the ledger just after the workflow's transition, so a
ledger view older than the engine's is read again for a short while before it is judged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import httpx
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.ports import MAX_PAGE_SIZE, LedgerStore, StaffSearch
from passage.checker import BookingEvidence, Json
from workflows.booking import BookingWorkflow
from workflows.contracts import BookingView
from workflows.memo import MEMO_VIEW


class EngineViews(Protocol):
    async def view(self, booking_id: str) -> BookingView | None:
        """The engine's view of the booking, None when the engine no longer knows it."""
        ...


class TemporalEngineViews:
    """Booking views from Temporal: the live query, the final result, else the view memo."""

    def __init__(self, client: Client, rpc_timeout: timedelta = timedelta(seconds=5)) -> None:
        self._client = client
        self._rpc_timeout = rpc_timeout

    async def view(self, booking_id: str) -> BookingView | None:
        handle = self._client.get_workflow_handle_for(BookingWorkflow.run, f"booking-{booking_id}")
        try:
            description = await handle.describe(rpc_timeout=self._rpc_timeout)
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            try:
                view: BookingView = await handle.query(
                    BookingWorkflow.view, rpc_timeout=self._rpc_timeout
                )
                return view
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                pass  # no worker answered: the memo is at most one transition behind
        elif description.status == WorkflowExecutionStatus.COMPLETED:
            # The final view: newer than the memo, which changes only with the status.
            return await handle.result(follow_runs=False, rpc_timeout=self._rpc_timeout)
        memo: BookingView | None = await description.memo_value(
            MEMO_VIEW, None, type_hint=BookingView
        )
        return memo


@dataclass(frozen=True)
class CheckSources:
    """Where the evidence is read: clients configured by the caller (base URL, auth)."""

    store: LedgerStore
    engine: EngineViews
    simulator: httpx.AsyncClient
    stripe: httpx.AsyncClient
    #: How long a ledger view older than the engine's is read again before it is judged.
    ledger_grace: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class Evidence:
    bookings: tuple[BookingEvidence, ...]
    inventory: tuple[Json, ...]


async def collect(sources: CheckSources, booking_ids: Sequence[str] | None = None) -> Evidence:
    """The evidence on `booking_ids`, or on every booking the ledger knows when None."""
    ids = list(booking_ids) if booking_ids is not None else await _ledger_booking_ids(sources)
    simulator_ledger = await _simulator_ledger(sources.simulator)
    intents = await _payment_intents_by_booking(sources.stripe)
    bookings = [
        await _evidence(sources, booking_id, simulator_ledger, intents) for booking_id in ids
    ]
    return Evidence(tuple(bookings), tuple(simulator_ledger.get("inventory", [])))


async def _evidence(
    sources: CheckSources,
    booking_id: str,
    simulator_ledger: Json,
    intents: dict[str, list[Json]],
) -> BookingEvidence:
    view = await sources.engine.view(booking_id)
    ledger = await _ledger_view(sources, booking_id, view)
    prefix = f"{booking_id}:"
    holds = tuple(
        row
        for row in simulator_ledger.get("holds", [])
        if str(row.get("client_ref", "")).startswith(prefix)
    )
    supplier_bookings = tuple(
        row
        for row in simulator_ledger.get("bookings", [])
        if str(row.get("hold_client_ref", "")).startswith(prefix)
    )
    return BookingEvidence(
        booking_id, view, ledger, holds, supplier_bookings, tuple(intents.get(booking_id, ()))
    )


async def _ledger_view(
    sources: CheckSources, booking_id: str, view: BookingView | None
) -> BookingView | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sources.ledger_grace.total_seconds()
    while True:
        ledger = await sources.store.get_view(booking_id)
        behind = view is not None and (ledger is None or ledger.version < view.version)
        if not behind or loop.time() >= deadline:
            return ledger
        await asyncio.sleep(0.1)


async def _ledger_booking_ids(sources: CheckSources) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await sources.store.search(StaffSearch(limit=MAX_PAGE_SIZE, cursor=cursor))
        ids += [summary.booking_id for summary in page]
        if cursor is None:
            return ids


async def _simulator_ledger(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/_sim/ledger")
    response.raise_for_status()
    ledger: dict[str, Any] = response.json()
    return ledger


async def _payment_intents_by_booking(http: httpx.AsyncClient) -> dict[str, list[Json]]:
    found: dict[str, list[Json]] = {}
    params: dict[str, str] = {"limit": "100"}
    while True:
        response = await http.get("/v1/payment_intents", params=params)
        response.raise_for_status()
        page = response.json()
        for intent in page["data"]:
            booking_id = (intent.get("metadata") or {}).get("booking_id")
            if booking_id:
                found.setdefault(str(booking_id), []).append(intent)
        if not page["has_more"] or not page["data"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]
