"""The loop, end to end in safe mode: scan, verify, ask; the judge is told, answers in
chat; the litigant receives it through the (fake) customer-service API. Nothing lost."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import jobs
from bot.channels import tencent
from bot.channels.wechat.api import WeChatAPI
from bot.channels.wechat.sender import WeChatSender
from bot.core import clock
from bot.core.events import Inbound
from bot.core.reply import Reply, as_text
from bot.fakes.wechat.callbacks import event_xml, text_xml
from bot.outbox import delivery
from bot.rules.staff import issue_bind_code
from handlers import texts
from storage.models import AuditEvent, Binding, Case, Message, Outbox, Party, Staff, Ticket
from tests.conftest import APP_ID, CASE_NUMBER, COURT
from tests.world import (
    JUDGE_WX,
    LITIGANT,
    OTHER_WX,
    SECRET,
    World,
    ask,
    bind_judge,
    verify_litigant,
)

LOCKED = texts.LOCKED.format(desk=f"{COURT}诉讼服务中心")  # the court gave no details


# -- the whole story ---------------------------------------------------------------


async def test_scan_verify_ask_answer_close(world: World) -> None:
    w = world
    await bind_judge(w)
    greeting = await w.send(event_xml(LITIGANT, "subscribe", "qrscene_" + w.case["token"]))
    assert CASE_NUMBER in greeting and texts.ASK_DIGITS in greeting
    assert "还可以再试 4 次" in await w.say(LITIGANT, "0000")
    verified = await w.say(LITIGANT, "1234")
    assert "验证成功" in verified and "原告王**" in verified and "1 咨询法官" in verified

    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    received = await w.say(LITIGANT, "请问什么时候开庭？")
    number = int(re.search(r"#(\d+)", received).group(1))  # type: ignore[union-attr]
    assert (
        "法官张伟" in received
        and "11月25日 周三 下午5:30" in received
        and "回执：http://court.example/v/" in received
    )

    assert await w.deliver() == 1
    [notice] = w.inbox(JUDGE_WX)
    assert f"#{number}" in notice and CASE_NUMBER in notice and "原告王**" in notice
    assert "请问什么时候开庭？" in notice and f"#{number} 回复内容" in notice

    added = await w.say(LITIGANT, "另外，我的证据要交到哪里？")
    assert f"#{number}" in added
    await w.deliver()
    assert "另外，我的证据要交到哪里？" in w.inbox(JUDGE_WX)[-1]

    todo = await w.say(JUDGE_WX, "待办")
    assert f"#{number}" in todo and CASE_NUMBER in todo and "已等" in todo

    assert await w.say(JUDGE_WX, f"#{number} 下周一上午九点开庭。") == texts.STAFF_ANSWERED.format(
        ticket=number
    )
    await w.deliver()
    assert w.inbox(LITIGANT) == [f"法官张伟回复 #{number}：下周一上午九点开庭。"]

    # At the menu any sentence is kept and the person asked; 0 goes back to the menu.
    assert "请回复数字选择" in await w.say(LITIGANT, "0")
    assert (await w.say(LITIGANT, "乱七八糟")).startswith("您是想问法官这个问题吗？")
    assert "请回复数字选择" in await w.say(LITIGANT, "0")
    mine = await w.say(LITIGANT, "我的诉求")
    assert f"#{number} 咨询：已答复" in mine

    assert await w.say(JUDGE_WX, f"#{number} 结") == texts.STAFF_CLOSED.format(ticket=number)
    await w.deliver()
    assert "已办结" in w.inbox(LITIGANT)[-1]
    assert await w.say(JUDGE_WX, "待办") == texts.STAFF_TODO_EMPTY

    async with w.deps.db.sessions() as s:
        ticket = await s.get(Ticket, number)
        actions = list(
            (
                await s.execute(
                    select(AuditEvent.action).where(AuditEvent.case_id == w.case["case_id"])
                )
            ).scalars()
        )
    assert ticket is not None and ticket.status == "closed" and ticket.first_reply_at is not None
    for action in (
        "bind.verified",
        "ticket.opened",
        "ticket.answered",
        "ticket.closed",
        "message.delivered",
    ):
        assert action in actions


async def test_wrong_digits_lock_out_for_an_hour(world: World) -> None:
    w = world
    await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    for left in (4, 3, 2, 1):
        assert f"还可以再试 {left} 次" in await w.say(LITIGANT, "9999")
    assert await w.say(LITIGANT, "9999") == LOCKED
    assert await w.say(LITIGANT, "1234") == LOCKED  # even the right digits, for an hour
    assert await w.say(LITIGANT, "12") == LOCKED
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Binding))).first() is None
    # Someone else is not locked out.
    await verify_litigant(w, openid="oSomeoneElse0000000000001", digits="5678")


async def test_a_wrong_answer_cut_off_and_run_again_counts_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's first run is cut off after it judged the digits wrong; the second run
    answers. The attempt counts once toward the lockout, not twice."""
    from bot.channels.wechat import callback as channel
    from storage import audit

    w = world
    await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    real_answer_by = channel.ANSWER_BY_S
    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.4)
    real_append = audit.append
    runs: list[str] = []
    never = asyncio.Event()

    async def slow_append(*args: Any, **kw: Any) -> Any:
        if kw.get("action") == "bind.failed":
            runs.append(kw["action"])
            if len(runs) == 1:
                await never.wait()  # stuck until cut off at 0.3 s
        return await real_append(*args, **kw)

    monkeypatch.setattr(audit, "append", slow_append)
    assert await w.say(LITIGANT, "9999") == ""  # `success`; the second run's answer follows
    assert await w.delivered_to(LITIGANT) == [texts.WRONG_DIGITS.format(left=4)]
    assert len(runs) == 2
    monkeypatch.setattr(audit, "append", real_append)
    monkeypatch.setattr(channel, "ANSWER_BY_S", real_answer_by)
    assert await w.say(LITIGANT, "9999") == texts.WRONG_DIGITS.format(left=3)


