"""`passage replay`: today's workflow code against the booking histories Temporal holds.

Before a release is rolled out, its workers must replay the histories of the bookings that are
running (and, to be safe, of yesterday's): a change that alters the commands a history already
made — steps reordered, a step added or removed without `workflow.patched` — fails here with a
non-determinism error instead of failing a customer's booking in production. Histories are read
through the client's data converter, so encrypted payloads are decoded with Passage's codec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client
from temporalio.worker import Replayer

from workflows.booking import BookingWorkflow
from workflows.model import workflow_id_for

#: The workflow classes a release's workers run (what the histories are replayed with).
WORKFLOWS: Sequence[type] = (BookingWorkflow,)
BOOKINGS = 'WorkflowType = "BookingWorkflow"'


@dataclass(frozen=True)
class ReplayOutcome:
    """One history replayed: `failure` is None when the code made exactly its commands."""

    workflow_id: str
    events: int
    failure: str | None = None


def booking_query(
    booking_id: str | None = None, since: datetime | None = None, query: str | None = None
) -> str:
    """The visibility query selecting the bookings to replay (every booking by default)."""
    clauses = [BOOKINGS]
    if booking_id:
        clauses.append(f'WorkflowId = "{workflow_id_for(booking_id)}"')
    if since is not None:
        clauses.append(f'StartTime >= "{since.isoformat()}"')
    if query:
        clauses.append(f"({query})")
    return " AND ".join(clauses)


async def replay(
    client: Client,
    query: str,
    *,
    limit: int | None = None,
    workflows: Sequence[type] | None = None,
) -> list[ReplayOutcome]:
    """Replay every history `query` selects with `workflows` (default WORKFLOWS)."""
    replayer = Replayer(
        workflows=list(workflows or WORKFLOWS), data_converter=client.data_converter
    )
    histories = client.list_workflows(query, limit=limit).map_histories()
    outcomes: list[ReplayOutcome] = []
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            failure = result.replay_failure
            outcomes.append(
                ReplayOutcome(
                    workflow_id=result.history.workflow_id,
                    events=len(result.history.events),
                    failure=None if failure is None else f"{type(failure).__name__}: {failure}",
                )
            )
    return outcomes
