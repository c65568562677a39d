"""An operator reads a stuck booking decoded in the Temporal Web UI of `make up`, nobody else does.

`python -m passage.dev.devstack` runs on free ports as a developer starts it; a booking is made
stuck with the simulator's faults (a refused confirmation, then a refused undo: NEEDS_ATTENTION),
and headless Chromium opens it from the UI's list of stuck bookings. Its workflow input shows the
traveller decoded through the API's codec endpoint, which admits the UI's own origin. The same
page decodes nothing when the UI's codec points elsewhere or when its request comes from another
origin, and a page of another origin cannot read the endpoint at all.

`PASSAGE_SCREENSHOT_DIR=docs/temporal-ui` refreshes the README's pictures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Request, Route
from playwright.async_api import Error as PlaywrightError

from bench.engine import free_ports
from tests.browser.conftest import Screenshot

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 120.0
STRIPE_KEY = "sk_test_passage"
FLIGHT, HOTEL = "fl-aurora-cdg-jfk", "ht-meridian-par-2n"
#: The customer is not the traveller: the traveller's name is deep in the input, past the items.
CUSTOMER = {"email": "grace@example.com", "name": "Grace Hopper"}
TRAVELLER = {
    "first_name": "Alan",
    "last_name": "Turing",
    "birth_date": "1912-06-23",
    "document_number": "T1912062",
}
#: What must never show without the codec's consent.
PERSONAL = ("Turing", "T1912062", "Hopper", "grace@example.com")
#: The stuck list as an operator sets it up: Passage's search attributes as columns.
COLUMNS = ["Status", "Workflow ID", "BookingStatus", "BookingStep", "Suppliers", "TotalMinor"]
FOREIGN_ORIGIN = "http://evil.example"


@dataclass
class MakeUp:
    """A running `python -m passage.dev.devstack` and where it listens."""

    ports: dict[str, int]
    state_dir: Path

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[variable]}"

    @property
    def api(self) -> str:
        return self.url("PASSAGE_API_PORT")

    @property
    def ui(self) -> str:
        return self.url("PASSAGE_TEMPORAL_UI_PORT")

    @property
    def staff(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.state_dir / 'staff_key').read_text().strip()}"}


@pytest.fixture(scope="module")
def make_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeUp]:
    base = tmp_path_factory.mktemp("temporal-ui")
    variables = ["API", "TEMPORAL", "TEMPORAL_UI", "SIMULATOR", "STRIPE"]
    ports = dict(zip((f"PASSAGE_{v}_PORT" for v in variables), free_ports(5), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSAGE_")}
    env.pop("DATABASE_URL", None)
    env.update({k: str(v) for k, v in ports.items()})
    env.update(PASSAGE_ENV="development", PASSAGE_STATE_DIR=str(base / "state"))
    log = base / "make-up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "passage.dev.devstack"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = MakeUp(ports, base / "state")
    try:
        deadline = time.monotonic() + READY_SECONDS
        while "\nready\n" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make up did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        yield stack
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _stuck_booking(stack: MakeUp) -> str:
    """A flight and a hotel; the flight's confirmation and then the hotel's undo are refused."""
    async with httpx.AsyncClient(timeout=30) as http:
        simulator = stack.url("PASSAGE_SIMULATOR_PORT")
        for supplier, operation, code in (
            ("aurora-air", "confirm", "SOLD_OUT"),
            ("meridian-stays", "cancel", "NOT_CANCELLABLE"),
        ):
            fault = {"supplier": supplier, "operation": operation, "mode": "refuse", "code": code}
            (await http.post(f"{simulator}/_sim/faults", json=fault)).raise_for_status()
        card = await http.post(
            f"{stack.url('PASSAGE_STRIPE_PORT')}/v1/payment_methods",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12"}
            | {"card[exp_year]": "2034", "card[cvc]": "123"},
        )
        card.raise_for_status()
        items = []
        for offer_id in (FLIGHT, HOTEL):
            offer = (await http.get(f"{simulator}/offers/{offer_id}")).json()
            items.append({"offer_id": offer_id, "quantity": 1, "expected_price": offer["price"]})
        body = {
            "customer": CUSTOMER,
            "travellers": [TRAVELLER],
            "items": items,
            "payment": {"payment_method": card.json()["id"]},
        }
        created = await http.post(
            f"{stack.api}/bookings", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        assert created.status_code == 202, created.text
        booking_id: str = created.json()["booking_id"]
        deadline = time.monotonic() + 60
        while True:
            view = await http.get(f"{stack.api}/admin/bookings/{booking_id}", headers=stack.staff)
            if view.json()["status"] == "NEEDS_ATTENTION":
                return booking_id
            assert time.monotonic() < deadline, view.text
            await asyncio.sleep(0.5)


@pytest_asyncio.fixture(scope="module")
async def stuck(make_up: MakeUp) -> str:
    return await _stuck_booking(make_up)


@contextlib.asynccontextmanager
async def _context(browser: Browser, storage: dict[str, Any]) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile whose UI settings (localStorage) are `storage`."""
    context = await browser.new_context(viewport={"width": 1600, "height": 760}, locale="en-GB")
    script = "".join(
        f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))});"
        for key, value in storage.items()
    )
    await context.add_init_script(script)
    try:
        yield context
    finally:
        await context.close()


