"""Who sees and touches what: a matrix of every actor × every verb × every kind of item.

Two courts with the same team names (民一庭, 集约接待, 督查室). The expected columns below
are written by hand from the rules (README "Who sees what"), not computed by bot.rules.access.
Staff commands go through the real /wechat callback; a refused command must change nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.core import clock
from bot.core.clock import now
from bot.fakes.wechat.callbacks import event_xml
from bot.outbox import links
from bot.rules import access, attempts, escalation, tickets
from bot.rules.staff import issue_bind_code
from handlers import texts
from handlers.notices import letter_text
from qr import codes
from storage.models import AuditEvent, Binding, Case, Court, Outbox, Party, Staff, Ticket
from tests.conftest import COURT
from tests.world import JUDGE_WX, LITIGANT, World, ask, bind_judge, verify_litigant

COURT2 = "衡水市冀州区人民法院"
LIT = "oLitigant0000000000000009"


@contextlib.contextmanager
def frozen_at(moment: datetime) -> Iterator[None]:
    clock.set_clock(lambda: moment)
    yield
    clock.set_clock(None)


@dataclass(frozen=True)
class Actor:
    username: str
    name: str
    court: int  # 1 or 2
    roles: str
    team: str | None
    supports: str | None = None

    @property
    def wx(self) -> str:
        return f"oWx{self.username:0<21}"[:24]


ACTORS = [
    Actor(
        "zhangwei", "张伟", 1, "judge", "民一庭"
    ),  # the question's judge; the complaint names him
    Actor(
        "lina", "李娜", 1, "judge", "民一庭"
    ),  # his teammate; away, so her case went to reception
    Actor("zhaoliu", "赵六", 1, "judge", "民二庭"),
    Actor("wangzl", "王助理", 1, "assistant", "民一庭", "zhangwei"),
    Actor("chenshu", "陈书记", 1, "clerk", "民一庭", "zhangwei"),
    Actor("liuting", "刘庭长", 1, "judge,leader", "民一庭"),
    Actor("zhengzx", "郑执行", 1, "enforcement", "执行局"),
    Actor("qianjd", "钱接待", 1, "reception", "集约接待"),
    Actor("sundc", "孙督查", 1, "supervision", "督查室"),
    Actor("sundc2", "孙督查二", 1, "supervision", "督查室"),
    Actor("zhoulead", "周院长", 1, "admin", "院领导"),
    Actor("c2judge", "张伟", 2, "judge", "民一庭"),  # same name and team, other court
    Actor("c2assist", "王助理", 2, "assistant", "民一庭", "zhangwei"),  # a same-named judge
    Actor("c2leader", "刘庭长", 2, "judge,leader", "民一庭"),
    Actor("c2recept", "钱接待", 2, "reception", "集约接待"),
    Actor("c2super", "孙督查", 2, "supervision", "督查室"),
    Actor("c2lead", "周院长", 2, "admin", "院领导"),
]
BY = {a.username: a for a in ACTORS}
ITEMS = ["question", "complaint_judge", "complaint_process", "asset_lead", "away_routed"]

# --- the expected columns, by hand -------------------------------------------------------
# Who finds the item in 待办 (and the morning digest).
SEES = {
    "question": {"zhangwei", "wangzl", "chenshu", "liuting"},
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": {"zhengzx"},
    "away_routed": {"qianjd"},
}
# Who may answer and close it.
HANDLES = {
    "question": {"zhangwei", "wangzl", "chenshu"},
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": {"zhengzx"},
    "away_routed": {"qianjd"},
}
# Who may claim it (team inboxes only, while unclaimed).
CLAIMS = {
    "question": set(),
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": set(),
    "away_routed": {"qianjd"},
}
# Who may transfer it to the item's proper next holder (TRANSFER_TO): holders, inbox
# members, the division leader; never supporters, teammates or another court.
TRANSFERS = {
    "question": {"zhangwei", "liuting"},
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": {"zhengzx"},
    "away_routed": {"qianjd"},
}
TRANSFER_TO = {
    "question": "zhaoliu",
    "complaint_judge": "zhoulead",  # up the chain
    "complaint_process": "zhoulead",
    "asset_lead": "zhaoliu",
    "away_routed": "zhaoliu",
}
# Who may raise it one level up the court's chain (the console's 上报升级): those who may
# move it (TRANSFERS), and where it then goes: a question or asset lead from its judge or
# officer to reception, a complaint from supervision to the leadership, the away judge's
# item, already in reception, on to the leadership (level 2).
ESCALATES = {
    "question": {"zhangwei", "liuting"},
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": {"zhengzx"},
    "away_routed": {"qianjd"},
}
ESCALATE_TO = {
    "question": ("reception", 1),
    "complaint_judge": ("admin", 1),
    "complaint_process": ("admin", 1),
    "asset_lead": ("reception", 1),
    "away_routed": ("admin", 2),
}
# Targets nobody may move the item to: the complaint's subject or a judge (out of
# supervision), and a same-named person of the other court.
BAD_TARGETS = {
    "question": ["c2judge"],
    "complaint_judge": ["zhangwei", "lina", "c2super"],
    "complaint_process": ["lina", "c2super"],
    "asset_lead": ["c2judge"],
    "away_routed": ["c2recept"],
}
# Who is told when the litigant adds a line to it.
TOLD = {
    "question": {"zhangwei", "wangzl", "chenshu"},
    "complaint_judge": {"sundc", "sundc2"},
    "complaint_process": {"sundc", "sundc2"},
    "asset_lead": {"zhengzx"},
    "away_routed": {"qianjd"},
}
VERBS = ["待办", "answer", "close", "claim", "transfer", "bad transfer", "follow-up", "digest"]


@dataclass
class Setup:
    items: dict[str, int]
    staff: dict[str, int]


async def two_courts(w: World) -> Setup:
    """The actors, bound; a civil case (judge 张伟), an enforcement case (郑执行), a case of
    李娜's, who is away; the litigant verified for all three; one item of each kind."""
    async with w.deps.db.transaction() as s:
        court1 = (await s.execute(select(Court).where(Court.name == COURT))).scalar_one()
        court2 = Court(name=COURT2)
        s.add(court2)
        await s.flush()
        courts = {1: court1.id, 2: court2.id}
        await s.execute(update(Staff).where(Staff.username == "zhangwei").values(openid=None))
        staff: dict[str, Staff] = {}
        for a in ACTORS:
            found = (
                await s.execute(select(Staff).where(Staff.username == a.username))
            ).scalar_one_or_none()
            member = found or Staff(username=a.username, name=a.name, court_id=0, roles="")
            member.name, member.court_id, member.roles = a.name, courts[a.court], a.roles
            member.team, member.supports, member.openid = a.team, a.supports, a.wx
            s.add(member)
            await s.flush()
            staff[a.username] = member
        staff["lina"].away_until = now() + timedelta(days=3)
        civil = await s.get_one(Case, w.case["case_id"])
        enforcement = Case(
            court_id=court1.id,
            case_number="(2026)冀1102执345号",
            case_type="执行",
            judge_id=staff["zhengzx"].id,
        )
        other = Case(
            court_id=court1.id,
            case_number="(2026)冀1102民初999号",
            case_type="民事",
            judge_id=staff["lina"].id,
        )
        s.add_all([enforcement, other])
        await s.flush()
        bindings = {}
        for case in (civil, enforcement, other):
            party = Party(
                case_id=case.id or 0,
                role="申请人",
                name="王某某",
                phone_tail="1234",
                phone_masked="138****1234",
                phone_hash=f"h{case.id}",
            )
            s.add(party)
            await s.flush()
            binding = Binding(
                openid=LIT, case_id=case.id or 0, party_id=party.id or 0, method="phone_tail"
            )
            s.add(binding)
            await s.flush()
            bindings[case.id] = (case, binding)

        async def item(case: Case, kind: str, about: str | None = None) -> int:
            c, b = bindings[case.id]
            opened = await tickets.open_ticket(
                s,
                case=c,
                binding=b,
                kind=kind,
                text="请问法官什么时候开庭",
                message_id=None,
                deadlines=w.deps.rules.deadlines,
                about=about,
            )
            return opened.ticket.id or 0

        items = {
            "question": await item(civil, "question"),
            "complaint_judge": await item(civil, "complaint", "staff"),
            "complaint_process": await item(civil, "complaint", "process"),
            "asset_lead": await item(enforcement, "asset_lead"),
            "away_routed": await item(other, "question"),
        }
    return Setup(items, {k: v.id or 0 for k, v in staff.items()})


