"""The staff console in a real browser (Debian's Chromium, driven by Playwright): a judge
fails to sign in, signs in, answers an item (the fake WeChat API receives it for the
litigant) and transfers another to a colleague by name; the colleague reads it on a tablet;
reception looks a case up at the service desk. Screenshots at desktop (1280 px) and tablet
(820 px, upright) sizes in test-artifacts/console-*.png."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from playwright.async_api import Page, async_playwright

from bot.channels.webconsole import words
from bot.core.clock import now
from handlers import texts
from storage.models import Staff
from tests.browser import CHROMIUM, FLAGS, desktop_page, keep
from tests.conftest import CASE_NUMBER
from tests.test_webconsole import PASSWORD, add_staff, give_password
from tests.world import LITIGANT, World, ask, verify_litigant

TABLET = {"width": 820, "height": 1180}  # a tablet held upright, in CSS pixels


@asynccontextmanager
async def tablet_page() -> AsyncIterator[Page]:
    """A page at an upright tablet's size, as staff carry one between desk and office."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(
                viewport=TABLET, device_scale_factor=2, has_touch=True, locale="zh-CN"
            )
            yield await context.new_page()
        finally:
            await browser.close()


async def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/console")
    await page.wait_for_url(re.compile(r"/console/login$"))
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")


async def nothing_sideways(page: Page, width: int) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (page.url, scroll)


