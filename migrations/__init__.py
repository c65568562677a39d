"""Alembic migrations of the booking ledger; `passage.migrate` runs them (no alembic.ini needed)."""
