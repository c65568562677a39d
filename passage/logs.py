"""structlog set-up for the worker, the API and the tools: JSON lines (or readable ones in
development), ids only, no PII; the ids of the activity or workflow a line comes from are fields
of it (`ActivityLogContext`, `temporal_ids`).

And `LogScan`, which proves it: the log-scan test and `make chaos` look for every piece of
personal data, token, card number and secret they used in every line the processes logged.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import structlog
import temporalio.worker
from temporalio import activity, workflow

from workflows.model import workflow_id_for

#: Query parameters whose values uvicorn's access log keeps; every other value is replaced, so a
#: staff search by e-mail (`/admin/bookings?email=...`) does not write the address to the log.
LOGGED_QUERY_PARAMS = frozenset(
    {"status", "supplier", "kind", "limit", "created_from", "created_to"}
)
REDACTED = "REDACTED"
#: Workflow id = `booking-<booking_id>`: the booking id of a workflow's or activity's line.
WORKFLOW_ID_PREFIX = workflow_id_for("")
#: The `extra` key whose dict a workflow's `workflow.logger` call adds as fields of its line.
WORKFLOW_FIELDS_EXTRA = "passage"
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}")


def configure(level: str = "INFO", *, json: bool = True) -> None:
    """structlog's lines and every stdlib record (uvicorn's access line, the Temporal SDK's
    workflow and activity loggers, httpx...) in one format: JSON lines, or readable lines for a
    person (`PASSAGE_LOG_FORMAT=console`), each with the context bound for it (request id,
    booking id, workflow and activity ids)."""
    # JSON lines carry an exception's traceback as text (no frame locals: they may hold
    # traveller data); the console renderer prints it itself.
    rendering: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if json
        # Colours only on a terminal: `make up` writes each process's lines to a file.
        else [
            structlog.dev.ConsoleRenderer(
                colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
    )
    root = logging.getLogger()
    root.setLevel(level)
    for handler in [h for h in root.handlers if isinstance(h, _StdoutHandler)]:
        root.removeHandler(handler)
    handler = _StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                temporal_ids,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root.addHandler(handler)
    # The SDK's loggers put their ids on the record (`temporal_ids` makes them fields), so the
    # copy they would append to each message is left out.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    # uvicorn configures its loggers after this, but keeps the logger objects and their filters.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryValues) for f in access.filters):
        access.addFilter(RedactQueryValues())


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is now (as structlog's own lines do), so a captured or
    redirected stdout gets the stdlib records too."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def temporal_ids(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The ids the Temporal SDK puts on its workflow and activity loggers' records (`extra`
    `temporal_workflow` / `temporal_activity`), as the same fields the activities bind.

    `workflow.logger` is replay-safe (quiet while a history replays); its records carry the
    workflow's ids, and the booking id is the workflow id's tail (`booking-<booking_id>`). A
    workflow's own fields come in the WORKFLOW_FIELDS_EXTRA dict (`extra={"passage": {...}}`).
    """
    record = event.get("_record")
    fields = getattr(record, WORKFLOW_FIELDS_EXTRA, None)
    if isinstance(fields, dict):
        for name, value in fields.items():
            event.setdefault(str(name), str(value))
    info = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
    if isinstance(info, dict):
        workflow_id = info.get("workflow_id")
        if isinstance(workflow_id, str):
            event.setdefault("workflow_id", workflow_id)
            if workflow_id.startswith(WORKFLOW_ID_PREFIX):
                event.setdefault("booking_id", workflow_id.removeprefix(WORKFLOW_ID_PREFIX))
        run_id = info.get("run_id", info.get("workflow_run_id"))
        if run_id is not None:
            event.setdefault("run_id", run_id)
        for name in ("workflow_type", "activity_type", "attempt"):
            if info.get(name) is not None:
                event.setdefault(name, info[name])
    return event


def activity_ids() -> dict[str, object]:
    """The current activity's correlation fields (call inside an activity)."""
    info = activity.info()
    ids: dict[str, object] = {
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "activity_type": info.activity_type,
        "attempt": info.attempt,
    }
    if info.workflow_id and info.workflow_id.startswith(WORKFLOW_ID_PREFIX):
        ids["booking_id"] = info.workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
    return ids