UI_SETTINGS = {"namespace-workflow-table-columns": {"default": [{"label": c} for c in COLUMNS]}}


async def _stuck_list(page: Page, stack: MakeUp, booking_id: str) -> None:
    """As an operator: the UI's list of stuck bookings, until the booking is in it."""
    query = urllib.parse.quote('BookingStatus="NEEDS_ATTENTION"')
    await page.goto(f"{stack.ui}/namespaces/default/workflows?query={query}")
    row = page.get_by_role("row").filter(has_text=f"booking-{booking_id}")
    await row.get_by_text("CANCEL it_2").wait_for(timeout=60_000)


async def _open_stuck_booking(page: Page, stack: MakeUp, booking_id: str) -> None:
    """The list of stuck bookings, then the booking's workflow page."""
    await _stuck_list(page, stack, booking_id)
    await page.get_by_role("link", name=f"booking-{booking_id}").click()
    # The SPA loads the execution, then its history; the input card is the start event's payload.
    await page.get_by_text("Event History").first.wait_for(timeout=60_000)
    await page.locator('.cm-content[aria-label="Input"]').first.wait_for(timeout=60_000)


def _decodes(request: Request) -> bool:
    return request.method == "POST" and "/codec/decode" in request.url


async def test_an_operator_reads_a_stuck_booking_decoded_in_the_temporal_ui(
    browser: Browser, make_up: MakeUp, stuck: str, screenshot: Screenshot
) -> None:
    async with _context(browser, UI_SETTINGS) as context:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await _stuck_list(page, make_up, stuck)
        await screenshot(page, "stuck-booking")

        async with page.expect_response(
            lambda response: _decodes(response.request) and response.status == 200,
            timeout=60_000,
        ):
            await _open_stuck_booking(page, make_up, stuck)
        deadline = time.monotonic() + 60
        while TRAVELLER["last_name"] not in (shown := await _input_text(page)):
            assert time.monotonic() < deadline, shown
            await asyncio.sleep(0.5)
        assert TRAVELLER["document_number"] in shown and CUSTOMER["email"] in shown
        await page.get_by_text("User Metadata", exact=True).click()
        # Summary and current details are markdown the UI renders in frames of its own.
        await _rendered(page, "2 items · 980.00 EUR")
        await _rendered(page, "Waiting for an operator")
        await screenshot(page, "stuck-booking-details")
        assert errors == [], errors


