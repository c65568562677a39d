"""The field types and limits of the API's bodies, and Money, the one amount shape."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from workflows import model as domain

#: Printable text with at least one non-blank character (no control characters reach the ledger).
_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_EMAIL = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=_EMAIL)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
OfferId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
PaymentMethodId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-]+$")
]
Note = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
StepName = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=r"^[\w ]+$")]
#: 10^10 minor units per item: far above any trip, far below int64 once summed.
MAX_AMOUNT_MINOR = 10_000_000_000
MAX_ITEMS = 10
MAX_TRAVELLERS = 9
MAX_QUANTITY = 99

_BIRTH_DATE = r"^(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


def _birth_date_string(value: Any) -> Any:
    """Only `YYYY-MM-DD` from 1900 on (pydantic would also take seconds since 1970)."""
    if not isinstance(value, str) or not re.fullmatch(_BIRTH_DATE, value):
        raise PydanticCustomError("date_format", "must be a date YYYY-MM-DD, 1900 or later")
    return value


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema means it: 3 or 3.0, never 3.5, "3" or true."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_type", "must be an integer")
        return int(value)
    return value


BirthDate = Annotated[
    date, BeforeValidator(_birth_date_string), Field(json_schema_extra={"pattern": _BIRTH_DATE})
]


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class Money(BaseModel):
    """An amount in integer minor units (cents) of one ISO 4217 currency."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": 60000, "currency": "EUR"}]}
    )

    amount: JsonInt = Field(ge=0, le=MAX_AMOUNT_MINOR, description="Minor units, e.g. cents.")
    currency: Currency = Field(description="ISO 4217 code, upper case.")

    @classmethod
    def of(cls, money: domain.Money) -> Money:
        return cls(amount=money.amount_minor, currency=money.currency)

    @classmethod
    def of_optional(cls, money: domain.Money | None) -> Money | None:
        return None if money is None else cls.of(money)
