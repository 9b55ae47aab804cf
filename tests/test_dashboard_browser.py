"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): a leader of
the seeded court of tests/test_dashboard signs in, reads the figures counted there by
hand, follows a figure to its items; at desktop (1280 px) and tablet (820 px) size.
Screenshots in test-artifacts/dashboard-*.png."""

from __future__ import annotations

import re

from bot.core import clock
from tests.browser import desktop_page, keep
from tests.test_dashboard import NOW, seed
from tests.test_webconsole import give_password
from tests.test_webconsole_browser import nothing_sideways, sign_in, tablet_page
from tests.world import World


async def test_a_leader_reads_the_dashboard_at_a_desk_and_on_a_tablet(world: World) -> None:
    w = world
    clock.set_clock(lambda: NOW)
    ids = await seed(w)
    await give_password(w, "boss")
    base = str(w.client.make_url("")).rstrip("/")
    async with desktop_page() as page:
        await sign_in(page, base, "boss")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.click("text=驾驶舱")
        await page.wait_for_url(re.compile(r"/console/dashboard$"))
        tiles = await page.inner_text(".tiles")
        for shown in ("50.0%", "66.7%", "60.0%", "22.5"):
            assert shown in tiles, tiles
        assert await page.locator("svg rect").count() >= 3  # weekly bars and team bars
        await nothing_sideways(page, 1280)
        await keep(page, "dashboard-1-desktop")
        await page.click(".tile.alarm")  # 当前超期: t4 and t6
        await page.wait_for_url(re.compile(r"figure=overdue_now"))
        listed = await page.inner_text("table.figure-items tbody")
        assert f"#{ids['t4']}" in listed and f"#{ids['t6']}" in listed
        assert f"#{ids['t1']}" not in listed
        await keep(page, "dashboard-2-items-desktop")
    async with tablet_page() as page:
        await sign_in(page, base, "boss")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.goto(f"{base}/console/dashboard")
        assert "50.0%" in await page.inner_text(".tiles")
        await nothing_sideways(page, 820)
        await keep(page, "dashboard-3-tablet")
