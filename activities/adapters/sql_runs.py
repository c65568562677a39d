"""Workflow runs in the ledger: which run may write a booking, and where its timeline goes.

A staff reset (passage/reset.py) starts a new run of the booking's workflow from an earlier
workflow task. That run replays the old run's history up to there, so its snapshots come with
the versions and timeline numbers of that point: lower than what the ledger holds. Without more,
the `version` guard would ignore the new run until it overtook the old one, and its timeline
entries would collide with the old run's (`booking_events` is append-only, so they would be
dropped).

So every booking has a run generation: 0 for the runs no reset made (the first run and those it
continued as new), N for the run the N-th reset made and its continuations. Snapshots are ordered
by (generation, version): the newest generation wins from its first write, and a run it
superseded (a late activity of the terminated run) writes nothing at all.

Its timeline continues the trail: at the new run's first write the store finds the entries it
inherited (the longest prefix equal to the old run's entries, timestamps included: a replayed
entry is the same entry, a new one has a new workflow time), writes a RESET entry with the staff
member, the step and the note after the old run's last entry, and numbers the run's later
entries after it (`seq + timeline_offset`). The old run's entries stay: they are what happened.

The row of a reset is written before Temporal is asked (`run_id` still NULL), so the new run's
first write, which may come before the API learns the new run id, already finds it: a run the
ledger does not know claims a pending reset, or else belongs to the current generation (a
continue-as-new).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, select, update
from sqlmodel import SQLModel

from activities.adapters.tables import BookingEventRow, BookingResetRow, BookingRow
from activities.ports import ResetInProgress
from workflows.contracts import RecordBookingInput, TimelineEntry

#: A reset whose new run has not written within this long is taken as abandoned (the API died
#: between the ledger and Temporal): a new reset may replace it.
PENDING_RESET_LIFETIME = timedelta(minutes=2)


@dataclass(frozen=True)
class RunTimeline:
    """Where one run's snapshots go: its generation and how its timeline maps onto the ledger's.

    The run's entry `seq` <= `inherited` is already in the ledger; a later one is the ledger's
    `seq + offset`. Generation 0 maps every entry to itself.
    """

    generation: int
    inherited: int = 0
    offset: int = 0

    def ledger_seq(self, seq: int) -> int:
        return max(seq, self.inherited) + self.offset

    def translate(self, snapshot: RecordBookingInput) -> RecordBookingInput:
        """The snapshot as the ledger numbers it (unchanged for generation 0)."""
        if self.inherited == 0 and self.offset == 0:
            return snapshot
        view = snapshot.view
        timeline = tuple(
            dataclasses.replace(entry, seq=entry.seq + self.offset)
            for entry in view.timeline
            if entry.seq > self.inherited
        )
        committed = snapshot.committed_through
        return dataclasses.replace(
            snapshot,
            view=dataclasses.replace(view, timeline=timeline),
            recorded_through=self.ledger_seq(snapshot.recorded_through),
            committed_through=None if committed is None else self.ledger_seq(committed),
        )


def run_timeline(
    conn: Connection,
    snapshot: RecordBookingInput,
    run_id: str | None,
    *,
    lock: bool,
    now: datetime,
) -> RunTimeline | None:
    """The generation and timeline mapping of `run_id`'s snapshot; None: a superseded run.

    Claims a pending reset for the run (its first write), inside the caller's transaction.
    `lock` takes the booking's reset rows FOR UPDATE (PostgreSQL) so that two first writes of
    one run cannot both claim it.
    """
    booking_id = snapshot.view.booking_id
    query = (
        select(_table(BookingResetRow))
        .where(_table(BookingResetRow).c.booking_id == booking_id)
        .order_by(_table(BookingResetRow).c.generation)
    )
    rows = [
        BookingResetRow.model_validate(row._mapping)
        for row in conn.execute(query.with_for_update() if lock else query)
    ]
    if not rows:
        return RunTimeline(0)  # never reset: the common case costs one indexed read
    claimed = [row for row in rows if row.inherited_entries is not None]
    current = claimed[-1].generation if claimed else 0
    mine = _generation_of(rows, run_id)
    if mine is None:  # a run the ledger does not know: a pending reset's new run, or a continuation
        pending = [row for row in rows if row.inherited_entries is None and row.run_id is None]
        mine = pending[-1].generation if pending and pending[-1].generation > current else current
    if mine < current:
        return None
    row = next((row for row in rows if row.generation == mine), None)
    if row is None:
        return RunTimeline(0)
    if row.inherited_entries is None:
        row = _claim(conn, row, run_id, snapshot.view.timeline, rows, now)
    return _mapping(row)


def _generation_of(rows: Sequence[BookingResetRow], run_id: str | None) -> int | None:
    """The generation a known run writes as (None: unknown, or no run id was given)."""
    if run_id is None:
        return None
    for row in reversed(rows):
        if row.run_id == run_id:
            return row.generation
    for row in reversed(rows):
        if row.base_run_id == run_id:
            return row.generation - 1
    return None


def _mapping(row: BookingResetRow) -> RunTimeline:
    return RunTimeline(row.generation, row.inherited_entries or 0, row.timeline_offset or 0)


def _claim(
    conn: Connection,
    row: BookingResetRow,
    run_id: str | None,
    timeline: Sequence[TimelineEntry],
    rows: Sequence[BookingResetRow],
    now: datetime,
) -> BookingResetRow:
    """The new run's first write: find what it inherited, write the RESET entry after the trail."""
    events = _table(BookingEventRow)
    recorded = {
        stored.seq: (stored.at_text, stored.step, stored.outcome, stored.detail, stored.actor)
        for stored in conn.execute(select(events).where(events.c.booking_id == row.booking_id))
    }
    last = max(recorded, default=0)
    # The old run's newest entries wait on the booking row for a later write that will never
    # come: its last workflow task completed long ago (staff saw it stuck), so they happened.
    bookings = _table(BookingRow)
    pending = conn.execute(
        select(bookings.c.pending_timeline).where(bookings.c.booking_id == row.booking_id)
    ).scalar_one_or_none()
    left = [entry for entry in json.loads(pending or "[]") if entry["seq"] > last]
    if left:
        conn.execute(
            events.insert(),
            [
                {
                    "booking_id": row.booking_id,
                    "seq": entry["seq"],
                    "at": _parsed(entry["at"]),
                    "at_text": entry["at"],
                    "step": entry["step"],
                    "outcome": entry["outcome"],
                    "detail": entry["detail"],
                    "actor": entry["actor"],
                    "recorded_at": now,
                }
                for entry in left
            ],
        )
        for entry in left:
            recorded[entry["seq"]] = (
                entry["at"],
                entry["step"],
                entry["outcome"],
                entry["detail"],
                entry["actor"],
            )
        last = max(recorded)
    base = {
        other.generation: _mapping(other) for other in rows if other.generation < row.generation
    }
    inherited = 0
    for entry in sorted(timeline, key=lambda entry: entry.seq):
        stored = recorded.get(_base_seq(base, row.generation - 1, entry.seq))
        if stored != (entry.at, entry.step, entry.outcome, entry.detail, entry.actor):
            break
        inherited = entry.seq
    reset_seq = last + 1
    conn.execute(
        events.insert().values(
            booking_id=row.booking_id,
            seq=reset_seq,
            at=now,
            at_text=now.isoformat(),
            step=f"RESET to {row.to_step}",
            outcome="staff reset",
            detail=row.note,
            actor=row.actor,
            recorded_at=now,
        )
    )
    claimed = row.model_copy(
        update={
            "run_id": row.run_id or run_id,
            "inherited_entries": inherited,
            "timeline_offset": reset_seq - inherited,
        }
    )
    resets = _table(BookingResetRow)
    conn.execute(
        update(resets)
        .where(resets.c.booking_id == row.booking_id, resets.c.generation == row.generation)
        .values(
            run_id=claimed.run_id,
            inherited_entries=claimed.inherited_entries,
            timeline_offset=claimed.timeline_offset,
        )
    )
    return claimed


