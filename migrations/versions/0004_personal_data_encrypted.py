"""Personal data encrypted at rest: the customer and the travellers, and e-mail search by hash.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`bookings.customer_email`, `customer_email_lower` and `customer_name` become one encrypted field,
`customer_ciphertext`, and a keyed hash of the normalized e-mail, `customer_email_hash` (indexed,
for staff search); `booking_travellers`' names, birth date and document hint become one encrypted
field per traveller, `traveller_ciphertext`. The keys derive from the codec key
(passage.codec.LedgerCipher), which `passage.migrate` hands in as `ledger_key`; a database with
rows to convert and no key is refused, an empty one needs none. Existing rows are converted in
batches with the store's own sealing functions, then the clear columns are dropped.

The new columns are added NOT NULL with an empty default (SQLite cannot add a NOT NULL column
without one, nor drop the default without copying the table); PostgreSQL drops the default once
the rows are filled. Dropped columns leave their old values in dead PostgreSQL tuples and freed
SQLite pages until they are reclaimed: SQLite runs this revision with `secure_delete` (freed
content is zeroed); on PostgreSQL run `VACUUM FULL bookings, booking_travellers` after upgrading.
Downgrade decrypts back to the clear columns (with the key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from activities.adapters.sql_personal_data import (
    open_customer,
    open_traveller,
    seal_customer,
    seal_traveller,
)
from activities.ports import TravellerRecord
from passage.codec import LedgerCipher

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500

_CLEAR_CUSTOMER = ("customer_email", "customer_email_lower", "customer_name")
_CLEAR_TRAVELLER = ("first_name", "last_name", "birth_date", "document_hint")
_SEALED = (
    ("bookings", "customer_ciphertext", sa.Text()),
    ("bookings", "customer_email_hash", sa.String()),
    ("booking_travellers", "traveller_ciphertext", sa.Text()),
)


def upgrade() -> None:
    _secure_delete()
    for table, name, type_ in _SEALED:
        op.add_column(table, sa.Column(name, type_, nullable=False, server_default=""))
    bookings = sa.table(
        "bookings",
        *(sa.column(name) for name in ("booking_id", *_CLEAR_CUSTOMER)),
        sa.column("customer_ciphertext"),
        sa.column("customer_email_hash"),
    )
    travellers = sa.table(
        "booking_travellers",
        *(sa.column(name) for name in ("booking_id", "position", *_CLEAR_TRAVELLER)),
        sa.column("traveller_ciphertext"),
    )
    cipher = _cipher_if_needed(bookings)

    def sealed_customer(row: Any) -> dict[str, Any]:
        assert cipher is not None
        return {
            "customer_ciphertext": seal_customer(
                cipher, row.booking_id, row.customer_email, row.customer_name
            ),
            "customer_email_hash": cipher.email_hash(row.customer_email),
        }

    def sealed_traveller(row: Any) -> dict[str, Any]:
        assert cipher is not None
        record = TravellerRecord(
            row.first_name, row.last_name, row.birth_date, row.document_hint
        )
        return {
            "traveller_ciphertext": seal_traveller(cipher, row.booking_id, row.position, record)
        }

    _rewrite(bookings, ("booking_id",), sealed_customer)
    _rewrite(travellers, ("booking_id", "position"), sealed_traveller)

    op.drop_index("ix_bookings_customer_email_lower", table_name="bookings")
    for name in _CLEAR_CUSTOMER:
        op.drop_column("bookings", name)
    for name in _CLEAR_TRAVELLER:
        op.drop_column("booking_travellers", name)
    _drop_defaults(_SEALED)
    op.create_index("ix_bookings_customer_email_hash", "bookings", ["customer_email_hash"])


def downgrade() -> None:
    clear = [("bookings", name) for name in _CLEAR_CUSTOMER]
    clear += [("booking_travellers", name) for name in _CLEAR_TRAVELLER]
    for table, name in clear:
        op.add_column(table, sa.Column(name, sa.String(), nullable=False, server_default=""))
    bookings = sa.table(
        "bookings",
        *(sa.column(name) for name in ("booking_id", "customer_ciphertext", *_CLEAR_CUSTOMER)),
    )
    travellers = sa.table(
        "booking_travellers",
        *(sa.column(name) for name in ("booking_id", "position", "traveller_ciphertext")),
        *(sa.column(name) for name in _CLEAR_TRAVELLER),
    )
    cipher = _cipher_if_needed(bookings)

    def opened_customer(row: Any) -> dict[str, Any]:
        assert cipher is not None
        email, name = open_customer(cipher, row.booking_id, row.customer_ciphertext)
        return {
            "customer_email": email,
            "customer_email_lower": email.strip().lower(),
            "customer_name": name,
        }

    def opened_traveller(row: Any) -> dict[str, Any]:
        assert cipher is not None
        record = open_traveller(cipher, row.booking_id, row.position, row.traveller_ciphertext)
        return {name: getattr(record, name) for name in _CLEAR_TRAVELLER}

    _rewrite(bookings, ("booking_id",), opened_customer)
    _rewrite(travellers, ("booking_id", "position"), opened_traveller)

    op.drop_index("ix_bookings_customer_email_hash", table_name="bookings")
    for table, name, _type in reversed(_SEALED):
        op.drop_column(table, name)
    _drop_defaults([(table, name, sa.String()) for table, name in clear])
    op.create_index("ix_bookings_customer_email_lower", "bookings", ["customer_email_lower"])


def _cipher_if_needed(bookings: sa.TableClause) -> LedgerCipher | None:
    """The ledger's cipher, or None for a ledger with no booking; refused without a key."""
    if op.get_bind().execute(sa.select(bookings.c.booking_id).limit(1)).first() is None:
        return None
    key = context.config.attributes.get("ledger_key")
    if not key:
        raise RuntimeError(
            "migration 0004 encrypts the ledger's personal data and needs its key: "
            "set PASSAGE_CODEC_KEY (passage.migrate passes it as ledger_key)"
        )
    return LedgerCipher(key)


def _rewrite(
    table: sa.TableClause,
    key: tuple[str, ...],
    new_values: Callable[[Any], dict[str, Any]],
) -> None:
    """Set `new_values(row)` on every row, in batches in key order (bounded memory).

    One executemany per batch; the SET clause is the columns `new_values` returns.
    """
    connection = op.get_bind()
    columns = [table.c[name] for name in key]
    statement = sa.update(table).where(
        *(column == sa.bindparam(f"key_{column.name}") for column in columns)
    )
    for batch in _batches(connection, table, columns):
        updates = [
            {**{f"key_{name}": getattr(row, name) for name in key}, **new_values(row)}
            for row in batch
        ]
        connection.execute(statement, updates)


def _batches(
    connection: sa.Connection, table: sa.TableClause, key: list[sa.ColumnClause[Any]]
) -> Iterator[Sequence[Any]]:
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(table).order_by(*key).limit(_BATCH)
        if after is not None:
            query = query.where(sa.tuple_(*key) > sa.tuple_(*after))
        rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(getattr(rows[-1], column.name) for column in key)


def _drop_defaults(columns: Sequence[tuple[str, str, Any]]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, name, _type in columns:
            op.alter_column(table, name, server_default=None)


def _secure_delete() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")
