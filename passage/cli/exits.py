"""The exit statuses of `passage`, and the one-line failure that carries one.

Scripts branch on these, so they are part of the command line's contract (README, "Support"):
0 done; 1 refused or failed (the API said no, an invariant is broken, a history is not
deterministic); 2 usage or configuration (bad arguments, no staff key, a refused key, an unsafe
config file, input the API rejects as invalid); 3 unavailable (the API, Temporal, the database or
a supplier did not answer, or answered 5xx/429: try again later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3


@dataclass
class Failure(Exception):
    """A failure reported in one line (no traceback), with the status the process exits with.

    `code` is a machine code (the API's error code when it answered one), `status` the HTTP
    status when the API answered, `fields` the API's field errors.
    """

    exit_code: ExitCode
    message: str
    code: str = "FAILED"
    status: int | None = None
    fields: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.status is not None:
            error["status"] = self.status
        if self.fields:
            error["fields"] = self.fields
        return {"error": error, "exit_code": int(self.exit_code)}
