"""Issue 4 end to end through /wechat in safe mode, like the loop's tests: complaints that
reach the supervision office and never the judge they name, capped per day; mediation
booking (exactly `capacity` of 50 simultaneous bookers get in), reminders, cancel and
reschedule until the cut-off, no-shows; enforcement events imported twice but pushed once
and shown as a timeline, asset leads with photos; ratings; and the figures a court
reports, checked against a fixture counted by hand."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import jobs
from bot.app.config import Settings
from bot.core import clock
from bot.core.clock import CHINA_TZ
from bot.dialog.deps import Deps
from bot.fakes.wechat.callbacks import event_xml, media_xml
from bot.rules import enforcement, mediation, stats
from handlers import judge, texts
from qr import codes
from storage import audit
from storage.models import (
    AuditEvent,
    Binding,
    Booking,
    Case,
    Court,
    EnforcementEvent,
    MediationSlot,
    Message,
    Party,
    Rating,
    Staff,
    Ticket,
)
from tests.conftest import CASE_NUMBER, COURT, open_world
from tests.world import (
    JUDGE_WX,
    LITIGANT,
    World,
    ask,
    bind_judge,
    mst,
    mst_in_process,
    verify_litigant,
)

OTHER_PARTY = "oDefendant0000000000000001"  # 被告李某, phone tail 5678
SUPERVISOR_WX = "oSupervisor000000000000001"
MEDIATOR_WX = "oMediator00000000000000001"
MEDIATOR2_WX = "oMediator00000000000000002"
OFFICER_WX = "oOfficer000000000000000001"
ENFORCEMENT_TOKEN = "enforcement-system-token-0123456789abcdef"
ROOM = "https://room.court.example/r/{slot}?b={booking}"
EXEC_CASE = "(2026)冀1102执345号"
MONDAY = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 23 November, 10:00 in China


def cn(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A moment in 2026, China time."""
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA_TZ)


@pytest.fixture
def moment() -> Iterator[list[datetime]]:
    """A clock the test moves by hand (every test here runs on it)."""
    now = [MONDAY]
    clock.set_clock(lambda: now[0])
    yield now
    clock.set_clock(None)


