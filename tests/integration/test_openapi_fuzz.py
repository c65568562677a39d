"""Schemathesis over the API's own OpenAPI: generated valid and invalid requests, real stack.

The app runs in schemathesis' ASGI client (its own event loop and lifespan, its own Temporal
client) against the session's dev server and PostgreSQL ledger. For the stateless test it runs on
a task queue no worker polls, so generated bookings are started and stored but never run; for the
stateful one the real worker polls its queue, against the session's simulator and Stripe emulator,
so the commands the links lead to are answered as in production.

Checked on every response: no 5xx, a declared status code and content type, a body that matches
the declared schema (including the one error shape), declared headers, and invalid input refused.

Stateful too, along the OpenAPI links of `POST /bookings` (to the booking's read, cancel and price
decision with the id and token it returned, and to the staff operations with the id): a booking
just started is found by its own links, and afterwards the ledger and Temporal hold a booking for
exactly the Idempotency-Keys that were answered 2xx, one per key, none for a refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from api.app import create_app
from api.identity import BookingKeys
from passage import migrate
from passage.codec import LedgerCipher
from passage.settings import Settings
from passage.temporal import connect
from tests.support.database import PostgresServer
from worker import booking_worker
from workflows.model import workflow_id_for

MAX_EXAMPLES = 30
#: Stateful scenarios, each a POST /bookings and what its links lead to.
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 6
#: At most this many suites (Hypothesis runs) to reach the scenarios (see the stateful test).
STATEFUL_SUITES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_settings(engine_settings: Settings) -> Settings:
    return engine_settings.model_copy(update={"task_queue": f"passage-fuzz-{uuid.uuid4().hex[:8]}"})


@pytest.fixture(scope="module")
def api_schema(fuzz_settings: Settings) -> Iterator[Any]:
    yield from _schema_of(fuzz_settings)


@pytest.fixture(scope="module")
def linked_settings(
    engine_settings: Settings, postgres_server: PostgresServer
) -> Iterator[Settings]:
    """A task queue and a ledger of its own: the staff search finds only this test's bookings.

    The session's ledger also holds bookings of other tests (the API records each booking as it
    starts it), whose workflows no worker runs any more: a command to one, reached through the
    search, waits for a worker and answers 503, as it should.
    """
    with postgres_server.database() as url:
        migrate.upgrade(url)
        yield engine_settings.model_copy(
            update={"task_queue": f"passage-linked-{uuid.uuid4().hex[:8]}", "database_url": url}
        )


@pytest.fixture(scope="module")
def linked_schema(linked_settings: Settings) -> Iterator[Any]:
    """The API on a task queue the real worker polls (in a thread of its own: the test is sync),
    so a booking's commands (cancel, price decision, staff actions) are answered as in production.
    """
    stop, ready = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def work() -> None:
        client = await connect(linked_settings)
        async with booking_worker(client, linked_settings):
            ready.set()
            await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as error:  # reported by the fixture
            failed.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="linked-worker", daemon=True)
    thread.start()
    assert ready.wait(60) and not failed, failed
    try:
        yield from _schema_of(linked_settings)
    finally:
        stop.set()
        thread.join(60)


def _schema_of(settings: Settings) -> Iterator[Any]:
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    with asgi.get_client(app) as client:  # the app connects to Temporal in the background
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the API never became ready"
            time.sleep(0.1)
    try:
        yield schema
    finally:
        asgi.shutdown_lifespans()


def _takes_a_staff_key(security: list[dict[str, Any]]) -> bool:
    """The staff routes, and the codec's (which take a staff key among other credentials)."""
    return any("StaffKey" in item or "CodecCredentials" in item for item in security)


