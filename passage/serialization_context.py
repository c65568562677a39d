"""Workflow payloads converted without asking the sandbox for contexts that nothing uses.

temporalio 1.35 visits every workflow activation three times and every completion twice, and for
each payload sequence it resolves a serialization context (and, on completion, an external-storage
context) by running a line of code inside the workflow's sandbox: an `exec` of a source string
with the sandbox's importer applied. Measured in a worker running bookings: about 90 calls per
booking at 0.28 ms of CPU each, 26 ms per booking, a tenth of the worker's CPU
(docs/performance.md).

The contexts matter only to a converter, codec or external storage that implements
`WithSerializationContext`; when none does, `DataConverter.with_context` returns the converter
itself, so the worker's workflow-context converter *is* its context-free one. In exactly that case
`skip_unused_serialization_contexts` answers with that converter directly; any context-aware part
keeps the SDK's own resolution. Installed by `passage.tuning`, with the worker settings it tunes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter
from temporalio.worker import _workflow

_CommandAware: Any = _workflow._CommandAwareDataConverter
_resolve_converter = _CommandAware._get_current_dc
_resolve_and_store = _CommandAware._external_store_payload_sequence


def _context_free(converter: Any) -> DataConverter | None:
    """The converter to use for every command, or None when contexts may change it."""
    free: DataConverter = converter._ca_context_free_dc
    if converter._ca_workflow_context_dc is free and free.external_storage is None:
        return free
    return None


def _current_converter(self: Any) -> DataConverter:
    free = _context_free(self)
    return free if free is not None else _resolve_converter(self)  # type: ignore[no-any-return]


async def _store_payload_sequence(self: Any, payloads: Sequence[Payload]) -> list[Payload]:
    if _context_free(self) is not None:
        return list(payloads)  # no external storage: nothing to store, no context to resolve
    return await _resolve_and_store(self, payloads)  # type: ignore[no-any-return]


def skip_unused_serialization_contexts() -> None:
    """Make the SDK's per-command converter skip context resolution when unused (idempotent)."""
    _CommandAware._get_current_dc = _current_converter
    _CommandAware._external_store_payload_sequence = _store_payload_sequence
