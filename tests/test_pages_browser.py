"""The pages a litigant opens, in a real browser at a phone's size: what they read, in
type large enough for elderly readers, and what they see when the record was changed."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace

from playwright.async_api import Page, Route
from sqlalchemy import select

from bot.app.jobs import extend_log
from bot.core.clock import say_time
from handlers import texts
from storage import audit, transparency
from storage.models import AuditEvent, TreeHead
from tests.browser import keep, phone_page
from tests.conftest import CASE_NUMBER
from tests.world import LITIGANT, World, bind_judge, verify_litigant

# The smallest type a receipt's main line may have on a phone (CSS pixels).
LARGE_TYPE_PX = 20


async def test_a_receipt_read_on_a_phone(world: World) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    reply = await w.say(LITIGANT, "我儿子需要带身份证吗？")
    found = re.search(r"回执：http://court\.example(/v/[0-9a-f]{16})\n", reply)
    assert found is not None, reply
    url = str(w.client.make_url(found.group(1)))
    async with phone_page() as page:
        await page.goto(url)
        shown = await page.inner_text("body")
        assert "已记录您的咨询" in shown and CASE_NUMBER in shown and "核对无误" in shown
        assert "身份证" not in shown and LITIGANT not in shown
        size = await page.eval_on_selector("h1", "e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= LARGE_TYPE_PX
        # Nothing wider than the phone: no sideways scrolling for an elderly reader.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        await keep(page, "receipt-phone")

        # The case's record edited afterwards: the same link says so, as plainly.
        from tests.test_audit import edit

        async with w.deps.db.sessions() as s:
            other = (
                await s.execute(select(AuditEvent).where(AuditEvent.action == "bind.verified"))
            ).scalar_one()
        await edit(w.deps.db, other.id, payload='{"method": "phone_tail", "role": "被告"}')
        await page.goto(url)
        assert "核对发现本案的记录有异常" in await page.inner_text("body")
        await keep(page, "receipt-phone-record-changed")


# -- the court's public log, checked by the phone itself ------------------------------------


async def ask(w: World) -> str:
    """A litigant asks; the receipt page's address."""
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    reply = await w.say(LITIGANT, "我儿子需要带身份证吗？")
    found = re.search(r"回执：http://court\.example(/v/[0-9a-f]{16})\n", reply)
    assert found is not None, reply
    return str(w.client.make_url(found.group(1)))


async def log_now(w: World) -> TreeHead:
    """Sequence and sign, as the job does every minute."""
    signer = w.deps.rules.signer
    if signer is None:  # the world's settings give none: the court's key, as start-up builds it
        signer = transparency.Signer.from_private_bytes(bytes(range(32)))
        w.deps.rules = replace(w.deps.rules, signer=signer)
    await extend_log(w.deps.db, signer)
    async with w.deps.db.sessions() as s:
        head = await transparency.latest_head(s)
    assert head is not None
    return head


async def checked(page: Page) -> tuple[str, str]:
    """What the page's own script concluded (its data-result) and the words it wrote."""
    await page.wait_for_selector("#verify[data-result]", timeout=10000)
    result = await page.get_attribute("#verify", "data-result")
    return result or "", await page.inner_text("#verify")


def forged(field: str) -> Callable[[Route], Awaitable[None]]:
    """Serve the real page with one hex digit changed in the embedded proof's `field`
    (the first proof node, or the head's signature): what a lying server would send."""

    async def handler(route: Route) -> None:
        response = await route.fetch()
        body = await response.text()
        start = body.index("<script type='application/json' id='receipt-proof'>")
        end = body.index("</script>", start)
        block = json.loads(body[body.index(">", start) + 1 : end])
        if field == "proof":
            block["proof"][0] = flip(block["proof"][0])
        else:
            block["head"]["signature"] = flip(block["head"]["signature"])
        forged_body = (
            body[: body.index(">", start) + 1] + json.dumps(block, ensure_ascii=False) + body[end:]
        )
        await route.fulfill(response=response, body=forged_body)

    return handler


