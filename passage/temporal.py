"""The one place that connects to Temporal, with the payload codec when a key is configured."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.converter import DataConverter, default

from passage.codec import EncryptionCodec
from passage.settings import Settings
from passage.type_hints import cache_dataclass_type_hints

cache_dataclass_type_hints()


def data_converter(settings: Settings) -> DataConverter:
    if not settings.codec_key:
        return default()
    return dataclasses.replace(default(), payload_codec=EncryptionCodec(settings.codec_key))


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