async def snapshot(w: World, number: int) -> dict[str, Any]:
    async with w.deps.db.sessions() as s:
        t = await s.get_one(Ticket, number)
        sent = (await s.execute(select(func.count()).select_from(Outbox))).scalar_one()
    return {
        "status": t.status,
        "assignee_id": t.assignee_id,
        "team": t.team,
        "inbox": t.inbox,
        "level": t.level,
        "first_reply_at": t.first_reply_at,
        "outbox": sent,
    }


async def restore(w: World, number: int, before: dict[str, Any]) -> None:
    """Put the ticket back as it was, so the next actor meets the same item."""
    values = {k: v for k, v in before.items() if k != "outbox"}
    async with w.deps.db.transaction() as s:
        await s.execute(update(Ticket).where(Ticket.id == number).values(**values))


def command(verb: str, number: int, item: str) -> str:
    return {
        "answer": f"#{number} 您好，下周一开庭。",
        "close": f"#{number} 结",
        "claim": f"#{number} 认领",
        "transfer": f"#{number} 转 {BY[TRANSFER_TO[item]].username} 请协助",
    }[verb]


def expected(verb: str, item: str) -> set[str]:
    return {"answer": HANDLES, "close": HANDLES, "claim": CLAIMS, "transfer": TRANSFERS}[verb][item]


