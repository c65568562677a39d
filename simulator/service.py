"""The running simulator: inventory and faults behind one lock, with faults applied around the work.

Routes call `perform` for supplier operations so every operation goes through the same sequence:
expire due holds, pick the fault for (supplier, operation), act on it, do the work under the lock,
and, for a `timeout` fault, lose the answer after the work was done. Sleeps never hold the lock, so
a slow or timed-out call does not stall the other clients.

With a `StateFile` (`--state-file`, used by `make up`) the inventory and the faults are loaded at
start and saved after every change, before the answer leaves: a restarted simulator still has
every hold (with its expiry time), booking and fault it had. Saves are group commits: the state
is pickled under the lock (one consistent moment) and written by a thread outside it, and every
change made while a write is under way is covered by the next one, so callers arriving together
share a save instead of queueing for one each (the whole state is written each time: under load,
one save per call would make the simulator, not the engine it stands in for, the bottleneck).
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
        #: Changes made so far and the last one a completed save covers (group commit).
        self._changes = 0
        self._saved = 0
        self._saving: asyncio.Task[None] | None = None
        snapshot = None if state_file is None else state_file.load()
        if snapshot is not None:
            self.inventory.restore(snapshot["inventory"])
            self.faults.restore(snapshot["faults"])

    async def read(self, query: Callable[[Inventory], T]) -> T:
        """Run a read under the lock, after expiring due holds."""
        async with self._lock:
            if self.inventory.expire_due():
                self._changed()
            result = query(self.inventory)
        await self._durable()
        return result

    async def change(self, command: Callable[[Inventory], T]) -> T:
        """Run a control change (faults, prices, TTLs) under the lock and keep its result."""

        def after_expiry(inventory: Inventory) -> T:
            inventory.expire_due()
            return command(inventory)

        return await self._work(after_expiry)

    async def reset(self) -> None:
        async with self._lock:
            self.inventory.reset()
            self.faults.clear(reseed=True)
            self._changed()
        await self._durable()

    async def sweep(self) -> int:
        """Expire due holds now (the lifespan task calls this so stock frees without traffic)."""
        async with self._lock:
            expired = len(self.inventory.expire_due())
            if expired:
                self._changed()
        await self._durable()
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
                self._changed()  # a fault used up by this call stays used up
        if fault is not None:
            await self._durable()
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
                result = work(self.inventory)
            except Exception as failure:
                self._changed()
                error: Exception | None = failure
            else:
                self._changed()
                error = None
        await self._durable()
        if error is not None:
            raise error
        return result

    def _changed(self) -> None:
        """Note a change that must be saved before its answer leaves (called under the lock)."""
        self._changes += 1

    async def _durable(self) -> None:
        """Return once a completed save covers every change made so far (none: at once)."""
        if self._state_file is None:
            self._saved = self._changes
            return
        wanted = self._changes
        while self._saved < wanted:
            if self._saving is None:
                self._saving = asyncio.create_task(self._save(self._state_file))
            # Shielded: a caller that goes away does not cut the save short for the others.
            await asyncio.shield(self._saving)

    async def _save(self, state_file: StateFile) -> None:
        """One save of the state as it is now; later changes wait for the next one."""
        try:
            async with self._lock:
                covered = self._changes
                data = state_file.pickled(
                    {"inventory": self.inventory.snapshot(), "faults": self.faults.snapshot()}
                )
            await asyncio.to_thread(state_file.save_pickled, data)
            self._saved = max(self._saved, covered)
        finally:
            self._saving = None

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
