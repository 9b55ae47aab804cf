"""The province's view and the console's WeCom sign-in in a real browser (Debian's
Chromium, driven by Playwright).

The province: tests/test_province's seed (courts 衡水 and 景县 with tickets in November
2026, the high court with none; its docstring counts every figure by hand) read by the
high court's `prov` at a desk and on a phone; a court's name opens its dashboard, read
only; a court's leader is refused the page. WeCom: the sign-in page's WeCom button, to the
local fake WeCom's QR sign-in page (corp id, agent id, our return address), scanned, and
back in the console. Screenshots in test-artifacts/console-province*.png and
test-artifacts/console-signin-wecom*.png."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Page, Route

from bot.channels.webconsole import words
from handlers import texts
from tests.browser import desktop_page, keep, phone_page
from tests.test_dashboard import COURT_B
from tests.test_province import BY_HAND, HEADINGS, HIGH_COURT, court_id, seeded  # noqa: F401
from tests.test_webconsole import give_password
from tests.test_webconsole_browser import nothing_sideways, sign_in
from tests.test_wecom import AGENT, CORP, JUDGE_WC, WeComWorld, link_judge, wc  # noqa: F401
from tests.world import World

PERIOD = "2026-11-01 至 2026-11-30"


async def shown_table(page: Page) -> dict[str, list[str]]:
    """The table as the reader sees it: each row's court, then its figures."""
    rows: dict[str, list[str]] = {}
    for row in await page.locator("table.figures tbody tr").all():
        name = (await row.locator("th").inner_text()).strip()
        rows[name] = [c.strip() for c in await row.locator("td").all_inner_texts()]
    return rows


