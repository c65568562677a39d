"""Injected faults: which calls of which supplier fail, how, and how often.

A fault matches by supplier (or `*`) and operation (or `*`). With `times` it applies that many
times and then disappears; with `rate` it applies with that probability, drawn from a seeded
generator so a test run is reproducible. The first registered fault that applies wins.

Modes, and when each acts relative to the real work:

- `error`: before the work; the call answers 503 SUPPLIER_UNAVAILABLE and nothing changed.
- `refuse`: before the work; the call answers 409 with `code` (or the operation's usual refusal).
- `latency`: sleeps `latency_ms`, then the call proceeds normally.
- `timeout`: by default (`phase="after"`) the work IS done, then the answer is held back for
  `latency_ms` (30 s when unset) and finally a 504 is sent that no client waits for any more. This
  is the realistic "request succeeded, response lost" case that client references must cover: a
  retry with the same reference has to find what the lost call did. With `phase="before"` the
  call sleeps and answers 504 without doing anything (the request itself was lost).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Operation(StrEnum):
    QUOTE = "quote"
    HOLD = "hold"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    RELEASE = "release"


class Mode(StrEnum):
    ERROR = "error"
    REFUSE = "refuse"
    TIMEOUT = "timeout"
    LATENCY = "latency"


class Phase(StrEnum):
    BEFORE = "before"
    AFTER = "after"


ANY = "*"

#: How long a `timeout` fault keeps the answer back when the fault names no `latency_ms`.
DEFAULT_TIMEOUT_MS = 30_000

#: The refusal each operation answers under `refuse` when the fault names no `code`.
DEFAULT_REFUSAL: dict[Operation, str] = {
    Operation.QUOTE: "OFFER_NOT_FOUND",
    Operation.HOLD: "SOLD_OUT",
    Operation.CONFIRM: "HOLD_EXPIRED",
    Operation.CANCEL: "NOT_CANCELLABLE",
    Operation.RELEASE: "SUPPLIER_REFUSED",
}


@dataclass(frozen=True)
class Fault:
    """One registered fault; `supplier` and `operation` are a name or `*`."""

    fault_id: str
    supplier: str
    operation: str
    mode: Mode
    times: int | None = None
    rate: float | None = None
    latency_ms: int | None = None
    code: str | None = None
    phase: Phase = Phase.AFTER

    def matches(self, supplier: str | None, operation: Operation) -> bool:
        supplier_ok = self.supplier == ANY or (supplier is not None and self.supplier == supplier)
        return supplier_ok and self.operation in (ANY, operation.value)

    def refusal_code(self, operation: Operation) -> str:
        return self.code or DEFAULT_REFUSAL[operation]

    @property
    def delay_seconds(self) -> float:
        if self.latency_ms is not None:
            return self.latency_ms / 1000
        return DEFAULT_TIMEOUT_MS / 1000 if self.mode is Mode.TIMEOUT else 0.0


class FaultBook:
    """The registered faults, consumed as they apply.

    Args:
        seed: Seeds the generator behind `rate`; `clear(reseed=True)` restarts it so each test
            after a reset sees the same sequence.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults: dict[str, Fault] = {}
        self._remaining: dict[str, int] = {}
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        """Register a fault under a fresh id (the `fault_id` of `fault` is replaced)."""
        fault_id = f"flt_{self._next_id}"
        self._next_id += 1
        stored = dataclasses.replace(fault, fault_id=fault_id)
        self._faults[fault_id] = stored
        if fault.times is not None:
            self._remaining[fault_id] = fault.times
        return stored

    def clear(self, reseed: bool = False) -> None:
        self._faults.clear()
        self._remaining.clear()
        if reseed:
            self._rng = random.Random(self._seed)

    def snapshot(self) -> dict[str, Any]:
        """The registered faults, what is left of their `times`, and the `rate` generator."""
        return {
            "faults": self._faults,
            "remaining": self._remaining,
            "next_id": self._next_id,
            "rng": self._rng.getstate(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a `snapshot` taken by this class."""
        self._faults = dict(snapshot["faults"])
        self._remaining = dict(snapshot["remaining"])
        self._next_id = snapshot["next_id"]
        self._rng.setstate(snapshot["rng"])

    def active(self) -> list[Fault]:
        return list(self._faults.values())

    def take(self, supplier: str | None, operation: Operation) -> Fault | None:
        """The fault that applies to this call, if any, counting it against its `times`."""
        for fault in list(self._faults.values()):
            if not fault.matches(supplier, operation):
                continue
            if fault.rate is not None and self._rng.random() >= fault.rate:
                continue
            if fault.fault_id in self._remaining:
                self._remaining[fault.fault_id] -= 1
                if self._remaining[fault.fault_id] <= 0:
                    del self._remaining[fault.fault_id]
                    del self._faults[fault.fault_id]
            return fault
        return None