@pytest.fixture
async def w(
    moment: list[datetime],
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[World]:
    """The shared world, with the enforcement endpoint on and no per-minute rate limit
    in the way of long conversations."""
    async with open_world(
        aiohttp_client,
        aiohttp_server,
        settings,
        deps,
        sample_case,
        enforcement_token=ENFORCEMENT_TOKEN,
        user_rate_per_minute=1000,
    ) as world:
        yield world


# -- helpers -----------------------------------------------------------------------------


def number_in(reply: str) -> int:
    match = re.search(r"#(\d+)", reply)
    assert match, reply
    return int(match.group(1))


def choice_for(listing: str, name: str) -> str:
    """The number a numbered list gives `name`."""
    match = re.search(rf"^(\d+) {name}", listing, re.M)
    assert match, listing
    return match.group(1)


async def court_id(w: World) -> int:
    async with w.deps.db.sessions() as s:
        case = await s.get(Case, w.case["case_id"])
        assert case is not None
        return case.court_id


async def add_staff(
    w: World,
    username: str,
    name: str,
    roles: str,
    team: str | None = None,
    speciality: str | None = None,
) -> int:
    court = await court_id(w)
    async with w.deps.db.transaction() as s:
        member = Staff(
            username=username,
            name=name,
            court_id=court,
            roles=roles,
            team=team,
            speciality=speciality,
        )
        s.add(member)
        await s.flush()
        assert member.id is not None
        return member.id


async def all_of(w: World, model: Any, *where: Any) -> list[Any]:
    async with w.deps.db.sessions() as s:
        return list((await s.execute(select(model).where(*where).order_by(model.id))).scalars())


async def get(w: World, model: Any, key: int) -> Any:
    async with w.deps.db.sessions() as s:
        row = await s.get(model, key)
    assert row is not None
    return row


async def verify_with(w: World, openid: str, token: str, digits: str) -> None:
    assert texts.ASK_DIGITS in await w.send(event_xml(openid, "SCAN", token))
    assert "验证成功" in await w.say(openid, digits)


# -- 1. complaints ---------------------------------------------------------------------


async def test_a_complaint_goes_to_supervision_and_never_to_the_judge_it_names(w: World) -> None:
    await add_staff(w, "zhaodu", "赵督", "supervision", "督查室")
    await bind_judge(w)
    await bind_judge(w, "zhaodu", SUPERVISOR_WX)
    await verify_litigant(w)

    assert await w.say(LITIGANT, "2") == texts.COMPLAIN_ABOUT
    assert await w.say(LITIGANT, "1") == texts.COMPLAIN_PROMPT  # about the judge
    receipt = await w.say(LITIGANT, "承办法官多次不接电话，态度很差。")
    number = number_in(receipt)
    assert "由法院督查室负责办理" in receipt and "回执：http://court.example/v/" in receipt
    ticket = await get(w, Ticket, number)
    assert (ticket.kind, ticket.about, ticket.team) == ("complaint", "staff", "督查室")
    assert ticket.subject_staff_id == w.case["judge_id"] and ticket.assignee_id is None

    assert await w.deliver() == 1
    [notice] = w.inbox(SUPERVISOR_WX)
    assert f"新投诉举报 #{number}" in notice and "原告王**：承办法官多次不接电话" in notice
    assert w.inbox(JUDGE_WX) == []

    # The judge it is about: not told, not listed, not even told that it exists.
    assert await w.say(JUDGE_WX, "待办") == texts.STAFF_TODO_EMPTY
    no_such = texts.STAFF_NO_TICKET.format(ticket=number)
    assert await w.say(JUDGE_WX, f"#{number} 我每天都在办公室") == no_such
    assert await w.say(JUDGE_WX, f"#{number} 结") == no_such

    # More from the complainant reaches supervision only.
    added = await w.say(LITIGANT, "补充：11月20日上午打了三次。")
    assert added == texts.COMPLAIN_ADDED.format(ticket=number)
    assert await w.deliver() == 1
    assert len(w.inbox(SUPERVISOR_WX)) == 2 and f"#{number} 补充" in w.inbox(SUPERVISOR_WX)[1]
    assert w.inbox(JUDGE_WX) == [] and w.inbox(LITIGANT) == []
    assert (await get(w, Ticket, number)).status == "open"
    refused = await all_of(w, AuditEvent, AuditEvent.action == "ticket.refused")
    assert [e.actor for e in refused] == ["staff:zhangwei", "staff:zhangwei"]

    # Supervision lists it, answers and closes it.
    todo = await w.say(SUPERVISOR_WX, "待办")
    assert f"#{number} 投诉举报 {CASE_NUMBER} 原告王** 待答复" in todo
    answered = await w.say(SUPERVISOR_WX, f"#{number} 您反映的情况已收到，我们正在核查。")
    assert answered == texts.STAFF_ANSWERED.format(ticket=number)
    assert await w.say(SUPERVISOR_WX, f"#{number} 结") == texts.STAFF_CLOSED.format(ticket=number)
    await w.deliver()
    assert w.inbox(LITIGANT) == [
        f"督查室赵督回复 #{number}：您反映的情况已收到，我们正在核查。",
        texts.RATE_ASK_AFTER_CLOSE.format(kind="投诉举报", ticket=number),
    ]
    assert w.inbox(JUDGE_WX) == []
    assert await w.say(JUDGE_WX, "待办") == texts.STAFF_TODO_EMPTY


async def test_a_judge_in_the_supervision_team_still_cannot_see_a_complaint_about_them(
    w: World,
) -> None:
    async with w.deps.db.transaction() as s:
        judge = await s.get(Staff, w.case["judge_id"])
        assert judge is not None
        judge.roles, judge.team = "judge,supervision", "督查室"  # listed first of the team
        s.add(judge)
    await add_staff(w, "zhaodu", "赵督", "supervision", "督查室")
    await bind_judge(w)
    await bind_judge(w, "zhaodu", SUPERVISOR_WX)
    await verify_litigant(w)
    await w.say(LITIGANT, "2")
    await w.say(LITIGANT, "1")
    number = number_in(await w.say(LITIGANT, "张法官收了对方的好处。"))
    assert (await get(w, Ticket, number)).team == "督查室"

    await w.deliver()
    assert w.inbox(JUDGE_WX) == [] and len(w.inbox(SUPERVISOR_WX)) == 1
    assert await w.say(JUDGE_WX, "待办") == texts.STAFF_TODO_EMPTY
    no_such = texts.STAFF_NO_TICKET.format(ticket=number)
    assert await w.say(JUDGE_WX, f"#{number} 没有的事") == no_such
    assert await w.say(JUDGE_WX, f"#{number} 结") == no_such
    await w.say(LITIGANT, "还有，开庭时他一直在看手机。")
    await w.deliver()
    assert w.inbox(JUDGE_WX) == [] and w.inbox(LITIGANT) == []
    assert len(w.inbox(SUPERVISOR_WX)) == 2
    assert f"#{number}" in await w.say(SUPERVISOR_WX, "待办")
    assert (await get(w, Ticket, number)).status == "open"


async def test_a_complaint_that_failed_uses_none_of_the_days_cap(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow made the complaint, then storing its answer failed: all of it is rolled
    back, so the day's one complaint is still there to make."""
    from bot.dialog import dispatch as dialog

    await add_staff(w, "zhaodu", "赵督", "supervision", "督查室")
    await bind_judge(w, "zhaodu", SUPERVISOR_WX)
    await verify_litigant(w)
    await w.say(LITIGANT, "2")
    await w.say(LITIGANT, "2")
    real_record = dialog.record

    async def broken_record(*args: Any, **kw: Any) -> Any:
        if kw["direction"] == "out":
            raise RuntimeError("the answer could not be stored")
        return await real_record(*args, **kw)

    monkeypatch.setattr(dialog, "record", broken_record)
    assert await w.say(LITIGANT, "立案三个月了还没有开庭。") == texts.BUSY
    assert await all_of(w, Ticket) == []
    monkeypatch.setattr(dialog, "record", real_record)
    # The cap is one complaint a day, and none was made: this one is taken.
    number = number_in(await w.say(LITIGANT, "立案三个月了还没有开庭。"))
    assert [t.id for t in await all_of(w, Ticket)] == [number]


async def test_complaints_are_capped_per_day_with_the_day_to_come_back(
    w: World, moment: list[datetime]
) -> None:
    await add_staff(w, "zhaodu", "赵督", "supervision", "督查室")
    await bind_judge(w, "zhaodu", SUPERVISOR_WX)
    await verify_litigant(w)
    await verify_litigant(w, OTHER_PARTY, "5678")
    await w.say(LITIGANT, "2")
    await w.say(LITIGANT, "2")
    number = number_in(await w.say(LITIGANT, "立案三个月了还没有开庭。"))
    for i in range(5):  # complaint_message_daily_cap
        assert await w.say(LITIGANT, f"补充{i}") == texts.COMPLAIN_ADDED.format(ticket=number)
    tomorrow = "明天（11月24日）"
    assert await w.say(LITIGANT, "补充5") == texts.COMPLAIN_MESSAGE_CAP.format(
        limit=5, day=tomorrow, call=texts.call(None)
    )
    assert await w.say(LITIGANT, "补充6") == texts.COMPLAIN_MESSAGE_CAP.format(
        limit=5, day=tomorrow, call=texts.call(None)
    )
    await w.say(LITIGANT, "0")
    refused = await w.say(LITIGANT, "2")
    assert refused.startswith(
        texts.COMPLAIN_CAP.format(limit=1, day=tomorrow, call=texts.call(None))
    )
    assert "1 咨询法官" in refused  # and the menu, to carry on
    assert await w.say(LITIGANT, "2") == refused

    [ticket] = await all_of(w, Ticket)
    on_it = await all_of(w, Message, Message.ticket_id == number)
    assert len(on_it) == 6  # the complaint and the 5 messages the cap allows
    assert await w.deliver() == 6 and len(w.inbox(SUPERVISOR_WX)) == 6
    # The cap is per person: the other party is not stopped by it.
    assert await w.say(OTHER_PARTY, "2") == texts.COMPLAIN_ABOUT
    await w.say(OTHER_PARTY, "0")

    moment[0] += timedelta(days=1)
    assert await w.say(LITIGANT, "2") == texts.COMPLAIN_ABOUT
    assert await w.say(LITIGANT, "4") == texts.COMPLAIN_PROMPT
    again = number_in(await w.say(LITIGANT, "今天还是没有消息。"))
    assert again != number
    assert await w.say(LITIGANT, "再补充一句") == texts.COMPLAIN_ADDED.format(ticket=again)
    assert len(await all_of(w, Ticket, Ticket.kind == "complaint")) == 2


# -- 2. mediation ------------------------------------------------------------------------


async def mediators(w: World) -> dict[str, int]:
    """Three mediators: 王芳 free soonest, 李明 next, 孙丽 with nothing bookable."""
    court = await court_id(w)
    ids: dict[str, int] = {}
    async with w.deps.db.transaction() as s:
        for username, name, speciality in (
            ("liming", "李明", "婚姻家庭"),
            ("wangfang", "王芳", "民间借贷"),
            ("sunli", "孙丽", "邻里纠纷"),
        ):
            member = Staff(
                username=username,
                name=name,
                court_id=court,
                roles="mediator",
                team="调解中心",
                speciality=speciality,
            )
            s.add(member)
            await s.flush()
            ids[username] = member.id or 0
        staff = {u: await s.get(Staff, i) for u, i in ids.items()}
        for username, starts in (
            ("liming", [cn(11, 25, 9, 30), cn(11, 26, 14, 0)]),
            ("wangfang", [cn(11, 24, 15, 0), cn(11, 27, 9, 0)]),
            ("sunli", [cn(11, 20, 9, 0), cn(12, 20, 9, 0)]),  # past, and beyond two weeks
        ):
            member = staff[username]
            assert member is not None
            assert (
                await mediation.add_slots(s, member, starts, minutes=60, capacity=1, room_url=ROOM)
                == 2
            )
        liming = staff["liming"]
        assert liming is not None
        assert (  # the same times again add nothing
            await mediation.add_slots(
                s, liming, [cn(11, 25, 9, 30)], minutes=60, capacity=1, room_url=ROOM
            )
            == 0
        )
    return ids


async def slot_at(w: World, start: datetime) -> MediationSlot:
    [slot] = await all_of(w, MediationSlot, MediationSlot.start_at == start)
    return slot


async def book(w: World, openid: str, mediator: str, when: str) -> str:
    listing = await w.say(openid, "3")
    slots = await w.say(openid, choice_for(listing, mediator))
    assert await w.say(openid, choice_for(slots, when)) == texts.BOOK_CONFIRM.format(
        when=when, name=mediator
    )
    done = await w.say(openid, "1")
    assert "预约成功！" in done, done
    return done


async def test_book_a_mediator_everyone_is_told_and_reminded_once(
    w: World, moment: list[datetime]
) -> None:
    await mediators(w)
    await bind_judge(w)
    await bind_judge(w, "liming", MEDIATOR_WX)
    await verify_litigant(w)
    await verify_litigant(w, OTHER_PARTY, "5678")

    listing = await w.say(LITIGANT, "3")
    assert listing == texts.BOOK_MEDIATORS.format(
        lines="1 王芳（民间借贷） 最早可约 11月24日 周二 下午3:00\n"
        "2 李明（婚姻家庭） 最早可约 11月25日 周三 上午9:30\n"
        "3 孙丽（邻里纠纷） 近两周已约满"
    )
    assert await w.say(LITIGANT, "2") == texts.BOOK_SLOTS.format(
        name="李明", lines="1 11月25日 周三 上午9:30\n2 11月26日 周四 下午2:00"
    )
    wednesday = "11月25日 周三 上午9:30"
    assert await w.say(LITIGANT, "1") == texts.BOOK_CONFIRM.format(when=wednesday, name="李明")
    done = await w.say(LITIGANT, "1")
    [booking] = await all_of(w, Booking)
    slot = await slot_at(w, cn(11, 25, 9, 30))
    link = f"https://room.court.example/r/{slot.id}?b={booking.id}"
    assert done == texts.BOOK_DONE.format(when=wednesday, name="李明", link=link)
    assert (booking.status, booking.openid, slot.booked) == ("booked", LITIGANT, 1)
    assert "1 咨询法官" in await w.say(LITIGANT, "0")

    # The booker has the reply; the other side and the court get the news.
    assert await w.deliver() == 3
    assert w.inbox(LITIGANT) == []
    assert w.inbox(OTHER_PARTY) == [
        f"本案已预约远程调解：{wednesday}，调解员李明。\n到时请点击链接进入调解室：{link}"
    ]
    for staff in (JUDGE_WX, MEDIATOR_WX):
        assert w.inbox(staff) == [f"新的调解预约：{CASE_NUMBER}，{wednesday}，由原告预约。"]

    # Reminders: the day before and an hour before, each once, with the room link.
    for when, queued in (
        (MONDAY, 0),
        (cn(11, 24, 9, 0), 0),  # 24.5 hours before
        (cn(11, 24, 10, 0), 1),  # 23.5 hours before: the day-before reminder
        (cn(11, 24, 10, 1), 0),
        (cn(11, 25, 8, 0), 0),
        (cn(11, 25, 8, 45), 1),  # 45 minutes before: the hour-before reminder
        (cn(11, 25, 8, 50), 0),
    ):
        moment[0] = when
        assert await jobs.mediation_reminders(w.deps) == queued, when
    assert await w.deliver() == 2
    assert w.inbox(LITIGANT) == [
        f"提醒：明天（{wednesday}）有远程调解，案号{CASE_NUMBER}。\n请提前几分钟点击链接进入：{link}",
        f"提醒：一小时后（{wednesday}）有远程调解，案号{CASE_NUMBER}。\n请提前几分钟点击链接进入：{link}",
    ]
    booking = await get(w, Booking, booking.id)
    assert booking.reminded_day_at is not None and booking.reminded_hour_at is not None
    # The reminder job runs in every deployment, not only when a test calls it.
    assert jobs.mediation_reminders in [job for job, _ in jobs.schedule_for(w.deps.settings)]


async def test_a_same_day_booking_is_reminded_for_today_not_tomorrow(
    w: World, moment: list[datetime]
) -> None:
    await mediators(w)
    await verify_litigant(w)
    moment[0] = cn(11, 25, 6, 0)  # 3.5 hours before 李明's Wednesday slot
    await book(w, LITIGANT, "李明", "11月25日 周三 上午9:30")
    assert await jobs.mediation_reminders(w.deps) == 1
    await w.deliver()
    assert w.inbox(LITIGANT)[-1].startswith("提醒：今天（11月25日 周三 上午9:30）有远程调解")


async def test_cancel_and_reschedule_until_two_hours_before_and_no_shows(
    w: World, moment: list[datetime]
) -> None:
    await mediators(w)
    await bind_judge(w)
    await bind_judge(w, "liming", MEDIATOR_WX)
    await bind_judge(w, "wangfang", MEDIATOR2_WX)
    await verify_litigant(w)
    wednesday, friday = "11月25日 周三 上午9:30", "11月27日 周五 上午9:00"
    await book(w, LITIGANT, "李明", wednesday)
    [first] = await all_of(w, Booking)

    # Reschedule: choosing another time while booked moves the booking; the place is freed.
    listing = await w.say(LITIGANT, "3")
    assert listing.startswith(texts.BOOK_CURRENT.format(when=wednesday, name="李明"))
    moved = await book(w, LITIGANT, "王芳", friday)
    assert (
        moved.startswith(texts.BOOK_MOVED.format(was=wednesday) + "预约成功！") and friday in moved
    )
    first, second = await all_of(w, Booking)
    assert (first.status, second.status) == ("cancelled", "booked")
    assert (await slot_at(w, cn(11, 25, 9, 30))).booked == 0
    assert (await slot_at(w, cn(11, 27, 9, 0))).booked == 1

    # Cancel.
    assert (await w.say(LITIGANT, "3")).startswith(
        texts.BOOK_CURRENT.format(when=friday, name="王芳")
    )
    assert (await w.say(LITIGANT, "取消")).startswith(texts.BOOK_CANCELLED)
    assert (await get(w, Booking, second.id)).status == "cancelled"
    assert (await slot_at(w, cn(11, 27, 9, 0))).booked == 0
    await w.deliver()
    # The judge hears each step once: booked, moved (one notice, not a cancel and a booking),
    # cancelled; the litigant, who did each in the chat, gets no echo of it.
    assert w.inbox(JUDGE_WX) == [
        f"新的调解预约：{CASE_NUMBER}，{wednesday}，由原告预约。",
        f"调解预约改期：{CASE_NUMBER}，{wednesday} 改到 {friday}。",
        f"调解预约已取消：{CASE_NUMBER}，{friday}。",
    ]
    assert w.inbox(LITIGANT) == []

    # Booked again; under two hours before the start neither cancel nor reschedule works.
    await book(w, LITIGANT, "李明", wednesday)
    third = (await all_of(w, Booking))[-1]
    moment[0] = cn(11, 25, 7, 45)
    await w.say(LITIGANT, "3")
    assert (await w.say(LITIGANT, "取消")).startswith(
        texts.BOOK_TOO_LATE.format(call=texts.call(None))
    )
    listing = await w.say(LITIGANT, "3")
    slots = await w.say(LITIGANT, choice_for(listing, "王芳"))
    await w.say(LITIGANT, choice_for(slots, friday))
    assert (await w.say(LITIGANT, "1")).startswith(
        texts.BOOK_TOO_LATE.format(call=texts.call(None))
    )
    assert (await get(w, Booking, third.id)).status == "booked"
    assert (await slot_at(w, cn(11, 25, 9, 30))).booked == 1
    assert (await slot_at(w, cn(11, 27, 9, 0))).booked == 0
    assert len(await all_of(w, Booking)) == 3

    # No-shows: only by the booking's mediator, only once it has started, only if booked.
    assert await w.say(MEDIATOR_WX, f"未到 {third.id}") == texts.NO_SHOW_BAD  # not started
    moment[0] = cn(11, 25, 9, 40)
    assert await w.say(MEDIATOR2_WX, f"未到 {third.id}") == texts.NO_SHOW_BAD  # not theirs
    assert await w.say(JUDGE_WX, f"未到 {third.id}") == texts.STAFF_HELP.format(
        example=judge.a_week_on()
    )  # not a mediator
    assert await w.say(MEDIATOR_WX, f"未到 {first.id}") == texts.NO_SHOW_BAD  # was cancelled
    assert await w.say(MEDIATOR_WX, f"未到 {third.id}") == texts.NO_SHOW_RECORDED
    assert (await get(w, Booking, third.id)).status == "no_show"
    assert (await get(w, Booking, first.id)).status == "cancelled"
    [event] = await all_of(w, AuditEvent, AuditEvent.action == "mediation.no_show")
    assert event.actor == "staff:liming" and event.subject == f"booking:{third.id}"


async def test_fifty_simultaneous_bookers_for_three_places(w: World) -> None:
    ids = await mediators(w)
    async with w.deps.db.transaction() as s:
        liming = await s.get(Staff, ids["liming"])
        assert liming is not None
        await mediation.add_slots(
            s, liming, [cn(11, 30, 9, 0)], minutes=60, capacity=3, room_url=ROOM
        )
        parties = list(
            (
                await s.execute(
                    select(Party.id).where(Party.case_id == w.case["case_id"]).order_by(Party.id)
                )
            ).scalars()
        )
        crowd = [
            Binding(
                openid=f"oCrowd{i:020d}",
                case_id=w.case["case_id"],
                party_id=parties[i % 2],
                method="assisted",
            )
            for i in range(50)
        ]
        s.add_all(crowd)
        await s.flush()
        binding_ids = [b.id for b in crowd]
    slot = await slot_at(w, cn(11, 30, 9, 0))

    async def one(binding_id: int | None) -> int | None:
        async with w.deps.db.transaction() as s:
            case = await s.get(Case, w.case["case_id"])
            binding = await s.get(Binding, binding_id)
            assert case is not None and binding is not None
            booking = await mediation.book(s, slot.id or 0, case, binding, rooms=w.deps.rules.rooms)
            return booking.id if booking else None

    results = await asyncio.gather(*(one(b) for b in binding_ids))
    assert len([r for r in results if r is not None]) == 3
    assert (await get(w, MediationSlot, slot.id)).booked == 3
    booked = await all_of(w, Booking, Booking.slot_id == slot.id)
    assert len(booked) == 3 and len({b.openid for b in booked}) == 3
    async with w.deps.db.sessions() as s:
        assert (await audit.verify(s)).ok  # three appends to one chain, none lost or forked


async def test_a_place_taken_while_confirming_offers_the_other_times(w: World) -> None:
    await mediators(w)
    await verify_litigant(w)
    await verify_litigant(w, OTHER_PARTY, "5678")
    wednesday = "11月25日 周三 上午9:30"
    listing = await w.say(LITIGANT, "3")
    slots = await w.say(LITIGANT, choice_for(listing, "李明"))
    assert await w.say(LITIGANT, choice_for(slots, wednesday)) == texts.BOOK_CONFIRM.format(
        when=wednesday, name="李明"
    )
    await book(w, OTHER_PARTY, "李明", wednesday)  # the only place, taken meanwhile

    taken = await w.say(LITIGANT, "1")
    assert taken == texts.BOOK_TAKEN + texts.BOOK_SLOTS.format(
        name="李明", lines="1 11月26日 周四 下午2:00"
    )
    [booking] = await all_of(w, Booking)
    assert booking.openid == OTHER_PARTY
    assert (await slot_at(w, cn(11, 25, 9, 30))).booked == 1
    assert await w.say(LITIGANT, "1") == texts.BOOK_CONFIRM.format(
        when="11月26日 周四 下午2:00", name="李明"
    )
    assert (await w.say(LITIGANT, "1")).startswith("预约成功！")
    assert len(await all_of(w, Booking)) == 2


# -- 3. enforcement ----------------------------------------------------------------------


async def enforcement_case(w: World) -> dict[str, Any]:
    """An enforcement case whose handler is an enforcement officer (bound to WeChat)."""
    court = await court_id(w)
    async with w.deps.db.transaction() as s:
        officer = Staff(
            username="zhaozhi", name="赵执", court_id=court, roles="enforcement", team="执行一组"
        )
        s.add(officer)
        await s.flush()
        case = Case(
            court_id=court,
            case_number=EXEC_CASE,
            case_type="执行",
            cause="民间借贷纠纷",
            judge_id=officer.id,
        )
        s.add(case)
        await s.flush()
        for role, name, tail in (("申请执行人", "周某某", "2468"), ("被执行人", "吴某", "1357")):
            s.add(
                Party(
                    case_id=case.id or 0,
                    role=role,
                    name=name,
                    phone_tail=tail,
                    phone_masked="x",
                    phone_hash=tail,
                )
            )
        code = await codes.issue(s, case, actor="test")
    await bind_judge(w, "zhaozhi", OFFICER_WX)
    await verify_with(w, LITIGANT, code.token, "2468")
    await verify_with(w, OTHER_PARTY, code.token, "1357")
    return {"case_id": case.id, "officer_id": officer.id}


def event(event_id: str, kind: str, at: str, **more: Any) -> dict[str, Any]:
    return {"event_id": event_id, "case_number": EXEC_CASE, "kind": kind, "at": at, **more}


# Out of order on purpose; E7 is not public.
EVENTS = [
    event("E5", "received", "2026-11-10T09:00:00+08:00", amount=12000.50),
    event("E1", "filing", "2026-11-02T09:00:00+08:00"),
    event("E7", "received", "2026-11-13T09:00:00+08:00", amount=3000, public=False, note="内部"),
    event("E3", "asset_search", "2026-11-05T14:30:00+08:00", note="查到银行存款两笔"),
    event("E2", "notice", "2026-11-03T10:00:00"),  # no offset: China time
    event("E6", "paid_out", "2026-11-12T15:00:00+08:00", amount="10000"),
    event("E4", "freeze", "2026-11-06T02:00:00+00:00", note="冻结银行存款"),
]
TIMELINE = [
    "11月2日 周一 上午9:00：执行立案",
    "11月3日 周二 上午10:00：发出执行通知书",
    "11月5日 周四 下午2:30：网络查控（查询财产）（查到银行存款两笔）",
    "11月6日 周五 上午10:00：冻结、查封财产（冻结银行存款）",
    "11月10日 周二 上午9:00：收到执行款 12,000.50元",
    "11月12日 周四 下午3:00：发放执行款 10,000.00元",
]
BAD_EVENTS: list[Any] = [
    {"case_number": EXEC_CASE, "kind": "filing", "at": "2026-11-02T09:00:00+08:00"},
    event("B2", "teleport", "2026-11-02T09:00:00+08:00"),
    {**event("B3", "filing", "2026-11-02T09:00:00+08:00"), "case_number": "(2026)冀1102执999号"},
    event("B4", "received", "2026-11-02T09:00:00+08:00", amount="12.345"),
    event("B5", "notice", "昨天"),
    "not an object",
]


async def ingest(w: World, rows: list[Any]) -> enforcement.Outcome:
    outcome = enforcement.Outcome()
    async with w.deps.db.transaction() as s:
        await enforcement.ingest(s, list(enumerate(rows, start=1)), outcome, actor="import")
    return outcome


async def test_events_imported_twice_are_pushed_once_and_shown_oldest_first(w: World) -> None:
    await enforcement_case(w)
    first = await ingest(w, EVENTS + BAD_EVENTS)
    assert (first.added, first.unchanged) == (7, 0)
    reasons = dict(first.skipped)
    assert sorted(reasons) == [8, 9, 10, 11, 12, 13]
    assert "missing event_id" in reasons[8]
    assert "kind must be one of" in reasons[9]
    assert reasons[10] == "no such case number"
    assert "at most two decimals" in reasons[11]
    assert "at must be a time" in reasons[12]
    assert "JSON object" in reasons[13]

    assert await w.deliver() == 12  # six public events, two parties
    again = await ingest(w, EVENTS + BAD_EVENTS)
    assert (again.added, again.unchanged, len(again.skipped)) == (0, 7, 6)
    assert await w.deliver() == 0
    for party in (LITIGANT, OTHER_PARTY):
        pushes = w.inbox(party)
        assert len(pushes) == 6
        assert pushes[1] == (
            f"您的执行案件 {EXEC_CASE} 有新进展：\n{TIMELINE[0]}\n发送 4 查看全部进度。"
        )
        assert not any("内部" in p or "3,000.00" in p for p in pushes)
    assert len(await all_of(w, EnforcementEvent)) == 7

    progress = await w.say(LITIGANT, "4")
    assert progress == texts.PROGRESS.format(
        case_number=EXEC_CASE,
        lines="\n".join(TIMELINE),
        received="12,000.50元",
        paid="10,000.00元",
    )


async def test_an_asset_lead_with_a_photo_goes_to_the_enforcement_officer(w: World) -> None:
    enf = await enforcement_case(w)
    await bind_judge(w)  # the civil judge: not this case's handler
    assert await w.say(LITIGANT, "4") == texts.PROGRESS_NONE
    assert await w.say(LITIGANT, "1") == texts.LEAD_PROMPT
    received = await w.say(LITIGANT, "吴某在城东开了一家超市，车牌冀T12345。")
    number = number_in(received)
    assert "执行员赵执会在" in received and "回执：http://court.example/v/" in received
    photo = media_xml(
        LITIGANT, "image", PicUrl="http://mmbiz.example/pic.jpg", MediaId="MEDIA_lead_photo_1"
    )
    assert await w.send(photo) == texts.LEAD_ADDED.format(ticket=number)

    ticket = await get(w, Ticket, number)
    assert (ticket.kind, ticket.assignee_id, ticket.case_id) == (
        "asset_lead",
        enf["officer_id"],
        enf["case_id"],
    )
    text_msg, photo_msg = await all_of(w, Message, Message.ticket_id == number)
    assert text_msg.content.startswith("吴某在城东") and text_msg.media_id is None
    assert (photo_msg.msg_type, photo_msg.media_id) == ("image", "MEDIA_lead_photo_1")

    assert await w.deliver() == 2
    new, added = w.inbox(OFFICER_WX)
    assert f"新财产线索 #{number}" in new and "申请执行人周**：吴某在城东" in new
    assert f"#{number} 补充" in added and texts.PHOTO in added
    assert w.inbox(JUDGE_WX) == []
    # The officer sees the photo through a signed link, fetched from WeChat when opened.
    found = re.search(r"（查看照片：http://court\.example(/media/\d+\?e=\d+&s=[\w-]+=*)）", added)
    assert found is not None, added
    link = found.group(1)
    assert link in await w.say(OFFICER_WX, f"#{number}")  # and in the item's thread
    jpeg = b"\xff\xd8\xff\xe0 a photo of a shop"
    w.fake.media["MEDIA_lead_photo_1"] = (jpeg, "image/jpeg")
    opened = await w.client.get(link)
    assert opened.status == 200 and opened.content_type == "image/jpeg"
    assert await opened.read() == jpeg
    for forged in (
        re.sub(r"s=[\w-]+=*", "s=AAAA", link),
        link.replace(f"/media/{photo_msg.id}", f"/media/{text_msg.id}"),  # another message
        re.sub(r"e=\d+", "e=4102444800", link),  # a later expiry, same signature
    ):
        assert (await w.client.get(forged)).status == 403, forged
    del w.fake.media["MEDIA_lead_photo_1"]  # WeChat keeps it three days
    assert (await w.client.get(link)).status == 410
    assert f"#{number} 财产线索 {EXEC_CASE}" in await w.say(OFFICER_WX, "待办")
    await w.say(OFFICER_WX, f"#{number} 已去现场核实，谢谢提供。")
    await w.deliver()
    assert w.inbox(LITIGANT) == [f"执行员赵执回复 #{number}：已去现场核实，谢谢提供。"]


async def test_the_enforcement_system_pushes_events_over_http(w: World) -> None:
    await enforcement_case(w)
    url = "/api/enforcement/events"
    body = [EVENTS[0], EVENTS[1]]
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {ENFORCEMENT_TOKEN}"},
        {"Authorization": ENFORCEMENT_TOKEN},  # the token alone, without its scheme
        {"Authorization": f"Bearer {ENFORCEMENT_TOKEN}x"},
        {"Authorization": f"bearer  {ENFORCEMENT_TOKEN}"},
    ):
        resp = await w.client.post(url, json=body, headers=headers)
        assert resp.status == 401, headers
    assert await all_of(w, EnforcementEvent) == []

    auth = {"Authorization": f"Bearer {ENFORCEMENT_TOKEN}"}
    resp = await w.client.post(url, json=body, headers=auth)
    assert resp.status == 200
    assert await resp.json() == {"added": 2, "already_known": 0, "skipped": []}
    resp = await w.client.post(url, json=body, headers=auth)
    assert await resp.json() == {"added": 0, "already_known": 2, "skipped": []}
    resp = await w.client.post(url, json=BAD_EVENTS[3], headers=auth)  # one object
    result = await resp.json()
    assert result["added"] == 0 and [s["item"] for s in result["skipped"]] == [1]
    assert "at most two decimals" in result["skipped"][0]["reason"]
    resp = await w.client.post(url, data=b"{not json", headers=auth)
    assert resp.status == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    resp = await w.client.post(url, data=deep, headers=auth)
    assert resp.status == 400 and "nested" in (await resp.json())["error"]

    assert await w.deliver() == 4  # two events, two parties, once each
    for party in (LITIGANT, OTHER_PARTY):
        assert len(w.inbox(party)) == 2

    w.deps.settings = replace(w.deps.settings, enforcement_token=None)  # endpoint off
    resp = await w.client.post(url, json=[EVENTS[3]], headers=auth)
    assert resp.status == 404
    assert len(await all_of(w, EnforcementEvent)) == 2


# -- the command line: slots and events ----------------------------------------------------


async def test_mst_slots_add_and_import_events(
    w: World, moment: list[datetime], cli_env: dict[str, str], tmp_path: Path
) -> None:
    await add_staff(w, "liming", "李明", "mediator", "调解中心", "婚姻家庭")
    weekly = (
        "slots",
        "add",
        "liming",
        "--start",
        "2026-11-25T09:30",
        "--weeks",
        "2",
        "--days",
        "wed,fri",
        "--minutes",
        "90",
        "--capacity",
        "2",
        "--room",
        ROOM,
    )
    run = await mst_in_process(cli_env, tmp_path, *weekly)
    assert run.code == 0, run.err
    assert run.out.strip() == "slots: 4 added, 0 already there"
    run = await mst_in_process(cli_env, tmp_path, *weekly)
    assert run.out.strip() == "slots: 0 added, 4 already there"
    slots = await all_of(w, MediationSlot)
    assert [s.start_at for s in slots] == [
        cn(11, 25, 9, 30),
        cn(11, 27, 9, 30),
        cn(12, 2, 9, 30),
        cn(12, 4, 9, 30),
    ]
    assert {(s.end_at - s.start_at, s.capacity, s.room_url) for s in slots} == {
        (timedelta(minutes=90), 2, ROOM)
    }
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "zhangwei", "--start", "2026-11-25T09:30"
    )
    assert run.code != 0  # --room missing
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "zhangwei", "--start", "2026-11-25T09:30", "--room", ROOM
    )
    assert run.code == 1 and "not a staff member with the mediator role" in run.err

    await enforcement_case(w)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in [EVENTS[1], EVENTS[0], BAD_EVENTS[2]])
        + "\n",
        encoding="utf-8",
    )
    run = await mst_in_process(cli_env, tmp_path, "import-events", str(events))
    assert run.code == 1
    assert run.out.strip() == "执行事件：新增 2，已有 0，跳过 1"
    assert "第 3 行未导入：no such case number" in run.err
    run = await mst_in_process(cli_env, tmp_path, "import-events", str(events))
    assert run.out.strip() == "执行事件：新增 0，已有 2，跳过 1"
    moment[0] = datetime.now(UTC) + timedelta(minutes=1)  # the script queued on the real clock
    assert await w.deliver() == 4
    for party in (LITIGANT, OTHER_PARTY):
        assert len(w.inbox(party)) == 2


