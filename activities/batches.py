"""One activity for one step of every item: the items' calls run together, each answered apart.

A batch is a transport, not a new rule: each item's call is the item's own activity code, and its
failure comes back as that item's `StepFailure` (typed and retryable exactly as the item's own
activity would have raised it), so the saga decides per item as before (workflows/calls.py).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.contracts import (
    ActivityName,
    ConfirmItemInput,
    ConfirmItemsInput,
    ConfirmOutcome,
    HoldItemInput,
    HoldItemsInput,
    HoldOutcome,
    ItemConfirmation,
    ItemConfirmations,
    ItemHold,
    ItemHolds,
    ItemQuote,
    ItemQuotes,
    QuoteItemInput,
    QuoteItemsInput,
    QuoteOutcome,
    StepFailure,
)

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
OutcomeT = TypeVar("OutcomeT")

_log = structlog.get_logger(__name__)


async def each_item(
    call: Callable[[RequestT], Awaitable[ResultT]],
    requests: Sequence[RequestT],
    outcome: Callable[[ResultT | None, StepFailure | None], OutcomeT],
) -> list[OutcomeT]:
    """Run `call` for every request concurrently; one outcome per request, in order."""
    results = await asyncio.gather(*(call(request) for request in requests), return_exceptions=True)
    outcomes: list[OutcomeT] = []
    for result in results:
        if isinstance(result, ApplicationError):
            failure = StepFailure(
                result.type or type(result).__name__, result.message, not result.non_retryable
            )
            outcomes.append(outcome(None, failure))
        elif isinstance(result, Exception):
            # Unexpected: retried on its own, as Temporal retries an activity's unexpected error.
            _log.error("batch.item_failed", error_class=type(result).__name__, exc_info=result)
            outcomes.append(outcome(None, StepFailure(type(result).__name__, str(result), True)))
        elif isinstance(result, BaseException):
            raise result  # the batch itself is cancelled or the worker shuts down
        else:
            outcomes.append(outcome(result, None))
    return outcomes


class BatchedItemActivities(abc.ABC):
    """The batch activities of a class that has the item activities.

    The base of the real supplier activities and of the tests' fakes, so both batch alike.
    """

    @abc.abstractmethod
    async def quote_item(self, request: QuoteItemInput) -> ItemQuote: ...

    @abc.abstractmethod
    async def hold_item(self, request: HoldItemInput) -> ItemHold: ...

    @abc.abstractmethod
    async def confirm_item(self, request: ConfirmItemInput) -> ItemConfirmation: ...

    @activity.defn(name=ActivityName.QUOTE_ITEMS.value)
    async def quote_items(self, request: QuoteItemsInput) -> ItemQuotes:
        return ItemQuotes(tuple(await each_item(self.quote_item, request.items, QuoteOutcome)))

    @activity.defn(name=ActivityName.HOLD_ITEMS.value)
    async def hold_items(self, request: HoldItemsInput) -> ItemHolds:
        return ItemHolds(tuple(await each_item(self.hold_item, request.items, HoldOutcome)))

    @activity.defn(name=ActivityName.CONFIRM_ITEMS.value)
    async def confirm_items(self, request: ConfirmItemsInput) -> ItemConfirmations:
        outcomes = await each_item(self.confirm_item, request.items, ConfirmOutcome)
        return ItemConfirmations(tuple(outcomes))
