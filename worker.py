"""The worker's composition root: Settings -> adapters -> activity objects -> Worker.

Run with `python worker.py`; every setting comes from the environment (see passage/settings.py).
With PASSAGE_WORKER_HEALTH_PORT it serves its health (passage/worker_health.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import httpx
import stripe
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.adapters.http_supplier import HttpSupplierClient
from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from activities.adapters.stripe_gateway import StripePaymentGateway
from activities.payments import PaymentActivities
from activities.records import RecordActivities
from activities.suppliers import SupplierActivities
from passage import logs, migrate, worker_health
from passage.codec import LedgerCipher
from passage.settings import WORKER_NEEDS, Settings
from passage.temporal import connect, worker_runtime
from passage.tracing import WORKER_SERVICE, Tracing, tracing_for
from passage.tuning import WORKER_OPTIONS, cache_sandbox_bytecode
from workflows.booking import BookingWorkflow

log = structlog.get_logger("passage.worker")


def make_stripe_gateway(
    api_key: str, api_base: str, *, timeout_seconds: float = 10.0
) -> StripePaymentGateway:
    """The payment gateway on `api_base` (the emulator in development, Stripe in production).

    The SDK never retries (`max_network_retries=0`): Temporal owns retries, and every write is
    idempotent under its key. The gateway owns the HTTP client and closes it in `aclose`.
    """
    http_client = stripe.HTTPXClient(timeout=timeout_seconds)
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=0,
        http_client=http_client,
    )
    return StripePaymentGateway(client, http_client)


@contextlib.asynccontextmanager
async def booking_worker(
    client: Client,
    settings: Settings,
    tracing: Tracing | None = None,
    workflows: Sequence[type] = (BookingWorkflow,),
) -> AsyncIterator[Worker]:
    """A worker with the real adapters, running until the context exits.

    `tracing` traces the supplier calls; the workflow and activity spans come from `client`'s.
    `workflows` lets a test run another release of BookingWorkflow (tests/integration/
    test_upgrades.py).
    """
    cache_sandbox_bytecode(workflows)
    engine = make_engine(settings.database_url)
    gateway = make_stripe_gateway(settings.stripe_api_key, settings.stripe_api_base)
    async with httpx.AsyncClient(
        base_url=settings.supplier_url, timeout=settings.supplier_timeout_seconds
    ) as http:
        if tracing is not None:
            tracing.instrument_http(http)
        suppliers = SupplierActivities(HttpSupplierClient(http))
        payments = PaymentActivities(gateway)
        records = RecordActivities(
            SqlBookingStore(engine, LedgerCipher(settings.ledger_key, settings.old_codec_key_list))
        )
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=workflows,
            activities=[
                suppliers.quote_item,
                suppliers.hold_item,
                suppliers.confirm_item,
                suppliers.release_item_if_present,
                suppliers.cancel_item_if_confirmed,
                suppliers.quote_items,
                suppliers.hold_items,
                suppliers.confirm_items,
                payments.authorize_payment,
                payments.get_payment,
                payments.void_payment_if_present,
                payments.capture_payment,
                payments.refund_payment,
                records.record_booking,
            ],
            interceptors=[logs.ActivityLogContext()],
            **WORKER_OPTIONS,
        )
        try:
            async with worker:
                yield worker
        finally:
            await gateway.aclose()
            engine.dispose()


async def serve(settings: Settings) -> None:
    """Apply pending ledger migrations, then poll until SIGINT or SIGTERM.

    Raises the worker's fatal error if it has one (`main` logs it and exits 1).
    """
    migrate.upgrade(settings.database_url, ledger_key=settings.ledger_key)
    tracing = tracing_for(settings, WORKER_SERVICE)
    client = await connect(settings, tracing, runtime=worker_runtime(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with (
        booking_worker(client, settings, tracing) as worker,
        contextlib.AsyncExitStack() as health,
    ):
        if settings.worker_health_port is not None:
            health.enter_context(
                worker_health.serving(
                    worker_health.WorkerHealth(client, worker, settings.task_queue),
                    settings.worker_health_host,
                    settings.worker_health_port,
                )
            )
        log.info(
            "worker started",
            task_queue=settings.task_queue,
            temporal=settings.temporal_address,
            health_port=settings.worker_health_port,
            metrics_address=settings.worker_metrics_address,
        )
        await stop.wait()
    if tracing is not None:
        tracing.flush()
    log.info("worker stopped")


def main() -> None:
    settings = Settings.for_process("the worker", WORKER_NEEDS)
    logs.configure(settings.log_level, json=settings.log_json)
    code = 0
    try:
        asyncio.run(serve(settings))
    except Exception:
        # A fatal worker error (the server refused it, its pollers failed for good) leaves a
        # process that polls nothing: exit, so a supervisor sees it and starts a fresh one.
        # `async with Worker` raises the error out of `serve` (the SDK cancels the block).
        log.exception("worker failed", task_queue=settings.task_queue)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python issue 300: avoid a crash at interpreter exit


if __name__ == "__main__":
    main()
