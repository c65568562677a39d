"""The worker skips resolving payload contexts only when no part of its converter uses them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.worker import _workflow

import passage.tuning  # noqa: F401  (installs the shortcut with the worker settings)
from passage.codec import EncryptionCodec

CONTEXT = WorkflowSerializationContext(namespace="default", workflow_id="booking-bk_1")
KEY = "a" * 43 + "="


class SandboxInstance:
    """Stands in for the workflow's sandboxed instance and counts what the converter asks it."""

    def __init__(self) -> None:
        self.asked = 0

    def get_serialization_context(self, _command: Any) -> SerializationContext:
        self.asked += 1
        return CONTEXT

    def get_external_store_context(self, _command: Any) -> Any:
        self.asked += 1
        raise AssertionError("no external storage is configured")


class ContextAwareCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    def with_context(self, context: SerializationContext) -> ContextAwareCodec:
        return ContextAwareCodec(context)


def _per_command(converter: DataConverter, instance: SandboxInstance) -> Any:
    return _workflow._CommandAwareDataConverter.create(
        instance=instance,  # type: ignore[arg-type]
        context_free_dc=converter,
        workflow_context_dc=converter.with_context(CONTEXT),
        workflow_context=CONTEXT,
    )


async def test_a_converter_that_ignores_contexts_never_asks_the_sandbox() -> None:
    converter = dataclasses.replace(DataConverter.default, payload_codec=EncryptionCodec(KEY))
    instance = SandboxInstance()
    per_command = _per_command(converter, instance)

    assert per_command._get_current_dc() is converter
    payloads = [Payload(data=b"{}")]
    assert await per_command._external_store_payload_sequence(payloads) == payloads
    assert await per_command._encode_payload_sequence(payloads) != payloads  # still encrypted
    assert instance.asked == 0


async def test_a_context_aware_codec_keeps_the_sdk_resolution() -> None:
    converter = dataclasses.replace(DataConverter.default, payload_codec=ContextAwareCodec())
    instance = SandboxInstance()
    per_command = _per_command(converter, instance)

    resolved = per_command._get_current_dc()
    assert instance.asked == 1
    assert isinstance(resolved.payload_codec, ContextAwareCodec)
    assert resolved.payload_codec.context == CONTEXT
