"""`passage`: the support staff's command line, over the staff HTTP API.

    passage bookings list [--status S] [--email E] [--supplier S] [--limit N] [--all]
    passage bookings show ID
    passage bookings retry ID [--note ..]
    passage bookings resolve ID --note ..
    passage bookings cancel ID [--note ..]
    passage check [--booking ID]
    passage replay [--booking ID | --since T | --query Q] [--limit N]

Every command accepts `--json` for the raw answer. The API is `PASSAGE_API_URL` (default
http://127.0.0.1:8000); the staff key is `PASSAGE_STAFF_KEY`, else the first of
`PASSAGE_STAFF_KEYS`. Exit status: 0 done, 1 refused or failed (the API's message is printed),
2 usage.

`check` runs the invariant checker (passage.checker) over the ledger, Temporal, the supplier
simulator and Stripe, configured like the worker (`PASSAGE_DATABASE_URL`,
`PASSAGE_TEMPORAL_ADDRESS`, `PASSAGE_SUPPLIER_URL`, `PASSAGE_STRIPE_API_BASE`, ...); it needs no
staff key. Exit status 1 when any invariant is broken.

`replay` downloads booking histories from Temporal (`PASSAGE_TEMPORAL_ADDRESS`, decoded with
`PASSAGE_CODEC_KEY`) and replays them with this release's workflow code (passage.replay): run it
before rolling out workers. Exit status 1 when any history is not deterministic.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import httpx
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from activities.adapters.sql_store import SqlBookingStore, make_engine
from passage import replay
from passage.checker import Violation, check
from passage.collector import CheckSources, TemporalEngineViews, collect
from passage.settings import Settings
from passage.temporal import connect

Json = dict[str, Any]


class CliError(Exception):
    """A failure to report in one line (no traceback): refused, unreachable, misconfigured."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passage", description="Passage support tools.")
    groups = parser.add_subparsers(dest="group", required=True)
    bookings = groups.add_parser("bookings", help="find, inspect and steer bookings")
    commands = bookings.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="bookings, newest first")
    listing.add_argument("--status", help="e.g. NEEDS_ATTENTION, CONFIRMED, FAILED")
    listing.add_argument("--email", help="customer e-mail (any case)")
    listing.add_argument("--supplier", help="any item's supplier")
    listing.add_argument("--limit", type=int, default=50, help="per page (default 50)")
    listing.add_argument("--all", action="store_true", help="follow every page")

    show = commands.add_parser("show", help="one booking with its audit trail")
    show.add_argument("booking_id")

    for name, text, note_required in (
        ("retry", "retry the step a NEEDS_ATTENTION booking is stuck on", False),
        ("resolve", "mark the stuck step as handled by hand; the saga goes on", True),
        ("cancel", "force a cancellation", False),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("booking_id")
        command.add_argument("--note", required=note_required, default="", help="recorded")

    checker = groups.add_parser("check", help="check every invariant of the bookings")
    checker.add_argument("--booking", help="only this booking (default: every booking)")
    checker.set_defaults(command="check")

    replayer = groups.add_parser("replay", help="replay booking histories with this code")
    selection = replayer.add_mutually_exclusive_group()
    selection.add_argument("--booking", help="only this booking")
    selection.add_argument(
        "--since", type=datetime.fromisoformat, help="bookings started since (ISO 8601)"
    )
    selection.add_argument("--query", help="a Temporal visibility query, AND-ed with the type")
    replayer.add_argument("--limit", type=int, help="at most this many histories")
    replayer.set_defaults(command="replay")

    for command in (*commands.choices.values(), checker, replayer):
        command.add_argument("--json", action="store_true", help="print the raw JSON answer")
    return parser


def run(args: argparse.Namespace, http: httpx.Client, out: TextIO = sys.stdout) -> int:
    """Run one parsed command with `http` (base URL and staff key set); returns the exit status."""
    handlers: dict[str, Callable[[argparse.Namespace, httpx.Client, TextIO], None]] = {
        "list": _list,
        "show": _show,
        "retry": _command,
        "resolve": _command,
        "cancel": _command,
    }
    try:
        handlers[args.command](args, http, out)
    except CliError as err:
        print(f"passage: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """The `passage` console script: parse, call the API, flush, exit."""
    try:
        status = _main(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse: usage errors and --help
        status = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)  # as worker.py: no crash at interpreter exit


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    if args.group == "check":
        return asyncio.run(run_check(args, settings))
    if args.group == "replay":
        return asyncio.run(run_replay(args, settings))
    key = os.environ.get("PASSAGE_STAFF_KEY") or next(iter(sorted(settings.staff_key_set)), "")
    if not key:
        print("passage: set PASSAGE_STAFF_KEY to a staff key (make up prints one)", file=sys.stderr)
        return 2
    base_url = os.environ.get("PASSAGE_API_URL", settings.api_url)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        return run(args, http)


# --- commands ------------------------------------------------------------------------------------


def _list(args: argparse.Namespace, http: httpx.Client, out: TextIO) -> None:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("status", "email", "supplier"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    bookings: list[Json] = []
    while True:
        page = _call(http, "GET", "/admin/bookings", params=params)
        bookings += page["bookings"]
        if not args.all or not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    if args.json:
        print(
            json.dumps({"bookings": bookings, "next_cursor": page["next_cursor"]}, indent=2),
            file=out,
        )
        return
    print(f"{'BOOKING':<28} {'STATUS':<26} {'TOTAL':>12}  {'CREATED':<20} CUSTOMER", file=out)
    for summary in bookings:
        total = summary["total"]
        line = (
            f"{summary['booking_id']:<28} {summary['status']:<26} "
            f"{_money(total):>12}  {summary['created_at'][:19]:<20} {summary['customer_email']}"
        )
        print(line, file=out)
        if summary.get("attention"):
            attention = summary["attention"]
            print(f"{'':<28} stuck on {attention['step']}: {attention['reason']}", file=out)
    if page["next_cursor"] and not args.all:
        print("(more: use --all)", file=out)


def _show(args: argparse.Namespace, http: httpx.Client, out: TextIO) -> None:
    view = _call(http, "GET", f"/admin/bookings/{args.booking_id}")
    _print_view(view, args.json, out)


def _command(args: argparse.Namespace, http: httpx.Client, out: TextIO) -> None:
    path = f"/admin/bookings/{args.booking_id}/{args.command}"
    view = _call(http, "POST", path, json={"note": args.note})
    _print_view(view, args.json, out)


async def run_check(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """`passage check`: collect the evidence, judge it, print it; 1 when anything is broken."""
    engine = make_engine(settings.database_url)
    try:
        client = await connect(settings)
        async with (
            httpx.AsyncClient(base_url=settings.supplier_url, timeout=30) as simulator,
            httpx.AsyncClient(
                base_url=settings.stripe_api_base, auth=(settings.stripe_api_key, ""), timeout=30
            ) as stripe,
        ):
            sources = CheckSources(
                SqlBookingStore(engine), TemporalEngineViews(client), simulator, stripe
            )
            evidence = await collect(sources, [args.booking] if args.booking else None)
    except (httpx.HTTPError, RPCError, SQLAlchemyError, RuntimeError, OSError) as err:
        print(f"passage: cannot read the evidence: {err}", file=sys.stderr)
        return 1
    except KeyError as err:  # an encrypted payload and no codec key to read it
        print(
            f"passage: cannot decode the workflows' payloads ({err}): set PASSAGE_CODEC_KEY "
            "(make up keeps it in .passage/codec_key)",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    violations = check(evidence.bookings, evidence.inventory)
    print_violations(len(evidence.bookings), violations, args.json, out)
    return 1 if violations else 0


async def run_replay(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """`passage replay`: one line per history; 1 when any is not deterministic."""
    query = replay.booking_query(args.booking, args.since, args.query)
    try:
        client = await connect(settings)
        outcomes = await replay.replay(client, query, limit=args.limit)
    except (RPCError, RuntimeError, OSError) as err:
        print(f"passage: cannot replay the histories: {err}", file=sys.stderr)
        return 1
    failed = [outcome for outcome in outcomes if outcome.failure]
    if args.json:
        answer = {
            "query": query,
            "replayed": len(outcomes),
            "failed": len(failed),
            "histories": [dataclasses.asdict(outcome) for outcome in outcomes],
        }
        print(json.dumps(answer, indent=2), file=out)
    else:
        for outcome in outcomes:
            verdict = f"NOT DETERMINISTIC: {outcome.failure}" if outcome.failure else "ok"
            print(f"{outcome.workflow_id:<40} {outcome.events:>6} events  {verdict}", file=out)
        print(f"{len(outcomes)} histories replayed: {len(failed)} not deterministic", file=out)
    return 1 if failed else 0


def print_violations(
    checked: int, violations: Sequence[Violation], as_json: bool, out: TextIO
) -> None:
    """The checker's answer as a table (or JSON): one line per broken invariant."""
    if as_json:
        answer = {
            "checked": checked,
            "violations": [
                {"booking_id": v.booking_id, "rule": v.rule, "detail": v.detail} for v in violations
            ],
        }
        print(json.dumps(answer, indent=2), file=out)
        return
    if not violations:
        print(f"{checked} bookings checked: every invariant holds", file=out)
        return
    print(f"{'BOOKING':<28} {'RULE':<20} DETAIL", file=out)
    for violation in violations:
        print(
            f"{violation.booking_id or '-':<28} {violation.rule:<20} {violation.detail}", file=out
        )
    print(f"{checked} bookings checked: {len(violations)} violations", file=out)


# --- small pieces --------------------------------------------------------------------------------


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Json:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        raise CliError(f"cannot reach the API at {http.base_url}: {err}") from err
    try:
        body: Json = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") or response.text or response.reason_phrase
        fields = "; ".join(f"{f['field']}: {f['message']}" for f in error.get("fields") or [])
        raise CliError(f"{response.status_code} {message}" + (f" ({fields})" if fields else ""))
    return body


def _money(money: Json | None) -> str:
    if not money:
        return "-"
    return f"{money['amount'] / 100:.2f} {money['currency']}"


def _print_view(view: Json, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(view, indent=2), file=out)
        return
    print(f"{view['booking_id']}  {view['status']}  (step {view['step']})", file=out)
    print(f"  workflow: {view.get('workflow_id', '-')}", file=out)
    if view.get("error"):
        print(f"  error: {view['error']['type']}: {view['error']['message']}", file=out)
    if view.get("attention"):
        attention = view["attention"]
        print(f"  NEEDS ATTENTION on {attention['step']}: {attention['reason']}", file=out)
    print("  items:", file=out)
    for item in view["items"]:
        print(
            f"    {item['item_id']:<5} {item['status']:<10} {item['offer_id']:<30} "
            f"{_money(item['price']):>12}  {item.get('supplier') or ''} "
            f"{item.get('supplier_ref') or ''}",
            file=out,
        )
    payment = view["payment"]
    print(
        f"  payment: {payment['status']}  authorized {_money(payment['authorized'])}, "
        f"captured {_money(payment['captured'])}, refunded {_money(payment['refunded'])}, "
        f"fees kept {_money(payment.get('fees_kept'))}",
        file=out,
    )
    print("  audit:", file=out)
    for entry in view.get("audit") or view["timeline"]:
        actor = f" [{entry['actor']}]" if entry.get("actor") else ""
        detail = f" {entry['detail']}" if entry.get("detail") else ""
        print(
            f"    {entry['at'][:23]}  {entry['step']}: {entry['outcome']}{actor}{detail}", file=out
        )
