"""The supplier simulator's pure logic: stock, holds, bookings, fees and faults (no HTTP)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from passage.statefile import StateFile
from simulator import catalog
from simulator.app import create_app
from simulator.faults import Fault, FaultBook, Mode, Operation, Phase
from simulator.inventory import BookingStatus, HoldStatus, Inventory, Refusal
from simulator.service import Simulator, SupplierTimeout, SupplierUnavailable
from workflows.model import CancellationTerms, Money

START = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)

FLIGHT = "fl-aurora-cdg-jfk"  # capacity 9, fee 1000 bps (free period over), 60 000
LAST_SEAT = "fl-borealis-lhr-osl"  # capacity 1, free cancellation
CRUISE = "cr-polaris-fjords-inside"  # capacity 4, 15 min holds
NON_REFUNDABLE = "fl-borealis-osl-kef"  # capacity 2
FREE_FOR_NOW = "fl-aurora-jfk-cdg"  # free until 2099, then 1500 bps
NOT_CANCELLABLE = "ac-city-louvre"


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def inventory(clock: FakeClock) -> Inventory:
    return Inventory(catalog.default_offers(), clock, random.Random(7))


def stock(inventory: Inventory, offer_id: str) -> tuple[int, int, int]:
    row = next(row for row in inventory.ledger().stock if row.offer_id == offer_id)
    return row.free, row.held, row.booked


def refusal_code(call: object) -> str:
    assert callable(call)
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value.code


# --- catalogue -----------------------------------------------------------------------------------


def test_catalogue_has_every_kind_from_two_suppliers_with_every_kind_of_terms() -> None:
    offers = catalog.default_offers()
    assert len({offer.offer_id for offer in offers}) == len(offers)
    for kind in catalog.Kind:
        assert len({o.supplier for o in offers if o.kind is kind}) >= 2, kind
    terms = [offer.cancellation for offer in offers]
    assert any(not t.refundable and t.cancellable for t in terms)
    assert any(not t.cancellable for t in terms)
    assert any(
        t.refundable and t.fee_bps > 0 and t.free_until == catalog.PAST_DEADLINE for t in terms
    )
    assert any(t.refundable and t.fee_bps == 0 for t in terms)
    assert any(offer.capacity == 1 for offer in offers)
    assert all(offer.currency == "EUR" and offer.price_minor > 0 for offer in offers)


def test_hold_ttl_depends_on_kind(inventory: Inventory) -> None:
    expected = {"cruise": 900, "flight": 1800, "hotel": 1200, "ferry": 1200, "activity": 1800}
    for view in inventory.offers():
        hold, _ = inventory.hold(view.offer.offer_id, 1, f"ref-{view.offer.offer_id}")
        assert (hold.expires_at - hold.created_at).total_seconds() == expected[view.offer.kind]


# --- holds and expiry ----------------------------------------------------------------------------


def test_hold_takes_stock_until_its_ttl_then_expiry_frees_it(
    inventory: Inventory, clock: FakeClock
) -> None:
    hold, created = inventory.hold(CRUISE, 3, "bk_1:it_1:hold")
    assert created and hold.status is HoldStatus.ACTIVE
    assert stock(inventory, CRUISE) == (1, 3, 0)

    clock.advance(15 * 60 - 1)
    assert inventory.expire_due() == []
    assert stock(inventory, CRUISE) == (1, 3, 0)

    clock.advance(1)
    expired = inventory.expire_due()
    assert [h.hold_ref for h in expired] == [hold.hold_ref]
    assert stock(inventory, CRUISE) == (4, 0, 0)
    assert refusal_code(lambda: inventory.confirm(hold.hold_ref)) == "HOLD_EXPIRED"


def test_expired_stock_is_available_to_the_next_hold_without_a_sweep(
    inventory: Inventory, clock: FakeClock
) -> None:
    inventory.hold(LAST_SEAT, 1, "bk_1:it_1:hold")
    assert refusal_code(lambda: inventory.hold(LAST_SEAT, 1, "bk_2:it_1:hold")) == "SOLD_OUT"
    clock.advance(30 * 60)
    hold, created = inventory.hold(LAST_SEAT, 1, "bk_2:it_1:hold")
    assert created and hold.status is HoldStatus.ACTIVE
    assert stock(inventory, LAST_SEAT) == (0, 1, 0)


def test_hold_is_idempotent_by_client_ref_whatever_its_status(
    inventory: Inventory, clock: FakeClock
) -> None:
    first, created = inventory.hold(FLIGHT, 2, "bk_1:it_1:hold")
    again, created_again = inventory.hold(FLIGHT, 2, "bk_1:it_1:hold")
    assert created and not created_again
    assert again == first
    assert stock(inventory, FLIGHT) == (7, 2, 0)

    clock.advance(3600)
    replay, created_late = inventory.hold(FLIGHT, 2, "bk_1:it_1:hold")
    assert not created_late
    assert replay.hold_ref == first.hold_ref and replay.status is HoldStatus.EXPIRED
    assert stock(inventory, FLIGHT) == (9, 0, 0)


def test_reusing_a_client_ref_for_another_request_is_refused(inventory: Inventory) -> None:
    inventory.hold(FLIGHT, 2, "bk_1:it_1:hold")
    assert (
        refusal_code(lambda: inventory.hold(FLIGHT, 1, "bk_1:it_1:hold")) == "CLIENT_REF_CONFLICT"
    )
    assert (
        refusal_code(lambda: inventory.hold(CRUISE, 2, "bk_1:it_1:hold")) == "CLIENT_REF_CONFLICT"
    )
    assert stock(inventory, FLIGHT) == (7, 2, 0)


def test_sold_out_when_not_enough_free_stock(inventory: Inventory) -> None:
    inventory.hold(NON_REFUNDABLE, 1, "a")
    assert refusal_code(lambda: inventory.hold(NON_REFUNDABLE, 2, "b")) == "SOLD_OUT"
    hold, _ = inventory.hold(NON_REFUNDABLE, 1, "c")
    assert refusal_code(lambda: inventory.hold(NON_REFUNDABLE, 1, "d")) == "SOLD_OUT"
    inventory.release(hold.hold_ref)
    assert inventory.hold(NON_REFUNDABLE, 1, "d")[1]


def test_bad_requests_are_refused_as_invalid_or_unknown(inventory: Inventory) -> None:
    assert refusal_code(lambda: inventory.hold(FLIGHT, 0, "a")) == "INVALID_REQUEST"
    assert refusal_code(lambda: inventory.hold(FLIGHT, 1, "")) == "INVALID_REQUEST"
    assert refusal_code(lambda: inventory.hold("no-such-offer", 1, "a")) == "OFFER_NOT_FOUND"
    assert refusal_code(lambda: inventory.quote("no-such-offer", 1)) == "OFFER_NOT_FOUND"
    assert refusal_code(lambda: inventory.confirm("no-such-hold")) == "NOT_FOUND"
    assert stock(inventory, FLIGHT) == (9, 0, 0)


# --- confirm, release, cancel --------------------------------------------------------------------


def test_confirm_is_idempotent_and_addressable_by_hold_or_client_ref(inventory: Inventory) -> None:
    hold, _ = inventory.hold(FLIGHT, 2, "bk_1:it_1:hold")
    booking = inventory.confirm("bk_1:it_1:hold", "bk_1:it_1:confirm")
    assert booking.status is BookingStatus.CONFIRMED and booking.hold_ref == hold.hold_ref
    assert inventory.confirm(hold.hold_ref, "bk_1:it_1:confirm") == booking
    assert inventory.confirm("bk_1:it_1:confirm") == booking
    assert stock(inventory, FLIGHT) == (7, 0, 2)
    assert len(inventory.ledger().bookings) == 1


def test_release_if_present_reports_each_state(inventory: Inventory, clock: FakeClock) -> None:
    assert inventory.release("nothing-here").status == "absent"

    active, _ = inventory.hold(FLIGHT, 1, "r1")
    assert inventory.release("r1").status == "released"
    assert inventory.release(active.hold_ref).status == "released"

    confirmed, _ = inventory.hold(FLIGHT, 1, "r2")
    inventory.confirm("r2")
    assert inventory.release("r2").status == "confirmed"

    inventory.hold(FLIGHT, 1, "r3")
    clock.advance(1800)
    assert inventory.release("r3").status == "expired"

    assert stock(inventory, FLIGHT) == (8, 0, 1)
    assert refusal_code(lambda: inventory.confirm(active.hold_ref)) == "HOLD_EXPIRED"


@pytest.mark.parametrize(
    ("offer_id", "quantity", "expected_fee"),
    [
        (FLIGHT, 2, 12_000),  # free period over: 10 % of 120 000
        (FREE_FOR_NOW, 1, 0),  # still inside the free period
        (NON_REFUNDABLE, 2, 37_800),  # the whole price
        (LAST_SEAT, 1, 0),  # free cancellation, no deadline
        ("ht-harbour-rkv-2n", 1, 21_000),  # 50 %
    ],
)
def test_cancel_keeps_the_fee_of_the_terms(
    inventory: Inventory, offer_id: str, quantity: int, expected_fee: int
) -> None:
    inventory.hold(offer_id, quantity, "bk_1:it_1:hold")
    booking = inventory.confirm("bk_1:it_1:hold")
    capacity = next(o.capacity for o in catalog.default_offers() if o.offer_id == offer_id)

    result = inventory.cancel(booking.booking_ref)
    assert result.status == "cancelled"
    assert result.booking is not None and result.booking.cancellation_fee_minor == expected_fee
    assert stock(inventory, offer_id) == (capacity, 0, 0)

    again = inventory.cancel("bk_1:it_1:hold")
    assert again == result
    assert stock(inventory, offer_id) == (capacity, 0, 0)


def test_fee_is_rounded_down_in_minor_units(inventory: Inventory) -> None:
    inventory.set_price(FLIGHT, 12_345)
    inventory.hold(FLIGHT, 1, "h")
    inventory.confirm("h")
    result = inventory.cancel("h")
    assert result.booking is not None and result.booking.cancellation_fee_minor == 1_234


def test_not_cancellable_booking_stays_booked(inventory: Inventory) -> None:
    inventory.hold(NOT_CANCELLABLE, 2, "h")
    inventory.confirm("h")
    assert refusal_code(lambda: inventory.cancel("h")) == "NOT_CANCELLABLE"
    assert stock(inventory, NOT_CANCELLABLE)[2] == 2


def test_cancel_of_an_unbooked_reference_is_absent_and_leaves_holds_alone(
    inventory: Inventory,
) -> None:
    assert inventory.cancel("never-seen").status == "absent"
    inventory.hold(CRUISE, 1, "h")
    assert inventory.cancel("h").status == "absent"
    assert stock(inventory, CRUISE) == (3, 1, 0)


def test_hold_keeps_its_price_when_the_offer_price_moves(inventory: Inventory) -> None:
    inventory.hold(FLIGHT, 2, "h")
    inventory.set_price(FLIGHT, 70_000)
    assert inventory.quote(FLIGHT, 2).price_minor == 140_000
    assert inventory.confirm("h").price_minor == 120_000


def test_reset_restores_stock_prices_and_ttls(inventory: Inventory) -> None:
    inventory.set_price(FLIGHT, 1)
    inventory.set_hold_ttl(5)
    inventory.hold(FLIGHT, 3, "h")
    inventory.confirm("h")
    inventory.reset()
    view = inventory.offer(FLIGHT)
    assert (view.price_minor, view.capacity_left, view.hold_ttl_seconds) == (60_000, 9, 1800)
    ledger = inventory.ledger()
    assert ledger.holds == () and ledger.bookings == ()
    assert inventory.release("h").status == "absent"


def catalog_capacity(offer_id: str) -> int:
    return next(o.capacity for o in catalog.default_offers() if o.offer_id == offer_id)


def test_capacity_scale_multiplies_every_capacity_on_a_fresh_inventory(
    inventory: Inventory,
) -> None:
    inventory.hold(LAST_SEAT, 1, "h1")
    inventory.hold(FLIGHT, 2, "h2")
    inventory.confirm("h2")
    inventory.set_capacity_scale(10)
    for row in inventory.ledger().stock:
        expected = 10 * catalog_capacity(row.offer_id)
        assert (row.capacity, row.free, row.held, row.booked) == (expected, expected, 0, 0)
        assert inventory.offer(row.offer_id).capacity == expected
    assert inventory.ledger().holds == () and inventory.ledger().bookings == ()
    assert inventory.release("h1").status == "absent"
    for n in range(10):
        inventory.hold(LAST_SEAT, 1, f"seat-{n}")
    assert refusal_code(lambda: inventory.hold(LAST_SEAT, 1, "seat-10")) == "SOLD_OUT"


def test_capacity_scale_keeps_prices_and_ttl_but_reset_ends_load_mode(
    inventory: Inventory,
) -> None:
    inventory.set_price(FLIGHT, 1)
    inventory.set_hold_ttl(5)
    inventory.set_capacity_scale(3)
    view = inventory.offer(FLIGHT)
    assert (view.price_minor, view.hold_ttl_seconds, view.capacity, view.capacity_left) == (
        1,
        5,
        27,
        27,
    )
    inventory.reset()
    assert inventory.capacity_scale == 1
    assert (inventory.offer(FLIGHT).capacity, inventory.offer(FLIGHT).capacity_left) == (9, 9)


@pytest.mark.parametrize("scale", [0, -1, True, 2.0, "3", None])
def test_capacity_scale_below_one_or_not_an_integer_is_refused(
    inventory: Inventory, scale: object
) -> None:
    inventory.hold(FLIGHT, 1, "kept")
    assert refusal_code(lambda: inventory.set_capacity_scale(scale)) == "INVALID_REQUEST"  # type: ignore[arg-type]
    assert inventory.capacity_scale == 1 and stock(inventory, FLIGHT) == (8, 1, 0)


def test_capacity_scale_survives_a_snapshot_and_old_snapshots_are_at_scale_one(
    inventory: Inventory, clock: FakeClock
) -> None:
    inventory.set_capacity_scale(4)
    inventory.hold(LAST_SEAT, 3, "h")
    snapshot = inventory.snapshot()
    restored = Inventory(catalog.default_offers(), clock, random.Random(1))
    restored.restore(snapshot)
    assert restored.capacity_scale == 4 and stock(restored, LAST_SEAT) == (1, 3, 0)
    fresh = Inventory(catalog.default_offers(), clock, random.Random(1)).snapshot()
    restored.restore({key: value for key, value in fresh.items() if key != "capacity_scale"})
    assert restored.capacity_scale == 1 and stock(restored, LAST_SEAT) == (1, 0, 0)


def test_ttl_override_applies_to_every_kind(inventory: Inventory, clock: FakeClock) -> None:
    inventory.set_hold_ttl(2)
    inventory.hold(FLIGHT, 1, "h")
    clock.advance(2)
    assert refusal_code(lambda: inventory.confirm("h")) == "HOLD_EXPIRED"


# --- fees agree with the engine's own computation ------------------------------------------------


@given(
    refundable=st.booleans(),
    free_until=st.one_of(
        st.none(), st.sampled_from([catalog.PAST_DEADLINE, catalog.FUTURE_DEADLINE])
    ),
    fee_bps=st.integers(min_value=0, max_value=10_000),
    price=st.integers(min_value=0, max_value=10**9),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
def test_simulator_fee_equals_the_fee_the_engine_refunds_against(
    refundable: bool, free_until: str | None, fee_bps: int, price: int, at: datetime
) -> None:
    policy = catalog.CancellationPolicy(refundable, free_until, fee_bps)
    terms = CancellationTerms(refundable, free_until, fee_bps)
    assert policy.fee_for(price, at) == terms.fee_for(Money(price, "EUR"), at).amount_minor
    assert 0 <= policy.fee_for(price, at) <= price


# --- the invariant under random operation sequences ----------------------------------------------

MACHINE_OFFERS = (LAST_SEAT, NON_REFUNDABLE, CRUISE, NOT_CANCELLABLE)
CLIENT_REFS = tuple(f"bk_{n}:it_1:hold" for n in range(6))


@dataclass
class _Expected:
    """What the machine knows must be true, independently of the inventory's own bookkeeping."""

    hold_of: dict[str, str] = field(default_factory=dict)  # client ref -> hold ref