# -- 4. rating ---------------------------------------------------------------------------


async def test_rate_a_closed_item_change_it_within_a_day_and_rate_the_service(
    w: World, moment: list[datetime]
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "请问判决书什么时候寄出？")
    await w.say(JUDGE_WX, f"#{number} 本周五寄出。")
    assert await w.say(JUDGE_WX, f"#{number} 结") == texts.STAFF_CLOSED.format(ticket=number)
    await w.deliver()
    assert w.inbox(LITIGANT)[-1] == texts.RATE_ASK_AFTER_CLOSE.format(kind="咨询", ticket=number)

    assert await w.say(LITIGANT, "1") == texts.RATE_THANKS  # 满意
    [rating] = await all_of(w, Rating)
    assert (rating.ticket_id, rating.score, rating.openid) == (number, 1, LITIGANT)
    saved = await w.say(LITIGANT, "法官回复很及时，谢谢。")
    assert saved.startswith(texts.RATE_COMMENT_SAVED) and "1 咨询法官" in saved
    assert (await get(w, Rating, rating.id)).comment == "法官回复很及时，谢谢。"

    # Changed within a day: still one rating for the ticket.
    moment[0] += timedelta(hours=3)
    # One number per line: the choice; the item named by its first words.
    assert await w.say(LITIGANT, "5") == texts.RATE_PICK.format(
        lines="1 咨询“请问判决书什么时候寄出？”（已办结）"
    )
    assert await w.say(LITIGANT, "1") == texts.RATE_SCORE.format(what="这件事的办理")
    assert await w.say(LITIGANT, "2") == texts.RATE_THANKS  # 基本满意
    await w.say(LITIGANT, "0")
    [changed] = await all_of(w, Rating)
    assert (changed.id, changed.score, changed.comment) == (
        rating.id,
        2,
        "法官回复很及时，谢谢。",
    )
    assert changed.created_at == rating.created_at

    # After a day it stays as it is.
    moment[0] += timedelta(days=1)
    await w.say(LITIGANT, "5")
    await w.say(LITIGANT, "1")
    late = await w.say(LITIGANT, "3")
    assert late.startswith(texts.RATE_TOO_LATE) and "1 咨询法官" in late
    assert [r.score for r in await all_of(w, Rating)] == [2]

    # Menu 5, then 9: the court's service in general, no ticket.
    await w.say(LITIGANT, "5")
    assert await w.say(LITIGANT, "9") == texts.RATE_SCORE.format(what="本院的整体服务")
    assert await w.say(LITIGANT, "3") == texts.RATE_THANKS
    await w.say(LITIGANT, "0")
    ticket_rating, service = await all_of(w, Rating)
    assert (ticket_rating.ticket_id, ticket_rating.score) == (number, 2)
    assert (service.ticket_id, service.score, service.case_id) == (None, 3, w.case["case_id"])
    actions = [
        e.action for e in await all_of(w, AuditEvent, AuditEvent.action.startswith("rating."))
    ]
    assert actions == ["rating.given", "rating.comment", "rating.changed", "rating.given"]