async def test_judge_cannot_answer_what_is_not_theirs(world: World) -> None:
    w = world
    async with w.deps.db.transaction() as s:
        court_id = (await s.get(Case, w.case["case_id"])).court_id  # type: ignore[union-attr]
        s.add(Staff(username="lisi", name="李四", court_id=court_id, roles="judge", team="刑庭"))
    await bind_judge(w)
    await bind_judge(w, "lisi", OTHER_WX)
    await verify_litigant(w)
    number = await ask(w, "问题")
    refused = await w.say(OTHER_WX, f"#{number} 我来答")
    assert refused == texts.STAFF_NO_TICKET.format(ticket=number)
    assert f"#{number}" not in await w.say(OTHER_WX, "待办")
    assert await w.say(OTHER_WX, f"#{number} 结") == texts.STAFF_NO_TICKET.format(ticket=number)
    await w.deliver()
    assert w.inbox(LITIGANT) == []
    async with w.deps.db.sessions() as s:
        ticket = await s.get(Ticket, number)
    assert ticket is not None and ticket.status == "open"
    assert await w.say(OTHER_WX, "#99999 你好") == texts.STAFF_NO_TICKET.format(ticket=99999)


async def test_litigant_cannot_act_as_staff_and_codes_are_one_time(world: World) -> None:
    w = world
    async with w.deps.db.transaction() as s:
        member = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        code = await issue_bind_code(s, member, actor="test")
    assert "绑定成功" in await w.say(JUDGE_WX, code)
    assert await w.say(LITIGANT, code) == texts.BIND_CODE_BAD  # used
    assert await w.say(LITIGANT, "ABCD2345") == texts.BIND_CODE_BAD  # never issued
    async with w.deps.db.sessions() as s:
        member = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert member.openid == JUDGE_WX
    # A litigant's `#n ...` is just text for them: kept like any sentence, not an answer.
    await verify_litigant(w)
    reply = await w.say(LITIGANT, "#1 我自己答")
    assert reply.startswith("您是想问法官这个问题吗？") and "已将您的答复" not in reply


async def test_retries_of_one_question_make_one_ticket(world: World) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    await w.say(LITIGANT, "1")
    replies = [await w.say(LITIGANT, "问一次", msg_id=424242) for _ in range(3)]
    assert len(set(replies)) == 1 and "#" in replies[0]
    async with w.deps.db.sessions() as s:
        assert len((await s.execute(select(Ticket))).all()) == 1
    await w.deliver()
    assert len(w.inbox(JUDGE_WX)) == 1


SECOND_CASE = "(2026)冀1102民初7号"


async def add_second_case(w: World) -> str:
    """A second case of the same court, where the litigant is 原告代理人 (digits 4321);
    returns its code's token."""
    from qr import codes

    async with w.deps.db.transaction() as s:
        first = await s.get(Case, w.case["case_id"])
        assert first is not None
        second = Case(
            court_id=first.court_id, case_number=SECOND_CASE, case_type="民事", cause="合同纠纷"
        )
        s.add(second)
        await s.flush()
        s.add(
            Party(
                case_id=second.id,
                role="原告代理人",
                name="赵律师",
                phone_tail="4321",
                phone_masked="x",
                phone_hash="z",
            )
        )
        return (await codes.issue(s, second, actor="test")).token


