"""uvicorn's access log keeps the path and harmless query values, never an e-mail or a token."""

from __future__ import annotations

import logging

from passage.logs import RedactQueryValues, redact_query


def test_query_values_other_than_known_harmless_ones_are_redacted() -> None:
    assert redact_query("/bookings/bk_1") == "/bookings/bk_1"
    assert (
        redact_query("/admin/bookings?email=ada%40example.com&status=CONFIRMED&limit=5")
        == "/admin/bookings?email=REDACTED&status=CONFIRMED&limit=5"
    )
    assert redact_query("/admin/bookings?cursor=abc&token=t0k") == (
        "/admin/bookings?cursor=REDACTED&token=REDACTED"
    )
    assert redact_query("/x?ada%40example.com") == "/x?REDACTED"
    assert redact_query("/x?a%40b.c=1&&") == "/x?REDACTED"


def test_the_filter_rewrites_uvicorn_access_records() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/admin/bookings?email=ada%40example.com", "1.1", 200),
        None,
    )
    assert RedactQueryValues().filter(record)
    assert (
        record.getMessage() == '127.0.0.1:5000 - "GET /admin/bookings?email=REDACTED HTTP/1.1" 200'
    )
