"""How `passage` draws bookings for people: rich tables and a booking's timeline.

Everything the API returns is shown as `Text` (never parsed as rich markup: a staff note may
contain brackets), money in major units from its minor units (`123456 EUR` as `1,234.56 EUR`,
the currency's own digits), times in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from passage.checker import Violation
from passage.replay import ReplayOutcome
from workflows.model import Money
from workflows.operator_view import money as money_text

Json = dict[str, Any]

_STATUS_STYLES = {
    "CONFIRMED": "green",
    "FAILED": "red",
    "NEEDS_ATTENTION": "bold red",
    "CANCELLED": "yellow",
    "CANCELLING": "yellow",
    "COMPENSATING": "yellow",
}


def money(amount: Json | None) -> str:
    """The API's `{"amount": <minor units>, "currency"}` for people; `-` for none."""
    if not amount:
        return "-"
    return money_text(Money(int(amount["amount"]), str(amount["currency"])))


def when(at: str | None, *, precise: bool = False) -> str:
    """An RFC 3339 time in UTC, e.g. `2026-05-04 10:00:03Z` (with milliseconds if `precise`)."""
    if not at:
        return "-"
    try:
        moment = datetime.fromisoformat(at).astimezone(UTC)
    except ValueError:
        return at
    shown = (
        moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else f"{moment:%Y-%m-%d %H:%M:%S}"
    )
    return shown + "Z"


def status(value: str) -> Text:
    return Text(value, style=_STATUS_STYLES.get(value, "cyan"))


def bookings_table(summaries: Sequence[Json]) -> Table:
    """`passage bookings list`: one row per booking, newest first; a stuck one says why."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (
        ("BOOKING", "left"),
        ("STATUS", "left"),
        ("STEP", "left"),
        ("TOTAL", "right"),
        ("SUPPLIERS", "left"),
        ("CUSTOMER", "left"),
        ("CREATED", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in ("BOOKING", "STATUS", "TOTAL"))  # type: ignore[arg-type]
    for summary in summaries:
        step = Text(str(summary.get("step", "")))
        attention = summary.get("attention")
        if attention:
            step = Text(f"{attention['step']}: {attention['reason']}", style="red")
        customer = f"{summary.get('customer_name', '')} <{summary.get('customer_email', '')}>"
        table.add_row(
            Text(summary["booking_id"]),
            status(summary["status"]),
            step,
            money(summary.get("total")),
            Text(", ".join(summary.get("suppliers") or [])),
            Text(customer),
            when(summary.get("created_at")),
        )
    return table


def booking_timeline(view: Json) -> Group:
    """`passage bookings show`: the booking, its items and payment, then its audit trail."""
    parts: list[RenderableType] = [_heading(view)]
    attention = view.get("attention")
    if attention:
        parts.append(
            Text(
                f"NEEDS ATTENTION since {when(attention['since'])} on {attention['step']}: "
                f"{attention['reason']}",
                style="bold red",
            )
        )
    if view.get("error"):
        parts.append(Text(f"error: {view['error']['type']}: {view['error']['message']}", "red"))
    parts += [_items(view.get("items") or []), _payment(view.get("payment") or {})]
    parts += [Text("Audit trail", style="bold"), audit_table(view.get("audit") or view["timeline"])]
    return Group(*parts)


def audit_table(entries: Iterable[Json]) -> Table:
    """Every step and staff action in order: when, what, how it went, who, the note or detail."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("WHEN (UTC)", no_wrap=True)
    table.add_column("STEP")
    table.add_column("OUTCOME")
    table.add_column("WHO", no_wrap=True)
    table.add_column("NOTE / DETAIL")
    for entry in entries:
        actor = entry.get("actor")
        outcome = str(entry.get("outcome", ""))
        table.add_row(
            str(entry.get("seq", "")),
            when(entry.get("at"), precise=True),
            Text(str(entry.get("step", ""))),
            Text(outcome, style="red" if outcome not in ("ok", "requested") else ""),
            Text(actor or "engine", style="bold" if actor else "dim"),
            Text(str(entry.get("detail", ""))),
        )
    return table


def violations_table(violations: Sequence[Violation]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("BOOKING", "RULE", "DETAIL"):
        table.add_column(name, no_wrap=name != "DETAIL")
    for violation in violations:
        table.add_row(
            Text(violation.booking_id or "-"), Text(violation.rule), Text(violation.detail)
        )
    return table


def replay_table(outcomes: Sequence[ReplayOutcome]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("WORKFLOW", no_wrap=True)
    table.add_column("EVENTS", justify="right")
    table.add_column("VERDICT")
    for outcome in outcomes:
        verdict = (
            Text(f"NOT DETERMINISTIC: {outcome.failure}", style="bold red")
            if outcome.failure
            else Text("ok", style="green")
        )
        table.add_row(Text(outcome.workflow_id), str(outcome.events), verdict)
    return table


def print_all(console: Console, *renderables: RenderableType) -> None:
    for renderable in renderables:
        console.print(renderable)


def _heading(view: Json) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    title = Text.assemble(
        (view["booking_id"], "bold"), "  ", status(view["status"]), f"  step {view.get('step')}"
    )
    grid.add_row("booking", title)
    grid.add_row("workflow", Text(str(view.get("workflow_id", "-"))))
    grid.add_row(
        "created", f"{when(view.get('created_at'))}   updated {when(view.get('updated_at'))}"
    )
    grid.add_row("total", money(view.get("expected_total")))
    customer = view.get("customer")
    if customer:
        grid.add_row("customer", Text(f"{customer['name']} <{customer['email']}>"))
    for traveller in view.get("travellers") or []:
        hint = traveller.get("document_hint")
        text = f"{traveller['first_name']} {traveller['last_name']}, born {traveller['birth_date']}"
        grid.add_row("traveller", Text(text + (f", document ending {hint}" if hint else "")))
    return grid


def _items(items: Sequence[Json]) -> Table:
    table = Table(title="Items", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("ITEM", "KIND", "STATUS", "OFFER", "SUPPLIER", "REFERENCE", "PRICE", "FEE"):
        table.add_column(name, justify="right" if name in ("PRICE", "FEE") else "left")
    for item in items:
        label = item["item_id"] + (" (optional)" if item.get("optional") else "")
        reference = item.get("confirmation_code") or item.get("supplier_ref") or "-"
        table.add_row(
            Text(label),
            Text(str(item.get("kind") or "-")),
            status(str(item.get("status"))),
            Text(str(item.get("offer_id"))),
            Text(str(item.get("supplier") or "-")),
            Text(str(reference)),
            money(item.get("price")),
            money(item.get("cancellation_fee")),
        )
    return table


def _payment(payment: Json) -> Text:
    parts = [
        f"payment {payment.get('status', '-')}",
        f"authorized {money(payment.get('authorized'))}",
        f"captured {money(payment.get('captured'))}",
        f"refunded {money(payment.get('refunded'))}",
        f"fees kept {money(payment.get('fees_kept'))}",
    ]
    if payment.get("payment_intent_id"):
        parts.append(str(payment["payment_intent_id"]))
    return Text(" · ".join(parts))
