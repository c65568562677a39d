"""SqlBookingStore: the booking ledger on PostgreSQL (production) or a SQLite file (the default).

The BookingWorkflow sends a snapshot (`RecordBookingInput`) in every workflow task that changed the
booking, as a local activity (one at a time, in order) or, while the database is slow, as regular
activities (which arrive more than once and out of order). One transaction per snapshot:

1. Upsert the booking row guarded by `version` (`ON CONFLICT DO UPDATE ... WHERE version <=
   excluded.version`). The conflicting row is locked on PostgreSQL and SQLite writers take the
   database lock up front (`BEGIN IMMEDIATE`), so snapshots of one booking are serialized. An equal
   version is written again: a local activity whose workflow task failed runs again, and the task
   that replaces it may have seen more messages, so its snapshot is the true one.
2. Only when this snapshot is the newest: upsert its items, travellers (unless `recorded_through`
   says they are written), payments and refunds by business key and delete the ones it no longer
   has. A stale snapshot changes none of them.
3. Always: insert its timeline entries after `recorded_through` up to `committed_through` once
   each (`ON CONFLICT (booking_id, seq) DO NOTHING`; the audit trail `booking_events` is
   append-only). Entries after `committed_through` were made in the workflow task still running
   the write, which history may not keep as they are: they wait on the booking row
   (`pending_timeline`, replaced by every newer snapshot) and reads append them to the trail.

Rows go in with executemany, so each statement is compiled once whatever the row count.

Money rows derived from `view.payment` (one currency per booking, the contract's rule):

- `payments` row `authorization` once the view has a PaymentIntent or a non-zero `authorized`
  (amount = `authorized`); row `capture` once `captured` is non-zero (amount = `captured`).
- `refunds`: one row once `refunded` or `fees_kept` is non-zero (amount = `refunded`, fee =
  `fees_kept`). Its reason is `cancellation` when an item carries a `cancellation_fee` (confirmed
  items cancelled under their terms; each item's fee stays on its `booking_items` row) and
  `compensation` otherwise (the saga gave back a captured payment).
- `payment.fees_absorbed` (suppliers' fees the merchant bears, never charged) is no money movement
  on the card: it stays on the `bookings` row (`fees_absorbed_minor`, NULL when None).

`get_view` rebuilds the BookingView from these rows exactly, except `payment.client_secret`: the
3-D Secure secret belongs to the checkout frontend only and is never written to the ledger.
Traveller document numbers are reduced to a short hint; the access token arrives already hashed.

Personal data is encrypted before it reaches the database (a `FieldCipher`, in production
passage.codec.LedgerCipher): the customer's e-mail and name in one field of the booking row, each
traveller in one field of theirs, each bound to its booking (and position) so it cannot be moved
to another row. Staff search by e-mail compares a keyed hash of the normalized address. Both are
computed in the write's thread before the transaction: the customer's once per booking (cached),
the travellers only on the first write, some 10 microseconds of CPU each. Only staff reads
(`search`, `personal_data`) decrypt; the view the customer and the workflow read carries no
personal data and decrypts nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    exists,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, col
from sqlmodel import select as sqlmodel_select

from activities.adapters import sql_runs
from activities.adapters.sql_ledger_totals import LedgerTotals, read_ledger_totals
from activities.adapters.tables import (
    BookingEventRow,
    BookingItemRow,
    BookingRow,
    PaymentRow,
    RefundRow,
    TravellerRow,
    WebhookEventRow,
)
from activities.ports import BookingStore
from workflows.contracts import (
    AttentionView,
    BookingError,
    BookingView,
    ItemView,
    PaymentView,
    RecordBookingInput,
    TimelineEntry,
)
from workflows.model import (
    BookingRequest,
    BookingStatus,
    CancellationTerms,
    ItemKind,
    ItemStatus,
    Money,
    PaymentStatus,
    Traveller,
)

#: The largest page staff search serves; bigger requests are refused rather than silently cut.
MAX_PAGE_SIZE = 500

_WRITE_OPTION = "passage_ledger_write"

#: PostgreSQL only: every recorded snapshot NOTIFYs this channel with its booking id (no other
#: data) when its transaction commits; the API's event streams LISTEN (api/events.py).
BOOKING_CHANGED_CHANNEL = "passage_booking_changed"


class LedgerError(ValueError):
    """A snapshot the ledger cannot record as sent (e.g. two currencies): retrying cannot help."""


class InvalidCursor(ValueError):
    """A search cursor that this store did not issue (tampered, truncated or from another sort)."""


@dataclass(frozen=True)
class BookingSummary:
    """One line of the staff booking list: enough to pick the booking, not the whole view."""

    booking_id: str
    status: BookingStatus
    step: str
    customer_email: str
    customer_name: str
    total: Money
    suppliers: tuple[str, ...]
    created_at: str
    updated_at: str
    attention: AttentionView | None


@dataclass(frozen=True)
class StoredBooking:
    """A booking as the ledger holds it: its newest view and the hash that authorizes reading it."""

    view: BookingView
    access_token_hash: str | None


@dataclass(frozen=True)
class TravellerRecord:
    """A traveller as the ledger keeps them (the document as a hint of its last characters)."""

    first_name: str
    last_name: str
    birth_date: str
    document_hint: str


@dataclass(frozen=True)
class PersonalData:
    """A booking's customer and travellers, decrypted: for staff, never for logs or the view."""

    customer_email: str
    customer_name: str
    travellers: tuple[TravellerRecord, ...]


