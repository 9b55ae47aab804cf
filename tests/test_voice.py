"""Voice messages (issue 17, "Voice"): WeChat's recognised words read like typed text and
checked back where a mistake matters (bot.rules.voice, handlers.voice); a voice without
words kept, its audio fetched by the job, covered by the audit log and played or
downloaded by the staff who hold the item (bot.rules.media, bot.app.pages). End to end
through /wechat in safe mode and the fake WeChat API, which serves a real AMR-NB
recording (tests/data/voice.amr, 4.76 s: 238 frames of 20 ms)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import jobs
from bot.app.config import Settings
from bot.dialog.deps import Deps
from bot.fakes.wechat.callbacks import event_xml, media_xml
from bot.rules import media
from bot.rules import voice as spoken
from handlers import texts, voice
from storage import audit
from storage.models import AuditEvent, Binding, FailedAttempt, MediaFile, Message, Outbox, Ticket
from tests.conftest import open_world
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge, verify_litigant

SAMPLE = (Path(__file__).parent / "data" / "voice.amr").read_bytes()
SAMPLE_SECONDS = 4.76
# Debian's ffmpeg makes the mp3 a browser plays (scripts/test installs it). Without it the
# play page offers the file to download: tested either way, and that way with it too.
HAVE_FFMPEG = media.ffmpeg() is not None
LINK = re.compile(r"http://court\.example(/media/(\d+)\?e=\d+&s=[\w-]+=*)")


# -- bot.rules.voice: what recognised words say -------------------------------------------


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("1234", "1234"),
        ("1234。", "1234"),
        ("一二三四", "1234"),
        ("一二三四。", "1234"),
        ("幺二三四。", "1234"),
        ("幺两三四", "1234"),
        ("1 2 3 4", "1234"),
        ("１２３４", "1234"),  # full-width, as some keyboards and recognisers write them
        ("一、二、三、四。", "1234"),
        ("12三四", "1234"),
        ("零五六七", "0567"),
        ("〇五六七", "0567"),
        ("洞洞幺", "001"),
        ("九 八，七六。", "9876"),
        ("一千二百三十四", "1234"),
        ("一千零五", "1005"),
        ("两千", "2000"),
        ("一千二", "1200"),
        ("三百五", "350"),
        ("十", "10"),
        ("十五", "15"),
        ("二十", "20"),
        ("二十三。", "23"),
        ("一百一十", "110"),
        ("五", "5"),
        ("二。", "2"),
    ],
)
def test_spoken_digits_are_read_as_digits(said: str, digits: str) -> None:
    assert spoken.spoken_digits(said) == digits


@pytest.mark.parametrize(
    "said",
    [
        "",
        "。",
        "  ",
        "我想问一下",
        "三个",
        "一二三四五六七八九十",
        "一二百",
        "千",
        "百五",
        "abc",
        "1a",
    ],
)
def test_anything_else_is_not_digits(said: str) -> None:
    assert spoken.spoken_digits(said) is None


@pytest.mark.parametrize(
    ("said", "choice"),
    [("二", "2"), ("二。", "2"), ("第二个", "2"), ("我选三。", "3"), ("选择1", "1"), ("10", "10")],
)
def test_a_menu_choice_with_words_around_it(said: str, choice: str) -> None:
    assert spoken.spoken_choice(said) == choice


@pytest.mark.parametrize("said", ["咨询法官", "我想投诉", "第", "个"])
def test_words_are_no_menu_choice(said: str) -> None:
    assert spoken.spoken_choice(said) is None


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("幺二三四", "1234"),
        ("尾号是一二三四。", "1234"),
        ("后四位1234", "1234"),
        ("我的手机号码后四位是五六七八。", "5678"),
        ("最后四位是幺二三四", "1234"),
        ("电话尾号 5 6 7 8", "5678"),
    ],
)
def test_phone_digits_with_the_words_people_say_around_them(said: str, digits: str) -> None:
    assert spoken.digits_in(said) == digits


def test_phone_digits_not_said_are_none() -> None:
    assert spoken.digits_in("我不知道") is None
    assert spoken.digits_in("后四位") is None


@pytest.mark.parametrize(
    ("said", "meaning"),
    [
        ("1", "1"),
        ("1。", "1"),
        ("一", "1"),
        ("幺。", "1"),
        ("对", "1"),
        ("对的。", "1"),
        ("是的", "1"),
        ("确认", "1"),
        ("2", "2"),
        ("二。", "2"),
        ("两", "2"),
        ("不对。", "2"),
        ("重说", "2"),
        ("3", None),
        ("12", None),
        ("什么时候开庭", None),
    ],
)
def test_yes_and_no_to_a_check_back(said: str, meaning: str | None) -> None:
    assert spoken.answer(said) == meaning


def test_recognised_words_tidied_as_typed() -> None:
    assert spoken.tidy("  什么时候 开庭。 ") == "什么时候 开庭"
    assert spoken.tidy("我想问一下，  什么时候开庭？") == "我想问一下， 什么时候开庭？"
    assert spoken.tidy("。") == ""


# -- bot.rules.media: how long, and a copy a browser plays --------------------------------


def test_amr_length_counted_from_its_frames() -> None:
    assert media.audio_seconds(SAMPLE) == pytest.approx(SAMPLE_SECONDS)
    assert len(SAMPLE) == 6 + 238 * 32  # mode 7 (12.2 kbit/s): 32 bytes a frame
    assert SAMPLE[6] >> 3 & 0x0F == 7
    # Every mode's frame size, and the 1-byte NO_DATA frame (FT 15): 9 frames, 0.18 s.
    frames = b"".join(bytes([ft << 3 | 0x04]) + b"\0" * size for ft, size in _NB_SIZES)
    assert media.audio_seconds(b"#!AMR\n" + frames) == pytest.approx(0.18)
    wide = b"#!AMR-WB\n" + (bytes([8 << 3 | 0x04]) + b"\0" * 60) * 50  # 23.85 kbit/s, 1 s
    assert media.audio_seconds(wide) == pytest.approx(1.0)


_NB_SIZES = [(0, 12), (1, 13), (2, 15), (3, 17), (4, 19), (5, 20), (6, 26), (7, 31), (15, 0)]


def test_no_length_for_other_formats_or_a_cut_file() -> None:
    assert media.audio_seconds(SAMPLE[:-5]) is None  # its last frame cut short
    assert media.audio_seconds(b"ID3\x04 an mp3") is None
    assert media.audio_seconds(b"\x02#!SILK_V3 ...") is None
    assert media.audio_seconds(b"") is None


def test_voice_note_words() -> None:
    assert texts.voice_note(None) == "语音留言"
    assert texts.voice_note(12.2) == "语音留言（12秒）"
    assert texts.voice_note(0.3) == "语音留言（1秒）"  # never "0秒"
    assert texts.voice_note(SAMPLE_SECONDS) == "语音留言（5秒）"


async def test_ffmpeg_makes_an_mp3_and_its_absence_is_no_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = await media.to_browser(SAMPLE, "audio/amr")
    if HAVE_FFMPEG:
        assert made is not None
        body, kind = made
        assert kind == "audio/mpeg" and body[:3] in (b"ID3", b"\xff\xf3", b"\xff\xfb")
    else:
        assert made is None
    # What a browser plays already goes as it is; what ffmpeg cannot read is None.
    assert await media.to_browser(b"ID3...", "audio/mpeg") == (b"ID3...", "audio/mpeg")
    assert await media.to_browser(b"\x02#!SILK_V3 not audio", "audio/silk") is None
    monkeypatch.setattr(media.shutil, "which", lambda name: None)
    assert await media.to_browser(SAMPLE, "audio/amr") is None


# -- end to end: the world of tests/world.py ----------------------------------------------


@pytest.fixture
async def w(
    frozen_clock: list[datetime],
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[World]:
    """The shared world on a clock the test moves, without the per-minute limit in the
    way of long conversations."""
    async with open_world(
        aiohttp_client, aiohttp_server, settings, deps, sample_case, user_rate_per_minute=1000
    ) as world:
        yield world


def said(openid: str, words: str, media_id: str = "MEDIA_said") -> str:
    """A voice message with WeChat's recognised words."""
    return media_xml(openid, "voice", MediaId=media_id, Format="amr", Recognition=words)


