"""What the whole ledger adds up to, read with a few aggregate queries (the API's `/metrics`).

Counts and sums only: no booking id, customer or traveller leaves these queries, so the numbers
can be published to a metrics system without leaking anyone's data. Prometheus scrapes every few
seconds: each query is one `GROUP BY` over a table (bookings by status is on an index).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine, text

from activities.ports import LedgerTotals

#: The timeline steps that undo something (`workflows/saga.py` UndoKind, and the refund that
#: follows a cancelled capture), by the first word of the step (`RELEASE it_1` -> `RELEASE`).
UNDO_STEPS = ("RELEASE", "VOID", "CANCEL", "REFUND")
#: The outcomes of an undo that ran (not `status` transitions nor a `requested` cancel).
UNDO_OUTCOMES = ("ok", "resolved", "failed")

_BOOKINGS_BY_STATUS = text("SELECT status, COUNT(*) FROM bookings GROUP BY status")
_MONEY_BY_CURRENCY = text(
    "SELECT 'captured', currency, SUM(amount_minor) FROM payments WHERE kind = 'capture'"
    " GROUP BY currency"
    " UNION ALL SELECT 'refunded', currency, SUM(amount_minor) FROM refunds GROUP BY currency"
    " UNION ALL SELECT 'fees_kept', currency, SUM(fee_minor) FROM refunds GROUP BY currency"
)
_UNDOS = text(
    "SELECT step, outcome, COUNT(*) FROM booking_events"
    " WHERE outcome IN ('ok', 'resolved', 'failed')"
    " AND (step IN ('VOID', 'REFUND') OR step LIKE 'RELEASE %' OR step LIKE 'CANCEL %')"
    " GROUP BY step, outcome"
)


def read_ledger_totals(engine: Engine) -> LedgerTotals:
    """The totals in one read transaction (synchronous: run it in a thread from async code)."""
    with engine.connect() as conn:
        statuses = {str(status): int(count) for status, count in conn.execute(_BOOKINGS_BY_STATUS)}
        money: dict[str, dict[str, int]] = {"captured": {}, "refunded": {}, "fees_kept": {}}
        for kind, currency, total in conn.execute(_MONEY_BY_CURRENCY):
            money[str(kind)][str(currency)] = int(total or 0)
        undos: Counter[tuple[str, str]] = Counter()
        for step, outcome, count in conn.execute(_UNDOS):
            undos[(str(step).split(" ", 1)[0], str(outcome))] += int(count)
    return LedgerTotals(
        bookings_by_status=statuses,
        undos=dict(undos),
        captured_minor=money["captured"],
        refunded_minor=money["refunded"],
        fees_kept_minor=money["fees_kept"],
    )
