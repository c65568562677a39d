"""A batch answers every item apart, as each item's own activity would have (activities/batches)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError

from activities.batches import each_item
from workflows.contracts import StepFailure


async def _call(request: str) -> str:
    await asyncio.sleep(0.01 if request == "slow" else 0)
    if request == "sold-out":
        raise ApplicationError("no seats", type="SOLD_OUT", non_retryable=True)
    if request == "down":
        raise ApplicationError("503 from aurora-air", type="SUPPLIER_UNAVAILABLE")
    if request == "bug":
        raise KeyError("offer")
    return f"ok {request}"


def _outcome(result: str | None, failure: StepFailure | None) -> tuple[str | None, object]:
    return result, failure


async def test_each_item_is_answered_apart_and_in_order() -> None:
    outcomes = await each_item(_call, ["slow", "sold-out", "down", "bug", "fast"], _outcome)
    assert outcomes == [
        ("ok slow", None),
        (None, StepFailure("SOLD_OUT", "no seats", retryable=False)),
        (None, StepFailure("SUPPLIER_UNAVAILABLE", "503 from aurora-air", retryable=True)),
        # An unexpected error is retried, typed by its class as Temporal types an activity's.
        (None, StepFailure("KeyError", "'offer'", retryable=True)),
        ("ok fast", None),
    ]


async def test_the_calls_run_together() -> None:
    running = 0
    most = 0

    async def call(request: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return request

    assert await each_item(call, [1, 2, 3], _outcome) == [(1, None), (2, None), (3, None)]
    assert most == 3


async def test_a_cancelled_batch_is_cancelled_not_answered() -> None:
    started = asyncio.Event()

    async def call(request: int) -> int:
        started.set()
        await asyncio.sleep(10)
        return request

    batch = asyncio.ensure_future(each_item(call, [1, 2], _outcome))
    await started.wait()
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
