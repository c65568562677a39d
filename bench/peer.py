"""The non-durable peer: Passage's saga as a plain asyncio orchestration in one process.

What the systems Passage replaces do: call the suppliers and the card processor directly, keep
the saga's state in memory, undo on failure in the same process. It calls the same supplier
simulator and Stripe emulator through Passage's own adapters (`HttpSupplierClient`,
`StripePaymentGateway`), with the same client references and idempotency keys, so the difference
to Passage is the price of durability: no Temporal, no history, no ledger, no API; and nothing
survives a crash of this process (a hold or an authorization is then left behind).

The shape is Passage's happy path: quote every item, hold every item, authorize the total, confirm
every item, capture; an optional item that fails is undone alone and dropped, any other failure
undoes what was done in reverse order (cancel confirmations, void the payment, release holds).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from activities.errors import BusinessError, TransientError
from activities.ports import PaymentGateway, SupplierClient
from workflows.contracts import (
    AuthorizePaymentInput,
    CancelItemInput,
    CapturePaymentInput,
    ConfirmItemInput,
    ErrorType,
    HoldItemInput,
    ItemConfirmation,
    ItemHold,
    QuoteItemInput,
    ReleaseItemInput,
    VoidPaymentInput,
)
from workflows.model import Money

T = TypeVar("T")

#: Transient failures are retried in the process this often (Temporal would for Passage).
ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.2


class PeerFailed(Exception):
    """A non-optional step failed for good; what was done has been undone."""


@dataclass(frozen=True)
class PeerItem:
    item_id: str
    offer_id: str
    expected_price: Money
    optional: bool = False


@dataclass
class _Undo:
    """The undos registered so far, run last-in first-out."""

    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = field(default_factory=list)

    def register(self, name: str, undo: Callable[[], Awaitable[object]]) -> None:
        self.steps.append((name, undo))

    async def run_now(self, *names: str) -> None:
        """Run the named undos now, in the order given, and forget them."""
        for name in names:
            found = [undo for each, undo in self.steps if each == name]
            self.steps = [(each, undo) for each, undo in self.steps if each != name]
            for undo in found:
                await _retried(undo)

    async def run_all(self) -> None:
        while self.steps:
            _, undo = self.steps.pop()
            await _retried(undo)


async def _retried(call: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except TransientError:
            if attempt == ATTEMPTS:
                raise
            await asyncio.sleep(RETRY_DELAY_SECONDS * attempt)
    raise AssertionError("unreachable")


class PeerSaga:
    """One booking at a time per call; any number of calls may run concurrently."""

    def __init__(self, suppliers: SupplierClient, payments: PaymentGateway) -> None:
        self._suppliers = suppliers
        self._payments = payments

    async def book(
        self,
        booking_id: str,
        items: Sequence[PeerItem],
        payment_method: str,
        customer_ref: str,
    ) -> Money:
        """Book `items`; returns what was captured. Raises PeerFailed after undoing everything."""
        undo = _Undo()
        try:
            return await self._book(booking_id, list(items), payment_method, customer_ref, undo)
        except (BusinessError, TransientError) as failure:
            await undo.run_all()
            raise PeerFailed(str(failure)) from failure

    async def _book(
        self,
        booking_id: str,
        items: list[PeerItem],
        payment_method: str,
        customer_ref: str,
        undo: _Undo,
    ) -> Money:
        currency = items[0].expected_price.currency
        quotes = await self._each(
            items,
            lambda item: self._suppliers.quote(
                QuoteItemInput(booking_id, item.item_id, item.offer_id, 1)
            ),
            undo,
        )
        items = [item for item in items if item.item_id in quotes]
        prices = {item.item_id: quotes[item.item_id].price for item in items}
        expected = Money.total((item.expected_price for item in items), currency)
        if Money.total(prices.values(), currency) != expected:
            raise BusinessError(ErrorType.PRICE_CHANGED, "the price changed since it was quoted")

        def hold(item: PeerItem) -> Awaitable[ItemHold]:
            undo.register(
                f"hold {item.item_id}",
                lambda: self._suppliers.release(ReleaseItemInput(booking_id, item.item_id)),
            )
            return self._suppliers.hold(HoldItemInput(booking_id, item.item_id, item.offer_id, 1))

        holds = await self._each(items, hold, undo)
        items = [item for item in items if item.item_id in holds]
        total = Money.total((prices[item.item_id] for item in items), currency)
        authorization = AuthorizePaymentInput(booking_id, total, payment_method, customer_ref)
        intent: list[str | None] = [None]
        undo.register(
            "authorize",
            lambda: self._payments.void(VoidPaymentInput(authorization, intent[0])),
        )
        authorized = await _retried(lambda: self._payments.authorize(authorization))
        intent[0] = authorized.payment_intent_id
        if authorized.status != "requires_capture":
            raise BusinessError(ErrorType.PAYMENT_FAILED, f"payment is {authorized.status}")

        async def confirm(item: PeerItem) -> ItemConfirmation:
            hold_ref = holds[item.item_id].hold_ref
            confirmed: list[str | None] = [None]
            undo.register(
                f"confirm {item.item_id}",
                lambda: self._suppliers.cancel(
                    CancelItemInput(booking_id, item.item_id, confirmed[0], hold_ref)
                ),
            )
            confirmation = await self._suppliers.confirm(
                ConfirmItemInput(booking_id, item.item_id, hold_ref)
            )
            confirmed[0] = confirmation.supplier_ref
            return confirmation

        confirmations = await self._each(items, confirm, undo)
        amount = Money.total(
            (prices[item.item_id] for item in items if item.item_id in confirmations), currency
        )
        capture = await _retried(
            lambda: self._payments.capture(
                CapturePaymentInput(booking_id, authorized.payment_intent_id, amount)
            )
        )
        return capture.amount

    async def _each(
        self,
        items: list[PeerItem],
        call: Callable[[PeerItem], Awaitable[T]],
        undo: _Undo,
    ) -> dict[str, T]:
        """One step for every item at once; an optional item's failure is undone and dropped."""
        results = await asyncio.gather(
            *(_retried(functools.partial(call, item)) for item in items), return_exceptions=True
        )
        done: dict[str, T] = {}
        failure: BaseException | None = None
        for item, result in zip(items, results, strict=True):
            if not isinstance(result, BaseException):
                done[item.item_id] = result
            elif not isinstance(result, BusinessError | TransientError):
                raise result
            elif item.optional:
                await undo.run_now(f"confirm {item.item_id}", f"hold {item.item_id}")
            else:
                failure = failure or result
        if failure is not None:
            raise failure
        if not done:
            raise BusinessError(ErrorType.SOLD_OUT, "no item could be booked")
        return done