async def test_a_lawyer_switches_between_cases(world: World) -> None:
    w = world
    token = await add_second_case(w)
    await verify_litigant(w)
    await w.send(event_xml(LITIGANT, "SCAN", token))
    assert "原告代理人赵**" in await w.say(LITIGANT, "4321")
    listing = await w.say(LITIGANT, "切换")
    assert CASE_NUMBER in listing and f"{SECOND_CASE}（当前）" in listing
    assert CASE_NUMBER in await w.say(LITIGANT, "1")
    assert "当前案件：" + CASE_NUMBER in await w.say(LITIGANT, "0")


async def test_news_about_another_case_names_it(world: World) -> None:
    """First-day issue, item 6: a push about a case the person is not on says which."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "什么时候开庭？")
    await w.send(event_xml(LITIGANT, "SCAN", await add_second_case(w)))
    await w.say(LITIGANT, "4321")  # now on the second case
    await w.say(JUDGE_WX, f"#{number} 下周一上午九点。")
    await w.deliver()
    assert (
        w.inbox(LITIGANT)[-1]
        == f"关于案件 {CASE_NUMBER}：\n法官张伟回复 #{number}：下周一上午九点。"
    )
    await w.say(LITIGANT, "切换")
    await w.say(LITIGANT, "1")  # back on the first case: the news needs no name
    await w.say(JUDGE_WX, f"#{number} 请带身份证。")
    await w.deliver()
    assert w.inbox(LITIGANT)[-1] == f"法官张伟回复 #{number}：请带身份证。"


async def test_click_keys_and_unknown_choices_show_the_menu(world: World) -> None:
    w = world
    await verify_litigant(w)
    assert await w.send(event_xml(LITIGANT, "CLICK", "ASK")) == texts.ASK_PROMPT
    assert "1 咨询法官" in await w.send(event_xml(LITIGANT, "CLICK", "MENU"))
    # Nothing of theirs to rate yet: straight to rating the court, no list of one.
    assert await w.send(event_xml(LITIGANT, "CLICK", "RATE")) == texts.RATE_NOTHING_YET + (
        texts.RATE_SCORE.format(what="本院的整体服务")
    )
    assert "1 咨询法官" in await w.say(LITIGANT, "0")
    assert "1 咨询法官" in await w.say(LITIGANT, "9")  # not a menu choice: the menu again


async def test_unverified_user_cannot_reach_a_case(world: World) -> None:
    w = world
    await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    # Menu choices before verifying do not open anything.
    assert await w.say(LITIGANT, "1") == texts.DIGITS_ONLY
    assert await w.say(LITIGANT, "0") == texts.WELCOME
    assert await w.say(LITIGANT, "1") == texts.WELCOME
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Ticket))).first() is None


# -- delivery that loses nothing --------------------------------------------------------


async def answered_ticket(w: World) -> int:
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "问题")
    await w.deliver()
    await w.say(JUDGE_WX, f"#{number} 答复内容")
    return number


async def test_refused_token_is_refreshed_once(world: World, frozen_clock: list[datetime]) -> None:
    w = world
    await answered_ticket(w)
    issued = w.fake.tokens_issued
    frozen_clock[0] += timedelta(seconds=tencent.TOKEN_REFRESH_FLOOR_S + 1)
    w.fake.expire_tokens()  # WeChat no longer accepts the cached token: 40001
    assert await w.deliver() == 1
    assert w.inbox(LITIGANT)[-1].endswith("答复内容")
    assert w.fake.tokens_issued == issued + 1


async def test_a_token_refused_just_after_its_fetch_is_not_fetched_again_at_once(
    world: World, frozen_clock: list[datetime]
) -> None:
    """Token fetches are capped per day: within the floor a refused token means 'later'."""
    w = world
    await answered_ticket(w)
    issued = w.fake.tokens_issued
    w.fake.fail("/cgi-bin/message/custom/send", 40001)
    await w.deliver()
    assert w.inbox(LITIGANT) == [] and w.fake.tokens_issued == issued
    frozen_clock[0] += timedelta(seconds=6)  # the row's backoff; the token was fine after all
    await w.deliver()
    assert w.inbox(LITIGANT) == ["法官张伟回复 #1：答复内容"]
    assert w.fake.tokens_issued == issued


async def test_a_wechat_token_outage_fails_nothing_and_fetches_few_tokens(
    world: World, frozen_clock: list[datetime]
) -> None:
    """WeChat answered 40001 to everything for a while: every notice waits and goes out
    once it is over, with a token fetched at most once per floor, not once per notice."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    await w.say(LITIGANT, "1")
    for i in range(10):
        await w.say(LITIGANT, f"补充{i}")  # 10 notices to the judge
    issued = w.fake.tokens_issued
    w.fake.fail("/cgi-bin/message/custom/send", 40001, times=10_000)
    for _ in range(6):  # 30 s of outage, a delivery pass every 5 s
        await w.deliver()
        frozen_clock[0] += timedelta(seconds=5)
    assert w.inbox(JUDGE_WX) == []
    assert w.fake.tokens_issued - issued <= 1  # within one floor: one fetch at most
    async with w.deps.db.sessions() as s:
        rows = (await s.execute(select(Outbox).where(Outbox.recipient == JUDGE_WX))).scalars()
        assert {r.status for r in rows} == {"pending"}
    w.fake.clear_failures()
    for _ in range(12):  # the backoff has grown: let an hour pass, a pass each 5 minutes
        frozen_clock[0] += timedelta(minutes=5)
        await w.deliver()
    assert len(w.inbox(JUDGE_WX)) == 10