def _base_seq(mappings: dict[int, RunTimeline], generation: int, seq: int) -> int:
    """The ledger seq of entry `seq` of generation `generation`'s run."""
    while generation > 0:
        mapping = mappings.get(generation)
        if mapping is not None and seq > mapping.inherited:
            return seq + mapping.offset
        generation -= 1
    return seq


# --- the reset's own rows (written by the API around Temporal's reset) ---------------------------


def begin_reset(
    conn: Connection,
    booking_id: str,
    base_run_id: str,
    to_step: str,
    actor: str,
    note: str,
    now: datetime,
) -> int:
    """Write the pending reset row before Temporal is asked; its generation.

    Raises:
        ResetInProgress: another reset was asked for within PENDING_RESET_LIFETIME and its run
            has not written yet.
        LookupError: the ledger has no such booking.
    """
    bookings, resets = _table(BookingRow), _table(BookingResetRow)
    if (
        conn.execute(
            select(bookings.c.booking_id)
            .where(bookings.c.booking_id == booking_id)
            .with_for_update()
        ).first()
        is None
    ):
        raise LookupError(booking_id)
    unclaimed = list(
        conn.execute(
            select(resets.c.generation, resets.c.requested_at).where(
                resets.c.booking_id == booking_id, resets.c.inherited_entries.is_(None)
            )
        )
    )
    for _, requested_at in unclaimed:
        if _aware(requested_at) > now - PENDING_RESET_LIFETIME:
            raise ResetInProgress(booking_id)
    conn.execute(
        delete(resets).where(
            resets.c.booking_id == booking_id, resets.c.inherited_entries.is_(None)
        )
    )
    newest = conn.execute(
        select(func.max(resets.c.generation)).where(resets.c.booking_id == booking_id)
    ).scalar_one()
    generation = (newest or 0) + 1
    conn.execute(
        resets.insert().values(
            booking_id=booking_id,
            generation=generation,
            base_run_id=base_run_id,
            run_id=None,
            to_step=to_step,
            actor=actor,
            note=note,
            requested_at=now,
        )
    )
    return generation


def name_reset_run(conn: Connection, booking_id: str, generation: int, run_id: str) -> None:
    """Temporal answered with the new run's id (a no-op once the run has claimed the row)."""
    resets = _table(BookingResetRow)
    conn.execute(
        update(resets)
        .where(
            resets.c.booking_id == booking_id,
            resets.c.generation == generation,
            resets.c.run_id.is_(None),
        )
        .values(run_id=run_id)
    )


def abandon_reset(conn: Connection, booking_id: str, generation: int) -> None:
    """Temporal refused the reset: forget the pending row (a claimed one stays)."""
    resets = _table(BookingResetRow)
    conn.execute(
        delete(resets).where(
            resets.c.booking_id == booking_id,
            resets.c.generation == generation,
            resets.c.inherited_entries.is_(None),
        )
    )


def reset_recorded(conn: Connection, booking_id: str, generation: int) -> bool:
    """Whether the reset's new run has written the ledger (its RESET entry is in the trail)."""
    resets = _table(BookingResetRow)
    inherited = conn.execute(
        select(resets.c.inherited_entries).where(
            resets.c.booking_id == booking_id, resets.c.generation == generation
        )
    ).first()
    return inherited is not None and inherited[0] is not None


def _parsed(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, cast(Any, model).__table__)
