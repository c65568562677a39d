"""The dev/test Stripe stand-in: localstripe, in-process, behind Stripe's idempotency semantics.

Run it with
`python -m passage.dev.stripe_emulator --host 127.0.0.1 --port 8420 [--state-file PATH]`.

Why not plain localstripe: it ignores `Idempotency-Key`, while the payment saga relies on Stripe
replaying the first response of a retried request (that is how a lost authorization is found and
voided); it listens on every interface; and it pickles its state to `/tmp/localstripe.pickle` after
every write. Here it listens on the address it is given, keeps everything in memory (or, with
`--state-file`, in that file: `make up`), and answers behind aiohttp middlewares put in front of its
own, in its own application (one port, no proxy hop, no second server to supervise):

- `LatencyLayer.middleware` (outermost, harness-only) makes chosen calls slow, so a test can act
  while a payment call is in flight: `POST /_harness/latency` with `{"method": "POST", "path":
  "/v1/payment_intents/{id}/capture", "latency_ms": 3000, "times": 1}` delays the next `times`
  matching requests by `latency_ms` before anything else sees them (a `{name}` in the path stands
  for one segment). `GET` lists the rules with how many requests each delayed, `DELETE` drops them.

- `StateLayer.middleware` (with `--state-file` only) loads localstripe's store and the idempotency
  layer's records at start and saves them together, atomically, after every POST or DELETE and
  before its answer leaves, so a restarted emulator still has every PaymentIntent and still
  replays every recorded response. localstripe's own `/tmp` pickle stays disabled: one file per
  emulator, in the state directory, holding both parts consistently.
- `IdempotencyLayer.middleware` does what Stripe does with an `Idempotency-Key` on a POST: the
  first response for (API key, idempotency key) is recorded and replayed to any later request with
  the same parameters (header `Idempotent-Replayed: true`, localstripe untouched); other parameters
  answer 400 `idempotency_error`; concurrent requests with one key run one after the other. It
  counts requests per key for the harness-only `GET /_harness/idempotency`.
- `IdempotencyLayer.stripe_shape` adds what localstripe leaves out of a PaymentIntent and Stripe
  reports (`amount_capturable`, `amount_received`, the charge's `amount_captured`), and stops
  counting a partial capture's released remainder as a refund (localstripe books it as one; Stripe
  does not since API version 2025-03-31).

- `browser_layer` (innermost) completes the fake Stripe.js localstripe serves at
  `/js.stripe.com/v3/` for the reference checkout page: `stripe.createPaymentMethod({type: "card",
  card})` (a no-op in localstripe) creates a PaymentMethod with the publishable key, as Stripe.js
  does with Stripe's, and the fake card fields get accessible names. So the page runs the same
  code against the emulator and against Stripe.

localstripe keeps its state in module globals, so there is one emulator per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from passage.statefile import StateFile

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HARNESS_PATH = "/_harness/idempotency"
LATENCY_PATH = "/_harness/latency"
#: A latency rule longer than this is a mistake: the product's Stripe client gives up after 10 s.
MAX_LATENCY_MS = 60_000
_CAPTURE_PATH = re.compile(r"^/v1/payment_intents/(?P<id>pi_\w+)/capture$")


@dataclass
class _Recorded:
    """The first response given for one idempotency key, and what it was asked."""

    fingerprint: tuple[str, ...]
    status: int
    body: bytes
    content_type: str


@dataclass
class _KeyStats:
    requests: int = 0
    replayed: int = 0
    rejected: int = 0


class IdempotencyLayer:
    """Stripe's idempotency semantics and PaymentIntent amounts in front of localstripe."""

    def __init__(self) -> None:
        self._recorded: dict[tuple[str, str], _Recorded] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._stats: dict[str, _KeyStats] = {}
        self._captured: dict[str, int] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "GET" and request.path == HARNESS_PATH:
            return web.json_response(self.report())
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        stats = self._stats.setdefault(key, _KeyStats())
        stats.requests += 1
        # Keys are scoped to the account, as at Stripe: the API key stands for the account.
        scope = (request.headers.get("Authorization", ""), key)
        fingerprint = await _fingerprint(request)
        async with self._locks.setdefault(scope, asyncio.Lock()):
            recorded = self._recorded.get(scope)
            if recorded is None:
                response = await handler(request)
                if isinstance(response, web.Response) and response.body is not None:
                    self._recorded[scope] = _Recorded(
                        fingerprint,
                        response.status,
                        _body_bytes(response),
                        response.headers.get("Content-Type", "application/json"),
                    )
                response.headers["Idempotency-Key"] = key
                return response
        if recorded.fingerprint != fingerprint:
            stats.rejected += 1
            return _idempotency_error(key)
        stats.replayed += 1
        return web.Response(
            status=recorded.status,
            body=recorded.body,
            headers={
                "Content-Type": recorded.content_type,
                "Idempotency-Key": key,
                "Idempotent-Replayed": "true",
            },
        )

    @web.middleware
    async def stripe_shape(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not request.path.startswith("/v1/payment_intents") or not isinstance(
            response, web.Response
        ):
            return response
        if response.status == 402 and response.body is not None:
            return _name_the_declined_intent(response)
        if response.status != 200 or response.body is None:
            return response
        payload = json.loads(_body_bytes(response))
        capture = _CAPTURE_PATH.match(request.path)
        if capture is not None:
            form = await request.post()
            amount = form.get("amount_to_capture")
            self._captured[capture["id"]] = (
                int(amount) if isinstance(amount, str) else int(payload["amount"])
            )
        for intent in payload.get("data", [payload]):
            self._add_amounts(intent)
        return web.json_response(payload, status=response.status)

    def _add_amounts(self, intent: dict[str, Any]) -> None:
        if intent.get("object") != "payment_intent":
            return
        status, amount = intent["status"], int(intent["amount"])
        captured = self._captured.get(intent["id"], amount) if status == "succeeded" else 0
        intent.setdefault("amount_capturable", amount if status == "requires_capture" else 0)
        intent.setdefault("amount_received", captured)
        charge = intent.get("latest_charge")
        if isinstance(charge, dict) and "amount_captured" not in charge:
            charge["amount_captured"] = captured
            if intent["id"] in self._captured:
                released = amount - captured
                charge["amount_refunded"] = max(0, int(charge["amount_refunded"]) - released)
                charge["refunded"] = captured > 0 and charge["amount_refunded"] >= captured

    def snapshot(self) -> dict[str, Any]:
        """The replay records, request counts and captured amounts (not the per-key locks)."""
        return {"recorded": self._recorded, "stats": self._stats, "captured": self._captured}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a `snapshot` taken by this class."""
        self._recorded = dict(snapshot["recorded"])
        self._stats = dict(snapshot["stats"])
        self._captured = dict(snapshot["captured"])

    def report(self) -> dict[str, Any]:
        """What the harness reads: every idempotency key seen, with its request counts."""
        return {
            "keys": {
                key: {
                    "requests": stats.requests,
                    "replayed": stats.replayed,
                    "rejected": stats.rejected,
                }
                for key, stats in self._stats.items()
            }
        }


class StateLayer:
    """localstripe's store plus the idempotency records, kept in one state file.

    Args:
        state_file: Where the snapshot lives.
        store: localstripe's module-level store (a dict of its resources by "<object>:<id>").
        idempotency: The layer whose replay records belong with the store: a PaymentIntent
            without its record would be created a second time by a retried request.
    """

    def __init__(
        self, state_file: StateFile, store: dict[str, Any], idempotency: IdempotencyLayer
    ) -> None:
        self._file = state_file
        self._store = store
        self._idempotency = idempotency

    def load(self) -> None:
        """Put the kept state back, if there is any (at start, before serving)."""
        snapshot = self._file.load()
        if snapshot is None:
            return
        # dict's own methods: localstripe's Store overrides the item methods to write its pickle.
        dict.clear(self._store)
        dict.update(self._store, snapshot["store"])
        self._idempotency.restore(snapshot["idempotency"])

    def save(self) -> None:
        self._file.save({"store": dict(self._store), "idempotency": self._idempotency.snapshot()})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            # Synchronous, so the snapshot is one consistent moment of the event loop. GETs do
            # not change anything; localstripe's SEPA debits, which settle later, are not used.
            if request.method in ("POST", "DELETE"):
                self.save()


@dataclass
class _LatencyRule:
    """Delay the next `remaining` requests whose method and path match by `latency_ms`."""

    rule_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    latency_ms: int
    remaining: int
    delayed: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "method": self.method,
            "path": self.path,
            "latency_ms": self.latency_ms,
            "remaining": self.remaining,
            "delayed": self.delayed,
        }


class LatencyLayer:
    """Harness-only slowness: the next N requests matching a method and a path pattern wait.

    The wait comes before every other layer, as network latency would: the request has left the
    client and nothing has happened at "Stripe" yet. Rules are used up in the order they were
    added; a used-up rule stays listed (with `delayed`) until the rules are cleared.
    """

    def __init__(self) -> None:
        self._rules: list[_LatencyRule] = []
        self._next_id = 1

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == LATENCY_PATH:
            return await self._control(request)
        rule = self._take(request.method, request.path)
        if rule is not None:
            await asyncio.sleep(rule.latency_ms / 1000)
        return await handler(request)

    def _take(self, method: str, path: str) -> _LatencyRule | None:
        for rule in self._rules:
            if rule.remaining > 0 and rule.method == method and rule.pattern.fullmatch(path):
                rule.remaining -= 1
                rule.delayed += 1
                return rule
        return None

    async def _control(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"rules": [rule.report() for rule in self._rules]})
        if request.method == "DELETE":
            self._rules.clear()
            return web.json_response({"rules": []})
        if request.method != "POST":
            return web.json_response({"error": "use GET, POST or DELETE"}, status=405)
        try:
            rule = self._rule_from(await request.json())
        except (ValueError, TypeError, KeyError) as error:
            return web.json_response({"error": f"bad latency rule: {error}"}, status=400)
        self._rules.append(rule)
        return web.json_response(rule.report(), status=201)

    def _rule_from(self, body: Any) -> _LatencyRule:
        method, path = str(body["method"]).upper(), str(body["path"])
        latency_ms, times = body["latency_ms"], body.get("times", 1)
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        if not isinstance(latency_ms, int) or not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be an integer from 0 to {MAX_LATENCY_MS}")
        if not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        rule_id = f"lat_{self._next_id}"
        self._next_id += 1
        return _LatencyRule(rule_id, method, path, _path_pattern(path), latency_ms, times)


def _path_pattern(path: str) -> re.Pattern[str]:
    """`/v1/payment_intents/{id}/capture` -> a regex where each `{name}` is one path segment."""
    parts = re.split(r"\{[^/{}]+\}", path)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


async def _fingerprint(request: web.Request) -> tuple[str, ...]:
    """The request's identity for replay: method, path and its parameters in canonical order.

    aiohttp keeps the body it read, so localstripe can still parse it after us.
    """
    body = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        params = tuple(f"{name}={value}" for name, value in sorted(pairs))
    else:
        params = (body.decode(errors="replace"),)
    return (request.method, request.path, *params)


def _body_bytes(response: web.Response) -> bytes:
    body = response.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    raise TypeError(f"unexpected response payload {type(body).__name__}")


def _idempotency_error(key: str) -> web.Response:
    message = (
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different "
        "request."
    )
    return web.json_response(
        {"error": {"type": "idempotency_error", "message": message}}, status=400
    )


def build_app(state_file: StateFile | None = None) -> web.Application:
    """localstripe's application with the latency, state and idempotency layers in front.

    Args:
        state_file: Where the state is loaded from and saved to; None keeps it in memory only.

    Imported here, not at module level, so importing this module starts and patches nothing.
    """
    from localstripe import resources as localstripe_resources
    from localstripe import server as localstripe_server

    app: web.Application = localstripe_server.app
    if app.frozen:
        raise RuntimeError("localstripe is already running in this process")
    # localstripe writes /tmp/localstripe.pickle on every change; an instance attribute shadows
    # the method for both callers (the store itself and localstripe's save middleware).
    localstripe_resources.store.dump_to_disk = lambda: None
    _accept_automatic_payment_methods(localstripe_resources.PaymentIntent)
    layer = IdempotencyLayer()
    layers = [LatencyLayer().middleware, layer.middleware, layer.stripe_shape, browser_layer]
    if state_file is not None:
        state = StateLayer(state_file, localstripe_resources.store, layer)
        state.load()
        # Outside the idempotency layer: a save comes after the response was recorded.
        layers.insert(1, state.middleware)
    for position, middleware in enumerate(layers):
        app.middlewares.insert(position, middleware)
    return app


STRIPE_JS_PATH = "/js.stripe.com/v3/"
_PAYMENT_METHODS_PATH = "/v1/payment_methods"

#: Appended to localstripe's fake Stripe.js (which defines `Stripe`, `Element` and
#: `LOCALSTRIPE_BASE_API` as globals of the same script).
_STRIPE_JS_COMPLETION = """
;(function () {
  const fakeStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = fakeStripe(apiKey);
    stripe.createPaymentMethod = async (data) => {
      const element = data && data.card;
      const card = element && element.value ? element.value.card : null;
      if (!card || !card.number) {
        return {error: {type: 'validation_error', message: 'Your card number is incomplete.'}};
      }
      const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/payment_methods`, {
        method: 'POST',
        body: JSON.stringify({key: apiKey, type: 'card', card: card,
                              billing_details: (data && data.billing_details) || {}}),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status !== 200 || body.error) {
        return {error: body.error || {message: 'The card was refused.'}};
      }
      return {paymentMethod: body};
    };
    return stripe;
  };
  const labels = {number: 'Card number', exp_month: 'Expiry month (MM)',
                  exp_year: 'Expiry year (YY)', cvc: 'CVC', postal_code: 'Postal code'};
  const mount = Element.prototype.mount;
  Element.prototype.mount = function (domElement) {
    mount.call(this, domElement);
    Object.entries(this._inputs || {}).forEach(([field, input]) => {
      input.setAttribute('aria-label', labels[field]);
      input.setAttribute('autocomplete', 'off');
      input.setAttribute('inputmode', 'numeric');
    });
  };
})();
"""


@web.middleware
async def browser_layer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stripe.js's part of the emulator: the completed fake script, publishable-key PMs."""
    if request.method == "GET" and request.path == STRIPE_JS_PATH:
        script = await handler(request)
        if not isinstance(script, web.Response) or script.text is None:
            return script
        return web.Response(
            text=script.text + _STRIPE_JS_COMPLETION, content_type="application/javascript"
        )
    if (
        request.method == "POST"
        and request.path == _PAYMENT_METHODS_PATH
        and "Authorization" not in request.headers
    ):
        return await _payment_method_for_browser(request, handler)
    return await handler(request)


async def _payment_method_for_browser(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A PaymentMethod created with a publishable key (`key` in the body), as Stripe.js does."""
    from localstripe import server as localstripe_server
    from localstripe.errors import UserError
    from localstripe.resources import PaymentMethod

    data = await localstripe_server.get_post_data(request, remove_auth=False)
    key = data.get("key") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key.startswith("pk_"):
        return await handler(request)  # localstripe refuses it: 401
    params = {
        name: value for name, value in data.items() if name not in ("key", "payment_user_agent")
    }
    try:
        method = PaymentMethod._api_create(**params)
    except UserError as error:
        response: web.StreamResponse = error.to_response()
        return response
    return web.json_response(method._export())


def _name_the_declined_intent(response: web.Response) -> web.Response:
    """A decline names its PaymentIntent (`error.payment_intent`), as Stripe's does.

    localstripe names only the charge; without the intent a caller that lost the authorize
    answer could not find, and cancel, the intent the decline left in `requires_payment_method`.
    """
    from localstripe import resources as localstripe_resources

    payload = json.loads(_body_bytes(response))
    error = payload.get("error")
    if not isinstance(error, dict) or "payment_intent" in error or not error.get("charge"):
        return response
    try:
        charge = localstripe_resources.Charge._api_retrieve(error["charge"])
    except Exception:  # an unknown charge: leave the answer as localstripe gave it
        return response
    if charge.payment_intent:
        error["payment_intent"] = {"id": charge.payment_intent, "object": "payment_intent"}
    return web.json_response(payload, status=response.status)


def _accept_automatic_payment_methods(payment_intent: Any) -> None:
    """Let PaymentIntent creation take `automatic_payment_methods`, as Stripe's does.

    Confirming on the server without a `return_url` needs `allow_redirects=never` at Stripe;
    localstripe rejects the parameter, and its payment methods (cards) never redirect anyway.
    """
    create = payment_intent._api_create

    def api_create(cls: Any, /, automatic_payment_methods: Any = None, **params: Any) -> Any:
        return create(**params)

    payment_intent._api_create = classmethod(api_create)


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description="Passage's Stripe emulator (localstripe).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument(
        "--state-file",
        type=Path,
        help="load the state from this file at start and save it there after every change "
        "(default: in memory only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state_file = None if args.state_file is None else StateFile(args.state_file)
    web.run_app(build_app(state_file), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