class InventoryMachine(RuleBasedStateMachine):
    """Random interleavings of every operation must keep each offer's units accounted for."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.inventory = Inventory(catalog.default_offers(), self.clock, random.Random(1))
        self.expected = _Expected()

    @rule(
        offer_id=st.sampled_from(MACHINE_OFFERS),
        quantity=st.integers(1, 3),
        ref=st.sampled_from(CLIENT_REFS),
    )
    def hold(self, offer_id: str, quantity: int, ref: str) -> None:
        self.inventory.expire_due()
        before = stock(self.inventory, offer_id)
        try:
            hold, created = self.inventory.hold(offer_id, quantity, ref)
        except Refusal as refusal:
            assert refusal.code in ("SOLD_OUT", "CLIENT_REF_CONFLICT")
            assert stock(self.inventory, offer_id) == before
            return
        if created:
            assert ref not in self.expected.hold_of
            self.expected.hold_of[ref] = hold.hold_ref
            assert stock(self.inventory, offer_id)[0] == before[0] - quantity
        else:
            assert self.expected.hold_of[ref] == hold.hold_ref
            assert stock(self.inventory, offer_id) == before

    @rule(ref=st.sampled_from(CLIENT_REFS))
    def confirm(self, ref: str) -> None:
        try:
            booking = self.inventory.confirm(ref)
        except Refusal as refusal:
            assert refusal.code in ("NOT_FOUND", "HOLD_EXPIRED")
            return
        assert booking.hold_ref == self.expected.hold_of[ref]
        assert self.inventory.confirm(ref) == booking

    @rule(ref=st.sampled_from(CLIENT_REFS))
    def release(self, ref: str) -> None:
        status = self.inventory.release(ref).status
        assert status in ("absent", "released", "expired", "confirmed")
        assert (status == "absent") == (ref not in self.expected.hold_of)

    @rule(ref=st.sampled_from(CLIENT_REFS))
    def cancel(self, ref: str) -> None:
        try:
            result = self.inventory.cancel(ref)
        except Refusal as refusal:
            assert refusal.code == "NOT_CANCELLABLE"
            return
        assert self.inventory.cancel(ref) == result

    @rule(seconds=st.sampled_from([1, 60, 600, 900, 1800]))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.inventory.expire_due()

    @rule(scale=st.sampled_from([1, 2, 5]))
    def rescale(self, scale: int) -> None:
        self.inventory.set_capacity_scale(scale)
        self.expected.hold_of.clear()
        for row in self.inventory.ledger().stock:
            assert row.free == row.capacity == scale * catalog_capacity(row.offer_id), row

    @invariant()
    def units_add_up(self) -> None:
        for row in self.inventory.ledger().stock:
            assert row.free + row.held + row.booked == row.capacity, row
            assert row.free >= 0 and row.held >= 0 and row.booked >= 0, row
            assert row.free == self.inventory.offer(row.offer_id).capacity_left

    @invariant()
    def one_hold_per_client_ref(self) -> None:
        refs = [hold.client_ref for hold in self.inventory.ledger().holds]
        assert len(refs) == len(set(refs))
        assert len(refs) == len(self.expected.hold_of)


TestInventoryMachine = InventoryMachine.TestCase
TestInventoryMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


# --- faults --------------------------------------------------------------------------------------


def fault(mode: Mode, **kwargs: object) -> Fault:
    return Fault(fault_id="", mode=mode, **kwargs)  # type: ignore[arg-type]


def test_fault_with_times_applies_that_often_then_disappears() -> None:
    book = FaultBook(seed=0)
    book.add(fault(Mode.ERROR, supplier="aurora-air", operation="hold", times=2))
    assert book.take("aurora-air", Operation.CONFIRM) is None
    assert book.take("harbour-hotels", Operation.HOLD) is None
    assert book.take("aurora-air", Operation.HOLD) is not None
    assert book.take("aurora-air", Operation.HOLD) is not None
    assert book.take("aurora-air", Operation.HOLD) is None
    assert book.active() == []


def test_wildcard_fault_matches_unknown_suppliers_but_named_ones_do_not() -> None:
    book = FaultBook(seed=0)
    named = book.add(fault(Mode.ERROR, supplier="aurora-air", operation="*"))
    assert book.take(None, Operation.RELEASE) is None
    wildcard = book.add(fault(Mode.REFUSE, supplier="*", operation="release"))
    assert book.take(None, Operation.RELEASE) == wildcard
    assert book.take("aurora-air", Operation.RELEASE) == named


def test_rate_fault_is_probabilistic_and_reproducible_after_reseed() -> None:
    book = FaultBook(seed=42)
    book.add(fault(Mode.ERROR, supplier="*", operation="*", rate=0.3))
    first = [book.take("x", Operation.QUOTE) is not None for _ in range(400)]
    book.clear(reseed=True)
    book.add(fault(Mode.ERROR, supplier="*", operation="*", rate=0.3))
    second = [book.take("x", Operation.QUOTE) is not None for _ in range(400)]
    assert first == second
    assert 80 < sum(first) < 160


class RecordingSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_timeout_fault_does_the_work_then_loses_the_answer() -> None:
    sleep = RecordingSleep()
    simulator = Simulator(clock=FakeClock(), seed=0, sleep=sleep)
    simulator.faults.add(fault(Mode.TIMEOUT, supplier="aurora-air", operation="hold", times=1))

    def hold(inv: Inventory) -> object:
        return inv.hold(FLIGHT, 1, "bk_1:it_1:hold")

    with pytest.raises(SupplierTimeout):
        await simulator.perform(Operation.HOLD, lambda inv: inv.supplier_of_offer(FLIGHT), hold)
    assert sleep.slept == [30.0]
    assert stock(simulator.inventory, FLIGHT) == (8, 1, 0)

    replay = await simulator.perform(Operation.HOLD, lambda inv: "aurora-air", hold)
    assert replay == (simulator.inventory.ledger().holds[0], False)


async def test_timeout_fault_before_the_work_does_nothing() -> None:
    simulator = Simulator(clock=FakeClock(), seed=0, sleep=RecordingSleep())
    simulator.faults.add(fault(Mode.TIMEOUT, supplier="*", operation="hold", phase=Phase.BEFORE))
    with pytest.raises(SupplierTimeout):
        await simulator.perform(
            Operation.HOLD, lambda inv: "aurora-air", lambda inv: inv.hold(FLIGHT, 1, "h")
        )
    assert stock(simulator.inventory, FLIGHT) == (9, 0, 0)


async def test_error_and_refuse_faults_act_before_the_work() -> None:
    simulator = Simulator(clock=FakeClock(), seed=0, sleep=RecordingSleep())
    simulator.faults.add(fault(Mode.ERROR, supplier="*", operation="hold", times=1))
    simulator.faults.add(fault(Mode.REFUSE, supplier="*", operation="hold", times=1))

    def hold(inv: Inventory) -> object:
        return inv.hold(FLIGHT, 1, "h")

    with pytest.raises(SupplierUnavailable):
        await simulator.perform(Operation.HOLD, lambda inv: "aurora-air", hold)
    with pytest.raises(Refusal) as refused:
        await simulator.perform(Operation.HOLD, lambda inv: "aurora-air", hold)
    assert refused.value.code == "SOLD_OUT"
    assert stock(simulator.inventory, FLIGHT) == (9, 0, 0)
    await simulator.perform(Operation.HOLD, lambda inv: "aurora-air", hold)
    assert stock(simulator.inventory, FLIGHT) == (8, 1, 0)


async def test_latency_fault_delays_then_proceeds() -> None:
    sleep = RecordingSleep()
    simulator = Simulator(clock=FakeClock(), seed=0, sleep=sleep)
    simulator.faults.add(fault(Mode.LATENCY, supplier="*", operation="*", latency_ms=250))
    quote = await simulator.perform(
        Operation.QUOTE, lambda inv: None, lambda inv: inv.quote(FLIGHT, 2)
    )
    assert quote.price_minor == 120_000
    assert sleep.slept == [0.25]


async def test_app_lifespan_sweeps_expired_holds_without_any_request() -> None:
    clock = FakeClock()
    app = create_app(clock=clock, sweep_interval_seconds=0.01)
    simulator: Simulator = app.state.simulator
    simulator.inventory.hold(CRUISE, 2, "h")
    async with app.router.lifespan_context(app):
        clock.advance(15 * 60)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if stock(simulator.inventory, CRUISE) == (4, 0, 0):
                break
    assert [h.status for h in simulator.inventory.ledger().holds] == [HoldStatus.EXPIRED]
    assert stock(simulator.inventory, CRUISE) == (4, 0, 0)


# --- the state file: every answer saved first, concurrent changes sharing a save -----------------


class CountingStateFile(StateFile):
    """A real state file that counts its writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0

    def save_pickled(self, data: bytes) -> None:
        self.writes += 1
        super().save_pickled(data)