async def test_the_province_reads_every_court_side_by_side_and_opens_one(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, ids = seeded
    await give_password(w, "prov", "boss")
    base = str(w.client.make_url("")).rstrip("/")
    b = await court_id(w, COURT_B)
    async with desktop_page() as page:
        await sign_in(page, base, "prov")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.click("header nav >> text=全省")
        await page.wait_for_url(re.compile(r"/console/province$"))
        assert PERIOD in await page.inner_text("h1")
        headings = await page.locator("table.figures thead th").all_inner_texts()
        assert [h.strip() for h in headings] == HEADINGS
        assert await shown_table(page) == BY_HAND
        # The province's row is last, set apart; the numbers sit right, in one column.
        last = page.locator("table.figures tbody tr").last
        assert await last.get_attribute("class") == "total"
        assert (await last.locator("th").inner_text()).strip() == "全省"
        aligns = await page.eval_on_selector_all(
            "table.figures td.n", "cells => cells.map(c => getComputedStyle(c).textAlign)"
        )
        assert set(aligns) == {"right"}, set(aligns)
        rights = await page.eval_on_selector_all(
            "table.figures tbody tr",
            "rows => rows.map(r => Math.round(r.cells[1].getBoundingClientRect().right))",
        )
        assert len(set(rights)) == 1, rights
        export = await page.get_attribute("a[href^='/console/province.csv']", "href")
        assert export == "/console/province.csv?from=2026-11-01&to=2026-11-30"
        await nothing_sideways(page, 1280)
        await keep(page, "console-province")

        # A court's name: its own dashboard for the same period, read only.
        await page.click(f"table.figures a:text-is('{COURT_B}')")
        await page.wait_for_url(re.compile(rf"/console/dashboard\?court={b}&from=2026-11-01"))
        assert COURT_B in await page.inner_text("h1")
        assert "（只读）" in await page.inner_text("main")
        tiles = await page.inner_text(".tiles")
        assert "收到诉求（件）" in tiles and "0.0%" in tiles and "100.0%" in tiles
        assert await page.locator("main form[method=post]").count() == 0  # nothing to act on
        back = await page.get_attribute("a:text('← 全省各院')", "href")
        assert back == "/console/province?from=2026-11-01&to=2026-11-30"
        await keep(page, "console-province-court-dashboard")
        # Its items are not the province's to open.
        item = await page.goto(f"{base}/console/items/{ids['t7']}")
        assert item is not None and item.status == 404

    # On a phone: the wide table scrolls in its own box, the page itself does not.
    async with phone_page() as page:
        await sign_in(page, base, "prov")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.goto(f"{base}/console/province")
        assert await shown_table(page) == BY_HAND
        await nothing_sideways(page, 390)
        await keep(page, "console-province-narrow")
        # Scrolled to the last column, each row still says which court it is.
        box = page.locator("main .wide")
        await box.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
        assert await box.evaluate("el => el.scrollLeft") > 0  # it did scroll
        left = await box.evaluate("el => el.getBoundingClientRect().left")
        for name in (COURT_B, "全省"):
            cell = await page.locator(f"table.figures tbody th:has-text('{name}')").bounding_box()
            assert cell is not None and cell["x"] >= left - 1, (name, cell, left)
        await keep(page, "console-province-narrow-scrolled")

    # A court's leader: the console's "not found", nothing of the province's.
    async with desktop_page() as page:
        await sign_in(page, base, "boss")
        await page.wait_for_url(re.compile(r"/console$"))
        assert await page.locator("header nav a[href='/console/province']").count() == 0
        refused = await page.goto(f"{base}/console/province")
        assert refused is not None and refused.status == 404
        body = await page.inner_text("body")
        assert words.NOT_FOUND_TITLE in body
        assert "全省" not in body and COURT_B not in body and HIGH_COURT not in body
        csv = await page.request.get(f"{base}/console/province.csv")
        assert csv.status == 404
        await keep(page, "console-province-refused")


async def test_the_sign_in_page_offers_wecom_and_it_signs_in(wc: WeComWorld) -> None:
    w = wc.w
    await link_judge(wc)
    base = str(w.client.make_url("")).rstrip("/")
    async with desktop_page() as page:
        # Our public address (http://court.example) is this test's server, as in
        # tests/test_wecom's Browser: WeCom sends the browser back there.
        async def to_the_test_server(route: Route) -> None:
            there = route.request.url.replace("http://court.example", base, 1)
            await route.fulfill(status=302, headers={"Location": there})

        await page.route("http://court.example/**", to_the_test_server)
        await page.goto(f"{base}/console/login")
        button = page.locator("a.button", has_text=texts.WECOM_LOGIN_BUTTON)
        assert await button.is_visible()
        assert await button.get_attribute("href") == "/console/login/wecom"
        # Two buttons, one above the other: apart, not touching.
        above = await page.locator("form.stack button[type=submit]").bounding_box()
        below = await button.bounding_box()
        assert above and below and below["y"] - (above["y"] + above["height"]) >= 8
        await nothing_sideways(page, 1280)
        await keep(page, "console-signin-wecom")

        # Not scanned yet: WeCom's QR sign-in page, asked for our app and our address.
        await button.click()
        await page.wait_for_url(re.compile(r"/wwlogin/sso/login\?"))
        asked = parse_qs(urlsplit(page.url).query)
        assert asked["login_type"] == ["CorpApp"]
        assert asked["appid"] == [CORP] and asked["agentid"] == [str(AGENT)]
        assert asked["redirect_uri"] == ["http://court.example/console/login/wecom/done"]
        assert len(asked["state"][0]) >= 32
        assert "请使用企业微信扫码登录" in await page.inner_text("body")

        # Scanned with WeCom: back here, signed in as the linked judge.
        wc.fake.scan_as(JUDGE_WC)
        await page.goto(f"{base}/console/login")
        await page.click(f"a.button:text('{texts.WECOM_LOGIN_BUTTON}')")
        await page.wait_for_url(re.compile(rf"^{re.escape(base)}/console$"))
        assert "张伟" in await page.inner_text("header .who")
        cookies = {c["name"] for c in await page.context.cookies()}
        assert "mst_console" in cookies and "mst_console_wecom" not in cookies
        await keep(page, "console-signin-wecom-done")
    async with phone_page() as page:
        await page.goto(f"{base}/console/login")
        assert await page.locator("a.button", has_text=texts.WECOM_LOGIN_BUTTON).is_visible()
        await nothing_sideways(page, 390)
        await keep(page, "console-signin-wecom-narrow")
