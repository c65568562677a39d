"""Options every `passage` command shares (`--json`) and the arguments several take."""

from __future__ import annotations

from typing import Annotated

import typer

#: Where the chosen output mode is kept for the error report: `ctx.meta` is shared by a command's
#: context and its parents', so the root group sees the sub-command's `--json`.
JSON_MODE = "passage.json"


def _remember_json(ctx: typer.Context, value: bool) -> bool:
    if value:
        ctx.meta[JSON_MODE] = True
    return value


JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Machine-readable output: one JSON document on stdout (errors as JSON on stderr).",
        callback=_remember_json,
    ),
]
BookingId = Annotated[str, typer.Argument(metavar="ID", help="The booking id (bk_...).")]