@pytest.mark.parametrize("item", ITEMS)
@pytest.mark.parametrize("verb", ["answer", "close", "claim", "transfer"])
async def test_every_actor_acts_only_on_what_is_theirs(world: World, item: str, verb: str) -> None:
    w = world
    setup = await two_courts(w)
    number = setup.items[item]
    allowed = expected(verb, item)
    for actor in ACTORS:
        before = await snapshot(w, number)
        reply = await w.say(actor.wx, command(verb, number, item))
        after = await snapshot(w, number)
        cell = f"{actor.username} {verb} {item}: {reply!r}"
        if actor.username in allowed:
            assert after != before, cell
            assert reply in (
                texts.STAFF_ANSWERED.format(ticket=number),
                texts.STAFF_CLOSED.format(ticket=number),
                texts.CLAIMED.format(ticket=number),
                texts.TRANSFERRED.format(ticket=number, name=BY[TRANSFER_TO[item]].name),
            ), cell
            await restore(w, number, before)
        else:
            assert after == before, cell  # nothing changed, nobody was told anything
            assert "已将您的答复" not in reply and "已办结" not in reply, cell
            assert "已由您认领" not in reply and "已转给" not in reply, cell
            if actor.username not in SEES[item]:
                # Not theirs to see: the same words as for a number that does not exist.
                assert reply == texts.STAFF_NO_TICKET.format(ticket=number), cell


@pytest.mark.parametrize("item", ITEMS)
async def test_nobody_moves_an_item_where_it_would_be_lost(world: World, item: str) -> None:
    w = world
    setup = await two_courts(w)
    number = setup.items[item]
    for target in BAD_TARGETS[item]:
        for actor in ACTORS:
            before = await snapshot(w, number)
            name = BY[target].name if BY[target].court == 1 else BY[target].username
            reply = await w.say(actor.wx, f"#{number} 转 {name} 试试")
            assert await snapshot(w, number) == before, f"{actor.username} → {target}: {reply}"
            assert "已转给" not in reply


async def test_listings_digests_and_follow_ups_reach_exactly_the_right_people(
    world: World,
) -> None:
    w = world
    setup = await two_courts(w)
    for actor in ACTORS:
        todo = await w.say(actor.wx, "待办")
        for item, number in setup.items.items():
            listed = f"#{number} " in todo
            assert listed == (actor.username in SEES[item]), f"{actor.username} 待办 {item}"

    # The morning digest (a working day, after 8:00) lists the same.
    async with w.deps.db.transaction() as s:
        await s.execute(update(Outbox).values(status="sent"))
    assert await escalation.morning_digest(w.deps.db, w.deps.redis, w.deps.rules.deadlines) > 0
    async with w.deps.db.sessions() as s:
        digests = {
            row.recipient: letter_text(json.loads(row.payload))[1]
            for row in (await s.execute(select(Outbox).where(Outbox.status == "pending"))).scalars()
        }
    for actor in ACTORS:
        digest = digests.get(actor.wx, "")
        for item, number in setup.items.items():
            listed = f"#{number} " in digest
            assert listed == (actor.username in SEES[item]), f"{actor.username} digest {item}"

    # A line the litigant adds reaches the holders (with its text) and nobody else.
    async with w.deps.db.transaction() as s:
        await s.execute(update(Outbox).values(status="sent"))
        for item, number in setup.items.items():
            t = await s.get_one(Ticket, number)
            await tickets.add_to_ticket(s, t, await s.get_one(Case, t.case_id), f"补充{item}", None)
    async with w.deps.db.sessions() as s:
        rows = (await s.execute(select(Outbox).where(Outbox.status == "pending"))).scalars().all()
    for item in ITEMS:
        told = {
            a.username
            for a in ACTORS
            for r in rows
            if r.recipient == a.wx and f"补充{item}" in letter_text(json.loads(r.payload))[1]
        }
        assert told == TOLD[item], item


