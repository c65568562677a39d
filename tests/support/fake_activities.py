"""Scriptable fakes of every Passage activity, registered under the real activity names.

For workflow-logic tests on the time-skipping server: each call is logged as `"<op> <item>"` (or
`"<op>"` for payment steps), and a script decides per call whether it succeeds, fails transiently,
is refused for good, or blocks until released.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.contracts import (
    ActivityName,
    AuthorizePaymentInput,
    CancelItemInput,
    CapturePaymentInput,
    ConfirmItemInput,
    GetPaymentInput,
    HoldItemInput,
    ItemCancellation,
    ItemConfirmation,
    ItemHold,
    ItemQuote,
    ItemRelease,
    PaymentAuthorization,
    PaymentCapture,
    PaymentRefund,
    PaymentState,
    PaymentVoid,
    QuoteItemInput,
    RecordBookingInput,
    RefundPaymentInput,
    ReleaseItemInput,
    VoidPaymentInput,
)
from workflows.model import CancellationTerms, ItemKind, Money

TRANSIENT = "transient"
BLOCK = "block"


def refuse(error_type: str) -> str:
    return f"refuse:{error_type}"


@dataclass
class Offer:
    kind: ItemKind = ItemKind.FLIGHT
    supplier: str = "aurora-air"
    unit_price: int = 10_000
    hold_ttl_seconds: int = 1800
    cancellation: CancellationTerms = field(default_factory=CancellationTerms)


@dataclass
class FakeBookingActivities:
    """In-memory suppliers and payment provider with a call log and per-call scripts."""

    currency: str = "EUR"
    offers: dict[str, Offer] = field(default_factory=dict)
    #: "<op> <item>" or "<op>" -> outcomes consumed one per call; an empty list means success.
    script: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    calls: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    snapshots: list[RecordBookingInput] = field(default_factory=list)
    payment_status: str = "requires_capture"
    payment_status_after_action: str = "requires_capture"
    unblock: asyncio.Event = field(default_factory=asyncio.Event)
    started: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    def offer(self, offer_id: str) -> Offer:
        return self.offers.setdefault(offer_id, Offer())

    def activities(self) -> list[object]:
        return [
            self.quote_item,
            self.hold_item,
            self.confirm_item,
            self.release_item_if_present,
            self.cancel_item_if_confirmed,
            self.authorize_payment,
            self.get_payment,
            self.void_payment_if_present,
            self.capture_payment,
            self.refund_payment,
            self.record_booking,
        ]

    def undo_calls(self) -> list[str]:
        undo = ("RELEASE", "CANCEL", "VOID", "REFUND")
        return [call for call in self.calls if call.split(" ")[0] in undo]

    async def _play(self, name: str) -> None:
        self.attempts[name] += 1
        self.started[name].set()
        outcomes = self.script.get(name)
        outcome = outcomes.pop(0) if outcomes else "ok"
        if outcome == TRANSIENT:
            raise ApplicationError(f"{name}: supplier unavailable", type="SUPPLIER_UNAVAILABLE")
        if outcome.startswith("refuse:"):
            error_type = outcome.removeprefix("refuse:")
            raise ApplicationError(f"{name}: {error_type}", type=error_type, non_retryable=True)
        if outcome == BLOCK:
            await self.unblock.wait()
        self.calls.append(name)

    @activity.defn(name=ActivityName.QUOTE_ITEM.value)
    async def quote_item(self, request: QuoteItemInput) -> ItemQuote:
        await self._play(f"QUOTE {request.item_id}")
        offer = self.offer(request.offer_id)
        return ItemQuote(
            offer_id=request.offer_id,
            kind=offer.kind,
            supplier=offer.supplier,
            price=Money(offer.unit_price * request.quantity, self.currency),
            cancellation=offer.cancellation,
            hold_ttl_seconds=offer.hold_ttl_seconds,
        )

    @activity.defn(name=ActivityName.HOLD_ITEM.value)
    async def hold_item(self, request: HoldItemInput) -> ItemHold:
        await self._play(f"HOLD {request.item_id}")
        ttl = timedelta(seconds=self.offer(request.offer_id).hold_ttl_seconds)
        expires = activity.info().current_attempt_scheduled_time + ttl
        return ItemHold(
            hold_ref=f"H-{request.booking_id}-{request.item_id}", expires_at=expires.isoformat()
        )

    @activity.defn(name=ActivityName.CONFIRM_ITEM.value)
    async def confirm_item(self, request: ConfirmItemInput) -> ItemConfirmation:
        await self._play(f"CONFIRM {request.item_id}")
        return ItemConfirmation(
            supplier_ref=f"B-{request.item_id}", confirmation_code=f"C{request.item_id.upper()}"
        )

    @activity.defn(name=ActivityName.RELEASE_ITEM.value)
    async def release_item_if_present(self, request: ReleaseItemInput) -> ItemRelease:
        await self._play(f"RELEASE {request.item_id}")
        return ItemRelease(status="released")

    @activity.defn(name=ActivityName.CANCEL_ITEM.value)
    async def cancel_item_if_confirmed(self, request: CancelItemInput) -> ItemCancellation:
        await self._play(f"CANCEL {request.item_id}")
        return ItemCancellation(status="cancelled" if request.supplier_ref else "absent")

    @activity.defn(name=ActivityName.AUTHORIZE_PAYMENT.value)
    async def authorize_payment(self, request: AuthorizePaymentInput) -> PaymentAuthorization:
        await self._play("AUTHORIZE")
        return PaymentAuthorization(
            payment_intent_id=f"pi_{request.booking_id}",
            status=self.payment_status,
            amount=request.amount,
            client_secret="pi_secret" if self.payment_status == "requires_action" else None,
        )

    @activity.defn(name=ActivityName.GET_PAYMENT.value)
    async def get_payment(self, request: GetPaymentInput) -> PaymentState:
        await self._play("GET_PAYMENT")
        return PaymentState(request.payment_intent_id, self.payment_status_after_action)

    @activity.defn(name=ActivityName.VOID_PAYMENT.value)
    async def void_payment_if_present(self, request: VoidPaymentInput) -> PaymentVoid:
        await self._play("VOID")
        return PaymentVoid(status="voided")

    @activity.defn(name=ActivityName.CAPTURE_PAYMENT.value)
    async def capture_payment(self, request: CapturePaymentInput) -> PaymentCapture:
        await self._play("CAPTURE")
        return PaymentCapture(amount=request.amount)

    @activity.defn(name=ActivityName.REFUND_PAYMENT.value)
    async def refund_payment(self, request: RefundPaymentInput) -> PaymentRefund:
        await self._play(f"REFUND {request.amount.amount_minor}")
        return PaymentRefund(refund_id="re_1", amount=request.amount)

    @activity.defn(name=ActivityName.RECORD_BOOKING.value)
    async def record_booking(self, snapshot: RecordBookingInput) -> None:
        self.snapshots.append(snapshot)
