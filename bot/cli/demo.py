"""`mst demo` and `mst chat`: watch the loop work, then talk to it yourself.

The demo runs the real server on the embedded defaults next to the local fake WeChat
API, loads a small sample court, and plays a scripted exchange through the real
`/wechat` callback: scan, verify, ask, the judge is told and answers, the litigant
receives it. Then it keeps serving for `mst chat`. With `--wecom` the judge is on the
court's WeCom app instead (a local fake WeCom, served by the fake WeChat API's server under
/wecom): bound by the code sent from WeCom, told in WeCom, answering through `/wecom`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import sys
import tempfile
import textwrap
from dataclasses import replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import select, update
from sqlmodel import col

from bot.app import logs
from bot.app.config import Settings
from bot.app.factory import close_deps, create_app, open_deps
from bot.core.clock import court_tz, now
from bot.core.settings import (
    DEFAULT_PUBLIC_BASE_URL,
    DEMO_MP_APP_ID,
    DEMO_MP_APP_SECRET,
    WeComSettings,
)
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_api_app
from bot.fakes.wechat.callbacks import WeChatServer, event_xml, text_xml
from bot.fakes.wecom.api import PREFIX as WECOM_PREFIX
from bot.fakes.wecom.api import FakeWeCom
from bot.fakes.wecom.api import mount as mount_wecom
from bot.fakes.wecom.callbacks import WeComServer
from bot.rules import enforcement, importer, mediation
from bot.rules import staff as staff_accounts
from qr import codes
from storage.models import Case, MediationSlot, Staff

COURT = "衡水市桃城区人民法院"
STAFF = [
    {"username": "zhangwei", "name": "张伟", "court": COURT, "roles": ["judge"], "team": "民一庭"},
    {
        "username": "liuyang",
        "name": "刘洋",
        "court": COURT,
        "roles": ["reception"],
        "team": "集约接待",
    },
    {
        "username": "zhaomin",
        "name": "赵敏",
        "court": COURT,
        "roles": ["supervision"],
        "team": "督查室",
    },
    {
        "username": "chenjing",
        "name": "陈静",
        "court": COURT,
        "roles": ["mediator"],
        "speciality": "婚姻家庭、借贷",
    },
    {
        "username": "wanglei",
        "name": "王磊",
        "court": COURT,
        "roles": ["mediator"],
        "speciality": "合同、物业",
    },
]
ENFORCEMENT_CASE = "(2026)冀1102执356号"
EVENTS = [
    {
        "event_id": "demo-1",
        "case_number": ENFORCEMENT_CASE,
        "kind": "filing",
        "at": "2026-10-12T09:00:00+08:00",
    },
    {
        "event_id": "demo-2",
        "case_number": ENFORCEMENT_CASE,
        "kind": "asset_search",
        "at": "2026-10-14T10:00:00+08:00",
        "note": "已查询银行存款、车辆、房产",
    },
    {
        "event_id": "demo-3",
        "case_number": ENFORCEMENT_CASE,
        "kind": "freeze",
        "at": "2026-10-20T15:00:00+08:00",
        "note": "冻结被执行人银行账户一个",
    },
    {
        "event_id": "demo-4",
        "case_number": ENFORCEMENT_CASE,
        "kind": "received",
        "at": "2026-11-05T11:00:00+08:00",
        "amount": "12000.00",
    },
]
CASES = [
    {
        "court": COURT,
        "case_number": "(2026)冀1102民初1234号",
        "case_type": "民事",
        "cause": "民间借贷纠纷",
        "judge": "zhangwei",
        "filed_on": "2026-11-02",
        "parties": [
            {"role": "原告", "name": "王某某", "phone": "13800001234"},
            {"role": "被告", "name": "李某", "phone": "13900005678"},
        ],
    },
    {
        "court": COURT,
        "case_number": "(2026)冀1102执356号",
        "case_type": "执行",
        "cause": "申请执行人民币借款",
        "judge": "zhangwei",
        "filed_on": "2026-10-12",
        "parties": [
            {"role": "申请执行人", "name": "孙某", "phone": "13700002468"},
            {"role": "被执行人", "name": "周某", "phone": "13600001357"},
        ],
    },
]
JUDGE_OPENID = "oDemoJudgeZhangWei000000001"
# The demo's WeCom app (`mst demo --wecom`), all of it local.
DEMO_WECOM = WeComSettings(
    corp_id="wwdemo00000000mst",
    agent_id=1000002,
    secret="demo-wecom-secret",
    token="mashangtongwecom",
    aes_key="TWFTaGFuZ1RvbmdEZW1vV2VDb21LZXkwMTIzNDU2Nzg",
)
JUDGE_WECOM = "ZhangWei"


_LINK = re.compile(r"(https?://\S+)")


def _bubble(who: str, text: str, *, right: bool = False) -> str:
    width = 44
    lines: list[str] = []
    for para in text.splitlines():
        # A link (the room's, a receipt's) stays whole on a line of its own, to be opened.
        parts = [part for part in _LINK.split(para) if part.strip()]
        wrapped = [
            line
            for part in parts
            for line in ([part] if _LINK.fullmatch(part) else textwrap.wrap(part, width))
        ]
        lines.extend(wrapped or [""])
    pad = " " * 30 if right else ""
    return "\n".join([f"{pad}【{who}】"] + [f"{pad}  {line}" for line in lines]) + "\n"


async def _load_sample(settings: Settings) -> None:
    deps = await open_deps(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            staff_file, case_file = Path(tmp, "staff.json"), Path(tmp, "cases.json")
            staff_file.write_text(json.dumps(STAFF, ensure_ascii=False))  # noqa: ASYNC240 (tiny)
            case_file.write_text(json.dumps(CASES, ensure_ascii=False))  # noqa: ASYNC240
            await importer.import_staff(deps.db, staff_file, progress=False)
            await importer.import_cases(
                deps.db, case_file, secret=settings.secret_key, progress=False
            )
        async with deps.db.transaction() as session:
            await enforcement.ingest(
                session, list(enumerate(EVENTS, 1)), enforcement.Outcome(), actor="demo"
            )
            first = (now() + timedelta(days=1)).astimezone(court_tz()).date()
            # This server's room page (bot/web.py), by a signed token: never a guessable id.
            room = settings.public_base_url + "/room/{token}"
            for username, at in (("chenjing", time(9, 30)), ("wanglei", time(14, 30))):
                mediator = await staff_accounts.by_username(session, username)
                assert mediator is not None
                await mediation.add_slots(
                    session,
                    mediator,
                    mediation.weekly_starts(first, at, 2, {0, 1, 2, 3, 4}),
                    minutes=60,
                    capacity=1,
                    room_url=room,
                )
            # Slots an older demo made pointed at /room/<slot id>, which no page answers.
            await session.execute(
                update(MediationSlot)
                .where(col(MediationSlot.room_url) == settings.public_base_url + "/room/{slot}")
                .values(room_url=room)
            )
    finally:
        await close_deps(deps)


async def run_demo(
    settings: Settings, host: str, port: int, api_port: int, *, wecom: bool = False
) -> None:
    # A person reads the chat this prints: a line per request and per delivery run (every
    # half second here) would bury it. Their failures still show (WARNING and above).
    for quiet in (logs.http_log, logs.job_log):
        quiet.setLevel(logging.WARNING)
    fake = FakeWeChat(app_id=settings.wechat.app_id, app_secret=settings.wechat.app_secret)
    fake_base = f"http://{host}:{api_port}"
    fake_wecom = FakeWeCom(DEMO_WECOM.corp_id, DEMO_WECOM.secret, DEMO_WECOM.agent_id)
    fake_wecom.add_member(JUDGE_WECOM, "张伟")
    if wecom:
        wecom_base = fake_base + WECOM_PREFIX
        settings = replace(
            settings,
            wecom=replace(
                DEMO_WECOM, api_base=wecom_base, open_base=wecom_base, login_base=wecom_base
            ),
        )
    settings = replace(
        settings,
        wechat=replace(settings.wechat, api_base=fake_base),
        # The mini-program and WeChat's web authorisation: the same local fake.
        miniprogram=replace(
            settings.miniprogram,
            app_id=settings.miniprogram.app_id or DEMO_MP_APP_ID,
            app_secret=settings.miniprogram.app_secret or DEMO_MP_APP_SECRET,
            open_base=fake_base,
        ),
        outbox_interval_s=0.5,
    )
    if settings.public_base_url == DEFAULT_PUBLIC_BASE_URL:  # links in the demo open this server
        settings = replace(settings, public_base_url=f"http://{host}:{port}")
    await _load_sample(settings)

    runners = []
    fake_app = fake_api_app(fake)
    mount_wecom(fake_app, fake_wecom)  # one local server stands in for WeChat and WeCom
    for app, p in ((fake_app, api_port), (create_app(settings), port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, p).start()
        runners.append(runner)
    base = f"http://{host}:{port}"
    print(f"码上通 demo: server {base}/wechat, fake WeChat API http://{host}:{api_port}\n")
    try:
        token = await _play(settings, base, fake, fake_wecom if wecom else None)
        await _play_app(settings, base, fake, token)
        print(
            "The server keeps running. Talk to it yourself, in another terminal:\n"
            f"  mst chat --as oMyOwnWeChat --url {base} --api http://{host}:{api_port}\n"
            "then send the case code printed above, the last four digits 1234, and 1.\n"
            "Press Ctrl+C to stop."
        )
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _play(
    settings: Settings, base: str, fake: FakeWeChat, fake_wecom: FakeWeCom | None = None
) -> str:
    """The chat exchange; returns the case code's token (for the app's turn). With
    `fake_wecom`, the judge is on WeCom."""
    wechat = WeChatServer(settings.wechat.token, settings.wechat.app_id, settings.wechat.aes_key)
    litigant = "oDemoLitigant" + secrets.token_hex(6)  # a new visitor every run
    deps = await open_deps(settings)
    try:
        async with deps.db.transaction() as session:
            judge = (
                await session.execute(select(Staff).where(col(Staff.username) == "zhangwei"))
            ).scalar_one()
            if fake_wecom is None:  # a run with --wecom before linked the demo's judge there
                judge.wecom_userid = None
            bind_code = await staff_accounts.issue_bind_code(session, judge, actor="demo")
            case = (
                await session.execute(
                    select(Case).where(col(Case.case_number) == CASES[0]["case_number"])
                )
            ).scalar_one()
            code = await codes.active_code(session, case.id or 0)
            assert code is not None
    finally:
        await close_deps(deps)
    print(
        f"Sample case {case.case_number}: case code {code.short_code[:5]}-{code.short_code[5:]}\n"
    )
    print("=" * 78)
    print(f"{'当事人 (litigant)':<40}{'法官 (judge)':>38}")
    print("=" * 78)

    async with aiohttp.ClientSession() as http:

        async def send(xml: str) -> str:
            query, body = wechat.request(xml)
            async with http.post(f"{base}/wechat", params=query, data=body.encode()) as resp:
                reply = wechat.read_reply(await resp.text(), query)
            return "" if reply is None else str(reply["Content"])

        async def arrived(openid: str, already: int) -> str:
            for _ in range(100):  # the outbox worker delivers within a second or so
                got = fake.sent_to(openid)
                if len(got) > already:
                    return got[-1].text
                await asyncio.sleep(0.1)
            return "(nothing arrived)"

        wecom = settings.wecom
        on_wecom = (
            WeComServer(wecom.token, wecom.aes_key, wecom.corp_id, wecom.agent_id)
            if wecom is not None and fake_wecom is not None
            else None
        )

        async def judge_says(text: str) -> str:
            """The judge's message: from WeCom (/wecom) or their WeChat (/wechat)."""
            if on_wecom is None:
                return await send(text_xml(JUDGE_OPENID, text))
            query, body = on_wecom.request(on_wecom.text_xml(JUDGE_WECOM, text))
            async with http.post(f"{base}/wecom", params=query, data=body.encode()) as resp:
                reply = on_wecom.read_reply(await resp.text())
            return "" if reply is None else str(reply["Content"])

        async def judge_told() -> str:
            if fake_wecom is None or on_wecom is None:
                return await arrived(JUDGE_OPENID, 0)
            for _ in range(100):
                if got := fake_wecom.inbox(JUDGE_WECOM):
                    return got[-1]
                await asyncio.sleep(0.1)
            return "(nothing arrived)"

        print(_bubble("法官张伟", bind_code, right=True))
        print(_bubble("码上通", await judge_says(bind_code), right=True))
        steps: list[tuple[str, str, Any]] = [
            ("litigant", "[扫描案件材料上的二维码]", event_xml(litigant, "SCAN", code.token)),
            ("litigant", "1234", text_xml(litigant, "1234")),
            ("litigant", "1", text_xml(litigant, "1")),
            (
                "litigant",
                "法官您好，请问开庭时间定了吗？",
                text_xml(litigant, "法官您好，请问开庭时间定了吗？"),
            ),
        ]
        for who, shown, xml in steps:
            right = who == "judge"
            print(_bubble("法官张伟" if right else "当事人", shown, right=right))
            print(_bubble("码上通", await send(xml), right=right))
        how = "企业微信应用消息" if on_wecom is not None else "客服消息"
        notice = await judge_told()
        print(_bubble(f"码上通 → 法官（{how}）", notice, right=True))
        number = notice.split("#", 1)[1].split()[0].split("\n")[0]
        answer = f"#{number} 您好，开庭定在12月3日上午9点，第三法庭。请带身份证和证据原件。"
        print(_bubble("法官张伟" + ("（企业微信）" if on_wecom else ""), answer, right=True))
        print(_bubble("码上通", await judge_says(answer), right=True))
        print(_bubble("码上通 → 当事人（客服消息）", await arrived(litigant, 0)))
    print("=" * 78)
    sys.stdout.flush()
    return code.token