async def test_only_truly_permanent_errors_fail_a_row(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await answered_ticket(w)
    w.fake.fail("/cgi-bin/message/custom/send", 48001)  # not allowed: our configuration
    await w.deliver()
    async with w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()
    assert row.status == "pending" and "48001" in (row.last_error or "")
    frozen_clock[0] += timedelta(seconds=6)
    w.fake.fail("/cgi-bin/message/custom/send", 43004)  # the person unfollowed
    await w.deliver()
    async with w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()
    assert row.status == "failed" and row.last_error == "43004 对方没有关注或已取消关注公众号"
    # Requeued by an operator, it is tried again (and goes out).
    assert await delivery.requeue_failed(w.deps.db, None, actor="admin") == 1
    await w.deliver()
    assert w.inbox(LITIGANT) == ["法官张伟回复 #1：答复内容"]


async def test_window_closed_falls_back_to_a_template_with_a_signed_link(world: World) -> None:
    w = world
    clock.set_timezone("Asia/Tokyo")  # MST_TIMEZONE: the court's zone, not UTC, not the host's
    w.fake.enforce_window = True
    w.fake.close_window(LITIGANT)
    number = await answered_ticket(w)
    await w.deliver()
    [sent] = w.fake.sent_to(LITIGANT)
    assert sent.kind == "template" and sent.payload["template_id"]
    # TEST_EPOCH is 10:00 China time: 11:00 in Tokyo, 02:00 UTC.
    assert sent.payload["data"]["keyword2"]["value"].startswith("2026-11-23 11:0")
    url = sent.payload["url"]
    path = url.split("http://court.example", 1)[1]
    page = await w.client.get(path)
    assert page.status == 200 and "答复内容" in await page.text()
    tampered = await w.client.get(path.replace("/m/", "/m/9") if "/m/" in path else path)
    assert tampered.status == 403
    forged = await w.client.get(re.sub(r"s=[^&]+", "s=AAAA", path))
    assert forged.status == 403
    async with w.deps.db.sessions() as s:
        row = (
            await s.execute(
                select(Outbox).where(Outbox.ticket_id == number, Outbox.recipient == LITIGANT)
            )
        ).scalar_one()
    assert row.status == "sent"


async def test_quota_used_falls_back_too(world: World) -> None:
    w = world
    w.fake.enforce_quota = True
    await answered_ticket(w)
    for _ in range(5):
        w.fake.fail("/cgi-bin/message/custom/send", 45047)
    await w.deliver()
    assert [s.kind for s in w.fake.sent_to(LITIGANT)] == ["template"]


async def test_transient_failures_back_off_then_deliver(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await answered_ticket(w)
    w.fake.fail("/cgi-bin/message/custom/send", -500, times=2)
    await w.deliver()
    assert w.inbox(LITIGANT) == []
    await w.deliver()  # not due yet: backoff
    assert w.inbox(LITIGANT) == []
    frozen_clock[0] += timedelta(seconds=6)
    await w.deliver()  # second failure
    assert w.inbox(LITIGANT) == []
    frozen_clock[0] += timedelta(seconds=11)
    await w.deliver()
    assert w.inbox(LITIGANT) == ["法官张伟回复 #1：答复内容"]
    async with w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()
    assert row.attempts == 3 and row.status == "sent"


async def test_permanent_error_is_recorded_not_retried(world: World) -> None:
    w = world
    await answered_ticket(w)
    w.fake.fail("/cgi-bin/message/custom/send", 40003)  # invalid openid
    await w.deliver()
    async with w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()
        failed = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "delivery.failed")))
            .scalars()
            .all()
        )
    assert row.status == "failed" and "40003" in (row.last_error or "")
    assert len(failed) == 1


