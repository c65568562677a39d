"""The running simulator: inventory and faults behind one lock, with faults applied around the work.

Routes call `perform` for supplier operations so every operation goes through the same sequence:
expire due holds, pick the fault for (supplier, operation), act on it, do the work under the lock,
and, for a `timeout` fault, lose the answer after the work was done. Sleeps never hold the lock, so
a slow or timed-out call does not stall the other clients.

With a `StateFile` (`--state-file`, used by `make up`) the inventory and the faults are loaded at
start and saved after every change, under the lock, before the answer leaves: a restarted
simulator still has every hold (with its expiry time), booking and fault it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from passage.statefile import StateFile
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
        state_file: Where to load the state from and save it to; None keeps it in memory only.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int = 0,
        sleep: Sleep = asyncio.sleep,
        state_file: StateFile | None = None,
    ):
        self.clock = clock or system_clock
        self.inventory = Inventory(default_offers(), self.clock, random.Random(seed))
        self.faults = FaultBook(seed)
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._state_file = state_file
        snapshot = None if state_file is None else state_file.load()
        if snapshot is not None:
            self.inventory.restore(snapshot["inventory"])
            self.faults.restore(snapshot["faults"])

    async def read(self, query: Callable[[Inventory], T]) -> T:
        """Run a read under the lock, after expiring due holds."""
        async with self._lock:
            if self.inventory.expire_due():
                self._save()
            return query(self.inventory)

    async def change(self, command: Callable[[Inventory], T]) -> T:
        """Run a control change (faults, prices, TTLs) under the lock and keep its result."""
        async with self._lock:
            self.inventory.expire_due()
            try:
                return command(self.inventory)
            finally:
                self._save()

    async def reset(self) -> None:
        async with self._lock:
            self.inventory.reset()
            self.faults.clear(reseed=True)
            self._save()

    async def sweep(self) -> int:
        """Expire due holds now (the lifespan task calls this so stock frees without traffic)."""
        async with self._lock:
            expired = len(self.inventory.expire_due())
            if expired:
                self._save()
            return expired

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
            if fault is not None:
                self._save()  # a fault used up by this call stays used up
        if fault is None:
            return await self._work(work)
        await self._before_work(fault, operation)
        if fault.mode is not Mode.TIMEOUT:
            return await self._work(work)
        # The work happens; only its answer (success or refusal alike) is lost.
        with contextlib.suppress(Refusal):
            await self._work(work)
        await self._sleep(fault.delay_seconds)
        raise SupplierTimeout(f"injected {fault.fault_id}: {operation.value} answer lost")

    async def _work(self, work: Callable[[Inventory], T]) -> T:
        """One transition under the lock, saved before its answer leaves.

        Saved after a refusal too: the transition may have expired holds before refusing.
        """
        async with self._lock:
            try:
                return work(self.inventory)
            finally:
                self._save()

    def _save(self) -> None:
        """Keep the state in the state file, if there is one (called under the lock)."""
        if self._state_file is not None:
            self._state_file.save(
                {"inventory": self.inventory.snapshot(), "faults": self.faults.snapshot()}
            )

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