class FieldCipher(Protocol):
    """Encrypts the ledger's personal data and hashes e-mails for lookup (passage.codec)."""

    def seal(self, plaintext: str, context: str) -> str: ...

    def open(self, sealed: str, context: str) -> str: ...

    def email_hash(self, email: str) -> str: ...

    def email_hashes(self, email: str) -> Sequence[str]: ...


class LedgerStore(BookingStore, Protocol):
    """BookingStore plus what the API, the CLI and the webhook endpoint read from the ledger."""

    async def begin_reset(
        self, booking_id: str, base_run_id: str, to_step: str, actor: str, note: str
    ) -> int: ...

    async def name_reset_run(self, booking_id: str, generation: int, run_id: str) -> None: ...

    async def abandon_reset(self, booking_id: str, generation: int) -> None: ...

    async def reset_recorded(self, booking_id: str, generation: int) -> bool: ...

    async def read(self, booking_id: str) -> StoredBooking | None: ...

    async def get_access_token_hash(self, booking_id: str) -> str | None: ...

    async def events(self, booking_id: str) -> tuple[TimelineEntry, ...]: ...

    async def personal_data(self, booking_id: str) -> PersonalData | None: ...

    async def search(
        self,
        status: BookingStatus | str | None = None,
        email: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        supplier: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[BookingSummary], str | None]: ...

    async def mark_webhook_event_processed(self, event_id: str) -> bool: ...


# --- engine --------------------------------------------------------------------------------------


def make_engine(database_url: str) -> Engine:
    """An engine for `DATABASE_URL`: `postgresql+psycopg://...` or `sqlite:///path` (the default).

    Plain `postgresql://` and `postgres://` URLs (docker-compose, hosting providers) get the
    psycopg 3 driver. SQLite gets its file's directory created, WAL (readers never block the
    writer), enforced foreign keys and a busy timeout so concurrent writers wait instead of failing.
    """
    url = make_url(_with_psycopg_driver(database_url))
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def for_writing(engine: Engine) -> Engine:
    """The same engine whose transactions take the write lock when they begin.

    On SQLite a deferred transaction that reads then writes can fail with SQLITE_BUSY without
    waiting; `BEGIN IMMEDIATE` queues writers behind the busy timeout instead. PostgreSQL's row
    locks need nothing, so there the option is ignored.
    """
    return engine.execution_options(**{_WRITE_OPTION: True})