def saved_client_refs(state: StateFile) -> set[str]:
    snapshot = state.load()
    assert snapshot is not None
    return {hold.client_ref for hold in snapshot["inventory"]["holds"].values()}


async def test_each_answer_leaves_after_a_save_and_concurrent_changes_share_saves(
    tmp_path: Path,
) -> None:
    state = CountingStateFile(tmp_path / "simulator.state")
    simulator = Simulator(clock=FakeClock(), seed=0, sleep=RecordingSleep(), state_file=state)
    refs = [f"bk_{n}:it_1:hold" for n in range(40)]
    missing: list[str] = []

    async def hold(ref: str) -> None:
        await simulator.perform(
            Operation.HOLD, lambda inv: "aurora-air", lambda inv: inv.hold(FLIGHT, 1, ref)[0]
        )
        if ref not in saved_client_refs(state):  # answered, so it must be on disk already
            missing.append(ref)

    simulator.inventory.set_capacity_scale(10)
    await asyncio.gather(*(hold(ref) for ref in refs))

    assert missing == []
    assert saved_client_refs(state) == set(refs)
    assert 1 <= state.writes < len(refs) / 2
    restarted = Simulator(clock=FakeClock(), seed=0, sleep=RecordingSleep(), state_file=state)
    assert stock(restarted.inventory, FLIGHT) == (90 - len(refs), len(refs), 0)


async def test_a_refusal_is_saved_before_it_is_answered_too(tmp_path: Path) -> None:
    state = CountingStateFile(tmp_path / "simulator.state")
    clock = FakeClock()
    simulator = Simulator(clock=clock, seed=0, sleep=RecordingSleep(), state_file=state)
    await simulator.perform(
        Operation.HOLD, lambda inv: "borealis-airways", lambda inv: inv.hold(LAST_SEAT, 1, "a")
    )
    clock.advance(30 * 60)  # the hold expires; the refused confirm below is what expires it
    with pytest.raises(Refusal):
        await simulator.perform(
            Operation.CONFIRM, lambda inv: "borealis-airways", lambda inv: inv.confirm("a")
        )
    snapshot = state.load()
    assert snapshot is not None
    assert [h.status for h in snapshot["inventory"]["holds"].values()] == [HoldStatus.EXPIRED]
