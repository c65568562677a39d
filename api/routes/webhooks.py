"""Stripe webhooks: verify, deduplicate, signal the booking's workflow. Nothing slow here."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Header, Request

from api.deps import ServiceDep, SettingsDep
from api.errors import ApiError, error_responses
from api.schemas.webhooks import WebhookReceipt
from api.service import WebhookOutcome

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,255}")


@router.post(
    "/stripe",
    response_model=WebhookReceipt,
    summary="Receive a Stripe event",
    responses=error_responses(400, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": "A Stripe Event, signed"},
                    "example": {
                        "id": "evt_1PqL0a2eZvKYlo2C",
                        "object": "event",
                        "type": "payment_intent.amount_capturable_updated",
                        "data": {
                            "object": {
                                "id": "pi_3PqL0a2eZvKYlo2C",
                                "object": "payment_intent",
                                "metadata": {"booking_id": "bk_3f9a1c0d5e7b2a4c6d8e0f12"},
                            }
                        },
                    },
                }
            },
        }
    },
)
async def stripe_webhook(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    stripe_signature: Annotated[
        str | None,
        Header(alias="Stripe-Signature", description="t=<timestamp>,v1=<HMAC-SHA256>"),
    ] = None,
) -> WebhookReceipt:
    """Verify the signature, then hand `payment_intent.*` events to their booking, once per id.

    Unsigned, badly signed or malformed: 400 and nothing changes. Other event types and events
    of bookings Passage does not know: 200, ignored. 503 only when the workflow could not be
    signalled; the event is then not marked, so Stripe's redelivery is processed.
    """
    payload = await request.body()
    if not stripe_signature:
        raise ApiError(400, "missing Stripe-Signature header", code="INVALID_SIGNATURE")
    try:
        stripe.Webhook.construct_event(payload, stripe_signature, settings.stripe_webhook_secret)
    except stripe.SignatureVerificationError as err:
        raise ApiError(400, "invalid Stripe-Signature", code="INVALID_SIGNATURE") from err
    except ValueError as err:
        raise ApiError(400, "the event is not valid JSON", code="MALFORMED_EVENT") from err
    event = _parse(payload)
    event_type = event["type"]
    if not event_type.startswith("payment_intent."):
        return WebhookReceipt(outcome=WebhookOutcome.IGNORED.value)
    intent = event["data"]["object"]
    metadata = intent.get("metadata")
    booking_id = metadata.get("booking_id") if isinstance(metadata, dict) else None
    if not isinstance(booking_id, str) or not booking_id:
        return WebhookReceipt(outcome=WebhookOutcome.IGNORED.value)
    outcome = await service.forward_payment_event(event["id"], event_type, intent["id"], booking_id)
    return WebhookReceipt(outcome=outcome.value)


def _parse(payload: bytes) -> dict[str, Any]:
    """The verified event's fields Passage reads, or 400 when they are not there."""
    try:
        event = json.loads(payload)
        ok = (
            isinstance(event, dict)
            and isinstance(event.get("id"), str)
            and _EVENT_ID.fullmatch(event["id"]) is not None
            and isinstance(event.get("type"), str)
        )
        if ok and event["type"].startswith("payment_intent."):
            intent = event["data"]["object"]
            ok = isinstance(intent, dict) and isinstance(intent.get("id"), str)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ApiError(400, "not a Stripe event Passage can read", code="MALFORMED_EVENT")
    result: dict[str, Any] = event
    return result
