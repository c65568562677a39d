"""Supplier activities: quote, hold, confirm, release and cancel one booking item.

Each activity is one call through the `SupplierClient` port. Refusals leave as non-retryable
ApplicationErrors typed by cause (SOLD_OUT, HOLD_EXPIRED, ...) so the saga can decide; transport
trouble leaves as retryable SUPPLIER_UNAVAILABLE so Temporal retries with the same client reference.
Logs carry ids and references only, never traveller data.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog
from temporalio import activity

from activities.errors import BusinessError, TransientError
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

T = TypeVar("T")


class SupplierActivities:
    """The supplier activities, bound to one `SupplierClient` by the worker's composition root."""

    def __init__(self, client: SupplierClient) -> None:
        self._client = client
        self._log = structlog.get_logger(__name__)

    @activity.defn(name=ActivityName.QUOTE_ITEM.value)
    async def quote_item(self, request: QuoteItemInput) -> ItemQuote:
        quote = await self._call(
            ActivityName.QUOTE_ITEM,
            self._client.quote(request),
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
        )
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
        hold = await self._call(
            ActivityName.HOLD_ITEM,
            self._client.hold(request),
            booking_id=request.booking_id,
            item_id=request.item_id,
            offer_id=request.offer_id,
        )
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
        confirmation = await self._call(
            ActivityName.CONFIRM_ITEM,
            self._client.confirm(request),
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
        )
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
        release = await self._call(
            ActivityName.RELEASE_ITEM,
            self._client.release(request),
            booking_id=request.booking_id,
            item_id=request.item_id,
            hold_ref=request.hold_ref,
        )
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
        cancellation = await self._call(
            ActivityName.CANCEL_ITEM,
            self._client.cancel(request),
            booking_id=request.booking_id,
            item_id=request.item_id,
            supplier_ref=request.supplier_ref,
        )
        self._log.info(
            "supplier.cancelled",
            booking_id=request.booking_id,
            item_id=request.item_id,
            supplier_ref=request.supplier_ref,
            status=cancellation.status,
            fee_minor=None if cancellation.fee is None else cancellation.fee.amount_minor,
        )
        return cancellation

    async def _call(self, name: ActivityName, call: Awaitable[T], **ids: Any) -> T:
        """Await the port call, turning adapter errors into the ApplicationError Temporal sees."""
        try:
            return await call
        except BusinessError as err:
            # Final: the saga decides what to do, Temporal does not retry.
            self._log.warning(
                "supplier.refused",
                activity=name.value,
                attempt=activity.info().attempt,
                error_type=err.error_type.value,
                **ids,
            )
            raise err.to_application_error() from err
        except TransientError as err:
            self._log.warning(
                "supplier.unavailable",
                activity=name.value,
                attempt=activity.info().attempt,
                error=str(err),
                **ids,
            )
            raise err.to_application_error() from err
