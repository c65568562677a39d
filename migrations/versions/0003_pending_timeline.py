"""The booking's newest timeline entries, until the workflow task that made them has completed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The workflow writes the ledger inside its workflow task (a local activity). Entries made in that
very task are not yet kept by Temporal's history (a task that fails is run again and may order new
messages differently), so they wait in `bookings.pending_timeline` (JSON, replaced by every newer
snapshot) and move to the append-only `booking_events` with a later write. A nullable column:
every row written before reads as before (nothing pending).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bookings", sa.Column("pending_timeline", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("bookings", "pending_timeline")
