"""The booking ledger on PostgreSQL and SQLite: exact round trips, idempotent and concurrent writes,
the audit trail, webhook dedupe, staff search, and no personal data in clear (encrypted at rest,
read decrypted by staff, searched by a keyed hash of the e-mail, old rows migrated)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, MetaData, String, select, text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_rows import LedgerError
from activities.adapters.sql_store import SqlBookingStore
from activities.ports import (
    MAX_PAGE_SIZE,
    BookingSummary,
    InvalidCursor,
    PersonalData,
    StaffSearch,
    StoredBooking,
    TravellerRecord,
)
from activities.records import RecordActivities
from passage import migrate
from passage.codec import LedgerCipher, key_id, new_key
from tests.support.ledger_data import (
    CURRENCY,
    FLIGHT,
    HOTEL,
    Ending,
    booking_lifecycle,
)
from workflows.contracts import RecordBookingInput
from workflows.model import BookingRequest, BookingStatus, Money, PaymentStatus
from workflows.state import initial_view

DAY_ONE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FACT_TABLES = ("bookings", "booking_items", "booking_travellers", "payments", "refunds")


def row_counts(engine: Engine, booking_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE booking_id = :id"), {"id": booking_id}
            ).scalar_one()
            for table in (*FACT_TABLES, "booking_events")
        }


async def record_all(store: SqlBookingStore, snapshots: list[RecordBookingInput]) -> None:
    for snapshot in snapshots:
        await store.record(snapshot)


# --- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["confirmed", "cancelled", "compensated", "needs_attention"])
async def test_every_snapshot_round_trips_to_the_exact_view(
    store: SqlBookingStore, ending: Ending
) -> None:
    snapshots = booking_lifecycle(f"bk_{ending}", created_at=DAY_ONE, ending=ending)

    for snapshot in snapshots:
        await store.record(snapshot)
        assert await store.get_view(snapshot.view.booking_id) == snapshot.view


async def test_held_price_fees_absorbed_and_the_attention_item_round_trip(
    store: SqlBookingStore,
) -> None:
    snapshot = booking_lifecycle("bk_held", created_at=DAY_ONE, ending="needs_attention")[-1]
    view = snapshot.view
    assert view.attention is not None
    first, *others = view.items
    interrupted = dataclasses.replace(
        view,
        items=(dataclasses.replace(first, held_price=Money(61_500, CURRENCY)), *others),
        payment=dataclasses.replace(view.payment, fees_absorbed=Money(6_000, CURRENCY)),
        attention=dataclasses.replace(view.attention, item_id="it_3"),
    )

    await store.record(dataclasses.replace(snapshot, view=interrupted))

    assert await store.get_view("bk_held") == interrupted
    [summary], _ = await store.search(StaffSearch())
    assert summary.attention == interrupted.attention


async def test_unknown_booking_reads_as_absent(store: SqlBookingStore) -> None:
    assert await store.get_view("bk_nope") is None
    assert await store.get_access_token_hash("bk_nope") is None
    assert await store.events("bk_nope") == ()


async def test_access_token_is_stored_as_the_hash_it_arrives_as(store: SqlBookingStore) -> None:
    snapshot = booking_lifecycle("bk_token", created_at=DAY_ONE)[0]
    await store.record(snapshot)

    assert await store.get_access_token_hash("bk_token") == snapshot.request.access_token_hash


async def test_the_3ds_client_secret_never_reaches_the_ledger(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshot = booking_lifecycle("bk_3ds", created_at=DAY_ONE)[-1]
    payment = dataclasses.replace(snapshot.view.payment, client_secret="pi_3ds_secret_Zq9")
    await store.record(
        dataclasses.replace(snapshot, view=dataclasses.replace(snapshot.view, payment=payment))
    )

    assert await store.get_view("bk_3ds") == snapshot.view
    assert "pi_3ds_secret_Zq9" not in all_text_values(ledger_engine)


async def test_money_rows_follow_the_documented_mapping(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    await record_all(store, booking_lifecycle("bk_paid", created_at=DAY_ONE, ending="cancelled"))
    await record_all(store, booking_lifecycle("bk_void", created_at=DAY_ONE, ending="compensated"))
    with ledger_engine.connect() as connection:
        payments = connection.execute(
            text("SELECT booking_id, kind, amount_minor FROM payments ORDER BY booking_id, kind")
        ).all()
        refunds = connection.execute(
            text("SELECT booking_id, reason, amount_minor, fee_minor FROM refunds")
        ).all()

    total = (FLIGHT + HOTEL).amount_minor
    flight_fee = FLIGHT.amount_minor // 10  # 10 % after the free period; the hotel is still free
    assert [tuple(row) for row in payments] == [
        ("bk_paid", "authorization", total),
        ("bk_paid", "capture", total),
    ]
    assert [tuple(row) for row in refunds] == [
        ("bk_paid", "cancellation", total - flight_fee, flight_fee)
    ]
    view = await store.get_view("bk_paid")
    assert view is not None
    assert view.payment.refunded == Money(total - flight_fee, CURRENCY)
    assert view.payment.status == PaymentStatus.PARTIALLY_REFUNDED


async def test_a_snapshot_in_two_currencies_is_refused(store: SqlBookingStore) -> None:
    snapshot = booking_lifecycle("bk_fx", created_at=DAY_ONE)[-1]
    view = dataclasses.replace(snapshot.view, expected_total=Money(100, "USD"))

    with pytest.raises(LedgerError):
        await store.record(dataclasses.replace(snapshot, view=view))
    assert await store.get_view("bk_fx") is None


# --- idempotence and ordering --------------------------------------------------------------------


async def test_the_same_snapshot_five_times_leaves_one_row_per_fact(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshot = booking_lifecycle("bk_five", created_at=DAY_ONE, ending="cancelled")[-1]

    for _ in range(5):
        await store.record(snapshot)

    assert row_counts(ledger_engine, "bk_five") == {
        "bookings": 1,
        "booking_items": 3,
        "booking_travellers": 2,
        "payments": 2,
        "refunds": 1,
        "booking_events": len(snapshot.view.timeline),
    }
    assert await store.get_view("bk_five") == snapshot.view


async def test_an_older_version_arriving_late_never_overwrites_a_newer_one(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshots = booking_lifecycle("bk_late", created_at=DAY_ONE, ending="cancelled")
    newest, older = snapshots[-1], snapshots[3]

    await store.record(newest)
    await store.record(older)

    assert await store.get_view("bk_late") == newest.view
    assert row_counts(ledger_engine, "bk_late")["payments"] == 2


async def test_the_apis_first_row_yields_to_every_write_of_the_workflow(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    first, *later = booking_lifecycle("bk_first_row", created_at=DAY_ONE, ending="confirmed")
    request = first.request
    started = RecordBookingInput(request, initial_view(request))

    # The API's row, written as it starts the workflow: the memo's view, read by the token.
    assert await store.record_if_absent(started) is True
    assert await store.read("bk_first_row") == StoredBooking(
        started.view, request.access_token_hash
    )
    assert await store.record_if_absent(started) is False

    # The workflow's first write lands everything, as if the API had written nothing.
    await store.record(first)
    assert await store.get_view("bk_first_row") == first.view
    assert row_counts(ledger_engine, "bk_first_row") == {
        "bookings": 1,
        "booking_items": 3,
        "booking_travellers": 2,
        "payments": 0,
        "refunds": 0,
        "booking_events": len(first.view.timeline),
    }
    assert await store.personal_data("bk_first_row") == PersonalData(
        customer_email=request.customer_email,
        customer_name=request.customer_name,
        travellers=tuple(
            TravellerRecord(t.first_name, t.last_name, t.birth_date, t.document_number[-4:])
            for t in request.travellers
        ),
    )
    await record_all(store, later)
    assert await store.get_view("bk_first_row") == later[-1].view


async def test_the_apis_first_row_never_overwrites_what_the_workflow_wrote(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshots = booking_lifecycle("bk_raced", created_at=DAY_ONE, ending="cancelled")
    request = snapshots[0].request
    await record_all(store, snapshots)
    counts = row_counts(ledger_engine, "bk_raced")

    assert await store.record_if_absent(RecordBookingInput(request, initial_view(request))) is False

    assert await store.get_view("bk_raced") == snapshots[-1].view
    assert row_counts(ledger_engine, "bk_raced") == counts


async def test_snapshots_in_any_order_and_repeated_end_at_the_newest(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshots = booking_lifecycle("bk_shuffle", created_at=DAY_ONE, ending="cancelled")
    shuffled = snapshots * 2
    random.Random(4).shuffle(shuffled)

    await record_all(store, shuffled)

    assert await store.get_view("bk_shuffle") == snapshots[-1].view
    assert row_counts(ledger_engine, "bk_shuffle")["booking_events"] == len(
        snapshots[-1].view.timeline
    )


async def test_events_are_the_audit_trail_with_staff_actions(store: SqlBookingStore) -> None:
    snapshots = booking_lifecycle("bk_audit", created_at=DAY_ONE, ending="cancelled")
    await record_all(store, snapshots[::-1])

    events = await store.events("bk_audit")

    assert events == snapshots[-1].view.timeline
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    staff = [event for event in events if event.actor is not None]
    assert [(event.actor, event.step, event.detail) for event in staff] == [
        ("staff:grace", "CANCEL", "customer called: flight moved")
    ]


async def test_concurrent_bookings_all_land_exactly_once(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    endings: list[Ending] = ["confirmed", "cancelled", "compensated", "needs_attention"]
    stories = {
        f"bk_conc_{n:02d}": booking_lifecycle(
            f"bk_conc_{n:02d}", created_at=DAY_ONE + timedelta(minutes=n), ending=endings[n % 4]
        )
        for n in range(20)
    }
    # Every snapshot twice, all at once, in random order: retries racing the originals.
    writes = [snapshot for snapshots in stories.values() for snapshot in snapshots * 2]
    random.Random(7).shuffle(writes)

    await asyncio.gather(*(store.record(snapshot) for snapshot in writes))

    for booking_id, snapshots in stories.items():
        assert await store.get_view(booking_id) == snapshots[-1].view
        counts = row_counts(ledger_engine, booking_id)
        assert counts["bookings"] == 1
        assert counts["booking_events"] == len(snapshots[-1].view.timeline)


async def test_a_webhook_event_is_processed_once_even_when_delivered_concurrently(
    store: SqlBookingStore,
) -> None:
    firsts = await asyncio.gather(
        *(store.mark_webhook_event_processed("evt_3DS_ok") for _ in range(12))
    )

    assert sorted(firsts) == [False] * 11 + [True]
    assert await store.mark_webhook_event_processed("evt_other") is True
    assert await store.mark_webhook_event_processed("evt_3DS_ok") is False


# --- staff search --------------------------------------------------------------------------------


@pytest.fixture
async def searchable(store: SqlBookingStore) -> SqlBookingStore:
    """Twelve bookings over six days, three of them created in the very same microsecond."""
    plan: list[tuple[str, int, str, Ending, str]] = [
        # (booking_id, day, email, ending, hotel supplier)
        ("bk_s01", 0, "ada@example.com", "confirmed", "grandhotel"),
        ("bk_s02", 0, "grace@example.com", "cancelled", "grandhotel"),
        ("bk_s03", 1, "Ada@Example.com", "compensated", "seaview"),
        ("bk_s04", 1, "alan@example.com", "needs_attention", "grandhotel"),
        ("bk_s05", 2, "ada@example.com", "confirmed", "seaview"),
        ("bk_s06", 2, "grace@example.com", "confirmed", "grandhotel"),
        ("bk_s07", 3, "alan@example.com", "confirmed", "seaview"),
        ("bk_s08", 3, "ada@example.com", "cancelled", "grandhotel"),
        ("bk_s09", 4, "grace@example.com", "needs_attention", "seaview"),
        ("bk_s10", 5, "alan@example.com", "confirmed", "grandhotel"),
        ("bk_s11", 5, "alan@example.com", "confirmed", "grandhotel"),
        ("bk_s12", 5, "alan@example.com", "confirmed", "grandhotel"),
    ]
    same_instant = DAY_ONE + timedelta(days=5, hours=3)
    writes = []
    for booking_id, day, email, ending, hotel in plan:
        created_at = same_instant if day == 5 else DAY_ONE + timedelta(days=day, hours=day)
        snapshots = booking_lifecycle(
            booking_id,
            created_at=created_at,
            email=email,
            ending=ending,
            suppliers=("skyways", hotel, "harbourtours"),
        )
        writes += [snapshots[0], snapshots[-1]]  # search reads the newest state only
    random.Random(11).shuffle(writes)
    await record_all(store, writes)
    return store


async def search_all(store: SqlBookingStore, **filters: object) -> list[str]:
    summaries, cursor = await store.search(StaffSearch(**filters, limit=MAX_PAGE_SIZE))  # type: ignore[arg-type]
    assert cursor is None
    return [summary.booking_id for summary in summaries]


async def test_search_lists_newest_first_with_a_total_order(searchable: SqlBookingStore) -> None:
    ids = await search_all(searchable)

    assert ids == ["bk_s12", "bk_s11", "bk_s10"] + [f"bk_s{n:02d}" for n in range(9, 0, -1)]


async def test_search_by_status(searchable: SqlBookingStore) -> None:
    assert await search_all(searchable, status=BookingStatus.NEEDS_ATTENTION) == [
        "bk_s09",
        "bk_s04",
    ]
    assert await search_all(searchable, status="CANCELLED") == ["bk_s08", "bk_s02"]
    assert await search_all(searchable, status="AWAITING_PAYMENT_ACTION") == []


async def test_search_by_email_ignores_case(searchable: SqlBookingStore) -> None:
    expected = ["bk_s08", "bk_s05", "bk_s03", "bk_s01"]

    assert await search_all(searchable, email="ada@example.com") == expected
    assert await search_all(searchable, email="  ADA@EXAMPLE.COM ") == expected


async def test_search_by_date_range_is_half_open(searchable: SqlBookingStore) -> None:
    day_two_start = DAY_ONE.replace(hour=0) + timedelta(days=1)

    assert await search_all(
        searchable, created_from=day_two_start, created_to=day_two_start + timedelta(days=2)
    ) == ["bk_s06", "bk_s05", "bk_s04", "bk_s03"]
    exactly_s05 = DAY_ONE + timedelta(days=2, hours=2)
    assert await search_all(searchable, created_from=exactly_s05, created_to=exactly_s05) == []
    assert (await search_all(searchable, created_to=exactly_s05))[0] == "bk_s04"
    # A naive datetime is UTC; other offsets are converted.
    naive = exactly_s05.replace(tzinfo=None)
    paris = exactly_s05.astimezone(timezone(timedelta(hours=1)))
    assert await search_all(searchable, created_from=naive) == await search_all(
        searchable, created_from=paris
    )


async def test_search_by_supplier_and_combined_filters(searchable: SqlBookingStore) -> None:
    assert await search_all(searchable, supplier="seaview") == [
        "bk_s09",
        "bk_s07",
        "bk_s05",
        "bk_s03",
    ]
    assert await search_all(searchable, supplier="seaview", email="ADA@example.com") == [
        "bk_s05",
        "bk_s03",
    ]
    assert await search_all(searchable, supplier="seaview", status="CONFIRMED") == [
        "bk_s07",
        "bk_s05",
    ]
    assert await search_all(searchable, supplier="nobody-air") == []


async def test_summaries_carry_what_staff_pick_a_booking_by(searchable: SqlBookingStore) -> None:
    summaries, _ = await searchable.search(StaffSearch(status="NEEDS_ATTENTION", limit=1))
    summary = summaries[0]

    assert summary == BookingSummary(
        booking_id="bk_s09",
        status=BookingStatus.NEEDS_ATTENTION,
        step="CAPTURE",
        customer_email="grace@example.com",
        customer_name="Ada Lovelace",
        total=FLIGHT + HOTEL,
        suppliers=("skyways", "seaview", "harbourtours"),
        created_at=summary.created_at,
        updated_at=summary.updated_at,
        attention=summary.attention,
    )
    assert summary.attention is not None
    assert summary.attention.step == "CAPTURE"


@pytest.mark.parametrize("page_size", [1, 2, 5, 11, 12])
async def test_cursor_pagination_has_no_duplicates_or_gaps(
    searchable: SqlBookingStore, page_size: int
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        summaries, cursor = await searchable.search(StaffSearch(limit=page_size, cursor=cursor))
        pages += 1
        assert 0 < len(summaries) <= page_size
        seen += [summary.booking_id for summary in summaries]
        if cursor is None:
            break

    assert seen == await search_all(searchable)
    assert pages == -(-12 // page_size)


async def test_pagination_is_stable_while_new_bookings_arrive(
    searchable: SqlBookingStore,
) -> None:
    first, cursor = await searchable.search(StaffSearch(limit=4, status="CONFIRMED"))
    newer = booking_lifecycle("bk_s99", created_at=DAY_ONE + timedelta(days=30))
    await record_all(searchable, newer)
    second, cursor = await searchable.search(
        StaffSearch(limit=4, status="CONFIRMED", cursor=cursor)
    )

    assert [s.booking_id for s in first] == ["bk_s12", "bk_s11", "bk_s10", "bk_s07"]
    assert [s.booking_id for s in second] == ["bk_s06", "bk_s05", "bk_s01"]
    assert cursor is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "W10", "eyJhIjogMX0", "WyJ4IiwgMV0"])
async def test_a_cursor_the_store_did_not_issue_is_refused(
    store: SqlBookingStore, cursor: str
) -> None:
    with pytest.raises(InvalidCursor):
        await store.search(StaffSearch(cursor=cursor))


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1])
async def test_an_out_of_range_page_size_is_refused(store: SqlBookingStore, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.search(StaffSearch(limit=limit))


# --- personal data -------------------------------------------------------------------------------


def all_text_values(engine: Engine) -> str:
    """Every value of every text column of every table, joined: what a stolen dump would show."""
    values: list[str] = []
    metadata = MetaData()
    with engine.connect() as connection:
        metadata.reflect(connection)
        for table in metadata.sorted_tables:
            columns = [column for column in table.columns if isinstance(column.type, String)]
            for row in connection.execute(select(*columns)) if columns else []:
                values += [value for value in row if isinstance(value, str)]
    return "\n".join(values)


def personal_values(request: BookingRequest) -> set[str]:
    """Everything of a booking's request that identifies a person, as a dump could show it."""
    values = {request.customer_email, request.customer_email.lower(), request.customer_name}
    values |= set(request.customer_name.split())
    for traveller in request.travellers:
        number = traveller.document_number
        values |= {traveller.first_name, traveller.last_name, traveller.birth_date}
        values |= {number, number[1:], number[-4:]}  # nor without its letter, nor its hint
    return values


