"""Random interleavings of call outcomes and messages: the booking's invariants always hold.

Hypothesis draws a booking (one to three items, the later ones maybe optional, some with a
cancellation fee, maybe 3-D Secure), an outcome per call (ok, transient, refused, or done with
its answer lost) and up to two messages (customer cancel, staff cancel, workflow cancel), each
delivered while a chosen attempt of a chosen call is held blocked, or once the booking has
settled. The run then settles and tests/support/invariants.py checks it.

Derandomized (a fixed sequence of examples) so that CI runs the same 50 bookings every time, and
without shrinking, which would replay hundreds of bookings; the falsifying plan is printed whole.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.support.booking_run import BookingRun
from tests.support.fake_activities import BLOCK, LOST, TRANSIENT, FakeBookingActivities, Offer
from tests.support.fake_activities import refuse as refused
from tests.support.invariants import SETTLED, check_settled_booking
from tests.support.temporal import started_time_skipping_env
from tests.workflows.test_booking_saga import booking_request
from workflows.model import BookingItemRequest, BookingStatus, CancellationTerms, Money

OFFERS = (("fl-1", 10_000), ("ht-1", 10_000), ("ac-1", 3_000))
#: The error a supplier or Stripe gives when it refuses each kind of call for good.
REFUSALS = {
    "QUOTE": "OFFER_NOT_FOUND",
    "HOLD": "SOLD_OUT",
    "AUTHORIZE": "PAYMENT_DECLINED",
    "CONFIRM": "HOLD_EXPIRED",
    "CAPTURE": "PAYMENT_FAILED",
    "RELEASE": "SUPPLIER_REFUSED",
    "CANCEL": "NOT_CANCELLABLE",
    "VOID": "PAYMENT_FAILED",
    "GET_PAYMENT": "PAYMENT_FAILED",
}
MESSAGES = ("customer_cancel", "staff_cancel", "workflow_cancel")
#: A delivery point that is not a call: the booking has settled (e.g. CONFIRMED, then cancelled).
SETTLED_POINT = "settled"


@dataclass(frozen=True)
class Delivery:
    message: str
    #: The call ("HOLD it_2") whose `attempt`-th try (0-based) is held while the message arrives.
    call: str
    attempt: int = 0

    def reached(self, fake: FakeBookingActivities, status: BookingStatus) -> bool:
        if self.call == SETTLED_POINT:
            return status in SETTLED
        return fake.attempts[self.call] > self.attempt


@dataclass(frozen=True)
class Plan:
    optional: tuple[bool, ...]
    fee_bps: tuple[int, ...]
    three_d_secure: bool
    authenticated: bool
    script: tuple[tuple[str, tuple[str, ...]], ...]
    deliveries: tuple[Delivery, ...]

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(f"it_{index + 1}" for index in range(len(self.optional)))


def _calls(items: tuple[str, ...], three_d_secure: bool) -> list[str]:
    per_item = [f"{op} {item}" for item in items for op in ("QUOTE", "HOLD", "CONFIRM")]
    undo = [f"{op} {item}" for item in items for op in ("RELEASE", "CANCEL")]
    payment = ["AUTHORIZE", "CAPTURE", "VOID"] + (["GET_PAYMENT"] if three_d_secure else [])
    return per_item + payment + undo


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    count = draw(st.integers(1, 3))
    optional = (False, *(draw(st.booleans()) for _ in range(count - 1)))
    fee_bps = tuple(draw(st.sampled_from((0, 0, 1_000))) for _ in range(count))
    three_d_secure = draw(st.booleans())
    authenticated = draw(st.booleans()) if three_d_secure else True
    items = tuple(f"it_{index + 1}" for index in range(count))
    calls = _calls(items, three_d_secure)
    outcome = st.sampled_from(("ok", "ok", "ok", TRANSIENT, LOST, "refuse"))
    script: dict[str, list[str]] = {}
    for call in calls:
        outcomes = draw(st.lists(outcome, max_size=2))
        if any(o != "ok" for o in outcomes):
            op = call.split(" ")[0]
            script[call] = [refused(REFUSALS[op]) if o == "refuse" else o for o in outcomes]
    deliveries: list[Delivery] = []
    for message in draw(st.lists(st.sampled_from(MESSAGES), max_size=2)):
        points = [c for c in calls if c not in {d.call for d in deliveries}]
        if message != "workflow_cancel":
            points.append(SETTLED_POINT)
        call = draw(st.sampled_from(points))
        attempt = 0
        if call != SETTLED_POINT:
            attempt = draw(st.integers(0, len(script.get(call, ()))))
            script.setdefault(call, []).insert(attempt, BLOCK)
        deliveries.append(Delivery(message, call, attempt))
    return Plan(
        optional=optional,
        fee_bps=fee_bps,
        three_d_secure=three_d_secure,
        authenticated=authenticated,
        script=tuple((call, tuple(outcomes)) for call, outcomes in script.items()),
        deliveries=tuple(deliveries),
    )


def _arrange(plan: Plan) -> tuple[FakeBookingActivities, list[BookingItemRequest]]:
    fake = FakeBookingActivities()
    requested = []
    for index, item in enumerate(plan.items):
        offer_id, price = OFFERS[index]
        terms = CancellationTerms(fee_bps=plan.fee_bps[index])
        fake.offers[offer_id] = Offer(unit_price=price, cancellation=terms)
        money = Money(price, "EUR")
        requested.append(BookingItemRequest(item, offer_id, 1, money, plan.optional[index]))
    for call, outcomes in plan.script:
        fake.script[call] = list(outcomes)
    if plan.three_d_secure:
        fake.payment_status = "requires_action"
        fake.payment_status_after_action = (
            "requires_capture" if plan.authenticated else "requires_payment_method"
        )
    return fake, requested


async def _deliver(run: BookingRun, delivery: Delivery) -> None:
    # Best effort: another call may be waiting out its retry backoff.
    await run.wait_quiet(in_flight=0 if delivery.call == SETTLED_POINT else 1, within=3)
    if delivery.message == "customer_cancel":
        await run.cancel("customer")
    elif delivery.message == "staff_cancel":
        await run.cancel("staff:ops", note="forced by ops")
    else:
        await run.stop()
    await run.wait_idle(within=12)
    if delivery.call != SETTLED_POINT:
        run.fake.release(delivery.call)


async def _drive(run: BookingRun, plan: Plan, within: float = 30.0) -> None:
    """Pump the clock and deliver each message when its point is reached, until none is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = list(plan.deliveries)
    clock: asyncio.Future[None] | None = None
    try:
        while pending and loop.time() < deadline and not await run.closed():
            status = (await run.view()).status
            reached = [d for d in pending if d.reached(run.fake, status)]
            if reached:
                pending.remove(reached[0])
                await _deliver(run, reached[0])
                continue
            if status in SETTLED and all(d.call != SETTLED_POINT for d in pending):
                break  # nothing will run the calls the other messages wait for
            # Skip time in the background: a call that blocks holds the clock, the sleep waits.
            if clock is None or clock.done():
                clock = asyncio.ensure_future(run.env.sleep(2))
            await asyncio.sleep(0.02)
    finally:
        run.fake.unblock.set()
        if clock is not None:
            await clock


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=plans())
async def test_any_interleaving_keeps_the_booking_invariants(plan: Plan) -> None:
    note(f"plan: {plan!r}")
    fake, items = _arrange(plan)
    request = booking_request(*items)
    async with started_time_skipping_env() as env, BookingRun(env, fake, request) as run:
        await _drive(run, plan)
        view = await run.settle()
    check_settled_booking(view, fake, run.updates)