async def test_worker_crash_between_claim_and_send(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await answered_ticket(w)
    claimed = await delivery.claim(w.deps)  # ...and the worker dies here
    assert [r.recipient for r in claimed] == [LITIGANT]
    await w.deliver()  # another worker: the lease still holds
    assert w.inbox(LITIGANT) == []
    frozen_clock[0] += delivery.LEASE + timedelta(seconds=1)
    assert await w.deliver() == 1
    assert await w.deliver() == 0
    assert w.inbox(LITIGANT) == ["法官张伟回复 #1：答复内容"]


async def test_a_slow_batch_renews_its_leases_and_a_lost_one_is_not_sent_twice(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await answered_ticket(w)
    [row] = await delivery.claim(w.deps)  # worker A
    frozen_clock[0] += delivery.LEASE * 0.6  # A's batch is slow: more than half the lease
    assert await delivery._still_ours(w.deps, row)  # renewed before its send
    frozen_clock[0] += delivery.LEASE * 0.6
    assert await w.deliver() == 0  # worker B: the renewed lease still holds
    frozen_clock[0] += delivery.LEASE  # A stalls for good; B takes the row and sends it
    assert await w.deliver() == 1
    assert not await delivery._still_ours(w.deps, row)  # A, back, finds it is not its own
    assert w.inbox(LITIGANT) == ["法官张伟回复 #1：答复内容"]


async def test_concurrent_workers_send_each_row_once(world: World) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    await w.say(LITIGANT, "1")
    for i in range(12):
        await w.say(LITIGANT, f"补充{i}")
    results = await asyncio.gather(*(delivery.deliver_due(w.deps, limit=3) for _ in range(6)))
    results += [await w.deliver()]
    assert sum(results) == 12
    assert len(w.inbox(JUDGE_WX)) == 12


async def test_processes_share_one_access_token(world: World) -> None:
    w = world
    sender = w.deps.senders["wechat"]
    assert isinstance(sender, WeChatSender)
    apis = [
        WeChatAPI(
            http=sender.api.http,
            redis=w.deps.redis,
            base=sender.api.base,
            app_id=APP_ID,
            app_secret=SECRET,
        )
        for _ in range(5)
    ]
    tokens = await asyncio.gather(*(api.token() for api in apis))
    assert len(set(tokens)) == 1
    assert w.fake.tokens_issued == 1


async def test_a_slow_handler_answers_success_in_time_and_delivers_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WeChat gives up at 5 s: past the budget we answer `success`, and the reply follows
    as a customer-service message from the outbox."""
    from bot.channels.wechat import callback as channel
    from handlers import bind

    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.3)
    real_welcome = bind.welcome
    answered = asyncio.Event()  # the handler runs on until WeChat has had its `success`

    async def slow_welcome(ctx: Any) -> str | None:
        await answered.wait()
        return await real_welcome(ctx)

    monkeypatch.setattr(bind, "welcome", slow_welcome)
    query, body = world.wechat.request(text_xml(LITIGANT, "你好"))
    resp = await world.client.post("/wechat", params=query, data=body.encode())
    assert resp.status == 200 and await resp.text() == "success"
    answered.set()
    # the handler finishes behind the answer
    assert await world.delivered_to(LITIGANT) == [texts.WELCOME]


async def test_shutdown_waits_for_an_answer_still_on_its_way(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is stopped (a deploy) just after a slow message was answered `success`:
    the flow finishes and its answer is queued before the connections close."""
    from bot.channels.wechat import callback as channel
    from handlers import bind

    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.3)
    real_welcome = bind.welcome

    async def slow_welcome(ctx: Any) -> str | None:
        await asyncio.sleep(0.8)
        return await real_welcome(ctx)

    monkeypatch.setattr(bind, "welcome", slow_welcome)
    assert await world.say(LITIGANT, "你好") == ""  # `success`
    await world.client.close()  # aiohttp's shutdown and cleanup, as on SIGTERM
    assert await world.deliver() == 1
    assert world.inbox(LITIGANT) == [texts.WELCOME]


async def count_rows(w: World, model: Any, *where: Any) -> int:
    async with w.deps.db.sessions() as s:
        return len((await s.execute(select(model).where(*where))).all())


async def test_a_slow_flow_that_wrote_is_rolled_back_and_runs_once_more(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's first run is cut off after it wrote: nothing of it stays, the message is
    stored once, and the second run opens the one ticket and answers through the outbox."""
    from bot.channels.wechat import callback as channel
    from bot.rules import tickets
    from storage.models import Message

    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    real_answer_by = channel.ANSWER_BY_S
    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.4)
    real_open = tickets.open_ticket
    runs: list[int] = []
    never = asyncio.Event()  # the first run waits on it until it is cut off

    async def slow_open(*args: Any, **kw: Any) -> Any:
        opened = await real_open(*args, **kw)  # written in the transaction...
        runs.append(opened.ticket.id)
        if len(runs) == 1:
            await never.wait()  # ...then stuck: cut off at 0.3 s, outside any SQL
        else:
            await asyncio.sleep(0.5)  # the rerun has no limit: it may pass 0.4 s
        return opened

    monkeypatch.setattr(tickets, "open_ticket", slow_open)
    assert await w.say(LITIGANT, "请问什么时候开庭？", msg_id=4242) == ""  # `success`
    await w.delivered_to(LITIGANT)  # the second run commits its answer behind the `success`
    assert len(runs) == 2
    assert await count_rows(w, Ticket) == 1
    assert await count_rows(w, Message, Message.msg_key == "wx:4242") == 1
    [late] = w.inbox(LITIGANT)
    assert f"#{runs[1]}" in late and "已收到您的咨询" in late
    assert any(f"#{runs[1]}" in n for n in w.inbox(JUDGE_WX))
    # The conversation went on from the second run: the next text joins the same ticket.
    monkeypatch.setattr(channel, "ANSWER_BY_S", real_answer_by)
    assert f"已补充到咨询 #{runs[1]}" in await w.say(LITIGANT, "还有一个问题")


async def stranded_question(w: World, msg_id: int) -> tuple[Inbound, int]:
    """What a process leaves when it stops between storing a slow question on its own and
    running its flow again: the message and its PendingFlow row, nothing else."""
    from bot.dialog import dispatch as dialog

    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    inbound = Inbound(
        channel="wechat", user=LITIGANT, kind="text", key=f"wx:{msg_id}", text="请问什么时候开庭？"
    )
    return inbound, await dialog.accept(w.deps, inbound, w.case["case_id"], pending=True)


async def test_a_flow_left_by_a_stopped_process_is_run_by_the_jobs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.dialog import dispatch as dialog
    from storage.models import PendingFlow

    w = world
    await stranded_question(w, 5151)
    assert await jobs.resume_stranded(w.deps) == 0  # too fresh: its own process may be on it
    monkeypatch.setattr(dialog, "STRANDED_AFTER", timedelta(0))
    # Two workers at once: the user's turn and the row make it run once.
    await asyncio.gather(jobs.resume_stranded(w.deps), jobs.resume_stranded(w.deps))
    assert await count_rows(w, PendingFlow) == 0
    async with w.deps.db.sessions() as s:
        [ticket] = (await s.execute(select(Ticket))).scalars().all()
    await w.deliver()
    [answer] = w.inbox(LITIGANT)
    assert f"#{ticket.id}" in answer and "已收到您的咨询" in answer
    assert any(f"#{ticket.id}" in n for n in w.inbox(JUDGE_WX))
    assert await jobs.resume_stranded(w.deps) == 0
    # The conversation went on from there: the next text joins the same ticket.
    assert f"已补充到咨询 #{ticket.id}" in await w.say(LITIGANT, "还有一个问题")


async def test_a_stranded_flow_that_fails_asks_to_send_again_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.dialog import dispatch as dialog
    from bot.rules import tickets
    from storage.models import Message, PendingFlow

    w = world
    await stranded_question(w, 5252)
    monkeypatch.setattr(dialog, "STRANDED_AFTER", timedelta(0))

    async def broken_open(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(tickets, "open_ticket", broken_open)
    assert await jobs.resume_stranded(w.deps) == 1
    assert await jobs.resume_stranded(w.deps) == 0
    assert await count_rows(w, PendingFlow) == 0
    assert await count_rows(w, Ticket) == 0
    assert await count_rows(w, Message, Message.msg_key == "wx:5252") == 1
    await w.deliver()
    assert w.inbox(LITIGANT) == [texts.BUSY]


async def test_a_flow_that_fails_keeps_the_message_and_runs_it_again_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.dialog import dispatch as dialog
    from bot.rules import tickets
    from storage.models import Message, PendingFlow

    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    real_open = tickets.open_ticket

    async def broken_open(*args: Any, **kw: Any) -> Any:
        await real_open(*args, **kw)
        raise RuntimeError("a bug after the ticket was written")

    monkeypatch.setattr(tickets, "open_ticket", broken_open)
    assert await w.say(LITIGANT, "请问什么时候开庭？", msg_id=4343) == texts.BUSY
    assert await count_rows(w, Message, Message.msg_key == "wx:4343") == 1
    assert await count_rows(w, Ticket) == 0
    assert await count_rows(w, Outbox) == 0
    assert await count_rows(w, PendingFlow) == 1  # ...but its flow is still owed
    monkeypatch.setattr(tickets, "open_ticket", real_open)
    # A minute on, the resume job runs it again: it reaches the judge, and the person hears.
    later = clock.now() + dialog.STRANDED_AFTER + timedelta(seconds=1)
    clock.set_clock(lambda: later)
    assert await dialog.resume_stranded(w.deps) == 1
    await w.deliver()
    assert any("请问什么时候开庭？" in n for n in w.inbox(JUDGE_WX))
    assert any("已收到您的咨询" in n for n in w.inbox(LITIGANT))
    assert await count_rows(w, Ticket) == 1 and await count_rows(w, PendingFlow) == 0


async def test_the_receipt_finds_the_ticket_event(world: World) -> None:
    w = world
    await verify_litigant(w)
    await w.say(LITIGANT, "1")
    reply = await w.say(LITIGANT, "问题")
    receipt = re.search(r"回执：\S+/v/([0-9a-f]{16})", reply).group(1)  # type: ignore[union-attr]
    from storage import audit

    async with w.deps.db.sessions() as s:
        [event] = await audit.find_receipt(s, receipt)
        assert await audit.find_receipt(s, "zz%") == []  # not a hash: nothing, not everything
    assert event.action == "ticket.opened" and event.hash.startswith(receipt)


async def test_two_lines_sent_at_once_make_one_ticket(world: World) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    await w.say(LITIGANT, "1")
    replies = await asyncio.gather(*(w.say(LITIGANT, f"第{i}行") for i in range(4)))
    assert sum("已收到您的咨询" in r for r in replies) == 1
    assert sum("已补充到咨询" in r for r in replies) == 3
    async with w.deps.db.sessions() as s:
        assert len((await s.execute(select(Ticket))).all()) == 1


async def test_a_forgotten_conversation_finds_the_case_again(world: World) -> None:
    """Conversations live a day in Redis (and the stand-in forgets on restart); bindings don't."""
    w = world
    await verify_litigant(w)
    await w.deps.redis.flushdb()
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT


async def test_a_redis_restart_mid_question_loses_nothing(world: World) -> None:
    """Redis restarted (persistence off) between "1" and the question: the question still
    becomes a ticket and the judge is told; so does a rating asked for before the restart."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    await w.deps.redis.flushdb()
    received = await w.say(LITIGANT, "请问开庭要带什么材料？")
    assert "已收到您的咨询" in received, received
    number = int(re.search(r"#(\d+)", received).group(1))  # type: ignore[union-attr]
    await w.deliver()
    assert any("请问开庭要带什么材料？" in n for n in w.inbox(JUDGE_WX))
    # The judge closes it; the litigant is asked to rate; Redis restarts again.
    assert await w.say(JUDGE_WX, f"#{number} 结") == texts.STAFF_CLOSED.format(ticket=number)
    await w.deps.redis.flushdb()
    assert "谢谢您的评价" in await w.say(LITIGANT, "1")
    # A day idle, the step is forgotten in the database as in Redis.
    assert await w.say(LITIGANT, "0")  # back to the menu
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    await w.deps.redis.flushdb()
    later = clock.now() + timedelta(days=2)
    clock.set_clock(lambda: later)
    # "2" is a menu choice again (投诉), not a question.
    assert await w.say(LITIGANT, "2") == texts.COMPLAIN_ABOUT


async def test_free_text_at_the_menu_is_never_dropped(world: World) -> None:
    """Item 1 of the first-day issue, as an elderly litigant writes."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    for said in ("咨询", "一", "１", "问法官", "1。"):
        assert await w.say(LITIGANT, said) == texts.ASK_PROMPT, said
        assert "请回复数字选择" in await w.say(LITIGANT, "0")
    assert await w.say(LITIGANT, "投诉") == texts.COMPLAIN_ABOUT
    assert "请回复数字选择" in await w.say(LITIGANT, "0")
    assert texts.HOW_TO_REACH_A_PERSON.format(desk=f"{COURT}诉讼服务中心") in await w.say(
        LITIGANT, "人工"
    )
    # A sentence is kept, the person asked; a second one joins it; 1 makes it the question.
    asked = await w.say(LITIGANT, "谢谢法官！那我儿子需要带身份证吗？")
    assert asked.startswith("您是想问法官这个问题吗？") and "带身份证" in asked
    again = await w.say(LITIGANT, "还有户口本")
    assert "带身份证" in again and "户口本" in again
    received = await w.say(LITIGANT, "1")
    assert "已收到您的咨询" in received, received
    await w.deliver()
    [notice] = [n for n in w.inbox(JUDGE_WX) if "带身份证" in n]
    assert "户口本" in notice
    # Both messages are filed under the ticket.
    number = int(re.search(r"#(\d+)", received).group(1))  # type: ignore[union-attr]
    async with w.deps.db.sessions() as s:
        filed = (
            (await s.execute(select(Message.content).where(Message.ticket_id == number)))
            .scalars()
            .all()
        )
    assert set(filed) >= {"谢谢法官！那我儿子需要带身份证吗？", "还有户口本"}


async def test_full_width_digits_verify_without_using_a_try(world: World) -> None:
    w = world
    await w.send(event_xml(LITIGANT, "SCAN", w.case["token"]))
    assert "验证成功" in await w.say(LITIGANT, "１２３４")


async def test_commands_win_over_adding_to_an_item(world: World) -> None:
    """Item 2 of the first-day issue: after question #1 was answered, a case code, "4",
    切换 and 我的诉求 were each added to #1 and pushed to the judge. No more."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    first = await ask(w, "请问什么时候开庭？")
    await w.say(JUDGE_WX, f"#{first} 下周一上午九点。")
    # After the answer, a new sentence is a new question, and the reply names it.
    again = await w.say(LITIGANT, "开庭地点在哪里？")
    assert "已收到您的咨询" in again and f"#{first}" not in again
    second = int(re.search(r"#(\d+)", again).group(1))  # type: ignore[union-attr]
    assert second != first
    # Asking for a person right after filing it is that, not more of the question.
    assert (await w.say(LITIGANT, "人工")).startswith(
        texts.HOW_TO_REACH_A_PERSON.format(desk=f"{COURT}诉讼服务中心")
    )
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    # In the question step, commands are commands.
    assert "您在本案的诉求" in await w.say(LITIGANT, "我的诉求")
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    assert "您验证过的案件" in await w.say(LITIGANT, "切换")
    assert await w.say(LITIGANT, "0")
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    assert "执行" in await w.say(LITIGANT, "4")  # the menu's 4, not a supplement
    assert await w.say(LITIGANT, "0")
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    # Asking for a person in the middle of a question is that, not more of the question.
    assert (await w.say(LITIGANT, "人工")).startswith(
        texts.HOW_TO_REACH_A_PERSON.format(desk=f"{COURT}诉讼服务中心")
    )
    await w.say(LITIGANT, "1")
    typed = await w.say(LITIGANT, w.case["short_code"])  # opens the case
    assert typed.startswith("您好！这个案件码对应的是：") and CASE_NUMBER in typed
    await w.deliver()
    for notice in w.inbox(JUDGE_WX):
        assert not any(cmd in notice for cmd in ("我的诉求", "切换", "人工", w.case["short_code"]))
        assert "：4\n" not in notice
    async with w.deps.db.sessions() as s:
        tickets_now = (await s.execute(select(Ticket))).scalars().all()
    assert len(tickets_now) == 2


async def test_a_receipt_is_a_link_the_litigant_can_check(world: World) -> None:
    """First-day issue, item 4: not a hex string, a page saying what was recorded."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    reply = await w.say(LITIGANT, "我儿子需要带身份证吗？")
    found = re.search(r"回执：http://court\.example(/v/[0-9a-f]{16})\n", reply)
    assert found is not None, reply
    number = int(re.search(r"#(\d+)", reply).group(1))  # type: ignore[union-attr]
    page = await w.client.get(found.group(1))
    assert page.status == 200
    shown = await page.text()
    assert f"已记录您的咨询（编号 #{number}）" in shown and CASE_NUMBER in shown
    assert "11月23日 周一 上午10:" in shown and "核对无误" in shown
    for private in ("身份证", "王某某", LITIGANT):  # not the words, not who
        assert private not in shown
    # A guess, a cut-short link, or another event's hash is no receipt.
    for path in ("/v/0123456789abcdef", found.group(1)[:-1], "/v/%3Cscript%3E"):
        assert (await w.client.get(path)).status == 404, path
    async with w.deps.db.sessions() as s:
        other = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "bind.verified"))
        ).scalar_one()
    assert (await w.client.get(f"/v/{other.hash[:16]}")).status == 404
    # The case's record edited afterwards: the same link says so.
    from tests.test_audit import edit

    await edit(w.deps.db, other.id, payload='{"method": "phone_tail", "role": "被告"}')
    tampered = await (await w.client.get(found.group(1))).text()
    assert "核对发现本案的记录有异常" in tampered and "核对无误" not in tampered


