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

Before any of them, the API inserts the booking's first row as it starts the workflow (the memo's
initial view, version 0: `record_if_absent`), only where the ledger has none; the workflow's
first snapshot supersedes it by step 1 as it would an empty ledger.

Rows go in with executemany, so each statement is compiled once whatever the row count; how a
view becomes rows and back is `sql_rows`, the stored form of personal data `sql_personal_data`.

Personal data is sealed in the write's thread before the transaction: the customer's once per
booking (cached), the travellers only on the first write, some 10 microseconds of CPU each. Only
staff reads (`search`, `personal_data`) decrypt; the view the customer and the workflow read
carries no personal data and decrypts nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col
from sqlmodel import select as sqlmodel_select

from activities.adapters import sql_rows, sql_runs
from activities.adapters.sql_engine import for_writing
from activities.adapters.sql_ledger_totals import read_ledger_totals
from activities.adapters.sql_personal_data import (
    FieldCipher,
    open_customer,
    open_traveller,
    seal_customer,
)
from activities.adapters.tables import (
    BookingEventRow,
    BookingItemRow,
    BookingRow,
    PaymentRow,
    RefundRow,
    TravellerRow,
    WebhookEventRow,
)
from activities.ports import (
    BOOKING_CHANGED_CHANNEL,
    MAX_PAGE_SIZE,
    BookingSummary,
    InvalidCursor,
    LedgerTotals,
    PersonalData,
    StaffSearch,
    StoredBooking,
)
from workflows.contracts import BookingView, RecordBookingInput, TimelineEntry
from workflows.model import BookingRequest


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
        #: The write path's statements, built once (building them was a third of a write's CPU).
        self._statements: dict[tuple[Any, ...], Executable] = {}
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

    async def record_if_absent(self, snapshot: RecordBookingInput) -> bool:
        """Record a booking the ledger does not hold yet; never touch one it holds.

        The API writes the booking's first row as it starts the workflow (`snapshot` is the
        memo's initial view, version 0, no timeline), so a read of a booking no worker has run
        yet is answered here rather than by a workflow query. Insert-if-absent keeps the ledger
        the workflow's: whatever the workflow wrote first (it may win the race) stays, and its
        own first write (version 1 or more, `recorded_through` 0) supersedes this row through
        the version guard and writes its items, travellers and timeline exactly as when no row
        was there. The customer's sealed fields, written by the first insert only, are sealed
        from the same request the workflow carries. Generation 0 is right: reset rows reference
        the booking's row, so a booking without one has never been reset.

        Returns:
            True when this call inserted the booking, False when the ledger had it.
        """
        return await asyncio.to_thread(self._record_if_absent, snapshot)

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

        Marked only once its booking was signalled (api.service), so a mark means "done"
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

    async def search(self, query: StaffSearch) -> tuple[list[BookingSummary], str | None]:
        """Staff search, newest first, `limit` per page; pass the returned cursor for the next.

        `email` is matched by its keyed hash. The order (created_at, booking_id) is total, so
        pages never repeat or skip a booking even while new bookings arrive.

        Raises:
            InvalidCursor: the cursor was not issued by this store.
            ValueError: `limit` is outside 1..MAX_PAGE_SIZE.
        """
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        after = _decode_cursor(query.cursor) if query.cursor else None
        return await asyncio.to_thread(self._search, query, after)

    # --- synchronous work (runs in a thread) -----------------------------------------------------

    def _record(self, snapshot: RecordBookingInput, run_id: str | None) -> None:
        request, view = snapshot.request, snapshot.view
        now = datetime.now(UTC)
        customer = self._customer_fields(
            view.booking_id, request.customer_email, request.customer_name
        )
        # Encrypted before the transaction, so the database lock is not held for the cipher.
        travellers = (
            None if snapshot.recorded_through else sql_rows.traveller_rows(request, self._cipher)
        )
        with self._writer.begin() as conn:
            run = sql_runs.run_timeline(conn, snapshot, run_id, lock=self._is_postgres, now=now)
            if run is None:  # a run that a reset superseded: it no longer speaks for the booking
                return
            snapshot = run.translate(snapshot)
            recorded, committed = snapshot.recorded_through, snapshot.committed_through
            view = snapshot.view
            booking = sql_rows.booking_row(request, view, now, committed)
            booking.customer_ciphertext, booking.customer_email_hash = customer
            booking.run_generation = run.generation
            if self._upsert_booking(conn, booking):
                self._replace_facts(conn, request, view, travellers, now)
            self._append_events(conn, view, recorded, committed, now)
            self._notify(conn, view.booking_id)

    def _record_if_absent(self, snapshot: RecordBookingInput) -> bool:
        request, view = snapshot.request, snapshot.view
        now = datetime.now(UTC)
        customer = self._customer_fields(
            view.booking_id, request.customer_email, request.customer_name
        )
        travellers = sql_rows.traveller_rows(request, self._cipher)
        booking = sql_rows.booking_row(request, view, now, None)
        booking.customer_ciphertext, booking.customer_email_hash = customer
        with self._writer.begin() as conn:
            if not self._insert_booking(conn, booking):
                return False
            self._replace_facts(conn, request, view, travellers, now)
            self._append_events(conn, view, 0, None, now)
            self._notify(conn, booking.booking_id)
        return True

    def _replace_facts(
        self,
        conn: Connection,
        request: BookingRequest,
        view: BookingView,
        travellers: Sequence[TravellerRow] | None,
        now: datetime,
    ) -> None:
        """Make the booking's items, payments, refunds (and travellers, unless None) the view's."""
        booking_id = view.booking_id
        self._replace(
            conn, BookingItemRow, "item_id", booking_id, sql_rows.item_rows(request, view)
        )
        if travellers is not None:
            self._replace(conn, TravellerRow, "position", booking_id, travellers)
        self._replace(conn, PaymentRow, "kind", booking_id, sql_rows.payment_rows(view, now))
        self._replace(conn, RefundRow, "reason", booking_id, sql_rows.refund_rows(view, now))

    def _notify(self, conn: Connection, booking_id: str) -> None:
        """Tell the API's event streams at commit (PostgreSQL; to listeners only: nearly free)."""
        if self._is_postgres:
            conn.execute(
                text("SELECT pg_notify(:channel, :booking_id)"),
                {"channel": BOOKING_CHANGED_CHANNEL, "booking_id": booking_id},
            )

    def _seal_customer_fields(self, booking_id: str, email: str, name: str) -> tuple[str, str]:
        """The booking row's `customer_ciphertext` and `customer_email_hash`."""
        return seal_customer(self._cipher, booking_id, email, name), self._cipher.email_hash(email)

    def _statement(self, key: tuple[Any, ...], build: Callable[[], Executable]) -> Executable:
        """`build()`'s statement, built once per key (values go in as execute parameters)."""
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = build()
        return statement

    def _upsert_booking(self, conn: Connection, row: BookingRow) -> bool:
        """Insert or update the booking if this version is newer; True when it was written."""
        values = row.model_dump()
        upsert = self._statement(
            ("upsert booking", *values), lambda: self._booking_upsert(tuple(values))
        )
        return conn.execute(upsert, values).first() is not None

    def _booking_upsert(self, names: tuple[str, ...]) -> Executable:
        table = _table(BookingRow)
        insert = self._insert(table)
        # The customer never changes: their sealed fields are written by the first insert only.
        immutable = {
            "booking_id",
            "created_at",
            "created_at_text",
            "customer_ciphertext",
            "customer_email_hash",
        }
        return insert.on_conflict_do_update(
            index_elements=[table.c.booking_id],
            set_={name: insert.excluded[name] for name in names if name not in immutable},
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

    def _insert_booking(self, conn: Connection, row: BookingRow) -> bool:
        """Insert the booking unless the ledger has it (whoever wrote it); True when inserted."""
        table = _table(BookingRow)
        insert = (
            self._insert(table)
            .values(row.model_dump())
            .on_conflict_do_nothing(index_elements=[table.c.booking_id])
            .returning(table.c.booking_id)
        )
        return conn.execute(insert).first() is not None

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
            names = tuple(values[0])
            upsert = self._statement(
                ("upsert", table.name, key, *names), lambda: self._row_upsert(table, key, names)
            )
            conn.execute(upsert, values)
        prune = self._statement(
            ("prune", table.name, key),
            lambda: delete(table).where(
                table.c.booking_id == bindparam("of_booking"),
                table.c[key].not_in(bindparam("kept", expanding=True)),
            ),
        )
        conn.execute(prune, {"of_booking": booking_id, "kept": [value[key] for value in values]})

    def _row_upsert(self, table: Table, key: str, names: tuple[str, ...]) -> Executable:
        insert = self._insert(table)
        primary_key = {"booking_id", key}
        return insert.on_conflict_do_update(
            index_elements=[table.c.booking_id, table.c[key]],
            set_={name: insert.excluded[name] for name in names if name not in primary_key},
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
        values = [sql_rows.event_row(view.booking_id, entry, now).model_dump() for entry in entries]
        insert = self._statement(
            ("append events", *values[0]),
            lambda: self._insert(table).on_conflict_do_nothing(
                index_elements=[table.c.booking_id, table.c.seq]
            ),
        )
        conn.execute(insert, values)

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
        view = sql_rows.booking_view(booking, items, payments, refunds, events)
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
            return sql_rows.booking_timeline(booking, self._event_rows(session, booking_id))

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
        self, query: StaffSearch, after: tuple[datetime, str] | None
    ) -> tuple[list[BookingSummary], str | None]:
        created_at, booking_id = col(BookingRow.created_at), col(BookingRow.booking_id)
        statement = sqlmodel_select(BookingRow)
        if query.status is not None:
            statement = statement.where(BookingRow.status == str(query.status))
        if query.email is not None:
            # Under every readable key: bookings recorded before a key rotation keep their hash.
            hashes = self._cipher.email_hashes(query.email)
            statement = statement.where(col(BookingRow.customer_email_hash).in_(hashes))
        if query.created_from is not None:
            statement = statement.where(created_at >= query.created_from)
        if query.created_to is not None:
            statement = statement.where(created_at < query.created_to)
        if query.supplier is not None:
            statement = statement.where(
                exists(
                    select(col(BookingItemRow.booking_id)).where(
                        col(BookingItemRow.booking_id) == booking_id,
                        col(BookingItemRow.supplier) == query.supplier,
                    )
                )
            )
        if after is not None:
            after_created_at, after_booking_id = after
            statement = statement.where(
                or_(
                    created_at < after_created_at,
                    and_(created_at == after_created_at, booking_id < after_booking_id),
                )
            )
        statement = statement.order_by(created_at.desc(), booking_id.desc()).limit(query.limit + 1)
        with self._session() as session:
            bookings = list(session.exec(statement).all())
            page, more = bookings[: query.limit], len(bookings) > query.limit
            suppliers = self._suppliers(session, [booking.booking_id for booking in page])
        summaries = [
            sql_rows.booking_summary(booking, suppliers.get(booking.booking_id, ()), self._cipher)
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
