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
