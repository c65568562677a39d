"""The OpenAPI examples too large to read beside their fields (one-line ones stay there).

They tell one story: one customer books one flight offer, so the docs page reads as one booking
from checkout to the staff list.
"""

from __future__ import annotations

from typing import Any

BOOKING_CREATE: dict[str, Any] = {
    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
    "travellers": [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "birth_date": "1990-12-10",
            "document_number": "X1234567",
        }
    ],
    "items": [
        {
            "offer_id": "fl-aurora-cdg-jfk",
            "quantity": 1,
            "expected_price": {"amount": 60000, "currency": "EUR"},
            "optional": False,
        }
    ],
    "payment": {"payment_method": "pm_card_visa"},
}


BOOKING_ACCEPTED: dict[str, Any] = {
    "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
    "status": "RECEIVED",
    "access_token": "q8Xb6m0c1nV4yGkq3u0dY7bq2rB5f3J9c8aW1e2Zx0s",
    "links": {"self": "/bookings/bk_3f9a1c0d5e7b2a4c6d8e0f12"},
}


BOOKING: dict[str, Any] = {
    "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
    "status": "CONFIRMED",
    "step": "CONFIRMED",
    "items": [
        {
            "item_id": "it_1",
            "offer_id": "fl-aurora-cdg-jfk",
            "kind": "flight",
            "optional": False,
            "quantity": 1,
            "status": "CONFIRMED",
            "supplier": "aurora-air",
            "supplier_ref": "AUR-7K2M9Q",
            "confirmation_code": "QX7T2M",
            "price": {"amount": 60000, "currency": "EUR"},
            "held_price": None,
            "cancellation": {
                "refundable": True,
                "free_until": "2020-01-01T00:00:00+00:00",
                "fee_bps": 1000,
                "cancellable": True,
            },
            "cancellation_fee": None,
            "error": None,
        }
    ],
    "payment": {
        "status": "CAPTURED",
        "authorized": {"amount": 60000, "currency": "EUR"},
        "captured": {"amount": 60000, "currency": "EUR"},
        "refunded": {"amount": 0, "currency": "EUR"},
        "fees_kept": {"amount": 0, "currency": "EUR"},
        "fees_absorbed": {"amount": 0, "currency": "EUR"},
        "payment_intent_id": "pi_3PqL0a2eZvKYlo2C",
        "client_secret": None,
    },
    "timeline": [
        {
            "seq": 1,
            "at": "2026-05-04T10:00:00.120000+00:00",
            "step": "RECEIVED",
            "outcome": "ok",
            "detail": "1 item(s)",
            "actor": None,
        },
        {
            "seq": 5,
            "at": "2026-05-04T10:00:00.480000+00:00",
            "step": "HOLD it_1",
            "outcome": "ok",
            "detail": "until 2026-05-04T10:30:00+00:00",
            "actor": None,
        },
    ],
    "error": None,
    "expected_total": {"amount": 60000, "currency": "EUR"},
    "quoted_total": {"amount": 60000, "currency": "EUR"},
    "attention": None,
    "created_at": "2026-05-04T10:00:00.100000+00:00",
    "updated_at": "2026-05-04T10:00:01.900000+00:00",
}


ADMIN_BOOKING: dict[str, Any] = {
    **BOOKING,
    "workflow_id": "booking-bk_3f9a1c0d5e7b2a4c6d8e0f12",
    "customer_ref": "cref_9b1d3c2a7e5f4d6c8b0a1e2f3d4c5b6a",
    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
    "travellers": [
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "birth_date": "1990-12-10",
            "document_hint": "4567",
        }
    ],
    "audit": BOOKING["timeline"],
}


BOOKING_LIST: dict[str, Any] = {
    "bookings": [
        {
            "booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12",
            "status": "NEEDS_ATTENTION",
            "step": "UNDO CANCEL it_1",
            "customer_email": "ada@example.com",
            "customer_name": "Ada Lovelace",
            "total": {"amount": 60000, "currency": "EUR"},
            "suppliers": ["aurora-air"],
            "created_at": "2026-05-04T10:00:00.100000+00:00",
            "updated_at": "2026-05-04T10:00:03.000000+00:00",
            "attention": {
                "step": "UNDO CANCEL it_1",
                "reason": "NOT_CANCELLABLE: refused by the supplier",
                "since": "2026-05-04T10:00:03.000000+00:00",
                "item_id": "it_1",
            },
        }
    ],
    "next_cursor": "WyIyMDI2LTA1LTA0VDEwOjAwOjAwLjEwMDAwMCswMDowMCIsImJrXzEiXQ",
}


CODEC_PAYLOADS: dict[str, Any] = {
    "payloads": [
        {
            "metadata": {"encoding": "anNvbi9wbGFpbg=="},
            "data": "eyJhY2NlcHQiOiB0cnVlfQ==",
        }
    ]
}


ERROR_RESPONSE: dict[str, Any] = {
    "error": {
        "code": "VALIDATION_ERROR",
        "message": "the request is invalid",
        "fields": [
            {
                "field": "items[0].quantity",
                "message": "Input should be greater than or equal to 1",
            }
        ],
    }
}