async def _play_app(settings: Settings, base: str, fake: FakeWeChat, case_token: str) -> None:
    """The same case through the mini-program's API (/api/mp/v1): sign in, verify with the
    last four digits, ask; the judge's answer is then in the app's /events."""
    api = f"{base}/api/mp/v1"
    openid = "oDemoApp" + secrets.token_hex(6)
    print("\n小程序 (mini-program API, the same flows):")
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, token: str | None, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, api + path, json=body, headers=headers) as resp:
                return await resp.json()

        signed = await call("POST", "/login", None, {"code": fake.login_code(openid)})
        token = signed["token"]
        print(_bubble("小程序", "wx.login() → POST /login → 会话令牌"))
        said = await call("POST", "/verify", token, {"scan": case_token, "digits": "1234"})
        print(_bubble("码上通", said["message"]))
        case_id = said["case"]["id"] if said.get("case") else 0
        asked = await call(
            "POST",
            "/items",
            token,
            {"case_id": case_id, "kind": "question", "text": "请问需要带哪些材料？"},
        )
        print(_bubble("当事人（小程序）", "请问需要带哪些材料？"))
        print(_bubble("码上通", asked.get("message", str(asked))))
    print("=" * 78)
    print(f"H5 page of this case (open it in WeChat, or any browser): {base}/q/{case_token}")
    print(f"Mini-program API: {api}/openapi.json\n")
    sys.stdout.flush()


