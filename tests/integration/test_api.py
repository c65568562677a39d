"""The HTTP API end to end: real Temporal dev server, worker, simulator, Stripe emulator, ledger.

Every test drives bookings only through HTTP (`api_client`) and checks the outside world:
the simulator's ledger, the Stripe emulator's PaymentIntents, Temporal's histories and the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from activities.ports import LedgerStore
from api.app import create_app
from api.identity import BookingKeys
from api.service import BookingService, NewBooking, NewItem, ServiceTimeouts
from bench.engine import payment_intent_event
from passage.codec import LedgerCipher
from passage.settings import Settings
from passage.webhook_events import SqlProcessedWebhookEvents
from tests.support.api import client_on, running_api
from tests.support.bookings import live_rows
from tests.support.ledger_data import booking_lifecycle
from tests.support.simulator import SimulatorControl
from tests.support.stack import Engine
from tests.support.stripe import CARD_3DS, CARD_OK, StripeHarness
from workflows import search
from workflows.contracts import BookingView, PaymentEvent, RecordBookingInput
from workflows.memo import MEMO_ACCESS_TOKEN_HASH, MEMO_REQUEST_HASH, MEMO_VIEW
from workflows.model import Money, Traveller

FLIGHT = "fl-aurora-cdg-jfk"  # aurora-air, fee 1000 bps, free period over
HOTEL = "ht-meridian-par-2n"  # meridian-stays, free cancellation
LOUVRE = "ac-city-louvre"  # not cancellable
STAFF_KEY = "staff-key-e2e"

Json = dict[str, Any]


# --- helpers -------------------------------------------------------------------------------------


async def price_of(simulator: SimulatorControl, offer_id: str) -> Json:
    response = await simulator.http.get(f"/offers/{offer_id}")
    response.raise_for_status()
    price: Json = response.json()["price"]
    return price


async def checkout(
    simulator: SimulatorControl, payment_method: str, *offer_ids: str, email: str | None = None
) -> Json:
    items = [
        {"offer_id": offer_id, "quantity": 1, "expected_price": await price_of(simulator, offer_id)}
        for offer_id in offer_ids
    ]
    return {
        "customer": {"email": email or "ada@example.com", "name": "Ada Lovelace"},
        "travellers": [
            {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "birth_date": "1990-12-10",
                "document_number": "X1234567",
            }
        ],
        "items": items,
        "payment": {"payment_method": payment_method},
    }


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


async def book(api: httpx.AsyncClient, body: Json, key: str | None = None) -> Json:
    response = await api.post("/bookings", json=body, headers={"Idempotency-Key": key or new_key()})
    assert response.status_code == 202, response.text
    accepted: Json = response.json()
    return accepted


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_view(api: httpx.AsyncClient, booking: Json) -> Json:
    response = await api.get(
        f"/bookings/{booking['booking_id']}", headers=bearer(booking["access_token"])
    )
    assert response.status_code == 200, response.text
    view: Json = response.json()
    return view


async def wait_for(
    api: httpx.AsyncClient, booking: Json, *statuses: str, within: float = 20.0
) -> Json:
    deadline = time.monotonic() + within
    while True:
        view = await get_view(api, booking)
        if view["status"] in statuses:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"{booking['booking_id']} is {view['status']}: {view['timeline']}")
        await asyncio.sleep(0.1)


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll an async check until it returns something truthy (ledger and visibility lag)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {result!r}")
        await asyncio.sleep(0.1)


def idle_settings(engine: Engine) -> Settings:
    """The engine's settings on a task queue no worker polls: a started workflow never runs."""
    return engine.settings.model_copy(update={"task_queue": f"passage-idle-{uuid.uuid4().hex[:8]}"})


def handle_of(engine: Engine, booking_id: str) -> WorkflowHandle[Any, Any]:
    return engine.client.get_workflow_handle(f"booking-{booking_id}")


def signed(payload: Json, secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
    """Sign an event exactly as localstripe and Stripe do: `t=<ts>,v1=HMAC(secret, "ts.body")`."""
    body = json.dumps(payload, indent=2, sort_keys=True).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), b"%d.%s" % (stamp, body), hashlib.sha256).hexdigest()
    return body, f"t={stamp},v1={signature}"


def payment_event(event_id: str, event_type: str, intent_id: str, booking_id: str) -> Json:
    return payment_intent_event(intent_id, booking_id, event_type, event_id)


async def deliver(api: httpx.AsyncClient, event: Json, secret: str) -> httpx.Response:
    body, signature = signed(event, secret)
    return await api.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


async def signals_of(client: Client, handle: WorkflowHandle[Any, Any]) -> list[PaymentEvent]:
    """The payment events the workflow's history received, decoded with the codec."""
    events: list[PaymentEvent] = []
    async for event in handle.fetch_history_events():
        if not event.HasField("workflow_execution_signaled_event_attributes"):
            continue
        attributes = event.workflow_execution_signaled_event_attributes
        if attributes.signal_name == "payment_event":
            [decoded] = await client.data_converter.decode(
                attributes.input.payloads, [PaymentEvent]
            )
            events.append(decoded)
    return events


