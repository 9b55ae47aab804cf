"""A voice message as the judge hears it: the link in their notice, opened in a real
browser at a phone's size (WeChat's own browser is one), shows the page that plays the
litigant's voice; its <audio> loads the mp3 ffmpeg made and knows how long it is. Without
ffmpeg the same page offers the file to download."""

from __future__ import annotations

import re

import pytest

from bot.app import jobs
from bot.fakes.wechat.callbacks import media_xml
from bot.rules import media
from handlers import texts
from tests.browser import keep, phone_page
from tests.test_voice import HAVE_FFMPEG, SAMPLE, SAMPLE_SECONDS
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge, verify_litigant

LARGE_TYPE_PX = 20  # the smallest type the page's heading may have on a phone


async def test_the_judge_opens_a_voice_message_and_it_plays(world: World) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    w.fake.add_media("MEDIA_browser", SAMPLE)
    await w.send(media_xml(LITIGANT, "voice", MediaId="MEDIA_browser", Format="amr"))
    assert await jobs.fetch_voices(w.deps) == 1
    assert await w.deliver() == 1
    [notice] = w.inbox(JUDGE_WX)
    found = re.search(r"http://court\.example(/media/\d+\?\S+)）", notice)
    assert found is not None, notice
    async with phone_page() as page:
        await page.goto(str(w.client.make_url(found.group(1))))
        assert "/play?" in page.url  # a browser is shown the page, not the AMR file
        shown = await page.inner_text("body")
        assert texts.voice_note(SAMPLE_SECONDS) in shown and texts.VOICE_PAGE_DOWNLOAD in shown
        assert LITIGANT not in shown and "王" not in shown  # nobody's name or id
        size = await page.eval_on_selector("h1", "e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= LARGE_TYPE_PX
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        if HAVE_FFMPEG:
            # The browser has read the audio: its length (about 4.8 s), and no error.
            await page.wait_for_function(
                "() => { const a = document.querySelector('audio');"
                " return a && a.readyState >= 1 && a.duration > 0 }",
                timeout=15000,
            )
            duration = await page.eval_on_selector("audio", "a => a.duration")
            assert abs(duration - SAMPLE_SECONDS) < 0.5, duration
            assert await page.eval_on_selector("audio", "a => a.error") is None
            # It plays: muted (no sound card here), time moves on.
            await page.eval_on_selector("audio", "a => { a.muted = true; return a.play() }")
            await page.wait_for_function(
                "() => document.querySelector('audio').currentTime > 0.2", timeout=15000
            )
            await page.eval_on_selector(
                "audio", "a => { a.pause(); a.currentTime = 0; a.muted = false }"
            )
        else:
            assert await page.query_selector("audio") is None
            assert texts.VOICE_PAGE_NO_PLAYER in shown
        await keep(page, "voice-play")


async def test_without_ffmpeg_the_page_offers_the_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    assert await w.say(LITIGANT, "1") == texts.ASK_PROMPT
    w.fake.add_media("MEDIA_download", SAMPLE)
    await w.send(media_xml(LITIGANT, "voice", MediaId="MEDIA_download", Format="amr"))
    assert await jobs.fetch_voices(w.deps) == 1
    assert await w.deliver() == 1
    found = re.search(r"http://court\.example(/media/\d+\?\S+)）", w.inbox(JUDGE_WX)[0])
    assert found is not None
    monkeypatch.setattr(media.shutil, "which", lambda name: None)  # no ffmpeg on the server
    async with phone_page() as page:
        await page.goto(str(w.client.make_url(found.group(1))))
        shown = await page.inner_text("body")
        assert await page.query_selector("audio") is None
        assert texts.VOICE_PAGE_NO_PLAYER in shown and texts.voice_note(SAMPLE_SECONDS) in shown
        await keep(page, "voice-download")
        async with page.expect_download() as downloading:
            await page.click(f"text={texts.VOICE_PAGE_DOWNLOAD}")
        download = await downloading.value
        saved = await download.path()
        assert saved is not None and saved.read_bytes() == SAMPLE
        assert download.suggested_filename.endswith(".amr")
