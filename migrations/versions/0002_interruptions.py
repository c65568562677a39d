"""What interruptions leave on a booking: the held price, the fees absorbed, the attention's item.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Three nullable columns, so every row written by 0001 reads as before (no held price, nothing
absorbed, attention on no particular item). Plain ADD/DROP COLUMN works on PostgreSQL and on
SQLite (3.35 and later): no table is copied, so the event log's triggers are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("bookings", sa.Column("fees_absorbed_minor", sa.BigInteger(), nullable=True)),
    ("bookings", sa.Column("attention_item_id", sa.String(), nullable=True)),
    ("booking_items", sa.Column("held_price_minor", sa.BigInteger(), nullable=True)),
)


def upgrade() -> None:
    for table, column in _COLUMNS:
        op.add_column(table, column)


def downgrade() -> None:
    for table, column in reversed(_COLUMNS):
        op.drop_column(table, column.name)
