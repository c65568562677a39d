"""The one place that connects to Temporal, with the payload codec when a key is configured.

Address, namespace, API key and TLS (Temporal Cloud or a self-hosted cluster behind TLS) come
from `Settings`; the SDK's own client configuration (`temporalio.envconfig`) turns them into the
client's options and reads the certificate files.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.converter import DataConverter, default
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, ClientConnectConfig
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)

from passage.codec import EncryptionCodec
from passage.settings import Settings
from passage.type_hints import cache_dataclass_type_hints

if TYPE_CHECKING:
    from passage.tracing import Tracing

cache_dataclass_type_hints()


def data_converter(settings: Settings) -> DataConverter:
    if not settings.codec_key:
        return default()
    return dataclasses.replace(
        default(),
        payload_codec=EncryptionCodec(settings.codec_key, settings.old_codec_key_list),
    )


def connect_config(settings: Settings) -> ClientConnectConfig:
    """`Client.connect`'s address, namespace, API key and TLS options from the settings.

    TLS is on with an API key or a client certificate unless PASSAGE_TEMPORAL_TLS is `false`.
    """
    tls = None
    if (
        settings.temporal_tls is not None
        or settings.temporal_tls_client_cert is not None
        or settings.temporal_tls_server_ca_cert is not None
        or settings.temporal_tls_server_name
    ):
        tls = ClientConfigTLS(
            disabled=None if settings.temporal_tls is None else not settings.temporal_tls,
            server_name=settings.temporal_tls_server_name or None,
            server_root_ca_cert=settings.temporal_tls_server_ca_cert,
            client_cert=settings.temporal_tls_client_cert,
            client_private_key=settings.temporal_tls_client_key,
        )
    profile = ClientConfigProfile(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key or None,
        tls=tls,
    )
    return profile.to_client_connect_config()


def worker_runtime(settings: Settings) -> Runtime:
    """The worker's Temporal runtime: the SDK core's own log lines (warnings and errors) go
    through Python logging (`temporalio.core`), so passage.logs renders them like every other
    line; and with PASSAGE_WORKER_METRICS_ADDRESS its metrics (workflow task latency, activity
    failures, polls...) are served there for Prometheus. One per worker process: the address is
    bound when it is made."""
    metrics = None
    if settings.worker_metrics_address is not None:
        metrics = PrometheusConfig(bind_address=settings.worker_metrics_address)
    core_logs = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    logging_config = LoggingConfig(filter=LoggingConfig.default.filter, forwarding=core_logs)
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


async def connect(
    settings: Settings, tracing: Tracing | None = None, runtime: Runtime | None = None
) -> Client:
    """A client; with `tracing` (passage/tracing.py), its calls and its workers trace; on
    `runtime` (default: the SDK's), e.g. the worker's (`worker_runtime`)."""
    return await Client.connect(
        **connect_config(settings),
        data_converter=data_converter(settings),
        interceptors=[] if tracing is None else tracing.temporal_interceptors(),
        runtime=runtime,
    )
