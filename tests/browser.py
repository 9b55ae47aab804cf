"""Pages as a person sees them: Debian's Chromium (/usr/bin/chromium, installed by
scripts/test), driven by Playwright, at a phone's size (or a desktop's, for what is read
at a desk and printed). Screenshots are kept in test-artifacts/ to be looked at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# This machine's network is closed: Chromium's own background connections would only fail.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}  # a common phone, in CSS pixels
DESKTOP = {"width": 1280, "height": 900}  # an office screen, in CSS pixels


@asynccontextmanager
async def phone_page(user_agent: str | None = None) -> AsyncIterator[Page]:
    """`user_agent`: another browser's (WeChat's, say); None: Chromium's own."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(
                viewport=PHONE,
                device_scale_factor=2,
                is_mobile=True,
                locale="zh-CN",
                user_agent=user_agent,
            )
            yield await context.new_page()
        finally:
            await browser.close()


@asynccontextmanager
async def desktop_page() -> AsyncIterator[Page]:
    """A page at an office screen's size: what staff and auditors read, and print."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
            yield await context.new_page()
        finally:
            await browser.close()


async def keep(page: Page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
