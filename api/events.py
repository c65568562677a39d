"""Live booking events for `GET /bookings/{id}/events`: the ledger pushed as Server-Sent Events.

The source is the ledger, not the workflow: the workflow writes it in the very workflow task of
every change (a local activity, before any caller can learn of the change), so a stream reads what
`GET /bookings/{id}` reads and costs the worker nothing, however many are open and for how long.

- `BookingWatcher` is the one poller of an API process: while any stream is open it reads the
  change marks (version and write time) of every watched booking in one indexed query every
  `events_poll_seconds` (0.1 s) and wakes the streams of the bookings that changed. Its cost
  depends on the number of API processes, not on the number of streams; the streams of one
  booking share one ledger read per change. On PostgreSQL, `PostgresChangeListener` LISTENs for
  the NOTIFY each ledger write sends: it wakes the streams at once and the poll slows to a safety
  net (1 s) while the listener is up.
- `booking_events` is one stream: a `timeline` event per timeline entry (`id:` = the entry's
  `seq`, so `Last-Event-ID` resumes after the last entry received, without gaps or repeats), then
  a `booking` event with the whole booking (the body of `GET /bookings/{id}`, no `id:`) after each
  batch and once on connecting; heartbeats are comments (sse-starlette's ping). It ends after
  the batch that shows a terminal status (`CONFIRMED`, `FAILED`, `CANCELLED`): a client that waits
  for more (a cancel after confirmation) opens it again with `Last-Event-ID`.

A booking awaiting 3-D Secure needs its PaymentIntent's client secret, which is never written to
the ledger: its `booking` event comes from `BookingService.read_for_customer`, which asks the
workflow (one query per stream per change of such a booking, never per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sse_starlette import ServerSentEvent
from temporalio.service import RPCError

from activities.ports import BOOKING_CHANGED_CHANNEL, StoredBooking
from api.schemas.bookings import BookingOut, TimelineEntryOut
from api.service import BookingService, EngineUnavailable
from workflows.contracts import BookingView, TimelineEntry
from workflows.model import BookingStatus

log = structlog.get_logger("passage.api.events")

#: Event names of the stream (the `event:` field).
TIMELINE_EVENT = "timeline"
BOOKING_EVENT = "booking"
#: How long a reconnecting EventSource-style client waits before it tries again (`retry:`).
RETRY_MILLISECONDS = 1000
#: While PostgreSQL NOTIFY wakes the streams, the poll only catches what a lost one missed.
SAFETY_NET_SECONDS = 1.0


class Ledger(Protocol):
    """What the watcher reads: a mark per booking that changes with every write, and a booking."""

    async def changes(self, booking_ids: Sequence[str]) -> dict[str, str]: ...

    async def read(self, booking_id: str) -> StoredBooking | None: ...


@dataclass
class WatcherStats:
    """What the watcher did, for tests and the bench: polls, streams woken, ledger reads."""

    polls: int = 0
    wakeups: int = 0
    #: PostgreSQL NOTIFYs received for watched bookings.
    notifications: int = 0
    #: Ledger reads of watched bookings (one per change, whatever the number of streams).
    reads: int = 0
    failures: int = 0
    poll_seconds: float = 0.0


@dataclass
class _Watched:
    events: set[asyncio.Event] = field(default_factory=set)
    mark: str | None = None
    #: The one read of the booking since the last change seen, shared by all its streams.
    reading: asyncio.Future[StoredBooking | None] | None = None
    #: Changes seen (by a poll or a NOTIFY): the shared read is per generation.
    generation: int = 0
    read_generation: int = -1


class BookingWatcher:
    """One shared ledger poller per API process, waking the streams whose booking changed."""

    def __init__(self, ledger: Ledger, interval_seconds: float) -> None:
        self._ledger = ledger
        self._interval = interval_seconds
        #: Set while a PostgreSQL LISTEN is up: NOTIFY wakes the streams, polls are a safety net.
        self.notifications_live = False
        self._watched: dict[str, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self.stats = WatcherStats()

    @property
    def watching(self) -> int:
        """How many streams are open."""
        return sum(len(watched.events) for watched in self._watched.values())

    @contextlib.asynccontextmanager
    async def watch(self, booking_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the booking's ledger row changes (and once at the first poll)."""
        changed = asyncio.Event()
        self._watched.setdefault(booking_id, _Watched()).events.add(changed)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="booking-events-poller")
        try:
            yield changed
        finally:
            watched = self._watched.get(booking_id)
            if watched is not None:
                watched.events.discard(changed)
                if not watched.events:
                    del self._watched[booking_id]

    async def read(self, booking_id: str) -> StoredBooking | None:
        """The booking from the ledger; streams of one booking share one read per change."""
        watched = self._watched.get(booking_id)
        if watched is None:
            return await self._ledger.read(booking_id)
        reading = watched.reading
        stale = watched.read_generation != watched.generation
        if reading is None or stale or (reading.done() and reading.exception() is not None):
            watched.read_generation = watched.generation
            reading = watched.reading = asyncio.ensure_future(self._ledger.read(booking_id))
            self.stats.reads += 1
        return await asyncio.shield(reading)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while self._watched:
            started = time.perf_counter()
            booking_ids = list(self._watched)
            try:
                marks = await self._ledger.changes(booking_ids)
            except SQLAlchemyError as err:
                self.stats.failures += 1
                if self.stats.failures % 100 == 1:  # a ledger outage logs once per ~10 s
                    log.warning("event streams: ledger poll failed", error=type(err).__name__)
                marks = None
            self.stats.polls += 1
            self.stats.poll_seconds += time.perf_counter() - started
            if marks is not None:
                self._wake(booking_ids, marks)
            live = self.notifications_live
            await asyncio.sleep(max(self._interval, SAFETY_NET_SECONDS) if live else self._interval)

    def notify(self, booking_id: str) -> None:
        """A NOTIFY said the booking's row changed: wake its streams now."""
        watched = self._watched.get(booking_id)
        if watched is None:
            return
        self.stats.notifications += 1
        self._wake_streams(watched)

    def _wake(self, booking_ids: list[str], marks: dict[str, str]) -> None:
        for booking_id in booking_ids:
            watched = self._watched.get(booking_id)
            mark = marks.get(booking_id)
            if watched is None or mark is None or mark == watched.mark:
                continue
            # Also after a NOTIFY woke the streams for this write: one more shared read is
            # cheaper than trusting that no NOTIFY was lost while the listener reconnected.
            watched.mark = mark
            self._wake_streams(watched)

    def _wake_streams(self, watched: _Watched) -> None:
        watched.generation += 1
        for changed in watched.events:
            changed.set()
            self.stats.wakeups += 1


