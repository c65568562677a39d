"""The reference checkout page (`GET /checkout`) and the offer list it shows.

Mounted only when `PASSAGE_CHECKOUT_ENABLED` is on (`make up` turns it on; production leaves it
off): a plain HTML page, a stylesheet and a small script from `api/checkout/`, no build step.
The page books through the public checkout API only (`POST /bookings`, `GET /bookings/{id}/events`,
price decision, cancel), so it doubles as living documentation for frontend teams.

`GET /checkout/offers` is the one thing the page needs that is not Passage's: the catalogue.
Passage books offers, it does not search them, so a real frontend lists offers from its own search
service; here the API relays the supplier simulator's `/offers`, and only alongside the page.
"""

from __future__ import annotations

import html
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import SettingsDep
from api.errors import ApiError, error_responses
from passage.settings import Settings

router = APIRouter(prefix="/checkout", tags=["checkout (reference page)"])

PAGE_DIR = Path(__file__).resolve().parent.parent / "checkout"
_ASSETS = {"checkout.js": "text/javascript", "checkout.css": "text/css"}


class OfferKind(StrEnum):
    FLIGHT = "flight"
    HOTEL = "hotel"
    CRUISE = "cruise"
    FERRY = "ferry"
    ACTIVITY = "activity"


@router.get("", response_class=HTMLResponse, summary="The reference checkout page")
async def checkout_page(settings: SettingsDep) -> HTMLResponse:
    """The page, with the Stripe.js to load and its publishable key filled in."""
    config = {"stripePublishableKey": settings.stripe_publishable_key}
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{STRIPE_JS_URL}}", html.escape(settings.stripe_js_url, quote=True))
    # `<` escaped so the JSON cannot close the script element it sits in.
    page = page.replace("{{CONFIG_JSON}}", json.dumps(config).replace("<", "\\u003c"))
    return HTMLResponse(page, headers=_page_headers(settings))


@router.get("/assets/{name}", include_in_schema=False)
async def checkout_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise ApiError(404, "no such asset")
    return FileResponse(
        PAGE_DIR / name, media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"}
    )


@router.get(
    "/offers",
    summary="Offers the reference page lists (relayed from the supplier simulator)",
    responses=error_responses(422, 503),
)
async def checkout_offers(
    settings: SettingsDep, kind: Annotated[OfferKind, Query(description="Which kind of offer")]
) -> list[dict[str, Any]]:
    """The simulator's `GET /offers?kind=` as it answers; not part of the booking API."""
    try:
        async with httpx.AsyncClient(timeout=settings.supplier_timeout_seconds) as http:
            response = await http.get(f"{settings.supplier_url}/offers", params={"kind": kind})
            response.raise_for_status()
            offers: list[dict[str, Any]] = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise ApiError(503, "the offer catalogue did not answer; retry later") from err
    return offers


def _page_headers(settings: Settings) -> dict[str, str]:
    """A content security policy: scripts from here and Stripe.js's origin only, no inline."""
    stripe = urlsplit(settings.stripe_js_url)
    stripe_origin = f"{stripe.scheme}://{stripe.netloc}"
    if stripe.netloc == "js.stripe.com":  # Stripe's own script calls its API and frames
        stripe_origin += " https://api.stripe.com https://hooks.stripe.com"
    policy = "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {stripe_origin}",
            f"connect-src 'self' {stripe_origin}",
            f"frame-src {stripe_origin}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )
    return {"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"}
