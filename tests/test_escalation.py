"""Every letter answered on time: warnings, escalation through the chain with a clock we
move by hand, the absent judge, team inboxes (claim races), transfers, the digest."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.clock import CHINA_TZ, set_clock
from bot.rules import escalation
from handlers import texts
from storage.models import AuditEvent, Case, Staff, Ticket
from tests.world import JUDGE_WX, LITIGANT, World, ask, bind_judge, verify_litigant

RECEPTION_WX = "oReception000000000000001"
RECEPTION2_WX = "oReception000000000000002"
LEADER_WX = "oLeader00000000000000001"


@pytest.fixture
def clock() -> Any:
    """China time we set by hand: clock.at(2026, 11, 23, 10, 0)."""

    class Clock:
        moment = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA_TZ)  # a Monday, 10:00

        def at(self, *parts: int) -> None:
            self.moment = datetime(*parts, tzinfo=CHINA_TZ)  # type: ignore[misc]

    c = Clock()
    set_clock(lambda: c.moment.astimezone(UTC))
    yield c
    set_clock(None)


async def court_staff(w: World) -> None:
    async with w.deps.db.transaction() as s:
        court_id = (await s.get(Case, w.case["case_id"])).court_id  # type: ignore[union-attr]
        s.add(
            Staff(
                username="liuyang",
                name="刘洋",
                court_id=court_id,
                roles="reception",
                team="集约接待",
            )
        )
        s.add(
            Staff(
                username="sunli", name="孙丽", court_id=court_id, roles="reception", team="集约接待"
            )
        )
        s.add(
            Staff(username="leader", name="院长", court_id=court_id, roles="admin", team="院领导")
        )
        s.add(Staff(username="lisi", name="李四", court_id=court_id, roles="judge", team="民二庭"))
    await bind_judge(w)
    await bind_judge(w, "liuyang", RECEPTION_WX)
    await bind_judge(w, "sunli", RECEPTION2_WX)
    await bind_judge(w, "leader", LEADER_WX)


async def ticket(w: World, number: int) -> Ticket:
    async with w.deps.db.sessions() as s:
        t = await s.get(Ticket, number)
    assert t is not None
    return t


async def tick(w: World) -> dict[str, int]:
    result = await escalation.run(w.deps.db, w.deps.redis, w.deps.rules.escalation)
    await w.deliver()
    return result


async def test_warning_then_escalation_through_the_whole_chain(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "什么时候开庭？")  # Monday 10:00; due Wednesday 17:30
    await w.deliver()
    # 75% of the 1,260 working minutes is 945: Mon 360 + Tue 450 + Wed 135 → Wed 10:45.
    clock.at(2026, 11, 25, 10, 40)
    assert (await tick(w))["warned"] == 0
    clock.at(2026, 11, 25, 10, 46)
    assert (await tick(w))["warned"] == 1
    assert "将于 11月25日 周三 下午5:30 到期" in w.inbox(JUDGE_WX)[-1]
    assert (await tick(w))["warned"] == 0  # once per level

    clock.at(2026, 11, 25, 17, 31)
    assert (await tick(w))["escalated"] == 1
    t = await ticket(w, number)
    assert (t.level, t.assignee_id, t.team) == (1, None, "集约接待")
    assert "现由法院接待人员办理" in w.inbox(LITIGANT)[-1]
    assert f"#{number}" in w.inbox(RECEPTION_WX)[-1] and f"#{number}" in w.inbox(RECEPTION2_WX)[-1]
    assert (await tick(w))["escalated"] == 0  # the new holder has a new allowance
    # Wed 17:31 is after hours: two working days → Friday 17:30.
    assert t.holder_due_at == datetime(2026, 11, 27, 17, 30, tzinfo=CHINA_TZ)
    assert t.due_at == datetime(2026, 11, 25, 17, 30, tzinfo=CHINA_TZ)  # the promise stays

    clock.at(2026, 11, 27, 17, 31)
    assert (await tick(w))["escalated"] == 1
    t = await ticket(w, number)
    assert (t.level, t.team) == (2, "院领导")
    assert f"#{number}" in w.inbox(LEADER_WX)[-1]
    clock.at(2026, 12, 7, 9, 0)
    assert (await tick(w))["escalated"] == 0  # top of the chain: stays on the overdue list

    async with w.deps.db.sessions() as s:
        moves = list(
            (
                await s.execute(
                    select(AuditEvent.action)
                    .where(AuditEvent.subject == f"ticket:{number}")
                    .order_by(AuditEvent.id)
                )
            ).scalars()
        )
    assert moves == ["ticket.opened", "ticket.warned", "ticket.escalated", "ticket.escalated"]
    # The leadership answers; the litigant receives it.
    assert await w.say(
        LEADER_WX, f"#{number} 已督促承办法官，明天答复您。"
    ) == texts.STAFF_ANSWERED.format(ticket=number)


async def test_concurrent_jobs_escalate_each_ticket_once(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await verify_litigant(w)
    numbers = []
    for i in range(3):
        numbers.append(await ask(w, f"问题{i}"))
        await w.say(LITIGANT, "0")  # back to the menu: the next question is a new ticket
    clock.at(2026, 11, 25, 17, 31)
    policy = w.deps.rules.escalation

    async def one_job() -> int:  # bypassing the Redis lock: the database guard alone
        async with w.deps.db.transaction() as s:
            return await escalation.escalate(s, policy)

    results = await asyncio.gather(*(one_job() for _ in range(4)))
    assert sum(results) == 3  # each ticket once, however many jobs ran
    assert [(await ticket(w, n)).level for n in numbers] == [1, 1, 1]
    async with w.deps.db.sessions() as s:
        escalations = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "ticket.escalated")))
            .scalars()
            .all()
        )
    assert len(escalations) == 3


async def test_the_absent_judge(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await verify_litigant(w)
    before = await ask(w, "请假前的问题")
    await w.say(LITIGANT, "0")
    reply = await w.say(JUDGE_WX, "请假 至 11月30日")
    assert "11月30日" in reply
    await w.say(LITIGANT, "1")
    received = await w.say(LITIGANT, "请假后的问题")
    assert "法院接待人员" in received
    after = int(received.split("#", 1)[1].split("。", 1)[0])
    t = await ticket(w, after)
    assert (t.assignee_id, t.team) == (None, "集约接待")
    # The open one from before moves too, after the configured hour.
    clock.at(2026, 11, 23, 10, 30)
    assert (await tick(w))["moved"] == 0
    clock.at(2026, 11, 23, 11, 5)
    assert (await tick(w))["moved"] == 1
    t = await ticket(w, before)
    assert t.team == "集约接待" and t.assignee_id is None
    assert "承办人请假" in await _reasons(w, before)
    assert await w.say(JUDGE_WX, "在岗") == texts.BACK
    await w.say(LITIGANT, "0")
    await w.say(LITIGANT, "1")
    back = await w.say(LITIGANT, "回来后的问题")
    assert "法官张伟" in back


async def _reasons(w: World, number: int) -> list[str]:
    import json

    async with w.deps.db.sessions() as s:
        payloads = (
            await s.execute(
                select(AuditEvent.payload).where(AuditEvent.subject == f"ticket:{number}")
            )
        ).scalars()
        # The reasons as `mst ticket history` names them (the payload keeps a code).
        return [
            texts.move_reason(r.get("reason", ""), r.get("note")) for r in map(json.loads, payloads)
        ]


async def test_claim_race_one_wins_and_transfer_with_reason(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await w.say(JUDGE_WX, "请假 至 11月30日")
    await verify_litigant(w)
    number = await ask(w, "问题")
    answers = await asyncio.gather(
        w.say(RECEPTION_WX, f"#{number} 认领"), w.say(RECEPTION2_WX, f"#{number} 认领")
    )
    assert sorted(a == texts.CLAIMED.format(ticket=number) for a in answers) == [False, True]
    loser = next(a for a in answers if a != texts.CLAIMED.format(ticket=number))
    assert "已经被" in loser and "认领了" in loser
    t = await ticket(w, number)
    assert t.assignee_id is not None
    # A judge outside the team cannot claim it.
    await bind_judge(w, "lisi", "oLisi000000000000000000001")
    assert await w.say(
        "oLisi000000000000000000001", f"#{number} 认领"
    ) == texts.STAFF_NO_TICKET.format(ticket=number)
    # Transfer with a reason; the new holder and the litigant are told.
    holder_wx = RECEPTION_WX if answers[0] == texts.CLAIMED.format(ticket=number) else RECEPTION2_WX
    assert await w.say(
        holder_wx, f"#{number} 转 lisi 涉及民二庭的关联案件"
    ) == texts.TRANSFERRED.format(ticket=number, name="李四")
    await w.deliver()
    assert f"#{number}" in w.inbox("oLisi000000000000000000001")[-1]
    assert "现由法官李四办理" in w.inbox(LITIGANT)[-1]
    assert "涉及民二庭的关联案件" in await _reasons(w, number)
    t = await ticket(w, number)
    assert t.team == "民二庭"


async def test_a_silent_judge_is_treated_as_away_for_that_item(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "问题")
    policy = replace(w.deps.rules.escalation, silent_after=timedelta(hours=4))
    clock.at(2026, 11, 23, 13, 59)
    async with w.deps.db.transaction() as s:
        assert await escalation.off_absent_desks(s, policy) == 0
    clock.at(2026, 11, 23, 14, 1)
    async with w.deps.db.transaction() as s:
        assert await escalation.off_absent_desks(s, policy) == 1
    assert "承办人长时间未答复" in await _reasons(w, number)


async def test_morning_digest_once_a_working_day(world: World, clock: Any) -> None:
    w = world
    await court_staff(w)
    await verify_litigant(w)
    await ask(w, "问题")
    await w.deliver()
    clock.at(2026, 11, 24, 7, 50)
    assert (
        await escalation.morning_digest(w.deps.db, w.deps.redis, w.deps.rules.deadlines) == 0
    )  # before 8:00
    clock.at(2026, 11, 24, 8, 5)
    assert (
        await escalation.morning_digest(w.deps.db, w.deps.redis, w.deps.rules.deadlines) == 1
    )  # the judge has one open item
    assert (
        await escalation.morning_digest(w.deps.db, w.deps.redis, w.deps.rules.deadlines) == 0
    )  # once a day
    await w.deliver()
    assert "您有 1 件待办" in w.inbox(JUDGE_WX)[-1]
    clock.at(2026, 11, 28, 8, 5)  # a Saturday
    assert await escalation.morning_digest(w.deps.db, w.deps.redis, w.deps.rules.deadlines) == 0


async def test_on_time_figures_and_the_overdue_list(world: World, clock: Any) -> None:
    from bot.rules import stats

    w = world
    await court_staff(w)
    await verify_litigant(w)
    answered = await ask(w, "第一个问题")
    await w.say(LITIGANT, "0")
    late = await ask(w, "第二个问题")
    await w.say(LITIGANT, "0")
    clock.at(2026, 11, 24, 9, 0)
    await w.say(JUDGE_WX, f"#{answered} 已答复")  # in time (due Wednesday 17:30)
    await w.say(JUDGE_WX, f"#{answered} 结")
    clock.at(2026, 11, 25, 17, 31)  # the second is now overdue (and escalates)
    await tick(w)
    async with w.deps.db.sessions() as s:
        everything = await stats.compute(s, stats.Scope(), w.deps.rules.deadlines)
        reception = await stats.compute(s, stats.Scope(team="集约接待"), w.deps.rules.deadlines)
    # Reply: 1 of the 2 judged tickets on time. Closing: the closed one is judged (on time),
    # the open one's closing deadline (10 working days) has not come: 1 of 1.
    assert (everything["on_time_rate"], everything["on_time_judged"]) == (0.5, 2)
    assert (everything["close_on_time_rate"], everything["close_on_time_judged"]) == (1.0, 1)
    assert everything["overdue_now"] == 1  # escalated, but still past what was promised
    assert (reception["feedback"], reception["on_time_judged"]) == (1, 1)
    assert (await ticket(w, late)).level == 1


async def test_a_court_sets_its_own_chain_and_warning_share(
    world: World, clock: Any, tmp_path: Any
) -> None:
    import json

    from bot.app.config import ConfigError
    from bot.rules import rulebook
    from tests.conftest import COURT

    w = world
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"courts": {COURT: {"escalation": {"question": ["admin"]}}}, "warn_share": 0.5}),
        encoding="utf-8",
    )
    # What a process started with MST_RULES_FILE holds: its rules, built once.
    w.deps.settings = replace(w.deps.settings, rules_file=rules)
    w.deps.rules = rulebook.of(w.deps.settings)
    policy = w.deps.rules.escalation
    assert policy.chain(COURT, "question") == ["admin"] and policy.warn_share == 0.5
    assert policy.chain("another court", "question") == ["reception", "admin"]
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "问题")
    clock.at(2026, 11, 25, 17, 31)
    await tick(w)
    assert (await ticket(w, number)).team == "院领导"  # straight to the leadership
    rules.write_text(json.dumps({"warn_share": 2}), encoding="utf-8")
    with pytest.raises(ConfigError, match="MST_RULES_FILE"):
        rulebook.of(w.deps.settings)


async def test_ticket_history_away_and_overdue_from_the_command_line(
    world: World, clock: Any, tmp_path: Any, cli_env: dict[str, str]
) -> None:
    import json

    from tests.world import mst_in_process

    w = world
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "问题")
    clock.at(2026, 11, 25, 17, 31)
    await tick(w)  # escalated to reception
    env = cli_env
    history = await mst_in_process(env, tmp_path, "ticket", "history", str(number))
    assert history.code == 0, history.err
    lines = history.out.splitlines()
    assert lines[0].startswith("2026-11-23 10:0") and "提交  当事人王**" in lines[0]
    assert "到期升级  系统 → 集约接待（第1级）" in lines[-1] and "原因：到期未答复" in lines[-1]
    assert "oLitigant" not in history.out and "ticket." not in history.out
    rows = json.loads(
        (await mst_in_process(env, tmp_path, "ticket", "history", str(number), "--json")).out
    )
    assert [r["action"] for r in (rows[0], rows[-1])] == ["ticket.opened", "ticket.escalated"]
    assert rows[-1]["to"] == "集约接待" and rows[-1]["level"] == 1
    assert not any("oLitigant" in json.dumps(r) for r in rows)
    # The real clock is past the promised Wednesday 17:30 of 2026-11-25 only after it;
    # `mst overdue` runs on the real clock, so look at its shape and at an unknown ticket.
    listed = await mst_in_process(env, tmp_path, "overdue", "--json")
    assert listed.code == 0 and isinstance(json.loads(listed.out), list)
    assert (await mst_in_process(env, tmp_path, "ticket", "history", "999")).code == 1
    away = await mst_in_process(env, tmp_path, "away", "zhangwei", "--until", "2026-11-30")
    assert away.code == 0
    async with w.deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert judge.away_until == datetime(2026, 12, 1, 0, 0, tzinfo=CHINA_TZ)
    assert (await mst_in_process(env, tmp_path, "away", "zhangwei", "--back")).code == 0
    assert (await mst_in_process(env, tmp_path, "away", "nobody", "--back")).code == 1


async def test_the_staff_help_example_date_is_always_ahead(world: World, clock: Any) -> None:
    await bind_judge(world)
    clock.at(2027, 3, 1, 9, 0)
    assert "请假 至 3月8日" in await world.say(JUDGE_WX, "怎么用")
    assert await world.say(JUDGE_WX, "请假 到下周") == texts.AWAY_BAD.format(example="3月8日")


async def test_staff_read_what_they_were_given(world: World, clock: Any) -> None:
    """Item 8 of the first-day issue: the words travel with the item, `#n` shows its thread,
    待办 shows what each item says."""
    w = world
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "请问法官，我儿子能替我出庭吗？")
    await w.say(LITIGANT, "他有授权委托书")
    assert "请问法官，我儿子能替我出庭吗？" in await w.say(JUDGE_WX, "待办")
    await w.say(JUDGE_WX, f"#{number} 可以，请带上委托书和身份证。")
    thread = await w.say(JUDGE_WX, f"#{number}")
    assert thread.startswith(f"#{number} 咨询（已答复）")
    lines = thread.splitlines()
    assert lines[1].startswith("1. 11月23日 周一 上午10:00 原告王**：请问法官")
    assert lines[2].endswith("原告王**：他有授权委托书")
    assert lines[3].endswith("法官张伟：可以，请带上委托书和身份证。")
    # Transferred to reception, the new holder gets the litigant's words, not "请尽快处理".
    assert "已转给" in await w.say(JUDGE_WX, f"#{number} 转 刘洋 他在外地开会")
    await w.deliver()
    notice = w.inbox(RECEPTION_WX)[-1]
    assert "请问法官，我儿子能替我出庭吗？" in notice and "请尽快处理" not in notice
    assert notice.startswith(f"转给您的事项（他在外地开会）：\n咨询 #{number}\n")  # not "新咨询"


# -- raised by hand (the console's 上报升级) ---------------------------------------------------


async def _raise(w: World, number: int, username: str, reason: str) -> escalation.Raised:
    async with w.deps.db.transaction() as s:
        t = await s.get_one(Ticket, number)
        by = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
        return await escalation.escalate_now(s, w.deps.rules.escalation, t, by, reason)


async def test_a_staff_member_raises_an_item_up_the_chain_by_hand(world: World, clock: Any) -> None:
    import json

    from bot.rules import history

    w = world
    await court_staff(w)
    await verify_litigant(w)
    number = await ask(w, "什么时候开庭？")  # Monday 10:00, with judge 张伟
    await w.deliver()
    promised = (await ticket(w, number)).due_at
    clock.at(2026, 11, 23, 14, 0)
    raised = await _raise(w, number, "zhangwei", "涉及全院统一排期，请接待中心协调")
    assert raised == escalation.Raised(escalation.Up("reception", 1), "集约接待")
    t = await ticket(w, number)
    assert (t.level, t.assignee_id, t.inbox, t.team) == (1, None, "reception", "集约接待")
    assert t.due_at == promised  # the promise to the litigant stays
    assert t.holder_since == datetime(2026, 11, 23, 14, 0, tzinfo=CHINA_TZ)  # a new allowance
    await w.deliver()
    # Both reception members are told, with the reason; the litigant only who has it now.
    for wx in (RECEPTION_WX, RECEPTION2_WX):
        assert w.inbox(wx)[-1].startswith("转给您的事项（涉及全院统一排期，请接待中心协调）：")
    assert "现由法院接待人员办理" in w.inbox(LITIGANT)[-1]
    assert not any("排期" in m or "协调" in m for m in w.inbox(LITIGANT))
    async with w.deps.db.sessions() as s:
        [event] = (
            await s.execute(
                select(AuditEvent).where(
                    AuditEvent.subject == f"ticket:{number}",
                    AuditEvent.action == "ticket.escalated",
                )
            )
        ).scalars()
        steps = await history.of_ticket(s, await s.get_one(Ticket, number))
    assert event.actor == "staff:zhangwei"
    payload = json.loads(event.payload)
    assert (payload["reason"], payload["note"]) == ("requested", "涉及全院统一排期，请接待中心协调")
    assert (payload["from"]["level"], payload["to"]["level"]) == (0, 1)
    last = steps[-1]
    assert last.by is not None and last.by.username == "zhangwei"
    assert last.to is not None and (last.to.team, last.to.level) == ("集约接待", 1)
    assert (last.reason, last.note) == ("requested", "涉及全院统一排期，请接待中心协调")

    # Reception claims it, then raises it on to the leadership.
    assert await w.say(RECEPTION_WX, f"#{number} 认领") == texts.CLAIMED.format(ticket=number)
    raised = await _raise(w, number, "liuyang", "需要院领导协调")
    assert raised == escalation.Raised(escalation.Up("admin", 2), "院领导")
    await w.deliver()
    assert w.inbox(LEADER_WX)[-1].startswith("转给您的事项（需要院领导协调）：")
    # At the top: nothing further, nothing changed.
    top = await _raise(w, number, "leader", "再往上")
    assert top == escalation.Raised(None, why=escalation.AT_TOP)
    assert (await ticket(w, number)).level == 2
    clock.at(2026, 12, 7, 9, 0)
    assert (await tick(w))["escalated"] == 0  # and the deadline job does not move it either


async def test_raising_goes_past_the_inbox_it_is_in_and_never_to_nobody(
    world: World, clock: Any
) -> None:
    from bot.rules import tickets

    w = world
    await court_staff(w)
    await w.say(JUDGE_WX, "请假 至 11月30日")
    await verify_litigant(w)
    number = await ask(w, "法官不在，我问谁？")
    t = await ticket(w, number)
    assert (t.level, t.inbox) == (0, "reception")  # off the away judge's desk, not raised
    # Reception raises it: to the leadership (level 2), not to reception again.
    assert escalation.next_up(w.deps.rules.escalation, "", t) == escalation.Up("admin", 2)
    stale = await ticket(w, number)
    assert (await _raise(w, number, "liuyang", "请领导定")).up == escalation.Up("admin", 2)
    # A second raise from a page read before the first: the guard refuses it.
    async with w.deps.db.transaction() as s:
        by = (await s.execute(select(Staff).where(Staff.username == "sunli"))).scalar_one()
        late = await escalation.escalate_now(s, w.deps.rules.escalation, stale, by, "我也报")
    assert late == escalation.Raised(None, why=escalation.TAKEN)
    assert (await ticket(w, number)).level == 2

    # A complaint about the judge goes from supervision to the leadership; with no active
    # leader there is no one to take it, and nothing moves.
    async with w.deps.db.transaction() as s:
        case = await s.get_one(Case, w.case["case_id"])
        s.add(Staff(username="watch", name="督查甲", court_id=case.court_id, roles="supervision"))
        binding = await tickets.binding_for(s, LITIGANT, case.id or 0)
        assert binding is not None
        opened = await tickets.open_ticket(
            s,
            case=case,
            binding=binding,
            kind="complaint",
            text="法官态度不好",
            message_id=None,
            deadlines=w.deps.rules.deadlines,
            about="staff",
        )
        complaint = opened.ticket.id or 0
        leader = (await s.execute(select(Staff).where(Staff.username == "leader"))).scalar_one()
        leader.active = False
        s.add(leader)
    nobody = await _raise(w, complaint, "watch", "请院领导处理")
    assert nobody == escalation.Raised(None, why=escalation.NOBODY)
    assert ((await ticket(w, complaint)).level, (await ticket(w, complaint)).inbox) == (
        0,
        "supervision",
    )
    async with w.deps.db.transaction() as s:
        leader = (await s.execute(select(Staff).where(Staff.username == "leader"))).scalar_one()
        leader.active = True
        s.add(leader)
    raised = await _raise(w, complaint, "watch", "请院领导处理")
    assert raised == escalation.Raised(escalation.Up("admin", 1), "院领导")
    await w.deliver()
    assert any(f"#{complaint}" in m for m in w.inbox(LEADER_WX))
    assert not any(f"#{complaint}" in m for m in w.inbox(JUDGE_WX))  # never the one it names
