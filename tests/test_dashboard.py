"""The dashboard (驾驶舱) over HTTP: a seeded court whose figures are counted by hand below
(not by the code under test), a second court that never shows, who may read it, the
items behind every figure, and the CSV and XLSX exports.

The seed (November 2026, China time; "now" is Monday 23 November 10:00):

  court A (衡水): case A1 judge 张伟 (民一庭), case A2 judge 李四 (民二庭)
    t1 A1 question  民一庭 11-02 09:00, due 11-04 17:30, replied 11-02 11:00  on time, 2.0 h
       rated 满意, closed
    t2 A1 question  民一庭 11-03 09:00, due 11-05 17:30, replied 11-06 09:00  late, 22.5 h
       (11-03 7 h, 11-04 7.5 h, 11-05 7.5 h, 11-06 0.5 h), rated 不满意, escalated, closed
    t3 A2 complaint 民二庭 11-10 14:00, due 11-12 17:30, replied 11-10 16:00  on time, 2.0 h
       rated 基本满意, answered (not closed)
    t4 A2 question  民二庭 11-16 09:00, due 11-18 17:30, no reply: late, overdue now, escalated
    t5 A1 question  民一庭 11-20 09:00, due 11-25 17:30, no reply: not yet judged, open,
       submitted for the person at the service desk
    t6 A1 question  民一庭 10-20 09:00, due 10-22 17:30, no reply: October, overdue now
    service ratings: A1 满意 11-15, A2 不满意 11-16, A1 满意 10-25 (October)
    scans: u1 A1 11-02, u1 A2 11-03, u2 A1 11-04, u3 A1 10-30 (October)
    bookings on A1: 11-05 attended, 11-06 no-show
    enforcement on A1: 11-05 public, 11-06 not public
  court B (景县): case B1 judge 王五
    t7 B1 question 11-05, due 11-06 17:30, replied 11-09: late, rated 满意
    t8 B1 question 11-09, due 11-11 17:30, no reply: overdue, submitted at the desk; a scan
       by u9; a booking; a push

So court A in November: 5 items (咨询 4, 投诉举报 1); 4 judged (t1-t4), 2 on time: 50.0%;
first-reply hours 2.0, 22.5, 2.0: median 2.0, 90th percentile (3rd of 3) 22.5; 3 rated,
2 satisfied: 66.7%; 5 ratings (3 of items, 2 of service), 3 satisfied: 60.0%; 2
escalated; 1 submitted at the desk (t5); now 4 not closed (t3, t4, t5, t6), 2 overdue (t4, t6); 2 visitors (u1, u2);
2 bookings, 1 no-show; 1 push.

Scans, bookings and pushes by team (the case's judge's team): 民一庭 (张伟, case A1) 2
visitors (u1, u2), 2 bookings, 1 no-show, 1 push; 民二庭 (李四, case A2) 1 visitor (u1), none
of the rest. Moved to 民一庭, 李四's scans count there, and u1 (who scanned A1 and A2) is still
one visitor of it: 2."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from bot.core import clock
from storage import audit
from storage.models import (
    Booking,
    Case,
    Court,
    EnforcementEvent,
    MediationSlot,
    Party,
    Rating,
    Staff,
    Ticket,
)
from tests.test_webconsole import Browser, add_staff, session_for
from tests.world import World

CHINA = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 23 November, 10:00 in China
COURT_B = "景县人民法院"


def cn(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA).astimezone(UTC)


async def seed(w: World) -> dict[str, int]:
    """The seed in the module's docstring; the tickets' ids by name (t1..t8)."""
    ids: dict[str, int] = {}
    for username, name, roles, team in (
        ("lisi", "李四", "judge", "民二庭"),
        ("boss", "院长甲", "leader", "民一庭"),
        ("root", "管理员甲", "admin", None),
        ("watch", "督查甲", "supervision", None),
        ("desk", "导诉甲", "reception", "集约接待"),
        ("med", "调解员甲", "mediator", None),
    ):
        await add_staff(w, username, name, roles, team)
    async with w.deps.db.transaction() as s:
        a1 = await s.get_one(Case, w.case["case_id"])
        court_a = a1.court_id
        lisi = (await s.execute(Staff.__table__.select().where(Staff.username == "lisi"))).one()  # type: ignore[attr-defined]
        a2 = Case(
            court_id=court_a, case_number="(2026)冀1102民初2号", case_type="民事", judge_id=lisi.id
        )
        court_b = Court(name=COURT_B)
        s.add_all([a2, court_b])
        await s.flush()
        wangwu = Staff(
            username="wangwu", name="王五", court_id=court_b.id or 0, roles="judge", team="执行局"
        )
        root_b = Staff(username="rootb", name="管理员乙", court_id=court_b.id or 0, roles="admin")
        s.add_all([wangwu, root_b])
        await s.flush()
        b1 = Case(
            court_id=court_b.id or 0,
            case_number="(2026)冀1127民初3号",
            case_type="民事",
            judge_id=wangwu.id,
        )
        s.add(b1)
        await s.flush()
        cases = {"A1": a1, "A2": a2, "B1": b1}
        party = Party(
            case_id=a1.id or 0,
            role="原告",
            name="某",
            phone_tail="1",
            phone_masked="1",
            phone_hash="z",
        )
        party_b = Party(
            case_id=b1.id or 0,
            role="原告",
            name="某",
            phone_tail="1",
            phone_masked="1",
            phone_hash="w",
        )
        s.add_all([party, party_b])
        await s.flush()
        rows: list[tuple[Any, ...]] = [
            # name, case, kind, team, created, due, replied, status, level, score
            (
                "t1",
                "A1",
                "question",
                "民一庭",
                cn(11, 2, 9),
                cn(11, 4, 17, 30),
                cn(11, 2, 11),
                "closed",
                0,
                1,
            ),
            (
                "t2",
                "A1",
                "question",
                "民一庭",
                cn(11, 3, 9),
                cn(11, 5, 17, 30),
                cn(11, 6, 9),
                "closed",
                1,
                3,
            ),
            (
                "t3",
                "A2",
                "complaint",
                "民二庭",
                cn(11, 10, 14),
                cn(11, 12, 17, 30),
                cn(11, 10, 16),
                "answered",
                0,
                2,
            ),
            (
                "t4",
                "A2",
                "question",
                "民二庭",
                cn(11, 16, 9),
                cn(11, 18, 17, 30),
                None,
                "open",
                1,
                None,
            ),
            (
                "t5",
                "A1",
                "question",
                "民一庭",
                cn(11, 20, 9),
                cn(11, 25, 17, 30),
                None,
                "open",
                0,
                None,
            ),
            (
                "t6",
                "A1",
                "question",
                "民一庭",
                cn(10, 20, 9),
                cn(10, 22, 17, 30),
                None,
                "open",
                0,
                None,
            ),
            (
                "t7",
                "B1",
                "question",
                "执行局",
                cn(11, 5, 9),
                cn(11, 6, 17, 30),
                cn(11, 9, 9),
                "closed",
                0,
                1,
            ),
            (
                "t8",
                "B1",
                "question",
                "执行局",
                cn(11, 9, 9),
                cn(11, 11, 17, 30),
                None,
                "open",
                0,
                None,
            ),
        ]
        for name, key, kind, team, created, due, replied, status, level, score in rows:
            case = cases[key]
            t = Ticket(
                case_id=case.id or 0,
                court_id=case.court_id,
                kind=kind,
                status=status,
                openid="u1",
                team=team,
                created_at=created,
                due_at=due,
                holder_due_at=due,
                first_reply_at=replied,
                level=level,
                closed_at=replied if status == "closed" else None,
                # Submitted at the service desk (by whoever: the figure counts items).
                assisted_by_id=case.judge_id if name in ("t5", "t8") else None,
            )
            s.add(t)
            await s.flush()
            ids[name] = t.id or 0
            if score is not None:
                s.add(
                    Rating(
                        ticket_id=t.id,
                        case_id=case.id or 0,
                        openid="u1",
                        score=score,
                        created_at=(replied or created),
                        updated_at=(replied or created),
                    )
                )
        for key, score, at in (("A1", 1, cn(11, 15)), ("A2", 3, cn(11, 16)), ("A1", 1, cn(10, 25))):
            s.add(
                Rating(
                    case_id=cases[key].id or 0,
                    openid="u2",
                    score=score,
                    created_at=at,
                    updated_at=at,
                )
            )
        med = (await s.execute(Staff.__table__.select().where(Staff.username == "med"))).one()  # type: ignore[attr-defined]
        slot = MediationSlot(
            mediator_id=med.id,
            start_at=cn(11, 26),
            end_at=cn(11, 26, 11),
            capacity=5,
            booked=3,
            room_url="https://x",
        )
        s.add(slot)
        await s.flush()
        for case, party_id, status, at in (
            (a1, party.id, "attended", cn(11, 5)),
            (a1, party.id, "no_show", cn(11, 6)),
            (b1, party_b.id, "booked", cn(11, 6)),
        ):
            s.add(
                Booking(
                    slot_id=slot.id or 0,
                    case_id=case.id or 0,
                    party_id=party_id or 0,
                    openid="u1",
                    status=status,
                    created_at=at,
                )
            )
        for n, (case, public, at) in enumerate(
            ((a1, True, cn(11, 5)), (a1, False, cn(11, 6)), (b1, True, cn(11, 6)))
        ):
            s.add(
                EnforcementEvent(
                    case_id=case.id or 0,
                    external_id=f"e{n}",
                    kind="执行立案",
                    happened_at=at,
                    public=public,
                    created_at=at,
                )
            )
    for openid, key, at in (
        ("u1", "A1", cn(11, 2)),
        ("u1", "A2", cn(11, 3)),
        ("u2", "A1", cn(11, 4)),
        ("u3", "A1", cn(10, 30)),
        ("u9", "B1", cn(11, 4)),
    ):
        clock.set_clock(lambda at=at: at)
        async with w.deps.db.transaction() as s:
            await audit.append(
                s, actor=openid, action="code.scanned", subject="code:1", case_id=cases[key].id
            )
    clock.set_clock(lambda: NOW)
    return ids


def same(rows: Any) -> list[list[Any]]:
    def value(v: Any) -> Any:
        text = "" if v is None else str(v)
        try:
            return float(text)
        except ValueError:
            return text

    return [[value(v) for v in r] for r in rows]


def cookie(browser: Browser) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}


def tiles(html: str) -> dict[str, str]:
    """The big numbers, by the words under them (counts in brackets stripped)."""
    found = re.findall(r'<span class="big">([^<]*)</span><span>([^<（]*)', html)
    return {label: value for value, label in found}


def listed(html: str) -> set[str]:
    """The ticket numbers on an items page."""
    return set(re.findall(r'<td class="num"><a href="/console/items/\d+">#(\d+)</a>', html))


@pytest.fixture
async def seeded(world: World) -> tuple[World, dict[str, int]]:
    clock.set_clock(lambda: NOW)
    return world, await seed(world)


async def test_the_figures_are_those_counted_by_hand(seeded: tuple[World, dict[str, int]]) -> None:
    w, _ = seeded
    browser = await session_for(w, "boss")
    page = await browser.get("/console/dashboard")
    assert page.status == 200, page.text
    assert "2026-11-01 至 2026-11-30" in page.text
    assert tiles(page.text) == {
        "扫码人数": "2",
        "收到诉求": "5",
        "按时答复率": "50.0%",
        "诉求满意率": "66.7%",
        "评价满意率": "60.0%",
        "首次答复用时中位数": "2.0",
        "90%分位": "22.5",
        "当前超期": "2",
        "升级": "2",
        "窗口代办": "1",
        "调解预约": "2",
        "调解未到场": "1",
        "执行进展推送": "1",
    }
    assert "未办结 4" in page.text
    assert "咨询 4 件" in page.text and "投诉举报 1 件" in page.text
    assert COURT_B not in page.text and "王五" not in page.text and "执行局" not in page.text
    assert "<svg" in page.text and "style=" not in page.text  # the CSP forbids inline style
    # A team's figures, then a judge's (民二庭: t3 on time, t4 late; 张伟: t1 on time, t2 late).
    team = await browser.get("/console/dashboard?from=2026-11-01&to=2026-11-30&team=民二庭")
    assert tiles(team.text)["收到诉求"] == "2" and tiles(team.text)["按时答复率"] == "50.0%"
    assert tiles(team.text)["评价满意率"] == "100.0%"  # only t3's rating: 基本满意
    judges = {s.name: s.id for s in await staff(w)}
    one = await browser.get(
        f"/console/dashboard?from=2026-11-01&to=2026-11-30&judge={judges['张伟']}"
    )
    t = tiles(one.text)
    assert (t["收到诉求"], t["按时答复率"], t["扫码人数"], t["90%分位"]) == (
        "3",
        "50.0%",
        "2",
        "22.5",
    )
    # October alone: t6 only, not judged on time (no reply, due passed: late).
    october = tiles((await browser.get("/console/dashboard?from=2026-10-01&to=2026-10-31")).text)
    assert october["收到诉求"] == "1" and october["按时答复率"] == "0.0%"
    assert october["诉求满意率"] == "—" and october["评价满意率"] == "100.0%"


async def staff(w: World) -> list[Staff]:
    from sqlalchemy import select

    async with w.deps.db.sessions() as s:
        return list((await s.execute(select(Staff))).scalars())


async def test_another_court_sees_only_its_own(seeded: tuple[World, dict[str, int]]) -> None:
    w, _ = seeded
    page = await (await session_for(w, "rootb")).get("/console/dashboard")
    assert page.status == 200
    t = tiles(page.text)
    # t7 late, t8 late (no reply, due passed): 0 of 2 on time; one rating, 满意.
    assert (t["收到诉求"], t["按时答复率"], t["诉求满意率"], t["扫码人数"]) == (
        "2",
        "0.0%",
        "100.0%",
        "1",
    )
    assert "衡水" not in page.text and "张伟" not in page.text
    # Another court's judge asked for by id is not a filter: the court's own figures.
    judges = {s.name: s.id for s in await staff(w)}
    asked = await (await session_for(w, "rootb")).get(f"/console/dashboard?judge={judges['张伟']}")
    assert tiles(asked.text)["收到诉求"] == "2"


@pytest.mark.parametrize(
    ("username", "status"),
    [("zhangwei", 404), ("desk", 404), ("med", 404), ("boss", 200), ("root", 200), ("watch", 200)],
)
async def test_only_leaders_admins_and_supervision_read_it(
    seeded: tuple[World, dict[str, int]], username: str, status: int
) -> None:
    w, _ = seeded
    browser = await session_for(w, username)
    for url in (
        "/console/dashboard",
        "/console/dashboard/items?figure=items",
        "/console/dashboard.csv",
        "/console/dashboard.xlsx",
    ):
        resp = await w.client.get(url, headers=cookie(browser), allow_redirects=False)
        assert resp.status == status, (url, (await resp.read())[:200])
    inbox = await browser.get("/console")
    assert ('href="/console/dashboard"' in inbox.text) == (status == 200)
    signed_out = await Browser(w).get("/console/dashboard", follow=False)
    assert signed_out.status == 303 and signed_out.location == "/console/login"


async def test_every_figure_links_to_exactly_the_items_it_counts(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, ids = seeded
    browser = await session_for(w, "boss")
    page = await browser.get("/console/dashboard")
    links = set(re.findall(r'href="(/console/dashboard/items\?[^"]*)"', page.text))
    court_links = [u.replace("&amp;", "&") for u in links if "team=" not in u and "judge=" not in u]
    figures = {u.split("figure=")[1]: u for u in court_links}

    def n(*names: str) -> set[str]:
        return {str(ids[x]) for x in names}

    expected = {
        "items": n("t1", "t2", "t3", "t4", "t5"),
        "judged": n("t1", "t2", "t3", "t4"),
        "rated": n("t1", "t2", "t3"),
        "replied": n("t1", "t2", "t3"),
        "escalated": n("t2", "t4"),
        "assisted": n("t5"),
        "overdue_now": n("t4", "t6"),
        "kind%3Aquestion": n("t1", "t2", "t4", "t5"),
        "kind%3Acomplaint": n("t3"),
    }
    for figure, items in expected.items():
        assert figure in figures, (figure, sorted(figures))
        shown = await browser.get(figures[figure])
        assert shown.status == 200
        assert listed(shown.text) == items, figure
    # The table's links carry the row's team or judge.
    row_links = re.findall(
        r'href="(/console/dashboard/items\?[^"]*team=%E6%B0%91%E4%BA%8C%E5%BA%AD[^"]*figure=on_time)"',
        page.text,
    )
    assert row_links
    assert listed((await browser.get(row_links[0].replace("&amp;", "&"))).text) == n("t3")
    for figure, count in (
        ("visitors", 3),
        ("ratings", 5),
        ("bookings", 2),
        ("no_shows", 1),
        ("enforcement", 1),
    ):
        shown = await browser.get(figures[figure])
        assert shown.text.count('<td class="cn">') == count, figure  # scans, not people: 3
    unknown = await browser.get("/console/dashboard/items?figure=nope")
    assert unknown.status == 404


async def test_csv_and_xlsx_hold_the_same_figures_and_items(
    seeded: tuple[World, dict[str, int]],
) -> None:
    w, ids = seeded
    browser = await session_for(w, "root")
    headers: dict[str, Any] = {}
    bodies: dict[str, bytes] = {}
    for ext in ("csv", "xlsx"):
        resp = await w.client.get(
            f"/console/dashboard.{ext}?from=2026-11-01&to=2026-11-30",
            headers=cookie(browser),
        )
        assert resp.status == 200
        headers[ext] = resp.headers
        bodies[ext] = await resp.read()
    for ext in ("csv", "xlsx"):
        assert headers[ext]["Content-Disposition"] == (
            f'attachment; filename="dashboard-2026-11-01-2026-11-30.{ext}"'
        )
    text = bodies["csv"].decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    split = rows.index([])
    summary, items = rows[1:split], rows[split + 2 :]
    book = openpyxl.load_workbook(io.BytesIO(bodies["xlsx"]))
    # A cell reads back as a number where the CSV has its digits: compare the values.
    assert same(book["指标"].iter_rows(values_only=True)) == same(summary)
    assert same(book["事项明细"].iter_rows(values_only=True)) == same(items)
    head = summary[0]
    court = dict(zip(head, summary[1], strict=True))
    assert court["行"] == "全院"
    assert (court["收到诉求"], court["按时答复"], court["按时答复率"]) == ("5", "2", "50.0%")
    assert (court["诉求满意率"], court["评价满意率"], court["当前超期"]) == ("66.7%", "60.0%", "2")
    assert (court["答复用时中位数（工作小时）"], court["90%分位（工作小时）"]) == ("2.0", "22.5")
    by_team = {r[1]: dict(zip(head, r, strict=True)) for r in summary if r[0] == "团队"}
    assert by_team["民一庭"]["收到诉求"] == "3" and by_team["民二庭"]["收到诉求"] == "2"
    assert by_team["民一庭"]["当前未办结"] == "2"  # t5 and t6 (October, still open)
    numbers = {r[0] for r in items[1:]}
    assert numbers == {str(ids[x]) for x in ("t1", "t2", "t3", "t4", "t5")}
    t2 = next(dict(zip(items[0], r, strict=True)) for r in items[1:] if r[0] == str(ids["t2"]))
    assert (t2["首次答复用时（工作小时）"], t2["按时答复"], t2["评价"]) == ("22.5", "否", "不满意")
    assert "景县" not in text


async def test_scans_bookings_and_pushes_count_for_the_team_of_the_cases_judge(
    seeded: tuple[World, dict[str, int]],
) -> None:
    from sqlalchemy import update

    w, _ = seeded
    browser = await session_for(w, "boss")
    month = "/console/dashboard?from=2026-11-01&to=2026-11-30"
    figures = ("扫码人数", "调解预约", "调解未到场", "执行进展推送")

    async def team(name: str, extra: str = "") -> tuple[str, ...]:
        page = await browser.get(f"{month}&team={name}{extra}")
        assert page.status == 200
        shown = tiles(page.text)
        return tuple(shown[f] for f in figures)

    assert await team("民一庭") == ("2", "2", "1", "1")
    assert await team("民二庭") == ("1", "0", "0", "0")
    judges = {s.name: s.id for s in await staff(w)}
    assert await team("民二庭", f"&judge={judges['张伟']}") == ("0", "0", "0", "0")
    # The page says how each is counted.
    page = await browser.get(month)
    assert "算作所属案件承办法官现在所在的团队" in page.text
    # The table's team rows, and the rows behind a team's figure.
    links = re.findall(r'href="(/console/dashboard/items\?[^"]*)"', page.text)
    [scans] = [
        u.replace("&amp;", "&")
        for u in links
        if "team=%E6%B0%91%E4%BA%8C%E5%BA%AD" in u and u.endswith("figure=visitors")
    ]
    rows = await browser.get(scans)
    assert rows.text.count('<td class="cn">') == 1 and "(2026)冀1102民初2号" in rows.text
    resp = await w.client.get(
        "/console/dashboard.csv?from=2026-11-01&to=2026-11-30", headers=cookie(browser)
    )
    summary = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    head = summary[1]
    by_team = {r[1]: dict(zip(head, r, strict=True)) for r in summary[2:] if r and r[0] == "团队"}
    assert [by_team["民一庭"][c] for c in ("扫码人数", "调解预约", "未到场", "执行推送")] == [
        "2",
        "2",
        "1",
        "1",
    ]
    assert by_team["民二庭"]["扫码人数"] == "1" and by_team["民二庭"]["调解预约"] == "0"

    # A case with no judge: its scan counts for the court and under （未分团队）.
    async with w.deps.db.transaction() as s:
        a1 = await s.get_one(Case, w.case["case_id"])
        orphan = Case(court_id=a1.court_id, case_number="(2026)冀1102民初9号", case_type="民事")
        s.add(orphan)
        await s.flush()
        clock.set_clock(lambda: cn(11, 12))
        await audit.append(
            s, actor="u5", action="code.scanned", subject="code:9", case_id=orphan.id
        )
        clock.set_clock(lambda: NOW)
    assert (await team("-"))[0] == "1"
    assert tiles((await browser.get(month)).text)["扫码人数"] == "3"

    # The judge's team now: 李四 moves to 民一庭, and his case's scans with him; u1, who
    # scanned both judges' cases, is one visitor of the team.
    async with w.deps.db.transaction() as s:
        await s.execute(update(Staff).where(Staff.username == "lisi").values(team="民一庭"))
    assert (await team("民一庭"))[0] == "2"
