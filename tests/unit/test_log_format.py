"""PASSAGE_LOG_FORMAT: JSON lines outside development, readable lines in development, and the
stdlib records (uvicorn, the Temporal SDK's workflow logger) in the same format with the ids the
SDK put on them as fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from passage import logs
from passage.settings import Environment, LogFormat, Settings


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_StdoutHandler"]:
        root.removeHandler(handler)


def test_json_outside_development_console_in_development_unless_told() -> None:
    assert Settings(env=Environment.DEVELOPMENT).log_json is False
    production = Settings.for_process("the CLI", frozenset(), env=Environment.PRODUCTION)
    assert production.log_json is True
    told = Settings(env=Environment.DEVELOPMENT, log_format=LogFormat.JSON)
    assert told.log_json is True


def test_a_workflow_loggers_record_is_a_json_line_with_the_workflows_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("INFO", json=True)
    ids = {"workflow_id": "booking-bk_fmt", "run_id": "run-1", "workflow_type": "BookingWorkflow"}
    logging.getLogger("temporalio.workflow").info(
        "booking.status",
        extra={"temporal_workflow": {**ids, "attempt": 1}, "passage": {"status": "HOLDING"}},
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "booking.status" and line["logger"] == "temporalio.workflow"
    assert line["booking_id"] == "bk_fmt" and line["status"] == "HOLDING"
    assert {key: line[key] for key in ids} == ids and line["attempt"] == 1


def test_console_lines_are_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", json=False)
    structlog.get_logger("test").info("supplier.held", booking_id="bk_console")
    logging.getLogger("passage.test.stdlib").info("Application startup complete.")
    out = capsys.readouterr().out
    assert "supplier.held" in out and "bk_console" in out
    assert "Application startup complete." in out
    for line in out.strip().splitlines():
        with pytest.raises(ValueError):
            json.loads(line)
