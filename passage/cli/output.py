"""Where `passage` writes: JSON for scripts, rich text for people, one-line errors on stderr.

With `--json` standard output carries exactly one JSON document (the staff API's own answer for
the booking commands) and nothing else: no colour, no notes; a failure writes
`{"error": {"code", "message", "status"?, "fields"?}, "exit_code": N}` to standard error. Without
it, tables and timelines are drawn with rich, in colour on a terminal and as plain text (wide
enough not to wrap, unless `COLUMNS` says otherwise) when piped.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import typer
from rich.console import Console

from passage.cli.exits import Failure

#: Width of text written to a pipe or file: a table row stays one line for grep.
PIPE_WIDTH = 200


def console(stream: TextIO | None = None) -> Console:
    """A rich console on `stream` (standard output by default), made when a command runs."""
    stream = stream or sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(
        file=stream, highlight=False, soft_wrap=False, width=PIPE_WIDTH if piped else None
    )


class Output:
    """One command's output: `--json` or rich."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def show(self, answer: Any, render: Callable[[Console], None]) -> None:
        """`answer` as JSON, or drawn by `render` on a console."""
        if self.as_json:
            typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        else:
            render(console())

    def note(self, text: str) -> None:
        """A remark for people (never in JSON output), on standard error."""
        if not self.as_json:
            console(sys.stderr).print(text, style="dim")


def report(failure: Failure, as_json: bool) -> None:
    """A failure on standard error: one JSON document, or `passage: <message>`."""
    if as_json:
        typer.echo(json.dumps(failure.as_json(), ensure_ascii=False), err=True)
    else:
        console(sys.stderr).print(f"passage: {failure.message}", style="red", markup=False)
