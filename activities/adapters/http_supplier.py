"""`SupplierClient` over HTTP against the supplier API (the simulator in dev, tests and demo).

Every call carries the client reference of its operation (`booking:item:operation`), so a retry
after a lost answer is recognised by the supplier instead of repeated. Confirm, release and cancel
address the reservation by the supplier's reference when the workflow knows it, and otherwise by the
hold's client reference: that is how a release after a lost hold answer still finds the hold.

The adapter never retries by itself (Temporal owns retries); `classify` is the one place that
decides what is a final refusal and what may pass on retry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as quote_path

import httpx

from activities.errors import BusinessError, TransientError
from workflows.contracts import (
    CancelItemInput,
    CancellationStatus,
    ConfirmItemInput,
    ErrorType,
    HoldItemInput,
    ItemCancellation,
    ItemConfirmation,
    ItemHold,
    ItemQuote,
    ItemRelease,
    QuoteItemInput,
    ReleaseItemInput,
    ReleaseStatus,
    client_ref,
)
from workflows.model import CancellationTerms, ItemKind, Money

#: Supplier refusal codes the workflow tells apart; any other refusal is SUPPLIER_REFUSED.
REFUSAL_CODES: dict[str, ErrorType] = {
    code.value: code
    for code in (
        ErrorType.SOLD_OUT,
        ErrorType.HOLD_EXPIRED,
        ErrorType.NOT_CANCELLABLE,
        ErrorType.OFFER_NOT_FOUND,
        ErrorType.INVALID_REQUEST,
        ErrorType.PRICE_CHANGED,
    )
}

#: Client errors that say "not now" rather than "no": retrying later may succeed.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})

Json = dict[str, Any]


def classify(failure: httpx.Response | httpx.HTTPError) -> BusinessError | TransientError:
    """Turn a failed call into the error the activity raises: a final refusal or a transient.

    Transport trouble (timeouts, refused connections, broken responses), 5xx and throttling may
    pass on retry; any other 4xx is a refusal, typed by the supplier's error code when the
    workflow knows it (SOLD_OUT, HOLD_EXPIRED, ...) and SUPPLIER_REFUSED otherwise.
    """
    if isinstance(failure, httpx.HTTPError):
        return TransientError(f"supplier unreachable: {type(failure).__name__}: {failure}")
    status = failure.status_code
    code, message = _error_body(failure)
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
        return TransientError(f"supplier answered {status} {code or ''}: {message}".strip())
    error_type = REFUSAL_CODES.get(code or "", ErrorType.SUPPLIER_REFUSED)
    return BusinessError(error_type, f"supplier refused ({status} {code or 'no code'}): {message}")


class HttpSupplierClient:
    """The supplier API through an `httpx.AsyncClient` configured by the composition root.

    Args:
        client: Carries the base URL and the timeout; its lifetime belongs to the caller.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def quote(self, request: QuoteItemInput) -> ItemQuote:
        body = await self._post(
            "/quotes",
            {
                "offer_id": request.offer_id,
                "quantity": request.quantity,
                "client_ref": client_ref(request.booking_id, request.item_id, "quote"),
            },
        )
        try:
            terms = body["cancellation"]
            return ItemQuote(
                offer_id=str(body["offer_id"]),
                kind=ItemKind(body["kind"]),
                supplier=str(body["supplier"]),
                price=_money(body["price"]),
                cancellation=CancellationTerms(
                    refundable=bool(terms["refundable"]),
                    free_until=terms.get("free_until"),
                    fee_bps=int(terms["fee_bps"]),
                    cancellable=bool(terms.get("cancellable", True)),
                ),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise _malformed("quote", err) from err

    async def hold(self, request: HoldItemInput) -> ItemHold:
        body = await self._post(
            "/holds",
            {
                "offer_id": request.offer_id,
                "quantity": request.quantity,
                "client_ref": _hold_ref(request.booking_id, request.item_id),
            },
        )
        try:
            return ItemHold(
                hold_ref=str(body["hold_ref"]),
                expires_at=str(body["expires_at"]),
                price=_optional_money(body.get("price")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise _malformed("hold", err) from err

    async def confirm(self, request: ConfirmItemInput) -> ItemConfirmation:
        ref = request.hold_ref or _hold_ref(request.booking_id, request.item_id)
        body = await self._post(
            f"/holds/{_segment(ref)}/confirm",
            {"client_ref": client_ref(request.booking_id, request.item_id, "confirm")},
        )
        try:
            return ItemConfirmation(
                supplier_ref=str(body["booking_ref"]),
                confirmation_code=str(body["confirmation_code"]),
            )
        except KeyError as err:
            raise _malformed("confirm", err) from err

    async def release(self, request: ReleaseItemInput) -> ItemRelease:
        ref = request.hold_ref or _hold_ref(request.booking_id, request.item_id)
        body = await self._post(
            f"/holds/{_segment(ref)}/release",
            {"client_ref": client_ref(request.booking_id, request.item_id, "release")},
        )
        try:
            return ItemRelease(status=ReleaseStatus(body["status"]))
        except (KeyError, ValueError) as err:
            raise _malformed("release", err) from err

    async def cancel(self, request: CancelItemInput) -> ItemCancellation:
        ref = (
            request.supplier_ref
            or request.hold_ref
            or _hold_ref(request.booking_id, request.item_id)
        )
        body = await self._post(
            f"/bookings/{_segment(ref)}/cancel",
            {"client_ref": client_ref(request.booking_id, request.item_id, "cancel")},
        )
        try:
            return ItemCancellation(
                status=CancellationStatus(body["status"]), fee=_optional_money(body.get("fee"))
            )
        except (KeyError, TypeError, ValueError) as err:
            raise _malformed("cancel", err) from err

    async def _post(self, path: str, payload: Json) -> Json:
        try:
            response = await self._client.post(path, json=payload)
        except httpx.HTTPError as err:
            raise classify(err) from err
        if not response.is_success:
            raise classify(response)
        try:
            body = response.json()
        except ValueError as err:
            raise _malformed(path, err) from err
        if not isinstance(body, dict):
            raise TransientError(f"supplier answered {path} with a {type(body).__name__}")
        return body


def _hold_ref(booking_id: str, item_id: str) -> str:
    """The hold's client reference: also the address of a hold whose own reference was lost."""
    return client_ref(booking_id, item_id, "hold")


def _segment(ref: str) -> str:
    return quote_path(ref, safe="")


def _money(data: Any) -> Money:
    return Money(amount_minor=int(data["amount"]), currency=str(data["currency"]))


def _optional_money(data: Any) -> Money | None:
    """An amount the supplier may leave out (`null` or absent): the held price, a fee."""
    return None if data is None else _money(data)


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    """The supplier's `{"error": {"code", "message"}}`, tolerating bodies that are not JSON."""
    try:
        error = response.json().get("error")
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, AttributeError, KeyError, TypeError):
        return None, response.text[:200]


def _malformed(operation: str, err: Exception) -> TransientError:
    """A 2xx we cannot read: the operation is idempotent, so a retry is the safe answer."""
    return TransientError(f"supplier {operation} answer unreadable: {type(err).__name__}: {err}")