async def test_no_personal_data_appears_in_clear(
    store: SqlBookingStore, ledger_engine: Engine, ledger_key: str
) -> None:
    endings: list[Ending] = ["confirmed", "cancelled", "compensated", "needs_attention"]
    requests = []
    for ending in endings:
        snapshots = booking_lifecycle(f"bk_pii_{ending}", created_at=DAY_ONE, ending=ending)
        await record_all(store, snapshots)
        requests.append(snapshots[0].request)

    dump = all_text_values(ledger_engine)

    assert "bk_pii_confirmed" in dump and f"{key_id(ledger_key)}:" in dump  # it sees the rows
    assert row_counts(ledger_engine, "bk_pii_confirmed")["booking_travellers"] == 2
    for request in requests:
        for value in personal_values(request):
            assert value not in dump


async def test_staff_read_the_customer_and_travellers_decrypted(store: SqlBookingStore) -> None:
    snapshots = booking_lifecycle("bk_staff_read", created_at=DAY_ONE, email="Ada@Example.com")
    await record_all(store, snapshots)
    request = snapshots[0].request

    personal = await store.personal_data("bk_staff_read")

    assert personal == PersonalData(
        customer_email="Ada@Example.com",
        customer_name="Ada Lovelace",
        travellers=tuple(
            TravellerRecord(t.first_name, t.last_name, t.birth_date, t.document_number[-4:])
            for t in request.travellers
        ),
    )
    assert await store.personal_data("bk_never_recorded") is None
    summaries, _ = await store.search(StaffSearch(email="  ada@EXAMPLE.com "))
    assert [(s.booking_id, s.customer_email) for s in summaries] == [
        ("bk_staff_read", "Ada@Example.com")
    ]