def unheard(openid: str, media_id: str) -> str:
    """A voice message WeChat recognised nothing in (no Recognition)."""
    return media_xml(openid, "voice", MediaId=media_id, Format="amr")


def confirm(words: str) -> str:
    return texts.VOICE_CONFIRM.format(said=words)


async def scanned(w: World, openid: str = LITIGANT) -> None:
    greeting = await w.send(event_xml(openid, "SCAN", w.case["token"]))
    assert texts.ASK_DIGITS in greeting


async def bound(w: World, openid: str = LITIGANT) -> bool:
    async with w.deps.db.sessions() as s:
        found = await s.execute(select(Binding).where(Binding.openid == openid))
        return found.first() is not None


async def rows(w: World, model: Any, *where: Any) -> list[Any]:
    async with w.deps.db.sessions() as s:
        return list((await s.execute(select(model).where(*where))).scalars())


async def test_spoken_digits_verify_after_they_are_confirmed(w: World) -> None:
    await scanned(w)
    assert await w.send(said(LITIGANT, "幺二三四。")) == confirm("1234")
    assert not await bound(w)  # nothing tried before the person says yes
    assert "验证成功" in await w.say(LITIGANT, "1")
    assert await bound(w)
    assert await rows(w, FailedAttempt) == []


async def test_two_asks_again_and_a_spoken_yes_confirms(w: World) -> None:
    await scanned(w)
    assert await w.send(said(LITIGANT, "一二三五")) == confirm("1235")  # misheard
    assert await w.say(LITIGANT, "2") == texts.VOICE_AGAIN
    assert await rows(w, FailedAttempt) == []  # the wrong digits were never tried
    assert await w.send(said(LITIGANT, "尾号是幺二三四。")) == confirm("1234")
    assert "验证成功" in await w.send(said(LITIGANT, "对。", "MEDIA_yes"))
    assert await bound(w)


