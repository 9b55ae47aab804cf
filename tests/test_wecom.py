"""Judges on WeCom (企业微信), end to end over HTTP: WeCom's callback (/wecom) signed and
encrypted as WeCom does (bot.fakes.wecom.callbacks), the app's messages through the fake
WeCom API (bot.fakes.wecom.api, with WeCom's per-member limits), the litigant on the
Official Account as ever (the fake WeChat API), and the console's sign-in with WeCom."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.app.config import ConfigError, load_settings
from bot.channels.wecom import sender as wecom_sender
from bot.core.addresses import wecom_user
from bot.core.settings import Settings, WeComSettings
from bot.dialog.deps import Deps
from bot.fakes.wecom.api import FakeWeCom
from bot.fakes.wecom.api import create_app as fake_wecom_app
from bot.fakes.wecom.callbacks import WeComServer
from bot.rules import importer
from bot.rules.staff import issue_bind_code
from handlers import texts
from storage.models import AuditEvent, Court, Message, Outbox, Staff
from tests.conftest import open_world
from tests.world import JUDGE_WX, LITIGANT, World, ask, bind_judge, verify_litigant

CORP = "ww0123456789abcdef"
AGENT = 1000002
WC_SECRET = "wecom-app-secret"
WC_TOKEN = "wecomtoken"
WC_KEY = base64.b64encode(bytes(range(1, 33))).decode()[:43]
JUDGE_WC = "ZhangWei"  # as WeCom's admin typed it: compared without case
OTHER_WC = "LiSi"
OTHER_PARTY = "oDefendant0000000000000001"  # 被告李某, phone tail 5678


@dataclass
class WeComWorld:
    w: World
    fake: FakeWeCom
    server: WeComServer

    async def post(self, query: dict[str, str], body: str) -> aiohttp.ClientResponse:
        return await self.w.client.post("/wecom", params=query, data=body.encode())

    async def say(self, userid: str, text: str, *, msg_id: int | None = None) -> str:
        query, body = self.server.request(self.server.text_xml(userid, text, msg_id=msg_id))
        resp = await self.post(query, body)
        assert resp.status == 200, await resp.text()
        reply = self.server.read_reply(await resp.text())
        return "" if reply is None else str(reply["Content"])

    def inbox(self, userid: str) -> list[str]:
        return self.fake.inbox(userid)


def wecom_settings(base: str) -> WeComSettings:
    return WeComSettings(
        corp_id=CORP,
        agent_id=AGENT,
        secret=WC_SECRET,
        token=WC_TOKEN,
        aes_key=WC_KEY,
        api_base=base,
        open_base=base,
        login_base=base,
    )


@pytest.fixture
async def wc(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[WeComWorld]:
    fake = FakeWeCom(corp_id=CORP, secret=WC_SECRET, agent_id=AGENT)
    for userid, name in ((JUDGE_WC, "张伟"), (OTHER_WC, "李四"), ("Stranger", "王五")):
        fake.add_member(userid, name)
    server = await aiohttp_server(fake_wecom_app(fake))
    base = str(server.make_url("")).rstrip("/")
    async with open_world(
        aiohttp_client, aiohttp_server, settings, deps, sample_case, wecom=wecom_settings(base)
    ) as w:
        async with w.deps.db.transaction() as s:
            judge = await s.get_one(Staff, sample_case["judge_id"])
            s.add(
                Staff(
                    username="lisi",
                    name="李四",
                    court_id=judge.court_id,
                    roles="judge",
                    team="民一庭",
                    wecom_userid=OTHER_WC.lower(),
                )
            )
        yield WeComWorld(w, fake, WeComServer(WC_TOKEN, WC_KEY, CORP, AGENT))


async def link_judge(wc: WeComWorld, userid: str = JUDGE_WC) -> None:
    """The staff import's way: the judge's WeCom userid on their row."""
    async with wc.w.deps.db.transaction() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        judge.wecom_userid = userid.lower()
        s.add(judge)


async def rows(w: World, model: Any) -> int:
    async with w.deps.db.sessions() as s:
        return len((await s.execute(select(model))).all())


async def events(w: World, action: str) -> list[AuditEvent]:
    async with w.deps.db.sessions() as s:
        found = await s.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(found.scalars())


# -- the callback URL ---------------------------------------------------------------------------


async def test_the_callback_url_check_echoes_the_decrypted_echostr(wc: WeComWorld) -> None:
    query = wc.server.verify_query("4856231789012345678")
    resp = await wc.w.client.get("/wecom", params=query)
    assert resp.status == 200 and await resp.text() == "4856231789012345678"

    forged = {**query, "msg_signature": "0" * 40}
    resp = await wc.w.client.get("/wecom", params=forged)
    assert resp.status == 403 and "signature" in await resp.text()

    stale = wc.server.verify_query("x", timestamp="1000000000")
    assert (await wc.w.client.get("/wecom", params=stale)).status == 403
    assert (await wc.w.client.get("/wecom", params={"echostr": "x"})).status == 400


async def test_no_wecom_routes_without_its_settings(client: Any) -> None:
    assert (await client.get("/wecom")).status == 404
    assert (await client.get("/console/login/wecom")).status == 404
    page = await client.get("/console/login")
    assert texts.WECOM_LOGIN_BUTTON not in await page.text()


# -- a judge on WeCom ------------------------------------------------------------------------


async def test_a_judge_on_wecom_gets_the_item_there_and_answers_from_there(
    wc: WeComWorld,
) -> None:
    w = wc.w
    await bind_judge(w)  # the judge's own WeChat too: WeCom wins, nobody is told twice
    await link_judge(wc)
    await verify_litigant(w)
    number = await ask(w, "法官您好，请问开庭时间定了吗？")
    await w.deliver()

    [card] = wc.fake.delivered_to(JUDGE_WC)
    assert card.msgtype == "textcard"
    assert f"新咨询 #{number}" in card.text and "请问开庭时间定了吗" in card.text
    assert card.url == f"http://court.example/console/items/{number}"
    assert card.payload["agentid"] == AGENT
    assert w.inbox(JUDGE_WX) == []  # not the Official Account

    said = await wc.say(JUDGE_WC, f"#{number} 您好，开庭定在12月3日上午9点。")
    assert said == texts.STAFF_ANSWERED.format(ticket=number)
    got = await w.delivered_to(LITIGANT)
    assert any(f"回复 #{number}：您好，开庭定在12月3日上午9点。" in t for t in got), got

    # Recorded as any answer, on the WeCom channel.
    async with w.deps.db.sessions() as s:
        inbound = (
            await s.execute(
                select(Message).where(
                    Message.openid == wecom_user(JUDGE_WC), Message.direction == "in"
                )
            )
        ).scalar_one()
    assert inbound.channel == "wecom"
    [event] = [
        e for e in await events(w, "message.in") if json.loads(e.payload)["channel"] == "wecom"
    ]
    assert event.actor == wecom_user(JUDGE_WC)
    assert await events(w, "ticket.answered")


async def test_todo_close_and_transfer_from_wecom(wc: WeComWorld) -> None:
    w = wc.w
    await link_judge(wc)
    await verify_litigant(w)
    first = await ask(w, "第一个问题")
    await w.say(LITIGANT, "0")
    second = await ask(w, "第二个问题")
    await w.deliver()

    todo = await wc.say(JUDGE_WC, "待办")
    assert todo.startswith("待处理事项") and f"#{first}" in todo and f"#{second}" in todo

    assert await wc.say(JUDGE_WC, f"#{first} 结") == texts.STAFF_CLOSED.format(ticket=first)
    moved = await wc.say(JUDGE_WC, f"#{second} 转 李四 休假")
    assert moved == texts.TRANSFERRED.format(ticket=second, name="李四")
    await w.deliver()
    assert any(f"#{second}" in t and "转给您的事项" in t for t in wc.inbox(OTHER_WC))
    # 李四 answers from his WeCom; 张伟 may no longer.
    refused = await wc.say(JUDGE_WC, f"#{second} 还是我来答")
    assert refused == texts.STAFF_NO_TICKET.format(ticket=second)
    assert await wc.say(OTHER_WC, f"#{second} 我来答复") == texts.STAFF_ANSWERED.format(
        ticket=second
    )
    assert (await wc.say(JUDGE_WC, "待办")) == texts.STAFF_TODO_EMPTY
    assert await events(w, "ticket.closed") and await events(w, "ticket.transferred")


async def test_forty_notices_in_a_minute_all_arrive_batched_past_wecoms_limit(
    wc: WeComWorld, frozen_clock: list[datetime]
) -> None:
    """WeCom drops what passes 30 a minute per member: the sender batches instead."""
    w = wc.w
    await link_judge(wc)
    await verify_litigant(w)
    await verify_litigant(w, OTHER_PARTY, "5678")
    said: list[str] = []
    for who, mark in ((LITIGANT, "甲"), (OTHER_PARTY, "乙")):
        said.append(f"{mark}问题")
        await ask(w, said[-1], who)
        for k in range(19):
            said.append(f"{mark}补充{k}")
            assert "已补充" in await w.say(who, said[-1])
    assert len(said) == 40
    await w.deliver()  # the clock stands still: only what fits this minute goes

    got = wc.fake.delivered_to(JUDGE_WC)
    assert wc.fake.dropped == []  # nothing past WeCom's limit
    assert len(got) <= 30
    everything = "\n".join(d.text for d in got)
    for words in said:
        assert re.search(rf"：{words}(\n|$)", everything), words
    assert any(d.text.startswith("通知较多，合并发送") for d in got)
    async with w.deps.db.sessions() as s:
        statuses = (
            await s.execute(select(Outbox.status).where(Outbox.channel == "wecom"))
        ).scalars()
        assert set(statuses) == {"sent"}
    # A minute on, the budget is back.
    frozen_clock[0] += timedelta(seconds=61)
    window = await wecom_sender.Budget(w.deps.redis).left(JUDGE_WC.lower())
    assert window.minute_left == 30


async def test_a_full_window_waits_and_nothing_is_dropped(wc: WeComWorld) -> None:
    budget = wecom_sender.Budget(wc.w.deps.redis)
    assert (await budget.take(JUDGE_WC.lower(), 30)).taken
    full = await budget.take(JUDGE_WC.lower(), 1)
    assert (
        not full.taken and full.full and timedelta(seconds=1) <= full.wait <= timedelta(seconds=61)
    )
    await link_judge(wc)
    await verify_litigant(wc.w)
    await ask(wc.w, "问题")
    await wc.w.deliver()
    assert wc.fake.delivered_to(JUDGE_WC) == []
    async with wc.w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.channel == "wecom"))).scalar_one()
    assert row.status == "pending" and "budget" in (row.last_error or "")


async def test_a_member_wecom_does_not_know_fails_the_row_and_a_stale_token_is_replaced(
    wc: WeComWorld, frozen_clock: list[datetime]
) -> None:
    await link_judge(wc, "Departed")  # left the court: no longer in WeCom
    await verify_litigant(wc.w)
    await ask(wc.w, "问题")
    await wc.w.deliver()
    async with wc.w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.channel == "wecom"))).scalar_one()
    assert row.status == "failed" and "81013" in (row.last_error or "")

    await link_judge(wc)
    frozen_clock[0] += timedelta(minutes=5)  # past the floor between two token fetches
    wc.fake.expire_tokens()  # WeCom ended the token: 40014, refreshed once, sent
    await ask(wc.w, "又一个问题")
    await wc.w.deliver()
    assert len(wc.fake.delivered_to(JUDGE_WC)) == 1
    assert wc.fake.tokens_issued == 2


# -- bad input on /wecom changes nothing --------------------------------------------------------


async def test_bad_signature_replay_and_hostile_xml_change_nothing(wc: WeComWorld) -> None:
    w = wc.w
    await link_judge(wc)
    before = await rows(w, Message)

    query, body = wc.server.request(wc.server.text_xml(JUDGE_WC, "待办"))
    forged = await wc.post({**query, "msg_signature": "f" * 40}, body)
    assert forged.status == 403 and "signature" in await forged.text()

    stale_query, stale_body = wc.server.request(
        wc.server.text_xml(JUDGE_WC, "待办"), timestamp="1000000000"
    )
    assert (await wc.post(stale_query, stale_body)).status == 403

    dtd = (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "boom">]>'
        "<xml><ToUserName>&x;</ToUserName><Encrypt>x</Encrypt></xml>"
    )
    hostile = await wc.post(query, dtd)
    assert hostile.status == 400 and "unsafe" in await hostile.text()
    # A DTD inside the ciphertext: signed and encrypted as WeCom would, refused all the same.
    inner_q, inner_body = wc.server.request(
        '<!DOCTYPE xml [<!ENTITY x "y">]><xml><FromUserName>&x;</FromUserName></xml>'
    )
    assert (await wc.post(inner_q, inner_body)).status == 400
    huge = await wc.post(query, "<xml>" + "a" * 70_000 + "</xml>")
    assert huge.status == 413
    assert await rows(w, Message) == before

    # The real one, then a replay of its timestamp and nonce with other words.
    assert (await wc.post(query, body)).status == 200
    after = await rows(w, Message)
    _, other_body = wc.server.request(
        wc.server.text_xml(JUDGE_WC, "#1 结"), timestamp=query["timestamp"], nonce=query["nonce"]
    )
    replay = await wc.post({**query, "msg_signature": _signature(other_body, query)}, other_body)
    assert replay.status == 403 and "already used" in await replay.text()
    # WeCom's own retry of the same message: the same answer, stored once.
    again = await wc.post(query, body)
    assert again.status == 200
    assert wc.server.read_reply(await again.text()) is not None
    assert await rows(w, Message) == after


def _signature(body: str, query: dict[str, str]) -> str:
    from bot.fakes.wecom.callbacks import sign

    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", body)
    assert encrypt
    return sign(WC_TOKEN, query["timestamp"], query["nonce"], encrypt.group(1))


# -- who is on WeCom ----------------------------------------------------------------------------


async def test_a_bind_code_sent_from_wecom_links_the_userid(wc: WeComWorld) -> None:
    w = wc.w
    newcomer = "NewJudge"
    wc.fake.add_member(newcomer)
    # Not linked: asked for the code, never led into a litigant's flow (a case code neither).
    assert await wc.say(newcomer, "你好") == texts.WECOM_NOT_LINKED
    assert await wc.say(newcomer, w.case["short_code"]) == texts.WECOM_NOT_LINKED
    assert await wc.say(newcomer, "待办") == texts.WECOM_NOT_LINKED

    async with w.deps.db.transaction() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        code = await issue_bind_code(s, judge, actor="test")
    bound = await wc.say(newcomer, code)
    assert bound == texts.STAFF_BOUND.format(name="张伟", username="zhangwei")
    async with w.deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert judge.wecom_userid == "newjudge" and judge.bind_code_hash is None
    assert await wc.say(newcomer, "待办") == texts.STAFF_TODO_EMPTY
    [bound_event] = await events(w, "staff.bound")
    assert bound_event.actor == "wecom:newjudge"
    # A wrong code counts as any wrong code.
    assert await wc.say("Stranger", "ABCD2345") == texts.BIND_CODE_BAD


async def test_the_staff_import_links_wecom_userids(wc: WeComWorld, tmp_path: Path) -> None:
    staff_file = tmp_path / "staff.csv"
    staff_file.write_text(
        "用户名,姓名,法院,角色,企业微信账号\n"
        "wangwu,王五,衡水市桃城区人民法院,judge,WangWu\n"
        "zhaoliu,赵六,衡水市桃城区人民法院,judge,LiSi\n"  # 李四's already
        "qianqi,钱七,衡水市桃城区人民法院,judge,bad userid!\n",
        encoding="utf-8",
    )
    report = await importer.import_staff(wc.w.deps.db, staff_file, progress=False)
    assert report.added == 1
    assert [line for line, _ in report.skipped] == [3, 4]
    async with wc.w.deps.db.sessions() as s:
        wangwu = (await s.execute(select(Staff).where(Staff.username == "wangwu"))).scalar_one()
        assert wangwu.wecom_userid == "wangwu"
        court = await s.get_one(Court, wangwu.court_id)
    # A file without the column leaves a link alone.
    again = tmp_path / "again.csv"
    again.write_text(f"用户名,姓名,法院,角色\nwangwu,王五,{court.name},judge\n", encoding="utf-8")
    assert (await importer.import_staff(wc.w.deps.db, again, progress=False)).unchanged == 1


# -- the console's sign-in with WeCom ------------------------------------------------------------


@dataclass
class Browser:
    """A browser that follows redirects across hosts (ours, WeCom's), cookies by hand (they
    are `Secure`, and this is http://). Our public base URL is the test server."""

    w: World
    user_agent: str = "Mozilla/5.0"
    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, url: str) -> tuple[int, str, str]:
        """Follows redirects: (status, body, the last URL)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            for _ in range(10):
                url = url.replace(
                    "http://court.example", str(self.w.client.make_url("")).rstrip("/")
                )
                if url.startswith("/"):
                    url = str(self.w.client.make_url(url))
                headers = {"User-Agent": self.user_agent}
                if self.cookies:
                    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                async with http.get(url, headers=headers, allow_redirects=False) as resp:
                    for header in resp.headers.getall("Set-Cookie", []):
                        jar: SimpleCookie = SimpleCookie()
                        jar.load(header)
                        for name, morsel in jar.items():
                            if morsel["max-age"] == "0" or not morsel.value:
                                self.cookies.pop(name, None)
                            else:
                                self.cookies[name] = morsel.value
                    if resp.status in (301, 302, 303) and resp.headers.get("Location"):
                        url = resp.headers["Location"]
                        continue
                    return resp.status, await resp.text(), url
        raise AssertionError("too many redirects")


async def test_wecom_sign_in_opens_the_console(wc: WeComWorld) -> None:
    w = wc.w
    await link_judge(wc)
    login = await w.client.get("/console/login")
    assert texts.WECOM_LOGIN_BUTTON in await login.text()

    # Inside WeCom's own browser: OAuth, silently.
    wc.fake.browser_as(JUDGE_WC)
    inside = Browser(w, user_agent="Mozilla/5.0 wxwork/4.1.30 MicroMessenger/7.0.1")
    status, page, url = await inside.get("/console/login/wecom")
    assert status == 200 and url.endswith("/console"), (status, url, page)
    assert "张伟" in page
    [signed] = await events(w, "console.signed_in")
    assert json.loads(signed.payload)["via"] == "wecom" and signed.actor == "staff:zhangwei"

    # Any other browser: WeCom's QR sign-in page, scanned with WeCom.
    wc.fake.scan_as(JUDGE_WC)
    desk = Browser(w)
    status, _, url = await desk.get("/console/login/wecom")
    assert status == 200 and url.endswith("/console")
    assert wc.fake.calls.count("/connect/oauth2/authorize") == 1
    assert wc.fake.calls.count("/wwlogin/sso/login") == 1
    assert len(await events(w, "console.signed_in")) == 2


async def test_wecom_sign_in_refuses_a_wrong_state_and_an_unknown_member(
    wc: WeComWorld,
) -> None:
    w = wc.w
    await link_judge(wc)
    # A code WeCom gave, but the sign-in was not started in this browser.
    code = wc.fake.code_for(JUDGE_WC)
    stranger = Browser(w, cookies={"mst_console_wecom": "mine"})
    status, page, _ = await stranger.get(f"/console/login/wecom/done?code={code}&state=theirs")
    assert status == 403 and texts.WECOM_LOGIN_EXPIRED.split("，")[0] in page
    assert "mst_console" not in stranger.cookies
    assert await events(w, "console.signed_in") == []

    # A member of the corp linked to no staff account.
    wc.fake.browser_as("Stranger")
    outsider = Browser(w, user_agent="wxwork/4.1")
    status, page, _ = await outsider.get("/console/login/wecom")
    assert status == 403 and "还没有关联工作人员账号" in page
    assert "mst_console" not in outsider.cookies
    [failed] = await events(w, "console.sign_in_failed")
    assert json.loads(failed.payload)["reason"] == "wecom_unknown_user"
    assert json.loads(failed.payload)["userid"] == "Stranger"
    assert await events(w, "console.signed_in") == []


# -- settings ----------------------------------------------------------------------------------


def test_wecom_settings_all_or_none(tmp_path: Path) -> None:
    base = {"MST_DATA_DIR": str(tmp_path)}
    assert load_settings(base, env_file=None).wecom is None
    full = {
        "WECOM_CORP_ID": CORP,
        "WECOM_AGENT_ID": str(AGENT),
        "WECOM_SECRET": WC_SECRET,
        "WECOM_TOKEN": WC_TOKEN,
        "WECOM_AES_KEY": WC_KEY,
    }
    wecom = load_settings({**base, **full}, env_file=None).wecom
    assert wecom is not None and wecom.agent_id == AGENT
    assert wecom.api_base == "https://qyapi.weixin.qq.com"
    half = {k: v for k, v in full.items() if k != "WECOM_TOKEN"}
    with pytest.raises(ConfigError, match="WECOM_TOKEN") as caught:
        load_settings({**base, **half}, env_file=None)
    assert "\n" not in str(caught.value)
    for name, bad in (("WECOM_AGENT_ID", "app"), ("WECOM_AES_KEY", "short")):
        with pytest.raises(ConfigError, match=name):
            load_settings({**base, **full, name: bad}, env_file=None)


def test_words_become_wecom_messages_without_being_cut() -> None:
    short = "新咨询 #3\n案号：(2026)冀1102民初1234号\n原告王**：<b>问题</b>"
    [card] = wecom_sender.messages("", short, "https://court.example/console/items/3")
    assert card["msgtype"] == "textcard"
    assert card["textcard"]["title"] == "新咨询 #3"
    assert "&lt;b&gt;问题&lt;/b&gt;" in card["textcard"]["description"]
    assert card["textcard"]["btntxt"] == "详情"
    # Too long for a card: text, split at WeCom's 2,048 bytes, the link at the end.
    long = "新咨询 #4\n" + "\n".join(f"第{i}行：" + "字" * 40 for i in range(60))
    parts = wecom_sender.messages("", long, "https://court.example/console/items/4")
    assert len(parts) > 1 and all(p["msgtype"] == "text" for p in parts)
    contents = [p["text"]["content"] for p in parts]
    assert all(len(c.encode()) <= 2048 for c in contents)
    assert all(c.endswith(texts.WECOM_MORE) for c in contents[:-1])
    joined = "\n".join(c.removesuffix("\n" + texts.WECOM_MORE) for c in contents)
    assert joined == long + "\nhttps://court.example/console/items/4"