async def test_the_ledger_needs_its_key_and_fields_do_not_move_between_bookings(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    for booking_id, email in (("bk_ada", "ada@example.com"), ("bk_alan", "alan@example.com")):
        await record_all(store, booking_lifecycle(booking_id, created_at=DAY_ONE, email=email))
    other_key = SqlBookingStore(ledger_engine, LedgerCipher(new_key()))

    # Another key finds no one by e-mail and opens nothing (its key id says so).
    assert (await other_key.search(StaffSearch(email="ada@example.com")))[0] == []
    with pytest.raises(ValueError, match="unknown key id"):
        await other_key.personal_data("bk_ada")
    # A field copied onto another booking's row does not open there either.
    with ledger_engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE bookings SET customer_ciphertext = "
                "(SELECT customer_ciphertext FROM bookings WHERE booking_id = 'bk_ada') "
                "WHERE booking_id = 'bk_alan'"
            )
        )
    with pytest.raises(ValueError, match="does not open"):
        await store.personal_data("bk_alan")
    assert (await store.personal_data("bk_ada")) is not None


class CountingCipher:
    """The real cipher, counting what the store asks of it."""

    def __init__(self, cipher: LedgerCipher) -> None:
        self._cipher = cipher
        self.sealed: list[str] = []

    def seal(self, plaintext: str, context: str) -> str:
        self.sealed.append(context.split(":")[0])
        return self._cipher.seal(plaintext, context)

    def open(self, sealed: str, context: str) -> str:
        return self._cipher.open(sealed, context)

    def email_hash(self, email: str) -> str:
        return self._cipher.email_hash(email)

    def email_hashes(self, email: str) -> tuple[str, ...]:
        return self._cipher.email_hashes(email)


