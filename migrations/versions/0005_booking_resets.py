"""Workflow resets: a run generation on each booking, and the resets staff asked for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

`passage bookings reset` starts a new workflow run from an earlier workflow task. Its ledger
writes carry the lower versions of that point and its own timeline numbering, so the ledger
orders snapshots by (`run_generation`, `version`) and continues the trail after the old run's
entries (activities/adapters/tables.py `BookingResetRow`). Existing rows are generation 0: every
booking before this revision was written by runs that no reset made.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "bookings",
        sa.Column("run_generation", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "booking_resets",
        sa.Column("booking_id", sa.String(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("base_run_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("to_step", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("inherited_entries", sa.Integer(), nullable=True),
        sa.Column("timeline_offset", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("booking_id", "generation", name="pk_booking_resets"),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.booking_id"], name="fk_booking_resets_booking_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("booking_resets")
    op.drop_column("bookings", "run_generation")