async def test_sign_in_answer_and_transfer_at_a_desk(world: World) -> None:
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    await verify_litigant(w)
    first = await ask(w, "请问什么时候开庭？我需要带什么材料？")
    second = await ask(w, "我下周出差，能不能改期？")
    await add_staff(w, "zhaoliu", "赵六", "judge", "民二庭")
    await give_password(w, "zhangwei", "zhaoliu")
    async with desktop_page() as page:
        await sign_in(page, base, "zhangwei", "not the password")
        assert words.LOGIN_FAILED in await page.inner_text(".said")
        assert await page.input_value("#username") == "zhangwei"
        await keep(page, "console-1-sign-in-failed")

        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/console$"))
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["mst_console"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
        assert session["path"] == "/console"
        body = await page.inner_text("main")
        assert f"#{first}" in body and f"#{second}" in body and CASE_NUMBER in body
        await nothing_sideways(page, 1280)
        await keep(page, "console-2-inbox-desktop")

        await page.click(f"a[href='/console/items/{first}'] >> nth=0")
        await page.wait_for_url(re.compile(rf"/console/items/{first}$"))
        assert "请问什么时候开庭" in await page.inner_text(".thread")
        await keep(page, "console-3-item-desktop")
        await page.fill("#text", "12月10日上午九点开庭，请带身份证原件和借条。")
        await page.click("form[action$='/answer'] button")
        await page.wait_for_url(re.compile(rf"/console/items/{first}$"))
        assert texts.STAFF_ANSWERED.format(ticket=first) in await page.inner_text(".said")
        assert "12月10日上午九点开庭" in await page.inner_text(".thread")
        await keep(page, "console-4-answered-desktop")
        await w.deliver()
        assert f"法官张伟回复 #{first}：12月10日上午九点开庭，请带身份证原件和借条。" in w.inbox(
            LITIGANT
        )

        await page.goto(f"{base}/console/items/{second}")
        await page.select_option("#to", label="赵六（民二庭）")
        await page.fill("#reason", "本人本周外出开会")
        await page.click("form[action$='/transfer'] button")
        await page.wait_for_url(re.compile(r"/console$"))
        said = await page.inner_text(".said")
        assert texts.TRANSFERRED.format(ticket=second, name="赵六") in said
        assert f"#{second}" not in await page.inner_text("table.items")
        await keep(page, "console-5-transferred-desktop")
        await w.deliver()
        assert any(f"#{second}" in m and "赵六" in m for m in w.inbox(LITIGANT))

        await page.click("form.out button")
        await page.wait_for_url(re.compile(r"/console/login\?m=signed_out$"))
        assert words.SIGNED_OUT in await page.inner_text(".said")

    # The colleague opens it on a tablet: the history says who moved it, and why.
    async with tablet_page() as page:
        await sign_in(page, base, "zhaoliu")
        await page.wait_for_url(re.compile(r"/console$"))
        assert f"#{second}" in await page.inner_text("table.items")
        await nothing_sideways(page, TABLET["width"])
        await keep(page, "console-6-inbox-tablet")
        await page.goto(f"{base}/console/items/{second}")
        history = await page.inner_text("table.history")
        assert "转办" in history and "张伟（zhangwei）" in history and "本人本周外出开会" in history
        await nothing_sideways(page, TABLET["width"])
        await keep(page, "console-7-item-tablet")


async def test_the_service_desk_and_a_team_inbox(world: World) -> None:
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    await verify_litigant(w)
    await add_staff(w, "qianjd", "钱接待", "reception", "集约接待")
    await give_password(w, "qianjd")
    # The judge is away: his new items go to the reception team's inbox, unclaimed.
    async with w.deps.db.transaction() as s:
        judge = await s.get_one(Staff, w.case["judge_id"])
        judge.away_until = now() + timedelta(days=3)
        s.add(judge)
    number = await ask(w, "法官不在，我该问谁？")
    for size, open_page in (("desktop", desktop_page), ("tablet", tablet_page)):
        async with open_page() as page:
            width = 1280 if size == "desktop" else TABLET["width"]
            await sign_in(page, base, "qianjd")
            await page.wait_for_url(re.compile(r"/console$"))
            await page.click("nav.tabs >> text=" + words.VIEWS["unclaimed"])
            await page.wait_for_url(re.compile(r"view=unclaimed"))
            row = await page.inner_text("table.items")
            assert f"#{number}" in row and words.RELATIONS["unclaimed"] in row
            await nothing_sideways(page, width)
            await keep(page, f"console-8-unclaimed-{size}")
            await page.goto(f"{base}/console/desk")
            await page.fill("#case", CASE_NUMBER)
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url(re.compile(r"/console/desk\?case="))
            shown = await page.inner_text("main")
            assert "王**" in shown and "138****1234" in shown and "王某某" not in shown
            await nothing_sideways(page, width)
            await keep(page, f"console-9-desk-{size}")
            if size == "tablet":
                await page.goto(f"{base}/console?view=unclaimed")
                await page.click(f"form[action='/console/items/{number}/claim'] button")
                await page.wait_for_url(re.compile(rf"/console/items/{number}$"))
                assert texts.CLAIMED.format(ticket=number) in await page.inner_text(".said")
                await keep(page, "console-10-claimed-tablet")


async def test_escalate_an_item_and_read_it_in_the_history(world: World) -> None:
    """The judge raises an item to reception with a reason; reception finds it in its inbox
    and reads, in the item's history, who raised it, to whom and why."""
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    await verify_litigant(w)
    number = await ask(w, "我的案子什么时候能排期开庭？")
    await add_staff(w, "qianjd", "钱接待", "reception", "集约接待")
    await give_password(w, "zhangwei", "qianjd")
    async with desktop_page() as page:
        await sign_in(page, base, "zhangwei")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.goto(f"{base}/console/items/{number}")
        card = await page.inner_text("form[action$='/escalate']")
        assert "集约接待（第1级）" in card
        await page.fill("#escalate-reason", "涉及全院统一排期，请接待中心协调")
        await page.click("form[action$='/escalate'] button")
        await page.wait_for_url(re.compile(r"/console$"))
        said = await page.inner_text(".said")
        assert words.ESCALATED.format(ticket=number, to="集约接待（第1级）") in said
        await page.click("form.out button")
        await page.wait_for_url(re.compile(r"/console/login\?m=signed_out$"))

        await sign_in(page, base, "qianjd")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.click("nav.tabs >> text=" + words.VIEWS["unclaimed"])
        await page.wait_for_url(re.compile(r"view=unclaimed"))
        assert f"#{number}" in await page.inner_text("table.items")
        await page.goto(f"{base}/console/items/{number}")
        row = page.locator("table.history tr", has_text=words.ESCALATED_BY_HAND)
        text = await row.inner_text()
        assert "张伟（zhangwei）" in text and "集约接待（第1级）" in text
        assert "涉及全院统一排期，请接待中心协调" in text
        await nothing_sideways(page, 1280)
        await keep(page, "console-escalated")
    await w.deliver()
    told = [m for m in w.inbox(LITIGANT) if f"#{number}" in m and "现由" in m]
    assert told and not any("排期" in m for m in told)
