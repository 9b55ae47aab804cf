"""A channel is one sub-package: the console (bot/channels/console) touches no flow and no
rule, and a litigant gets through it what they get on WeChat, rendered the console's way.
The story is driven at the Inbound/Reply level (tests.harness), where every channel meets
the flows."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import jobs
from bot.channels.console import CHANNEL, Console, ConsoleSender, render
from bot.core.reply import Choice, Link, Reply, as_text
from bot.dialog.deps import Deps
from handlers import texts
from storage.models import Message, Outbox, Ticket
from tests.conftest import CASE_NUMBER, COURT
from tests.harness import keys, labels, say

PERSON = "王某某"
MENU = {
    "1": "咨询法官",
    "2": "投诉举报",
    "3": "预约调解",
    "4": "执行进度",
    "5": "评价服务",
    "我的诉求": "查看办理情况",
}


@pytest.mark.parametrize("channel", [CHANNEL, "miniprogram"])
async def test_a_litigant_verifies_and_asks_with_choices_as_data(
    deps: Deps, sample_case: dict[str, Any], channel: str
) -> None:
    greeting = await say(deps, PERSON, sample_case["short_code"], channel=channel)
    assert greeting.text.startswith(f"您好！{texts.CODE_TYPED}：\n{COURT}\n{CASE_NUMBER}")
    assert greeting.text.endswith(texts.ASK_DIGITS) and greeting.choices == ()
    assert greeting.item == f"case:{sample_case['case_id']}"

    menu = await say(deps, PERSON, "1234", channel=channel)
    assert menu.text.startswith("验证成功！您是本案的原告王**。")
    assert menu.text.endswith(f"当前案件：{CASE_NUMBER}\n请回复数字选择：")
    assert labels(menu) == MENU and keys(menu) == list(MENU)
    assert "\n1 咨询法官\n" in as_text(menu)  # WeChat's rendering of the same reply

    prompt = await say(deps, PERSON, "1", channel=channel)
    assert prompt == Reply(
        texts.ASK_PROMPT_LEAD, (Choice("0", "返回菜单", chat="发送 0 返回菜单。"),)
    )

    received = await say(deps, PERSON, "请问什么时候开庭？", channel=channel)
    async with deps.db.sessions() as s:
        [ticket] = (await s.execute(select(Ticket))).scalars().all()
        said = (await s.execute(select(Message).order_by(Message.id))).scalars().all()
    assert received.item == f"ticket:{ticket.id}" and ticket.openid == PERSON
    assert received.text.startswith(f"已收到您的咨询，编号 #{ticket.id}。")
    [receipt] = received.links
    assert receipt.label == texts.RECEIPT and receipt.url.startswith("http://court.example/v/")
    assert f"回执：{receipt.url}" in received.text
    assert keys(received) == ["0"]
    # Every message in and out is kept, on its channel, the answers as the chat reads them.
    assert {m.channel for m in said} == {channel}
    assert [m.direction for m in said] == ["in", "out"] * 4
    assert said[-1].content == as_text(received) and said[3].content == as_text(menu)


async def test_the_console_prints_choices_its_own_way(
    deps: Deps, sample_case: dict[str, Any]
) -> None:
    out = io.StringIO()
    console = Console(deps, PERSON, out)
    await console.say(sample_case["short_code"])
    menu = await console.say("1234")
    assert menu is not None and labels(menu) == MENU
    shown = out.getvalue()
    assert "[1] 咨询法官\n[2] 投诉举报\n[3] 预约调解\n[4] 执行进度\n[5] 评价服务\n" in shown
    assert "[我的诉求] 查看办理情况\n" in shown
    assert "\n1 咨询法官" not in shown  # WeChat's numbered lines are WeChat's
    assert shown.endswith(render(menu))

    out.truncate(0)
    out.seek(0)
    await console.say("1")
    reply = await console.say("请问什么时候开庭？")
    assert reply is not None
    [receipt] = reply.links
    assert out.getvalue() == (
        f"{texts.ASK_PROMPT_LEAD}\n[0] 返回菜单\n"
        f"{reply.text}\n[0] 返回菜单\n{texts.RECEIPT}: {receipt.url}\n"
    )


def test_render_shows_words_choices_footer_and_links() -> None:
    reply = Reply(
        "您验证过的案件：",
        (Choice("1", "甲案"), Choice("0", "返回菜单", chat="")),
        links=(Link("进入调解室", "https://room.example/r/1"),),
        footer="请回复序号切换。",
    )
    assert render(reply) == (
        "您验证过的案件：\n[1] 甲案\n[0] 返回菜单\n请回复序号切换。\n"
        "进入调解室: https://room.example/r/1\n"
    )


async def test_the_outbox_reaches_a_console_user_through_its_sender(deps: Deps) -> None:
    out = io.StringIO()
    deps.senders = {CHANNEL: ConsoleSender(out)}
    async with deps.db.transaction() as s:
        s.add(
            Outbox(
                channel=CHANNEL,
                recipient=PERSON,
                kind="cs_text",
                payload=json.dumps({"text": "法官已答复您的咨询 #1。"}, ensure_ascii=False),
            )
        )
    assert await jobs.deliver_outbox(deps) == 1
    assert out.getvalue() == f"（{PERSON} 收到通知）\n法官已答复您的咨询 #1。\n"
    async with deps.db.sessions() as s:
        [row] = (await s.execute(select(Outbox))).scalars().all()
    assert row.status == "sent"


async def test_mst_console_is_the_channel_at_a_terminal(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Any
) -> None:
    """`mst console --as NAME`: lines typed are messages, answers come back the console's
    way, an empty line leaves. The real console script, on the test's database."""
    import asyncio

    from tests.world import MST

    proc = await asyncio.create_subprocess_exec(
        str(MST),
        "console",
        "--as",
        PERSON,
        env=cli_env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    typed = f"{sample_case['short_code']}\n1234\n\n".encode()
    out, err = await asyncio.wait_for(proc.communicate(typed), timeout=60)
    assert proc.returncode == 0, err.decode()
    said = out.decode()
    assert f"{texts.CODE_TYPED}：\n{COURT}\n{CASE_NUMBER}" in said
    assert "[1] 咨询法官" in said and "\n1 咨询法官" not in said
    async with deps.db.sessions() as s:
        stored = (
            await s.execute(select(Message.channel).where(Message.openid == PERSON))
        ).scalars()
        assert set(stored) == {CHANNEL}
