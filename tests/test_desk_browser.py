"""The service desk in a real browser (Debian's Chromium, driven by Playwright): an
assistant signs in, finds the case, checks the person and their consent, asks the judge for
them; the judge's answer comes back to the desk, and the slip is printed. Screenshots at
desktop and tablet size, the slip on screen and as printed (A4, PDF):
test-artifacts/desk-*.png, desk-slip.pdf."""

from __future__ import annotations

import re

from playwright.async_api import Page

from bot.channels.webconsole import desk_words
from bot.rules import desk
from handlers import texts
from tests.browser import ARTIFACTS, desktop_page, keep
from tests.conftest import CASE_NUMBER
from tests.test_desk import ANSWER, QUESTION, ZHAO_WX, add_assistants
from tests.test_webconsole import give_password
from tests.test_webconsole_browser import nothing_sideways, sign_in, tablet_page
from tests.world import JUDGE_WX, World, bind_judge


async def start_helping(page: Page, base: str) -> None:
    await page.goto(f"{base}/console/desk")
    await page.fill("#case", CASE_NUMBER)
    await page.click("form.filters button[type=submit]")
    await page.wait_for_selector("form.desk-start")
    assert "王**" in await page.inner_text("main") and "王某某" not in await page.content()
    assert desk.CONSENT_STATEMENT in await page.inner_text("blockquote.statement")
    await page.check("input[name=party] >> nth=0")
    await page.check("input[name=id_checked]")
    await page.fill("#digits", "1234")
    await page.check("input[name=consent]")
    await page.click("form.desk-start button[type=submit]")
    await page.wait_for_selector("section.desk-now")


async def test_an_assistant_helps_at_the_desk_and_prints_the_slip(world: World) -> None:
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    await add_assistants(w)
    await bind_judge(w)
    await bind_judge(w, "zhaomin", ZHAO_WX)
    await give_password(w, "zhaomin")
    async with desktop_page() as page:
        await sign_in(page, base, "zhaomin")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.goto(f"{base}/console/desk")
        await page.fill("#case", CASE_NUMBER)
        await page.click("form.filters button[type=submit]")
        await page.wait_for_selector("form.desk-start")
        await nothing_sideways(page, 1280)
        await keep(page, "desk-1-find-and-consent")

        # Without the consent ticked the browser will not even send the form.
        await page.check("input[name=party] >> nth=0")
        await page.check("input[name=id_checked]")
        await page.fill("#digits", "1234")
        await page.click("form.desk-start button[type=submit]")
        assert await page.query_selector("section.desk-now") is None
        await page.check("input[name=consent]")
        await page.click("form.desk-start button[type=submit]")
        await page.wait_for_selector("section.desk-now")
        assert desk_words.STARTED in await page.inner_text(".said")

        await page.fill("#say", "1")  # the chat's own menu: 1 is "ask the judge"
        await page.click("form[action='/console/desk/say'] button")
        await page.wait_for_selector("ol.transcript li.bot")
        assert texts.ASK_PROMPT.splitlines()[0] in await page.inner_text("ol.transcript")
        await page.fill("#say", QUESTION)
        await page.click("form[action='/console/desk/say'] button")
        await page.wait_for_selector("table.items td")
        said = await page.inner_text(".said")
        number = int(re.search(r"#(\d+)", said).group(1))  # type: ignore[union-attr]
        assert "由工作人员赵敏代为提交" in await page.inner_text("main")
        await nothing_sideways(page, 1280)
        await keep(page, "desk-2-helping-desktop")

    assert await w.say(JUDGE_WX, f"#{number} {ANSWER}") == texts.STAFF_ANSWERED.format(
        ticket=number
    )
    await w.deliver()
    await w.deliver()

    async with tablet_page() as page:
        await sign_in(page, base, "zhaomin")
        await page.wait_for_url(re.compile(r"/console$"))
        await page.goto(f"{base}/console/desk")
        assert f"#{number}" in await page.inner_text("main")
        await nothing_sideways(page, 820)
        await keep(page, "desk-3-answer-kept-tablet")
        slip = await page.get_attribute("a[href*='/slip/'] >> nth=-1", "href")
        assert slip is not None

    async with desktop_page() as page:
        await page.goto(base + slip)
        body = await page.inner_text("main")
        for seen in (QUESTION, ANSWER, f"#{number}", "由工作人员赵敏代为提交", "0318-2100000"):
            assert seen in body, seen
        size = await page.evaluate(
            "(() => { const i = document.querySelector('.qr img');"
            " return i.complete ? i.naturalWidth : 0; })()"
        )
        assert size > 0  # the receipt's QR code drew
        font = await page.evaluate(
            "parseFloat(getComputedStyle(document.body.querySelector('main')).fontSize)"
        )
        assert font >= 20  # large type for older readers
        await keep(page, "desk-4-slip-screen")
        await page.emulate_media(media="print")
        await keep(page, "desk-5-slip-print")
        ARTIFACTS.mkdir(exist_ok=True)
        pdf = await page.pdf(format="A4", print_background=False)
        (ARTIFACTS / "desk-slip.pdf").write_bytes(pdf)
        pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
        assert pages == 1, pages  # one sheet from an ordinary office printer