# -- 5. the figures a court reports ----------------------------------------------------


async def stats_fixture(w: World, moment: list[datetime]) -> None:
    """Two courts, three judges, nine tickets, ten ratings, scans by seven people.

    case A1 (the sample case, court 衡水, judge zhangwei), A2 (衡水, lisi), B1 (景县, wangwu)

    scans: u1 A1 11-02, u2 A1 11-03, u1 A1 11-04 (again), u1 A2 11-05, u4 A2 11-06,
           u5 B1 11-07, u6 B1 11-08, u7 A1 10-31 23:50, u3 A1 11-23 (a real scan)
    tickets (created / due / first reply):
      t0 A1 question   10-10 / 10-12 / 10-11   on time   rated 2 on 10-12
      t1 A1 question   11-01 00:30 / 11-03 / 11-02   on time   rated 1 on 11-03
      t2 A1 complaint  11-03 / 11-06 / 11-08   late      rated 3 on 11-09
      t3 A1 question   11-05 / 11-07 / -       late (due passed, unanswered)
      t4 A1 question   11-20 / 11-30 / -       not yet due: not judged
      t5 A2 asset_lead 11-10 / 11-12 / 11-11   on time   rated 2 on 11-12
      t6 A2 question   11-11 / 11-13 10:00 / 11-13 10:00   on time (exactly)
      t7 B1 question   11-04 / 11-06 / 11-05   on time   rated 1 on 11-06
      t8 B1 question   11-06 / 11-08 / 11-10   late      rated 3 on 11-11
    service ratings: A1 u1 1 on 11-15, A1 u2 3 on 11-16, B1 u5 2 on 11-17, A2 u4 1 on 10-20
    """
    court_a = await court_id(w)
    async with w.deps.db.transaction() as s:
        court_b = Court(name="景县人民法院")
        s.add(court_b)
        await s.flush()
        judges = {}
        for username, name, court in (("lisi", "李四", court_a), ("wangwu", "王五", court_b.id)):
            judge = Staff(username=username, name=name, court_id=court or 0, roles="judge")
            s.add(judge)
            await s.flush()
            judges[username] = judge.id
        cases = {"A1": w.case["case_id"]}
        for key, number, court, judge_id in (
            ("A2", "(2026)冀1102民初2号", court_a, judges["lisi"]),
            ("B1", "(2026)冀1127民初3号", court_b.id, judges["wangwu"]),
        ):
            case = Case(
                court_id=court or 0, case_number=number, case_type="民事", judge_id=judge_id
            )
            s.add(case)
            await s.flush()
            cases[key] = case.id
    for openid, case, at in (
        ("u1", "A1", cn(11, 2)),
        ("u2", "A1", cn(11, 3)),
        ("u1", "A1", cn(11, 4)),
        ("u1", "A2", cn(11, 5)),
        ("u4", "A2", cn(11, 6)),
        ("u5", "B1", cn(11, 7)),
        ("u6", "B1", cn(11, 8)),
        ("u7", "A1", cn(10, 31, 23, 50)),
    ):
        moment[0] = at
        async with w.deps.db.transaction() as s:
            await audit.append(
                s, actor=openid, action="code.scanned", subject="code:1", case_id=cases[case]
            )
            await audit.append(s, actor="u8", action="message.in", case_id=cases[case])  # noise
    moment[0] = MONDAY
    await w.send(event_xml("u3", "SCAN", w.case["token"]))  # a real scan: u3 on A1
    tickets = [
        ("A1", "question", cn(10, 10), cn(10, 12), cn(10, 11), (2, cn(10, 12))),
        ("A1", "question", cn(11, 1, 0, 30), cn(11, 3), cn(11, 2), (1, cn(11, 3))),
        ("A1", "complaint", cn(11, 3), cn(11, 6), cn(11, 8), (3, cn(11, 9))),
        ("A1", "question", cn(11, 5), cn(11, 7), None, None),
        ("A1", "question", cn(11, 20), cn(11, 30), None, None),
        ("A2", "asset_lead", cn(11, 10), cn(11, 12), cn(11, 11), (2, cn(11, 12))),
        ("A2", "question", cn(11, 11), cn(11, 13), cn(11, 13), None),
        ("B1", "question", cn(11, 4), cn(11, 6), cn(11, 5), (1, cn(11, 6))),
        ("B1", "question", cn(11, 6), cn(11, 8), cn(11, 10), (3, cn(11, 11))),
    ]
    async with w.deps.db.transaction() as s:
        for case, kind, created, due, replied, rated in tickets:
            ticket = Ticket(
                case_id=cases[case],
                court_id=(await s.get_one(Case, cases[case])).court_id,
                kind=kind,
                status="closed" if replied else "open",
                openid="u1",
                created_at=created,
                due_at=due,
                first_reply_at=replied,
            )
            s.add(ticket)
            await s.flush()
            if rated:
                score, at = rated
                s.add(
                    Rating(
                        ticket_id=ticket.id,
                        case_id=cases[case],
                        openid="u1",
                        score=score,
                        created_at=at,
                        updated_at=at,
                    )
                )
        for case, openid, score, at in (
            ("A1", "u1", 1, cn(11, 15)),
            ("A1", "u2", 3, cn(11, 16)),
            ("B1", "u5", 2, cn(11, 17)),
            ("A2", "u4", 1, cn(10, 20)),
        ):
            s.add(
                Rating(
                    ticket_id=None,
                    case_id=cases[case],
                    openid=openid,
                    score=score,
                    created_at=at,
                    updated_at=at,
                )
            )


