"""The `passage` command: its groups and commands, and the one place failures become exits."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click
import typer
from typer.core import TyperGroup

from passage.cli import bookings, engine
from passage.cli.exits import ExitCode, Failure
from passage.cli.options import JSON_MODE
from passage.cli.output import report


class PassageGroup(TyperGroup):
    """Reports a Failure raised anywhere below in one line (JSON with `--json`) and exits with
    its status; usage errors stay click's (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Failure as failure:
            report(failure, bool(ctx.meta.get(JSON_MODE)))
            raise typer.Exit(int(failure.exit_code)) from None


def build_app() -> typer.Typer:
    """The command tree (built on demand, as everything else: nothing happens at import)."""
    app = typer.Typer(
        name="passage",
        cls=PassageGroup,
        help="Passage support and operations tools. Exit status: 0 done, 1 refused or failed, "
        "2 usage or configuration, 3 unavailable (try again).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,  # a traceback's locals would show the staff key
        rich_markup_mode="rich",
    )
    app.add_typer(bookings.app, name="bookings")
    app.command("check")(engine.check_command)
    app.command("replay")(engine.replay_command)
    app.command("migrate")(engine.migrate_command)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """The `passage` console script: run, flush, then `os._exit` (no crash at interpreter exit,
    sdk-python issue 300)."""
    status: int = ExitCode.OK
    try:
        build_app()(args=list(sys.argv[1:] if argv is None else argv), prog_name="passage")
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    except KeyboardInterrupt:
        status = 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)
