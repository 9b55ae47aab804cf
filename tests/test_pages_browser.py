"""The pages a litigant opens, in a real browser at a phone's size: what they read, in
type large enough for elderly readers, and what they see when the record was changed."""

from __future__ import annotations

import re

from sqlalchemy import select

from handlers import texts
from storage.models import AuditEvent
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
