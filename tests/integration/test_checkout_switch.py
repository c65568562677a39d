"""The reference checkout page is off unless asked for, and never gets a secret key."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import httpx
import pytest
from pydantic import ValidationError
from temporalio.client import Client

from api.app import create_app
from passage.settings import Environment, Settings


def settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        env=Environment.DEVELOPMENT,
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        **changes,  # type: ignore[arg-type]
    )


async def get(app_settings: Settings, path: str) -> httpx.Response:
    app = create_app(app_settings, client=cast(Client, object()))  # nothing here uses Temporal
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://passage.test") as http:
            return await http.get(path)


async def test_the_page_is_off_by_default_and_absent_from_the_openapi(tmp_path: Path) -> None:
    off = settings(tmp_path)
    assert off.checkout_enabled is False
    for path in ("/checkout", "/checkout/offers?kind=flight", "/checkout/assets/checkout.js"):
        assert (await get(off, path)).status_code == 404
    paths = (await get(off, "/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/checkout")]
    assert "/bookings/{booking_id}/events" in paths  # the event stream is always there


async def test_the_page_loads_the_configured_stripe_js_under_a_strict_policy(
    tmp_path: Path,
) -> None:
    on = settings(
        tmp_path,
        checkout_enabled=True,
        stripe_js_url="http://127.0.0.1:8420/js.stripe.com/v3/",
        stripe_publishable_key="pk_test_page",
    )
    page = await get(on, "/checkout")
    assert page.status_code == 200
    assert '<script src="http://127.0.0.1:8420/js.stripe.com/v3/"></script>' in page.text
    assert '"stripePublishableKey": "pk_test_page"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' http://127.0.0.1:8420;" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    script = await get(on, "/checkout/assets/checkout.js")
    assert script.status_code == 200 and "Last-Event-ID" in script.text
    assert (await get(on, "/checkout/assets/../index.html")).status_code == 404
    assert (await get(on, "/checkout/offers?kind=spaceship")).status_code == 422


def test_a_secret_key_is_never_handed_to_the_browser(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="publishable key"):
        settings(tmp_path, stripe_publishable_key="sk_test_passage")
