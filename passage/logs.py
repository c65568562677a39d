"""structlog set-up for the worker, the API and the tools: JSON lines, ids only, no PII."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

import structlog

#: Query parameters whose values uvicorn's access log keeps; every other value is replaced, so a
#: staff search by e-mail (`/admin/bookings?email=...`) does not write the address to the log.
LOGGED_QUERY_PARAMS = frozenset(
    {"status", "supplier", "kind", "limit", "created_from", "created_to"}
)
REDACTED = "REDACTED"
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}")


def configure(level: str = "INFO", *, json: bool = True) -> None:
    logging.basicConfig(level=level, format="%(message)s")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
    )
    # uvicorn configures its loggers after this, but keeps the logger objects and their filters.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryValues) for f in access.filters):
        access.addFilter(RedactQueryValues())


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
