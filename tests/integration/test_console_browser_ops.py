"""The console's subscriptions, dead-letter and import pages in a real browser (Debian's
Chromium, Playwright) against ``cityhub run --simulate`` on the real stack: an operator runs an
import with a bad row and reads its report, and opens a dead letter of one of the tenant's
devices; a subscriber sees its webhook subscription's delivery figures (written by the delivery
process to the status topic), pauses it and resumes it. axe-core finds no WCAG 2.1 AA violation
on any page, and no page breaks its Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Page, expect

from .console_browser import AXE, CHROMIUM, check_page, chromium
from .hub import Hub, publish
from .subscribers import Api, WebhookReceiver, wait_for

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not AXE.exists(),
    reason="needs Debian's Chromium (deploy/system-deps.sh) and axe-core (make console-assets)",
)

STATUS_WITHIN_SECONDS = 30
TENANT = "demo"  # the simulator's tenant


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp("console-ops-hub")
    hub = Hub(
        workdir,
        args=("--workers", "1", "--simulate", "--devices", "8", "--rate", "16"),
        extra_env={"CITYHUB_SUBSCRIPTIONS__WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]'},
    )
    hub.start(wait=120)
    try:
        yield hub
    finally:
        hub.stop()


async def _sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/console/sign-in")
    await page.get_by_label("API-sleutel").fill(key)
    await page.get_by_role("button", name="Aanmelden").click()
    await expect(page).to_have_url(re.compile(r"/console/devices"))


async def _sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Afmelden").click()
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))


async def test_an_import_a_dead_letter_and_pausing_a_subscription_in_the_browser(
    hub: Hub, tmp_path: Path
) -> None:
    operator = hub.create_key(TENANT, "operator", name="ops operator")
    subscriber = hub.create_key(TENANT, "subscriber", name="ops subscriber")
    api = Api(hub, {"op": operator, "sub": subscriber})
    status, types = await api.call("GET", f"/tenants/{TENANT}/device-types", "op")
    assert status == 200, types
    personal = {t["id"] for t in types["items"] if t["classification"] == "personal"}
    status, devices = await api.call("GET", f"/tenants/{TENANT}/devices?limit=1000", "op")
    assert status == 200, devices
    # Not a personal type: a personal device's dead-letter payload is shown to nobody.
    device = next(d for d in devices["items"] if d["type"] not in personal)
    device_id, type_id = device["id"], device["type"]
    # A dead letter of one of the tenant's devices: a payload that is no JSON, with markup in it.
    await publish([(f"cityhub/ingest/{device_id}", b'{"temperature": <b>hot</b>')])
    receiver = WebhookReceiver()
    await receiver.start()
    base = f"http://127.0.0.1:{hub.port}"
    csp_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            csp_errors.append(message.text)

    try:
        created = await api.subscribe(
            "sub",
            TENANT,
            {
                "id": "browser-hook",
                "name": "Browser hook",
                "delivery": {"kind": "webhook", "url": receiver.url("hook")},
            },
        )
        receiver.secrets["hook"] = created["secret"]
        async with chromium(tmp_path / "profile", locale="nl-NL") as context:
            page = await context.new_page()
            page.on("console", on_console)
            await _sign_in(page, base, operator)

            # An import with a bad row: progress, then the report names its line and reason.
            await page.get_by_role("link", name="Importeren").click()
            await check_page(page, "11-imports")
            csv = (
                "id;name;type\n"
                f"browser-1;Browser one;{type_id}\n"
                "browser-2;Browser two;no-such-type\n"
                f"browser-3;Browser three;{type_id}\n"
            ).encode()
            await page.get_by_label("Bestand").set_input_files(
                files=[{"name": "devices.csv", "mimeType": "text/csv", "buffer": csv}]
            )
            await page.get_by_role("button", name="Importeer").click()
            await expect(page).to_have_url(re.compile(r"/console/imports/[\w-]+$"))
            await expect(page.locator("#import-progress")).to_have_attribute("data-state", "done")
            await expect(page.locator("#import-summary")).to_contain_text(
                "2 aangemaakt, 0 bijgewerkt, 1 fout"
            )
            bad = page.locator("#bad-rows tbody tr")
            await expect(bad).to_have_count(1)
            cells = bad.first.locator("td")
            await expect(cells.nth(1)).to_have_text("3")  # the file's third line
            await expect(cells.nth(2)).to_have_text("browser-2")
            await expect(cells.nth(3)).to_contain_text("type")
            await check_page(page, "12-import-report")

            # The dead letter: listed by reason, opened, its payload shown as text, not markup.
            await page.get_by_role("link", name="Afgewezen berichten").click()
            letter = (
                page.get_by_role("row").filter(has_text=device_id).filter(has_text="malformed_json")
            )
            for _ in range(30):
                if await letter.count():
                    break
                await page.wait_for_timeout(1000)
                await page.reload()
            await expect(letter.first).to_be_visible()
            await check_page(page, "13-dead-letters")
            await letter.first.get_by_role("link").first.click()
            await expect(page.locator("h1")).to_contain_text("Afgewezen bericht")
            await expect(page.locator("#payload")).to_have_text('{"temperature": <b>hot</b>')
            assert await page.locator("#payload b").count() == 0  # never rendered as HTML
            await expect(page.get_by_role("link", name=device_id)).to_have_attribute(
                "href", f"/console/devices/{device_id}"
            )
            await check_page(page, "14-dead-letter")
            await _sign_out(page)

            # The subscriber's subscription: figures from the delivery process, pause, resume.
            await _sign_in(page, base, subscriber)
            await page.get_by_role("link", name="Abonnementen").click()
            row = page.locator("#sub-demo-browser-hook")
            for _ in range(STATUS_WITHIN_SECONDS):
                if re.search(r"\d+ berichten", await row.inner_text()):
                    break
                await page.wait_for_timeout(1000)
                await page.reload()
            await expect(row).to_contain_text(re.compile(r"\d+ berichten, [\d.]+ s"))
            await expect(row.locator("[data-state]")).to_have_attribute("data-state", "active")
            await check_page(page, "15-subscriptions")
            await row.get_by_role("button", name="Pauzeer").click()
            await expect(page.get_by_role("status").first).to_contain_text("gepauzeerd")
            await expect(row.locator("[data-state]")).to_have_attribute("data-state", "paused")
            status, doc = await api.call(
                "GET", f"/tenants/{TENANT}/subscriptions/browser-hook", "sub"
            )
            assert doc["state"] == "paused"
            await check_page(page, "16-subscription-paused")
            delivered = len(receiver.items("hook"))
            await row.get_by_role("button", name="Hervat").click()
            await expect(row.locator("[data-state]")).to_have_attribute("data-state", "active")
            status, doc = await api.call(
                "GET", f"/tenants/{TENANT}/subscriptions/browser-hook", "sub"
            )
            assert doc["state"] == "active"
            # Delivery goes on after the resume.
            assert await wait_for(lambda: len(receiver.items("hook")) > delivered, 30)
    finally:
        await receiver.stop()
    assert csp_errors == []
