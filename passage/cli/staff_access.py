"""Where the staff commands find the API and their staff key: never on the command line.

A key given as an argument lands in the shell's history and, while the command runs, in `ps` for
every user of the machine; so it comes from, in this order:

1. `PASSAGE_STAFF_KEY`, else the first of `PASSAGE_STAFF_KEYS` (the API's own list);
2. `staff_key` in the config file: `$PASSAGE_CONFIG`, else `config.toml` in the user's config
   directory (`~/.config/passage/config.toml` on Linux, `$XDG_CONFIG_HOME` honoured);
3. in development (`PASSAGE_ENV=development`) only: the key `make up` generated and keeps in its
   state directory (`.passage/staff_key`, or `$PASSAGE_STATE_DIR`).

The API is `PASSAGE_API_URL`, else `api_url` in the config file, else http://127.0.0.1:8000.

The config file is TOML with those two keys and no others (a misspelt `staf_key` would otherwise
be silently ignored). One that holds a staff key must be private to its owner, as ssh demands of
a private key: readable or writable by group or others, it is refused (exit 2) with the `chmod`
that fixes it. Every refusal here is a configuration error (exit 2) naming what to set.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import typer

from passage.cli.exits import ExitCode, Failure
from passage.settings import Environment, Settings
from passage.statefile import state_dir_from_env

CONFIG_KEYS = frozenset({"api_url", "staff_key"})


@dataclass(frozen=True)
class StaffAccess:
    """The API to call and the staff key to call it with; `key_source` says where it came from."""

    api_url: str
    staff_key: str = field(repr=False)
    key_source: str


def config_path(environ: Mapping[str, str]) -> Path:
    """`$PASSAGE_CONFIG`, else the user's `passage/config.toml`."""
    given = environ.get("PASSAGE_CONFIG", "").strip()
    if given:
        return Path(given).expanduser()
    return Path(typer.get_app_dir("passage")) / "config.toml"


def read_config(path: Path, *, required: bool) -> dict[str, str]:
    """The config file's settings ({} when there is none and none was asked for)."""
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            raw = file.read()
    except FileNotFoundError:
        if required:
            raise _config_error(f"PASSAGE_CONFIG names {path}, which does not exist") from None
        return {}
    except OSError as err:
        raise _config_error(f"cannot read the config file {path}: {err.strerror}") from err
    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise _config_error(f"the config file {path} is not valid TOML: {err}") from err
    unknown = sorted(set(values) - CONFIG_KEYS)
    if unknown:
        raise _config_error(
            f"the config file {path} has unknown keys {', '.join(unknown)} "
            f"(it knows {', '.join(sorted(CONFIG_KEYS))})"
        )
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise _config_error(f"{name} in the config file {path} must be a non-empty string")
    if "staff_key" in values and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _config_error(
            f"the config file {path} holds a staff key and others may read it "
            f"(mode {stat.filemode(mode)}): run chmod 600 {path}"
        )
    return {name: value.strip() for name, value in values.items()}


def staff_access(settings: Settings, environ: Mapping[str, str]) -> StaffAccess:
    """The API and staff key for the booking commands, or a configuration Failure (exit 2)."""
    path = config_path(environ)
    config = read_config(path, required=bool(environ.get("PASSAGE_CONFIG", "").strip()))
    key, source = _staff_key(settings, environ, config, path)
    if not key:
        raise Failure(
            ExitCode.USAGE,
            f"no staff key: set PASSAGE_STAFF_KEY, or staff_key in {path} (chmod 600); "
            "make up prints one and keeps it in .passage/staff_key",
            code="NO_STAFF_KEY",
        )
    if "api_url" in settings.model_fields_set:  # PASSAGE_API_URL wins over the file
        api_url = settings.api_url
    else:
        api_url = config.get("api_url", settings.api_url)
    return StaffAccess(api_url=api_url.rstrip("/"), staff_key=key, key_source=source)


def _staff_key(
    settings: Settings, environ: Mapping[str, str], config: Mapping[str, str], path: Path
) -> tuple[str, str]:
    if environ.get("PASSAGE_STAFF_KEY", "").strip():
        return environ["PASSAGE_STAFF_KEY"].strip(), "PASSAGE_STAFF_KEY"
    listed = [key.strip() for key in settings.staff_keys.split(",") if key.strip()]
    if listed:
        return listed[0], "PASSAGE_STAFF_KEYS"
    if config.get("staff_key"):
        return config["staff_key"], f"the config file {path}"
    if settings.env == Environment.DEVELOPMENT:
        kept = kept_by_make_up("staff_key", environ)
        if kept:
            return kept, "make up's state directory"
    return "", ""


def kept_by_make_up(name: str, environ: Mapping[str, str]) -> str:
    """A key `make up` generated and keeps in its state directory ("" when there is none)."""
    try:
        return (state_dir_from_env(environ) / name).read_text().strip()
    except OSError:
        return ""


def _config_error(message: str) -> Failure:
    return Failure(ExitCode.USAGE, message, code="BAD_CONFIG")
