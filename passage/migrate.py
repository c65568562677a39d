"""Ledger migrations from code: the worker and `make up` call `upgrade(settings.database_url)`.

The Alembic configuration is built here rather than read from an `alembic.ini`, so migrations run
the same from a checkout, an installed package or a container, on PostgreSQL and on SQLite.
Concurrent starters (worker and API at once, several workers) are safe: PostgreSQL migrations take
an advisory lock, SQLite ones the database write lock, and the loser finds nothing left to do.

    python -m passage.migrate upgrade            # to head
    python -m passage.migrate downgrade          # undo the latest revision
    python -m passage.migrate current
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from activities.adapters.sql_store import for_writing, make_engine
from passage.settings import Settings

#: An arbitrary 64-bit key, the same in every Passage process: serializes concurrent migrators.
_POSTGRES_LOCK_KEY = 0x7061737361676531


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's Config for the `migrations` package; `connection`, when given, is used as is."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply every pending migration up to `revision`; creates a SQLite file's directory."""
    _in_transaction(database_url, lambda config: command.upgrade(config, revision))


def downgrade(database_url: str, revision: str = "-1") -> None:
    """Revert down to `revision` (by default the latest revision only)."""
    _in_transaction(database_url, lambda config: command.downgrade(config, revision))


def current(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _in_transaction(database_url: str, action: Callable[[Config], None]) -> None:
    """Run `action` in one transaction: a failed migration leaves the schema as it was."""
    engine = for_writing(make_engine(database_url))
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY}
                )
            action(alembic_config(connection))
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m passage.migrate", description="Migrate the booking ledger."
    )
    parser.add_argument("command", choices=("upgrade", "downgrade", "current"))
    parser.add_argument("revision", nargs="?", help="target (default: head / the previous one)")
    parser.add_argument("--database-url", help="default: DATABASE_URL or the embedded SQLite file")
    args = parser.parse_args(argv)
    database_url = args.database_url or Settings().database_url
    if args.command == "upgrade":
        upgrade(database_url, args.revision or "head")
    elif args.command == "downgrade":
        downgrade(database_url, args.revision or "-1")
    print(current(database_url) or "(empty)")


if __name__ == "__main__":
    main()
