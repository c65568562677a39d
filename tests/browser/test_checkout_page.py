"""The reference checkout page, as a customer uses it, in Chromium on the real engine.

Each test books through the page only (offers, traveller, card through the fake Stripe.js, the
live timeline from the event stream) and then checks the world: the booking's view over the API
and the Stripe emulator's PaymentIntents.
"""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import CheckoutSite, Screenshot
from tests.support.simulator import SimulatorControl
from tests.support.stripe import CARD_3DS, CARD_DECLINED, CARD_OK, StripeHarness

FLIGHT = "fl-aurora-cdg-jfk"  # aurora-air: 10 % cancellation fee (free period over)
HOTEL = "ht-meridian-par-2n"  # meridian-stays: free cancellation
SETTLE_MS = 60_000
BOOKING_ID = re.compile(r"^bk_\w+$")


async def open_checkout(page: Page, site: CheckoutSite) -> None:
    await page.goto(f"{site.url}/checkout")
    await expect(page.get_by_role("status").first).to_have_text(
        "Offers loaded: choose one or more."
    )


async def fill_in(page: Page, card_number: str, *offer_ids: str) -> None:
    """Choose the offers and type everything in by label, as a keyboard user would."""
    for offer_id in offer_ids:
        await page.locator(f"#offer-{offer_id}").check()
    await page.get_by_label("E-mail").fill("ada@example.com")
    await page.get_by_label("Name on the booking").fill("Ada Lovelace")
    await page.get_by_label("First name").fill("Ada")
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("Date of birth").fill("1990-12-10")
    await page.get_by_label("Passport or ID number").fill("X1234567")
    await page.get_by_label("Card number").fill(card_number)
    await page.get_by_label("Expiry month (MM)").fill("12")
    await page.get_by_label("Expiry year (YY)").fill("34")
    await page.get_by_label("CVC").fill("123")
    await page.get_by_label("Postal code").fill("75001")


async def pay(page: Page) -> str:
    await page.get_by_role("button", name="Pay and book").press("Enter")
    booking_id = page.locator("#booking-id")
    await expect(booking_id).to_have_text(BOOKING_ID, timeout=SETTLE_MS)
    return await booking_id.inner_text()


async def status_becomes(page: Page, status: str) -> None:
    await expect(page.locator("#status")).to_have_attribute(
        "data-status", status, timeout=SETTLE_MS
    )


async def booking_view(site: CheckoutSite, page: Page) -> dict[str, object]:
    """The booking as the API shows it, with the token the page keeps (never in a URL)."""
    saved = await page.evaluate("JSON.parse(sessionStorage.getItem('passage-booking'))")
    assert "token" not in page.url and saved["token"] not in page.url
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as http:
        response = await http.get(
            f"/bookings/{saved['id']}", headers={"Authorization": f"Bearer {saved['token']}"}
        )
    response.raise_for_status()
    view: dict[str, object] = response.json()
    return view


async def timeline_steps(page: Page) -> list[str]:
    return await page.locator("#timeline li").all_inner_texts()


async def test_a_booking_confirms_live(
    page: Page, checkout_site: CheckoutSite, simulator: SimulatorControl, screenshot: Screenshot
) -> None:
    await open_checkout(page, checkout_site)
    await fill_in(page, CARD_OK, FLIGHT, HOTEL)
    await expect(page.locator("#total")).to_have_text("€980.00")
    await screenshot(page, "checkout-form")
    await pay(page)
    await status_becomes(page, "CONFIRMED")
    await expect(page.get_by_role("heading", name="Your trip is booked")).to_be_focused()
    # The status line is a polite live region: screen readers hear each change.
    status = page.locator("#status")
    assert await status.get_attribute("aria-live") == "polite"
    await expect(status).to_have_text("Confirmed")
    view = await booking_view(checkout_site, page)
    steps = await timeline_steps(page)
    assert len(steps) == len(view["timeline"])  # type: ignore[arg-type]
    assert any("CAPTURE" in step for step in steps)
    assert view["status"] == "CONFIRMED"
    await expect(page.locator("[data-field=captured]")).not_to_have_text("€0.00")
    await screenshot(page, "checkout-confirmed")


