"""The province's view (全省各院): every court's headline figures side by side, counted by
hand from tests/test_dashboard.py's seed (its docstring has the tickets), plus one more
scan and a third court with nothing in it; who may read it; the CSV.

November 2026, by hand:

  court A (衡水): 5 items, 4 judged, 2 on time: 50.0%; 3 rated, 2 satisfied: 66.7%;
    5 ratings, 3 satisfied: 60.0%; 2 escalated; 1 assisted; now 4 open, 2 overdue;
    visitors u1, u2: 2.
  court B (景县): 2 items (t7, t8), both judged and late: 0.0%; 1 rated (t7, 满意): 100.0%;
    1 rating: 100.0%; 0 escalated; 1 assisted (t8); now 1 open, 1 overdue (t8); visitors
    u9 and — added here — u1 on 11-07: 2.
  court H (the high court): nothing: 0 items, rates "—", 0 visitors.
  the province: 7 items, 6 judged, 2 on time: 33.3%; 4 rated, 3 satisfied: 75.0%;
    6 ratings, 4 satisfied: 66.7%; 2 escalated; 2 assisted; now 5 open, 3 overdue;
    visitors u1, u2, u9: 3 (u1 scanned in both courts: one person of the province)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from bot.core import clock
from storage import audit
from storage.models import Case, Court, Staff
from tests.conftest import COURT
from tests.test_dashboard import COURT_B, NOW, cn, cookie, seed, tiles
from tests.test_webconsole import session_for
from tests.world import World

HIGH_COURT = "河北省高级人民法院"
HEADINGS = [
    "法院",
    "收到诉求",
    "已到期",
    "按时答复",
    "按时答复率",
    "有评价",
    "诉求满意率",
    "评价条数",
    "评价满意率",
    "升级",
    "代办",
    "当前未办结",
    "当前超期",
    "扫码人数",
]
BY_HAND = {
    COURT: ["5", "4", "2", "50.0%", "3", "66.7%", "5", "60.0%", "2", "1", "4", "2", "2"],
    COURT_B: ["2", "2", "0", "0.0%", "1", "100.0%", "1", "100.0%", "0", "1", "1", "1", "2"],
    HIGH_COURT: ["0", "0", "0", "—", "0", "—", "0", "—", "0", "0", "0", "0", "0"],
    "全省": ["7", "6", "2", "33.3%", "4", "75.0%", "6", "66.7%", "2", "2", "5", "3", "3"],
}


@pytest.fixture
async def seeded(world: World) -> tuple[World, dict[str, int]]:
    w = world
    clock.set_clock(lambda: NOW)
    ids = await seed(w)
    async with w.deps.db.transaction() as s:
        high = Court(name=HIGH_COURT)
        s.add(high)
        await s.flush()
        s.add(Staff(username="prov", name="省院甲", court_id=high.id or 0, roles="province"))
        b1 = (
            await s.execute(select(Case).where(Case.case_number == "(2026)冀1127民初3号"))
        ).scalar_one()
    clock.set_clock(lambda: cn(11, 7))
    async with w.deps.db.transaction() as s:
        await audit.append(s, actor="u1", action="code.scanned", subject="code:9", case_id=b1.id)
    clock.set_clock(lambda: NOW)
    return w, ids


async def court_id(w: World, name: str) -> int:
    async with w.deps.db.sessions() as s:
        found = (await s.execute(select(Court.id).where(Court.name == name))).scalar_one()
    return int(found)


def table(html: str) -> dict[str, list[str]]:
    """The page's rows: the court's name, then its figures."""
    rows: dict[str, list[str]] = {}
    for row in re.findall(r"<tr[^>]*><th scope=\"row\">(.*?)</tr>", html, re.S):
        name = re.sub(r"<[^>]+>", "", row.split("</th>", 1)[0]).strip()
        rows[name] = re.findall(r'<td class="n">([^<]*)</td>', row)
    return rows


async def test_every_courts_figures_side_by_side_as_counted_by_hand(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, _ = seeded
    browser = await session_for(w, "prov")
    page = await browser.get("/console/province")
    assert page.status == 200, page.text
    assert "2026-11-01 至 2026-11-30" in page.text
    assert table(page.text) == BY_HAND
    # October alone: court A's t6 (late), one service rating (满意), one visitor (u3).
    october = table((await browser.get("/console/province?from=2026-10-01&to=2026-10-31")).text)
    assert october[COURT] == [
        "1",
        "1",
        "0",
        "0.0%",
        "0",
        "—",
        "1",
        "100.0%",
        "0",
        "0",
        "4",
        "2",
        "1",
    ]
    assert october[COURT_B][:3] == ["0", "0", "0"] and october["全省"][-1] == "1"


async def test_each_court_links_to_its_own_dashboard_read_only(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, ids = seeded
    browser = await session_for(w, "prov")
    b = await court_id(w, COURT_B)
    page = await browser.get("/console/province")
    link = f"/console/dashboard?court={b}&amp;from=2026-11-01&amp;to=2026-11-30"
    assert link in page.text
    board = await browser.get(link.replace("&amp;", "&"))
    assert board.status == 200 and COURT_B in board.text
    t = tiles(board.text)
    # The same figures as on the province's page: one definition of each.
    assert (t["收到诉求"], t["按时答复率"], t["诉求满意率"], t["扫码人数"]) == (
        "2",
        "0.0%",
        "100.0%",
        "2",
    )
    # Its links and exports keep the court.
    assert (
        f"/console/dashboard/items?from=2026-11-01&amp;to=2026-11-30&amp;court={b}&amp;figure=items"
        in board.text
    )
    listed = await browser.get(f"/console/dashboard/items?court={b}&figure=items")
    assert listed.status == 200 and f"#{ids['t7']}" in listed.text
    assert f"/console/dashboard.csv?from=2026-11-01&amp;to=2026-11-30&amp;court={b}" in board.text
    # Read only: the items themselves are not theirs to open.
    item = await browser.get(f"/console/items/{ids['t7']}")
    assert item.status == 404
    # A court that does not exist: not found.
    assert (await browser.get("/console/dashboard?court=999999")).status == 404


async def test_nobody_else_reads_the_province_or_another_courts_dashboard(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, _ = seeded
    b = await court_id(w, COURT_B)
    a = await court_id(w, COURT)
    for username in ("boss", "root", "watch", "zhangwei", "rootb"):
        browser = await session_for(w, username)
        for path in ("/console/province", "/console/province.csv?from=2026-11-01&to=2026-11-30"):
            page = await browser.get(path)
            assert page.status == 404, (username, path)
            assert COURT_B not in page.text and "全省" not in page.text
    boss = await session_for(w, "boss")
    assert (await boss.get(f"/console/dashboard?court={b}")).status == 404
    assert (await boss.get(f"/console/dashboard.csv?court={b}")).status == 404
    assert (await boss.get(f"/console/dashboard/items?court={b}&figure=items")).status == 404
    assert (await boss.get(f"/console/dashboard?court={a}")).status == 200  # their own
    # Not signed in: to the sign-in page, as every console page.
    anonymous = await w.client.get("/console/province", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/console/login")
    # The province's own nav link shows only to them.
    assert 'href="/console/province"' not in (await boss.get("/console")).text
    assert 'href="/console/province"' in (await (await session_for(w, "prov")).get("/console")).text


async def test_the_csv_holds_the_same_figures(seeded: tuple[World, dict[str, int]]) -> None:
    w, _ = seeded
    browser = await session_for(w, "prov")
    resp = await w.client.get(
        "/console/province.csv?from=2026-11-01&to=2026-11-30", headers=cookie(browser)
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert 'filename="province-2026-11-01-2026-11-30.csv"' in resp.headers["Content-Disposition"]
    body = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == HEADINGS
    assert {r[0]: r[1:] for r in rows[1:]} == BY_HAND
    assert [r[0] for r in rows[1:]][-1] == "全省"