class ActivityLogContext(temporalio.worker.Interceptor):
    """Worker interceptor: every line an activity logs (structlog) carries its booking id,
    workflow id, run id, activity type and attempt."""

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityIds(next)


class _ActivityIds(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        with structlog.contextvars.bound_contextvars(**activity_ids()):
            return await super().execute_activity(input)


class RedactQueryValues(logging.Filter):
    """Rewrites uvicorn's access line (`client - "METHOD path?query HTTP/v" status`) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_query(args[2]), *args[3:])
        return True


def redact_query(path: str) -> str:
    """`/admin/bookings?email=a%40b.c&limit=5` -> `/admin/bookings?email=REDACTED&limit=5`."""
    base, question, query = path.partition("?")
    if not question:
        return path
    pairs = []
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        if unquote_plus(name) in LOGGED_QUERY_PARAMS:
            pairs.append(pair)
        elif _PARAM_NAME.fullmatch(unquote_plus(name)) and equals:
            pairs.append(f"{name}={REDACTED}")
        elif pair:
            pairs.append(REDACTED)  # a bare value or an odd name may itself be personal data
    return f"{base}?{'&'.join(pairs)}"


# --- scanning logs for what must never be in them ------------------------------------------------

#: A PaymentIntent's client secret (`pi_..._secret_...`): the key to confirm it in the browser.
CLIENT_SECRET = re.compile(r"pi_\w+_secret_\w+")
#: A booking access token as `api.identity.BookingKeys` makes it: 43 URL-safe base64 chars.
ACCESS_TOKEN_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


@dataclass(frozen=True)
class Leak:
    """One forbidden value found in a log line; `line` shows it replaced by `<what>`."""

    where: str
    what: str
    line: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: {self.line}"


@dataclass
class LogScan:
    """What must not appear in any log line: exact values, and shapes (a pattern, optionally only
    the matches in a set: every access token issued, say, found by its shape).

    All the values are looked for in one pass per line, so a scan of a whole run stays quick.
    """

    values: dict[str, str] = field(default_factory=dict)
    shapes: list[tuple[str, re.Pattern[str], frozenset[str] | None]] = field(default_factory=list)

    def forbid(self, what: str, value: str) -> None:
        """`value` (what it is) must not appear; empty values are skipped."""
        if value:
            self.values.setdefault(value, what)

    def forbid_shape(
        self, what: str, pattern: re.Pattern[str], only: Iterable[str] | None = None
    ) -> None:
        """No match of `pattern` (or, with `only`, no match that is one of those values)."""
        self.shapes.append((what, pattern, None if only is None else frozenset(only)))

    def scan(
        self,
        lines: Iterable[str],
        where: str,
        allowed: Callable[[str], bool] | None = None,
    ) -> list[Leak]:
        """Every forbidden value in `lines` (named `where`), except in lines `allowed` accepts."""
        found: list[Leak] = []
        values = self._values_pattern()
        for number, line in enumerate(lines, start=1):
            if allowed is not None and allowed(line):
                continue
            hits: list[tuple[str, str]] = []
            if values is not None:
                hits += [(self.values[m.group()], m.group()) for m in values.finditer(line)]
            for what, pattern, only in self.shapes:
                hits += [
                    (what, m.group())
                    for m in pattern.finditer(line)
                    if only is None or m.group() in only
                ]
            for what, value in hits:
                shown = line
                for _, other in hits:
                    shown = shown.replace(other, f"<{what if other == value else 'redacted'}>")
                found.append(Leak(f"{where}:{number}", what, shown[:300]))
        return found

    def scan_file(self, path: Path, allowed: Callable[[str], bool] | None = None) -> list[Leak]:
        with path.open(encoding="utf-8", errors="replace") as lines:
            return self.scan(lines, path.name, allowed)

    def _values_pattern(self) -> re.Pattern[str] | None:
        if not self.values:
            return None
        # Longest first, so a value that contains another is reported as itself.
        ordered = sorted(self.values, key=len, reverse=True)
        return re.compile("|".join(re.escape(value) for value in ordered))