async def booking_events(
    booking_id: str,
    access_token: str,
    after: int,
    *,
    service: BookingService,
    watcher: BookingWatcher,
) -> AsyncIterator[ServerSentEvent]:
    """The events of one booking the caller is authorized for, from entry `after + 1` on."""
    sent = after
    greeted = False
    async with watcher.watch(booking_id) as changed:
        while True:
            changed.clear()  # before reading: a change during the read wakes the next round
            view = await _read(watcher, booking_id)
            if view is not None:
                entries = [entry for entry in view.timeline if entry.seq > sent]
                for entry in entries:
                    yield _timeline_event(entry)
                if entries or not greeted:
                    greeted = True
                    yield await _booking_event(view, service, access_token)
                if entries:
                    sent = entries[-1].seq
                if view.status.is_terminal and view.timeline and sent >= view.timeline[-1].seq:
                    return
            await changed.wait()


async def _read(watcher: BookingWatcher, booking_id: str) -> BookingView | None:
    try:
        stored = await watcher.read(booking_id)
    except SQLAlchemyError as err:
        log.warning("event stream: ledger read failed; waiting", error=type(err).__name__)
        return None
    return None if stored is None else stored.view


def _timeline_event(entry: TimelineEntry) -> ServerSentEvent:
    out = TimelineEntryOut.of(entry, staff=False)
    return ServerSentEvent(
        data=out.model_dump_json(),
        event=TIMELINE_EVENT,
        id=str(out.seq),
        retry=RETRY_MILLISECONDS,
    )


async def _booking_event(
    view: BookingView, service: BookingService, access_token: str
) -> ServerSentEvent:
    if view.status == BookingStatus.AWAITING_PAYMENT_ACTION:
        # The client secret lives only in the workflow: GET /bookings/{id}'s own fallback.
        try:
            view = await service.read_for_customer(view.booking_id, access_token)
        except (EngineUnavailable, RPCError) as err:
            # The ledger's view still tells the status; GET /bookings/{id} can be retried.
            log.warning("event stream: no client secret from Temporal", error=type(err).__name__)
    return ServerSentEvent(data=BookingOut.of(view).model_dump_json(), event=BOOKING_EVENT)


class PostgresChangeListener:
    """LISTENs for the ledger's NOTIFYs (PostgreSQL only) and wakes the watcher's streams at once.

    The worker's ledger write NOTIFYs `BOOKING_CHANGED_CHANNEL` with the booking id when it commits
    (activities/adapters/sql_store.py). One connection per API process; while it is up the poller
    slows to a safety net (`SAFETY_NET_SECONDS`), and when it drops the poller is the fast path
    again until it is back.
    """

    def __init__(self, database_url: str, watcher: BookingWatcher) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._watcher = watcher
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="booking-events-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._watcher.notifications_live = False

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {BOOKING_CHANGED_CHANNEL}")
                    self._watcher.notifications_live = True
                    delay = 0.5
                    async for notice in conn.notifies():
                        self._watcher.notify(notice.payload)
            except psycopg.Error as err:
                log.warning("event streams: LISTEN lost; polling", error=type(err).__name__)
            finally:
                self._watcher.notifications_live = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