def _with_psycopg_driver(database_url: str) -> str:
    for scheme in ("postgres://", "postgresql://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme) :]
    return database_url


def _configure_sqlite_connection(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own implicit BEGIN is disabled so `_begin_sqlite_transaction` chooses the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL once (it persists); tolerate another connection doing it first.

    Changing the journal mode fails at once, without the busy timeout, while another connection
    holds a lock; that connection configured WAL itself before it took the lock.
    """
    for attempt in range(100):
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            time.sleep(0.01 * (attempt + 1))
    cursor.execute("PRAGMA journal_mode=WAL")


def _begin_sqlite_transaction(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# --- the store -----------------------------------------------------------------------------------


class SqlBookingStore:
    """The ledger behind the `record_booking` activity, the API and the staff CLI.

    The database work is synchronous and runs in a worker thread, so the async methods can be
    awaited from activities and FastAPI handlers without blocking the event loop.
    """

    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self._engine = engine
        self._cipher = cipher
        # A booking is written 7-8 times with the same customer: sealed once per booking (the
        # columns are written by the first insert only, so a later write's value is not used
        # unless the row is missing).
        self._customer_fields = functools.lru_cache(maxsize=4096)(self._seal_customer_fields)
        self._writer = for_writing(engine)
        self._is_postgres = engine.dialect.name == "postgresql"
        # One snapshot per read on PostgreSQL, so a view never mixes two versions of a booking
        # (SQLite's WAL read transactions are snapshots already).
        self._reader = (
            engine.execution_options(isolation_level="REPEATABLE READ")
            if self._is_postgres
            else engine
        )

    # --- writes ----------------------------------------------------------------------------------

    async def record(self, snapshot: RecordBookingInput, run_id: str | None = None) -> None:
        """Record one snapshot; idempotent, and a stale version never overwrites a newer one.

        `run_id` is the workflow run that sent it (the record activity's): after a reset, the
        new run's snapshots supersede the old run's and its timeline continues the trail
        (activities/adapters/sql_runs.py). None: the run the ledger holds now.
        """
        await asyncio.to_thread(self._record, snapshot, run_id)

    # --- resets (passage/reset.py, around Temporal's reset) --------------------------------------

    async def begin_reset(
        self, booking_id: str, base_run_id: str, to_step: str, actor: str, note: str
    ) -> int:
        """Record a reset about to be asked of Temporal; its run generation.

        Raises:
            ResetInProgress: another reset of the booking is under way.
            LookupError: the ledger has no such booking.
        """

        def begin() -> int:
            with self._writer.begin() as conn:
                return sql_runs.begin_reset(
                    conn, booking_id, base_run_id, to_step, actor, note, datetime.now(UTC)
                )

        return await asyncio.to_thread(begin)

    async def name_reset_run(self, booking_id: str, generation: int, run_id: str) -> None:
        """The run Temporal started for the reset."""

        def name() -> None:
            with self._writer.begin() as conn:
                sql_runs.name_reset_run(conn, booking_id, generation, run_id)

        await asyncio.to_thread(name)

    async def abandon_reset(self, booking_id: str, generation: int) -> None:
        """Temporal refused the reset: the old run goes on as before."""

        def abandon() -> None:
            with self._writer.begin() as conn:
                sql_runs.abandon_reset(conn, booking_id, generation)

        await asyncio.to_thread(abandon)

    async def reset_recorded(self, booking_id: str, generation: int) -> bool:
        """Whether the reset's new run has written the ledger yet."""

        def recorded() -> bool:
            with self._reader.connect() as conn:
                return sql_runs.reset_recorded(conn, booking_id, generation)

        return await asyncio.to_thread(recorded)

    async def mark_webhook_event_processed(self, event_id: str) -> bool:
        """True the first time `event_id` is seen, False ever after (atomic across processes).

        Marked only once its booking was signalled (passage.bookings), so a mark means "done"
        and is never taken back: there is no unmark, and no claim held while signalling.
        """
        return await asyncio.to_thread(self._mark_webhook_event, event_id)

    # --- reads -----------------------------------------------------------------------------------

    async def get_view(self, booking_id: str) -> BookingView | None:
        """The booking as its newest recorded snapshot showed it, or None if never recorded."""
        return await asyncio.to_thread(self._get_view, booking_id)

    async def read(self, booking_id: str) -> StoredBooking | None:
        """The newest view and the access-token hash in one read (None if never recorded)."""
        return await asyncio.to_thread(self._read, booking_id)

    async def get_access_token_hash(self, booking_id: str) -> str | None:
        """The stored hash of the customer's access token (None when the booking is unknown)."""
        return await asyncio.to_thread(self._get_access_token_hash, booking_id)

    async def events(self, booking_id: str) -> tuple[TimelineEntry, ...]:
        """The audit trail: every step, transition and staff action (`actor`), in order."""
        return await asyncio.to_thread(self._events, booking_id)

    async def personal_data(self, booking_id: str) -> PersonalData | None:
        """The customer and travellers, decrypted (None if never recorded): for staff only."""
        return await asyncio.to_thread(self._personal_data, booking_id)

    async def totals(self) -> LedgerTotals:
        """Counts and sums over the whole ledger, no row's data (the API's `/metrics`)."""
        return await asyncio.to_thread(read_ledger_totals, self._reader)

    async def changes(self, booking_ids: Sequence[str]) -> dict[str, str]:
        """A mark per recorded booking that changes with every write (the event streams' poll).

        One indexed query for all of them (in chunks of `MAX_PAGE_SIZE` ids); unknown ids are
        left out. A write of an equal version (a workflow task run again) changes the mark too.
        """
        return await asyncio.to_thread(self._changes, list(booking_ids))

    async def search(
        self,
        status: BookingStatus | str | None = None,
        email: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        supplier: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[BookingSummary], str | None]:
        """Staff search, newest first, `limit` per page; pass the returned cursor for the next.

        Filters combine with AND: `email` matches case-insensitively (by its keyed hash),
        `created_from` is inclusive and `created_to` exclusive (naive datetimes are UTC),
        `supplier` matches any item. The order (created_at, booking_id) is total, so pages never
        repeat or skip a booking even while new bookings arrive.

        Raises:
            InvalidCursor: the cursor was not issued by this store.
            ValueError: `limit` is outside 1..MAX_PAGE_SIZE.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        after = _decode_cursor(cursor) if cursor else None
        return await asyncio.to_thread(
            self._search, status, email, created_from, created_to, supplier, limit, after
        )

    # --- synchronous work (runs in a thread) -----------------------------------------------------

    def _record(self, snapshot: RecordBookingInput, run_id: str | None) -> None:
        request, view = snapshot.request, snapshot.view
        now = datetime.now(UTC)
        customer = self._customer_fields(
            view.booking_id, request.customer_email, request.customer_name
        )
        # Encrypted before the transaction, so the database lock is not held for the cipher.
        travellers = None if snapshot.recorded_through else _traveller_rows(request, self._cipher)
        with self._writer.begin() as conn:
            run = sql_runs.run_timeline(conn, snapshot, run_id, lock=self._is_postgres, now=now)
            if run is None:  # a run that a reset superseded: it no longer speaks for the booking
                return
            snapshot = run.translate(snapshot)
            recorded, committed = snapshot.recorded_through, snapshot.committed_through
            booking = _booking_row(request, snapshot.view, now, committed)
            booking.customer_ciphertext, booking.customer_email_hash = customer
            booking.run_generation = run.generation
            view = snapshot.view
            if self._upsert_booking(conn, booking):
                booking_id = view.booking_id
                self._replace(
                    conn, BookingItemRow, "item_id", booking_id, _item_rows(request, view)
                )
                if travellers is not None:
                    self._replace(conn, TravellerRow, "position", booking_id, travellers)
                self._replace(conn, PaymentRow, "kind", booking_id, _payment_rows(view, now))
                self._replace(conn, RefundRow, "reason", booking_id, _refund_rows(view, now))
            self._append_events(conn, view, recorded, committed, now)
            if self._is_postgres:  # delivered at commit, to listeners only: nearly free
                conn.execute(
                    text("SELECT pg_notify(:channel, :booking_id)"),
                    {"channel": BOOKING_CHANGED_CHANNEL, "booking_id": view.booking_id},
                )

    def _seal_customer_fields(self, booking_id: str, email: str, name: str) -> tuple[str, str]:
        """The booking row's `customer_ciphertext` and `customer_email_hash`."""
        return seal_customer(self._cipher, booking_id, email, name), self._cipher.email_hash(email)

    def _upsert_booking(self, conn: Connection, row: BookingRow) -> bool:
        """Insert or update the booking if this version is newer; True when it was written."""
        table = _table(BookingRow)
        values = row.model_dump()
        insert = self._insert(table).values(values)
        # The customer never changes: their sealed fields are written by the first insert only.
        immutable = {
            "booking_id",
            "created_at",
            "created_at_text",
            "customer_ciphertext",
            "customer_email_hash",
        }
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.booking_id],
            set_={name: insert.excluded[name] for name in values if name not in immutable},
            # A newer run generation (a reset) wins whatever its version; within one, the newest
            # version (or the same one again) does.
            where=or_(
                table.c.run_generation < insert.excluded.run_generation,
                and_(
                    table.c.run_generation == insert.excluded.run_generation,
                    table.c.version <= insert.excluded.version,
                ),
            ),
        ).returning(table.c.booking_id)
        return conn.execute(upsert).first() is not None

    def _replace(
        self,
        conn: Connection,
        model: type[SQLModel],
        key: str,
        booking_id: str,
        rows: Sequence[SQLModel],
    ) -> None:
        """Make `model`'s rows of this booking exactly `rows`: upsert by key, delete the rest."""
        table = _table(model)
        values = [row.model_dump() for row in rows]
        if values:
            stmt = self._insert(table)
            primary_key = {"booking_id", key}
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.booking_id, table.c[key]],
                set_={name: stmt.excluded[name] for name in values[0] if name not in primary_key},
            )
            conn.execute(stmt, values)
        conn.execute(
            delete(table).where(
                table.c.booking_id == booking_id,
                table.c[key].not_in([value[key] for value in values]),
            )
        )

    def _append_events(
        self, conn: Connection, view: BookingView, after: int, through: int | None, now: datetime
    ) -> None:
        """Insert the entries after `after` (and up to `through`) that the ledger lacks."""
        # Always in seq order, so two transactions inserting the same entries cannot deadlock.
        entries = sorted(
            (e for e in view.timeline if e.seq > after and (through is None or e.seq <= through)),
            key=lambda e: e.seq,
        )
        if not entries:
            return
        table = _table(BookingEventRow)
        values = [_event_row(view.booking_id, entry, now).model_dump() for entry in entries]
        stmt = self._insert(table).on_conflict_do_nothing(
            index_elements=[table.c.booking_id, table.c.seq]
        )
        conn.execute(stmt, values)

    def _mark_webhook_event(self, event_id: str) -> bool:
        table = _table(WebhookEventRow)
        row = WebhookEventRow(event_id=event_id, processed_at=datetime.now(UTC))
        stmt = (
            self._insert(table)
            .values(row.model_dump())
            .on_conflict_do_nothing(index_elements=[table.c.event_id])
            .returning(table.c.event_id)
        )
        with self._writer.begin() as conn:
            return conn.execute(stmt).first() is not None

    def _get_view(self, booking_id: str) -> BookingView | None:
        stored = self._read(booking_id)
        return None if stored is None else stored.view

    def _read(self, booking_id: str) -> StoredBooking | None:
        with self._session() as session:
            booking = session.get(BookingRow, booking_id)
            if booking is None:
                return None
            items = session.exec(
                sqlmodel_select(BookingItemRow)
                .where(BookingItemRow.booking_id == booking_id)
                .order_by(col(BookingItemRow.position))
            ).all()
            payments = session.exec(
                sqlmodel_select(PaymentRow).where(PaymentRow.booking_id == booking_id)
            ).all()
            refunds = session.exec(
                sqlmodel_select(RefundRow).where(RefundRow.booking_id == booking_id)
            ).all()
            events = self._event_rows(session, booking_id)
        view = _view(booking, items, payments, refunds, events)
        return StoredBooking(view, booking.access_token_hash)

    def _get_access_token_hash(self, booking_id: str) -> str | None:
        with self._session() as session:
            booking = session.get(BookingRow, booking_id)
            return None if booking is None else booking.access_token_hash

    def _events(self, booking_id: str) -> tuple[TimelineEntry, ...]:
        with self._session() as session:
            booking = session.get(BookingRow, booking_id)
            if booking is None:
                return ()
            return _timeline(booking, self._event_rows(session, booking_id))

    def _personal_data(self, booking_id: str) -> PersonalData | None:
        with self._session() as session:
            booking = session.get(BookingRow, booking_id)
            if booking is None:
                return None
            travellers = session.exec(
                sqlmodel_select(TravellerRow)
                .where(TravellerRow.booking_id == booking_id)
                .order_by(col(TravellerRow.position))
            ).all()
        email, name = open_customer(self._cipher, booking.booking_id, booking.customer_ciphertext)
        return PersonalData(
            customer_email=email,
            customer_name=name,
            travellers=tuple(
                open_traveller(self._cipher, row.booking_id, row.position, row.traveller_ciphertext)
                for row in travellers
            ),
        )

    def _changes(self, booking_ids: list[str]) -> dict[str, str]:
        table = _table(BookingRow)
        marks: dict[str, str] = {}
        with self._reader.connect() as conn:
            for start in range(0, len(booking_ids), MAX_PAGE_SIZE):
                chunk = booking_ids[start : start + MAX_PAGE_SIZE]
                rows = conn.execute(
                    select(table.c.booking_id, table.c.version, table.c.recorded_at).where(
                        table.c.booking_id.in_(chunk)
                    )
                )
                for booking_id, version, recorded_at in rows:
                    marks[booking_id] = f"{version}@{recorded_at.isoformat()}"
        return marks

    def _search(
        self,
        status: BookingStatus | str | None,
        email: str | None,
        created_from: datetime | None,
        created_to: datetime | None,
        supplier: str | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> tuple[list[BookingSummary], str | None]:
        created_at, booking_id = col(BookingRow.created_at), col(BookingRow.booking_id)
        query = sqlmodel_select(BookingRow)
        if status is not None:
            query = query.where(BookingRow.status == str(status))
        if email is not None:
            # Under every readable key: bookings recorded before a key rotation keep their hash.
            hashes = self._cipher.email_hashes(email)
            query = query.where(col(BookingRow.customer_email_hash).in_(hashes))
        if created_from is not None:
            query = query.where(created_at >= created_from)
        if created_to is not None:
            query = query.where(created_at < created_to)
        if supplier is not None:
            query = query.where(
                exists(
                    select(col(BookingItemRow.booking_id)).where(
                        col(BookingItemRow.booking_id) == booking_id,
                        col(BookingItemRow.supplier) == supplier,
                    )
                )
            )
        if after is not None:
            after_created_at, after_booking_id = after
            query = query.where(
                or_(
                    created_at < after_created_at,
                    and_(created_at == after_created_at, booking_id < after_booking_id),
                )
            )
        query = query.order_by(created_at.desc(), booking_id.desc()).limit(limit + 1)
        with self._session() as session:
            bookings = list(session.exec(query).all())
            page, more = bookings[:limit], len(bookings) > limit
            suppliers = self._suppliers(session, [booking.booking_id for booking in page])
        summaries = [
            _summary(booking, suppliers.get(booking.booking_id, ()), self._cipher)
            for booking in page
        ]
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].booking_id) if more else None
        return summaries, next_cursor

    # --- small pieces ----------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._reader) as session:
            yield session

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which has ON CONFLICT on both PostgreSQL and SQLite."""
        if self._is_postgres:
            return postgresql.insert(table)
        return sqlite.insert(table)

    @staticmethod
    def _event_rows(session: Session, booking_id: str) -> Sequence[BookingEventRow]:
        return session.exec(
            sqlmodel_select(BookingEventRow)
            .where(BookingEventRow.booking_id == booking_id)
            .order_by(col(BookingEventRow.seq))
        ).all()

    @staticmethod
    def _suppliers(session: Session, booking_ids: list[str]) -> dict[str, tuple[str, ...]]:
        if not booking_ids:
            return {}
        items = session.exec(
            sqlmodel_select(BookingItemRow)
            .where(col(BookingItemRow.booking_id).in_(booking_ids))
            .order_by(col(BookingItemRow.booking_id), col(BookingItemRow.position))
        ).all()
        suppliers: dict[str, tuple[str, ...]] = {}
        for item in items:
            seen = suppliers.get(item.booking_id, ())
            if item.supplier is not None and item.supplier not in seen:
                suppliers[item.booking_id] = (*seen, item.supplier)
        return suppliers


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


# --- snapshot -> rows ----------------------------------------------------------------------------


def _booking_row(
    request: BookingRequest, view: BookingView, now: datetime, committed: int | None
) -> BookingRow:
    """The booking row without its customer fields (`SqlBookingStore` seals them)."""
    minor = _minor_units(view.currency)
    payment = view.payment
    pending = [
        dataclasses.asdict(entry)
        for entry in view.timeline
        if committed is not None and entry.seq > committed
    ]
    return BookingRow(
        booking_id=view.booking_id,
        version=view.version,
        status=view.status.value,
        step=view.step,
        currency=view.currency,
        expected_total_minor=minor(view.expected_total),
        quoted_total_minor=None if view.quoted_total is None else minor(view.quoted_total),
        payment_status=payment.status.value,
        fees_absorbed_minor=_optional_minor(minor, payment.fees_absorbed),
        error_type=None if view.error is None else view.error.type,
        error_message=None if view.error is None else view.error.message,
        attention_step=None if view.attention is None else view.attention.step,
        attention_reason=None if view.attention is None else view.attention.reason,
        attention_since=None if view.attention is None else view.attention.since,
        attention_item_id=None if view.attention is None else view.attention.item_id,
        customer_ref=view.customer_ref,
        customer_ciphertext="",
        customer_email_hash="",
        access_token_hash=request.access_token_hash,
        created_at=(
            _parse_timestamp(view.created_at)
            or _parse_timestamp(request.created_at)
            or _parse_timestamp(view.updated_at)
            or now
        ),
        created_at_text=view.created_at,
        updated_at_text=view.updated_at,
        recorded_at=now,
        pending_timeline=json.dumps(pending) if pending else None,
    )


def _item_rows(request: BookingRequest, view: BookingView) -> list[BookingItemRow]:
    minor = _minor_units(view.currency)
    expected = {item.item_id: minor(item.expected_price) for item in request.items}
    rows = []
    for position, item in enumerate(view.items):
        terms = item.cancellation
        rows.append(
            BookingItemRow(
                booking_id=view.booking_id,
                item_id=item.item_id,
                position=position,
                offer_id=item.offer_id,
                quantity=item.quantity,
                optional=item.optional,
                status=item.status.value,
                price_minor=minor(item.price),
                expected_price_minor=expected.get(item.item_id),
                held_price_minor=_optional_minor(minor, item.held_price),
                kind=None if item.kind is None else item.kind.value,
                supplier=item.supplier,
                hold_ref=item.hold_ref,
                hold_expires_at=item.hold_expires_at,
                supplier_ref=item.supplier_ref,
                confirmation_code=item.confirmation_code,
                cancellation_refundable=None if terms is None else terms.refundable,
                cancellation_free_until=None if terms is None else terms.free_until,
                cancellation_fee_bps=None if terms is None else terms.fee_bps,
                cancellation_cancellable=None if terms is None else terms.cancellable,
                cancellation_fee_minor=_optional_minor(minor, item.cancellation_fee),
                error_type=None if item.error is None else item.error.type,
                error_message=None if item.error is None else item.error.message,
            )
        )
    return rows


def _traveller_rows(request: BookingRequest, cipher: FieldCipher) -> list[TravellerRow]:
    return [
        TravellerRow(
            booking_id=request.booking_id,
            position=position,
            traveller_ciphertext=seal_traveller(
                cipher,
                request.booking_id,
                position,
                TravellerRecord(
                    first_name=traveller.first_name,
                    last_name=traveller.last_name,
                    birth_date=traveller.birth_date,
                    document_hint=_document_hint(traveller),
                ),
            ),
        )
        for position, traveller in enumerate(request.travellers)
    ]


# --- personal data at rest -----------------------------------------------------------------------
# The stored form of the personal fields: JSON inside, bound to the booking (and the traveller's
# position). Migration 0004 writes existing rows with these same functions; changing the form
# needs a migration of its own.


def seal_customer(cipher: FieldCipher, booking_id: str, email: str, name: str) -> str:
    """`bookings.customer_ciphertext` of a booking."""
    plaintext = json.dumps({"email": email, "name": name}, separators=(",", ":"))
    return cipher.seal(plaintext, f"bookings.customer:{booking_id}")


def open_customer(cipher: FieldCipher, booking_id: str, sealed: str) -> tuple[str, str]:
    """The (e-mail, name) that `seal_customer` sealed for this booking."""
    customer = json.loads(cipher.open(sealed, f"bookings.customer:{booking_id}"))
    return customer["email"], customer["name"]


def seal_traveller(
    cipher: FieldCipher, booking_id: str, position: int, traveller: TravellerRecord
) -> str:
    """`booking_travellers.traveller_ciphertext` of the booking's traveller at `position`."""
    fields = {
        "first_name": traveller.first_name,
        "last_name": traveller.last_name,
        "birth_date": traveller.birth_date,
        "document_hint": traveller.document_hint,
    }
    plaintext = json.dumps(fields, separators=(",", ":"))
    return cipher.seal(plaintext, f"booking_travellers:{booking_id}:{position}")


