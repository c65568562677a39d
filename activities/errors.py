"""Failure classification shared by every adapter: refusals are final, transport trouble is not.

Adapters raise `BusinessError` or `TransientError`; every activity turns them into the
ApplicationError Temporal acts on in one place, `application_errors`, which also logs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.contracts import ActivityName, ErrorType


class BusinessError(Exception):
    """A refusal by a supplier or the payment provider (sold out, declined, not cancellable...)."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def to_application_error(self) -> ApplicationError:
        """The non-retryable ApplicationError the workflow sees, typed by cause."""
        return ApplicationError(self.message, type=self.error_type.value, non_retryable=True)


class TransientError(Exception):
    """A failure that may pass on retry (5xx, timeout, connection refused); Temporal retries it.

    `error_type` names whose outage it is, so the workflow can tell a supplier that is down
    (SUPPLIER_UNAVAILABLE) from a payment provider that is (PAYMENT_UNAVAILABLE).
    """

    def __init__(
        self, message: str, error_type: ErrorType = ErrorType.SUPPLIER_UNAVAILABLE
    ) -> None:
        super().__init__(message)
        self.error_type = error_type

    def to_application_error(self) -> ApplicationError:
        """The retryable ApplicationError the workflow sees, typed by whose outage it is."""
        return ApplicationError(str(self), type=self.error_type.value, non_retryable=False)


@contextlib.contextmanager
def application_errors(
    log: structlog.typing.FilteringBoundLogger, area: str, name: ActivityName, **ids: object
) -> Iterator[None]:
    """Turn an adapter's classified failure into the ApplicationError Temporal acts on.

    A refusal is final (the saga decides what follows), transport trouble is retried by the
    activity's retry policy; both are logged as `<area>.refused` / `<area>.unavailable` with the
    activity, its attempt and `ids` (ids and references only, never personal data).
    """
    try:
        yield
    except (BusinessError, TransientError) as error:
        refused = isinstance(error, BusinessError)
        # A refusal's message may quote the supplier or the card processor: only its type is logged.
        detail = {} if refused else {"error": str(error)}
        log.warning(
            f"{area}.refused" if refused else f"{area}.unavailable",
            activity=name.value,
            attempt=activity.info().attempt,
            error_type=error.error_type.value,
            **detail,
            **ids,
        )
        raise error.to_application_error() from error