async def test_anything_but_one_or_two_is_a_new_answer(w: World) -> None:
    await scanned(w)
    assert await w.send(said(LITIGANT, "五六七九")) == confirm("5679")
    # The person types the digits instead: that is their answer, tried as typed.
    assert "验证成功" in await w.say(LITIGANT, "5678")
    # A "1" later confirms nothing: what was waiting went with the new answer.
    assert texts.ASK_PROMPT_LEAD in await w.say(LITIGANT, "1")


async def test_words_that_are_no_digits_are_used_as_they_are(w: World) -> None:
    await scanned(w)
    assert texts.DIGITS_ONLY_LEAD in await w.send(said(LITIGANT, "我不记得了。"))


async def test_a_spoken_menu_number_is_checked_back(w: World) -> None:
    await verify_litigant(w)
    assert await w.send(said(LITIGANT, "二。")) == confirm("2")
    assert texts.COMPLAIN_ABOUT_LEAD in await w.say(LITIGANT, "1")
    # A choice said as a word needs no check: it says what it means.
    assert "请回复数字选择" in await w.send(said(LITIGANT, "菜单。"))


async def test_a_spoken_question_is_checked_then_reaches_the_judge_with_its_voice(
    w: World,
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    assert await w.send(said(LITIGANT, "什么时候开庭。", "MEDIA_q")) == confirm("什么时候开庭")
    assert await rows(w, Ticket) == []
    received = await w.say(LITIGANT, "1")
    assert "已收到您的咨询" in received
    [ticket] = await rows(w, Ticket)
    # The voice message is the item's first message, with its words and its link.
    [first] = await rows(w, Message, Message.ticket_id == ticket.id)
    assert (first.msg_type, first.content, first.media_id) == ("voice", "什么时候开庭。", "MEDIA_q")
    # Further words to the open question are used as they are: no check-back.
    added = await w.send(said(LITIGANT, "还有，要带什么材料？", "MEDIA_q2"))
    assert f"已补充到咨询 #{ticket.id}" in added
    await w.deliver()
    new, more = w.inbox(JUDGE_WX)
    assert "什么时候开庭" in new and "（收听语音：http://court.example/media/" in new
    assert "还有，要带什么材料？" in more
    w.fake.add_media("MEDIA_q", SAMPLE)
    link = LINK.search(new)
    assert link is not None
    heard = await w.client.get(link.group(1))
    assert heard.status == 200 and heard.content_type == "audio/amr"
    assert await heard.read() == SAMPLE


async def test_a_sentence_said_in_the_menu_keeps_its_voice_when_it_becomes_a_question(
    w: World,
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    # Words that are no choice are kept and asked about, spoken or typed (handlers.menu).
    kept = await w.send(said(LITIGANT, "我想问一下开庭时间。", "MEDIA_menu_q"))
    assert texts.CONFIRM_ASK_LEAD.format(said="我想问一下开庭时间") in kept
    assert "已收到您的咨询" in await w.say(LITIGANT, "1")
    await w.deliver()
    [notice] = w.inbox(JUDGE_WX)
    assert "我想问一下开庭时间\n（收听语音：http://court.example/media/" in notice


async def test_unrecognised_voice_in_an_open_question_reaches_the_judge_and_plays(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    number = int(re.findall(r"#(\d+)", await w.say(LITIGANT, "开庭时间能改吗？"))[0])
    assert await w.deliver() == 1
    w.fake.add_media("MEDIA_unheard_1", SAMPLE)
    added = await w.send(unheard(LITIGANT, "MEDIA_unheard_1"))
    assert f"已补充到咨询 #{number}" in added
    [msg] = await rows(w, Message, Message.media_id == "MEDIA_unheard_1")
    assert (msg.msg_type, msg.content, msg.ticket_id) == ("voice", "", number)

    # Its notice waits for the audio: the job fetches it, and then it says how long it is.
    assert await w.deliver() == 0
    assert await jobs.fetch_voices(w.deps) == 1
    assert await w.deliver() == 1
    notice = w.inbox(JUDGE_WX)[-1]
    assert f"#{number} 补充" in notice
    assert (
        f"{texts.voice_note(SAMPLE_SECONDS)}\n（收听语音：http://court.example/media/{msg.id}?"
        in notice
    )
    assert "语音留言（5秒）" in notice

    # Kept with the record: its bytes, their SHA-256 in the case's audit chain.
    [kept] = await rows(w, MediaFile)
    digest = hashlib.sha256(SAMPLE).hexdigest()
    assert (kept.message_id, kept.status, kept.body, kept.sha256) == (
        msg.id,
        "stored",
        SAMPLE,
        digest,
    )
    assert kept.seconds == pytest.approx(SAMPLE_SECONDS) and kept.content_type == "audio/amr"
    [event] = await rows(w, AuditEvent, AuditEvent.action == "media.stored")
    assert event.subject == f"message:{msg.id}" and event.chain == f"case:{w.case['case_id']}"
    assert json.loads(event.payload)["sha256"] == digest
    assert await jobs.fetch_voices(w.deps) == 0  # kept: not fetched again
    calls = w.fake.calls.count("/cgi-bin/media/get")

    # The link serves the kept file, even after WeChat's three days.
    w.fake.expire_media("MEDIA_unheard_1")
    link = LINK.search(notice)
    assert link is not None
    got = await w.client.get(link.group(1))
    assert got.status == 200 and got.content_type == "audio/amr" and await got.read() == SAMPLE
    assert w.fake.calls.count("/cgi-bin/media/get") == calls
    # The judge's `#n` shows it the same way.
    thread = await w.say(JUDGE_WX, f"#{number}")
    assert "语音留言（5秒）（收听语音：http://court.example/media/" in thread

    # A browser opening the link gets the page that plays it. With no ffmpeg: a download.
    page_url = f"/media/{msg.id}/play?{link.group(1).split('?')[1]}"
    opened = await w.client.get(
        link.group(1), headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert opened.status == 302 and opened.headers["Location"] == page_url
    monkeypatch.setattr(media.shutil, "which", lambda name: None)
    plain = await (await w.client.get(page_url)).text()
    assert "语音留言（5秒）" in plain and "<audio" not in plain
    assert texts.VOICE_PAGE_NO_PLAYER in plain and texts.VOICE_PAGE_DOWNLOAD in plain
    download = re.search(r"href='([^']+download=1)'", plain)
    assert download is not None
    got = await w.client.get(
        download.group(1).replace("&amp;", "&"), headers={"Accept": "text/html"}
    )
    assert got.status == 200 and await got.read() == SAMPLE
    assert got.headers["Content-Disposition"].startswith("attachment;")
    monkeypatch.undo()
    if HAVE_FFMPEG:
        await plays(w, page_url)
    else:
        assert "<audio" not in await (await w.client.get(page_url)).text()
    # A forged or another message's signature opens nothing.
    for forged in (
        re.sub(r"s=[\w-]+=*", "s=AAAA", page_url),
        page_url.replace(f"/media/{msg.id}/", f"/media/{msg.id - 1}/"),
    ):
        assert (await w.client.get(forged)).status == 403, forged

    # Erased by law: the kept audio goes with the message; the record keeps its digest.
    async with w.deps.db.transaction() as s:
        await audit.erase_message(s, msg.id or 0, by="书记员", reason="当事人申请删除")
    assert await rows(w, MediaFile) == []
    assert (await w.client.get(link.group(1))).status in (403, 410)
    assert json.loads(event.payload)["sha256"] == digest


async def plays(w: World, page_url: str) -> None:
    """With ffmpeg: the page has a player, its mp3 made once and kept beside the file,
    served in byte ranges as Safari (WeChat's browser on an iPhone) asks for them."""
    playing = await w.client.get(page_url)
    body = await playing.text()
    assert "<audio controls" in body and texts.VOICE_PAGE_DOWNLOAD in body
    assert "media-src 'self'" in playing.headers["Content-Security-Policy"]
    found = re.search(r"src='([^']+)'", body)
    assert found is not None
    source = found.group(1).replace("&amp;", "&")
    mp3 = await w.client.get(source)
    assert mp3.status == 200 and mp3.content_type == "audio/mpeg"
    whole = await mp3.read()
    [kept] = await rows(w, MediaFile)
    assert kept.play_body == whole and kept.play_type == "audio/mpeg"
    part = await w.client.get(source, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and await part.read() == whole[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole)}"
    tail = await w.client.get(source, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == whole[-10:]
    past = await w.client.get(source, headers={"Range": f"bytes={len(whole)}-"})
    assert past.status == 416


async def test_a_first_unrecognised_voice_opens_the_item(w: World) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    w.fake.add_media("MEDIA_first", SAMPLE)
    received = await w.send(unheard(LITIGANT, "MEDIA_first"))
    assert "已收到您的咨询" in received
    assert await w.deliver() == 0  # held for the audio
    assert await jobs.fetch_voices(w.deps) == 1
    assert await w.deliver() == 1
    [notice] = w.inbox(JUDGE_WX)
    assert "新咨询 #" in notice and "语音留言（5秒）\n（收听语音：" in notice


async def test_an_expired_voice_is_recorded_once_and_its_notice_goes(
    w: World, frozen_clock: list[datetime]
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    await w.send(unheard(LITIGANT, "MEDIA_gone"))  # the fake has no such media: 40007
    assert await jobs.fetch_voices(w.deps) == 1
    [row] = await rows(w, MediaFile)
    assert (row.status, row.body) == ("expired", None) and "40007" in (row.last_error or "")
    [event] = await rows(w, AuditEvent, AuditEvent.action == "media.expired")
    assert event.subject == f"message:{row.message_id}"
    assert await w.deliver() == 1
    [notice] = w.inbox(JUDGE_WX)
    assert "语音留言\n（收听语音：" in notice  # its length unknown, said so plainly
    calls = w.fake.calls.count("/cgi-bin/media/get")
    frozen_clock[0] += timedelta(hours=1)
    assert await jobs.fetch_voices(w.deps) == 0  # never asked for again
    assert w.fake.calls.count("/cgi-bin/media/get") == calls


async def test_a_busy_wechat_is_tried_again_and_held_notices_go_anyway(
    w: World, frozen_clock: list[datetime]
) -> None:
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    w.fake.add_media("MEDIA_busy", SAMPLE)
    await w.send(unheard(LITIGANT, "MEDIA_busy"))
    w.fake.fail("/cgi-bin/media/get", -1, times=2)  # "system busy", twice
    assert await jobs.fetch_voices(w.deps) == 1
    [row] = await rows(w, MediaFile)
    assert (row.status, row.tries) == ("retry", 1)
    assert await jobs.fetch_voices(w.deps) == 0  # not before its next try
    frozen_clock[0] += media.retry_after(1)
    assert await jobs.fetch_voices(w.deps) == 1
    [row] = await rows(w, MediaFile)
    assert (row.status, row.tries) == ("retry", 2)
    # WeChat is still busy when the hold is over: the judge is told all the same.
    frozen_clock[0] += voice.HOLD
    assert await w.deliver() == 1
    assert "语音留言\n（收听语音：" in w.inbox(JUDGE_WX)[-1]
    assert await jobs.fetch_voices(w.deps) == 1
    [row] = await rows(w, MediaFile)
    assert (row.status, row.body, row.tries) == ("stored", SAMPLE, 3)


async def test_a_voice_no_step_takes_is_kept_and_answered_kindly(w: World) -> None:
    assert await w.send(unheard(LITIGANT, "MEDIA_before")) == texts.VOICE_UNHEARD
    await verify_litigant(w)
    assert await w.send(unheard(LITIGANT, "MEDIA_menu")) == texts.VOICE_UNHEARD_MENU
    w.fake.add_media("MEDIA_menu", SAMPLE)
    assert await jobs.fetch_voices(w.deps) == 2  # both kept as they came; one had expired
    statuses = {r.status for r in await rows(w, MediaFile)}
    assert statuses == {"stored", "expired"}
    # Staff give commands in words: a voice without words is not one.
    await bind_judge(w)
    assert await w.send(unheard(JUDGE_WX, "MEDIA_staff")) == texts.UNSUPPORTED


async def test_the_notice_hold_touches_only_its_own_rows(w: World) -> None:
    """Released notices say the length before their own message's link only."""
    payload = {
        "notice_kind": "ticket.added_for_staff",
        "params": {"text": "语音留言\n（收听语音：http://court.example/media/7?e=1&s=x）"},
    }
    async with w.deps.db.transaction() as s:
        for text in (
            payload,
            {"text": "语音留言\n（收听语音：http://court.example/media/70?e=1）"},
        ):
            s.add(
                Outbox(
                    recipient=JUDGE_WX, kind="cs_text", payload=json.dumps(text, ensure_ascii=False)
                )
            )
    async with w.deps.db.transaction() as s:
        assert await voice.release(s, 7, 12.0) == 1
    texts_now = [json.loads(o.payload) for o in sorted(await rows(w, Outbox), key=lambda o: o.id)]
    assert texts_now[0]["params"]["text"].startswith("语音留言（12秒）\n")
    assert texts_now[1]["text"].startswith("语音留言\n")


async def test_the_fake_wechat_serves_media_and_refuses_unknown_ids(w: World) -> None:
    api = w.deps.senders["wechat"].api  # type: ignore[attr-defined]
    resp = await w.client.session.post(
        f"{w.deps.settings.wechat.api_base}/_fake/media?media_id=MEDIA_posted",
        data=SAMPLE,
        headers={"Content-Type": "audio/amr"},
    )
    assert resp.status == 200
    assert await api.get_media("MEDIA_posted") == (SAMPLE, "audio/amr")
    from bot.channels.wechat.api import INVALID_MEDIA, WeChatError

    with pytest.raises(WeChatError) as refused:
        await api.get_media("MEDIA_never")
    assert refused.value.errcode == INVALID_MEDIA == 40007