def open_traveller(
    cipher: FieldCipher, booking_id: str, position: int, sealed: str
) -> TravellerRecord:
    """The traveller that `seal_traveller` sealed for this booking and position."""
    plaintext = cipher.open(sealed, f"booking_travellers:{booking_id}:{position}")
    return TravellerRecord(**json.loads(plaintext))


def _document_hint(traveller: Traveller) -> str:
    """At most the last four characters of the document number, and never more than half of it."""
    number = "".join(traveller.document_number.split())
    keep = min(4, len(number) // 2)
    return number[-keep:] if keep else ""


def _payment_rows(view: BookingView, now: datetime) -> list[PaymentRow]:
    minor = _minor_units(view.currency)
    payment = view.payment
    rows = []
    authorized, captured = minor(payment.authorized), minor(payment.captured)
    for kind, amount, present in (
        ("authorization", authorized, payment.payment_intent_id is not None or authorized != 0),
        ("capture", captured, captured != 0),
    ):
        if present:
            rows.append(
                PaymentRow(
                    booking_id=view.booking_id,
                    kind=kind,
                    amount_minor=amount,
                    currency=view.currency,
                    payment_intent_id=payment.payment_intent_id,
                    recorded_at=now,
                )
            )
    return rows


def _refund_rows(view: BookingView, now: datetime) -> list[RefundRow]:
    minor = _minor_units(view.currency)
    refunded, fees_kept = minor(view.payment.refunded), minor(view.payment.fees_kept)
    if refunded == 0 and fees_kept == 0:
        return []
    cancelled = any(item.cancellation_fee is not None for item in view.items)
    return [
        RefundRow(
            booking_id=view.booking_id,
            reason="cancellation" if cancelled else "compensation",
            amount_minor=refunded,
            fee_minor=fees_kept,
            currency=view.currency,
            recorded_at=now,
        )
    ]


def _event_row(booking_id: str, entry: TimelineEntry, now: datetime) -> BookingEventRow:
    return BookingEventRow(
        booking_id=booking_id,
        seq=entry.seq,
        at=_parse_timestamp(entry.at),
        at_text=entry.at,
        step=entry.step,
        outcome=entry.outcome,
        detail=entry.detail,
        actor=entry.actor,
        recorded_at=now,
    )


def _minor_units(currency: str) -> Callable[[Money], int]:
    """Amount in minor units of `currency`; refuses a second currency in one booking."""

    def minor(money: Money) -> int:
        if money.currency != currency:
            raise LedgerError(f"booking in {currency} carries an amount in {money.currency}")
        return money.amount_minor

    return minor


def _optional_minor(minor: Callable[[Money], int], money: Money | None) -> int | None:
    return None if money is None else minor(money)


def _parse_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- rows -> view --------------------------------------------------------------------------------


def _view(
    booking: BookingRow,
    items: Sequence[BookingItemRow],
    payments: Sequence[PaymentRow],
    refunds: Sequence[RefundRow],
    events: Sequence[BookingEventRow],
) -> BookingView:
    currency = booking.currency
    by_kind = {payment.kind: payment for payment in payments}
    authorization, capture = by_kind.get("authorization"), by_kind.get("capture")
    return BookingView(
        booking_id=booking.booking_id,
        status=BookingStatus(booking.status),
        step=booking.step,
        currency=currency,
        expected_total=Money(booking.expected_total_minor, currency),
        quoted_total=_optional_money(booking.quoted_total_minor, currency),
        items=tuple(_item_view(item, currency) for item in items),
        payment=PaymentView(
            status=PaymentStatus(booking.payment_status),
            authorized=Money(0 if authorization is None else authorization.amount_minor, currency),
            captured=Money(0 if capture is None else capture.amount_minor, currency),
            refunded=Money(sum(refund.amount_minor for refund in refunds), currency),
            fees_kept=Money(sum(refund.fee_minor for refund in refunds), currency),
            payment_intent_id=None if authorization is None else authorization.payment_intent_id,
            fees_absorbed=_optional_money(booking.fees_absorbed_minor, currency),
        ),
        timeline=_timeline(booking, events),
        error=(
            None
            if booking.error_type is None
            else BookingError(booking.error_type, booking.error_message or "")
        ),
        attention=_attention(booking),
        version=booking.version,
        updated_at=booking.updated_at_text,
        created_at=booking.created_at_text,
        customer_ref=booking.customer_ref,
    )


def _item_view(item: BookingItemRow, currency: str) -> ItemView:
    terms = None
    if item.cancellation_refundable is not None:
        terms = CancellationTerms(
            refundable=item.cancellation_refundable,
            free_until=item.cancellation_free_until,
            fee_bps=item.cancellation_fee_bps or 0,
            cancellable=bool(item.cancellation_cancellable),
        )
    return ItemView(
        item_id=item.item_id,
        offer_id=item.offer_id,
        quantity=item.quantity,
        optional=item.optional,
        status=ItemStatus(item.status),
        price=Money(item.price_minor, currency),
        kind=None if item.kind is None else ItemKind(item.kind),
        supplier=item.supplier,
        hold_ref=item.hold_ref,
        hold_expires_at=item.hold_expires_at,
        supplier_ref=item.supplier_ref,
        confirmation_code=item.confirmation_code,
        cancellation=terms,
        cancellation_fee=_optional_money(item.cancellation_fee_minor, currency),
        error=(
            None
            if item.error_type is None
            else BookingError(item.error_type, item.error_message or "")
        ),
        held_price=_optional_money(item.held_price_minor, currency),
    )


def _optional_money(amount_minor: int | None, currency: str) -> Money | None:
    return None if amount_minor is None else Money(amount_minor, currency)


def _attention(booking: BookingRow) -> AttentionView | None:
    if booking.attention_step is None:
        return None
    return AttentionView(
        step=booking.attention_step,
        reason=booking.attention_reason or "",
        since=booking.attention_since or "",
        item_id=booking.attention_item_id,
    )


def _timeline(booking: BookingRow, events: Sequence[BookingEventRow]) -> tuple[TimelineEntry, ...]:
    """The audit trail, then the entries still pending on the booking row."""
    recorded = tuple(_timeline_entry(event) for event in events)
    last = recorded[-1].seq if recorded else 0
    pending = json.loads(booking.pending_timeline) if booking.pending_timeline else []
    return recorded + tuple(TimelineEntry(**entry) for entry in pending if entry["seq"] > last)


def _timeline_entry(row: BookingEventRow) -> TimelineEntry:
    return TimelineEntry(
        seq=row.seq,
        at=row.at_text,
        step=row.step,
        outcome=row.outcome,
        detail=row.detail,
        actor=row.actor,
    )


def _summary(
    booking: BookingRow, suppliers: tuple[str, ...], cipher: FieldCipher
) -> BookingSummary:
    total = booking.quoted_total_minor
    if total is None:
        total = booking.expected_total_minor
    email, name = open_customer(cipher, booking.booking_id, booking.customer_ciphertext)
    return BookingSummary(
        booking_id=booking.booking_id,
        status=BookingStatus(booking.status),
        step=booking.step,
        customer_email=email,
        customer_name=name,
        total=Money(total, booking.currency),
        suppliers=suppliers,
        created_at=booking.created_at_text,
        updated_at=booking.updated_at_text,
        attention=_attention(booking),
    )


# --- cursor --------------------------------------------------------------------------------------


def _encode_cursor(created_at: datetime, booking_id: str) -> str:
    """Opaque to clients: the sort key of the last booking of the page, base64url of JSON."""
    payload = json.dumps([created_at.astimezone(UTC).isoformat(), booking_id])
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, booking_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as error:
        raise InvalidCursor("invalid cursor") from error
    if parsed.tzinfo is None or not isinstance(booking_id, str):
        raise InvalidCursor("invalid cursor")
    return parsed, booking_id
