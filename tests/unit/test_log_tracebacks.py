"""A logged exception keeps its traceback in the JSON line (it used to say `"exc_info": true`)."""

from __future__ import annotations

import json

import pytest
import structlog

from passage import logs


def test_a_logged_exception_carries_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", json=True)
    try:
        try:
            raise LookupError("no hold for bk_trace")
        except LookupError:
            structlog.get_logger("test").exception("hold lookup failed", booking_id="bk_trace")
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    finally:
        structlog.reset_defaults()
    assert line["event"] == "hold lookup failed" and line["booking_id"] == "bk_trace"
    assert "exc_info" not in line
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert 'raise LookupError("no hold for bk_trace")' in line["exception"]
    assert line["exception"].rstrip().endswith("LookupError: no hold for bk_trace")
