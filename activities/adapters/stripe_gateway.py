"""StripePaymentGateway: the PaymentGateway port on Stripe PaymentIntents with manual capture.

Every write carries an idempotency key made of the booking id and the step, so a retried activity
gets Stripe's first answer back instead of a second charge; the SDK never retries by itself
(`max_network_retries=0`) because Temporal owns retries. State conflicts ("already captured",
"already canceled") are settled by re-reading the PaymentIntent, never by parsing messages, and
every other failure is classified in `classify_stripe_error` alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import stripe

from activities.errors import BusinessError, TransientError
from workflows import contracts
from workflows.contracts import ErrorType, IntentStatus, VoidStatus
from workflows.model import Money

#: States in which Stripe lets an intent be cancelled: nothing has been captured yet.
CANCELLABLE = frozenset(
    {
        IntentStatus.REQUIRES_CAPTURE,
        IntentStatus.REQUIRES_ACTION,
        IntentStatus.REQUIRES_CONFIRMATION,
        IntentStatus.REQUIRES_PAYMENT_METHOD,
    }
)
#: What `authorize` hands back; anything else after a confirm is a refusal.
AUTHORIZED = frozenset({IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION})


class StripePaymentGateway:
    """Card payments through a `stripe.StripeClient` configured for async use and no retries.

    The composition root builds the client (`worker.make_stripe_gateway`): adapters read no
    settings.
    """

    def __init__(
        self, client: stripe.StripeClient, http_client: stripe.HTTPXClient | None = None
    ) -> None:
        """Wrap `client`; pass `http_client` when this gateway owns it and must close it."""
        self._stripe = client.v1
        self._http_client = http_client

    async def aclose(self) -> None:
        """Close the HTTP connections this gateway opened (none when the client was passed in)."""
        if self._http_client is not None:
            await self._http_client.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe

    async def authorize(
        self, request: contracts.AuthorizePaymentInput
    ) -> contracts.PaymentAuthorization:
        """Create and confirm the booking's PaymentIntent; a retry replays the first answer."""
        with _translated_errors():
            intent = await self._create_authorization(request)
        if intent.status not in AUTHORIZED:
            raise _refusal(intent)
        return contracts.PaymentAuthorization(
            payment_intent_id=intent.id,
            status=IntentStatus(intent.status),
            amount=Money(intent.amount, intent.currency.upper()),
            client_secret=intent.client_secret
            if intent.status == IntentStatus.REQUIRES_ACTION
            else None,
        )

    async def get(self, request: contracts.GetPaymentInput) -> contracts.PaymentState:
        with _translated_errors():
            intent = await self._retrieve(request.payment_intent_id)
        error = intent.last_payment_error
        return contracts.PaymentState(
            payment_intent_id=intent.id,
            status=IntentStatus(intent.status),
            amount_capturable=intent.amount_capturable,
            amount_received=intent.amount_received,
            amount_refunded=_amount_refunded(intent),
            failure_message=error.message if error is not None else None,
        )

    async def void(self, request: contracts.VoidPaymentInput) -> contracts.PaymentVoid:
        """Leave nothing held or charged: cancel an authorization, refund a capture in full.

        Without a PaymentIntent id the authorize call's outcome was lost: replaying it with its
        idempotency key and parameters returns the intent it created (or its decline), so the
        same intent is found without a search. The replay's body is the first answer, so the
        intent is read again before deciding. `refunded` is the intent's total refunded after a
        capture was undone, which is the same on every retry.
        """
        booking_id = request.authorization.booking_id
        with _translated_errors():
            intent = await self._authorization_intent(request)
            if intent is None:
                return contracts.PaymentVoid(status=VoidStatus.ABSENT)
            if intent.status in CANCELLABLE:
                intent = await self._cancel(intent, booking_id)
            if intent.status == IntentStatus.CANCELED:
                return contracts.PaymentVoid(status=VoidStatus.VOIDED)
            if intent.status == IntentStatus.SUCCEEDED:
                return await self._refund_rest(intent, booking_id)
        raise TransientError(
            f"payment intent {intent.id} is {intent.status}; void it later",
            ErrorType.PAYMENT_UNAVAILABLE,
        )

    async def capture(self, request: contracts.CapturePaymentInput) -> contracts.PaymentCapture:
        """Capture `amount` of the authorization; an intent already captured reports its capture."""
        with _translated_errors():
            intent = await self._retrieve(request.payment_intent_id)
            if intent.status == IntentStatus.REQUIRES_CAPTURE:
                try:
                    intent = await self._stripe.payment_intents.capture_async(
                        intent.id,
                        params={"amount_to_capture": request.amount.amount_minor},
                        options={
                            "idempotency_key": contracts.idempotency_key(
                                request.booking_id, "capture"
                            )
                        },
                    )
                except stripe.InvalidRequestError:
                    intent = await self._retrieve(intent.id)
                    if intent.status != IntentStatus.SUCCEEDED:
                        raise
        if intent.status != IntentStatus.SUCCEEDED:
            raise BusinessError(
                ErrorType.PAYMENT_FAILED,
                f"payment intent {intent.id} cannot be captured: it is {intent.status}",
            )
        return contracts.PaymentCapture(Money(intent.amount_received, intent.currency.upper()))

    async def refund(self, request: contracts.RefundPaymentInput) -> contracts.PaymentRefund:
        """Refund `amount` of a capture; a zero amount (a fee that keeps it all) calls nobody."""
        if request.amount.amount_minor <= 0:
            return contracts.PaymentRefund(refund_id="", amount=request.amount)
        key = contracts.idempotency_key(request.booking_id, f"refund:{request.reason}")
        with _translated_errors():
            refund = await self._stripe.refunds.create_async(
                params={
                    "payment_intent": request.payment_intent_id,
                    "amount": request.amount.amount_minor,
                    "metadata": {"booking_id": request.booking_id, "reason": request.reason},
                },
                options={"idempotency_key": key},
            )
        if refund.status in ("failed", "canceled"):
            raise BusinessError(ErrorType.PAYMENT_FAILED, f"refund {refund.id} {refund.status}")
        return contracts.PaymentRefund(refund.id, Money(refund.amount, refund.currency.upper()))

    async def _create_authorization(
        self, request: contracts.AuthorizePaymentInput
    ) -> stripe.PaymentIntent:
        """The one authorization request of a booking: the same parameters and key every time."""
        return await self._stripe.payment_intents.create_async(
            params={
                "amount": request.amount.amount_minor,
                "currency": request.amount.currency.lower(),
                "payment_method": request.payment_method,
                # Confirmed server-side, so no redirect-based method (which needs a return_url).
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "confirm": True,
                "capture_method": "manual",
                "metadata": {
                    "booking_id": request.booking_id,
                    "customer_ref": request.customer_ref,
                },
            },
            options={"idempotency_key": contracts.idempotency_key(request.booking_id, "authorize")},
        )

    async def _authorization_intent(
        self, request: contracts.VoidPaymentInput
    ) -> stripe.PaymentIntent | None:
        """The booking's intent as it is now, or None when no authorization was ever made."""
        payment_intent_id = request.payment_intent_id
        if payment_intent_id is None:
            try:
                payment_intent_id = (await self._create_authorization(request.authorization)).id
            except stripe.CardError as error:
                # A decline still leaves its intent behind (requires_payment_method): cancel it too.
                payment_intent_id = _declined_intent_id(error)
                if payment_intent_id is None:
                    return None
        try:
            return await self._retrieve(payment_intent_id)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                return None
            raise

    async def _cancel(self, intent: stripe.PaymentIntent, booking_id: str) -> stripe.PaymentIntent:
        """Cancel the intent and return it as it is afterwards."""
        try:
            return await self._stripe.payment_intents.cancel_async(
                intent.id,
                options={"idempotency_key": contracts.idempotency_key(booking_id, "void")},
            )
        except stripe.InvalidRequestError:
            # It moved on since it was read (captured or cancelled meanwhile): go by what it is now.
            current = await self._retrieve(intent.id)
            if current.status not in (IntentStatus.CANCELED, IntentStatus.SUCCEEDED):
                raise
            return current

    async def _retrieve(self, payment_intent_id: str) -> stripe.PaymentIntent:
        # The charge carries what was refunded; Stripe only inlines it when asked.
        return await self._stripe.payment_intents.retrieve_async(
            payment_intent_id, params={"expand": ["latest_charge"]}
        )

    async def _refund_rest(
        self, intent: stripe.PaymentIntent, booking_id: str
    ) -> contracts.PaymentVoid:
        rest = intent.amount_received - _amount_refunded(intent)
        if rest > 0:
            await self._stripe.refunds.create_async(
                params={
                    "payment_intent": intent.id,
                    "amount": rest,
                    "metadata": {"booking_id": booking_id, "reason": "void"},
                },
                options={"idempotency_key": contracts.idempotency_key(booking_id, "void-refund")},
            )
        return contracts.PaymentVoid(
            status=VoidStatus.REFUNDED,
            refunded=Money(intent.amount_received, intent.currency.upper()),
        )


