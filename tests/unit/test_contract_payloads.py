"""What crosses the workflow boundary stays readable: payloads written before a contract lost a
field or gained an enum still decode, and the enums encode as the strings histories hold."""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from workflows import contracts
from workflows.contracts import (
    BookingError,
    CancellationStatus,
    ErrorType,
    IntentStatus,
    ReleaseStatus,
    VoidStatus,
)

CONVERTER = DataConverter.default.payload_converter


def decoded(type_hint: type[Any], value: dict[str, Any]) -> Any:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())
    [result] = CONVERTER.from_payloads([payload], [type_hint])
    return result


def encoded(value: object) -> Any:
    [payload] = CONVERTER.to_payloads([value])
    return json.loads(payload.data)


def test_inputs_written_with_the_supplier_field_still_decode() -> None:
    hold = decoded(
        contracts.HoldItemInput,
        {"booking_id": "bk", "item_id": "it", "offer_id": "of", "quantity": 1, "supplier": "sup"},
    )
    cancel = decoded(
        contracts.CancelItemInput,
        {"booking_id": "bk", "item_id": "it", "supplier_ref": "ref", "supplier": "sup"},
    )
    assert hold == contracts.HoldItemInput("bk", "it", "of", 1)
    assert cancel == contracts.CancelItemInput("bk", "it", supplier_ref="ref")


def test_a_quote_written_with_its_hold_ttl_still_decodes() -> None:
    quote = decoded(
        contracts.ItemQuote,
        {
            "offer_id": "of",
            "kind": "flight",
            "supplier": "sup",
            "price": {"amount_minor": 100, "currency": "EUR"},
            "cancellation": {"refundable": True, "free_until": None, "fee_bps": 0},
            "hold_ttl_seconds": 1800,
        },
    )
    assert quote.offer_id == "of" and quote.price.amount_minor == 100


def test_statuses_decode_from_and_encode_to_the_same_strings() -> None:
    release = decoded(contracts.ItemRelease, {"status": "expired"})
    cancellation = decoded(contracts.ItemCancellation, {"status": "cancelled", "fee": None})
    void = decoded(contracts.PaymentVoid, {"status": "refunded", "refunded": None})
    state = decoded(contracts.PaymentState, {"payment_intent_id": "pi", "status": "succeeded"})
    assert release.status is ReleaseStatus.EXPIRED
    assert cancellation.status is CancellationStatus.CANCELLED
    assert void.status is VoidStatus.REFUNDED
    assert state.status is IntentStatus.SUCCEEDED
    assert encoded(contracts.PaymentVoid(VoidStatus.VOIDED))["status"] == "voided"
    assert encoded(BookingError(ErrorType.SOLD_OUT, "gone")) == {
        "type": "SOLD_OUT",
        "message": "gone",
    }


def test_an_error_type_that_is_not_ours_reads_as_internal() -> None:
    error = decoded(BookingError, {"type": "KeyError", "message": "offer"})
    assert error == BookingError(ErrorType.INTERNAL, "offer")
    assert ErrorType("SOLD_OUT") is ErrorType.SOLD_OUT
