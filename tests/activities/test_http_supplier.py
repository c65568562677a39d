"""HttpSupplierClient and SupplierActivities against the real simulator process over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.adapters.http_supplier import HttpSupplierClient, classify
from activities.errors import BusinessError, TransientError
from activities.suppliers import SupplierActivities
from tests.support.simulator import SimulatorControl
from workflows.contracts import (
    CancelItemInput,
    ConfirmItemInput,
    ErrorType,
    HoldItemInput,
    QuoteItemInput,
    ReleaseItemInput,
    client_ref,
)
from workflows.model import CancellationTerms, ItemKind, Money

FLIGHT = "fl-aurora-cdg-jfk"  # aurora-air, capacity 9, 60 000, fee 1000 bps (free period over)
LAST_SEAT = "fl-borealis-lhr-osl"  # borealis-airways, capacity 1, free cancellation
HALF_FEE = "ht-harbour-rkv-2n"  # harbour-hotels, 42 000, fee 5000 bps (free period over)
NOT_CANCELLABLE = "ac-city-louvre"  # city-passes


@pytest.fixture
async def supplier(simulator: SimulatorControl) -> AsyncIterator[HttpSupplierClient]:
    async with httpx.AsyncClient(base_url=simulator.url, timeout=5) as http:
        yield HttpSupplierClient(http)


@pytest.fixture
async def impatient_supplier(simulator: SimulatorControl) -> AsyncIterator[HttpSupplierClient]:
    """A client that gives up after 300 ms, as a worker with a short call timeout would."""
    async with httpx.AsyncClient(base_url=simulator.url, timeout=0.3) as http:
        yield HttpSupplierClient(http)


def hold_input(booking_id: str, offer_id: str = FLIGHT, quantity: int = 1) -> HoldItemInput:
    return HoldItemInput(
        booking_id=booking_id, item_id="it_1", offer_id=offer_id, quantity=quantity
    )


async def test_quote_hold_confirm_cancel(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    quote = await supplier.quote(QuoteItemInput("bk_a", "it_1", FLIGHT, 2))
    assert quote.kind is ItemKind.FLIGHT and quote.supplier == "aurora-air"
    assert quote.price == Money(120_000, "EUR")
    assert quote.cancellation == CancellationTerms(
        refundable=True, free_until="2020-01-01T00:00:00+00:00", fee_bps=1_000, cancellable=True
    )

    hold = await supplier.hold(hold_input("bk_a", quantity=2))
    assert hold.price == quote.price
    assert (await simulator.stock(FLIGHT))["held"] == 2

    confirmation = await supplier.confirm(ConfirmItemInput("bk_a", "it_1", hold.hold_ref))
    assert confirmation.confirmation_code
    ledger = await simulator.ledger()
    [booking] = ledger["bookings"]
    assert booking["ref"] == confirmation.supplier_ref
    assert booking["client_ref"] == client_ref("bk_a", "it_1", "confirm")
    assert (await simulator.stock(FLIGHT))["booked"] == 2

    cancellation = await supplier.cancel(
        CancelItemInput("bk_a", "it_1", supplier_ref=confirmation.supplier_ref)
    )
    assert cancellation.status == "cancelled"
    assert cancellation.fee == quote.cancellation.fee_for(quote.price, datetime.now(UTC))
    assert cancellation.fee == Money(12_000, "EUR")
    assert (await simulator.stock(FLIGHT))["free"] == 9
    again = await supplier.cancel(CancelItemInput("bk_a", "it_1", hold_ref=hold.hold_ref))
    assert again == cancellation
    await simulator.assert_inventory_adds_up()


async def test_hold_then_release_frees_the_stock(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    hold = await supplier.hold(hold_input("bk_r", quantity=3))
    assert (await simulator.stock(FLIGHT))["free"] == 6
    release = await supplier.release(ReleaseItemInput("bk_r", "it_1", hold_ref=hold.hold_ref))
    assert release.status == "released"
    assert (await simulator.stock(FLIGHT))["free"] == 9
    again = await supplier.release(ReleaseItemInput("bk_r", "it_1", hold_ref=hold.hold_ref))
    assert again.status == "released"
    await simulator.assert_inventory_adds_up()


async def test_hold_with_the_same_client_ref_holds_once(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    first = await supplier.hold(hold_input("bk_i", quantity=2))
    second = await supplier.hold(hold_input("bk_i", quantity=2))
    assert second == first
    assert len(await simulator.holds_for(client_ref("bk_i", "it_1", "hold"))) == 1
    assert (await simulator.stock(FLIGHT))["held"] == 2


async def test_last_seat_goes_to_exactly_one_of_many_concurrent_bookings(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    results = await asyncio.gather(
        *(supplier.hold(hold_input(f"bk_c{n}", LAST_SEAT)) for n in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BusinessError)]
    assert len(refused) == 5
    assert {r.error_type for r in refused} == {ErrorType.SOLD_OUT}
    row = await simulator.stock(LAST_SEAT)
    assert (row["free"], row["held"], row["booked"]) == (0, 1, 0)


async def test_sold_out_is_a_business_error(supplier: HttpSupplierClient) -> None:
    await supplier.hold(hold_input("bk_1", LAST_SEAT))
    with pytest.raises(BusinessError) as refused:
        await supplier.hold(hold_input("bk_2", LAST_SEAT))
    assert refused.value.error_type is ErrorType.SOLD_OUT


async def test_unknown_offer_is_a_business_error(supplier: HttpSupplierClient) -> None:
    with pytest.raises(BusinessError) as refused:
        await supplier.quote(QuoteItemInput("bk_1", "it_1", "no-such-offer", 1))
    assert refused.value.error_type is ErrorType.OFFER_NOT_FOUND


async def test_supplier_error_is_transient_and_holds_nothing(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    await simulator.add_fault("error", supplier="aurora-air", operation="hold", times=1)
    with pytest.raises(TransientError):
        await supplier.hold(hold_input("bk_e"))
    assert (await simulator.ledger())["holds"] == []
    hold = await supplier.hold(hold_input("bk_e"))
    assert [row["ref"] for row in (await simulator.ledger())["holds"]] == [hold.hold_ref]


async def test_fault_for_another_supplier_does_not_apply(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    await simulator.add_fault("error", supplier="harbour-hotels", operation="*")
    await supplier.hold(hold_input("bk_o"))


async def test_lost_hold_answer_is_transient_and_the_retry_finds_the_hold(
    supplier: HttpSupplierClient,
    impatient_supplier: HttpSupplierClient,
    simulator: SimulatorControl,
) -> None:
    await simulator.add_fault(
        "timeout", supplier="aurora-air", operation="hold", times=1, latency_ms=1_500
    )
    with pytest.raises(TransientError):
        await impatient_supplier.hold(hold_input("bk_t", quantity=2))
    [made] = await simulator.holds_for(client_ref("bk_t", "it_1", "hold"))
    assert made["status"] == "active"

    retried = await supplier.hold(hold_input("bk_t", quantity=2))
    assert retried.hold_ref == made["ref"]
    assert len((await simulator.ledger())["holds"]) == 1
    assert (await simulator.stock(FLIGHT))["held"] == 2


async def test_release_after_a_lost_hold_answer_finds_the_hold_by_client_ref(
    impatient_supplier: HttpSupplierClient,
    supplier: HttpSupplierClient,
    simulator: SimulatorControl,
) -> None:
    await simulator.add_fault("timeout", operation="hold", times=1, latency_ms=1_500)
    with pytest.raises(TransientError):
        await impatient_supplier.hold(hold_input("bk_l", LAST_SEAT))
    assert (await simulator.stock(LAST_SEAT))["free"] == 0

    release = await supplier.release(ReleaseItemInput("bk_l", "it_1", hold_ref=None))
    assert release.status == "released"
    assert (await simulator.stock(LAST_SEAT))["free"] == 1
    await simulator.assert_inventory_adds_up()


async def test_cancel_after_a_lost_confirm_answer_finds_the_booking_by_client_ref(
    impatient_supplier: HttpSupplierClient,
    supplier: HttpSupplierClient,
    simulator: SimulatorControl,
) -> None:
    hold = await supplier.hold(hold_input("bk_k", quantity=2))
    await simulator.add_fault("timeout", operation="confirm", times=1, latency_ms=1_500)
    with pytest.raises(TransientError):
        await impatient_supplier.confirm(ConfirmItemInput("bk_k", "it_1", hold.hold_ref))
    assert (await simulator.stock(FLIGHT))["booked"] == 2

    cancellation = await supplier.cancel(CancelItemInput("bk_k", "it_1"))
    assert cancellation.status == "cancelled" and cancellation.fee == Money(12_000, "EUR")
    assert (await simulator.stock(FLIGHT))["free"] == 9


async def test_release_and_cancel_of_unknown_refs_are_absent(supplier: HttpSupplierClient) -> None:
    assert (await supplier.release(ReleaseItemInput("bk_never", "it_1"))).status == "absent"
    cancellation = await supplier.cancel(CancelItemInput("bk_never", "it_1"))
    assert cancellation.status == "absent" and cancellation.fee is None


async def test_release_does_not_touch_a_confirmed_booking(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    hold = await supplier.hold(hold_input("bk_x"))
    await supplier.confirm(ConfirmItemInput("bk_x", "it_1", hold.hold_ref))
    release = await supplier.release(ReleaseItemInput("bk_x", "it_1", hold.hold_ref))
    assert release.status == "confirmed"
    assert (await simulator.stock(FLIGHT))["booked"] == 1


async def test_not_cancellable_is_a_business_error(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    hold = await supplier.hold(hold_input("bk_n", NOT_CANCELLABLE))
    confirmation = await supplier.confirm(ConfirmItemInput("bk_n", "it_1", hold.hold_ref))
    with pytest.raises(BusinessError) as refused:
        await supplier.cancel(CancelItemInput("bk_n", "it_1", confirmation.supplier_ref))
    assert refused.value.error_type is ErrorType.NOT_CANCELLABLE
    assert (await simulator.stock(NOT_CANCELLABLE))["booked"] == 1


async def test_confirming_an_expired_hold_is_hold_expired(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    await simulator.set_hold_ttl(0)
    hold = await supplier.hold(hold_input("bk_h"))
    with pytest.raises(BusinessError) as refused:
        await supplier.confirm(ConfirmItemInput("bk_h", "it_1", hold.hold_ref))
    assert refused.value.error_type is ErrorType.HOLD_EXPIRED
    assert (await supplier.release(ReleaseItemInput("bk_h", "it_1"))).status == "expired"
    assert (await simulator.stock(FLIGHT))["free"] == 9


async def test_the_hold_reports_the_price_the_supplier_holds_at(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    quote = await supplier.quote(QuoteItemInput("bk_hp", "it_1", FLIGHT, 2))
    await simulator.set_price(FLIGHT, 65_000)

    hold = await supplier.hold(hold_input("bk_hp", quantity=2))

    assert quote.price == Money(120_000, "EUR")
    assert hold.price == Money(130_000, "EUR")
    # A retried hold is the same hold, at the price it was held at, whatever the offer says now.
    await simulator.set_price(FLIGHT, 70_000)
    assert (await supplier.hold(hold_input("bk_hp", quantity=2))).price == Money(130_000, "EUR")


async def test_a_hold_answer_without_a_price_holds_at_an_unknown_price() -> None:
    answers = iter(
        [
            {"hold_ref": "h-1", "expires_at": "2026-05-04T10:30:00+00:00"},
            {"hold_ref": "h-1", "expires_at": "2026-05-04T10:30:00+00:00", "price": None},
        ]
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(201, json=next(answers)))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        for _ in range(2):
            hold = await HttpSupplierClient(http).hold(hold_input("bk_np"))
            assert (hold.hold_ref, hold.price) == ("h-1", None)


async def test_cancel_after_the_free_window_reports_the_fee_the_supplier_keeps(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    quote = await supplier.quote(QuoteItemInput("bk_fee", "it_1", HALF_FEE, 1))
    await simulator.set_price(HALF_FEE, 50_000)  # moved after the quote: held and booked at 50 000
    hold = await supplier.hold(hold_input("bk_fee", HALF_FEE))
    confirmation = await supplier.confirm(ConfirmItemInput("bk_fee", "it_1", hold.hold_ref))

    cancellation = await supplier.cancel(
        CancelItemInput("bk_fee", "it_1", supplier_ref=confirmation.supplier_ref)
    )

    assert cancellation.status == "cancelled"
    assert cancellation.fee == Money(25_000, "EUR")  # 50 % of what it was booked at
    assert cancellation.fee != quote.cancellation.fee_for(quote.price, datetime.now(UTC))
    [booking] = (await simulator.ledger())["bookings"]
    assert booking["cancellation_fee"] == {"amount": 25_000, "currency": "EUR"}


async def test_price_change_shows_in_the_next_quote(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    await simulator.set_price(FLIGHT, 65_000)
    quote = await supplier.quote(QuoteItemInput("bk_p", "it_1", FLIGHT, 2))
    assert quote.price == Money(130_000, "EUR")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, ErrorType.SOLD_OUT),
        ("PRICE_CHANGED", ErrorType.PRICE_CHANGED),
        ("FARE_CLASS_CLOSED", ErrorType.SUPPLIER_REFUSED),
    ],
)
async def test_injected_refusals_keep_their_type(
    supplier: HttpSupplierClient, simulator: SimulatorControl, code: str | None, expected: ErrorType
) -> None:
    await simulator.add_fault("refuse", operation="hold", code=code)
    with pytest.raises(BusinessError) as refused:
        await supplier.hold(hold_input("bk_f"))
    assert refused.value.error_type is expected


async def test_unreachable_supplier_is_transient() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1) as http:
        with pytest.raises(TransientError):
            await HttpSupplierClient(http).hold(hold_input("bk_u"))


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, b"upstream down", TransientError),
        (429, b'{"error": {"code": "SOLD_OUT"}}', TransientError),
        (404, b"<html>not here</html>", BusinessError),
        (409, b'{"error": {"code": "HOLD_EXPIRED", "message": "gone"}}', BusinessError),
    ],
)
def test_classify_by_status_and_code(status: int, body: bytes, expected: type[Exception]) -> None:
    error = classify(httpx.Response(status, content=body))
    assert type(error) is expected
    if status == 404:
        assert isinstance(error, BusinessError) and error.error_type is ErrorType.SUPPLIER_REFUSED


async def test_unreadable_success_answer_is_transient() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"<html>"))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        with pytest.raises(TransientError):
            await HttpSupplierClient(http).hold(hold_input("bk_m"))


async def test_requests_carry_the_operation_client_refs() -> None:
    seen: list[tuple[str, bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.raw_path.decode(), request.content))
        return httpx.Response(200, json={"status": "absent", "hold_ref": None})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), base_url="http://sim"
    ) as http:
        await HttpSupplierClient(http).release(ReleaseItemInput("bk_z", "it_2"))
    [(path, content)] = seen
    assert path == "/holds/bk_z%3Ait_2%3Ahold/release"
    assert b'"client_ref":"bk_z:it_2:release"' in content.replace(b" ", b"")


# --- the activities ------------------------------------------------------------------------------


async def test_activity_turns_sold_out_into_a_non_retryable_application_error(
    supplier: HttpSupplierClient,
) -> None:
    activities = SupplierActivities(supplier)
    env = ActivityEnvironment()
    held = await env.run(activities.hold_item, hold_input("bk_s1", LAST_SEAT))
    assert held.hold_ref
    with pytest.raises(ApplicationError) as failed:
        await env.run(activities.hold_item, hold_input("bk_s2", LAST_SEAT))
    assert failed.value.type == "SOLD_OUT"
    assert failed.value.non_retryable
    assert isinstance(failed.value.__cause__, BusinessError)


async def test_activity_turns_a_503_into_a_retryable_application_error(
    supplier: HttpSupplierClient, simulator: SimulatorControl
) -> None:
    await simulator.add_fault("error", supplier="aurora-air", operation="confirm")
    activities = SupplierActivities(supplier)
    env = ActivityEnvironment()
    hold = await env.run(activities.hold_item, hold_input("bk_s3"))
    with pytest.raises(ApplicationError) as failed:
        await env.run(activities.confirm_item, ConfirmItemInput("bk_s3", "it_1", hold.hold_ref))
    assert failed.value.type == ErrorType.SUPPLIER_UNAVAILABLE.value
    assert not failed.value.non_retryable
    await simulator.clear_faults()
    release = await env.run(activities.release_item_if_present, ReleaseItemInput("bk_s3", "it_1"))
    assert release.status == "released"


# --- the wire contract ---------------------------------------------------------------------------


async def test_offers_and_ledger_have_the_contract_shape(simulator: SimulatorControl) -> None:
    offers = await simulator.offers("cruise")
    assert {offer["kind"] for offer in offers} == {"cruise"}
    assert len({offer["supplier"] for offer in offers}) >= 2
    for offer in offers:
        assert {"offer_id", "kind", "supplier", "description", "price", "capacity_left"} <= set(
            offer
        )
        assert set(offer["cancellation"]) == {"refundable", "free_until", "fee_bps", "cancellable"}
        assert offer["price"]["currency"] == "EUR" and isinstance(offer["price"]["amount"], int)
        assert offer["hold_ttl_seconds"] == 900
    assert len(await simulator.offers()) == 20

    bad_kind = await simulator.http.get("/offers", params={"kind": "zeppelin"})
    assert bad_kind.status_code == 422
    assert bad_kind.json()["error"]["code"] == "INVALID_REQUEST"

    created = await simulator.http.post(
        "/holds", json={"offer_id": FLIGHT, "quantity": 1, "client_ref": "shape:hold"}
    )
    replayed = await simulator.http.post(
        "/holds", json={"offer_id": FLIGHT, "quantity": 1, "client_ref": "shape:hold"}
    )
    assert (created.status_code, replayed.status_code) == (201, 200)
    assert replayed.json()["hold_ref"] == created.json()["hold_ref"]
    invalid = await simulator.http.post(
        "/holds", json={"offer_id": FLIGHT, "quantity": 0, "client_ref": "shape:bad"}
    )
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "INVALID_REQUEST"
    unknown = await simulator.http.post("/holds/nope/confirm", json={"client_ref": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"

    ledger = await simulator.ledger()
    [hold] = ledger["holds"]
    assert {"ref", "offer_id", "quantity", "status", "expires_at"} <= set(hold)
    assert hold["status"] == "active" and hold["client_ref"] == "shape:hold"
    assert ledger["bookings"] == []
    row = next(row for row in ledger["inventory"] if row["offer_id"] == FLIGHT)
    assert {k: row[k] for k in ("capacity", "free", "held", "booked")} == {
        "capacity": 9,
        "free": 8,
        "held": 1,
        "booked": 0,
    }


async def test_reset_restores_inventory_and_clears_faults(simulator: SimulatorControl) -> None:
    await simulator.add_fault("error")
    assert (await simulator.http.post("/quotes", json={"offer_id": FLIGHT})).status_code == 503
    await simulator.set_price(FLIGHT, 1)
    (await simulator.http.post("/_sim/reset")).raise_for_status()
    quote = await simulator.http.post("/quotes", json={"offer_id": FLIGHT, "quantity": 1})
    assert quote.status_code == 200 and quote.json()["price"]["amount"] == 60_000
