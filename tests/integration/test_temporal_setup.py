"""`python -m passage.temporal_setup` against the real dev server: it creates a missing namespace
and registers Passage's search attributes from `workflows/search.py`, a second run changes
nothing, and an attribute registered with another type is refused with its name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from passage.temporal_setup import ensure_namespace, search_attribute_types

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_setup(address: str, namespace: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PASSAGE_ENV": "development",
        "PASSAGE_TEMPORAL_ADDRESS": address,
        "PASSAGE_TEMPORAL_NAMESPACE": namespace,
    }
    return subprocess.run(
        [sys.executable, "-m", "passage.temporal_setup", "--retention-days", "1"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_new_namespace_gets_every_search_attribute_once(
    dev_env: WorkflowEnvironment,
) -> None:
    address = dev_env.client.service_client.config.target_host
    namespace = f"setup-{uuid.uuid4().hex[:8]}"

    first = run_setup(address, namespace)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"namespace {namespace}: created" in first.stdout
    wanted = search_attribute_types()
    assert f"search attributes added: {', '.join(sorted(wanted))}" in first.stdout

    client = await Client.connect(address, namespace=namespace)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {name: listed.custom_attributes.get(name) for name in wanted} == wanted

    again = run_setup(address, namespace)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"namespace {namespace}: exists" in again.stdout
    assert "search attributes added: none (all registered)" in again.stdout


async def test_an_attribute_of_another_type_is_refused_by_name(
    dev_env: WorkflowEnvironment,
) -> None:
    address = dev_env.client.service_client.config.target_host
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(address, namespace=namespace)
    assert await ensure_namespace(client, timedelta(days=1))
    # Someone registered BookingStatus as Text in this namespace before Passage came (retried
    # while the new namespace is not yet known to every service of the server).
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(RPCError), stop=stop_after_delay(30), wait=wait_fixed(0.5)
    ):
        with attempt:
            await dev_env.client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={"BookingStatus": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
                )
            )

    refused = run_setup(address, namespace)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        "BookingStatus is INDEXED_VALUE_TYPE_TEXT, Passage needs INDEXED_VALUE_TYPE_KEYWORD"
        in refused.stderr
    )
