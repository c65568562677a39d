"""Ledger migrations from code: the worker and `make up` call `upgrade(settings.database_url)`.

The Alembic configuration is built here rather than read from an `alembic.ini`, so migrations run
the same from a checkout, an installed package or a container, on PostgreSQL and on SQLite.
Concurrent starters (worker and API at once, several workers) are safe: PostgreSQL migrations take
an advisory lock, SQLite ones the database write lock, and the loser finds nothing left to do.
Revisions that convert personal data (0004 encrypts it) need the ledger's key, `ledger_key`: the
codec key (`Settings.ledger_key`); a ledger with no booking needs none.

    python -m passage.migrate upgrade            # to head        (also: passage migrate ...)
    python -m passage.migrate downgrade          # undo the latest revision
    python -m passage.migrate current

Outside development the command demands what it uses, and only that: DATABASE_URL (or
`--database-url`) always, PASSAGE_CODEC_KEY to upgrade or downgrade; never the API's secrets.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from activities.adapters.sql_engine import for_writing, make_engine
from passage.settings import DATABASE_NEEDS, LEDGER_TOOL_NEEDS, Settings

#: An arbitrary 64-bit key, the same in every Passage process: serializes concurrent migrators.
_POSTGRES_LOCK_KEY = 0x7061737361676531


def alembic_config(connection: Connection | None = None, ledger_key: str | None = None) -> Config:
    """Alembic's Config for the `migrations` package; `connection`, when given, is used as is.

    `ledger_key` reaches the revisions that encrypt or decrypt personal data.
    """
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["connection"] = connection
    config.attributes["ledger_key"] = ledger_key
    return config


def upgrade(database_url: str, revision: str = "head", *, ledger_key: str | None = None) -> None:
    """Apply every pending migration up to `revision`; creates a SQLite file's directory."""
    _in_transaction(database_url, ledger_key, lambda config: command.upgrade(config, revision))


def downgrade(database_url: str, revision: str = "-1", *, ledger_key: str | None = None) -> None:
    """Revert down to `revision` (by default the latest revision only)."""
    _in_transaction(database_url, ledger_key, lambda config: command.downgrade(config, revision))


def current(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _in_transaction(
    database_url: str, ledger_key: str | None, action: Callable[[Config], None]
) -> None:
    """Run `action` in one transaction: a failed migration leaves the schema as it was."""
    engine = for_writing(make_engine(database_url))
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY}
                )
            action(alembic_config(connection, ledger_key))
    finally:
        engine.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of `python -m passage.migrate` (and of `passage migrate`)."""
    parser.add_argument("command", choices=("upgrade", "downgrade", "current"))
    parser.add_argument("revision", nargs="?", help="target (default: head / the previous one)")
    parser.add_argument(
        "--database-url",
        help="default: DATABASE_URL (in development: else the embedded SQLite file)",
    )


def run(args: argparse.Namespace, process: str = "passage migrate") -> str | None:
    """Run a parsed command; the revision the ledger is at after it (None: empty).

    Exits 2 naming any setting the command needs and lacks.
    """
    given = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings.for_process(process, needs_of(args.command), **given)
    return migrate_to(args.command, args.revision, settings)


def needs_of(action: str) -> frozenset[str]:
    """What `action` (upgrade, downgrade, current) must be given outside development."""
    return DATABASE_NEEDS if action == "current" else LEDGER_TOOL_NEEDS


def migrate_to(action: str, revision: str | None, settings: Settings) -> str | None:
    """Run `action` on `settings`' ledger; the revision it is at afterwards (None: empty)."""
    database_url = settings.database_url
    if action == "upgrade":
        upgrade(database_url, revision or "head", ledger_key=settings.ledger_key)
    elif action == "downgrade":
        downgrade(database_url, revision or "-1", ledger_key=settings.ledger_key)
    return current(database_url)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m passage.migrate", description="Migrate the booking ledger."
    )
    add_arguments(parser)
    print(run(parser.parse_args(argv), "python -m passage.migrate") or "(empty)")


if __name__ == "__main__":
    main()
