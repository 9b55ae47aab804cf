"""The service desk (陪诉访导, bot.rules.desk), end to end over HTTP on both backends: an
assistant helps a person with no WeChat ask the judge; the judge's answer reaches the desk
(the assistant is told, the slip prints it); every event names the assistant, the party
and the consent; nobody acts without an open session of their own; the person later binds
their own WeChat and finds the item theirs. Then the same from the assistant's own WeChat
(`代办`), and a party who has WeChat hearing the answer on their phone."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.channels.webconsole import desk_words
from bot.core.addresses import desk_user
from bot.core.events import Inbound
from bot.dialog import dispatch, forms
from bot.fakes.wechat.callbacks import event_xml
from bot.rules import desk, portal
from handlers import texts
from storage.models import (
    AuditEvent,
    Binding,
    Court,
    DeskSession,
    FailedAttempt,
    Message,
    Party,
    Staff,
    Ticket,
)
from tests.conftest import CASE_NUMBER
from tests.test_webconsole import Browser, csrf_of, session_for
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge, mst_in_process

ZHAO_WX = "oZhaoMin00000000000000001"
QUESTION = "我年纪大了不会用手机，想问一下什么时候开庭？"
ANSWER = "您好，开庭时间定在12月15日上午9点，请带身份证到第三法庭。"


async def add_assistants(w: World) -> None:
    async with w.deps.db.transaction() as s:
        judge = await s.get_one(Staff, w.case["judge_id"])
        court = await s.get_one(Court, judge.court_id)
        court.phone = "0318-2100000"
        s.add(court)
        for username, name, roles in (
            ("zhaomin", "赵敏", "assistant"),
            ("qianli", "钱丽", "reception"),
            ("sunjie", "孙杰", "judge"),
        ):
            s.add(Staff(username=username, name=name, court_id=judge.court_id, roles=roles))


async def party_id(w: World, role: str = "原告") -> int:
    async with w.deps.db.sessions() as s:
        found = await s.execute(
            select(Party.id).where(Party.case_id == w.case["case_id"], Party.role == role)
        )
        return int(found.scalar_one())


async def start_at_console(
    w: World, browser: Browser, pid: int, *, digits: str = "1234", consent: bool = True
) -> str:
    page = await browser.get(f"/console/desk?case={CASE_NUMBER}")
    assert page.status == 200 and "王**" in page.text and "王某某" not in page.text
    form = {"csrf": csrf_of(page.text), "case": CASE_NUMBER, "party": str(pid), "digits": digits}
    form |= {"id_checked": "1"} | ({"consent": "1"} if consent else {})
    done = await browser.post("/console/desk/start", form)
    assert done.status == 200
    return done.text


async def post(browser: Browser, path: str, **fields: str) -> str:
    page = await browser.get("/console/desk")
    done = await browser.post(path, {"csrf": csrf_of(page.text), **fields})
    assert done.status == 200, done.text
    return done.text


async def count(w: World, model: Any) -> int:
    async with w.deps.db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def case_events(w: World) -> list[AuditEvent]:
    async with w.deps.db.sessions() as s:
        rows = await s.execute(
            select(AuditEvent)
            .where(AuditEvent.case_id == w.case["case_id"])
            .order_by(AuditEvent.chain, AuditEvent.seq)
        )
        return list(rows.scalars())


async def test_an_assistant_asks_for_a_person_without_wechat_and_the_answer_reaches_the_desk(
    world: World, frozen_clock: list[datetime], cli_env: dict[str, str], tmp_path: Any
) -> None:
    w = world
    await add_assistants(w)
    await bind_judge(w)
    await bind_judge(w, "zhaomin", ZHAO_WX)
    pid = await party_id(w)
    browser = await session_for(w, "zhaomin")

    page = await start_at_console(w, browser, pid)
    assert desk_words.STARTED in page and "正在代办：原告 王**" in page
    async with w.deps.db.sessions() as s:
        [opened] = (await s.execute(select(DeskSession))).scalars().all()
    assert opened.user == desk_user(pid) and opened.consent == desk.CONSENT_STATEMENT
    assert opened.via == "console" and opened.ended_at is None

    page = await post(browser, "/console/desk/ask", text=QUESTION)
    number = int(re.search(r"#(\d+)", page).group(1))  # type: ignore[union-attr]
    async with w.deps.db.sessions() as s:
        ticket = await s.get_one(Ticket, number)
        zhao = (await s.execute(select(Staff).where(Staff.username == "zhaomin"))).scalar_one()
    assert ticket.openid == desk_user(pid) and ticket.party_id == pid
    assert ticket.assisted_by_id == zhao.id
    assert "由工作人员赵敏代为提交" in page  # the party's items on the desk page

    # The judge hears of it as of any question, and answers in chat.
    await w.deliver()
    assert any(QUESTION[:10] in said for said in w.inbox(JUDGE_WX))
    frozen_clock[0] += timedelta(minutes=20)
    assert await w.say(JUDGE_WX, f"#{number} {ANSWER}") == texts.STAFF_ANSWERED.format(
        ticket=number
    )
    await w.deliver()  # to the desk: kept, and the assistant told in her own WeChat
    await w.deliver()
    told = w.inbox(ZHAO_WX)
    assert told[-1] == texts.DESK_ANSWER_KEPT.format(name="王**", kind="咨询", ticket=number)
    assert not any(ANSWER in said for said in told)  # the answer itself is the party's

    page = (await browser.get("/console/desk")).text
    kept = re.search(r'href="(/slip/\d+\?[^"]+)"', page)  # on the console's own host
    assert kept is not None, page
    slip_url = kept.group(1).replace("&amp;", "&")
    path = slip_url[slip_url.index("/slip/") :]
    slip = await w.client.get(path)
    body = await slip.text()
    assert slip.status == 200, body
    for seen in (QUESTION, ANSWER, f"#{number}", "由工作人员赵敏代为提交", "0318-2100000"):
        assert seen in body, seen
    assert 'src="data:image/svg+xml;base64,' in body  # the receipt's QR code
    assert "王某某" not in body
    assert "default-src 'self'" in slip.headers["Content-Security-Policy"]
    assert (await w.client.get(path.replace("s=", "s=0"))).status == 403  # a changed link

    # Every event the session wrote names the assistant, the party and the consent.
    consent = f"desk_session:{opened.id}"
    acted = [e for e in await case_events(w) if json.loads(e.payload).get("consent") == consent]
    actions = {e.action for e in acted}
    assert {"bind.verified", "desk.started", "message.in", "ticket.opened"} <= actions
    for e in acted:
        payload = json.loads(e.payload)
        assert payload["on_behalf_of"] == desk_user(pid), e.action
        assert e.actor in ("staff:zhaomin", "bot", "system"), (e.action, e.actor)
        if e.action in ("message.in", "ticket.opened", "bind.verified", "desk.started"):
            assert e.actor == "staff:zhaomin", e.action

    run = await mst_in_process(
        cli_env, tmp_path, "audit", "export", "--case", CASE_NUMBER, "--format", "json"
    )
    assert run.code == 0, run.err
    exported = json.loads(run.out)
    by_assistant = [e for e in exported["events"] if "（代原告王**）" in e["who"]["label"]]
    assert {e["action"] for e in by_assistant} >= {"message.in", "ticket.opened"}
    assert all(e["payload"]["consent"] == consent for e in by_assistant)

    # Ending it: nothing more can be done in that session.
    page = await post(browser, "/console/desk/end")
    assert desk_words.ENDED in page
    before = await count(w, Message)
    with pytest.raises(dispatch.DeskClosed):
        await forms.at_desk(
            w.deps, desk=opened.id or 0, staff="zhaomin", user=desk_user(pid), text="1"
        )
    assert await count(w, Message) == before
    assert desk_words.NOT_OPEN in await post(browser, "/console/desk/say", text="1")

    # Later the person binds their own WeChat: the item is theirs, with who helped.
    greeting = await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    assert texts.ASK_DIGITS in greeting
    assert "验证成功" in await w.say(LITIGANT, "1234")
    mine = await w.say(LITIGANT, "我的诉求")
    assert f"#{number} 咨询" in mine and "由工作人员赵敏代为提交" in mine
    async with w.deps.db.sessions() as s:
        assert (await s.get_one(Ticket, number)).openid == LITIGANT
        # The apps read the same (the mini-program's `submitted_by`, the H5 item page).
        [view] = await portal.items(s, LITIGANT)
        assert view.ticket.id == number and view.helper == "赵敏"
    # ...and the court's next word on it reaches their phone.
    assert await w.say(JUDGE_WX, f"#{number} 已为您登记。") == texts.STAFF_ANSWERED.format(
        ticket=number
    )
    assert any("已为您登记" in said for said in await w.delivered_to(LITIGANT))


async def test_nobody_acts_without_consent_the_right_digits_or_a_session_of_their_own(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await add_assistants(w)
    pid = await party_id(w)
    zhao, qian = await session_for(w, "zhaomin"), await session_for(w, "qianli")

    page = await start_at_console(w, zhao, pid, consent=False)
    assert texts.DESK_NO_CONSENT in page
    page = await start_at_console(w, zhao, pid, digits="0000")
    assert texts.DESK_DIGITS_WRONG in page
    assert await count(w, DeskSession) == 0
    async with w.deps.db.sessions() as s:
        tries = (await s.execute(select(FailedAttempt))).scalars().all()
        assert [(t.kind, t.openid) for t in tries] == [("verify", "staff:zhaomin")]
        assert (await s.execute(select(Binding))).first() is None

    # A judge is no desk assistant: the page is not theirs.
    judge = await session_for(w, "sunjie")
    assert (await judge.get("/console/desk")).status == 403

    await start_at_console(w, zhao, pid)
    async with w.deps.db.sessions() as s:
        [opened] = (await s.execute(select(DeskSession))).scalars().all()

    # A second assistant cannot take the same person over, nor act in Zhao's session.
    page = await start_at_console(w, qian, pid)
    assert texts.desk_refused("taken", "赵敏") in page
    assert desk_words.NOT_OPEN in await post(qian, "/console/desk/say", text="1")
    before = (await count(w, Message), await count(w, AuditEvent))
    with pytest.raises(dispatch.DeskClosed):
        await forms.at_desk(w.deps, desk=opened.id or 0, staff="qianli", user=opened.user, text="1")
    with pytest.raises(dispatch.DeskClosed):  # nor for another person in Zhao's session
        await forms.at_desk(
            w.deps, desk=opened.id or 0, staff="zhaomin", user=desk_user(pid + 1), text="1"
        )
    assert (await count(w, Message), await count(w, AuditEvent)) == before

    # One person at a time per assistant.
    page = await start_at_console(w, zhao, await party_id(w, "被告"))
    assert "正在代办：原告 王**" in page  # still on the first: the form is not even offered

    # The party's session sees this case only: another case's code is refused.
    reply = await forms.at_desk(
        w.deps, desk=opened.id or 0, staff="zhaomin", user=opened.user, text=w.case["short_code"]
    )
    assert reply is not None and reply.text == texts.DESK_ONE_CASE

    # 30 idle minutes end it: the next turn is refused and nothing is stored.
    frozen_clock[0] += desk.IDLE + timedelta(minutes=1)
    zhao, qian = await session_for(w, "zhaomin"), await session_for(w, "qianli")  # signed out
    before = (await count(w, Message), await count(w, Ticket))
    page = await post(zhao, "/console/desk/say", text="1")
    assert desk_words.NOT_OPEN in page
    with pytest.raises(dispatch.DeskClosed):
        await forms.at_desk(
            w.deps, desk=opened.id or 0, staff="zhaomin", user=opened.user, text="1"
        )
    assert (await count(w, Message), await count(w, Ticket)) == before
    async with w.deps.db.sessions() as s:
        ended = await s.get_one(DeskSession, opened.id)
    assert ended.end_reason == "idle"
    # Now the other assistant may help that person.
    assert desk_words.STARTED in await start_at_console(w, qian, pid)


async def test_the_assistant_helps_from_their_own_wechat(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await add_assistants(w)
    await bind_judge(w)
    await bind_judge(w, "zhaomin", ZHAO_WX)
    await bind_judge(w, "sunjie", "oSunJie00000000000000001")

    assert await w.say("oSunJie00000000000000001", "代办") == texts.DESK_NOT_ALLOWED
    assert await w.say(ZHAO_WX, "代办") == texts.DESK_SCAN
    listing = await w.send(event_xml(ZHAO_WX, "SCAN", w.case["token"], at=1))
    assert "1 原告 王**" in listing and "2 被告 李*" in listing
    assert await w.say(ZHAO_WX, "1") == texts.DESK_DIGITS
    assert await w.say(ZHAO_WX, "9999") == texts.DESK_CONSENT.format(
        statement=desk.CONSENT_STATEMENT
    )
    assert await w.say(ZHAO_WX, "1") == texts.DESK_DIGITS_WRONG  # checked at the end
    assert await w.say(ZHAO_WX, "1234") == texts.DESK_CONSENT.format(
        statement=desk.CONSENT_STATEMENT
    )
    opened = await w.say(ZHAO_WX, "1")
    assert opened.startswith("已开始为原告王**代办") and CASE_NUMBER in opened

    # Now her messages are the party's: the chat's own menu and question flow.
    assert await w.say(ZHAO_WX, "1") == texts.ASK_PROMPT
    reply = await w.say(ZHAO_WX, QUESTION)
    number = int(re.search(r"#(\d+)", reply).group(1))  # type: ignore[union-attr]
    async with w.deps.db.sessions() as s:
        ticket = await s.get_one(Ticket, number)
        said = (await s.execute(select(Message).where(Message.content == QUESTION))).scalar_one()
    pid = await party_id(w)
    assert ticket.openid == desk_user(pid) and ticket.assisted_by_id is not None
    assert said.openid == desk_user(pid) and said.channel == "wechat"
    # A scan while acting is hers, and she is told she helps on one case only.
    assert await w.send(event_xml(ZHAO_WX, "SCAN", w.case["token"], at=2)) == texts.DESK_ONE_CASE

    assert await w.say(ZHAO_WX, "结束代办") == texts.DESK_ENDED.format(name="王**")
    assert await w.say(ZHAO_WX, "待办") != texts.ASK_PROMPT  # herself again

    # A session left idle ends by itself: her next line is hers again, and she is told.
    assert await w.say(ZHAO_WX, "代办") == texts.DESK_SCAN
    await w.send(event_xml(ZHAO_WX, "SCAN", w.case["token"], at=3))
    await w.say(ZHAO_WX, "2")
    await w.say(ZHAO_WX, "5678")
    assert (await w.say(ZHAO_WX, "1")).startswith("已开始为被告李*代办")
    frozen_clock[0] += desk.IDLE + timedelta(minutes=5)
    before = await count(w, Message)
    assert await w.say(ZHAO_WX, "1") == texts.DESK_ENDED_BY_ITSELF
    assert await count(w, Message) == before
    assert texts.STAFF_HELP.split("：")[0] in await w.say(ZHAO_WX, "你好")


async def test_a_party_with_wechat_hears_the_answer_on_their_phone(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await add_assistants(w)
    await bind_judge(w)
    assert texts.ASK_DIGITS in await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    assert "验证成功" in await w.say(LITIGANT, "1234")
    zhao = await session_for(w, "zhaomin")
    await start_at_console(w, zhao, await party_id(w))
    page = await post(zhao, "/console/desk/ask", text=QUESTION)
    number = int(re.search(r"#(\d+)", page).group(1))  # type: ignore[union-attr]
    await w.say(JUDGE_WX, f"#{number} {ANSWER}")
    await w.deliver()
    await w.deliver()
    assert any(ANSWER in said for said in w.inbox(LITIGANT))
    # The desk keeps nothing for them: they heard it themselves.
    assert desk_words.NO_KEPT in (await zhao.get("/console/desk")).text


def test_a_desk_turn_survives_being_stored_as_a_pending_flow() -> None:
    turn = Inbound("desk", "desk:7", "text", "desk:abc", text="1", desk=3, assisted_by="zhaomin")
    assert Inbound(**json.loads(json.dumps(dataclasses.asdict(turn)))) == turn
    old = {k: v for k, v in dataclasses.asdict(turn).items() if k not in ("desk", "assisted_by")}
    assert Inbound(**old).desk is None  # one stored before the fields existed still loads
