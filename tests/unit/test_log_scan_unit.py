"""`passage.logs.LogScan`: every forbidden value and shape found, shown masked, nothing else."""

from __future__ import annotations

from pathlib import Path

from passage import logs

TOKEN = "Jq3xV0b9mYtR2kLs8dHw1nZcE5uA7fGp4oQiKrTyWvM"  # 43 URL-safe characters


def scan() -> logs.LogScan:
    found = logs.LogScan()
    found.forbid("traveller last name", "Quillfeather")
    found.forbid("e-mail", "zq.leak@example.org")
    found.forbid("nothing", "")
    found.forbid_shape("access token", logs.ACCESS_TOKEN_SHAPE, only=[TOKEN])
    found.forbid_shape("a client secret", logs.CLIENT_SECRET)
    return found


def test_values_and_shapes_are_found_in_every_line_and_shown_masked() -> None:
    lines = [
        '{"event": "supplier.held", "booking_id": "bk_1"}',
        "hold for Quillfeather, mail zq.leak@example.org",
        f"GET /bookings/bk_1 Authorization: Bearer {TOKEN}",
        "confirm pi_3Abc_secret_XyZ in the browser",
    ]

    leaks = scan().scan(lines, "api.log")

    assert [(leak.where, leak.what) for leak in leaks] == [
        ("api.log:2", "traveller last name"),
        ("api.log:2", "e-mail"),
        ("api.log:3", "access token"),
        ("api.log:4", "a client secret"),
    ]
    assert leaks[0].line == "hold for <traveller last name>, mail <redacted>"
    assert TOKEN not in str(leaks[2]) and "<access token>" in str(leaks[2])


def test_a_token_shaped_string_that_was_never_issued_and_allowed_lines_are_not_leaks(
    tmp_path: Path,
) -> None:
    other = "A" * 43
    log = tmp_path / "launcher.log"
    log.write_text(f"run {other}\n  Staff key    Quillfeather\nQuillfeather again\n")

    leaks = scan().scan_file(log, allowed=lambda line: line.startswith("  Staff key"))

    assert [(leak.where, leak.what) for leak in leaks] == [
        ("launcher.log:3", "traveller last name")
    ]
