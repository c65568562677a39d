"""The SQLAlchemy engine of the ledger: PostgreSQL (production) or a SQLite file (the default).

Shared by the store, the migrations and the tools that read the ledger, so every one of them gets
the same driver, SQLite pragmas and write-lock behaviour.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

_WRITE_OPTION = "passage_ledger_write"


def make_engine(database_url: str) -> Engine:
    """An engine for `DATABASE_URL`: `postgresql+psycopg://...` or `sqlite:///path` (the default).

    Plain `postgresql://` and `postgres://` URLs (docker-compose, hosting providers) get the
    psycopg 3 driver. SQLite gets its file's directory created, WAL (readers never block the
    writer), enforced foreign keys and a busy timeout so concurrent writers wait instead of failing.
    """
    url = make_url(_with_psycopg_driver(database_url))
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def for_writing(engine: Engine) -> Engine:
    """The same engine whose transactions take the write lock when they begin.

    On SQLite a deferred transaction that reads then writes can fail with SQLITE_BUSY without
    waiting; `BEGIN IMMEDIATE` queues writers behind the busy timeout instead. PostgreSQL's row
    locks need nothing, so there the option is ignored.
    """
    return engine.execution_options(**{_WRITE_OPTION: True})


def _with_psycopg_driver(database_url: str) -> str:
    for scheme in ("postgres://", "postgresql://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url[len(scheme) :]
    return database_url


def _configure_sqlite_connection(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own implicit BEGIN is disabled so `_begin_sqlite_transaction` chooses the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL once (it persists); tolerate another connection doing it first.

    Changing the journal mode fails at once, without the busy timeout, while another connection
    holds a lock; that connection configured WAL itself before it took the lock.
    """
    for attempt in range(100):
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            time.sleep(0.01 * (attempt + 1))
    cursor.execute("PRAGMA journal_mode=WAL")


def _begin_sqlite_transaction(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
