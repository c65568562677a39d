"""Databases for the ledger tests on both backends: PostgreSQL databases and SQLite files.

PostgreSQL comes from `PASSAGE_TEST_POSTGRES_URL` (default: the CI server on 127.0.0.1:5432, user
postgres, trust auth). When nothing answers there, a throwaway cluster is started from the
machine's own PostgreSQL binaries in a temporary directory on a free port, and removed at the end;
without binaries the tests fail saying what to install. Migration tests get a uniquely named
empty database each, dropped afterwards; store tests share one migrated database per session,
emptied before each test, so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import activities.adapters.tables  # noqa: F401  (the ledger tables on SQLModel.metadata)
from activities.adapters.sql_engine import make_engine
from activities.adapters.sql_store import SqlBookingStore
from passage import migrate
from passage.codec import LedgerCipher, new_key
from passage.dev.supervisor import free_ports

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

INSTALL_HINT = (
    "The ledger tests need PostgreSQL: none answers at {url} and no PostgreSQL server binaries "
    "(initdb, pg_ctl) were found in /usr/lib/postgresql/*/bin or on PATH to start a throwaway one. "
    "Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install "
    "postgresql-server`; macOS: `brew install postgresql@15`) or point PASSAGE_TEST_POSTGRES_URL "
    "at a server where the user may create databases."
)


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on; `admin_url` names its maintenance database."""

    admin_url: str

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` on this server (psycopg 3 driver)."""
        url = make_url(self.admin_url).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        url = make_url(self.admin_url)
        return psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        )

    @contextmanager
    def database(self) -> Iterator[str]:
        """Create a uniquely named empty database; drop it on exit even if connections remain."""
        name = f"passage_test_{uuid.uuid4().hex[:12]}"
        with self.connect() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.database_url(name)
        finally:
            with self.connect() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The configured PostgreSQL server, or a throwaway cluster when none answers."""
    admin_url = os.environ.get("PASSAGE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
    server = PostgresServer(admin_url)
    try:
        server.connect().close()
    except psycopg.OperationalError:
        pass
    else:
        yield server
        return
    with _throwaway_cluster(admin_url) as started:
        yield started


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty, uniquely named database; dropped (even with open connections) afterwards."""
    with postgres_server.database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet, in a directory that does not exist yet either."""
    return f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn: the same tests run on both."""
    fixture = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """`database_url` with every migration applied: a fresh database the test may even downgrade."""
    migrate.upgrade(database_url)
    return database_url


@pytest.fixture(scope="session")
def postgres_ledger_url(postgres_server: PostgresServer) -> Iterator[str]:
    """One migrated PostgreSQL database for the whole session (CREATE DATABASE costs ~0.3 s)."""
    with postgres_server.database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_database_url(request: pytest.FixtureRequest) -> str:
    """A migrated ledger holding no rows, on each backend in turn.

    PostgreSQL reuses the session's database and empties it (TRUNCATE does not fire the event
    log's append-only row triggers); SQLite gets a new file, which is cheaper than emptying one.
    """
    if request.param == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
        migrate.upgrade(url)
        return url
    url = str(request.getfixturevalue("postgres_ledger_url"))
    engine = make_engine(url)
    try:
        tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables}"))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def ledger_engine(ledger_database_url: str) -> Iterator[Engine]:
    """An engine on an empty migrated ledger, for tests that look at the rows themselves."""
    engine = make_engine(ledger_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def ledger_key() -> str:
    """The codec key of the session's ledgers: the store tests' and the engine's (one database)."""
    return new_key()


@pytest.fixture
def ledger_cipher(ledger_key: str) -> LedgerCipher:
    return LedgerCipher(ledger_key)


@pytest.fixture
def store(ledger_engine: Engine, ledger_cipher: LedgerCipher) -> SqlBookingStore:
    """The ledger store on an empty migrated database of each backend."""
    return SqlBookingStore(ledger_engine, ledger_cipher)


# --- the throwaway cluster -----------------------------------------------------------------------


@contextmanager
def _throwaway_cluster(unreachable_url: str) -> Iterator[PostgresServer]:
    """initdb + pg_ctl in a temporary directory on a free port; stopped and deleted on exit."""
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT.format(url=unreachable_url), pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="passage-pg-"))
    data, log = root / "data", root / "server.log"
    user = _unprivileged_user(root)
    port = free_ports("127.0.0.1", 1)[0]
    try:
        _run(user, log, bin_dir / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-F -p {port} -k {root} -c listen_addresses=127.0.0.1"
        _run(user, log, bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options,
             "-w", "-t", "60", "start")  # fmt: skip
        try:
            yield PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        finally:
            _run(user, log, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(user: str | None, log: Path, *command: str | Path) -> None:
    argv = [str(part) for part in command]
    if user is not None:
        runuser = shutil.which("runuser")
        argv = (
            [runuser, "-u", user, "--", *argv]
            if runuser
            else ["su", "-s", "/bin/sh", user, "-c", shlex.join(argv)]
        )
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        pytest.fail(
            f"throwaway PostgreSQL: {shlex.join(argv)} failed:\n"
            f"{result.stdout}{result.stderr}{server_log}",
            pytrace=False,
        )


def _postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian layout first, then PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: _major(path), reverse=True
    )
    candidates += glob.glob("/usr/pgsql-*/bin") + glob.glob("/opt/homebrew/opt/postgresql*/bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        directory = Path(candidate)
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _major(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def _unprivileged_user(root: Path) -> str | None:
    """initdb refuses to run as root: then the cluster runs as `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        try:
            shutil.chown(root, user=user)
        except (LookupError, PermissionError):
            continue
        return user
    pytest.fail(
        "running as root and no unprivileged `postgres` or `nobody` user exists for a "
        "throwaway PostgreSQL cluster; set PASSAGE_TEST_POSTGRES_URL to a running server",
        pytrace=False,
    )
