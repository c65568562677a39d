"""Failure classification shared by every adapter: refusals are final, transport trouble is not."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from workflows.contracts import ErrorType


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
    """A failure that may pass on retry (5xx, timeout, connection refused); Temporal retries it."""

    def to_application_error(self) -> ApplicationError:
        return ApplicationError(str(self), type=ErrorType.SUPPLIER_UNAVAILABLE.value)
