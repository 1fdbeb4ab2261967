"""The console in a real browser (Debian's Chromium, Playwright) against ``cityhub run
--simulate`` on the real stack: sign in with an operator key, find a simulated device, see a
live observation arrive within seconds, edit the device (an inline error, then a save), open
the map; axe-core finds no WCAG 2.1 AA violation on any page, and no page breaks its
Content-Security-Policy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, expect

from .console_browser import AXE, CHROMIUM, check_page, chromium
from .hub import Hub

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not AXE.exists(),
    reason="needs Debian's Chromium (deploy/system-deps.sh) and axe-core (make console-assets)",
)

TENANT = "demo"  # the simulator's tenant
LIVE_WITHIN_SECONDS = 15


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp("console-hub")
    hub = Hub(
        workdir,
        args=("--workers", "1", "--simulate", "--devices", "12", "--rate", "24"),
        # The console reads no history: the hub runs without the history store (and so does
        # not need PostgreSQL), and leaves no schema behind.
        extra_env={"CITYHUB_HISTORY__ENABLED": "false", "CITYHUB_HISTORY__DB_SCHEMA": "unused"},
    )
    hub.start(wait=120)
    try:
        yield hub
    finally:
        hub.stop()


async def test_an_operator_signs_in_finds_a_device_watches_it_live_and_edits_it(
    hub: Hub, tmp_path: Path
) -> None:
    key = hub.create_key(TENANT, "operator", name="browser test")
    base = f"http://127.0.0.1:{hub.port}"
    csp_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            csp_errors.append(message.text)

    async with chromium(tmp_path / "profile", locale="nl-NL") as context:
        page = await context.new_page()
        page.on("console", on_console)

        # Sign in: the page asks for the key; after it, the key is nowhere in the page or URL.
        await page.goto(f"{base}/console/")
        await expect(page).to_have_url(f"{base}/console/sign-in")
        await expect(page.locator("html")).to_have_attribute("lang", "nl")
        await check_page(page, "01-sign-in")
        await page.get_by_label("API-sleutel").fill(key)
        await page.get_by_role("button", name="Aanmelden").click()
        await expect(page).to_have_url(f"{base}/console/devices")
        assert key not in await page.content()
        assert key not in page.url
        cookies = await context.cookies()
        session = next(c for c in cookies if c["name"] == "cityhub_console")
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
        assert key not in session["value"]

        # The simulated devices are listed; the search narrows them (htmx swaps the results).
        rows = page.locator("#results tbody tr")
        await expect(rows.first).to_be_visible()
        await check_page(page, "02-devices")
        first_id = (await rows.first.locator("td").first.inner_text()).strip()
        await page.get_by_label("Zoek op id of naam").fill(first_id)
        await expect(page).to_have_url(re.compile(r"q=" + re.escape(first_id)))
        await expect(rows.first.locator("td").first).to_have_text(first_id)

        # The device page: a live observation arrives within seconds.
        await rows.first.locator("a").first.click()
        await expect(page.locator("h1")).to_contain_text(first_id)
        live = page.locator("#live-list li")
        started = time.monotonic()
        await expect(live.first).to_be_visible(timeout=LIVE_WITHIN_SECONDS * 1000)
        arrived_after = time.monotonic() - started
        print(f"first live observation after {arrived_after:.1f} s")
        await check_page(page, "03-device")

        # Edit: a wrong latitude is shown beside its field, then a good edit is saved.
        await page.get_by_label("Breedtegraad").fill("noord")
        await page.get_by_role("button", name="Opslaan").click()
        latitude = page.get_by_label("Breedtegraad")
        await expect(latitude).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#f-latitude-error")).to_be_visible()
        await check_page(page, "04-device-invalid")
        await latitude.fill("52.37")
        await page.get_by_label("Naam", exact=True).fill("Browser-tested sensor")
        await page.get_by_role("button", name="Opslaan").click()
        await expect(page.get_by_role("status").first).to_be_visible()
        await expect(page.locator("h1")).to_contain_text("Browser-tested sensor")

        # The map: every located device is drawn, and listed in the table beside it.
        await page.get_by_role("link", name="Kaart").click()
        await expect(page.locator("#map")).to_have_attribute("data-ready", re.compile(r"[1-9]"))
        await expect(page.locator(".leaflet-marker-icon").first).to_be_visible()
        await check_page(page, "05-map")

        # English, by the switch; then sign out (recorded on the hub's sign-out topic, not only
        # in this browser), and the console asks for a key again.
        await page.get_by_role("button", name="English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/console/sign-in\?notice=out$"))
        await expect(page.get_by_role("status")).to_have_text("You are signed out.")
        await page.goto(f"{base}/console/devices")
        await expect(page).to_have_url(f"{base}/console/sign-in")
    assert csp_errors == []