def classify_stripe_error(error: stripe.StripeError) -> BusinessError | TransientError:
    """The one place that decides whether a Stripe failure is a refusal or worth retrying.

    A decline is the customer's card saying no; an invalid request (or a reused key) cannot pass
    on retry. Transport trouble, rate limits and 5xx may pass: they are PAYMENT_UNAVAILABLE, so
    the workflow never mistakes a payment outage for a supplier's. Authentication and permission
    errors are our configuration, not the customer's fault: retried until fixed or surfaced.
    """
    if isinstance(error, stripe.CardError):
        return BusinessError(ErrorType.PAYMENT_DECLINED, error.user_message or "card declined")
    if isinstance(error, stripe.InvalidRequestError | stripe.IdempotencyError):
        return BusinessError(ErrorType.PAYMENT_FAILED, error.user_message or "invalid request")
    status = error.http_status
    # Any other 4xx but a conflict (409: the same key still running) cannot pass on retry either.
    refused = status is not None and 400 <= status < 500 and status not in (409, 429)
    if isinstance(error, stripe.APIError) and refused:
        return BusinessError(ErrorType.PAYMENT_FAILED, error.user_message or f"HTTP {status}")
    return TransientError(
        f"Stripe {type(error).__name__} (HTTP {status})", ErrorType.PAYMENT_UNAVAILABLE
    )


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as error:
        raise classify_stripe_error(error) from error


def _refusal(intent: stripe.PaymentIntent) -> BusinessError:
    """An intent confirmed without an authorization: declined, or in a state we never asked for."""
    if intent.status == IntentStatus.REQUIRES_PAYMENT_METHOD:
        error = intent.last_payment_error
        message = (error.message if error is not None else None) or "the card was declined"
        return BusinessError(ErrorType.PAYMENT_DECLINED, message)
    return BusinessError(
        ErrorType.PAYMENT_FAILED, f"payment intent {intent.id} is {intent.status} after confirm"
    )


def _declined_intent_id(error: stripe.CardError) -> str | None:
    """The id of the PaymentIntent a card error is about, when Stripe names it."""
    details = error.error
    intent = getattr(details, "payment_intent", None) if details is not None else None
    if intent is None and isinstance(error.json_body, dict):
        intent = error.json_body.get("error", {}).get("payment_intent")
    if isinstance(intent, str):
        return intent
    intent_id = intent.get("id") if isinstance(intent, dict) else getattr(intent, "id", None)
    return intent_id if isinstance(intent_id, str) else None


def _amount_refunded(intent: stripe.PaymentIntent) -> int:
    charge = intent.latest_charge
    return charge.amount_refunded if isinstance(charge, stripe.Charge) else 0
