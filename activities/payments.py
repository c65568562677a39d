"""Payment activities: the workflow's only way to the card processor, through the PaymentGateway.

Each activity is one gateway call. Refusals leave as non-retryable ApplicationErrors typed by
cause and transport trouble as retryable ones, so the workflow's retry policy alone decides what
happens next. Logs carry ids and statuses only: never card data, client secrets or personal data.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from activities.errors import application_errors
from activities.ports import PaymentGateway
from workflows import contracts
from workflows.contracts import ActivityName


class PaymentActivities:
    """Authorize, read, void, capture and refund a booking's payment."""

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway
        self._log = structlog.get_logger(__name__)

    @activity.defn(name=ActivityName.AUTHORIZE_PAYMENT.value)
    async def authorize_payment(
        self, request: contracts.AuthorizePaymentInput
    ) -> contracts.PaymentAuthorization:
        with application_errors(
            self._log, "payment", ActivityName.AUTHORIZE_PAYMENT, booking_id=request.booking_id
        ):
            result = await self._gateway.authorize(request)
        self._log.info(
            "payment.authorized",
            booking_id=request.booking_id,
            payment_intent_id=result.payment_intent_id,
            status=result.status,
            amount_minor=result.amount.amount_minor,
            currency=result.amount.currency,
        )
        return result

    @activity.defn(name=ActivityName.GET_PAYMENT.value)
    async def get_payment(self, request: contracts.GetPaymentInput) -> contracts.PaymentState:
        with application_errors(
            self._log,
            "payment",
            ActivityName.GET_PAYMENT,
            payment_intent_id=request.payment_intent_id,
        ):
            return await self._gateway.get(request)

    @activity.defn(name=ActivityName.VOID_PAYMENT.value)
    async def void_payment_if_present(
        self, request: contracts.VoidPaymentInput
    ) -> contracts.PaymentVoid:
        booking_id = request.authorization.booking_id
        with application_errors(
            self._log, "payment", ActivityName.VOID_PAYMENT, booking_id=booking_id
        ):
            result = await self._gateway.void(request)
        self._log.info(
            "payment.voided",
            booking_id=booking_id,
            payment_intent_id=request.payment_intent_id,
            status=result.status,
            refunded_minor=result.refunded.amount_minor if result.refunded else None,
        )
        return result

    @activity.defn(name=ActivityName.CAPTURE_PAYMENT.value)
    async def capture_payment(
        self, request: contracts.CapturePaymentInput
    ) -> contracts.PaymentCapture:
        with application_errors(
            self._log, "payment", ActivityName.CAPTURE_PAYMENT, booking_id=request.booking_id
        ):
            result = await self._gateway.capture(request)
        self._log.info(
            "payment.captured",
            booking_id=request.booking_id,
            payment_intent_id=request.payment_intent_id,
            amount_minor=result.amount.amount_minor,
        )
        return result

    @activity.defn(name=ActivityName.REFUND_PAYMENT.value)
    async def refund_payment(
        self, request: contracts.RefundPaymentInput
    ) -> contracts.PaymentRefund:
        with application_errors(
            self._log, "payment", ActivityName.REFUND_PAYMENT, booking_id=request.booking_id
        ):
            result = await self._gateway.refund(request)
        self._log.info(
            "payment.refunded",
            booking_id=request.booking_id,
            payment_intent_id=request.payment_intent_id,
            refund_id=result.refund_id,
            reason=request.reason,
            amount_minor=result.amount.amount_minor,
        )
        return result
