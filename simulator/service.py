"""The running simulator: inventory and faults behind one lock, with faults applied around the work.

Routes call `perform` for supplier operations so every operation goes through the same sequence:
expire due holds, pick the fault for (supplier, operation), act on it, do the work under the lock,
and, for a `timeout` fault, lose the answer after the work was done. Sleeps never hold the lock, so
a slow or timed-out call does not stall the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from simulator.catalog import default_offers
from simulator.faults import Fault, FaultBook, Mode, Operation, Phase
from simulator.inventory import Clock, Inventory, Refusal

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


class SupplierUnavailable(Exception):
    """An injected `error` fault: answered 503 before any work."""


class SupplierTimeout(Exception):
    """An injected `timeout` fault: answered 504 long after the client gave up."""


def system_clock() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """The state of one simulator process.

    Args:
        clock: Current time; tests pass a fake one to expire holds without waiting.
        seed: Seeds references, confirmation codes and the fault `rate` draws.
        sleep: How latency and timeout faults wait; tests may pass a fake.
    """

    def __init__(self, clock: Clock | None = None, seed: int = 0, sleep: Sleep = asyncio.sleep):
        self.clock = clock or system_clock
        self.inventory = Inventory(default_offers(), self.clock, random.Random(seed))
        self.faults = FaultBook(seed)
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def read(self, query: Callable[[Inventory], T]) -> T:
        """Run a read or a control change under the lock, after expiring due holds."""
        async with self._lock:
            self.inventory.expire_due()
            return query(self.inventory)

    async def reset(self) -> None:
        async with self._lock:
            self.inventory.reset()
            self.faults.clear(reseed=True)

    async def sweep(self) -> int:
        """Expire due holds now (the lifespan task calls this so stock frees without traffic)."""
        async with self._lock:
            return len(self.inventory.expire_due())

    async def perform(
        self,
        operation: Operation,
        supplier_of: Callable[[Inventory], str | None],
        work: Callable[[Inventory], T],
    ) -> T:
        """Do one supplier operation with whatever fault applies to it.

        Args:
            operation: Which operation this is, for fault matching.
            supplier_of: The supplier involved (for confirm, release and cancel: the supplier of
                the hold's offer; None when the reference is unknown, matched only by `*`).
            work: The state transition; it may raise `Refusal`.

        Raises:
            Refusal: The work's own refusal or an injected `refuse`.
            SupplierUnavailable: An injected `error`.
            SupplierTimeout: An injected `timeout`, after the work when `phase` is `after`.
        """
        async with self._lock:
            self.inventory.expire_due()
            fault = self.faults.take(supplier_of(self.inventory), operation)
        if fault is None:
            async with self._lock:
                return work(self.inventory)
        await self._before_work(fault, operation)
        async with self._lock:
            if fault.mode is not Mode.TIMEOUT:
                return work(self.inventory)
            # The work happens; only its answer (success or refusal alike) is lost.
            with contextlib.suppress(Refusal):
                work(self.inventory)
        await self._sleep(fault.delay_seconds)
        raise SupplierTimeout(f"injected {fault.fault_id}: {operation.value} answer lost")

    async def _before_work(self, fault: Fault, operation: Operation) -> None:
        if fault.mode is Mode.LATENCY:
            await self._sleep(fault.delay_seconds)
        elif fault.mode is Mode.ERROR:
            raise SupplierUnavailable(f"injected {fault.fault_id}")
        elif fault.mode is Mode.REFUSE:
            code = fault.refusal_code(operation)
            raise Refusal(code, f"injected {fault.fault_id}: {code}")
        elif fault.mode is Mode.TIMEOUT and fault.phase is Phase.BEFORE:
            await self._sleep(fault.delay_seconds)
            raise SupplierTimeout(f"injected {fault.fault_id}: request lost")
