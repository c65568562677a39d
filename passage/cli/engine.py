"""`passage check`, `passage replay`, `passage migrate`: commands on the engine itself.

They read Temporal, the ledger, the supplier simulator and Stripe directly, configured like the
worker (`PASSAGE_TEMPORAL_ADDRESS`, `DATABASE_URL`, `PASSAGE_CODEC_KEY`, ...), and need no staff
key. Each demands only the settings it uses and exits 2 naming one that is missing. In
development a codec key left unset is the one `make up` keeps (`.passage/codec_key`), so they
read `make up`'s encrypted payloads as they are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError, RPCStatusCode

from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage import migrate as migrations
from passage import replay as replays
from passage.checker import Violation, check
from passage.cli import render
from passage.cli.exits import ExitCode, Failure
from passage.cli.options import JsonFlag
from passage.cli.output import Output
from passage.cli.staff_access import kept_by_make_up
from passage.codec import LedgerCipher
from passage.collector import CheckSources, TemporalEngineViews, collect
from passage.settings import LEDGER_TOOL_NEEDS, REPLAY_NEEDS, Environment, Settings
from passage.temporal import connect


def tool_settings(process: str, needs: frozenset[str], **given: Any) -> Settings:
    """The settings of `process` (exit 2 naming what is missing), with make up's codec key in
    development when none is set."""
    if (
        os.environ.get("PASSAGE_ENV") == Environment.DEVELOPMENT
        and not os.environ.get("PASSAGE_CODEC_KEY", "").strip()
        and "codec_key" not in given
    ):
        kept = kept_by_make_up("codec_key", os.environ)
        if kept:
            given["codec_key"] = kept
    return Settings.for_process(process, needs, **given)


def check_command(
    booking: Annotated[
        str | None, typer.Option(help="Only this booking (default: every booking).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every invariant of the bookings (exit 1 when any is broken)."""
    settings = tool_settings("passage check", LEDGER_TOOL_NEEDS)
    raise typer.Exit(asyncio.run(run_check(settings, booking, Output(as_json))))


async def run_check(settings: Settings, booking: str | None, output: Output) -> ExitCode:
    """Collect the evidence, judge it, show it; FAILED when anything is broken."""
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
                SqlBookingStore(
                    engine, LedgerCipher(settings.ledger_key, settings.old_codec_key_list)
                ),
                TemporalEngineViews(client),
                simulator,
                stripe,
            )
            evidence = await collect(sources, [booking] if booking else None)
    except (httpx.HTTPError, RPCError, SQLAlchemyError, RuntimeError, OSError) as err:
        raise Failure(
            ExitCode.UNAVAILABLE, f"cannot read the evidence: {err}", code="UNREACHABLE"
        ) from err
    except KeyError as err:  # an encrypted payload and no codec key to read it
        raise Failure(
            ExitCode.USAGE,
            f"cannot decode the workflows' payloads ({err}): set PASSAGE_CODEC_KEY "
            "(make up keeps it in .passage/codec_key)",
            code="NO_CODEC_KEY",
        ) from err
    finally:
        engine.dispose()
    violations = check(evidence.bookings, evidence.inventory)
    show_violations(len(evidence.bookings), violations, output)
    return ExitCode.FAILED if violations else ExitCode.OK


def show_violations(checked: int, violations: list[Violation], output: Output) -> None:
    """The checker's answer: a table of broken invariants, or `{"checked", "violations"}`."""
    answer = {
        "checked": checked,
        "violations": [
            {"booking_id": v.booking_id, "rule": v.rule, "detail": v.detail} for v in violations
        ],
    }

    def draw(console: Console) -> None:
        if violations:
            console.print(render.violations_table(violations))
            console.print(f"{checked} bookings checked: {len(violations)} violations", style="red")
        else:
            console.print(f"{checked} bookings checked: every invariant holds", style="green")

    output.show(answer, draw)


def replay_command(
    booking: Annotated[str | None, typer.Option(help="Only this booking.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=datetime.fromisoformat,
            metavar="TIME",
            help="Bookings started since (ISO 8601, e.g. 2026-12-01T00:00:00+00:00).",
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="A Temporal visibility query, AND-ed with the booking workflow type."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many histories.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay booking histories with this release's workflow code (exit 1 on non-determinism)."""
    if sum(value is not None for value in (booking, since, query)) > 1:
        raise typer.BadParameter("give one of --booking, --since and --query")
    settings = tool_settings("passage replay", REPLAY_NEEDS)
    query_text = replays.booking_query(booking, since, query)
    raise typer.Exit(asyncio.run(run_replay(settings, query_text, limit, Output(as_json))))


async def run_replay(settings: Settings, query: str, limit: int | None, output: Output) -> ExitCode:
    """One line per history; FAILED when any is not deterministic."""
    try:
        client = await connect(settings)
        outcomes = await replays.replay(client, query, limit=limit)
    except RPCError as err:
        raise Failure(
            ExitCode.USAGE
            if err.status == RPCStatusCode.INVALID_ARGUMENT
            else ExitCode.UNAVAILABLE,
            f"cannot replay the histories: {err}",
            code="REPLAY_FAILED",
        ) from err
    except (RuntimeError, OSError) as err:
        raise Failure(
            ExitCode.UNAVAILABLE, f"cannot replay the histories: {err}", code="UNREACHABLE"
        ) from err
    failed = [outcome for outcome in outcomes if outcome.failure]
    answer = {
        "query": query,
        "replayed": len(outcomes),
        "failed": len(failed),
        "histories": [dataclasses.asdict(outcome) for outcome in outcomes],
    }

    def draw(console: Console) -> None:
        if outcomes:
            console.print(render.replay_table(outcomes))
        style = "red" if failed else "green"
        console.print(
            f"{len(outcomes)} histories replayed: {len(failed)} not deterministic", style=style
        )

    output.show(answer, draw)
    return ExitCode.FAILED if failed else ExitCode.OK


class MigrateAction(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    CURRENT = "current"


def migrate_command(
    action: Annotated[MigrateAction, typer.Argument(help="upgrade, downgrade or current.")],
    revision: Annotated[
        str | None, typer.Argument(help="Target (default: head / the previous one).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Default: DATABASE_URL (in development: else the embedded SQLite file)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Migrate the booking ledger (as `python -m passage.migrate`)."""
    given = {"database_url": database_url} if database_url else {}
    settings = tool_settings("passage migrate", migrations.needs_of(action.value), **given)
    try:
        current = migrations.migrate_to(action.value, revision, settings)
    except SQLAlchemyError as err:
        raise Failure(
            ExitCode.UNAVAILABLE, f"cannot migrate the ledger: {err}", code="UNREACHABLE"
        ) from err
    Output(as_json).show({"revision": current}, lambda console: console.print(current or "(empty)"))
