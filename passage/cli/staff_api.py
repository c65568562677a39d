"""The staff HTTP API as the CLI calls it: one client, and its answers mapped to exit statuses.

A refusal (404, 409) is a failure (exit 1) with the API's own message; invalid input (400, 413,
422) and a refused staff key (401, 403) are usage or configuration errors (exit 2); no answer, a
5xx or a 429 mean the engine is unavailable for now (exit 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from passage.cli.exits import ExitCode, Failure
from passage.cli.staff_access import StaffAccess

Json = dict[str, Any]

#: The API's answer to a lookup of a booking it does not have (api/errors.py NOT_FOUND_MESSAGE).
_NO_SUCH_BOOKING = "no such booking"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Json

    @property
    def accepted(self) -> bool:
        """202: the booking took the command and is still carrying it out."""
        return self.status == 202


class StaffApi:
    """Calls `/admin/...` with the staff key; every failure is raised as a Failure."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    @classmethod
    @contextlib.contextmanager
    def opened(cls, access: StaffAccess, timeout: float = 60) -> Iterator[StaffApi]:
        headers = {"Authorization": f"Bearer {access.staff_key}"}
        with httpx.Client(base_url=access.api_url, headers=headers, timeout=timeout) as http:
            yield cls(http)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Json:
        return self.call("GET", path, params=params).body

    def post(self, path: str, body: Json) -> Answer:
        return self.call("POST", path, json=body)

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise Failure(
                ExitCode.UNAVAILABLE,
                f"cannot reach the API at {self._http.base_url}: {err}",
                code="UNREACHABLE",
            ) from err
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            raise _refusal(response, body if isinstance(body, dict) else {})
        return Answer(response.status_code, body if isinstance(body, dict) else {"value": body})


def is_missing_route(failure: Failure) -> bool:
    """Whether a 404/405 says the API has no such endpoint (an older release), not no booking."""
    return failure.status == 405 or (failure.status == 404 and failure.message != _NO_SUCH_BOOKING)


def _refusal(response: httpx.Response, body: Json) -> Failure:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    status = response.status_code
    message = str(error.get("message") or response.reason_phrase or status)
    fields = [f for f in error.get("fields") or [] if isinstance(f, dict)]
    code = str(error.get("code") or "HTTP_ERROR")
    if status in (401, 403):
        exit_code = ExitCode.USAGE
        message = f"the API refused the staff key ({status} {message})"
    elif status in (400, 413, 422):
        exit_code = ExitCode.USAGE
    elif status == 429 or status >= 500:
        exit_code = ExitCode.UNAVAILABLE
    else:
        exit_code = ExitCode.FAILED
    if fields:
        message += " (" + "; ".join(f"{f.get('field')}: {f.get('message')}" for f in fields) + ")"
    return Failure(exit_code, message, code=code, status=status, fields=fields)