def error_fields(response: httpx.Response) -> set[str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return {field["field"] for field in body["error"].get("fields", [])}


@pytest.fixture
async def card(stripe_harness: StripeHarness) -> str:
    return await stripe_harness.pm_for(CARD_OK)


@pytest.fixture
def ledger_store(engine_worker: Engine) -> Any:
    engine = make_engine(engine_worker.settings.database_url)
    yield SqlBookingStore(engine, LedgerCipher(engine_worker.settings.ledger_key))
    engine.dispose()


# --- checkout: idempotency -----------------------------------------------------------------------


async def test_a_repeated_or_concurrent_submit_is_one_booking_with_one_payment(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    body = await checkout(simulator, card, FLIGHT)
    key = new_key()
    first = await api_client.post("/bookings", json=body, headers={"Idempotency-Key": key})
    again = await api_client.post("/bookings", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert again.json()["booking_id"] == first.json()["booking_id"]
    assert again.json()["access_token"] == first.json()["access_token"]
    sequential = first.json()
    assert sequential["booking_id"].startswith("bk_")
    assert sequential["links"] == {"self": f"/bookings/{sequential['booking_id']}"}

    concurrent_key = new_key()
    responses = await asyncio.gather(
        *(
            api_client.post("/bookings", json=body, headers={"Idempotency-Key": concurrent_key})
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
    assert len({r.json()["booking_id"] for r in responses}) == 1
    concurrent = responses[0].json()
    assert concurrent["booking_id"] != sequential["booking_id"]

    for booking in (sequential, concurrent):
        view = await wait_for(api_client, booking, "CONFIRMED")
        assert view["payment"]["captured"] == body["items"][0]["expected_price"]
        intents = await stripe_harness.payment_intents_for(booking["booking_id"])
        assert len(intents) == 1, intents
        holds, booked = live_rows(await simulator.ledger(), booking["booking_id"])
        assert holds == [] and len(booked) == 1

    # A repeat after confirmation still answers with the same booking and a working token.
    late = await api_client.post("/bookings", json=body, headers={"Idempotency-Key": key})
    assert late.status_code == 200 and late.json()["booking_id"] == sequential["booking_id"]
    assert late.json()["status"] == "CONFIRMED"
    await get_view(api_client, late.json())

    # Same key, another body: refused, and nothing new starts.
    changed = {**body, "items": [{**body["items"][0], "quantity": 2}]}
    conflict = await api_client.post("/bookings", json=changed, headers={"Idempotency-Key": key})
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(await stripe_harness.payment_intents_for(sequential["booking_id"])) == 1

    # What the workflow carries: pseudonymous search attributes, only the token's hash.
    description = await handle_of(engine_worker, sequential["booking_id"]).describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search.BOOKING_STATUS) == "CONFIRMED"
    customer_ref = attributes.get(search.CUSTOMER_REF)
    assert customer_ref and "example.com" not in customer_ref
    assert attributes.get(search.SUPPLIERS) == ["aurora-air"]
    assert attributes.get(search.TOTAL_MINOR) == body["items"][0]["expected_price"]["amount"]
    token_hash = await description.memo_value(MEMO_ACCESS_TOKEN_HASH)
    token = sequential["access_token"]
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() != token
    await simulator.assert_inventory_adds_up()
    for booking in (sequential, concurrent):
        await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


async def test_invalid_bodies_are_422_naming_every_bad_field(
    api_client: httpx.AsyncClient, simulator: SimulatorControl
) -> None:
    body = await checkout(simulator, "pm_card", FLIGHT, HOTEL, HOTEL)
    body["customer"] = {"email": "not-an-email", "name": ""}
    body["travellers"][0]["birth_date"] = "10/12/1990"
    body["items"][0]["quantity"] = 0
    body["items"][0]["expected_price"]["amount"] = -1
    body["items"][1]["expected_price"]["currency"] = "USD"
    body["items"][2]["expected_price"]["currency"] = "eur"
    body["items"][2]["optional"] = "yes"
    body["payment"]["payment_method"] = ""
    response = await api_client.post("/bookings", json=body)  # and no Idempotency-Key
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert error_fields(response) == {
        "Idempotency-Key",
        "customer.email",
        "customer.name",
        "travellers[0].birth_date",
        "items[0].quantity",
        "items[0].expected_price.amount",
        "items[1].expected_price.currency",
        "items[2].expected_price.currency",
        "items[2].optional",
        "payment.payment_method",
    }

    valid = await checkout(simulator, "pm_card", FLIGHT)
    cases: list[tuple[Any, dict[str, str], set[str]]] = [
        ({**valid, "items": []}, {}, {"items"}),
        ({**valid, "travellers": []}, {}, {"travellers"}),
        ({k: v for k, v in valid.items() if k != "payment"}, {}, {"payment"}),
        (
            {
                **valid,
                "items": [
                    {**valid["items"][0], "expected_price": {"amount": 1.5, "currency": "EUR"}}
                ],
            },
            {},
            {"items[0].expected_price.amount"},
        ),
        (
            {
                **valid,
                "items": [
                    {**valid["items"][0], "expected_price": {"amount": "100", "currency": "EUR"}}
                ],
            },
            {},
            {"items[0].expected_price.amount"},
        ),
        ({**valid, "unexpected": 1}, {}, {"unexpected"}),
        (valid, {"Idempotency-Key": ""}, {"Idempotency-Key"}),
        (valid, {"Idempotency-Key": "k" * 256}, {"Idempotency-Key"}),
        ([1, 2], {}, {"body"}),
    ]
    for payload, headers, fields in cases:
        headers = {"Idempotency-Key": new_key(), **headers}
        response = await api_client.post("/bookings", json=payload, headers=headers)
        assert response.status_code == 422, (payload, response.text)
        assert error_fields(response) == fields, response.text
    garbage = await api_client.post(
        "/bookings",
        content=b"{not json",
        headers={"Idempotency-Key": new_key(), "Content-Type": "application/json"},
    )
    assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_a_booking_is_hidden_without_its_own_token(
    api_client: httpx.AsyncClient, engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    first = await book(api_client, await checkout(simulator, card, HOTEL))
    second = await book(api_client, await checkout(simulator, card, HOTEL))
    await wait_for(api_client, first, "CONFIRMED")
    path = f"/bookings/{first['booking_id']}"
    attempts = [
        api_client.get(path, headers=bearer(second["access_token"])),
        api_client.get(path),
        api_client.get(path, headers=bearer("")),
        api_client.get(path, headers=bearer(first["access_token"] + "x")),
        api_client.get(path, headers={"Authorization": f"Basic {first['access_token']}"}),
        api_client.get(path, headers=bearer(STAFF_KEY)),
        api_client.get(
            "/bookings/bk_000000000000000000000000", headers=bearer(first["access_token"])
        ),
        api_client.get("/bookings/not-a-booking", headers=bearer(first["access_token"])),
        api_client.post(f"{path}/cancel", headers=bearer(second["access_token"])),
        api_client.post(f"{path}/price-decision", json={"accept": True}),
    ]
    responses = await asyncio.gather(*attempts)
    assert {r.status_code for r in responses} == {404}, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # identical: no hint that it exists
    assert (await get_view(api_client, first))["status"] == "CONFIRMED"
    for booking in (first, second):
        await wait_for(api_client, booking, "CONFIRMED")
        await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


# --- reads without a worker, or without the workflow ---------------------------------------------


class NoTemporal:
    """A Temporal client that counts every use and answers none."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AssertionError(f"the read used Temporal ({name})")


async def test_reading_a_booking_costs_temporal_and_the_worker_nothing(
    api_client: httpx.AsyncClient, engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    booking = await book(api_client, await checkout(simulator, card, FLIGHT, HOTEL))
    live = await wait_for(api_client, booking, "CONFIRMED")
    query = await handle_of(engine_worker, booking["booking_id"]).query("view")
    no_temporal = NoTemporal()
    async with running_api(engine_worker.settings, cast(Client, no_temporal)) as api:
        polls = [await get_view(api, booking) for _ in range(20)]
        staff = await api.get(f"/admin/bookings/{booking['booking_id']}", headers=bearer(STAFF_KEY))
        wrong = await api.get(f"/bookings/{booking['booking_id']}", headers=bearer("nope"))
    # Every poll answered from the ledger, which holds the workflow's view itself.
    assert no_temporal.used == []
    assert all(poll == live for poll in polls)
    assert live["status"] == query["status"]
    assert [entry["seq"] for entry in live["timeline"]] == [e["seq"] for e in query["timeline"]]
    assert staff.status_code == 200 and staff.json()["status"] == "CONFIRMED"
    assert wrong.status_code == 404
    await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


async def test_a_booking_read_right_after_post_is_answered_from_the_ledger(
    engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    # No worker polls this queue: the workflow has not run, so only the API wrote the ledger.
    idle = idle_settings(engine_worker)
    async with running_api(idle, engine_worker.client) as api:
        booking = await book(api, await checkout(simulator, card, FLIGHT, HOTEL))
    no_temporal = NoTemporal()
    async with running_api(idle, cast(Client, no_temporal)) as api:
        view = await get_view(api, booking)
        wrong = await api.get(f"/bookings/{booking['booking_id']}", headers=bearer("nope"))
    assert no_temporal.used == []
    assert view["booking_id"] == booking["booking_id"]
    assert view["status"] == "RECEIVED" and view["timeline"] == []
    assert [item["status"] for item in view["items"]] == ["PENDING", "PENDING"]
    assert wrong.status_code == 404
    await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


class LedgerRefusingFirstRows:
    """The real ledger, except that the API's first-row insert fails (a database hiccup)."""

    def __init__(self, store: SqlBookingStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_if_absent(self, snapshot: RecordBookingInput) -> bool:
        raise OperationalError("INSERT INTO bookings", {}, ConnectionError("connection reset"))


async def test_a_failed_first_row_fails_no_post_and_the_memo_answers(
    engine_worker: Engine, ledger_store: SqlBookingStore
) -> None:
    idle = idle_settings(engine_worker)
    database = make_engine(idle.database_url)
    service = BookingService(
        engine_worker.client,
        cast(LedgerStore, LedgerRefusingFirstRows(ledger_store)),
        idle,
        BookingKeys(idle.api_secret.encode(), idle.customer_ref_key.encode()),
        ServiceTimeouts(query=timedelta(seconds=0.5)),
        processed_events=SqlProcessedWebhookEvents(database),
    )
    booking = NewBooking(
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        travellers=(Traveller("Ada", "Lovelace", "1990-12-10", "X1234567"),),
        items=(NewItem(FLIGHT, 1, Money(120_00, "EUR")),),
        payment_method="pm_card_visa",
    )

    started = await service.start(new_key(), booking)

    assert started.created and started.status == "RECEIVED"
    assert await ledger_store.read(started.booking_id) is None
    view = await service.read_for_customer(started.booking_id, started.access_token)
    assert view.booking_id == started.booking_id and view.status == "RECEIVED"
    await handle_of(engine_worker, started.booking_id).terminate("test done")
    database.dispose()


async def test_a_booking_no_worker_picked_up_is_read_from_the_memo(
    engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    idle = idle_settings(engine_worker)
    async with running_api(idle, engine_worker.client) as api:
        body = await checkout(simulator, card, FLIGHT, HOTEL)
        booking = await book(api, body)
        started = time.monotonic()
        view = await get_view(api, booking)
        # Answered by the API's first ledger row (without it, by the memo once the query gave up
        # after its 2 s timeout) instead of waiting for a worker that never comes; the bound is
        # loose because CI machines are shared and slow (8.7 s seen).
        assert time.monotonic() - started < 15
    assert view["booking_id"] == booking["booking_id"]
    assert view["status"] == "RECEIVED"
    assert [item["status"] for item in view["items"]] == ["PENDING", "PENDING"]
    assert [item["item_id"] for item in view["items"]] == ["it_1", "it_2"]
    total = sum(item["expected_price"]["amount"] for item in body["items"])
    assert view["expected_total"] == {"amount": total, "currency": "EUR"}
    assert view["payment"]["status"] == "NONE" and view["error"] is None

    handle = handle_of(engine_worker, booking["booking_id"])
    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search.BOOKING_STATUS) == "RECEIVED"
    assert attributes.get(search.BOOKING_STEP) == "RECEIVED"
    assert attributes.get(search.NEEDS_ATTENTION) is False
    assert attributes.get(search.SUPPLIERS) in (None, [])  # the server drops an empty list
    assert attributes.get(search.TOTAL_MINOR) == total
    assert (attributes.get(search.CUSTOMER_REF) or "").startswith("cref_")
    memo = description.raw_description.workflow_execution_info.memo
    assert memo.fields[MEMO_VIEW].metadata["encoding"] == b"binary/encrypted"
    assert isinstance(await description.memo_value(MEMO_VIEW, type_hint=BookingView), BookingView)
    assert len(await description.memo_value(MEMO_REQUEST_HASH)) == 64
    await handle.terminate("test done")


async def test_a_closed_booking_and_a_gone_one_are_read_from_the_ledger(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    ledger_store: SqlBookingStore,
    card: str,
) -> None:
    body = await checkout(simulator, card, FLIGHT)
    key = new_key()
    closed, gone = await book(api_client, body), await book(api_client, body, key)
    live = {b["booking_id"]: await wait_for(api_client, b, "CONFIRMED") for b in (closed, gone)}

    async def recorded() -> bool:
        views = [await ledger_store.get_view(b["booking_id"]) for b in (closed, gone)]
        return all(view is not None and view.status == "CONFIRMED" for view in views)

    await eventually(recorded)

    # Closed (terminated): no worker will answer a query for it; the ledger does.
    await handle_of(engine_worker, closed["booking_id"]).terminate("closed for the test")
    view = await get_view(api_client, closed)
    assert view["status"] == "CONFIRMED"
    assert view["items"] == live[closed["booking_id"]]["items"]
    assert view["timeline"] == live[closed["booking_id"]]["timeline"]

    # Gone (deleted, as after Temporal's retention): the ledger answers, with the same token.
    handle = handle_of(engine_worker, gone["booking_id"])
    await engine_worker.client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=engine_worker.settings.temporal_namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id),
        )
    )

    async def deleted() -> bool:
        try:
            await handle.describe()
        except RPCError as err:
            return err.status == RPCStatusCode.NOT_FOUND
        return False

    await eventually(deleted)
    before = live[gone["booking_id"]]
    view = await get_view(api_client, gone)
    assert view["status"] == "CONFIRMED"
    assert view["items"] == before["items"]
    assert view["payment"] == before["payment"]
    assert [entry["seq"] for entry in view["timeline"]] == [e["seq"] for e in before["timeline"]]
    wrong = await api_client.get(f"/bookings/{gone['booking_id']}", headers=bearer("nope"))
    assert wrong.status_code == 404
    staff = await api_client.get(f"/admin/bookings/{gone['booking_id']}", headers=bearer(STAFF_KEY))
    assert staff.status_code == 200 and staff.json()["status"] == "CONFIRMED"

    # Its key still names it: a repeat is refused rather than starting the booking a second time.
    repeat = await api_client.post("/bookings", json=body, headers={"Idempotency-Key": key})
    assert repeat.status_code == 409, repeat.text
    assert await deleted()


async def test_held_price_fees_absorbed_and_the_attention_item_reach_the_json(
    api_client: httpx.AsyncClient, ledger_store: SqlBookingStore, staff_headers: dict[str, str]
) -> None:
    # Straight into the ledger (no workflow in Temporal), so the API reads the recorded views.
    stuck_id, plain_id = (f"bk_fields_{uuid.uuid4().hex[:12]}" for _ in range(2))
    email = f"{stuck_id}@example.com"
    now = datetime.now(UTC)
    stuck = booking_lifecycle(stuck_id, created_at=now, email=email, ending="needs_attention")[-1]
    view = stuck.view
    assert view.attention is not None
    first, *others = view.items
    view = dataclasses.replace(
        view,
        items=(dataclasses.replace(first, held_price=Money(61_500, "EUR")), *others),
        payment=dataclasses.replace(view.payment, fees_absorbed=Money(6_000, "EUR")),
        attention=dataclasses.replace(view.attention, item_id="it_3"),
    )
    await ledger_store.record(dataclasses.replace(stuck, view=view))
    await ledger_store.record(booking_lifecycle(plain_id, created_at=now)[-1])

    customer = await get_view(
        api_client, {"booking_id": stuck_id, "access_token": f"token-{stuck_id}"}
    )
    assert [item["held_price"] for item in customer["items"]] == [
        {"amount": 61_500, "currency": "EUR"},
        None,
        None,
    ]
    assert customer["payment"]["fees_absorbed"] == {"amount": 6_000, "currency": "EUR"}
    staff = await api_client.get(f"/admin/bookings/{stuck_id}", headers=staff_headers)
    assert staff.json()["attention"]["item_id"] == "it_3"
    listed = await api_client.get("/admin/bookings", params={"email": email}, headers=staff_headers)
    [summary] = listed.json()["bookings"]
    assert summary["attention"]["item_id"] == "it_3"
    plain = await get_view(
        api_client, {"booking_id": plain_id, "access_token": f"token-{plain_id}"}
    )
    assert plain["payment"]["fees_absorbed"] == {"amount": 0, "currency": "EUR"}
    assert {item["held_price"] for item in plain["items"]} == {None}


# --- cancellation --------------------------------------------------------------------------------


async def test_cancel_before_confirmation_voids_and_releases_everything(
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    card = await stripe_harness.pm_for(CARD_3DS)
    booking = await book(api_client, await checkout(simulator, card, FLIGHT, HOTEL))
    waiting = await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION")
    assert waiting["payment"]["client_secret"]
    path = f"/bookings/{booking['booking_id']}/cancel"
    response = await api_client.post(path, headers=bearer(booking["access_token"]))
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "CANCELLED"
    assert view["payment"]["status"] == "VOIDED"
    assert view["payment"]["client_secret"] is None
    assert {item["status"] for item in view["items"]} == {"RELEASED"}
    assert view["error"] is None  # the customer cancelled: nothing failed
    holds, booked = live_rows(await simulator.ledger(), booking["booking_id"])
    assert holds == [] and booked == []
    intents = await stripe_harness.payment_intents_for(booking["booking_id"])
    assert [intent["status"] for intent in intents] == ["canceled"]
    again = await api_client.post(path, headers=bearer(booking["access_token"]))
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"
    await simulator.assert_inventory_adds_up()


async def test_cancel_after_confirmation_refunds_per_the_terms(
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    body = await checkout(simulator, card, FLIGHT)
    price = body["items"][0]["expected_price"]["amount"]
    booking = await book(api_client, body)
    await wait_for(api_client, booking, "CONFIRMED")
    path = f"/bookings/{booking['booking_id']}/cancel"
    response = await api_client.post(path, headers=bearer(booking["access_token"]))
    assert response.status_code == 200, response.text
    view = response.json()
    fee = price * 1000 // 10_000
    assert view["status"] == "CANCELLED"
    assert view["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert view["payment"]["captured"]["amount"] == price
    assert view["payment"]["refunded"]["amount"] == price - fee
    assert view["payment"]["fees_kept"]["amount"] == fee
    assert view["items"][0]["cancellation_fee"] == {"amount": fee, "currency": "EUR"}
    [intent] = await stripe_harness.payment_intents_for(booking["booking_id"])
    assert intent["amount_received"] == price
    assert intent["latest_charge"]["amount_refunded"] == price - fee
    holds, booked = live_rows(await simulator.ledger(), booking["booking_id"])
    assert holds == [] and booked == []
    again = await api_client.post(path, headers=bearer(booking["access_token"]))
    assert again.status_code == 200 and again.json()["payment"] == view["payment"]
    await simulator.assert_inventory_adds_up()


async def test_a_non_cancellable_booking_answers_409_with_the_reason(
    api_client: httpx.AsyncClient, engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    booking = await book(api_client, await checkout(simulator, card, LOUVRE))
    await wait_for(api_client, booking, "CONFIRMED")
    response = await api_client.post(
        f"/bookings/{booking['booking_id']}/cancel", headers=bearer(booking["access_token"])
    )
    assert response.status_code == 409, response.text
    assert "cannot be cancelled" in response.json()["error"]["message"]
    assert (await get_view(api_client, booking))["status"] == "CONFIRMED"
    holds, booked = live_rows(await simulator.ledger(), booking["booking_id"])
    assert len(booked) == 1
    await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


# --- price changes and 3-D Secure ----------------------------------------------------------------


async def test_a_changed_price_is_accepted_or_declined_by_the_customer(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    card: str,
) -> None:
    body = await checkout(simulator, card, FLIGHT)  # expects the current price
    new_price = body["items"][0]["expected_price"]["amount"] + 5_000
    await simulator.set_price(FLIGHT, new_price)
    accepting = await book(api_client, body)
    declining = await book(api_client, body)
    for booking in (accepting, declining):
        waiting = await wait_for(api_client, booking, "AWAITING_PRICE_ACCEPTANCE")
        assert waiting["quoted_total"] == {"amount": new_price, "currency": "EUR"}

    accepted = await api_client.post(
        f"/bookings/{accepting['booking_id']}/price-decision",
        json={"accept": True},
        headers=bearer(accepting["access_token"]),
    )
    declined = await api_client.post(
        f"/bookings/{declining['booking_id']}/price-decision",
        json={"accept": False},
        headers=bearer(declining["access_token"]),
    )
    assert accepted.status_code == 200 and declined.status_code == 200, (
        accepted.text,
        declined.text,
    )
    confirmed = await wait_for(api_client, accepting, "CONFIRMED")
    assert confirmed["payment"]["captured"]["amount"] == new_price
    failed = await wait_for(api_client, declining, "FAILED")
    assert failed["error"]["type"] == "PRICE_CHANGED"
    assert await stripe_harness.payment_intents_for(declining["booking_id"]) == []

    late = await api_client.post(
        f"/bookings/{accepting['booking_id']}/price-decision",
        json={"accept": True},
        headers=bearer(accepting["access_token"]),
    )
    assert late.status_code == 409 and "not awaiting" in late.json()["error"]["message"]
    closed = await api_client.post(
        f"/bookings/{declining['booking_id']}/price-decision",
        json={"accept": True},
        headers=bearer(declining["access_token"]),
    )
    assert closed.status_code == 409 and "FAILED" in closed.json()["error"]["message"]
    bad = await api_client.post(
        f"/bookings/{accepting['booking_id']}/price-decision",
        json={"accept": "yes"},
        headers=bearer(accepting["access_token"]),
    )
    assert bad.status_code == 422 and error_fields(bad) == {"accept"}
    await handle_of(engine_worker, accepting["booking_id"]).terminate("test done")
    await simulator.assert_inventory_adds_up()


async def test_3d_secure_success_and_failure_reach_the_workflow_by_webhook(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    card = await stripe_harness.pm_for(CARD_3DS)
    passing = await book(api_client, await checkout(simulator, card, HOTEL))
    failing = await book(api_client, await checkout(simulator, card, HOTEL))
    started = time.monotonic()
    for booking, success, event_type in (
        (passing, True, "payment_intent.amount_capturable_updated"),
        (failing, False, "payment_intent.payment_failed"),
    ):
        view = await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION")
        secret_of_intent = view["payment"]["client_secret"]
        intent_id = view["payment"]["payment_intent_id"]
        assert secret_of_intent.startswith(f"{intent_id}_secret_")
        await stripe_harness.authenticate(intent_id, secret_of_intent, success=success)
        event = payment_event(
            f"evt_{uuid.uuid4().hex}", event_type, intent_id, booking["booking_id"]
        )
        response = await deliver(api_client, event, secret)
        assert response.status_code == 200 and response.json()["outcome"] == "forwarded"

    confirmed = await wait_for(api_client, passing, "CONFIRMED")
    failed = await wait_for(api_client, failing, "FAILED")
    # The webhook, not the 10 s poll, woke both workflows up.
    assert time.monotonic() - started < 8
    assert confirmed["payment"]["status"] == "CAPTURED"
    assert failed["error"]["type"] == "PAYMENT_ACTION_FAILED"
    assert failed["payment"]["status"] == "VOIDED"
    holds, booked = live_rows(await simulator.ledger(), failing["booking_id"])
    assert holds == [] and booked == []
    [intent] = await stripe_harness.payment_intents_for(failing["booking_id"])
    assert intent["status"] == "canceled"
    await handle_of(engine_worker, passing["booking_id"]).terminate("test done")


# --- webhooks ------------------------------------------------------------------------------------


async def test_webhooks_with_a_bad_signature_are_400_and_change_nothing(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    card = await stripe_harness.pm_for(CARD_3DS)
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    view = await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION")
    intent_id = view["payment"]["payment_intent_id"]
    event = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", intent_id, booking["booking_id"]
    )
    body, signature = signed(event, secret)
    _, wrong_secret = signed(event, "whsec_wrong")
    _, stale = signed(event, secret, timestamp=int(time.time()) - 3600)
    attempts = [
        {"content": body, "headers": {}},
        {"content": body, "headers": {"Stripe-Signature": wrong_secret}},
        {"content": body, "headers": {"Stripe-Signature": stale}},
        {"content": body, "headers": {"Stripe-Signature": "garbage"}},
        {"content": body + b" ", "headers": {"Stripe-Signature": signature}},
    ]
    for attempt in attempts:
        response = await api_client.post("/webhooks/stripe", **attempt)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    not_json, not_json_signature = b"{oops", signed({}, secret)[1]
    stamp = int(time.time())
    not_json_signature = (
        f"t={stamp},v1="
        + hmac.new(secret.encode(), b"%d.%s" % (stamp, not_json), hashlib.sha256).hexdigest()
    )
    malformed = [
        await api_client.post(
            "/webhooks/stripe", content=not_json, headers={"Stripe-Signature": not_json_signature}
        ),
        await deliver(api_client, {"type": "payment_intent.succeeded"}, secret),
        await deliver(api_client, {**event, "data": {}}, secret),
        await deliver(api_client, {**event, "id": "evt_\u0000"}, secret),
    ]
    for response in malformed:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "MALFORMED_EVENT"
    assert (
        await signals_of(engine_worker.client, handle_of(engine_worker, booking["booking_id"]))
        == []
    )

    # The same event, properly signed, was not marked by the failures: it is forwarded now.
    accepted = await deliver(api_client, event, secret)
    assert accepted.status_code == 200 and accepted.json()["outcome"] == "forwarded"
    other = await deliver(
        api_client, {**event, "id": f"evt_{uuid.uuid4().hex}", "type": "customer.created"}, secret
    )
    assert other.json()["outcome"] == "ignored"
    unknown = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", "pi_x", "bk_unknown0000"
    )
    assert (await deliver(api_client, unknown, secret)).json()["outcome"] == "ignored"
    foreign = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", "pi_x", "order-17"
    )
    assert (await deliver(api_client, foreign, secret)).json()["outcome"] == "ignored"
    await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


async def test_duplicate_and_out_of_order_webhooks_are_signalled_once_each(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    card = await stripe_harness.pm_for(CARD_3DS)
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    view = await wait_for(api_client, booking, "AWAITING_PAYMENT_ACTION")
    intent_id = view["payment"]["payment_intent_id"]
    booking_id = booking["booking_id"]
    earlier = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.amount_capturable_updated", intent_id, booking_id
    )
    later = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", intent_id, booking_id
    )
    # The later event first, then both again, then a burst of concurrent redeliveries.
    outcomes = [
        (await deliver(api_client, event, secret)).json()["outcome"]
        for event in (later, earlier, later, earlier)
    ]
    assert outcomes == ["forwarded", "forwarded", "duplicate", "duplicate"]
    burst = await asyncio.gather(
        *(deliver(api_client, event, secret) for event in [later, earlier] * 5)
    )
    assert {response.status_code for response in burst} == {200}
    assert {response.json()["outcome"] for response in burst} == {"duplicate"}

    signals = await signals_of(engine_worker.client, handle_of(engine_worker, booking_id))
    assert sorted(signal.event_id for signal in signals) == sorted([earlier["id"], later["id"]])
    assert [signal.event_id for signal in signals] == [later["id"], earlier["id"]]
    assert {signal.payment_intent_id for signal in signals} == {intent_id}
    await handle_of(engine_worker, booking_id).terminate("test done")


async def test_an_event_for_a_booking_not_awaiting_3ds_costs_the_workflow_nothing(
    api_client: httpx.AsyncClient, engine_worker: Engine, simulator: SimulatorControl, card: str
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    view = await wait_for(api_client, booking, "CONFIRMED")
    booking_id = booking["booking_id"]
    event = payment_event(
        f"evt_{uuid.uuid4().hex}",
        "payment_intent.succeeded",
        view["payment"]["payment_intent_id"],
        booking_id,
    )
    first, again = [await deliver(api_client, event, secret) for _ in range(2)]
    assert first.status_code == 200 and first.json()["outcome"] == "ignored"
    assert again.json()["outcome"] == "duplicate"
    assert await signals_of(engine_worker.client, handle_of(engine_worker, booking_id)) == []
    await handle_of(engine_worker, booking_id).terminate("test done")


class UnreachableTemporal:
    """Stands in for a Temporal client while the server is down: every signal fails."""

    def get_workflow_handle_for(self, *_args: Any, **_kwargs: Any) -> UnreachableTemporal:
        return self

    async def signal(self, *_args: Any, **_kwargs: Any) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


async def test_a_webhook_that_cannot_be_signalled_is_503_and_its_redelivery_counts(
    api_client: httpx.AsyncClient, engine_worker: Engine
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    event = payment_event(
        f"evt_{uuid.uuid4().hex}", "payment_intent.succeeded", "pi_x", "bk_redelivered0000"
    )
    down = cast(Client, UnreachableTemporal())
    async with running_api(engine_worker.settings, down) as api_without_temporal:
        failed = await deliver(api_without_temporal, event, secret)
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert failed.headers["Retry-After"]
    # Stripe delivers again once Temporal is back: processed, not taken for a duplicate.
    redelivered = await deliver(api_client, event, secret)
    assert redelivered.status_code == 200 and redelivered.json()["outcome"] == "ignored"
    again = await deliver(api_client, event, secret)
    assert again.json()["outcome"] == "duplicate"


async def awaiting_with_event(
    api: httpx.AsyncClient, simulator: SimulatorControl, stripe_harness: StripeHarness
) -> tuple[str, Json]:
    """A booking awaiting 3-D Secure (the only kind an event is signalled to) and a fresh
    `payment_intent.succeeded` event for it, not yet sent."""
    card = await stripe_harness.pm_for(CARD_3DS)
    booking = await book(api, await checkout(simulator, card, HOTEL))
    view = await wait_for(api, booking, "AWAITING_PAYMENT_ACTION")
    intent_id = view["payment"]["payment_intent_id"]
    event_id = f"evt_{uuid.uuid4().hex}"
    event = payment_event(event_id, "payment_intent.succeeded", intent_id, booking["booking_id"])
    return booking["booking_id"], event


class SignalThenFail:
    """A Temporal client whose signals hang until released, then fail as if Temporal went away."""

    def __init__(self) -> None:
        self.signalling = asyncio.Event()
        self.release = asyncio.Event()

    def get_workflow_handle_for(self, *_args: Any, **_kwargs: Any) -> SignalThenFail:
        return self

    async def signal(self, *_args: Any, **_kwargs: Any) -> None:
        self.signalling.set()
        await self.release.wait()
        raise RPCError("connection reset", RPCStatusCode.UNAVAILABLE, b"")


async def test_a_redelivery_while_the_first_delivery_fails_is_not_a_duplicate(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    booking_id, event = await awaiting_with_event(api_client, simulator, stripe_harness)
    flaky = SignalThenFail()
    async with running_api(engine_worker.settings, cast(Client, flaky)) as flaky_api:
        first = asyncio.create_task(deliver(flaky_api, event, secret))
        await asyncio.wait_for(flaky.signalling.wait(), 10)
        # Stripe redelivers while the first delivery is still trying: it must be processed.
        redelivered = await deliver(api_client, event, secret)
        assert redelivered.status_code == 200, redelivered.text
        assert redelivered.json()["outcome"] == "forwarded"
        flaky.release.set()
        failed = await first
    assert failed.status_code == 503, failed.text
    again = await deliver(api_client, event, secret)
    assert again.json()["outcome"] == "duplicate"
    signals = await signals_of(engine_worker.client, handle_of(engine_worker, booking_id))
    assert [signal.event_id for signal in signals] == [event["id"]]
    await handle_of(engine_worker, booking_id).terminate("test done")


class CrashAfterSignal:
    """Signals through the real client, notes whether the event was marked, then "crashes"."""

    def __init__(self, client: Client, processed: SqlProcessedWebhookEvents) -> None:
        self._client = client
        self._processed = processed
        self._workflow_id = ""
        self.marked_when_signalled: list[bool] = []

    def get_workflow_handle_for(self, _run: Any, workflow_id: str) -> CrashAfterSignal:
        self._workflow_id = workflow_id
        return self

    async def signal(self, signal: Any, event: PaymentEvent, **kwargs: Any) -> None:
        await self._client.get_workflow_handle(self._workflow_id).signal(signal, event, **kwargs)
        self.marked_when_signalled.append(await self._processed.contains(event.event_id))
        raise RuntimeError("the API process died after signalling")


async def test_an_event_is_marked_only_after_its_booking_was_signalled(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
) -> None:
    secret = engine_worker.settings.stripe_webhook_secret
    booking_id, event = await awaiting_with_event(api_client, simulator, stripe_harness)
    engine = make_engine(engine_worker.settings.database_url)
    try:
        processed = SqlProcessedWebhookEvents(engine)
        crashing = CrashAfterSignal(engine_worker.client, processed)
        async with running_api(engine_worker.settings, cast(Client, crashing)) as crashing_api:
            with pytest.raises(RuntimeError, match="died"):  # no answer, as in a real crash
                await deliver(crashing_api, event, secret)
        # Signalled but never marked: a mark first would have lost the event in a real crash.
        assert crashing.marked_when_signalled == [False]
        assert not await processed.contains(event["id"])
        redelivered = await deliver(api_client, event, secret)
        assert redelivered.json()["outcome"] == "forwarded"
        assert await processed.contains(event["id"])
        assert (await deliver(api_client, event, secret)).json()["outcome"] == "duplicate"
    finally:
        engine.dispose()
    # Signalled twice, counted once: the workflow drops an event id it has seen.
    signals = await signals_of(engine_worker.client, handle_of(engine_worker, booking_id))
    assert [signal.event_id for signal in signals] == [event["id"]] * 2
    await handle_of(engine_worker, booking_id).terminate("test done")


# --- staff ---------------------------------------------------------------------------------------


async def test_staff_endpoints_refuse_anything_but_a_staff_key(
    api_client: httpx.AsyncClient, simulator: SimulatorControl, card: str
) -> None:
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    booking_id = booking["booking_id"]
    calls = [
        ("GET", "/admin/bookings", None),
        ("GET", f"/admin/bookings/{booking_id}", None),
        ("POST", f"/admin/bookings/{booking_id}/retry", {"note": "x"}),
        ("POST", f"/admin/bookings/{booking_id}/resolve", {"note": "x"}),
        ("POST", f"/admin/bookings/{booking_id}/cancel", {"note": "x"}),
        ("POST", "/codec/decode", {"payloads": []}),
        ("POST", "/codec/encode", {"payloads": []}),
    ]
    credentials: list[dict[str, str]] = [
        {},
        bearer(booking["access_token"]),
        bearer("not-a-staff-key"),
        bearer(""),
        {"Authorization": f"Basic {STAFF_KEY}"},
        {"Authorization": STAFF_KEY},
    ]
    for method, path, body in calls:
        for headers in credentials:
            response = await api_client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    view = await wait_for(api_client, booking, "CONFIRMED")
    assert view["status"] == "CONFIRMED"  # nothing was cancelled by the refused calls


async def test_staff_search_filters_and_pages_through_the_ledger(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    email = f"grace-{uuid.uuid4().hex[:8]}@example.com"
    bookings = [
        await book(api_client, await checkout(simulator, card, HOTEL, email=email))
        for _ in range(3)
    ]
    for booking in bookings:
        await wait_for(api_client, booking, "CONFIRMED")

    async def all_confirmed() -> list[Json] | None:
        response = await api_client.get(
            "/admin/bookings",
            params={"email": email.upper(), "status": "CONFIRMED"},
            headers=staff_headers,
        )
        assert response.status_code == 200, response.text
        found: list[Json] = response.json()["bookings"]
        return found if len(found) == 3 else None

    found = await eventually(all_confirmed)
    assert {summary["booking_id"] for summary in found} == {b["booking_id"] for b in bookings}
    assert found[0]["customer_email"] == email
    assert found[0]["suppliers"] == ["meridian-stays"]
    assert (
        found[0]["total"] == (await checkout(simulator, card, HOTEL))["items"][0]["expected_price"]
    )

    pages: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params = {"email": email, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await api_client.get("/admin/bookings", params=params, headers=staff_headers)
        ).json()
        pages += [summary["booking_id"] for summary in page["bookings"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [summary["booking_id"] for summary in found]  # newest first, no repeats

    none = await api_client.get(
        "/admin/bookings", params={"email": email, "status": "FAILED"}, headers=staff_headers
    )
    assert none.json() == {"bookings": [], "next_cursor": None}
    by_supplier = await api_client.get(
        "/admin/bookings",
        params={"email": email, "supplier": "aurora-air"},
        headers=staff_headers,
    )
    assert by_supplier.json()["bookings"] == []
    for params, field in (
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"status": "BOGUS"}, "status"),
        ({"created_from": "yesterday"}, "created_from"),
    ):
        response = await api_client.get("/admin/bookings", params=params, headers=staff_headers)
        assert response.status_code == 422, (params, response.text)
        assert error_fields(response) == {field}

    detail = await api_client.get(
        f"/admin/bookings/{bookings[0]['booking_id']}", headers=staff_headers
    )
    assert detail.status_code == 200
    assert detail.json()["workflow_id"] == f"booking-{bookings[0]['booking_id']}"
    assert detail.json()["audit"][0]["step"] == "RECEIVED"
    missing = await api_client.get("/admin/bookings/bk_missing000000", headers=staff_headers)
    assert missing.status_code == 404
    for booking in bookings:
        await handle_of(engine_worker, booking["booking_id"]).terminate("test done")


async def test_staff_read_the_customer_and_travellers_the_ledger_keeps_encrypted(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    email = f"Hedy-{uuid.uuid4().hex[:8]}@Example.com"
    booking = await book(api_client, await checkout(simulator, card, HOTEL, email=email))
    await wait_for(api_client, booking, "CONFIRMED")
    booking_id = booking["booking_id"]

    response = await api_client.get(f"/admin/bookings/{booking_id}", headers=staff_headers)

    assert response.status_code == 200, response.text
    staff_view = response.json()
    assert staff_view["customer"] == {"email": email, "name": "Ada Lovelace"}
    assert staff_view["travellers"] == [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "birth_date": "1990-12-10",
            "document_hint": "4567",
        }
    ]
    # The customer's own view carries none of it.
    customer_view = await get_view(api_client, booking)
    assert email not in json.dumps(customer_view) and "Lovelace" not in json.dumps(customer_view)
    # The ledger's rows of the booking hold it only encrypted.
    db = make_engine(engine_worker.settings.database_url)
    try:
        with db.connect() as connection:
            rows = [
                connection.execute(
                    text(f"SELECT * FROM {table} WHERE booking_id = :id"), {"id": booking_id}
                ).all()
                for table in ("bookings", "booking_travellers")
            ]
    finally:
        db.dispose()
    raw = repr(rows)
    assert booking_id in raw and len(rows[1]) == 1
    for value in (email, email.lower(), "Ada", "Lovelace", "1990-12-10", "X1234567", "4567"):
        assert value not in raw


async def test_search_bounds_are_rfc3339_datetimes_in_range(
    api_client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    refused = [
        "0001-01-01T00:00:00+14:00",  # before datetime.min once in UTC: was a 500
        "9999-12-31T23:59:59-14:00",  # after datetime.max once in UTC
        "1969-12-31T23:59:59Z",
        "2100-01-01T00:00:01Z",
        "0.0",  # pydantic took numbers as seconds since 1970
        "1700000000",
        "2026-05-04T10:00:00",  # no offset
        "2026-05-04",
        "2026-05-04 10:00:00+00:00",
        "2026-13-04T10:00:00Z",
    ]
    for name in ("created_from", "created_to"):
        for value in refused:
            response = await api_client.get(
                "/admin/bookings", params={name: value}, headers=staff_headers
            )
            assert response.status_code == 422, (name, value, response.text)
            assert error_fields(response) == {name}, (value, response.text)
    accepted = {"created_from": "2026-05-04T10:00:00+14:00", "created_to": "2099-12-31T23:59:59Z"}
    response = await api_client.get("/admin/bookings", params=accepted, headers=staff_headers)
    assert response.status_code == 200, response.text
    response = await api_client.get(
        "/admin/bookings",
        params={"created_from": "2100-01-01T00:00:00Z", "created_to": "1970-01-01T00:00:00.5Z"},
        headers=staff_headers,
    )
    assert response.json() == {"bookings": [], "next_cursor": None}


async def test_staff_retry_and_resolve_a_stuck_booking_with_an_audit_trail(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    # The free hotel is confirmed first, then the flight's confirmation is refused, so the saga
    # must cancel the confirmed hotel; the hotel refuses that three times: an operator is needed.
    await simulator.add_fault("refuse", supplier="aurora-air", operation="confirm", code="SOLD_OUT")
    await simulator.add_fault(
        "refuse", supplier="meridian-stays", operation="cancel", code="NOT_CANCELLABLE", times=3
    )
    booking = await book(api_client, await checkout(simulator, card, FLIGHT, HOTEL))
    booking_id = booking["booking_id"]
    stuck = await wait_for(api_client, booking, "NEEDS_ATTENTION")
    assert stuck["attention"]["step"] == "CANCEL it_2"
    assert "NOT_CANCELLABLE" in stuck["attention"]["reason"]
    query = f'BookingStatus="NEEDS_ATTENTION" AND WorkflowId="booking-{booking_id}"'

    async def listed_in_temporal() -> bool:
        return (await engine_worker.client.count_workflows(query)).count == 1

    await eventually(listed_in_temporal)

    async def listed_by_staff_api() -> bool:
        response = await api_client.get(
            "/admin/bookings", params={"status": "NEEDS_ATTENTION"}, headers=staff_headers
        )
        return booking_id in {summary["booking_id"] for summary in response.json()["bookings"]}

    await eventually(listed_by_staff_api)
    # A staff force-cancel is accepted while stuck: the step is tried again (refused again).
    forced = await api_client.post(
        f"/admin/bookings/{booking_id}/cancel",
        json={"note": "customer called"},
        headers=staff_headers,
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == "NEEDS_ATTENTION"

    retried = await api_client.post(
        f"/admin/bookings/{booking_id}/retry",
        json={"note": "hotel system back"},
        headers=staff_headers,
    )
    assert retried.status_code == 200, retried.text
    await wait_for(api_client, booking, "NEEDS_ATTENTION")  # refused a third time
    resolved = await api_client.post(
        f"/admin/bookings/{booking_id}/resolve",
        json={"note": "cancelled by phone with Meridian, ref 42"},
        headers=staff_headers,
    )
    assert resolved.status_code == 200, resolved.text
    # Forced by staff, so it ends CANCELLED; the error still says why it failed.
    failed = await wait_for(api_client, booking, "CANCELLED")
    assert failed["error"]["type"] == "SOLD_OUT"
    assert failed["payment"]["status"] == "VOIDED"
    [intent] = await stripe_harness.payment_intents_for(booking_id)
    assert intent["status"] == "canceled"
    again = await api_client.post(f"/admin/bookings/{booking_id}/retry", headers=staff_headers)
    assert again.status_code == 409

    fingerprint = hashlib.sha256(STAFF_KEY.encode()).hexdigest()[:8]

    async def audited() -> list[Json] | None:
        detail = await api_client.get(f"/admin/bookings/{booking_id}", headers=staff_headers)
        staff = [entry for entry in detail.json()["audit"] if entry["actor"]]
        return staff if len(staff) == 4 else None

    staff_entries = await eventually(audited)
    actor = f"staff:{fingerprint}"
    assert [(e["step"], e["outcome"], e["detail"], e["actor"]) for e in staff_entries] == [
        ("CANCEL", "requested", "customer called", actor),
        ("CANCEL it_2", "staff retry", "customer called", actor),
        ("CANCEL it_2", "staff retry", "hotel system back", actor),
        ("CANCEL it_2", "staff resolve", "cancelled by phone with Meridian, ref 42", actor),
    ]
    recorded = await engine_worker_store_events(engine_worker, booking_id)
    assert [e.actor for e in recorded if e.actor] == [actor] * 4
    customer_view = await get_view(api_client, booking)
    assert {e["actor"] for e in customer_view["timeline"] if e["actor"]} == {"staff"}


async def engine_worker_store_events(engine: Engine, booking_id: str) -> tuple[Any, ...]:
    db = make_engine(engine.settings.database_url)
    try:
        return await SqlBookingStore(db, LedgerCipher(engine.settings.ledger_key)).events(
            booking_id
        )
    finally:
        db.dispose()


async def test_staff_cancel_is_recorded_with_the_operator_and_the_note(
    api_client: httpx.AsyncClient,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    body = await checkout(simulator, card, HOTEL)
    booking = await book(api_client, body)
    await wait_for(api_client, booking, "CONFIRMED")
    response = await api_client.post(
        f"/admin/bookings/{booking['booking_id']}/cancel",
        json={"note": "customer called: illness"},
        headers=staff_headers,
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "CANCELLED"
    price = body["items"][0]["expected_price"]["amount"]
    assert view["payment"]["refunded"]["amount"] == price  # free cancellation
    [request] = [entry for entry in view["audit"] if entry["outcome"] == "requested"]
    assert request["detail"] == "customer called: illness"
    assert request["actor"].startswith("staff:")
    [intent] = await stripe_harness.payment_intents_for(booking["booking_id"])
    assert intent["latest_charge"]["amount_refunded"] == price


# --- codec, health, errors -----------------------------------------------------------------------


async def test_the_codec_endpoint_decodes_workflow_payloads_for_staff(
    api_client: httpx.AsyncClient,
    engine_worker: Engine,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    plain = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjogMX0="}  # {"a": 1}
    encoded = await api_client.post(
        "/codec/encode", json={"payloads": [plain]}, headers=staff_headers
    )
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert sealed["metadata"]["encoding"] != plain["metadata"]["encoding"]
    decoded = await api_client.post("/codec/decode", json=encoded.json(), headers=staff_headers)
    assert decoded.json() == {"payloads": [plain]}

    # A real workflow input: the travellers are encrypted in Temporal, readable through the codec.
    booking = await book(api_client, await checkout(simulator, card, HOTEL))
    handle = handle_of(engine_worker, booking["booking_id"])
    async for event in handle.fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        break
    from google.protobuf import json_format

    raw = [json_format.MessageToDict(payload) for payload in started.input.payloads]
    assert b"Lovelace" not in json.dumps(raw).encode()
    opened = await api_client.post("/codec/decode", json={"payloads": raw}, headers=staff_headers)
    assert opened.status_code == 200
    import base64

    data = base64.b64decode(opened.json()["payloads"][0]["data"])
    assert b"Lovelace" in data and b"X1234567" in data

    broken = {"metadata": sealed["metadata"], "data": base64.b64encode(b"tampered").decode()}
    for payloads in ([broken], [{"data": 5}], [{"metadata": {"encoding": 5}}], [{"x": "y"}]):
        response = await api_client.post(
            "/codec/decode", json={"payloads": payloads}, headers=staff_headers
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "MALFORMED_PAYLOAD"

    preflight = await api_client.options(
        "/codec/decode",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
    foreign = await api_client.options(
        "/codec/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in foreign.headers
    await wait_for(api_client, booking, "CONFIRMED")
    await handle.terminate("test done")


async def test_health_and_one_error_shape_for_routing_errors(api_client: httpx.AsyncClient) -> None:
    assert (await api_client.get("/healthz")).json() == {"status": "ok"}
    ready = await api_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    missing = await api_client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong_method = await api_client.delete("/bookings")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "allow" in wrong_method.headers
    schema = (await api_client.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (method, path, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_oversized_bodies_are_413_and_too_many_items_or_travellers_422(
    api_client: httpx.AsyncClient, simulator: SimulatorControl, staff_headers: dict[str, str]
) -> None:
    valid = await checkout(simulator, "pm_card", HOTEL)
    headers = {"Idempotency-Key": new_key()}
    padded = {**valid, "customer": {**valid["customer"], "name": "x" * (64 * 1024)}}
    too_large = await api_client.post("/bookings", json=padded, headers=headers)
    assert too_large.status_code == 413, too_large.text
    assert too_large.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunked() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(80):
            yield b" " * 1024

    streamed = await api_client.post(
        "/bookings", content=chunked(), headers={**headers, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    note = {"note": "n" * (65 * 1024)}
    for path in ("/admin/bookings/bk_x/cancel", "/admin/bookings/bk_x/resolve"):
        response = await api_client.post(path, json=note, headers=staff_headers)
        assert response.status_code == 413, (path, response.text)
    webhook = await api_client.post(
        "/webhooks/stripe",
        content=b"{" + b" " * (600 * 1024) + b"}",
        headers={"Stripe-Signature": "t=1,v1=x"},
    )
    assert webhook.status_code == 413, webhook.text

    many_items = {**valid, "items": valid["items"] * 11}
    many_travellers = {**valid, "travellers": valid["travellers"] * 10}
    for body, field, limit in ((many_items, "items", "10"), (many_travellers, "travellers", "9")):
        response = await api_client.post(
            "/bookings", json=body, headers={"Idempotency-Key": new_key()}
        )
        assert response.status_code == 422, response.text
        [error] = response.json()["error"]["fields"]
        assert error["field"] == field and f"at most {limit}" in error["message"], error
    largest = {**valid, "items": valid["items"] * 10, "travellers": valid["travellers"] * 9}
    assert len(json.dumps(largest)) < 64 * 1024


# --- rate limits ---------------------------------------------------------------------------------


class MovableClock:
    """Monotonic seconds that only move when the test says so: rate limits without sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_rate_limited(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == retry_after
    assert response.json() == {
        "error": {"code": "RATE_LIMITED", "message": "too many requests; retry later"}
    }


async def test_public_endpoints_are_rate_limited_per_client_and_per_booking(
    engine_worker: Engine,
    simulator: SimulatorControl,
    staff_headers: dict[str, str],
    card: str,
) -> None:
    settings = engine_worker.settings.model_copy(
        update={
            "rate_limit_client_per_second": 0.5,  # a token every 2 s
            "rate_limit_client_burst": 6,
            "rate_limit_booking_per_second": 1.0,
            "rate_limit_booking_burst": 3,
        }
    )
    clock = MovableClock()
    app = create_app(settings, client=engine_worker.client, clock=clock)
    async with (
        app.router.lifespan_context(app),
        client_on(app, "203.0.113.1") as first,
        client_on(app, "203.0.113.2") as second,
    ):
        booking = await book(first, await checkout(simulator, card, HOTEL))  # client: 5 left
        path = f"/bookings/{booking['booking_id']}"
        auth = bearer(booking["access_token"])
        for _ in range(3):  # the booking's burst; client: 2 left
            assert (await first.get(path, headers=auth)).status_code == 200
        # The booking's bucket is empty, for every endpoint and every client: 1 token a second.
        assert_rate_limited(await first.get(path, headers=auth), "1")
        assert_rate_limited(await first.post(f"{path}/cancel", headers=auth), "1")
        decision = await first.post(f"{path}/price-decision", json={"accept": True}, headers=auth)
        assert_rate_limited(decision, "1")
        assert_rate_limited(await second.get(path, headers=auth), "1")
        # Another booking is unaffected, until the client's own bucket is empty (2 s a token).
        assert (await first.get("/bookings/bk_other", headers=auth)).status_code == 404
        assert (await first.get("/bookings/bk_other", headers=auth)).status_code == 404
        assert_rate_limited(await first.get("/bookings/bk_other", headers=auth), "2")
        body = await checkout(simulator, card, HOTEL)
        refused = await first.post("/bookings", json=body, headers={"Idempotency-Key": new_key()})
        assert_rate_limited(refused, "2")
        # Another client is unaffected; staff, webhooks and health are not limited here.
        assert (await second.get("/bookings/bk_other", headers=auth)).status_code == 404
        staff = await first.get(f"/admin/bookings/{booking['booking_id']}", headers=staff_headers)
        assert staff.status_code == 200, staff.text
        webhook = await first.post("/webhooks/stripe", content=b"{}")
        assert webhook.status_code == 400, webhook.text
        assert (await first.get("/healthz")).status_code == 200
        # After the wait it said, the retry succeeds.
        clock.now += 2
        retried = await first.get(path, headers=auth)
        assert retried.status_code == 200, retried.text
        assert retried.json()["booking_id"] == booking["booking_id"]
