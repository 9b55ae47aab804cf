"""A readable export of a case's record (`mst audit export --format json|html`): who said
what and when, staff by title and name, litigants by role and masked name (never an
openid), every message checked against the digest its event recorded, who held each item
when; the page printed as an auditor reads it, in a real browser at a desk's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from handlers import texts
from storage import audit
from storage.models import AuditEvent, Message
from tests.browser import desktop_page, keep
from tests.conftest import CASE_NUMBER, COURT
from tests.test_audit import edit, edit_message, remove, stored, take_anchor
from tests.test_escalation import (
    LEADER_WX,
    RECEPTION2_WX,
    RECEPTION_WX,
    clock,  # noqa: F401 (a fixture)
    court_staff,
    tick,
)
from tests.world import (
    JUDGE_WX,
    LITIGANT,
    World,
    ask,
    bind_judge,
    mst_in_process,
    verify_litigant,
)

LISI_WX = "oLisi000000000000000000001"
OPENIDS = (LITIGANT, JUDGE_WX, LISI_WX, RECEPTION_WX, RECEPTION2_WX, LEADER_WX)
QUESTION = "请问什么时候开庭？<script>alert('开庭')</script>"
ANSWER = "12月10日上午九点开庭，请带身份证和借条原件。"
SECOND = "我可以申请延期开庭吗？"
REASON = "涉及民二庭的关联案件"


async def story(w: World, clock: Any) -> tuple[int, int]:
    """The litigant asks; the judge transfers it to 李四, who answers; a second question
    waits past its deadline and goes up to the reception team. Returns the two items."""
    await court_staff(w)
    await bind_judge(w, "lisi", LISI_WX)
    await verify_litigant(w)
    first = await ask(w, QUESTION)
    clock.at(2026, 11, 23, 10, 20)
    assert await w.say(JUDGE_WX, f"#{first} 转 lisi {REASON}") == texts.TRANSFERRED.format(
        ticket=first, name="李四"
    )
    clock.at(2026, 11, 23, 11, 5)
    assert await w.say(LISI_WX, f"#{first} {ANSWER}") == texts.STAFF_ANSWERED.format(ticket=first)
    clock.at(2026, 11, 23, 14, 0)
    await w.say(LITIGANT, "0")  # back to the menu
    second = await ask(w, SECOND)
    clock.at(2026, 11, 25, 17, 31)
    assert (await tick(w))["escalated"] == 1
    await w.deliver()
    return first, second


async def export(cli_env: dict[str, str], tmp_path: Path, *args: str) -> Any:
    return await mst_in_process(cli_env, tmp_path, "audit", "export", "--case", CASE_NUMBER, *args)


async def readable(cli_env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    run = await export(cli_env, tmp_path, "--format", "json")
    assert run.code == 0, run.err
    assert not any(openid in run.out for openid in OPENIDS)  # people by name, never by id
    found: dict[str, Any] = json.loads(run.out)
    return found


def said(record: dict[str, Any], text: str) -> dict[str, Any]:
    """The one event whose message holds `text`."""
    [event] = [e for e in record["events"] if e["message"] and text in (e["message"]["text"] or "")]
    return event


def holders(item: dict[str, Any]) -> list[str]:
    return [h["holder"] for h in item["history"] if h["holder"]]


async def test_the_json_export_says_who_said_what_and_checks_every_message(
    world: World, clock: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    first, second = await story(w, clock)
    record = await readable(cli_env, tmp_path)

    assert (record["court"], record["case_number"], record["cause"]) == (
        COURT,
        CASE_NUMBER,
        "民间借贷纠纷",
    )
    assert record["judge"] == "法官张伟" and record["time_zone"] == "Asia/Shanghai"
    summary = record["summary"]
    assert summary["intact"] is True and summary["problems"] == []
    assert summary["messages"] == summary["ok"] >= 6
    assert summary["edited"] == summary["deleted"] == summary["erased"] == 0
    assert summary["events"] == len(record["events"])
    assert all(e["links"] and e["intact"] for e in record["events"])
    checked = [e["message"] for e in record["events"] if e["message"]]
    assert {m["check"] for m in checked} == {"ok"}
    assert {m["check_words"] for m in checked} == {"✔ 与记录一致"}

    asked = said(record, QUESTION)
    assert asked["who"] == {"kind": "litigant", "role": "原告", "name": "王**", "label": "原告王**"}
    assert asked["what"] == f"咨询 #{first}" and asked["message"]["text"] == QUESTION
    assert asked["at"] == "2026-11-23T10:00:00+08:00"  # the court's time zone
    answered = said(record, ANSWER)
    assert answered["action"] == "ticket.answered" and answered["what"] == f"答复 #{first}"
    assert answered["who"]["label"] == "法官李四" and answered["who"]["title"] == "法官"
    assert answered["message"]["to"]["label"] == "原告王**"
    assert answered["message"]["text"] == f"法官李四回复 #{first}：{ANSWER}"
    [moved] = [e for e in record["events"] if e["action"] == "ticket.transferred"]
    assert moved["who"]["label"] == "法官张伟" and moved["what"] == f"转办 #{first} → 法官李四"
    assert moved["why"] == REASON
    [escalated] = [e for e in record["events"] if e["action"] == "ticket.escalated"]
    assert escalated["who"]["label"] == "系统" and "到期升级" in escalated["what"]
    assert escalated["why"] == texts.MOVE_REASONS["overdue"]
    # Delivery receipts name the person reached, not their openid.
    delivered = [e for e in record["events"] if e["action"] == "message.delivered"]
    assert delivered and all(e["payload"]["to"] != LITIGANT for e in delivered)
    assert any(e["payload"]["to"] == "原告王**" for e in delivered)

    # Who held each item when, as `mst ticket history` tells it.
    one, two = record["tickets"]
    assert (one["ticket"], one["kind_name"]) == (first, "咨询")
    assert holders(one) == ["法官张伟", "法官李四"]
    assert [h["what"] for h in one["history"]] == ["提交", "转办", "答复"]
    assert one["history"][1]["reason"] == REASON and one["history"][1]["by"] == "法官张伟"
    assert two["ticket"] == second and holders(two) == ["法官张伟", "集约接待"]
    assert two["history"][-1]["level"] == 1 and two["history"][-1]["by"] == "系统"

    # The same events, in the same order, as the default export (JSON Lines) holds them.
    lines = await export(cli_env, tmp_path)
    assert lines.code == 0, lines.err
    stored_events = [json.loads(line) for line in lines.out.splitlines()]
    assert [(e["seq"], e["hash"]) for e in stored_events] == [
        (e["seq"], e["hash"]) for e in record["events"]
    ]
    assert record["summary"]["head"] == stored_events[-1]["hash"]

    # --out: the file, and one line saying so.
    out = tmp_path / "record.json"
    run = await export(cli_env, tmp_path, "--format", "json", "--out", str(out))
    assert run.code == 0 and run.out == f"已写入 {out}\n"
    assert json.loads(out.read_text(encoding="utf-8"))["events"] == record["events"]


async def test_an_edited_or_deleted_message_and_an_edited_event_are_marked(
    world: World, clock: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await story(w, clock)
    async with w.deps.db.sessions() as s:
        answer = (
            await s.execute(select(Message).where(Message.staff_id.is_not(None)))  # type: ignore[union-attr]
        ).scalar_one()
    changed = answer.content.replace("12月10日", "12月11日")
    await edit_message(w.deps.db, answer.id, content=changed)

    run = await export(cli_env, tmp_path, "--format", "json")
    assert run.code == 0
    assert "记录有异常" in run.err
    record = json.loads(run.out)
    assert record["summary"]["intact"] is False
    assert (record["summary"]["edited"], record["summary"]["ok"]) == (
        1,
        record["summary"]["messages"] - 1,
    )
    edited = said(record, changed)
    assert edited["action"] == "ticket.answered"
    assert (edited["message"]["check"], edited["message"]["check_words"]) == (
        "edited",
        "✘ 内容被改动",
    )
    assert edited["intact"] and edited["links"]  # the event itself is as written
    assert any(f"message id={answer.id}: " in p for p in record["summary"]["problems"])

    # A message deleted, and an event's own content edited.
    second_question = await stored(w.deps.db, SECOND)
    async with w.deps.db.transaction() as s:
        await s.execute(delete(Message).where(Message.id == second_question.id))
        bound = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "bind.verified"))
        ).scalar_one()
    await edit(w.deps.db, bound.id, payload='{"method":"phone_tail","role":"被告"}')
    record = json.loads((await export(cli_env, tmp_path, "--format", "json")).out)
    summary = record["summary"]
    assert (summary["edited"], summary["deleted"], summary["events_edited"]) == (1, 1, 1)
    [gone] = [
        e for e in record["events"] if e["message"] and e["message"]["id"] == second_question.id
    ]
    assert gone["message"]["check"] == "deleted" and gone["message"]["text"] is None
    assert (
        gone["what"] == "发来消息" and gone["who"]["label"] == "原告王**"
    )  # its item went with it
    [verified] = [e for e in record["events"] if e["action"] == "bind.verified"]
    assert verified["intact"] is False and verified["links"] is True
    assert verified["payload"]["role"] == "被告"  # shown as it now stands, marked

    page = await export(cli_env, tmp_path, "--format", "html")
    assert "✘ 记录有异常" in page.out and "✘ 内容被改动" in page.out
    assert "✘ 被删除" in page.out and "✘ 这条记录被改动" in page.out


async def test_an_erased_message_shows_when_by_whom_and_why_and_no_text(
    world: World, clock: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await story(w, clock)
    question = await stored(w.deps.db, QUESTION)
    erased = await mst_in_process(
        cli_env, tmp_path, "audit", "erase", "--message", str(question.id),
        "--reason", "当事人申请删除个人信息", "--by", "李书记员",
    )  # fmt: skip
    assert erased.code == 0, erased.err

    record = await readable(cli_env, tmp_path)
    assert QUESTION not in json.dumps(record, ensure_ascii=False)
    assert record["summary"]["intact"] is True and record["summary"]["erased"] == 1
    [asked, erasure] = [
        e for e in record["events"] if e["message"] and e["message"]["id"] == question.id
    ]
    assert asked["action"] == "message.in" and erasure["action"] == audit.ERASED
    message = asked["message"]
    assert message["check"] == "erased" and message["text"] is None
    assert message["erased"]["by"] == "李书记员"
    assert message["erased"]["reason"] == "当事人申请删除个人信息"
    assert message["erased"]["at"].endswith("+08:00")
    assert message["check_words"].startswith("依法删除于 ")
    assert "由 李书记员，原因：当事人申请删除个人信息" in message["check_words"]
    assert erasure["what"] == f"依法删除消息内容（消息 {question.id}）"
    assert erasure["why"] == "当事人申请删除个人信息" and erasure["who"]["label"] == "管理员"

    page = await export(cli_env, tmp_path, "--format", "html")
    assert page.code == 0, page.err
    assert "什么时候开庭" not in page.out
    assert texts.ERASED in page.out and "由 李书记员，原因：当事人申请删除个人信息" in page.out


async def test_a_removed_tail_and_a_forged_message_are_caught_in_the_case_export(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """What the chain's links alone cannot show: its last events gone (the anchors that
    recorded its head see it), and a message row no event records."""
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    assert await take_anchor(w.deps.db) is not None
    before = await readable(cli_env, tmp_path)
    assert before["summary"]["intact"] and before["summary"]["anchors"] == 1
    async with w.deps.db.sessions() as s:
        last = (
            await s.execute(
                select(AuditEvent)
                .where(AuditEvent.chain == f"case:{w.case['case_id']}")
                .order_by(AuditEvent.seq.desc())  # type: ignore[attr-defined]
                .limit(1)
            )
        ).scalar_one()
    await remove(w.deps.db, last.id)
    question = await stored(w.deps.db, QUESTION)
    async with w.deps.db.transaction() as s:
        s.add(
            Message(
                direction="out",
                openid=question.openid,
                msg_type="text",
                content="法官：您的案件已撤诉。",
                case_id=question.case_id,
            )
        )

    record = await readable(cli_env, tmp_path)
    summary = record["summary"]
    assert summary["intact"] is False and summary["events"] == before["summary"]["events"] - 1
    assert summary["events_unlinked"] == summary["events_edited"] == 0  # the links still hold
    assert any("anchor id=" in p and "removed" in p for p in summary["problems"])
    # The reply whose event went with the tail, and the forged one: rows no event records.
    assert last.action == "message.out" and last.subject.startswith("message:")
    reply, forged = record["unrecorded_messages"]
    assert reply["id"] == int(last.subject.removeprefix("message:"))
    assert reply["text"].startswith("已收到您的咨询") and reply["check"] == "unrecorded"
    assert forged["text"] == "法官：您的案件已撤诉。" and forged["check"] == "unrecorded"
    assert forged["to"]["label"] == "原告王**" and summary["unrecorded"] == 2
    page = await export(cli_env, tmp_path, "--format", "html")
    assert "没有审计记录的消息" in page.out and "法官：您的案件已撤诉。" in page.out


async def test_the_page_to_print_in_a_real_browser(
    world: World, clock: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    first, second = await story(w, clock)
    out = tmp_path / "record.html"
    run = await export(cli_env, tmp_path, "--format", "html", "--out", str(out))
    assert run.code == 0, run.err
    page_text = out.read_text(encoding="utf-8")
    assert page_text.startswith("<!DOCTYPE html>") and "<html lang='zh-CN'>" in page_text
    assert CASE_NUMBER in page_text and COURT in page_text and "民间借贷纠纷" in page_text
    # Every value escaped: the litigant's <script> is words on the page, never a tag.
    assert "&lt;script&gt;alert(&#x27;开庭&#x27;)&lt;/script&gt;" in page_text
    assert "<script" not in page_text
    # Self-contained: nothing fetched from anywhere.
    for outside in ("src=", "href=", "url(", "@import", "<link"):
        assert outside not in page_text
    assert not any(openid in page_text for openid in OPENIDS)
    assert "办理过程" in page_text and "先后承办：法官张伟" in page_text
    assert "✔ 记录完整" in page_text and ANSWER in page_text

    async with desktop_page() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto(out.as_uri())
        shown = await page.inner_text("body")
        assert QUESTION in shown and dialogs == []  # shown as typed, not run
        assert f"咨询 #{first}" in shown and "法官李四" in shown and "原告王**" in shown
        assert "法官张伟（2026-11-23 10:00 起） → 法官李四（2026-11-23 10:20 起）" in shown
        assert f"#{second} 咨询" in shown and "集约接待（2026-11-25 17:31 起）" in shown
        # Nothing wider than the screen, and no cell's words running out of it.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1280
        spilled = await page.evaluate(
            "Array.from(document.querySelectorAll('td, th'))"
            ".filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)"
        )
        assert spilled == []
        await keep(page, "audit-export")

        # The same page once a message was edited and another erased: marked where it happened.
        async with w.deps.db.sessions() as s:
            answer = (
                await s.execute(select(Message).where(Message.staff_id.is_not(None)))  # type: ignore[union-attr]
            ).scalar_one()
        await edit_message(
            w.deps.db, answer.id, content=answer.content.replace("12月10日", "12月11日")
        )
        question = await stored(w.deps.db, SECOND)
        assert question.id is not None
        async with w.deps.db.transaction() as s:
            await audit.erase_message(s, question.id, by="李书记员", reason="当事人申请删除")
        run = await export(cli_env, tmp_path, "--format", "html", "--out", str(out))
        assert run.code == 0, run.err
        await page.goto(out.as_uri())
        shown = await page.inner_text("body")
        assert "✘ 记录有异常" in shown and "✘ 内容被改动" in shown
        assert "依法删除于" in shown and SECOND not in shown
        await keep(page, "audit-export-record-changed")


async def test_the_json_export_carries_each_events_inclusion_proof(
    world: World, clock: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Every event of the case with its leaf and its RFC 6962 proof against the latest
    signed head, and that head: the record checks against the court's public log."""
    from storage import merkle, transparency

    w = world
    await story(w, clock)
    signer = transparency.Signer.from_private_bytes(bytes(range(32)))
    async with w.deps.db.transaction() as s:
        await transparency.sequence(s)
        head = await transparency.sign_head(s, signer)
    assert head is not None
    await w.say(LITIGANT, "0")  # an event after the head: not in it yet
    record = await readable(cli_env, tmp_path)
    assert record["log"]["head"]["size"] == head.size
    assert record["log"]["head"]["root"] == head.root
    proved = [e for e in record["events"] if e["log"]]
    *before, said_in, said_out = record["events"]
    assert (said_in["log"], said_out["log"]) == (None, None)  # "0" and its answer: next head
    assert proved == before and len(proved) >= 10
    for e in proved:
        leaf = merkle.leaf_hash(bytes.fromhex(e["hash"]))
        assert e["log"]["leaf_hash"] == leaf.hex()
        assert merkle.verify_inclusion(
            leaf,
            e["log"]["leaf_index"],
            head.size,
            [bytes.fromhex(p) for p in e["log"]["proof"]],
            bytes.fromhex(head.root),
        )
