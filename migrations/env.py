"""Alembic environment of the ledger.

`passage.migrate` opens the connection (with the app's engine settings and a migration lock) and
hands it in through `config.attributes["connection"]`, with the ledger's key in
`config.attributes["ledger_key"]`; the plain `alembic` command line also works and then connects
to `sqlalchemy.url` or, when unset, to `DATABASE_URL`, with the key from PASSAGE_CODEC_KEY.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import activities.adapters.tables  # noqa: F401  (registers the ledger tables on SQLModel.metadata)
from activities.adapters.sql_engine import for_writing, make_engine
from passage.settings import DATABASE_NEEDS, LEDGER_TOOL_NEEDS, Settings


def _database_url() -> str:
    configured = context.config.get_main_option("sqlalchemy.url")
    return configured or Settings.for_process("alembic", DATABASE_NEEDS).database_url


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters tables by copying them; batch mode writes future migrations that way.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite runs DDL in transactions too (the engine emits BEGIN itself), so a failed
        # revision leaves no half-built schema on either backend.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    if not context.config.attributes.get("ledger_key"):
        settings = Settings.for_process("alembic", LEDGER_TOOL_NEEDS - DATABASE_NEEDS)
        context.config.attributes["ledger_key"] = settings.ledger_key
    engine = for_writing(make_engine(_database_url()))
    try:
        with engine.connect() as own_connection:
            _run_on(own_connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=SQLModel.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