async def test_a_receipt_sent_back_in_the_chat_is_checked_there(world: World) -> None:
    """Issue 14, item 4: sent in the chat, a receipt answers as its page does, in any step."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    reply = await w.say(LITIGANT, "我儿子需要带身份证吗？")
    found = re.search(r"回执：(http://court\.example/v/([0-9a-f]{16}))\n", reply)
    assert found is not None, reply
    number = int(re.search(r"#(\d+)", reply).group(1))  # type: ignore[union-attr]
    # Still in the question's step: the link is checked, it does not join the question.
    for sent in (found.group(1), found.group(2).upper(), f" {found.group(2)} "):
        answer = await w.say(LITIGANT, sent)
        assert answer.startswith(f"衡水市桃城区人民法院已记录您的咨询（编号 #{number}）。"), answer
        assert CASE_NUMBER in answer and texts.RECEIPT_INTACT in answer
        assert "身份证" not in answer
    assert await w.say(LITIGANT, "0123456789abcdef") == as_text(
        Reply(texts.RECEIPT_UNKNOWN, (texts.TO_MENU,))
    )
    async with w.deps.db.sessions() as s:
        [question] = (await s.execute(select(Ticket))).scalars().all()
        added = (await s.execute(select(Message).where(Message.ticket_id == question.id))).scalars()
        assert all("/v/" not in m.content for m in added)
