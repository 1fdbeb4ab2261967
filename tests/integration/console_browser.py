"""Debian's Chromium driven by Playwright for the console's browser tests: never a downloaded
browser (no ``playwright install``), a fresh profile per run, nothing that phones home; axe-core
(from deploy/console's npm packages) checks each page against WCAG 2.1 AA."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "deploy" / "console" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
"""A folder to write a screenshot of each page checked into (``make console-screenshots``).
Not a ``CITYHUB_`` variable: the hub under test refuses names it does not know."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium(profile: Path, *, locale: str) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile in ``profile`` (Playwright takes the profile
    folder itself, as ``--user-data-dir``)."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            locale=locale,
        )
        try:
            yield context
        finally:
            await context.close()


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now (each with its rule
    and the elements at fault). Injected through the DevTools protocol, which the page's
    Content-Security-Policy does not govern, so the policy under test stays as it is."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))",
        WCAG_TAGS,
    )
    return list(result)


async def check_page(page: Page, name: str) -> None:
    """axe-core finds no violation on the page; a screenshot of it when asked for."""
    violations = await axe_violations(page)
    if SCREENSHOTS:
        # Playwright makes the folder.
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)
    assert violations == [], f"{name}: {violations}"
