"""The harness the tests share: a WeChat user's side of the server (World: say, send,
deliver, inbox), the people in it, and the `mst` console script run as an operator runs it.
The fixtures that build them (world, frozen_clock, cli_env) are in conftest.py."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import jobs
from bot.app.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.callbacks import WeChatServer, event_xml, text_xml
from bot.rules.staff import issue_bind_code
from handlers import texts
from storage.models import Staff

SECRET = "app-secret"
LITIGANT = "oLitigant00000000000000001"
JUDGE_WX = "oJudge000000000000000000001"
OTHER_WX = "oOtherJudge0000000000000001"


@dataclass
class World:
    client: TestClient
    deps: Deps
    fake: FakeWeChat
    wechat: WeChatServer
    case: dict[str, Any]

    async def say(self, openid: str, text: str, *, msg_id: int | None = None) -> str:
        return await self.send(text_xml(openid, text, msg_id=msg_id))

    async def send(self, xml: str) -> str:
        query, body = self.wechat.request(xml)
        resp = await self.client.post("/wechat", params=query, data=body.encode())
        assert resp.status == 200, await resp.text()
        reply = self.wechat.read_reply(await resp.text(), query)
        return "" if reply is None else str(reply["Content"])

    async def deliver(self) -> int:
        return await jobs.deliver_outbox(self.deps)

    async def delivered_to(self, openid: str) -> list[str]:
        """Wait for an answer still on its way behind a `success` (its commit sets
        deps.wakeup), deliver it, and return what the person has received."""
        while not self.inbox(openid):
            await asyncio.wait_for(self.deps.wakeup.wait(), 30)
            self.deps.wakeup.clear()
            await self.deliver()
        return self.inbox(openid)

    def inbox(self, openid: str) -> list[str]:
        return [s.text for s in self.fake.sent_to(openid)]


async def bind_judge(w: World, username: str = "zhangwei", openid: str = JUDGE_WX) -> None:
    async with w.deps.db.transaction() as s:
        member = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
        code = await issue_bind_code(s, member, actor="test")
    assert "绑定成功" in await w.say(openid, code)


async def verify_litigant(w: World, openid: str = LITIGANT, digits: str = "1234") -> None:
    greeting = await w.send(event_xml(openid, "SCAN", w.case["token"]))
    assert greeting.startswith("您好！您扫描的是：") and texts.ASK_DIGITS in greeting
    assert "验证成功" in await w.say(openid, digits)


async def ask(w: World, question: str, openid: str = LITIGANT) -> int:
    assert await w.say(openid, "1") == texts.ASK_PROMPT
    reply = await w.say(openid, question)
    match = re.search(r"#(\d+)", reply)
    assert match, reply
    return int(match.group(1))


# -- the console script -----------------------------------------------------------------

MST = Path(sys.executable).parent / "mst"


PUBLIC = "https://mst.court.example/hs"  # not the fixture's: proves the CLI reads its env


CONFIG_PREFIXES = (
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_BASE_URL",
    "WECHAT_",
    "WECOM_",
    "MP_",
    "MST_",
)


@dataclass
class Run:
    code: int
    out: str
    err: str


async def mst(env: dict[str, str], cwd: Path, *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(MST),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
