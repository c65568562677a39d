"""One JSON error shape for every failure: `{"error": {"code", "message", "fields"?}}`.

Routes raise `ApiError`; the handlers here also turn FastAPI's validation errors, Starlette's
404/405 and the service's exceptions into that shape, so no response ever leaves in another one.
Bad input is always a 4xx; 503 is kept for a dependency (Temporal, the ledger) that did not answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from api.schemas.errors import ErrorDetail, ErrorResponse, FieldError
from api.service import BookingNotFound, EngineUnavailable, IdempotencyConflict, NotApplicable

log = structlog.get_logger("passage.api")

_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

_DESCRIPTIONS = {
    400: "Malformed request (e.g. a webhook without a valid signature)",
    401: "Missing or unknown staff key",
    404: "No such booking (or a wrong or missing access token)",
    409: "Conflicts with the booking's state or an earlier request",
    413: "The request body is larger than the endpoint's limit",
    422: "Invalid input; `fields` names every bad field",
    429: "Too many requests from this client or for this booking; retry after `Retry-After` s",
    503: "A dependency (Temporal, the ledger) did not answer; retry later",
}

NOT_FOUND_MESSAGE = "no such booking"
#: What FastAPI raises (HTTP 400) for a body it cannot decode at all.
_UNPARSABLE_BODY = "There was an error parsing the body"


class ApiError(Exception):
    """An HTTP failure with a machine code, raised by routes and dependencies."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        fields: Sequence[FieldError] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "ERROR")
        self.message = message
        self.headers = headers
        self.fields = fields


def not_found() -> ApiError:
    """The one 404 of booking lookups: identical whatever the reason, so it hints at nothing."""
    return ApiError(404, NOT_FOUND_MESSAGE)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all in the one shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    fields: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorDetail(
            code=code or _CODES.get(status, "ERROR"),
            message=message,
            fields=list(fields) if fields is not None else None,
        )
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def field_path(loc: Sequence[str | int]) -> str:
    """`("body", "items", 0, "quantity")` -> `items[0].quantity`; a header keeps its name."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, code=exc.code, fields=exc.fields, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "the request is invalid", fields=_validation_fields(request, exc)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            # FastAPI's answer to a body that is not even text: invalid input like any other.
            field = FieldError(field="body", message="the body is not valid JSON")
            return error_response(422, "the request is invalid", fields=[field])
        message = exc.detail if isinstance(exc.detail, str) else _CODES.get(exc.status_code, "")
        if exc.status_code == 404:
            message = "not found"
        return error_response(
            exc.status_code, message, headers=dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(BookingNotFound)
    async def _booking_not_found(_request: Request, _exc: BookingNotFound) -> JSONResponse:
        return error_response(404, NOT_FOUND_MESSAGE)

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(_request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return error_response(409, str(exc), code="IDEMPOTENCY_KEY_REUSED")

    @app.exception_handler(NotApplicable)
    async def _not_applicable(_request: Request, exc: NotApplicable) -> JSONResponse:
        return error_response(409, exc.reason, code="NOT_APPLICABLE")

    @app.exception_handler(EngineUnavailable)
    async def _engine(_request: Request, exc: EngineUnavailable) -> JSONResponse:
        return _unavailable(str(exc))

    @app.exception_handler(RPCError)
    async def _rpc(_request: Request, exc: RPCError) -> JSONResponse:
        log.warning("temporal call failed", status=str(exc.status), error=exc.message)
        return _unavailable("the booking engine is not answering")

    @app.exception_handler(OperationalError)
    async def _database(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("ledger unavailable", error=type(exc.orig).__name__)
        return _unavailable("the booking ledger is not answering")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", error=type(exc).__name__)
        return error_response(500, "internal error")


def _unavailable(message: str) -> JSONResponse:
    return error_response(503, message, headers={"Retry-After": "5"})


def _validation_fields(request: Request, exc: RequestValidationError) -> list[FieldError]:
    """Every bad field; cross-field rules of the body model are reported per offending field."""
    fields: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    cross_field = _cross_field_checker(request)
    for error in exc.errors():
        if cross_field is not None and error.get("type") == cross_field[1]:
            continue  # replaced by the precise per-field errors below
        _add(fields, seen, field_path(error.get("loc", ())), str(error.get("msg", "invalid")))
    if cross_field is not None:
        for loc, message in cross_field[0](exc.body):
            _add(fields, seen, field_path(loc), message)
    return fields


def _add(fields: list[FieldError], seen: set[tuple[str, str]], path: str, message: str) -> None:
    if (path, message) not in seen:
        seen.add((path, message))
        fields.append(FieldError(field=path, message=message))


def _cross_field_checker(request: Request) -> tuple[Any, str] | None:
    """The body model's `cross_field_errors` and its error type, if the route's body has one."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    for param in getattr(dependant, "body_params", []) or []:
        model = getattr(param.field_info, "annotation", None) or getattr(param, "type_", None)
        checker = getattr(model, "cross_field_errors", None)
        error_type = getattr(model, "CROSS_FIELD_ERROR_TYPE", None)
        if checker is not None and isinstance(error_type, str):
            return checker, error_type
    return None
