"""Who may use the codec endpoint: operators in the Temporal Web UI and staff, nobody else.

The Web UI calls `/codec/decode` from the operator's browser with only its own headers
(`X-Namespace`, `Content-Type`, and with `TEMPORAL_CODEC_PASS_ACCESS_TOKEN` the UI's OIDC access
token as `Authorization: Bearer`); it cannot send a staff key. So a caller is admitted when

1. it presents a staff key (`temporal workflow show --codec-endpoint ... --codec-auth`, or an
   authenticating proxy in front of `/codec` that adds one), or
2. it presents an OIDC access token that the identity provider signed (its JWKS), for this
   audience, from this issuer, not expired (`PASSAGE_CODEC_OIDC_*`), or
3. in development only, it comes from loopback with an `Origin` that is one of the UI's
   (`PASSAGE_CODEC_CORS_ORIGINS`): a page of another origin cannot forge its browser's `Origin`,
   and whoever runs programs on the machine can read `.passage/codec_key` anyway.

A browser request from any other origin is refused (403) whatever it carries, and CORS
(`CodecCors`) lets exactly the UI's origins read the answers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import staff_for_key
from api.errors import ApiError
from passage.settings import Environment, Settings

log = structlog.get_logger("passage.api.codec")

#: Signatures an identity provider uses for access tokens; never `none` or a shared secret.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
#: Clock skew tolerated on `exp`/`nbf`/`iat`.
OIDC_LEEWAY_SECONDS = 30
#: How long fetched signing keys are trusted before the JWKS is read again (a new `kid` is
#: fetched at once regardless).
JWKS_LIFESPAN_SECONDS = 300
CODEC_PATH = "/codec"


@dataclass(frozen=True)
class CodecCaller:
    """Who was admitted and how (`staff`, `oidc`, `ui-origin`); `who` is never a secret."""

    how: str
    who: str


class OidcTokens:
    """Verifies the Web UI's access tokens against the identity provider's signing keys."""

    def __init__(self, issuer: str, audience: str, jwks_url: str = "") -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks_url = jwks_url
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims; `jwt.InvalidTokenError` if it is not valid for the codec.

        Raises `jwt.PyJWKClientConnectionError` when the identity provider cannot be reached.
        """
        key = self._signing_keys().get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=list(OIDC_ALGORITHMS),
            audience=self.audience,
            issuer=self.issuer,
            leeway=OIDC_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
        return claims

    def _signing_keys(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                url = self._jwks_url or self._discover()
                self._keys = jwt.PyJWKClient(url, lifespan=JWKS_LIFESPAN_SECONDS, timeout=10)
            return self._keys

    def _discover(self) -> str:
        """The `jwks_uri` of the issuer's OpenID configuration."""
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            response = httpx.get(url, timeout=10)
            response.raise_for_status()
            return str(response.json()["jwks_uri"])
        except (httpx.HTTPError, ValueError, KeyError) as err:
            raise jwt.PyJWKClientConnectionError(f"no OpenID configuration at {url}") from err


class CodecAccess:
    """The admission rules of the module docstring, for one app's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.origins = frozenset(settings.codec_cors_origin_list)
        self.oidc = (
            OidcTokens(
                settings.codec_oidc_issuer.strip(),
                settings.codec_oidc_audience.strip(),
                settings.codec_oidc_jwks_url,
            )
            if settings.codec_oidc_issuer.strip()
            else None
        )

    def admit(self, origin: str | None, client_host: str | None, bearer: str) -> CodecCaller:
        """The caller, or an `ApiError` (403 foreign origin, 401 no valid credentials)."""
        if origin is not None and origin not in self.origins:
            raise ApiError(403, "this origin may not use the codec endpoint")
        staff = staff_for_key(self.settings, bearer)
        if staff is not None:
            return CodecCaller("staff", staff.fingerprint)
        if bearer and self.oidc is not None:
            return self._operator(self.oidc, bearer)
        development = self.settings.env == Environment.DEVELOPMENT
        if origin is not None and development and _loopback(client_host):
            return CodecCaller("ui-origin", origin)
        raise _unauthorized("the Web UI's access token or a staff key is required")

    @staticmethod
    def _operator(oidc: OidcTokens, token: str) -> CodecCaller:
        try:
            claims = oidc.claims(token)
        except jwt.PyJWKClientConnectionError as err:
            log.warning("identity provider unreachable", issuer=oidc.issuer, error=str(err))
            raise ApiError(503, "the identity provider cannot be reached; try again") from err
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as err:
            # The reason (expired, audience, issuer, signature) is for the log, not the caller.
            log.info("codec access token refused", reason=type(err).__name__)
            raise _unauthorized("the access token is not valid for the codec") from err
        subject = hashlib.sha256(str(claims["sub"]).encode()).hexdigest()[:8]
        return CodecCaller("oidc", subject)


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="codec"'})


def get_codec_access(request: Request) -> CodecAccess:
    access: CodecAccess = request.app.state.codec_access
    return access


_codec_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CodecCredentials",
    description="A staff key, or the Temporal Web UI's OIDC access token.",
)


def get_codec_caller(
    request: Request,
    access: Annotated[CodecAccess, Depends(get_codec_access)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_codec_bearer)],
) -> CodecCaller:
    """Sync on purpose: FastAPI runs it in a thread, where fetching the JWKS may block."""
    bearer = "" if credentials is None else credentials.credentials
    origin = request.headers.get("origin")
    host = request.client.host if request.client is not None else None
    return access.admit(origin, host, bearer)


CodecCallerDep = Annotated[CodecCaller, Depends(get_codec_caller)]


class CodecCors:
    """CORS for the codec routes only: exactly the UI's origins, the headers the UI sends.

    The rest of the API is not meant to be read by another origin's pages.
    """

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            # The UI may send its cookies (TEMPORAL_CODEC_INCLUDE_CREDENTIALS).
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == CODEC_PATH or path.startswith(f"{CODEC_PATH}/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