FIGURES = (
    "visitors",
    "feedback",
    "feedback_satisfaction",
    "ratings",
    "rating_satisfaction",
    "on_time_rate",
)


def figures(result: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(result[k] for k in FIGURES)


async def test_stats_match_figures_counted_by_hand(
    w: World, moment: list[datetime], cli_env: dict[str, str], tmp_path: Path
) -> None:
    await stats_fixture(w, moment)

    async def compute(**scope: Any) -> dict[str, Any]:
        async with w.deps.db.sessions() as s:
            return await stats.compute(s, stats.Scope(**scope), w.deps.rules.deadlines)

    # (visitors, feedback, feedback satisfaction, ratings, rating satisfaction, on time)
    everything = await compute()
    # 7 people scanned; 9 tickets; rated tickets t0 t1 t2 t5 t7 t8, satisfied t0 t1 t5 t7:
    # 4/6; ratings those 6 + 4 service, satisfied 4 + 3 = 7/10; judged t0-t3 t5-t8 (t4
    # not yet due), on time t0 t1 t5 t6 t7: 5/8.
    assert figures(everything) == (7, 9, 0.6667, 10, 0.7, 0.625)
    assert everything["feedback_by_kind"] == {"question": 7, "complaint": 1, "asset_lead": 1}
    assert everything["feedback_by_status"] == {"closed": 7, "open": 2}
    # 衡水: u1 u2 u3 u4 u7; t0-t6; rated t0 t1 t2 t5 (3 satisfied); ratings + 3 service
    # (2 satisfied): 5/7; judged t0 t1 t2 t3 t5 t6, on time t0 t1 t5 t6: 4/6.
    assert figures(await compute(court=COURT)) == (5, 7, 0.75, 7, 0.7143, 0.6667)
    assert figures(await compute(court="景县人民法院")) == (2, 2, 0.5, 3, 0.6667, 0.5)
    # zhangwei (A1): u1 u2 u3 u7; t0-t4; rated t0 t1 t2: 2/3; + u1's 1 and u2's 3: 3/5;
    # judged t0-t3, on time t0 t1: 2/4.
    assert figures(await compute(judge="zhangwei")) == (4, 5, 0.6667, 5, 0.6, 0.5)
    assert figures(await compute(judge="lisi")) == (2, 2, 1.0, 2, 1.0, 1.0)
    # November (China time: t1 at 00:30 on the 1st is in, u7 at 23:50 on 31 October out):
    # u1-u6; t1-t8; rated t1 t2 t5 t7 t8: 3/5; ratings given in November: those 5 and
    # 3 service, satisfied t1 t5 t7 u1 u5: 5/8; judged t1 t2 t3 t5 t6 t7 t8, on time
    # t1 t5 t6 t7: 4/7.
    november = {"since": cn(11, 1, 0, 0), "until": cn(12, 1, 0, 0)}
    assert figures(await compute(**november)) == (6, 8, 0.6, 8, 0.625, 0.5714)
    # zhangwei in November: u1 u2 u3; t1-t4; rated t1 t2: 1/2; + u1 u2: 2/4; t1 of t1-t3.
    assert figures(await compute(judge="zhangwei", **november)) == (3, 4, 0.5, 4, 0.5, 0.3333)
    assert figures(await compute(court="没有这个法院")) == (0, 0, None, 0, None, None)

    # The console script, as an operator runs it: 衡水, 1 to 15 November (the 15th included).
    # u1 u2 u4; t1 t2 t3 t5 t6; rated t1 t2 t5: 2/3; ratings t1 t2 t5 and u1's service
    # rating on the 15th: 3/4; on time t1 t5 t6 of 5.
    run = await mst(
        cli_env,
        tmp_path,
        "stats",
        "--json",
        "--court",
        COURT,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-15",
    )
    assert run.code == 0, run.err
    assert figures(json.loads(run.out)) == (3, 5, 0.6667, 4, 0.75, 0.6)
    # The same figures for people: Chinese, and shares as courts write them.
    human = await mst(
        cli_env, tmp_path, "stats", "--court", COURT, "--from", "2026-11-01", "--to", "2026-11-15"
    )
    assert human.code == 0, human.err
    assert human.out.splitlines()[0] == f"{COURT}（2026-11-01 至 2026-11-15）"
    assert "扫码访问：3 人" in human.out and "诉求：5 件" in human.out
    assert "诉求满意率：66.7%（3 件有评价）" in human.out
    assert (
        "全部评价满意率：75.0%" in human.out
        and "按时答复率：60.0%（5 件已到答复期限）" in human.out
    )
    assert "{" not in human.out and "_" not in human.out  # no dicts, no English keys
    run = await mst(cli_env, tmp_path, "stats", "--from", "1 November")
    assert run.code == 2 and "--from/--to must be dates" in run.err


async def test_a_spoken_question_reaches_the_judge_with_its_words_and_its_voice(w: World) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    voice = media_xml(
        LITIGANT, "voice", MediaId="MEDIA_voice_1", Format="amr", Recognition="什么时候开庭"
    )
    assert await w.send(voice) == texts.VOICE_CONFIRM.format(said="什么时候开庭")
    number = number_in(await w.say(LITIGANT, "1"))
    await w.deliver()
    [notice] = w.inbox(JUDGE_WX)
    assert "什么时候开庭" in notice and "（收听语音：http://court.example/media/" in notice
    link = re.search(r"http://court\.example(/media/\S+)）", notice).group(1)  # type: ignore[union-attr]
    w.fake.media["MEDIA_voice_1"] = (b"#!AMR\n...", "audio/amr")
    heard = await w.client.get(link)
    assert heard.status == 200 and heard.content_type == "audio/amr"
    assert f"#{number}" in await w.say(JUDGE_WX, f"#{number}")