async def test_3d_secure_is_completed_in_the_page(
    page: Page,
    checkout_site: CheckoutSite,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    screenshot: Screenshot,
) -> None:
    await open_checkout(page, checkout_site)
    await fill_in(page, CARD_3DS, HOTEL)
    booking_id = await pay(page)
    await status_becomes(page, "AWAITING_PAYMENT_ACTION")
    complete = page.get_by_role("button", name="Complete authentication")
    await expect(complete).to_be_visible(timeout=SETTLE_MS)
    await screenshot(page, "checkout-3d-secure")
    await complete.click()
    await status_becomes(page, "CONFIRMED")
    intents = await stripe_harness.payment_intents_for(booking_id)
    assert [intent["status"] for intent in intents] == ["succeeded"]


async def test_a_changed_price_is_accepted(
    page: Page, checkout_site: CheckoutSite, simulator: SimulatorControl, screenshot: Screenshot
) -> None:
    await open_checkout(page, checkout_site)
    await fill_in(page, CARD_OK, FLIGHT)
    shown = (await simulator.http.get(f"/offers/{FLIGHT}")).json()["price"]["amount"]
    await simulator.set_price(FLIGHT, shown + 5_000)  # the price moves while the customer types
    await pay(page)
    await status_becomes(page, "AWAITING_PRICE_ACCEPTANCE")
    panel = page.get_by_role("region", name="The price has changed")
    await expect(panel).to_be_visible()
    await expect(page.get_by_role("heading", name="The price has changed")).to_be_focused()
    await screenshot(page, "checkout-price-changed")
    await page.get_by_role("button", name="Accept the new price").click()
    await status_becomes(page, "CONFIRMED")
    view = await booking_view(checkout_site, page)
    assert view["payment"]["captured"]["amount"] == shown + 5_000  # type: ignore[index]


async def test_a_declined_card_says_so(
    page: Page,
    checkout_site: CheckoutSite,
    simulator: SimulatorControl,
    stripe_harness: StripeHarness,
    screenshot: Screenshot,
) -> None:
    await open_checkout(page, checkout_site)
    await fill_in(page, CARD_DECLINED, FLIGHT, HOTEL)
    booking_id = await pay(page)
    await status_becomes(page, "FAILED")
    await expect(page.get_by_role("heading", name="Your card was declined")).to_be_focused()
    await expect(page.locator("#outcome-detail")).to_contain_text("Nothing was charged")
    view = await booking_view(checkout_site, page)
    assert view["error"]["type"] == "PAYMENT_DECLINED"  # type: ignore[index]
    assert all(
        intent["status"] != "succeeded"
        for intent in await stripe_harness.payment_intents_for(booking_id)
    )
    await screenshot(page, "checkout-declined")


async def test_a_confirmed_booking_is_cancelled_with_its_refund_shown(
    page: Page, checkout_site: CheckoutSite, simulator: SimulatorControl, screenshot: Screenshot
) -> None:
    await open_checkout(page, checkout_site)
    await fill_in(page, CARD_OK, FLIGHT, HOTEL)
    await pay(page)
    await status_becomes(page, "CONFIRMED")
    cancel = page.get_by_role("button", name="Cancel booking")
    await cancel.focus()
    await page.keyboard.press("Enter")  # the keyboard alone is enough
    await status_becomes(page, "CANCELLED")
    view = await booking_view(checkout_site, page)
    payment = view["payment"]
    captured, refunded, fees = (payment[k]["amount"] for k in ("captured", "refunded", "fees_kept"))  # type: ignore[index]
    assert fees > 0 and refunded == captured - fees  # the flight keeps 10 %, the hotel nothing
    detail = page.locator("#outcome-detail")
    await expect(detail).to_contain_text("Refunded")
    await expect(detail).to_contain_text("cancellation fees kept")
    await expect(page.locator("[data-field=refunded]")).to_have_text(_euros(refunded))
    await expect(page.locator("[data-field=cancellation-fees-kept]")).to_have_text(_euros(fees))
    # Two streams (to CONFIRMED, then the cancellation after Last-Event-ID): no gap, no repeat.
    seqs = await page.locator("#timeline li").evaluate_all(
        "items => items.map(i => +i.dataset.seq)"
    )
    assert seqs == [entry["seq"] for entry in view["timeline"]]  # type: ignore[attr-defined]
    await screenshot(page, "checkout-cancelled")


def _euros(minor: int) -> str:
    return f"€{minor // 100:,}.{minor % 100:02d}"
