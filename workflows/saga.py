"""The pure parts of the saga: the compensation stack and the price check.

Compensations are data, not closures: each names what to undo and for which item, and the workflow
turns it into an activity call with the freshest references it knows at undo time (a hold whose
reference was lost with a timed-out response is still found by its client reference).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from workflows.model import Money


class UndoKind(StrEnum):
    RELEASE_HOLD = "RELEASE"
    VOID_PAYMENT = "VOID"
    CANCEL_BOOKING = "CANCEL"


@dataclass(frozen=True)
class Compensation:
    """One undo step; safe to run more than once (every undo is "if present")."""

    kind: UndoKind
    item_id: str | None = None

    @property
    def step(self) -> str:
        """The timeline/search-attribute name of the step, e.g. `RELEASE it_1`."""
        return f"{self.kind.value} {self.item_id}" if self.item_id else self.kind.value


class Compensations:
    """A stack of undo steps, registered *before* each forward call and run in reverse order."""

    def __init__(self) -> None:
        self._stack: list[Compensation] = []

    def register(self, compensation: Compensation) -> None:
        """Push an undo unless it is already there (a retried step registers once)."""
        if compensation not in self._stack:
            self._stack.append(compensation)

    def remove(self, compensation: Compensation) -> None:
        """Forget an undo that has already been run (an optional item undone on its own)."""
        if compensation in self._stack:
            self._stack.remove(compensation)

    def for_item(self, item_id: str) -> list[Compensation]:
        """The item's undo steps in the order they must run (newest first)."""
        return [c for c in reversed(self._stack) if c.item_id == item_id]

    def pop(self) -> Compensation | None:
        """The newest undo, removed; None when nothing is left to undo."""
        return self._stack.pop() if self._stack else None

    def clear(self) -> None:
        self._stack.clear()

    def __len__(self) -> int:
        return len(self._stack)

    def __iter__(self) -> Iterator[Compensation]:
        return iter(list(self._stack))


def price_moved(expected: Money, quoted: Money, tolerance_minor: int) -> bool:
    """Whether the quoted total differs from what the customer saw by more than the tolerance."""
    return abs(quoted.amount_minor - expected.amount_minor) > tolerance_minor