async def test_a_booking_is_sealed_once_however_often_it_is_written(
    ledger_engine: Engine, ledger_cipher: LedgerCipher
) -> None:
    """The hot path: the customer is encrypted once per booking, the travellers once, not at
    every one of the booking's writes."""
    counting = CountingCipher(ledger_cipher)
    store = SqlBookingStore(ledger_engine, counting)
    lifecycle = booking_lifecycle("bk_sealed_once", created_at=DAY_ONE, ending="cancelled")
    assert len(lifecycle) > 5
    # As the workflow sends them: each write after the first says what the ledger holds.
    snapshots = [lifecycle[0]] + [
        dataclasses.replace(snapshot, recorded_through=previous.view.timeline[-1].seq)
        for previous, snapshot in itertools.pairwise(lifecycle)
    ]

    await record_all(store, [*snapshots, snapshots[-1]])

    assert sorted(counting.sealed) == ["booking_travellers"] * 2 + ["bookings.customer"]
    assert (await store.personal_data("bk_sealed_once")) is not None


# --- the activity --------------------------------------------------------------------------------


async def test_record_activity_writes_the_snapshot_and_is_safe_to_retry(
    store: SqlBookingStore,
) -> None:
    snapshots = booking_lifecycle("bk_activity", created_at=DAY_ONE, ending="cancelled")
    activities = RecordActivities(store)
    environment = ActivityEnvironment()

    for snapshot in [*snapshots, snapshots[2], snapshots[-1]]:
        await environment.run(activities.record_booking, snapshot)

    assert await store.get_view("bk_activity") == snapshots[-1].view


