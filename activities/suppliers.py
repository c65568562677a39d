"""Supplier activities: quote, hold, confirm, release and cancel one booking item.

Quote, hold and confirm also come as one activity for every item of a step (activities/batches.py).

Each activity is one call through the `SupplierClient` port. Refusals leave as non-retryable
ApplicationErrors typed by cause (SOLD_OUT, HOLD_EXPIRED, ...) so the saga can decide; transport
trouble leaves as retryable SUPPLIER_UNAVAILABLE so Temporal retries with the same client reference.
Logs carry ids and references only, never traveller data.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from activities.batches import BatchedItemActivities
from activities.errors import application_errors
from activities.ports import SupplierClient
from workflows.contracts import (
    ActivityName,
    CancelItemInput,
    ConfirmItemInput,
    HoldItemInput,
    ItemCancellation,
    ItemConfirmation,
    ItemHold,
    ItemQuote,
    ItemRelease,
    QuoteItemInput,
    ReleaseItemInput,
)


class SupplierActivities(BatchedItemActivities):
    """The supplier activities, bound to one `SupplierClient` by the worker's composition root."""

    def __init__(self, client: SupplierClient) -> None:
        self._client = client
        self._log = structlog.get_logger(__name__)

    @activity.defn(name=ActivityName.QUOTE_ITEM.value)
    async def quote_item(self, request: QuoteItemInput) -> ItemQuote:
        with application_errors(
            self._log,
            "supplier",
            ActivityName.QUOTE_ITEM,
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
        ):
            quote = await self._client.quote(request)
        self._log.info(
            "supplier.quoted",
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
            supplier=quote.supplier,
            price_minor=quote.price.amount_minor,
            currency=quote.price.currency,
        )
        return quote

    @activity.defn(name=ActivityName.HOLD_ITEM.value)
    async def hold_item(self, request: HoldItemInput) -> ItemHold:
        with application_errors(
            self._log,
            "supplier",
            ActivityName.HOLD_ITEM,
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
        ):
            hold = await self._client.hold(request)
        self._log.info(
            "supplier.held",
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
            hold_ref=hold.hold_ref,
            expires_at=hold.expires_at,
            price_minor=None if hold.price is None else hold.price.amount_minor,
        )
        return hold

    @activity.defn(name=ActivityName.CONFIRM_ITEM.value)
    async def confirm_item(self, request: ConfirmItemInput) -> ItemConfirmation:
        with application_errors(
            self._log,
            "supplier",
            ActivityName.CONFIRM_ITEM,
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
        ):
            confirmation = await self._client.confirm(request)
        self._log.info(
            "supplier.confirmed",
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
            supplier_ref=confirmation.supplier_ref,
        )
        return confirmation

    @activity.defn(name=ActivityName.RELEASE_ITEM.value)
    async def release_item_if_present(self, request: ReleaseItemInput) -> ItemRelease:
        with application_errors(
            self._log,
            "supplier",
            ActivityName.RELEASE_ITEM,
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
        ):
            release = await self._client.release(request)
        self._log.info(
            "supplier.released",
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
            status=release.status,
        )
        return release

    @activity.defn(name=ActivityName.CANCEL_ITEM.value)
    async def cancel_item_if_confirmed(self, request: CancelItemInput) -> ItemCancellation:
        with application_errors(
            self._log,
            "supplier",
            ActivityName.CANCEL_ITEM,
            booking_id=request.booking_id,
            item_id=request.item_id,
            supplier_ref=request.supplier_ref,
        ):
            cancellation = await self._client.cancel(request)
        self._log.info(
            "supplier.cancelled",
            booking_id=request.booking_id,
            item_id=request.item_id,
            supplier_ref=request.supplier_ref,
            status=cancellation.status,
            fee_minor=None if cancellation.fee is None else cancellation.fee.amount_minor,
        )
        return cancellation
