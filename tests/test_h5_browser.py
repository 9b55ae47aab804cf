"""The H5 pages in a real browser (Chromium, as WeChat's browser says it is), at a phone's
size: from the scan, through WeChat's authorize page (the fake, on its own port) and back,
verify, ask; the judge answers in the chat and a reload of the item page shows it. Then
the same pages 360 px wide: nothing sideways, type large enough for elderly readers, tap
targets big enough. Screenshots in test-artifacts/h5-*.png."""

from __future__ import annotations

import re
from dataclasses import replace

from playwright.async_api import Page

from bot.channels.h5 import words
from handlers import texts
from tests.browser import keep, phone_page
from tests.conftest import CASE_NUMBER, COURT
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge

WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; V2148A; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
    "MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI "
    "Language/zh_CN ABI/arm64"
)
NARROW = {"width": 360, "height": 740}  # the narrowest common phone, in CSS pixels
BODY_PX = 18  # body text, at the phone's default font size
KEY_PX = 24  # the main line
TAP_PX = 48  # the smallest tap target


async def looks_right(page: Page, name: str) -> None:
    """At 360 px wide: no sideways scrolling, large type, big buttons; a screenshot."""
    await page.set_viewport_size(NARROW)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], (name, width)
    body = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert body >= BODY_PX, (name, body)
    main = await page.eval_on_selector("h1", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert main >= KEY_PX, (name, main)
    heights = await page.eval_on_selector_all(
        ".button, button, a.item, label.choice, input[type=text], textarea",
        "els => els.map(e => e.getBoundingClientRect().height)",
    )
    assert all(h >= TAP_PX for h in heights), (name, heights)
    # Every Chinese character drawn with a real font (no boxes): a CJK font is in use.
    fonts = await page.evaluate("document.fonts.check('18px \"Noto Sans CJK SC\"', '法院')")
    assert fonts, name
    await keep(page, f"h5-{name}-360")
    await page.set_viewport_size({"width": 390, "height": 844})


async def test_scan_verify_ask_and_read_the_judges_answer(world: World) -> None:
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    # WeChat sends the browser back to PUBLIC_BASE_URL: here, the test server.
    w.deps.settings = replace(w.deps.settings, public_base_url=base)
    await bind_judge(w)
    w.fake.oauth_as(LITIGANT)
    async with phone_page(user_agent=WECHAT_UA) as page:
        await page.goto(f"{base}/q/{w.case['token']}")
        # There and back through WeChat (a browser keeps #wechat_redirect across redirects).
        assert page.url.split("#")[0] == f"{base}/q/{w.case['token']}"
        shown = await page.inner_text("body")
        assert texts.ASK_DIGITS in shown and CASE_NUMBER in shown and COURT in shown
        cookies = {c["name"]: c for c in await page.context.cookies()}
        assert cookies["mst_h5"]["httpOnly"] and cookies["mst_h5"]["secure"]
        assert cookies["mst_h5"]["sameSite"] == "Lax"
        await keep(page, "h5-1-verify")
        await looks_right(page, "1-verify")

        await page.fill("#digits", "0000")
        await page.click("button[type=submit]")
        assert "号码不对" in await page.inner_text(".said")
        await keep(page, "h5-2-wrong-digits")
        await page.fill("#digits", "1234")
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/h5/c/\d+"))
        assert "验证成功" in await page.inner_text(".said")
        await keep(page, "h5-3-case-home")
        await looks_right(page, "3-case-home")

        await page.click(f"text={words.ASK}")
        await page.wait_for_url(re.compile(r"/new/question$"))
        await keep(page, "h5-4-ask")
        await looks_right(page, "4-ask")
        await page.fill("#text", "请问什么时候开庭？我需要带什么材料？")
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/h5/i/\d+"))
        found = re.search(r"/h5/i/(\d+)", page.url)
        assert found is not None
        number = int(found.group(1))
        assert f"#{number}" in await page.inner_text(".said")
        await keep(page, "h5-5-asked")

        await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭，请带身份证原件和借条。")
        await page.goto(f"{base}/h5/i/{number}")  # the page, read again later
        thread = await page.inner_text(".thread")
        assert "12月10日上午九点开庭" in thread and "法官张伟" in thread
        await keep(page, "h5-6-answered")
        await looks_right(page, "6-answered")

        for path, name in (
            (f"/h5/c/{w.case['case_id']}/items", "7-items"),
            (f"/h5/c/{w.case['case_id']}/progress", "8-progress"),
            (f"/h5/c/{w.case['case_id']}/rate", "9-rate"),
        ):
            await page.goto(base + path)
            await keep(page, f"h5-{name}")
            await looks_right(page, name)
        await page.click("label.choice >> nth=0")
        await page.fill("#comment", "答复很及时。")
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/h5/c/\d+(\?.*)?$"))
        assert texts.APP_RATED_WITH_COMMENT in await page.inner_text(".said")
        await keep(page, "h5-10-rated")


async def test_the_page_any_other_browser_gets(world: World) -> None:
    w = world
    base = str(w.client.make_url(""))
    w.deps.settings = replace(
        w.deps.settings, wechat=replace(w.deps.settings.wechat, account_name="桃城法院诉讼服务")
    )
    async with phone_page() as page:
        await page.goto(f"{base.rstrip('/')}/q/{w.case['token']}")
        shown = await page.inner_text("body")
        assert CASE_NUMBER in shown and "桃城法院诉讼服务" in shown and words.OPEN_APP in shown
        href = await page.get_attribute(f"text={words.OPEN_APP}", "href")
        assert href is not None and href.startswith("weixin://dl/business/?t=")
        assert await page.query_selector("form") is None
        await keep(page, "h5-public")
        await looks_right(page, "public")
