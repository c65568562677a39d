"""Scriptable fakes of every Passage activity, registered under the real activity names.

For workflow-logic tests on the time-skipping server: each call is logged as `"<op> <item>"` (or
`"<op>"` for payment steps), and a script decides per call whether it succeeds, fails transiently,
is refused for good, does the work but loses the answer, or blocks until released.

The fakes also keep the world they stand for (live holds and bookings per item, the payment's
authorized, captured and refunded amounts), so tests can check the saga's invariants against what
"the suppliers" and "the card processor" hold, not only against the workflow's own view.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.batches import BatchedItemActivities
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
#: The call does its work, then its answer is lost (a timeout after the fact): retried.
LOST = "lost"

PAYMENT_STEPS = ("AUTHORIZE", "GET_PAYMENT", "VOID", "CAPTURE", "REFUND")


def refuse(error_type: str) -> str:
    return f"refuse:{error_type}"


@dataclass
class Offer:
    kind: ItemKind = ItemKind.FLIGHT
    supplier: str = "aurora-air"
    unit_price: int = 10_000
    hold_ttl_seconds: int = 1800
    cancellation: CancellationTerms = field(default_factory=CancellationTerms)
    #: The unit price the supplier holds at, when it moved since the quote.
    held_unit_price: int | None = None
    #: The fee the supplier reports on a cancel, when it is not what the terms say.
    reported_fee: int | None = None


@dataclass
class FakeWorld:
    """What the fake suppliers and card processor hold for one booking."""

    holds: dict[str, str] = field(default_factory=dict)  # item -> active|released|confirmed
    bookings: dict[str, str] = field(default_factory=dict)  # item -> confirmed|cancelled
    prices: dict[str, int] = field(default_factory=dict)  # item -> held price (minor)
    fees: dict[str, int] = field(default_factory=dict)  # item -> fee kept on cancel
    payment: str = "none"  # none|authorized|captured|voided|refunded
    payment_intents: int = 0
    authorized: int = 0
    captured: int = 0
    refunded: int = 0

    def live_holds(self) -> list[str]:
        return [item for item, status in self.holds.items() if status == "active"]

    def live_bookings(self) -> list[str]:
        return [item for item, status in self.bookings.items() if status == "confirmed"]


@dataclass
class FakeBookingActivities(BatchedItemActivities):
    """In-memory suppliers and payment provider with a call log and per-call scripts.

    The batch activities (`quote_items`, ...) are the real ones, run over these fakes item by item.
    """

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
    #: Per-call gates for BLOCK: `release(name)` opens one; `unblock` opens them all.
    gates: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    world: FakeWorld = field(default_factory=FakeWorld)
    #: While True the ledger is down: every write fails (retryably) and is counted.
    ledger_down: bool = False
    failed_writes: int = 0

    def release(self, name: str) -> None:
        """Let the blocked call `name` (e.g. "AUTHORIZE", "HOLD it_1") go on."""
        self.gates[name].set()

    def offer(self, offer_id: str) -> Offer:
        return self.offers.setdefault(offer_id, Offer())

    def activities(self) -> list[object]:
        return [
            self.quote_item,
            self.hold_item,
            self.confirm_item,
            self.release_item_if_present,
            self.cancel_item_if_confirmed,
            self.quote_items,
            self.hold_items,
            self.confirm_items,
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
            raise _transient(name)
        if outcome.startswith("refuse:"):
            error_type = outcome.removeprefix("refuse:")
            raise ApplicationError(f"{name}: {error_type}", type=error_type, non_retryable=True)
        if outcome == BLOCK:
            await _first_of(self.unblock, self.gates[name])
        self.calls.append(name)
        if outcome == LOST:
            self._lost.add(name)

    def _answer(self, name: str) -> None:
        """Raise the transient error of a call whose work was done but whose answer is lost."""
        if name in self._lost:
            self._lost.discard(name)
            raise _transient(name)

    def __post_init__(self) -> None:
        self._lost: set[str] = set()
        self._offers_by_item: dict[str, str] = {}
        self._refunds: dict[str, int] = {}

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
        )

    @activity.defn(name=ActivityName.HOLD_ITEM.value)
    async def hold_item(self, request: HoldItemInput) -> ItemHold:
        name = f"HOLD {request.item_id}"
        await self._play(name)
        offer = self.offer(request.offer_id)
        ttl = timedelta(seconds=offer.hold_ttl_seconds)
        expires = activity.info().current_attempt_scheduled_time + ttl
        unit = offer.unit_price if offer.held_unit_price is None else offer.held_unit_price
        if self.world.holds.get(request.item_id) not in ("active", "confirmed"):
            self.world.holds[request.item_id] = "active"
            self.world.prices[request.item_id] = unit * request.quantity
        self._offers_by_item[request.item_id] = request.offer_id
        self._answer(name)
        return ItemHold(
            hold_ref=f"H-{request.booking_id}-{request.item_id}",
            expires_at=expires.isoformat(),
            price=Money(self.world.prices[request.item_id], self.currency),
        )

    @activity.defn(name=ActivityName.CONFIRM_ITEM.value)
    async def confirm_item(self, request: ConfirmItemInput) -> ItemConfirmation:
        name = f"CONFIRM {request.item_id}"
        await self._play(name)
        item = request.item_id
        if self.world.holds.get(item) == "active":
            self.world.holds[item] = "confirmed"
            self.world.bookings[item] = "confirmed"
        elif self.world.bookings.get(item) != "confirmed":
            raise ApplicationError(f"{name}: no live hold", type="HOLD_EXPIRED", non_retryable=True)
        self._answer(name)
        return ItemConfirmation(
            supplier_ref=f"B-{request.item_id}", confirmation_code=f"C{request.item_id.upper()}"
        )

    @activity.defn(name=ActivityName.RELEASE_ITEM.value)
    async def release_item_if_present(self, request: ReleaseItemInput) -> ItemRelease:
        name = f"RELEASE {request.item_id}"
        await self._play(name)
        released = self.world.holds.get(request.item_id) == "active"
        if released:
            self.world.holds[request.item_id] = "released"
        self._answer(name)
        return ItemRelease(status="released" if released else "absent")

    @activity.defn(name=ActivityName.CANCEL_ITEM.value)
    async def cancel_item_if_confirmed(self, request: CancelItemInput) -> ItemCancellation:
        name = f"CANCEL {request.item_id}"
        await self._play(name)
        item = request.item_id
        if self.world.bookings.get(item) == "confirmed":
            self.world.bookings[item] = "cancelled"
            offer = self.offer(self._offers_by_item.get(item, ""))
            price = Money(self.world.prices.get(item, 0), self.currency)
            at = activity.info().current_attempt_scheduled_time
            fee = offer.cancellation.fee_for(price, at).amount_minor
            self.world.fees[item] = fee if offer.reported_fee is None else offer.reported_fee
        self._answer(name)
        if self.world.bookings.get(item) != "cancelled":
            return ItemCancellation(status="absent")
        return ItemCancellation(status="cancelled", fee=Money(self.world.fees[item], self.currency))

    @activity.defn(name=ActivityName.AUTHORIZE_PAYMENT.value)
    async def authorize_payment(self, request: AuthorizePaymentInput) -> PaymentAuthorization:
        await self._play("AUTHORIZE")
        world = self.world
        if world.payment == "none":
            world.payment, world.payment_intents = "authorized", 1
            world.authorized = request.amount.amount_minor
        self._answer("AUTHORIZE")
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
        world = self.world
        result = PaymentVoid(status="absent")
        if world.payment == "authorized":
            world.payment = "voided"
            result = PaymentVoid(status="voided")
        elif world.payment == "captured":
            refund = world.captured - world.refunded
            world.payment, world.refunded = "refunded", world.captured
            result = PaymentVoid(status="refunded", refunded=Money(refund, self.currency))
        elif world.payment == "voided":
            result = PaymentVoid(status="voided")
        self._answer("VOID")
        return result

    @activity.defn(name=ActivityName.CAPTURE_PAYMENT.value)
    async def capture_payment(self, request: CapturePaymentInput) -> PaymentCapture:
        await self._play("CAPTURE")
        world = self.world
        if world.payment == "authorized":
            if request.amount.amount_minor > world.authorized:
                raise ApplicationError("over capture", type="PAYMENT_FAILED", non_retryable=True)
            world.payment, world.captured = "captured", request.amount.amount_minor
        elif world.payment != "captured":
            raise ApplicationError(
                f"payment is {world.payment}", type="PAYMENT_FAILED", non_retryable=True
            )
        self._answer("CAPTURE")
        return PaymentCapture(amount=Money(world.captured, self.currency))

    @activity.defn(name=ActivityName.REFUND_PAYMENT.value)
    async def refund_payment(self, request: RefundPaymentInput) -> PaymentRefund:
        name = f"REFUND {request.amount.amount_minor}"
        await self._play(name)
        world = self.world
        key = request.reason
        if key not in self._refunds:
            if request.amount.amount_minor > world.captured - world.refunded:
                raise ApplicationError("over refund", type="PAYMENT_FAILED", non_retryable=True)
            self._refunds[key] = request.amount.amount_minor
            world.refunded += request.amount.amount_minor
            world.payment = "refunded"
        self._answer(name)
        return PaymentRefund(refund_id=f"re_{key}", amount=request.amount)

    @activity.defn(name=ActivityName.RECORD_BOOKING.value)
    async def record_booking(self, snapshot: RecordBookingInput) -> None:
        if self.ledger_down:
            self.failed_writes += 1
            raise ApplicationError("ledger unavailable", type="LEDGER_UNAVAILABLE")
        self.snapshots.append(snapshot)


def _transient(name: str) -> ApplicationError:
    kind = "PAYMENT_UNAVAILABLE" if name.split(" ")[0] in PAYMENT_STEPS else "SUPPLIER_UNAVAILABLE"
    return ApplicationError(f"{name}: unavailable", type=kind)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
