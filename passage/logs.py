"""structlog set-up for the worker, the API and the tools: JSON lines, ids only, no PII."""

from __future__ import annotations

import logging

import structlog


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
