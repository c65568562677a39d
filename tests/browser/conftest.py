"""The reference checkout page in a real browser: Playwright driving Debian's Chromium.

Playwright's own browser download needs the internet, so the tests drive the `chromium` package
(`make test` installs it when missing; elsewhere `apt-get install chromium`), found at
`PASSAGE_CHROMIUM` or the package's paths.

Fixtures:
- `checkout_site` (module): the API with the page on (`checkout_enabled`, the Stripe emulator's
  fake Stripe.js) on the session's real engine, served over TCP; the emulator's webhooks point at
  it while the module runs, as under `make up`.
- `browser` (module) and `page` (a fresh context per test).
- `screenshot(page, name)`: a PNG of the page into `PASSAGE_SCREENSHOT_DIR` (default a temporary
  folder; `PASSAGE_SCREENSHOT_DIR=docs/checkout` refreshes the README's pictures).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from api.app import create_app
from tests.support.api import served_over_tcp
from tests.support.stack import Engine
from tests.support.stripe import StripeHarness

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
WEBHOOK_ID = "browser-tests"

Screenshot = Callable[[Page, str], Coroutine[Any, Any, Path]]


def chromium_executable() -> str:
    configured = os.environ.get("PASSAGE_CHROMIUM")
    for candidate in (configured, *CHROMIUM_PATHS):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "the browser tests need Debian's Chromium: `apt-get install -y chromium` "
        "(make test installs it when it can), or PASSAGE_CHROMIUM=/path/to/chromium",
        pytrace=False,
    )


@dataclass(frozen=True)
class CheckoutSite:
    url: str
    engine: Engine


@pytest_asyncio.fixture(scope="module")
async def checkout_site(engine_worker: Engine, stripe_url: str) -> AsyncIterator[CheckoutSite]:
    settings = engine_worker.settings.model_copy(
        update={"checkout_enabled": True, "stripe_js_url": f"{stripe_url}/js.stripe.com/v3/"}
    )
    app = create_app(settings, client=engine_worker.client)
    harness = StripeHarness(stripe_url)
    async with app.router.lifespan_context(app), served_over_tcp(app) as url:
        await harness.register_webhook(
            WEBHOOK_ID, f"{url}/webhooks/stripe", settings.stripe_webhook_secret
        )
        try:
            yield CheckoutSite(url, engine_worker)
        finally:
            # localstripe cannot forget a webhook: an empty event list silences it.
            response = await harness.http.post(
                f"/_config/webhooks/{WEBHOOK_ID}",
                json={"url": url, "secret": settings.stripe_webhook_secret, "events": []},
            )
            response.raise_for_status()
            await harness.http.aclose()


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # Root in a container: Chromium's sandbox needs user namespaces it may not have.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 1400}, locale="en-GB")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"the page raised: {errors}"


@pytest.fixture(scope="session")
def screenshot_dir() -> Iterator[Path]:
    configured = os.environ.get("PASSAGE_SCREENSHOT_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="passage-screenshots-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def screenshot(screenshot_dir: Path) -> Screenshot:
    async def take(page: Page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, path  # a picture of the page, not a blank one
        return path

    return take
