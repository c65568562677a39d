"""Schemathesis over the API's own OpenAPI: generated valid and invalid requests, real stack.

The app runs in schemathesis' ASGI client (its own event loop and lifespan, its own Temporal
client) against the session's dev server and PostgreSQL ledger, on a task queue no worker polls,
so generated bookings are started and stored but never run against the simulator or Stripe.

Checked on every response: no 5xx, a declared status code and content type, a body that matches
the declared schema (including the one error shape), declared headers, and invalid input refused.
"""

from __future__ import annotations

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
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from passage.settings import Settings

MAX_EXAMPLES = 30
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
    app = create_app(fuzz_settings)
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


def test_generated_requests_never_break_the_api(api_schema: Any, fuzz_settings: Settings) -> None:
    """Every operation, valid and invalid input: collect every failure, then report them all."""
    staff = {"Authorization": f"Bearer {sorted(fuzz_settings.staff_key_set)[0]}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        security = operation.definition.raw.get("security") or []
        headers = staff if any("StaffKey" in item for item in security) else {}
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
