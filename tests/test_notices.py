"""Notices are data (bot.core.notice) until a sender puts them into words (handlers.notices):
each kind reads exactly as the rules wrote it before they held no words, times in the
court's time zone; a row stored as a notice reaches WeChat with the same text, and the same
template title when the 48-hour window has closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import clock, notice
from bot.core.notice import Notice, Unreadable, iso
from bot.outbox import queue as outbox
from handlers import texts
from handlers.notices import letter_text, words
from storage.models import Case, Outbox
from tests.conftest import CASE_NUMBER
from tests.world import LITIGANT, World

CN = "(2026)冀1102民初1234号"
OTHER_CN = "(2026)冀1102民初9号"
AT = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)  # 09:30 China time, a Wednesday
SAID_AT = "11月25日 周三 上午9:30"
WAS = AT - timedelta(days=1)
SAID_WAS = "11月24日 周二 上午9:30"
LINK = "https://mst.court.example/room/abc"
ITEM: dict[str, Any] = {
    "ticket": 12,
    "kind": "question",
    "case_number": CN,
    "party_role": "原告",
    "party_name": "王**",
    "text": "开庭需要带什么？",
}

# (notice, the template title it had (None: the default), the text it was sent as): the
# expected words are those the rules wrote before (bot/rules/{tickets,escalation,mediation,
# enforcement}.py), with the same inputs.
WAS_SENT: list[tuple[Notice, str | None, str]] = [
    (
        Notice(notice.TICKET_NEW_FOR_STAFF, ITEM),
        None,
        f"新咨询 #12\n案号：{CN}\n原告王**：开庭需要带什么？\n回复请发送：#12 回复内容",
    ),
    (
        Notice(
            notice.TICKET_NEW_FOR_STAFF,
            {**ITEM, "kind": "complaint", "party_role": None, "party_name": None},
        ),
        None,
        f"新投诉举报 #12\n案号：{CN}\n当事人：开庭需要带什么？\n回复请发送：#12 回复内容",
    ),
    (
        Notice(notice.TICKET_NEW_FOR_STAFF, {**ITEM, "kind": "something_new"}),
        None,
        f"新诉求 #12\n案号：{CN}\n原告王**：开庭需要带什么？\n回复请发送：#12 回复内容",
    ),
    (
        Notice(notice.TICKET_ADDED_FOR_STAFF, {**ITEM, "text": "还有一张照片"}),
        None,
        f"#12 补充\n案号：{CN}\n原告王**：还有一张照片\n回复请发送：#12 回复内容",
    ),
    (
        Notice(
            notice.TICKET_MOVED_FOR_STAFF,
            {**ITEM, "kind": "asset_lead", "reason": "到期未答复，升级办理"},
        ),
        None,
        f"转给您的事项（到期未答复，升级办理）：\n财产线索 #12\n案号：{CN}\n"
        "原告王**：开庭需要带什么？\n回复请发送：#12 回复内容",
    ),
    (
        Notice(
            notice.TICKET_MOVED_FOR_PARTY,
            {
                "ticket": 12,
                "kind": "question",
                "holder_name": "张伟",
                "holder_role": "judge",
                "inbox": None,
                "due": iso(AT),
            },
        ),
        "#12 办理人变更",
        f"您的咨询 #12 现由法官张伟办理，会在 {SAID_AT} 前答复您。",
    ),
    (
        Notice(
            notice.TICKET_MOVED_FOR_PARTY,
            {
                "ticket": 12,
                "kind": "complaint",
                "holder_name": None,
                "holder_role": None,
                "inbox": "supervision",
                "due": None,
            },
        ),
        "#12 办理人变更",
        "您的投诉举报 #12 现由法院督查室办理。",
    ),
    (
        Notice(
            notice.TICKET_MOVED_FOR_PARTY,
            {
                "ticket": 12,
                "kind": "question",
                "holder_name": "李明",
                "holder_role": None,
                "inbox": "reception",
                "due": None,
            },
        ),
        "#12 办理人变更",
        "您的咨询 #12 现由工作人员李明办理。",
    ),
    (
        Notice(
            notice.TICKET_MOVED_FOR_PARTY,
            {
                "ticket": 12,
                "kind": "question",
                "holder_name": None,
                "holder_role": None,
                "inbox": "reception",
                "due": iso(AT),
            },
        ),
        "#12 办理人变更",
        f"您的咨询 #12 现由法院接待人员办理，会在 {SAID_AT} 前答复您。",
    ),
    (
        Notice(
            notice.TICKET_ANSWERED,
            {"ticket": 12, "staff_name": "张伟", "staff_role": "judge", "text": "带身份证。"},
        ),
        "#12 有新的答复",
        "法官张伟回复 #12：带身份证。",
    ),
    (
        Notice(
            notice.TICKET_ANSWERED,
            {"ticket": 12, "staff_name": "赵六", "staff_role": None, "text": "已收到"},
        ),
        "#12 有新的答复",
        "工作人员赵六回复 #12：已收到",
    ),
    (
        Notice(notice.TICKET_CLOSED, {"ticket": 12, "kind": "complaint"}),
        "#12 已办结",
        "您的投诉举报 #12 已办结。\n请为本次办理评价，回复数字：\n1 满意\n2 基本满意\n3 不满意",
    ),
    (
        Notice(notice.TICKET_WARNED, {"ticket": 12, "case_number": CN, "due": iso(AT)}),
        None,
        f"提醒：#12（{CN}）将于 {SAID_AT} 到期，请尽快答复。",
    ),
    (
        Notice(
            notice.STAFF_DIGEST,
            {
                "name": "张伟",
                "count": 3,
                "due_today": 1,
                "items": [
                    {"ticket": 12, "case_number": CN, "status": "open", "due": iso(AT)},
                    {"ticket": 13, "case_number": OTHER_CN, "status": "answered", "due": None},
                    {"ticket": 14, "case_number": CN, "status": "weird", "due": None},
                ],
            },
        ),
        None,
        f"早上好，张伟。您有 3 件待办，其中今天到期 1 件：\n#12 {CN} 待答复，{SAID_AT}到期\n"
        f"#13 {OTHER_CN} 已答复\n#14 {CN} weird",
    ),
    (
        Notice(
            notice.MEDIATION_BOOKED_FOR_PARTY, {"when": iso(AT), "mediator": "陈静", "link": LINK}
        ),
        "远程调解预约",
        f"本案已预约远程调解：{SAID_AT}，调解员陈静。\n到时请点击链接进入调解室：{LINK}",
    ),
    (
        Notice(
            notice.MEDIATION_BOOKED_FOR_STAFF,
            {"case_number": CN, "when": iso(AT), "party_role": "被告"},
        ),
        "远程调解预约",
        f"新的调解预约：{CN}，{SAID_AT}，由被告预约。",
    ),
    (
        Notice(
            notice.MEDIATION_BOOKED_FOR_STAFF,
            {"case_number": CN, "when": iso(AT), "party_role": None},
        ),
        "远程调解预约",
        f"新的调解预约：{CN}，{SAID_AT}，由当事人预约。",
    ),
    (
        Notice(
            notice.MEDIATION_MOVED_FOR_PARTY,
            {"when": iso(AT), "mediator": "陈静", "was": iso(WAS), "link": LINK},
        ),
        "远程调解预约",
        f"本案的远程调解改期了：{SAID_AT}，调解员陈静（原来是 {SAID_WAS}）。\n"
        f"到时请点击链接进入调解室：{LINK}",
    ),
    (
        Notice(
            notice.MEDIATION_MOVED_FOR_STAFF,
            {"case_number": CN, "when": iso(AT), "was": iso(WAS)},
        ),
        "远程调解预约",
        f"调解预约改期：{CN}，{SAID_WAS} 改到 {SAID_AT}。",
    ),
    (
        Notice(notice.MEDIATION_WITHDRAWN_FOR_PARTY, {"when": iso(AT), "mediator": "陈静"}),
        "远程调解预约",
        f"法院取消了本案 {SAID_AT} 的远程调解（调解员陈静）。\n"
        "如仍需调解，请在菜单里选择“预约调解”重新预约。",
    ),
    (
        Notice(notice.MEDIATION_WITHDRAWN_FOR_STAFF, {"case_number": CN, "when": iso(AT)}),
        "远程调解预约",
        f"调解预约已由法院取消：{CN}，{SAID_AT}。",
    ),
    (
        Notice(notice.MEDIATION_CANCELLED_FOR_PARTY, {"when": iso(AT)}),
        "远程调解预约",
        f"本案 {SAID_AT} 的远程调解预约已取消。",
    ),
    (
        Notice(notice.MEDIATION_CANCELLED_FOR_STAFF, {"case_number": CN, "when": iso(AT)}),
        "远程调解预约",
        f"调解预约已取消：{CN}，{SAID_AT}。",
    ),
    *[
        (
            Notice(
                notice.MEDIATION_REMINDER,
                {"day": day, "when": iso(AT), "case_number": CN, "link": LINK},
            ),
            "远程调解提醒",
            f"提醒：{said}（{SAID_AT}）有远程调解，案号{CN}。\n请提前几分钟点击链接进入：{LINK}",
        )
        for day, said in (("today", "今天"), ("tomorrow", "明天"), ("hour", "一小时后"))
    ],
    (
        Notice(
            notice.ENFORCEMENT_PROGRESS,
            {
                "case_number": CN,
                "event": "received",
                "at": iso(AT),
                "amount_cents": 1200050,
                "note": "第一笔",
            },
        ),
        "执行案件有新进展",
        f"您的执行案件 {CN} 有新进展：\n{SAID_AT}：收到执行款 12,000.50元（第一笔）\n"
        "发送 4 查看全部进度。",
    ),
    (
        Notice(
            notice.ENFORCEMENT_PROGRESS,
            {"case_number": CN, "event": "filing", "at": iso(AT), "amount_cents": None, "note": ""},
        ),
        "执行案件有新进展",
        f"您的执行案件 {CN} 有新进展：\n{SAID_AT}：执行立案\n发送 4 查看全部进度。",
    ),
    (
        Notice(
            notice.ENFORCEMENT_PROGRESS,
            {"case_number": CN, "event": "paid_out", "at": iso(AT), "amount_cents": 0, "note": ""},
        ),
        "执行案件有新进展",
        f"您的执行案件 {CN} 有新进展：\n{SAID_AT}：发放执行款 0.00元\n发送 4 查看全部进度。",
    ),
]


@pytest.fixture
def court_zone() -> Iterator[None]:
    yield
    clock.set_timezone(clock.DEFAULT_TIMEZONE)


def test_every_kind_is_worded() -> None:
    assert {n.kind for n, _, _ in WAS_SENT} == notice.KINDS


@pytest.mark.parametrize(("sent", "title", "text"), WAS_SENT, ids=lambda v: str(v)[:40])
def test_each_notice_reads_as_it_was_sent(sent: Notice, title: str | None, text: str) -> None:
    assert words(sent) == (title or "", text)
    # As a row stores it (plain JSON, through the database and back), and as senders read it.
    stored = json.loads(json.dumps(sent.payload(), ensure_ascii=False))
    assert stored == {"notice_kind": sent.kind, "params": dict(sent.params)}
    assert letter_text(stored) == (title or texts.NEW_MESSAGE, text)


def test_times_are_the_courts(court_zone: None) -> None:
    clock.set_timezone("Asia/Tokyo")  # MST_TIMEZONE: 10:30 there when it is 01:30 UTC
    warned = Notice(notice.TICKET_WARNED, {"ticket": 12, "case_number": CN, "due": iso(AT)})
    assert words(warned)[1] == f"提醒：#12（{CN}）将于 11月25日 周三 上午10:30 到期，请尽快答复。"
    late = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # past midnight in Tokyo: the next day
    cancelled = Notice(notice.MEDIATION_CANCELLED_FOR_PARTY, {"when": iso(late)})
    assert words(cancelled)[1] == "本案 11月26日 周四 上午0:30 的远程调解预约已取消。"


def test_times_are_kept_in_utc() -> None:
    china = AT.astimezone(clock.CHINA_TZ)
    assert iso(china) == iso(AT) == "2026-11-25T01:30:00+00:00"
    assert iso(None) is None


def test_rows_of_plain_text_read_as_before() -> None:
    assert letter_text({"text": "您的消息已收到"}) == (texts.NEW_MESSAGE, "您的消息已收到")
    old = {"text": "法官张伟回复 #1：好", "case_number": CN, "notice": "#1 有新的答复"}
    assert letter_text(old) == ("#1 有新的答复", "法官张伟回复 #1：好")
    # A row written before the words moved, with the case named in its text, is unchanged.
    named = {"text": f"关于案件 {CN}：\n好", "case_number": CN}
    assert letter_text(named) == (texts.NEW_MESSAGE, f"关于案件 {CN}：\n好")


def test_a_push_about_another_case_names_it() -> None:
    answered = Notice(
        notice.TICKET_ANSWERED,
        {"ticket": 1, "staff_name": "张伟", "staff_role": "judge", "text": "好"},
    )
    row = {**answered.payload(), "case_number": CN, "about_case": True}
    assert letter_text(row) == ("#1 有新的答复", f"关于案件 {CN}：\n法官张伟回复 #1：好")
    text_row = {"text": "好", "case_number": CN, "notice": "#1 已办结", "about_case": True}
    assert letter_text(text_row) == ("#1 已办结", f"关于案件 {CN}：\n好")


def test_a_notice_this_version_cannot_word_is_unreadable() -> None:
    with pytest.raises(Unreadable):
        Notice("ticket.sung_for_staff", {})
    with pytest.raises(Unreadable):
        letter_text({"notice_kind": "ticket.sung_for_staff", "params": {}})
    with pytest.raises(Unreadable):
        letter_text({"notice_kind": notice.TICKET_WARNED, "params": {"ticket": 1}})
    with pytest.raises(Unreadable):
        letter_text({"notice_kind": notice.TICKET_WARNED, "params": None})
    with pytest.raises(Unreadable):
        words(Notice(notice.TICKET_WARNED, {"ticket": 1, "case_number": CN, "due": "soon"}))


# -- through the outbox and WeChat's sender -----------------------------------------------


ANSWERED = Notice(
    notice.TICKET_ANSWERED,
    {"ticket": 12, "staff_name": "张伟", "staff_role": "judge", "text": "带身份证。"},
)


async def _tell(w: World, said: Notice, **kw: Any) -> Outbox:
    async with w.deps.db.transaction() as s:
        case = await s.get_one(Case, w.case["case_id"])
        await outbox.tell(s, LITIGANT, said, case=case, **kw)
    async with w.deps.db.sessions() as s:
        return (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()


async def test_a_notice_row_is_data_and_is_sent_as_the_words_were(world: World) -> None:
    w = world
    row = await _tell(w, ANSWERED)
    assert json.loads(row.payload) == {
        "notice_kind": "ticket.answered",
        "params": {"ticket": 12, "staff_name": "张伟", "staff_role": "judge", "text": "带身份证。"},
        "case_number": CASE_NUMBER,
    }
    assert await w.deliver() == 1
    assert w.inbox(LITIGANT) == ["法官张伟回复 #12：带身份证。"]
    [sent] = w.fake.sent_to(LITIGANT)
    assert sent.kind == "custom"


async def test_outside_the_window_the_template_keeps_its_title(world: World) -> None:
    w = world
    w.fake.enforce_window = True
    w.fake.close_window(LITIGANT)
    row = await _tell(w, ANSWERED)
    await w.deliver()
    [sent] = w.fake.sent_to(LITIGANT)
    assert sent.kind == "template"
    data = sent.payload["data"]
    assert data["first"]["value"] == "#12 有新的答复"
    assert data["keyword1"]["value"] == CASE_NUMBER
    assert data["remark"]["value"] == "点击查看详情。"
    # The link opens the page showing the same words.
    page = await w.client.get("/m/" + sent.payload["url"].split("/m/", 1)[1])
    assert page.status == 200 and "法官张伟回复 #12：带身份证。" in await page.text()
    async with w.deps.db.sessions() as s:
        assert (await s.get_one(Outbox, row.id)).status == "sent"


async def test_a_notice_without_a_title_of_its_own_has_the_usual_one(world: World) -> None:
    w = world
    w.fake.enforce_window = True
    w.fake.close_window(LITIGANT)
    await _tell(w, Notice(notice.TICKET_WARNED, {"ticket": 3, "case_number": CN, "due": iso(AT)}))
    await w.deliver()
    [sent] = w.fake.sent_to(LITIGANT)
    assert sent.payload["data"]["first"]["value"] == "您有一条新消息"


async def test_a_push_about_another_case_goes_out_naming_it(world: World) -> None:
    w = world
    async with w.deps.db.transaction() as s:
        case = await s.get_one(Case, w.case["case_id"])
        await outbox.tell(s, LITIGANT, ANSWERED, case=case, about_case=True)
    await w.deliver()
    assert w.inbox(LITIGANT) == [f"关于案件 {CASE_NUMBER}：\n法官张伟回复 #12：带身份证。"]


async def test_a_notice_this_version_cannot_word_waits(world: World) -> None:
    w = world
    async with w.deps.db.transaction() as s:
        await outbox.add(
            s,
            recipient=LITIGANT,
            kind="cs_text",
            payload={"notice_kind": "ticket.sung_for_staff", "params": {}},
        )
    await w.deliver()
    assert w.fake.sent_to(LITIGANT) == []
    async with w.deps.db.sessions() as s:
        row = (await s.execute(select(Outbox).where(Outbox.recipient == LITIGANT))).scalar_one()
    assert row.status == "pending" and "ticket.sung_for_staff" in (row.last_error or "")
