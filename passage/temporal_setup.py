"""`python -m passage.temporal_setup`: Passage's namespace and search attributes on a Temporal
cluster, from the project's own definitions (`workflows/search.py`), idempotent.

Creates the namespace of PASSAGE_TEMPORAL_NAMESPACE when it does not exist, then registers every
search attribute of `workflows.search.ALL` that is missing; one registered with another type is
an error (exit 1). Run it once before the workers and the API start (docker-compose.yml runs it
as its one-shot `temporal-setup` service). On Temporal
Cloud the namespace and its search attributes are made in the Cloud (its UI or `tcld`): there
this command only checks them, failing with what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_fixed

from passage import logs
from passage.settings import NO_NEEDS, Settings
from passage.temporal import connect
from workflows import search

#: How long to wait for Temporal to answer, and for a new namespace to be known everywhere.
WAIT_SECONDS = 60


class SetupError(Exception):
    """Something a person must fix (a search attribute of another type, none allowed to add)."""


def search_attribute_types() -> dict[str, IndexedValueType.ValueType]:
    """Passage's search attributes by name, with their server index type."""
    return {key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in search.ALL}


async def ensure_namespace(client: Client, retention: timedelta) -> bool:
    """Create the client's namespace unless it exists; whether it was created."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
        return False
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
    period = Duration()
    period.FromTimedelta(retention)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=client.namespace, workflow_execution_retention_period=period
            )
        )
    except RPCError as error:
        if error.status != RPCStatusCode.ALREADY_EXISTS:  # another setup run was quicker
            raise
    return True


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the missing search attributes; the names added."""
    wanted = search_attribute_types()
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    present = {**listed.system_attributes, **listed.custom_attributes}
    clashing = [
        f"{name} is {IndexedValueType.Name(present[name])}, Passage needs "
        f"{IndexedValueType.Name(kind)}"
        for name, kind in wanted.items()
        if name in present and present[name] != kind
    ]
    if clashing:
        raise SetupError("; ".join(clashing))
    missing = {name: kind for name, kind in wanted.items() if name not in present}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
        except RPCError as error:
            if error.status == RPCStatusCode.PERMISSION_DENIED:
                raise SetupError(
                    f"missing search attributes {', '.join(sorted(missing))}, and this client "
                    "may not add them (Temporal Cloud: add them in the namespace's settings or "
                    "with tcld)"
                ) from error
            raise
    return sorted(missing)


def _not_yet(error: BaseException) -> bool:
    """Temporal not answering yet, or a namespace created a moment ago not known everywhere."""
    return isinstance(error, RPCError) and error.status in (
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.DEADLINE_EXCEEDED,
    )


async def set_up(settings: Settings, retention: timedelta) -> None:
    def waiting(retryable: type[BaseException] | None = None) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(
                lambda error: (
                    _not_yet(error) or (retryable is not None and isinstance(error, retryable))
                )
            ),
            stop=stop_after_delay(WAIT_SECONDS),
            wait=wait_fixed(1),
            reraise=True,
        )

    # Client.connect says "Failed client connect" (a RuntimeError) while nothing answers.
    async for attempt in waiting(RuntimeError):
        with attempt:
            client = await connect(settings)
    created = await ensure_namespace(client, retention)
    print(f"namespace {client.namespace}: {'created' if created else 'exists'}", flush=True)
    async for attempt in waiting():
        with attempt:
            added = await ensure_search_attributes(client)
    print(f"search attributes added: {', '.join(added) or 'none (all registered)'}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m passage.temporal_setup", description=__doc__)
    parser.add_argument(
        "--retention-days",
        type=int,
        default=30,
        help="history retention of a namespace this creates (default 30)",
    )
    args = parser.parse_args(argv)
    settings = Settings.for_process("python -m passage.temporal_setup", NO_NEEDS)
    logs.configure(settings.log_level, json=settings.log_json)
    status = 0
    try:
        asyncio.run(set_up(settings, timedelta(days=args.retention_days)))
    except (SetupError, RPCError, RuntimeError) as error:
        print(f"temporal setup failed: {error}", file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # sdk-python issue 300: avoid a crash at interpreter exit


if __name__ == "__main__":
    main()