def flip(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


async def test_the_phone_checks_the_receipt_is_in_the_courts_signed_log(world: World) -> None:
    w = world
    url = await ask(w)
    head = await log_now(w)
    async with w.deps.db.sessions() as s:
        opened = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "ticket.opened"))
        ).scalar_one()
    assert opened.leaf_index is not None and head.size > 1
    async with phone_page() as page:
        await page.goto(url)
        result, words = await checked(page)
        assert result == "verified" and words == texts.RECEIPT_VERIFIED
        shown = await page.inner_text("body")
        assert f"已写入法院公开日志（第 {opened.leaf_index + 1} 条，日志共 {head.size} 条" in shown
        assert "可与法院公告栏上的日志摘要核对" in shown and head.root[:8] in shown
        assert "已记录您的咨询" in shown and CASE_NUMBER in shown and "核对无误" in shown
        assert "身份证" not in shown and LITIGANT not in shown
        size = await page.eval_on_selector(
            "#verify", "e => parseFloat(getComputedStyle(e).fontSize)"
        )
        assert size >= LARGE_TYPE_PX
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await keep(page, "receipt-verified")

    # A server lying about the proof, or about the head's signature: the phone says so.
    for field, reason, name in (
        ("proof", texts.RECEIPT_FAILED_PROOF, "receipt-forged-proof"),
        ("signature", texts.RECEIPT_FAILED_SIGNATURE, "receipt-forged-signature"),
    ):
        async with phone_page() as page:
            await page.route(url, forged(field))
            await page.goto(url)
            result, words = await checked(page)
            assert result == "failed", (field, words)
            assert words == texts.RECEIPT_FAILED.format(reason=reason)
            assert "✔ 您的手机已独立核对" not in await page.inner_text("body")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await keep(page, name)


async def test_the_page_names_the_posted_head_once_the_court_publishes(world: World) -> None:
    """Before `mst audit publish` the page says the head is not posted yet; after, it
    proves the receipt against the posted head (not a later one), says when it was posted,
    and the phone checks that proof."""
    w = world
    url = await ask(w)
    first = await log_now(w)
    async with phone_page() as page:
        await page.goto(url)
        assert (await checked(page))[0] == "verified"
        assert texts.RECEIPT_NOT_PUBLISHED in await page.inner_text("body")

        async with w.deps.db.transaction() as s:
            posted = await transparency.record_published(s, first, "书记员")
            # More events, and a later head the court has not posted.
            await audit.append(s, actor="clerk", action="note", case_id=None, payload={})
        later = await log_now(w)
        assert later.size > first.size
        await page.reload()
        assert (await checked(page))[0] == "verified"
        shown = await page.inner_text("body")
        assert texts.RECEIPT_NOT_PUBLISHED not in shown
        assert texts.RECEIPT_PUBLISHED.format(date=say_time(posted.published_at)) in shown
        assert f"日志共 {first.size} 条" in shown and first.root[:8] in shown
        assert later.root[:8] not in shown
        proof = json.loads(await page.inner_text("#receipt-proof"))
        assert proof["head"]["size"] == first.size and proof["head"]["root"] == first.root
        await keep(page, "receipt-posted-head")
    posted_list = await (await w.client.get("/transparency/published")).json()
    assert posted_list["published"][0]["size"] == first.size
    assert "by" not in posted_list["published"][0]  # who posted it is the court's business


async def test_a_receipt_not_yet_in_the_log_says_within_a_minute(world: World) -> None:
    w = world
    url = await ask(w)
    async with phone_page() as page:
        await page.goto(url)
        shown = await page.inner_text("body")
        assert texts.RECEIPT_NOT_LOGGED in shown and "已记录您的咨询" in shown
        assert await page.query_selector("#receipt-proof") is None
        assert await page.query_selector("#verify") is None
        await keep(page, "receipt-not-yet-logged")
        # The job runs: the same link now carries the proof, and the phone checks it.
        await log_now(w)
        await page.reload()
        assert (await checked(page))[0] == "verified"


def test_the_embedded_proof_cannot_close_its_script() -> None:
    from bot.app.pages import script_json

    text = script_json({"a": "</script><b>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><b>&"}
