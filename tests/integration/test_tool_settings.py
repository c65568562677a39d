"""The operators' tools in production mode demand only the settings they use, and name the one
that is missing: `passage migrate` (and `python -m passage.migrate`), `passage check`,
`passage replay` and the staff commands, run as operators run them (a process with only their
variables)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from passage import migrate
from passage.codec import new_key

PASSAGE = str(Path(sys.executable).with_name("passage"))
#: Secrets that no tool may ask for: only the API (and for some the worker) uses them.
API_ONLY = ("PASSAGE_API_SECRET", "PASSAGE_CUSTOMER_REF_KEY", "PASSAGE_STRIPE_WEBHOOK_SECRET")


def run_tool(*argv: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run a tool in production mode with `variables` and nothing else of Passage's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PASSAGE_")}
    env.pop("DATABASE_URL", None)
    env.update(variables)
    return subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


def test_migrate_needs_the_database_and_the_codec_key_only(ledger_url: str) -> None:
    migrated = run_tool(
        PASSAGE, "migrate", "upgrade", DATABASE_URL=ledger_url, PASSAGE_CODEC_KEY=new_key()
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "0005"
    assert migrate.current(ledger_url) == "0005"
    # `current` reads the revision: the database is all it needs.
    current = run_tool(PASSAGE, "migrate", "current", DATABASE_URL=ledger_url)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == "0005"


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({"PASSAGE_CODEC_KEY": new_key()}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:////nonexistent/ledger.sqlite3"}, "PASSAGE_CODEC_KEY"),
    ],
)
def test_migrate_names_what_it_lacks_and_nothing_else(
    variables: dict[str, str], missing: str
) -> None:
    refused = run_tool(PASSAGE, "migrate", "upgrade", **variables)
    assert refused.returncode == 2
    assert refused.stderr.startswith("passage migrate cannot start")
    assert missing in refused.stderr and "Traceback" not in refused.stderr
    assert not any(secret in refused.stderr for secret in API_ONLY)


def test_python_m_passage_migrate_takes_the_database_from_the_command_line(
    ledger_url: str,
) -> None:
    """As docker-compose's one-shot `migrate` service runs it."""
    migrated = run_tool(
        sys.executable,
        "-m",
        "passage.migrate",
        "upgrade",
        "--database-url",
        ledger_url,
        PASSAGE_CODEC_KEY=new_key(),
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrate.current(ledger_url) == "0005"


@pytest.mark.parametrize(
    ("command", "missing"),
    [("check", {"DATABASE_URL", "PASSAGE_CODEC_KEY"}), ("replay", {"PASSAGE_CODEC_KEY"})],
)
def test_check_and_replay_name_what_they_read_not_the_api_secrets(
    command: str, missing: set[str]
) -> None:
    refused = run_tool(PASSAGE, command)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"passage {command} cannot start")
    named = {name for name in ("DATABASE_URL", "PASSAGE_CODEC_KEY") if name in refused.stderr}
    assert named == missing
    assert not any(secret in refused.stderr for secret in API_ONLY)


def test_the_staff_commands_need_a_staff_key_and_no_secret() -> None:
    no_key = run_tool(PASSAGE, "bookings", "list")
    assert no_key.returncode == 2 and "PASSAGE_STAFF_KEY" in no_key.stderr
    # With a key they go to the API (here: nobody listens), not to the settings' secrets.
    unreachable = run_tool(
        PASSAGE,
        "bookings",
        "list",
        PASSAGE_STAFF_KEY="staff-key",
        PASSAGE_API_URL="http://127.0.0.1:9",
    )
    assert unreachable.returncode == 3, unreachable.stderr  # unavailable: try again
    assert "cannot reach the API" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