async def run_chat(settings: Settings, openid: str, url: str, api: str) -> None:
    """A terminal stand-in for one WeChat user: type messages; see replies and pushes."""
    wechat = WeChatServer(settings.wechat.token, settings.wechat.app_id, settings.wechat.aes_key)
    seen = 0
    print(f"You are WeChat user {openid}. Type a message and press Enter.")
    print("  /scan TOKEN   scan a case code      /click KEY   press a menu button")
    print("  (empty line)  check for new messages   /quit        leave\n")
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:

        async def pushed() -> None:
            nonlocal seen
            try:
                async with http.get(
                    f"{api}/_fake/sent", params={"touser": openid, "after": str(seen)}
                ) as resp:
                    data = await resp.json()
            except aiohttp.ClientError:
                return
            for item in data["sent"]:
                print(_bubble("客服消息" if item["kind"] == "custom" else "模板消息", item["text"]))
            seen = int(data["next"])

        await pushed()
        while True:
            raw = await loop.run_in_executor(None, sys.stdin.readline)
            if raw == "":  # end of input
                await asyncio.sleep(1.0)
                await pushed()
                return
            line = raw.strip()
            if line in ("/quit", "/exit"):
                return
            if line:
                if line.startswith("/scan "):
                    xml = event_xml(openid, "SCAN", line.split(maxsplit=1)[1])
                elif line.startswith("/click "):
                    xml = event_xml(openid, "CLICK", line.split(maxsplit=1)[1])
                else:
                    xml = text_xml(openid, line)
                query, body = wechat.request(xml)
                async with http.post(f"{url}/wechat", params=query, data=body.encode()) as resp:
                    reply = (
                        wechat.read_reply(await resp.text(), query) if resp.status == 200 else None
                    )
                    if resp.status != 200:
                        print(f"(server answered HTTP {resp.status}: {await resp.text()})")
                if reply:
                    print(_bubble("码上通", str(reply["Content"])))
                await asyncio.sleep(1.0)  # give the worker a moment to deliver pushes
            await pushed()
