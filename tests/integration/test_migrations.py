"""The ledger's Alembic migrations on PostgreSQL and SQLite: build, match the models, undo, redo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import activities.adapters.tables  # noqa: F401  (the models the migrations must build)
from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage import migrate
from passage.codec import LedgerCipher
from tests.support.ledger_data import booking_lifecycle

LEDGER_TABLES = {
    "bookings",
    "booking_items",
    "booking_travellers",
    "payments",
    "refunds",
    "booking_events",
    "processed_webhook_events",
    "booking_resets",
}
HEAD = "0005"
#: The columns 0002 adds to 0001's tables.
INTERRUPTION_COLUMNS = {
    ("bookings", "fees_absorbed_minor"),
    ("bookings", "attention_item_id"),
    ("booking_items", "held_price_minor"),
}


def tables_of(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def columns_of(database_url: str, tables: set[str]) -> set[tuple[str, str]]:
    engine = make_engine(database_url)
    try:
        inspector = inspect(engine)
        return {
            (table, column["name"]) for table in tables for column in inspector.get_columns(table)
        }
    finally:
        engine.dispose()


def test_upgrade_head_on_an_empty_database_builds_every_table(database_url: str) -> None:
    assert migrate.current(database_url) is None

    migrate.upgrade(database_url)

    assert tables_of(database_url) == LEDGER_TABLES | {"alembic_version"}
    assert migrate.current(database_url) == HEAD


def test_the_migrations_build_exactly_the_models(migrated_database_url: str) -> None:
    engine = make_engine(migrated_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_revision_by_revision_then_upgrade_again(migrated_database_url: str) -> None:
    url = migrated_database_url
    assert columns_of(url, {"bookings", "booking_items"}) >= INTERRUPTION_COLUMNS
    assert ("bookings", "pending_timeline") in columns_of(url, {"bookings"})
    assert ("bookings", "customer_ciphertext") in columns_of(url, {"bookings"})

    migrate.downgrade(url)

    assert migrate.current(url) == "0004"
    assert "booking_resets" not in tables_of(url)
    assert ("bookings", "run_generation") not in columns_of(url, {"bookings"})

    migrate.downgrade(url)

    assert migrate.current(url) == "0003"
    assert ("bookings", "customer_ciphertext") not in columns_of(url, {"bookings"})
    assert ("bookings", "customer_email") in columns_of(url, {"bookings"})

    migrate.downgrade(url)

    assert migrate.current(url) == "0002"
    assert ("bookings", "pending_timeline") not in columns_of(url, {"bookings"})

    migrate.downgrade(url)

    assert migrate.current(url) == "0001"
    assert not columns_of(url, {"bookings", "booking_items"}) & INTERRUPTION_COLUMNS

    migrate.downgrade(url)

    assert tables_of(url) == {"alembic_version"}
    assert migrate.current(url) is None

    migrate.upgrade(url)

    assert tables_of(url) >= LEDGER_TABLES
    assert migrate.current(url) == HEAD


def test_upgrade_is_idempotent_and_safe_when_processes_start_together(database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        for started in [pool.submit(migrate.upgrade, database_url) for _ in range(4)]:
            started.result()
    migrate.upgrade(database_url)

    assert migrate.current(database_url) == HEAD


def test_the_sqlite_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = f"{tmp_path}/not/there/yet/ledger.sqlite3"

    migrate.upgrade(f"sqlite:///{path}")

    assert migrate.current(f"sqlite:///{path}") == HEAD


async def test_the_event_log_refuses_update_and_delete(
    migrated_database_url: str, ledger_cipher: LedgerCipher
) -> None:
    engine = make_engine(migrated_database_url)
    try:
        snapshot = booking_lifecycle("bk_append", created_at=datetime(2026, 1, 5, tzinfo=UTC))[0]
        await SqlBookingStore(engine, ledger_cipher).record(snapshot)
        for statement in (
            "UPDATE booking_events SET detail = 'rewritten'",
            "DELETE FROM booking_events",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        with engine.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM booking_events")).scalar_one()
        assert count == len(snapshot.view.timeline)
    finally:
        engine.dispose()