async def test_a_notice_link_opens_only_its_own_message(world: World) -> None:
    w = world
    setup = await two_courts(w)
    async with w.deps.db.sessions() as s:
        rows = (await s.execute(select(Outbox).order_by(Outbox.id))).scalars().all()
    secret, base = w.deps.settings.secret_key, ""
    assert len(rows) >= 2 and setup.items
    own = links.reply_link(base, secret, rows[0])
    assert (await w.client.get(own)).status == 200
    # Its signature on another row's id: refused, whoever holds it.
    forged = own.replace(f"/m/{rows[0].id}?", f"/m/{rows[1].id}?")
    assert (await w.client.get(forged)).status == 403
    for bad in ("2147483648", "99999999999999999999", "0", "-1", "１２"):
        assert (await w.client.get(f"/m/{bad}?e=1&s=x")).status == 404, bad


async def test_who_may_raise_an_item_and_where_it_goes(world: World) -> None:
    """The escalation rule the console's button calls, for every actor and item of the two
    courts: allowed exactly as ESCALATES says, and landing where ESCALATE_TO says."""
    w = world
    setup = await two_courts(w)
    async with w.deps.db.sessions() as s:
        for item in ITEMS:
            t = await s.get_one(Ticket, setup.items[item])
            for actor in ACTORS:
                member = await s.get_one(Staff, setup.staff[actor.username])
                may = escalation.may_escalate(await access.viewer(s, member), t)
                assert may == (actor.username in ESCALATES[item]), f"{actor.username} {item}"
            where = await escalation.escalation_target(s, w.deps.rules.escalation, t)
            assert where.up is not None, item
            assert (where.up.role, where.up.level) == ESCALATE_TO[item], item
            closed = t.model_copy(update={"status": "closed"})
            holder = await s.get_one(Staff, setup.staff[next(iter(ESCALATES[item]))])
            assert not escalation.may_escalate(await access.viewer(s, holder), closed), item


def test_the_rules_as_sql_match_the_rules_in_python() -> None:
    """The relations themselves, on plain objects: a supporter only through `supports`
    resolved to ids, a leader by team, nobody across courts."""
    judge = Staff(id=1, username="zhangwei", name="张伟", court_id=1, roles="judge", team="民一庭")
    helper = Staff(id=2, username="wangzl", name="王", court_id=1, roles="assistant", team="民一庭")
    leader = Staff(id=3, username="liu", name="刘", court_id=1, roles="leader", team="民一庭")
    question = Ticket(
        id=9, case_id=1, court_id=1, kind="question", openid="x", assignee_id=1, team="民一庭"
    )
    assert access.relation(access.Viewer(judge), question) == "holder"
    assert access.relation(access.Viewer(helper, frozenset({1})), question) == "supporter"
    assert access.relation(access.Viewer(helper), question) is None
    assert access.relation(access.Viewer(leader), question) == "leader"
    other_court = Ticket(
        id=9, case_id=1, court_id=2, kind="question", openid="x", assignee_id=1, team="民一庭"
    )
    assert access.relation(access.Viewer(judge), other_court) is None


# -- guessing -----------------------------------------------------------------------------


_scans = itertools.count(int(time.time()))


async def _scan(w: World, openid: str, token: str) -> None:
    # Each scan its own CreateTime: WeChat's retries of an event share FromUserName+CreateTime.
    reply = await w.send(event_xml(openid, "SCAN", token, at=next(_scans)))
    assert texts.ASK_DIGITS in reply