async def test_record_activity_fails_for_good_on_a_snapshot_it_cannot_record(
    store: SqlBookingStore,
) -> None:
    snapshot = booking_lifecycle("bk_bad", created_at=DAY_ONE)[-1]
    bad = dataclasses.replace(
        snapshot, view=dataclasses.replace(snapshot.view, quoted_total=Money(1, "GBP"))
    )

    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(RecordActivities(store).record_booking, bad)

    assert failure.value.non_retryable
    assert failure.value.type == "INVALID_REQUEST"


# --- writes from inside a workflow task (local activities) ---------------------------------------


def event_seqs(engine: Engine, booking_id: str) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT seq FROM booking_events WHERE booking_id = :id ORDER BY seq"),
            {"id": booking_id},
        )
        return [row[0] for row in rows]


async def test_entries_of_a_running_task_wait_apart_and_reads_show_them(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    snapshots = booking_lifecycle("bk_pending", created_at=DAY_ONE)
    first, newest = snapshots[1], snapshots[-1]
    committed = len(first.view.timeline) - 1

    await store.record(dataclasses.replace(first, committed_through=committed))

    # Only what completed tasks made is in the append-only trail; reads show the whole view.
    assert event_seqs(ledger_engine, "bk_pending") == list(range(1, committed + 1))
    assert await store.get_view("bk_pending") == first.view
    assert await store.events("bk_pending") == first.view.timeline

    # A later write, from the next task, moves them to the trail and holds its own apart.
    later = len(newest.view.timeline) - 2
    await store.record(
        dataclasses.replace(newest, recorded_through=committed, committed_through=later)
    )
    assert event_seqs(ledger_engine, "bk_pending") == list(range(1, later + 1))
    assert await store.get_view("bk_pending") == newest.view


async def test_a_task_run_again_replaces_the_entries_it_held_apart(
    store: SqlBookingStore, ledger_engine: Engine
) -> None:
    """A task that failed after its write is run again, maybe with a message first: same version,
    other entries. Its write wins, and the trail never got the entries of the failed run."""
    snapshot = booking_lifecycle("bk_rerun", created_at=DAY_ONE)[2]
    committed = len(snapshot.view.timeline) - 2
    failed_run = dataclasses.replace(snapshot, committed_through=committed)
    entries = list(snapshot.view.timeline)
    entries[committed] = dataclasses.replace(entries[committed], step="CANCEL", outcome="requested")
    rerun_view = dataclasses.replace(snapshot.view, timeline=tuple(entries))
    rerun = dataclasses.replace(failed_run, view=rerun_view)

    await store.record(failed_run)
    await store.record(rerun)

    assert await store.get_view("bk_rerun") == rerun_view
    assert event_seqs(ledger_engine, "bk_rerun") == list(range(1, committed + 1))


# --- rows written before the encryption (migration 0004) -----------------------------------------

#: A booking row and its travellers as revision 0003 stored them: personal data in clear.
_BEFORE_0004 = (
    """
    INSERT INTO bookings (booking_id, version, status, step, currency, expected_total_minor,
        payment_status, customer_ref, customer_email, customer_email_lower, customer_name,
        access_token_hash, created_at, created_at_text, updated_at_text, recorded_at)
    VALUES ('bk_before', 3, 'CONFIRMED', 'CONFIRMED', 'EUR', 60000, 'CAPTURED', 'cref_before',
        'Grace.Hopper@Example.com', 'grace.hopper@example.com', 'Grace Hopper', 'hash-before',
        :created_at, '2026-03-01T09:00:00+00:00', '2026-03-01T09:00:05+00:00', :created_at)
    """,
    """
    INSERT INTO booking_travellers (booking_id, position, first_name, last_name, birth_date,
        document_hint)
    VALUES ('bk_before', 0, 'Grace', 'Hopper', '1906-12-09', '7781'),
           ('bk_before', 1, 'Vincent', 'Foster', '1905-01-15', '')
    """,
    """
    INSERT INTO booking_events (booking_id, seq, at, at_text, step, outcome, detail, recorded_at)
    VALUES ('bk_before', 1, :created_at, '2026-03-01T09:00:00+00:00', 'RECEIVED', 'ok', '',
        :created_at)
    """,
)
_BEFORE_PERSONAL = PersonalData(
    customer_email="Grace.Hopper@Example.com",
    customer_name="Grace Hopper",
    travellers=(
        TravellerRecord("Grace", "Hopper", "1906-12-09", "7781"),
        TravellerRecord("Vincent", "Foster", "1905-01-15", ""),
    ),
)


def clear_rows(database_url: str) -> list[tuple[object, ...]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            customer = connection.execute(
                text("SELECT customer_email, customer_email_lower, customer_name FROM bookings")
            ).all()
            travellers = connection.execute(
                text(
                    "SELECT first_name, last_name, birth_date, document_hint "
                    "FROM booking_travellers ORDER BY position"
                )
            ).all()
        return [tuple(row) for row in (*customer, *travellers)]
    finally:
        engine.dispose()


async def test_a_row_written_before_the_encryption_is_readable_after_it(
    database_url: str, ledger_key: str
) -> None:
    migrate.upgrade(database_url, "0003")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for statement in _BEFORE_0004:
                connection.execute(text(statement), {"created_at": DAY_ONE})
        before = clear_rows(database_url)

        # The rows are there and need the key: refused without it, nothing changed.
        with pytest.raises(RuntimeError, match="PASSAGE_CODEC_KEY"):
            migrate.upgrade(database_url)
        assert migrate.current(database_url) == "0003"

        migrate.upgrade(database_url, ledger_key=ledger_key)

        assert migrate.current(database_url) == "0005"
        store = SqlBookingStore(engine, LedgerCipher(ledger_key))
        assert await store.personal_data("bk_before") == _BEFORE_PERSONAL
        summaries, _ = await store.search(StaffSearch(email="grace.hopper@EXAMPLE.com"))
        assert [(s.booking_id, s.customer_name) for s in summaries] == [
            ("bk_before", "Grace Hopper")
        ]
        view = await store.get_view("bk_before")
        assert view is not None and view.status == BookingStatus.CONFIRMED
        assert [entry.step for entry in view.timeline] == ["RECEIVED"]
        dump = all_text_values(engine)
        for value in ("Grace", "Hopper", "grace.hopper", "1906-12-09", "7781", "Vincent"):
            assert value not in dump

        # And back: the downgrade decrypts to the very same clear rows.
        migrate.downgrade(database_url, "0003", ledger_key=ledger_key)
        assert clear_rows(database_url) == before
    finally:
        engine.dispose()