async def _rendered(page: Page, text: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        for frame in page.frames[1:]:
            with contextlib.suppress(PlaywrightError):
                if text in await frame.inner_text("body"):
                    return
        assert time.monotonic() < deadline, f"{text!r} is not shown"
        await asyncio.sleep(0.5)


async def _input_text(page: Page) -> str:
    """The workflow input as the page shows it, every line: its viewer renders only what is in
    view, so it is scrolled through."""
    return str(
        await page.evaluate(
            """async () => {
                const content = document.querySelector('.cm-content[aria-label="Input"]');
                if (!content) return "";
                const scroller = content.closest(".cm-editor").querySelector(".cm-scroller");
                let seen = content.textContent;
                for (let i = 0; i < 200; i++) {
                    if (scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight) break;
                    scroller.scrollTop += 120;
                    await new Promise(resolve => setTimeout(resolve, 30));
                    seen += " " + content.textContent;
                }
                return seen;
            }"""
        )
    )


async def _sees_nothing_personal(page: Page) -> None:
    await page.wait_for_timeout(1500)  # past the answers to the decode calls the UI made
    shown = await _input_text(page) + await page.inner_text("body")
    assert shown.strip(), "the input card is not there"
    leaked = [value for value in PERSONAL if value in shown]
    assert not leaked, leaked


async def test_the_page_decodes_nothing_through_another_codec_or_from_another_origin(
    browser: Browser, make_up: MakeUp, stuck: str
) -> None:
    # The UI's codec pointed elsewhere (its Data Encoder setting): the payloads stay sealed.
    other_codec = f"{make_up.url('PASSAGE_SIMULATOR_PORT')}/codec"
    elsewhere = {**UI_SETTINGS, "endpoint": other_codec, "overrideRemoteCodecConfiguration": True}
    async with _context(browser, elsewhere) as context:
        page = await context.new_page()
        async with page.expect_request(
            lambda request: _decodes(request) and request.url.startswith(other_codec),
            timeout=60_000,
        ):
            await _open_stuck_booking(page, make_up, stuck)
        await _sees_nothing_personal(page)

    # The UI's own decode calls, sent as if from another origin: refused, nothing decoded.
    async with _context(browser, UI_SETTINGS) as context:
        page = await context.new_page()
        refused: list[int] = []
        sealed: list[str] = []

        async def from_elsewhere(route: Route) -> None:
            request = route.request
            if request.method != "POST":
                await route.continue_()
                return
            sealed.append(request.post_data or "")
            response = await route.fetch(headers={**request.headers, "origin": FOREIGN_ORIGIN})
            refused.append(response.status)
            await route.fulfill(response=response)

        await page.route("**/codec/decode*", from_elsewhere)
        await _open_stuck_booking(page, make_up, stuck)
        deadline = time.monotonic() + 60
        while not refused:
            assert time.monotonic() < deadline, "the UI made no decode call"
            await asyncio.sleep(0.2)
        await _sees_nothing_personal(page)
        assert refused and set(refused) == {403}, refused

        # A page of another origin (here the simulator's) cannot read the endpoint at all.
        await page.unroute("**/codec/decode*")
        await page.goto(f"{make_up.url('PASSAGE_SIMULATOR_PORT')}/healthz")
        outcome = await page.evaluate(
            """async ([url, body]) => {
                try {
                    const response = await fetch(url, {method: "POST", body,
                        headers: {"Content-Type": "application/json", "X-Namespace": "default"}});
                    return "read " + response.status + " " + await response.text();
                } catch (error) { return "blocked"; }
            }""",
            [f"{make_up.api}/codec/decode", sealed[0]],
        )
        assert outcome == "blocked", outcome

    # The same request as the UI's from its own origin does decode: the refusals above are real.
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{make_up.api}/codec/decode",
            content=sealed[0],
            headers={"Content-Type": "application/json", "Origin": make_up.ui},
        )
        assert response.status_code == 200, response.text
        assert "payloads" in response.json()
