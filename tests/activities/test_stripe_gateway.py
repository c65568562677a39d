"""StripePaymentGateway and PaymentActivities against the Stripe emulator (a real subprocess)."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.adapters.stripe_gateway import StripePaymentGateway
from activities.errors import BusinessError, TransientError
from activities.payments import PaymentActivities
from tests.support.stripe import CARD_3DS, CARD_DECLINED, CARD_OK, StripeHarness
from worker import make_stripe_gateway
from workflows import contracts
from workflows.contracts import ErrorType
from workflows.model import Money


def _authorization(payment_method: str, amount: int = 10000) -> contracts.AuthorizePaymentInput:
    return contracts.AuthorizePaymentInput(
        booking_id=f"bk_{secrets.token_hex(6)}",
        amount=Money(amount, "EUR"),
        payment_method=payment_method,
        customer_ref="cust_ref_test",
    )


async def _authorized(
    gateway: StripePaymentGateway, harness: StripeHarness, amount: int = 10000
) -> tuple[contracts.AuthorizePaymentInput, contracts.PaymentAuthorization]:
    request = _authorization(await harness.pm_for(CARD_OK), amount)
    return request, await gateway.authorize(request)


async def test_authorize_holds_the_amount_for_capture(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness, 12345)

    assert authorization.status == "requires_capture"
    assert authorization.amount == Money(12345, "EUR")
    assert authorization.client_secret is None
    (intent,) = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["id"] == authorization.payment_intent_id
    assert intent["currency"] == "eur"
    assert intent["capture_method"] == "manual"
    assert intent["metadata"] == {"booking_id": request.booking_id, "customer_ref": "cust_ref_test"}
    state = await stripe_gateway.get(contracts.GetPaymentInput(authorization.payment_intent_id))
    assert (state.status, state.amount_capturable, state.amount_received) == (
        "requires_capture",
        12345,
        0,
    )


async def test_a_retried_authorize_returns_the_same_intent(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, first = await _authorized(stripe_gateway, stripe_harness)

    second = await stripe_gateway.authorize(request)

    assert second == first
    assert len(await stripe_harness.payment_intents_for(request.booking_id)) == 1
    key = contracts.idempotency_key(request.booking_id, "authorize")
    assert (await stripe_harness.idempotency_keys())[key]["replayed"] == 1


async def test_a_declined_card_is_a_payment_declined_refusal(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request = _authorization(await stripe_harness.pm_for(CARD_DECLINED))

    for _ in range(2):  # the retry gets the same answer, and no second intent
        with pytest.raises(BusinessError) as refusal:
            await stripe_gateway.authorize(request)
        assert refusal.value.error_type is ErrorType.PAYMENT_DECLINED
    assert len(await stripe_harness.payment_intents_for(request.booking_id)) == 1


async def test_3ds_needs_action_then_authentication_leaves_it_capturable(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request = _authorization(await stripe_harness.pm_for(CARD_3DS))

    authorization = await stripe_gateway.authorize(request)
    assert authorization.status == "requires_action"
    assert authorization.client_secret
    await stripe_harness.authenticate(authorization.payment_intent_id, authorization.client_secret)

    state = await stripe_gateway.get(contracts.GetPaymentInput(authorization.payment_intent_id))
    assert state.status == "requires_capture"
    assert state.amount_capturable == 10000


async def test_failed_3ds_authentication_reads_as_a_failure(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    authorization = await stripe_gateway.authorize(
        _authorization(await stripe_harness.pm_for(CARD_3DS))
    )
    assert authorization.client_secret
    await stripe_harness.authenticate(
        authorization.payment_intent_id, authorization.client_secret, success=False
    )

    state = await stripe_gateway.get(contracts.GetPaymentInput(authorization.payment_intent_id))
    assert state.status == "requires_payment_method"
    assert state.failure_message


async def test_capture_part_then_refund(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness)
    capture = contracts.CapturePaymentInput(
        request.booking_id, authorization.payment_intent_id, Money(6000, "EUR")
    )

    captured = await stripe_gateway.capture(capture)
    again = await stripe_gateway.capture(capture)
    refund = contracts.RefundPaymentInput(
        request.booking_id, authorization.payment_intent_id, Money(2500, "EUR"), "cancel:it_1"
    )
    refunded = await stripe_gateway.refund(refund)
    refunded_again = await stripe_gateway.refund(refund)

    assert captured.amount == again.amount == Money(6000, "EUR")
    assert refunded.amount == Money(2500, "EUR")
    assert refunded.refund_id.startswith("re_")
    assert refunded_again == refunded
    state = await stripe_gateway.get(contracts.GetPaymentInput(authorization.payment_intent_id))
    assert (state.status, state.amount_received, state.amount_refunded) == ("succeeded", 6000, 2500)
    keys = await stripe_harness.idempotency_keys()
    assert keys[contracts.idempotency_key(request.booking_id, "refund:cancel:it_1")] == {
        "requests": 2,
        "replayed": 1,
        "rejected": 0,
    }


async def test_void_cancels_an_authorization(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness)
    void = contracts.VoidPaymentInput(request, authorization.payment_intent_id)

    assert await stripe_gateway.void(void) == contracts.PaymentVoid(status="voided")
    assert await stripe_gateway.void(void) == contracts.PaymentVoid(status="voided")
    (intent,) = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "canceled"


async def test_void_without_an_id_finds_the_lost_authorization(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness)  # answer "lost"

    result = await stripe_gateway.void(contracts.VoidPaymentInput(request, None))

    assert result.status == "voided"
    (intent,) = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["id"] == authorization.payment_intent_id
    assert intent["status"] == "canceled"


async def test_void_after_a_capture_refunds_the_rest(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness)
    pi = authorization.payment_intent_id
    await stripe_gateway.capture(
        contracts.CapturePaymentInput(request.booking_id, pi, Money(7000, "EUR"))
    )
    await stripe_gateway.refund(
        contracts.RefundPaymentInput(request.booking_id, pi, Money(1000, "EUR"), "fee")
    )
    void = contracts.VoidPaymentInput(request, pi)

    first = await stripe_gateway.void(void)
    again = await stripe_gateway.void(void)

    assert first == again == contracts.PaymentVoid("refunded", Money(7000, "EUR"))
    state = await stripe_gateway.get(contracts.GetPaymentInput(pi))
    assert (state.amount_received, state.amount_refunded) == (7000, 7000)


async def test_capture_of_a_voided_intent_is_refused(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request, authorization = await _authorized(stripe_gateway, stripe_harness)
    await stripe_gateway.void(contracts.VoidPaymentInput(request, authorization.payment_intent_id))

    with pytest.raises(BusinessError) as refusal:
        await stripe_gateway.capture(
            contracts.CapturePaymentInput(
                request.booking_id, authorization.payment_intent_id, Money(10000, "EUR")
            )
        )
    assert refusal.value.error_type is ErrorType.PAYMENT_FAILED


async def test_an_unknown_intent_is_a_payment_failure(
    stripe_gateway: StripePaymentGateway,
) -> None:
    with pytest.raises(BusinessError) as refusal:
        await stripe_gateway.get(contracts.GetPaymentInput("pi_doesnotexist"))
    assert refusal.value.error_type is ErrorType.PAYMENT_FAILED


class _StripeDown(BaseHTTPRequestHandler):
    """Stripe having a bad day: every request gets the server's `status` and an API error."""

    server: _StripeDownServer

    def _answer(self) -> None:
        self.server.requests += 1
        body = json.dumps({"error": {"type": "api_error", "message": "try again later"}}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _StripeDownServer(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _StripeDown)
        self.status = status
        self.requests = 0


@contextlib.contextmanager
def stripe_answering(status: int) -> Iterator[_StripeDownServer]:
    """A local HTTP server standing in for Stripe that answers every request with `status`."""
    server = _StripeDownServer(status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _gateway_on(api_base: str) -> StripePaymentGateway:
    return make_stripe_gateway("sk_test_passage", api_base)


async def test_an_unreachable_stripe_is_transient_payment_unavailable() -> None:
    gateway = _gateway_on("http://127.0.0.1:9")
    try:
        with pytest.raises(TransientError) as failure:
            await gateway.get(contracts.GetPaymentInput("pi_any"))
    finally:
        await gateway.aclose()
    assert failure.value.error_type is ErrorType.PAYMENT_UNAVAILABLE


async def test_the_activity_raises_a_decline_as_non_retryable_payment_declined(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    activities = PaymentActivities(stripe_gateway)
    request = _authorization(await stripe_harness.pm_for(CARD_DECLINED))

    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(activities.authorize_payment, request)

    assert failure.value.type == ErrorType.PAYMENT_DECLINED.value
    assert failure.value.non_retryable


async def test_the_activity_raises_transport_trouble_as_retryable_payment_unavailable() -> None:
    gateway = _gateway_on("http://127.0.0.1:9")
    try:
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(
                PaymentActivities(gateway).get_payment, contracts.GetPaymentInput("pi_any")
            )
    finally:
        await gateway.aclose()

    assert failure.value.type == ErrorType.PAYMENT_UNAVAILABLE.value
    assert not failure.value.non_retryable


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_the_activity_raises_a_stripe_outage_as_retryable_payment_unavailable(
    status: int,
) -> None:
    with stripe_answering(status) as stripe_down:
        gateway = _gateway_on(f"http://127.0.0.1:{stripe_down.server_port}")
        try:
            with pytest.raises(ApplicationError) as failure:
                await ActivityEnvironment().run(
                    PaymentActivities(gateway).authorize_payment, _authorization("pm_card_visa")
                )
        finally:
            await gateway.aclose()

    assert failure.value.type == ErrorType.PAYMENT_UNAVAILABLE.value
    assert not failure.value.non_retryable
    assert isinstance(failure.value.__cause__, TransientError)
    assert stripe_down.requests == 1  # Temporal retries, never the SDK


async def test_the_activity_returns_the_gateway_result(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    activities = PaymentActivities(stripe_gateway)
    request = _authorization(await stripe_harness.pm_for(CARD_OK))

    authorization = await ActivityEnvironment().run(activities.authorize_payment, request)

    assert authorization.status == "requires_capture"


async def test_void_without_an_id_when_authorize_never_arrived_leaves_one_voided_intent(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    """The replay is the authorization itself when the first attempt never reached Stripe."""
    request = _authorization(await stripe_harness.pm_for(CARD_OK))

    result = await stripe_gateway.void(contracts.VoidPaymentInput(request, None))

    assert result.status == "voided"
    (intent,) = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "canceled"


async def test_void_cancels_an_intent_waiting_for_3ds(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request = _authorization(await stripe_harness.pm_for(CARD_3DS))
    authorization = await stripe_gateway.authorize(request)

    result = await stripe_gateway.void(
        contracts.VoidPaymentInput(request, authorization.payment_intent_id)
    )

    assert result.status == "voided"
    state = await stripe_gateway.get(contracts.GetPaymentInput(authorization.payment_intent_id))
    assert state.status == "canceled"


async def test_voiding_a_declined_authorization_cancels_its_intent(
    stripe_gateway: StripePaymentGateway, stripe_harness: StripeHarness
) -> None:
    request = _authorization(await stripe_harness.pm_for(CARD_DECLINED))
    with pytest.raises(BusinessError):
        await stripe_gateway.authorize(request)

    # The workflow never learnt the declined intent's id: the void finds it all the same.
    void = await stripe_gateway.void(contracts.VoidPaymentInput(request, None))

    assert void.status == "voided"
    [intent] = await stripe_harness.payment_intents_for(request.booking_id)
    assert intent["status"] == "canceled"