async def test_many_new_accounts_get_ten_guesses_per_case_per_hour_in_all(world: World) -> None:
    """63 fresh openids once enumerated a case's digits in 11 s. Now the case pauses after
    10 wrong tries from everyone together, the court is told once, and neither a Redis
    restart nor a new account brings fresh guesses; the hour over, it opens again."""
    w = world
    async with w.deps.db.transaction() as s:
        court_id = (await s.get_one(Case, w.case["case_id"])).court_id
        s.add(
            Staff(username="qian", name="钱", court_id=court_id, roles="reception", openid="oRec")
        )
    guesses = 0
    for n in range(attempts.VERIFY_PER_CASE):
        attacker = f"oAttacker{n:016d}"
        await _scan(w, attacker, w.case["token"])
        reply = await w.say(attacker, f"{n:04d}")
        guesses += 1
        if n < attempts.VERIFY_PER_CASE - 1:
            assert "号码不对" in reply, reply
    assert reply == texts.CASE_PAUSED.format(desk=f"{COURT}诉讼服务中心")
    await w.deps.redis.flushdb()  # a Redis restart with persistence off
    fresh = "oAttackerFresh0000000001"
    await _scan(w, fresh, w.case["token"])
    assert await w.say(fresh, "1234") == texts.CASE_PAUSED.format(
        desk=f"{COURT}诉讼服务中心"
    )  # right digits too
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Binding))).first() is None
        notices = [r for r in (await s.execute(select(Outbox))).scalars() if r.recipient == "oRec"]
    assert len(notices) == 1 and "安全提醒" in notices[0].payload
    assert guesses == attempts.VERIFY_PER_CASE == 10
    with frozen_at(now() + attempts.WINDOW + timedelta(minutes=1)):
        await _scan(w, "oOwner000000000000000001", w.case["token"])
        assert "验证成功" in await w.say("oOwner000000000000000001", "1234")


async def test_one_account_cannot_spread_its_guesses_over_many_cases(world: World) -> None:
    w = world
    tokens = []
    async with w.deps.db.transaction() as s:
        first = await s.get_one(Case, w.case["case_id"])
        for i in range(3):
            case = Case(
                court_id=first.court_id, case_number=f"(2026)冀1102民初{i + 50}号", case_type="民事"
            )
            s.add(case)
            await s.flush()
            s.add(
                Party(
                    case_id=case.id or 0,
                    role="原告",
                    name="某",
                    phone_tail="4321",
                    phone_masked="x",
                    phone_hash=f"p{i}",
                )
            )
            tokens.append((await codes.issue(s, case, actor="test")).token)
    attacker = "oSpreader000000000000001"
    for i in range(attempts.VERIFY_PER_PERSON):
        token = tokens[i % 3] if i < 9 else w.case["token"]
        await _scan(w, attacker, token)
        reply = await w.say(attacker, "0000")
    assert reply == texts.LOCKED.format(desk=f"{COURT}诉讼服务中心")
    await w.deps.redis.flushdb()
    await _scan(w, attacker, w.case["token"])
    assert await w.say(attacker, "1234") == texts.LOCKED.format(
        desk=f"{COURT}诉讼服务中心"
    )  # right digits, wrong hour


async def test_bind_codes_lock_out_and_failures_are_recorded_compactly(world: World) -> None:
    w = world
    guesser = "oGuesser0000000000000001"
    for _ in range(attempts.BIND_PER_PERSON):
        assert await w.say(guesser, "ABCD2345") == texts.BIND_CODE_BAD
    async with w.deps.db.transaction() as s:
        judge = await s.get_one(Staff, w.case["judge_id"])
        code = await issue_bind_code(s, judge, actor="test")
    await w.deps.redis.flushdb()
    assert await w.say(guesser, code) == texts.BIND_PAUSED  # even the right code, for an hour
    async with w.deps.db.sessions() as s:
        events = [
            e.action
            for e in (await s.execute(select(AuditEvent))).scalars()
            if e.actor == guesser and e.action.startswith("staff.")
        ]
    assert events == ["staff.bind_locked"]  # not one event per wrong try
    assert "绑定成功" in await w.say(JUDGE_WX, code)  # the judge himself is not locked out


async def test_a_judge_answering_fast_is_never_silently_dropped(world: World) -> None:
    """35 rapid answers once lost 6 to the litigants' 30/min limit behind a 'received'."""
    w = world
    w.deps.settings = replace(w.deps.settings, staff_rate_per_minute=40)
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "问题")
    for i in range(35):
        assert await w.say(JUDGE_WX, f"#{number} 第{i}条答复") == texts.STAFF_ANSWERED.format(
            ticket=number
        )
    # The bind code was his first message this minute; the 41st is over his limit of 40.
    over = [await w.say(JUDGE_WX, f"#{number} 第{i}条答复") for i in range(35, 41)]
    assert over[:4] == [texts.STAFF_ANSWERED.format(ticket=number)] * 4
    assert over[4:] == [
        texts.STAFF_TOO_FAST.format(text=f"#{number} 第{i}条答复") for i in (39, 40)
    ]
    async with w.deps.db.sessions() as s:
        answers = [
            letter_text(json.loads(r.payload))[1]
            for r in (await s.execute(select(Outbox).order_by(Outbox.id))).scalars()
            if r.recipient == LITIGANT
        ]
    assert [a for a in answers if "条答复" in a] == [
        f"法官张伟回复 #{number}：第{i}条答复" for i in range(39)
    ]
