"""The booking ledger: bookings, items, travellers, payments, refunds, the event log, webhook ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Hand-written and portable: the same revision builds the schema on PostgreSQL and on SQLite.
It must build exactly `activities/adapters/tables.py` (tests/integration/test_migrations.py
compares the two). The event log is append-only: a trigger refuses UPDATE and DELETE on both
backends, so not even a bug in the store can rewrite the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRES_APPEND_ONLY = (
    """
    CREATE FUNCTION booking_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = 'booking_events is append-only (' || TG_OP || ' refused)';
    END
    $$
    """,
    """
    CREATE TRIGGER booking_events_append_only BEFORE UPDATE OR DELETE ON booking_events
    FOR EACH ROW EXECUTE FUNCTION booking_events_append_only()
    """,
)

_SQLITE_APPEND_ONLY = (
    """
    CREATE TRIGGER booking_events_no_update BEFORE UPDATE ON booking_events
    BEGIN SELECT RAISE(ABORT, 'booking_events is append-only (UPDATE refused)'); END
    """,
    """
    CREATE TRIGGER booking_events_no_delete BEFORE DELETE ON booking_events
    BEGIN SELECT RAISE(ABORT, 'booking_events is append-only (DELETE refused)'); END
    """,
)


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _booking_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["booking_id"], ["bookings.booking_id"], name=f"fk_{table}_booking_id"
    )


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("expected_total_minor", sa.BigInteger(), nullable=False),
        sa.Column("quoted_total_minor", sa.BigInteger(), nullable=True),
        sa.Column("payment_status", sa.String(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("attention_step", sa.String(), nullable=True),
        sa.Column("attention_reason", sa.String(), nullable=True),
        sa.Column("attention_since", sa.String(), nullable=True),
        sa.Column("customer_ref", sa.String(), nullable=False),
        sa.Column("customer_email", sa.String(), nullable=False),
        sa.Column("customer_email_lower", sa.String(), nullable=False),
        sa.Column("customer_name", sa.String(), nullable=False),
        sa.Column("access_token_hash", sa.String(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_at_text", sa.String(), nullable=False),
        sa.Column("updated_at_text", sa.String(), nullable=False),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", name="pk_bookings"),
    )
    op.create_index("ix_bookings_created_at_booking_id", "bookings", ["created_at", "booking_id"])
    op.create_index(
        "ix_bookings_status_created_at", "bookings", ["status", "created_at", "booking_id"]
    )
    op.create_index("ix_bookings_customer_email_lower", "bookings", ["customer_email_lower"])
    op.create_index("ix_bookings_customer_ref", "bookings", ["customer_ref"])

    op.create_table(
        "booking_items",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.String(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("optional", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("expected_price_minor", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("supplier", sa.String(), nullable=True),
        sa.Column("hold_ref", sa.String(), nullable=True),
        sa.Column("hold_expires_at", sa.String(), nullable=True),
        sa.Column("supplier_ref", sa.String(), nullable=True),
        sa.Column("confirmation_code", sa.String(), nullable=True),
        sa.Column("cancellation_refundable", sa.Boolean(), nullable=True),
        sa.Column("cancellation_free_until", sa.String(), nullable=True),
        sa.Column("cancellation_fee_bps", sa.Integer(), nullable=True),
        sa.Column("cancellation_cancellable", sa.Boolean(), nullable=True),
        sa.Column("cancellation_fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("booking_id", "item_id", name="pk_booking_items"),
        _booking_fk("booking_items"),
    )
    op.create_index("ix_booking_items_supplier", "booking_items", ["supplier", "booking_id"])

    op.create_table(
        "booking_travellers",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(), nullable=False),
        sa.Column("last_name", sa.String(), nullable=False),
        sa.Column("birth_date", sa.String(), nullable=False),
        sa.Column("document_hint", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "position", name="pk_booking_travellers"),
        _booking_fk("booking_travellers"),
    )

    op.create_table(
        "payments",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("payment_intent_id", sa.String(), nullable=True),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "kind", name="pk_payments"),
        _booking_fk("payments"),
    )

    op.create_table(
        "refunds",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "reason", name="pk_refunds"),
        _booking_fk("refunds"),
    )

    op.create_table(
        "booking_events",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _timestamp(), nullable=True),
        sa.Column("at_text", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "seq", name="pk_booking_events"),
        _booking_fk("booking_events"),
    )

    op.create_table(
        "processed_webhook_events",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("processed_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_webhook_events"),
    )

    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_APPEND_ONLY if postgres else _SQLITE_APPEND_ONLY:
        op.execute(statement)


def downgrade() -> None:
    # Dropping a table drops its triggers on both backends; the PostgreSQL function stays behind.
    op.drop_table("processed_webhook_events")
    op.drop_table("booking_events")
    op.drop_table("refunds")
    op.drop_table("payments")
    op.drop_table("booking_travellers")
    op.drop_index("ix_booking_items_supplier", table_name="booking_items")
    op.drop_table("booking_items")
    op.drop_index("ix_bookings_customer_ref", table_name="bookings")
    op.drop_index("ix_bookings_customer_email_lower", table_name="bookings")
    op.drop_index("ix_bookings_status_created_at", table_name="bookings")
    op.drop_index("ix_bookings_created_at_booking_id", table_name="bookings")
    op.drop_table("bookings")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION booking_events_append_only()")