def test_generated_requests_never_break_the_api(api_schema: Any, fuzz_settings: Settings) -> None:
    """Every operation, valid and invalid input: collect every failure, then report them all."""
    staff = {"Authorization": f"Bearer {sorted(fuzz_settings.staff_key_set)[0]}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        security = operation.definition.raw.get("security") or []
        headers = staff if _takes_a_staff_key(security) else {}
        # Fixed headers are never mutated, so a negative case is invalid for another reason.
        strategies = [
            *api_schema.get_strategies_from_examples(operation, headers=headers),
            operation.as_strategy(GenerationMode.POSITIVE, headers=headers),
            operation.as_strategy(GenerationMode.NEGATIVE, headers=headers),
        ]
        for strategy in strategies:
            try:
                _check_all(strategy)
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing can be made invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as failure:  # reported together below
                failures.append(f"{operation.label}: {failure}")
    assert not failures, "\n\n".join(failures)


def _check_all(strategy: Any) -> None:
    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def test_linked_requests_create_a_booking_only_when_answered_2xx(
    linked_schema: Any, linked_settings: Settings
) -> None:
    """Stateful, along the links: no 5xx; a new booking is found by its links; ledger and
    Temporal hold a booking for exactly the keys answered 2xx, with the id they were given.

    The API's state changes under the generator (a booking moves on between two scenarios), which
    Hypothesis reports as flaky generation: as schemathesis' own runner does, that ends a suite
    (failures are collected, not raised, so none is lost), and the next suite starts afresh.
    """
    staff = f"Bearer {sorted(linked_settings.staff_key_set)[0]}"
    answered: dict[str, list[int]] = {}  # Idempotency-Key -> statuses of POST /bookings
    given: dict[str, str] = {}  # Idempotency-Key -> the booking id a 2xx answer gave
    linked: list[str] = []  # operations reached through a link
    failures: list[str] = []
    scenarios = 0

    class Linked(linked_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            nonlocal scenarios
            scenarios += 1

        def before_call(self, case: Any) -> None:
            security = case.operation.definition.raw.get("security") or []
            if _takes_a_staff_key(security):
                case.headers = {**(case.headers or {}), "Authorization": staff}
            key = (case.headers or {}).get("Idempotency-Key")
            if _is_start(case) and isinstance(key, str) and 1 <= len(key) <= 255:
                # A valid key of its own per request: scenarios replayed with the same key
                # would meet the booking an earlier one started (covered by test_api.py).
                case.headers["Idempotency-Key"] = f"linked-{uuid.uuid4().hex}"

        def after_call(self, response: Any, case: Any) -> None:
            if not _is_start(case):
                if (case.path_parameters or {}).get("booking_id") in given.values():
                    linked.append(f"{case.operation.label} -> {response.status_code}")
                return
            key = (case.headers or {}).get("Idempotency-Key")
            if not isinstance(key, str):
                return
            answered.setdefault(key, []).append(response.status_code)
            if response.status_code in (200, 202):
                booking_id = response.json()["booking_id"]
                if given.setdefault(key, booking_id) != booking_id:
                    failures.append(f"key {key!r} gave two bookings: {given[key]}, {booking_id}")

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            try:
                case.validate_response(response, checks=[*CHECKS, ensure_resource_availability])
            except (Exception, BaseExceptionGroup) as failure:  # reported together below
                failures.append(f"{case.operation.label}: {failure}")

    for suite in range(STATEFUL_SUITES):
        if scenarios >= STATEFUL_SCENARIOS:
            break
        # Flaky ends the suite; its failures are in `failures`.
        with contextlib.suppress(hypothesis.errors.Flaky):
            hypothesis.seed(suite)(Linked).run(
                settings=hypothesis.settings(
                    max_examples=STATEFUL_SCENARIOS - scenarios,
                    stateful_step_count=STATEFUL_STEPS,
                    deadline=None,
                    suppress_health_check=list(hypothesis.HealthCheck),
                    database=None,
                    phases=[hypothesis.Phase.generate],
                )
            )
    assert not failures, "\n\n".join(failures)
    assert scenarios >= STATEFUL_SCENARIOS // 2, f"only {scenarios} scenarios ran"
    assert given, f"no booking was ever started: {answered}"
    assert linked, "no request followed a link"
    keys = BookingKeys(
        linked_settings.api_secret.encode(), linked_settings.customer_ref_key.encode()
    )
    for key, booking_id in given.items():
        assert booking_id == keys.booking_id(key)
    found = asyncio.run(_bookings_held(linked_settings, [keys.booking_id(key) for key in answered]))
    expected = {keys.booking_id(key): key in given for key in answered}
    wrong = {
        key: {"answers": answered[key], "ledger and Temporal": found[keys.booking_id(key)]}
        for key in answered
        if found[keys.booking_id(key)] != (expected[keys.booking_id(key)],) * 2
    }
    assert not wrong, wrong


def _is_start(case: Any) -> bool:
    return bool(case.operation.path == "/bookings" and case.operation.method.upper() == "POST")


async def _bookings_held(
    settings: Settings, booking_ids: list[str]
) -> dict[str, tuple[bool, bool]]:
    """booking id -> (in the ledger, a workflow in Temporal)."""
    engine = make_engine(settings.database_url)
    client = await connect(settings)
    found = {}
    try:
        store = SqlBookingStore(engine, LedgerCipher(settings.ledger_key))
        for booking_id in booking_ids:
            in_ledger = await store.read(booking_id) is not None
            try:
                await client.get_workflow_handle(workflow_id_for(booking_id)).describe()
                in_temporal = True
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                in_temporal = False
            found[booking_id] = (in_ledger, in_temporal)
    finally:
        engine.dispose()
    return found
