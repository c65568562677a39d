"""Who the codec endpoint decodes for, against the real API app and a real JWKS over HTTP.

Development: the Temporal Web UI's own origin on loopback decodes; another origin, another host
or no credentials decode nothing, and CORS lets only the UI's origins read the answer. Production:
only a staff key or an OIDC access token signed by the identity provider's keys (served by a
small HTTP server on a free port), for the codec's audience and issuer and not expired, decodes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from google.protobuf import json_format
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.converter import default

from api.app import create_app
from passage.codec import EncryptionCodec
from passage.settings import Environment, Settings
from tests.support.api import client_on
from workflows.model import Traveller

UI_ORIGIN = "http://127.0.0.1:18233"
OTHER_ORIGIN = "http://evil.example"
ISSUER_PATH = "/realms/operators"
AUDIENCE = "temporal-ui"


@dataclass
class IdentityProvider:
    """A JWKS and an OpenID configuration served over HTTP, and the key that signs tokens."""

    url: str
    key: rsa.RSAPrivateKey
    kid: str = "codec-test-1"

    @property
    def issuer(self) -> str:
        return f"{self.url}{ISSUER_PATH}"

    def token(self, key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "operator-1",
            "iat": now,
            "exp": now + 300,
            **overrides,
        }
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def identity_provider() -> Iterator[IdentityProvider]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    documents: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            document = documents.get(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider = IdentityProvider(f"http://127.0.0.1:{server.server_address[1]}", key)
    documents["/jwks.json"] = {"keys": [{**jwk, "kid": provider.kid, "use": "sig"}]}
    documents[f"{ISSUER_PATH}/.well-known/openid-configuration"] = {
        "issuer": provider.issuer,
        "jwks_uri": f"{provider.url}/jwks.json",
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def api(settings: Settings, client: Client) -> AsyncIterator[FastAPI]:
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(scope="module")
async def sealed(engine_settings: Settings) -> dict[str, Any]:
    """A traveller as the worker writes it into a workflow history: encrypted."""
    payloads = default().payload_converter.to_payloads(
        [Traveller("Ada", "Lovelace", "1990-12-10", "X1234567")]
    )
    [encoded] = await EncryptionCodec(engine_settings.codec_key).encode(payloads)
    body = {"payloads": [json_format.MessageToDict(encoded)]}
    assert "Lovelace" not in json.dumps(body)
    return body


def development(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"env": Environment.DEVELOPMENT, "codec_cors_origins": UI_ORIGIN}
    )


def production(settings: Settings, provider: IdentityProvider, discover: bool = False) -> Settings:
    return settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "codec_cors_origins": UI_ORIGIN,
            "codec_oidc_issuer": provider.issuer,
            "codec_oidc_audience": AUDIENCE,
            "codec_oidc_jwks_url": "" if discover else f"{provider.url}/jwks.json",
        }
    )


async def decode(
    app: FastAPI, sealed: dict[str, Any], address: str = "127.0.0.1", **headers: str
) -> httpx.Response:
    async with client_on(app, address) as http:
        return await http.post(
            "/codec/decode",
            json=sealed,
            headers={"Content-Type": "application/json", "X-Namespace": "default", **headers},
        )


def opened(response: httpx.Response) -> bool:
    """True if the answer holds the traveller in clear."""
    if response.status_code != 200:
        return False
    data = base64.b64decode(response.json()["payloads"][0]["data"])
    return b"Lovelace" in data and b"X1234567" in data


def refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert b"Lovelace" not in response.content and "payloads" not in response.json()


async def test_in_development_the_ui_origin_on_loopback_decodes_and_nothing_else(
    engine_settings: Settings, engine_client: Client, sealed: dict[str, Any]
) -> None:
    staff_key = sorted(engine_settings.staff_key_set)[0]
    async with api(development(engine_settings), engine_client) as app:
        ui = await decode(app, sealed, Origin=UI_ORIGIN)
        assert opened(ui), ui.text
        assert ui.headers["access-control-allow-origin"] == UI_ORIGIN
        # The CLI: no Origin, a staff key (`--codec-auth "Bearer <key>"`).
        assert opened(await decode(app, sealed, Authorization=f"Bearer {staff_key}"))

        refused(await decode(app, sealed, Origin=OTHER_ORIGIN), 403)
        refused(
            await decode(app, sealed, Origin=OTHER_ORIGIN, Authorization=f"Bearer {staff_key}"),
            403,
        )
        refused(await decode(app, sealed, "10.1.2.3", Origin=UI_ORIGIN), 401)
        refused(await decode(app, sealed), 401)
        refused(await decode(app, sealed, Origin=UI_ORIGIN.replace("18233", "18234")), 403)

        async with client_on(app) as http:
            asked = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            }
            preflight = await http.options("/codec/decode", headers={"Origin": UI_ORIGIN, **asked})
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert {"authorization", "content-type", "x-namespace"} <= {
                header.strip() for header in allowed.split(",")
            }
            foreign = await http.options("/codec/decode", headers={"Origin": OTHER_ORIGIN, **asked})
            assert foreign.status_code == 400
            assert "access-control-allow-origin" not in foreign.headers
            # The UI's origin may read the codec, not the rest of the API.
            elsewhere = await http.options(
                "/admin/bookings",
                headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "GET"},
            )
            assert "access-control-allow-origin" not in elsewhere.headers


async def test_in_production_only_a_valid_access_token_or_a_staff_key_decodes(
    engine_settings: Settings,
    engine_client: Client,
    sealed: dict[str, Any],
    identity_provider: IdentityProvider,
) -> None:
    staff_key = sorted(engine_settings.staff_key_set)[0]
    idp = identity_provider
    async with api(production(engine_settings, idp), engine_client) as app:
        refused(await decode(app, sealed, Origin=UI_ORIGIN), 401)
        refused(await decode(app, sealed), 401)

        token = idp.token()
        assert opened(await decode(app, sealed, Origin=UI_ORIGIN, Authorization=f"Bearer {token}"))
        assert opened(await decode(app, sealed, Authorization=f"Bearer {staff_key}"))

        now = int(time.time())
        another_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        unsigned = jwt.encode(
            {"iss": idp.issuer, "aud": AUDIENCE, "sub": "x", "exp": now + 300},
            key=None,
            algorithm="none",
            headers={"kid": idp.kid},
        )
        bad_tokens = {
            "expired": idp.token(iat=now - 900, exp=now - 600),
            "another audience": idp.token(aud="another-app"),
            "another issuer": idp.token(iss=f"{idp.url}/realms/other"),
            "signed by another key": idp.token(key=another_key),
            "unsigned": unsigned,
            "no expiry": idp.token(exp=None),
            "not a token": "not-a-jwt",
        }
        for why, bad in bad_tokens.items():
            response = await decode(app, sealed, Origin=UI_ORIGIN, Authorization=f"Bearer {bad}")
            assert response.status_code == 401, (why, response.text)
            refused(response, 401)
        refused(
            await decode(app, sealed, Origin=OTHER_ORIGIN, Authorization=f"Bearer {token}"), 403
        )

    # Without a JWKS URL the keys are found through the issuer's OpenID configuration.
    async with api(production(engine_settings, idp, discover=True), engine_client) as app:
        token = idp.token(sub=f"operator-{uuid.uuid4().hex[:6]}")
        assert opened(await decode(app, sealed, Origin=UI_ORIGIN, Authorization=f"Bearer {token}"))


def test_an_issuer_without_an_audience_is_refused() -> None:
    with pytest.raises(ValidationError, match="PASSAGE_CODEC_OIDC_AUDIENCE"):
        Settings(env=Environment.DEVELOPMENT, codec_oidc_issuer="https://id.example/realms/ops")
