"""The /wechat callback driven over HTTP with messages built as WeChat builds them."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.channels.wechat.callback import GATE
from bot.dialog.dispatch import Deps
from bot.fakes.wechat.callbacks import WeChatServer, event_xml, media_xml, sign, text_xml
from handlers import texts
from qr import tokens
from storage import state
from storage.models import AuditEvent, Message
from tests.conftest import AES_KEY, CASE_NUMBER, COURT, TOKEN, count

USER = "oUser000000000000000000001"


async def post(
    client: TestClient, server: WeChatServer, xml: str, **kw: Any
) -> tuple[int, dict[str, Any] | None, str]:
    query, body = server.request(xml, **kw)
    resp = await client.post("/wechat", params=query, data=body.encode())
    raw = await resp.text()
    return resp.status, (server.read_reply(raw, query) if resp.status == 200 else None), raw


# -- server verification -------------------------------------------------------------


async def test_get_echoes_when_signed(client: TestClient, wechat: WeChatServer) -> None:
    resp = await client.get("/wechat", params={**wechat.query(), "echostr": "8837461"})
    assert resp.status == 200
    assert await resp.text() == "8837461"


async def test_get_refuses_a_bad_signature(client: TestClient, wechat: WeChatServer) -> None:
    q = {**wechat.query(), "echostr": "8837461"}
    q["signature"] = "0" * 40
    resp = await client.get("/wechat", params=q)
    assert resp.status == 403
    assert "8837461" not in await resp.text()


# -- plaintext and safe mode -----------------------------------------------------------


async def test_plaintext_text_is_stored_and_answered(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    status, reply, _ = await post(client, wechat, text_xml(USER, "你好"))
    assert status == 200
    assert reply is not None
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == USER
    assert reply["Content"] == texts.WELCOME
    async with deps.db.sessions() as s:
        rows = (await s.execute(select(Message).order_by(Message.id))).scalars().all()
        actions = (
            (await s.execute(select(AuditEvent.action).order_by(AuditEvent.id))).scalars().all()
        )
    assert [(m.direction, m.content) for m in rows] == [("in", "你好"), ("out", texts.WELCOME)]
    assert actions == ["message.in", "message.out"]


async def test_safe_mode_round_trip(
    safe_client: TestClient, safe_wechat: WeChatServer, deps: Deps
) -> None:
    query, body = safe_wechat.request(text_xml(USER, "你好"))
    assert "你好" not in body  # really encrypted on the wire
    resp = await safe_client.post("/wechat", params=query, data=body.encode())
    raw = await resp.text()
    assert resp.status == 200
    assert "<Encrypt>" in raw and texts.WELCOME not in raw
    reply = safe_wechat.read_reply(raw, query)
    assert reply is not None and reply["Content"] == texts.WELCOME
    assert await count(deps, Message) == 2


async def test_safe_mode_refuses_plaintext(
    safe_client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    status, _, _ = await post(safe_client, wechat, text_xml(USER, "你好"))
    assert status == 403
    assert await count(deps, Message) == 0


async def test_safe_mode_bad_msg_signature(
    safe_client: TestClient, safe_wechat: WeChatServer, deps: Deps
) -> None:
    query, body = safe_wechat.request(text_xml(USER, "你好"))
    query["msg_signature"] = "f" * 40
    resp = await safe_client.post("/wechat", params=query, data=body.encode())
    assert resp.status == 403
    assert await count(deps, Message) == 0


async def test_safe_mode_message_for_another_app(safe_client: TestClient, deps: Deps) -> None:
    other = WeChatServer(token=TOKEN, app_id="wxOTHERAPP0000000", aes_key=AES_KEY)
    status, _, _ = await post(safe_client, other, text_xml(USER, "你好"))
    assert status == 403
    assert await count(deps, Message) == 0


async def test_safe_mode_garbage_ciphertext(
    safe_client: TestClient, safe_wechat: WeChatServer, deps: Deps
) -> None:
    q = safe_wechat.query()
    junk = "not*base64*at*all"
    q.update(encrypt_type="aes", msg_signature=sign(TOKEN, q["timestamp"], q["nonce"], junk))
    body = (
        f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{junk}]]></Encrypt></xml>"
    )
    resp = await safe_client.post("/wechat", params=q, data=body.encode())
    assert resp.status == 400
    assert await count(deps, Message) == 0


# -- bad input changes nothing ---------------------------------------------------------


async def test_bad_signature_is_refused_and_nothing_recorded(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    query, body = wechat.request(text_xml(USER, "你好"))
    query["signature"] = "1" * 40
    resp = await client.post("/wechat", params=query, data=body.encode())
    assert resp.status == 403
    assert await count(deps, Message) == 0
    assert await count(deps, AuditEvent) == 0


async def test_missing_signature(client: TestClient, deps: Deps) -> None:
    resp = await client.post("/wechat", data=text_xml(USER, "你好").encode())
    assert resp.status == 400
    assert await count(deps, Message) == 0


async def test_stale_timestamp(client: TestClient, wechat: WeChatServer, deps: Deps) -> None:
    old = str(int(time.time()) - 600)
    status, _, _ = await post(client, wechat, text_xml(USER, "你好"), timestamp=old)
    assert status == 403
    future = str(int(time.time()) + 600)
    status, _, _ = await post(client, wechat, text_xml(USER, "你好"), timestamp=future)
    assert status == 403
    assert await count(deps, Message) == 0


async def test_huge_body(client: TestClient, wechat: WeChatServer, deps: Deps) -> None:
    status, _, _ = await post(client, wechat, text_xml(USER, "长" * 100_000))
    assert status == 413
    assert await count(deps, Message) == 0


async def test_huge_chunked_body(client: TestClient, wechat: WeChatServer, deps: Deps) -> None:
    query = wechat.query()

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(200):
            yield b"<!-- " + b"x" * 1000 + b" -->"

    resp = await client.post("/wechat", params=query, data=chunks())
    assert resp.status == 413
    assert await count(deps, Message) == 0


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


async def test_hostile_and_malformed_xml(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    for body in (
        BILLION_LAUGHS,
        XXE,
        "<xml><ToUserName>gh</ToUserName",  # truncated
        "this is not xml",
        "<other><MsgType>text</MsgType></other>",  # not WeChat's root
        "<xml><ToUserName>gh</ToUserName><FromUserName>u</FromUserName></xml>",  # no MsgType
        "<xml><MsgType>text</MsgType><Content>hi</Content></xml>",  # no sender
    ):
        status, _, raw = await post(client, wechat, body)
        assert status == 400, (body, raw)
    assert await count(deps, Message) == 0
    assert await count(deps, AuditEvent) == 0


async def test_a_signature_carries_only_its_own_message(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    """Plaintext signatures do not cover the body: a captured URL must not carry a forged one."""
    query, body = wechat.request(text_xml(USER, "真的"))
    assert (await client.post("/wechat", params=query, data=body.encode())).status == 200
    forged = text_xml("oAttacker", "伪造")
    resp = await client.post("/wechat", params=query, data=forged.encode())
    assert resp.status == 403
    async with deps.db.sessions() as s:
        assert [
            m.content
            for m in (await s.execute(select(Message).where(Message.direction == "in"))).scalars()
        ] == ["真的"]


# -- WeChat's retries -------------------------------------------------------------------


async def test_triple_retry_recorded_once_and_answered_alike(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    xml = text_xml(USER, "你好", msg_id=987654321)
    answers = []
    for _ in range(3):  # WeChat re-sends with a fresh timestamp/nonce each time
        status, reply, _ = await post(client, wechat, xml)
        assert status == 200
        answers.append(reply)
    assert answers[0] is not None and answers[0]["Content"] == texts.WELCOME
    assert all(a == answers[0] | {"CreateTime": a["CreateTime"]} for a in answers if a)
    async with deps.db.sessions() as s:
        ins = (await s.execute(select(Message).where(Message.direction == "in"))).scalars().all()
    assert len(ins) == 1


async def test_concurrent_retries_of_a_slow_first_delivery(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    xml = text_xml(USER, "你好", msg_id=55555)
    results = await asyncio.gather(*(post(client, wechat, xml) for _ in range(3)))
    assert all(status == 200 for status, _, _ in results)
    contents = {reply["Content"] for _, reply, _ in results if reply}
    assert contents == {texts.WELCOME}
    assert await count(deps, Message) == 2  # one in, one out


async def test_events_deduplicated_by_sender_and_time(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    xml = event_xml(USER, "subscribe", at=1763860000)
    for _ in range(2):
        status, reply, _ = await post(client, wechat, xml)
        assert status == 200 and reply is not None
    assert await count(deps, Message) == 2


# -- kinds we do not handle --------------------------------------------------------------


async def test_unknown_kinds_get_a_polite_reply(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    samples = [
        media_xml(USER, "image", PicUrl="http://img", MediaId="m1"),
        media_xml(USER, "video", MediaId="m2", ThumbMediaId="t"),
        media_xml(USER, "location", Location_X="39.9", Location_Y="116.3", Scale=15, Label="某地"),
        media_xml(USER, "link", Title="t", Description="d", Url="http://x"),
        media_xml(USER, "file", Title="a.pdf", FileKey="k", FileMd5="m", FileTotalLen=10),
        media_xml(USER, "brand_new_type", Foo="bar"),
        event_xml(USER, "LOCATION"),
        event_xml(USER, "scancode_push", "k"),
    ]
    for xml in samples:
        status, reply, raw = await post(client, wechat, xml)
        assert status == 200, raw
        assert reply is not None and reply["Content"] == texts.UNSUPPORTED, xml
    assert await count(deps, Message) == 2 * len(samples)


async def test_voice_with_recognition_is_read_as_text(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    status, reply, _ = await post(
        client, wechat, media_xml(USER, "voice", MediaId="v1", Format="amr", Recognition="你好")
    )
    assert status == 200 and reply is not None
    async with deps.db.sessions() as s:
        msg = (await s.execute(select(Message).where(Message.direction == "in"))).scalar_one()
    assert (msg.msg_type, msg.content, msg.media_id) == ("voice", "你好", "v1")


async def test_notices_get_success_and_no_text(client: TestClient, wechat: WeChatServer) -> None:
    for event in ("TEMPLATESENDJOBFINISH", "VIEW", "unsubscribe"):
        status, reply, raw = await post(client, wechat, event_xml(USER, event, "x"))
        assert status == 200 and reply is None and raw == "success"


# -- scanning and typing a case code ---------------------------------------------------------


async def test_subscribe_by_scanning_a_case_code(
    client: TestClient, wechat: WeChatServer, sample_case: dict[str, Any]
) -> None:
    status, reply, _ = await post(
        client, wechat, event_xml(USER, "subscribe", "qrscene_" + sample_case["token"])
    )
    assert status == 200 and reply is not None
    assert COURT in reply["Content"] and CASE_NUMBER in reply["Content"]
    assert "王某某" not in reply["Content"]


async def test_scan_event_opens_the_case(
    client: TestClient, wechat: WeChatServer, deps: Deps, sample_case: dict[str, Any]
) -> None:
    status, reply, _ = await post(client, wechat, event_xml(USER, "SCAN", sample_case["token"]))
    assert reply is not None and CASE_NUMBER in reply["Content"]
    async with deps.db.sessions() as s:
        scans = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "code.scanned")))
            .scalars()
            .all()
        )
    assert [(e.actor, e.case_id) for e in scans] == [(USER, sample_case["case_id"])]


async def test_typed_short_code_in_any_form(
    client: TestClient, wechat: WeChatServer, sample_case: dict[str, Any]
) -> None:
    code = sample_case["short_code"]
    for typed in (code, code.lower(), tokens.pretty(code), " ".join(code)):
        _, reply, _ = await post(client, wechat, text_xml(USER, typed))
        assert reply is not None and CASE_NUMBER in reply["Content"], typed


async def test_mistyped_and_unknown_codes_are_told_apart(
    client: TestClient, wechat: WeChatServer, sample_case: dict[str, Any]
) -> None:
    code = sample_case["short_code"]
    wrong_char = next(c for c in tokens.ALPHABET if c != code[3])
    _, reply, _ = await post(client, wechat, text_xml(USER, code[:3] + wrong_char + code[4:]))
    assert reply is not None and reply["Content"] == texts.CODE_MISTYPED
    other = tokens.new_short_code()
    _, reply, _ = await post(client, wechat, text_xml(USER, other))
    assert reply is not None and reply["Content"] == texts.CODE_UNKNOWN


async def test_revoked_code_gets_a_clear_answer(
    client: TestClient, wechat: WeChatServer, deps: Deps, sample_case: dict[str, Any]
) -> None:
    from qr import codes
    from storage.models import Case

    async with deps.db.transaction() as s:
        case = await s.get(Case, sample_case["case_id"])
        assert case is not None
        await codes.revoke(s, case, reason="lost document", actor="admin")
    _, reply, _ = await post(client, wechat, event_xml(USER, "SCAN", sample_case["token"]))
    assert reply is not None and reply["Content"] == texts.CODE_REVOKED.format(
        call=texts.call(None)
    )
    _, reply, _ = await post(client, wechat, text_xml(USER, sample_case["short_code"]))
    assert reply is not None and reply["Content"] == texts.CODE_REVOKED.format(
        call=texts.call(None)
    )


async def test_flooding_is_slowed_but_nothing_is_lost(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    limit = deps.settings.user_rate_per_minute
    replies = [
        (await post(client, wechat, text_xml(USER, f"第{i}条")))[1] for i in range(limit + 3)
    ]
    assert all(r is not None for r in replies)
    assert [r["Content"] for r in replies[-3:] if r] == [texts.SLOW_DOWN] * 3
    async with deps.db.sessions() as s:
        ins = (await s.execute(select(Message).where(Message.direction == "in"))).scalars().all()
    assert len(ins) == limit + 3


async def test_overload_is_refused_before_anything_is_claimed(
    aiohttp_client: Any, settings: Any, deps: Deps, wechat: WeChatServer
) -> None:
    from dataclasses import replace

    from bot.app.factory import create_app

    busy = replace(settings, max_in_flight=0, admit_wait_s=0.05)
    client = await aiohttp_client(create_app(busy, deps))
    xml = text_xml(USER, "你好", msg_id=777)
    status, _, _ = await post(client, wechat, xml)
    assert status == 503
    assert await count(deps, Message) == 0
    # Nothing was claimed: the same message is taken normally once there is room.
    calm = await aiohttp_client(create_app(settings, deps))
    status, reply, _ = await post(calm, wechat, xml)
    assert status == 200 and reply is not None
    assert await count(deps, Message) == 2


async def test_a_store_that_fails_is_503_and_the_retry_works(
    client: TestClient, wechat: WeChatServer, deps: Deps, monkeypatch: Any
) -> None:
    from bot.dialog import dispatch as dialog

    real_record = dialog.record

    async def broken(*args: Any, **kw: Any) -> int:
        raise ConnectionError("database went away")

    monkeypatch.setattr(dialog, "record", broken)
    xml = text_xml(USER, "你好", msg_id=888)
    status, _, raw = await post(client, wechat, xml)
    assert status == 503 and raw != "success"
    assert await count(deps, Message) == 0
    # While the database stays down, others are held, then get 503 with nothing claimed.
    other = text_xml(USER + "2", "你好", msg_id=889)
    status, _, raw = await post(client, wechat, other)
    assert status == 503
    assert await deps.redis.get(state.seen_key("wx:889")) is None
    monkeypatch.setattr(dialog, "record", real_record)
    client.app[GATE].down_until.clear()  # type: ignore[attr-defined]  # its hold is over
    status, reply, _ = await post(client, wechat, xml)  # WeChat's retry, 5 s later
    assert status == 200 and reply is not None and reply["Content"] == texts.WELCOME
    assert await count(deps, Message) == 2


async def test_a_retry_after_the_first_process_died_unstored_is_handled(
    client: TestClient, wechat: WeChatServer, deps: Deps, monkeypatch: Any
) -> None:
    """The first delivery was claimed, then its process died before storing it. WeChat's
    retry, once the first had time to answer, handles the message instead of saying
    `success` for a message nobody has."""
    from bot.channels.wechat import callback as channel

    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.3)
    assert await state.admit(deps.redis, "1763860000", "dead", "wx:31337", 600) == "new"
    await asyncio.sleep(0.35)  # WeChat retries once the first has had its time
    status, reply, _ = await post(client, wechat, text_xml(USER, "你好", msg_id=31337))
    assert status == 200 and reply is not None and reply["Content"] == texts.WELCOME
    assert await count(deps, Message) == 2  # one in, one out
    status, again, _ = await post(client, wechat, text_xml(USER, "你好", msg_id=31337))
    assert status == 200 and again is not None and again["Content"] == texts.WELCOME
    assert await count(deps, Message) == 2


async def test_a_retry_of_a_message_stored_but_not_answered_is_not_run_again(
    client: TestClient, wechat: WeChatServer, deps: Deps, monkeypatch: Any
) -> None:
    """The first delivery stored the message, then its process died: the retry must not
    store or run it twice (a stranded flow is the resume job's)."""
    from bot.channels.wechat import callback as channel
    from bot.core.events import Inbound
    from bot.dialog import dispatch as dialog

    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.3)
    assert await state.admit(deps.redis, "1763860000", "dead", "wx:31338", 600) == "new"
    await dialog.accept(deps, Inbound("wechat", USER, "text", "wx:31338", text="你好"), None)
    await asyncio.sleep(0.35)
    status, reply, raw = await post(client, wechat, text_xml(USER, "你好", msg_id=31338))
    assert status == 200 and reply is None and raw == "success"
    assert await count(deps, Message) == 1


async def test_a_retry_after_the_first_process_died_unanswered_gets_the_stored_answer(
    client: TestClient, wechat: WeChatServer, deps: Deps, monkeypatch: Any
) -> None:
    """The first delivery committed the message and its answer, then its process died
    before answering WeChat: the retry gives that answer, and nothing runs twice."""
    from bot.channels.wechat import callback as channel
    from bot.core.events import Inbound
    from bot.core.reply import Reply
    from bot.dialog import dispatch as dialog

    monkeypatch.setattr(channel, "ANSWER_BY_S", 0.3)
    assert await state.admit(deps.redis, "1763860000", "dead", "wx:31339", 600) == "new"
    first = Inbound("wechat", USER, "text", "wx:31339", text="你好")
    assert await dialog.respond(deps, first, {}) == (Reply(texts.WELCOME), {})
    await asyncio.sleep(0.35)
    status, reply, _ = await post(client, wechat, text_xml(USER, "你好", msg_id=31339))
    assert status == 200 and reply is not None and reply["Content"] == texts.WELCOME
    assert await count(deps, Message) == 2


# -- whatever WeChat really sends is answered, never with a 5xx ----------------------------------


def _raw(fields: dict[str, Any]) -> str:
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


def _message(**fields: Any) -> str:
    base = {"ToUserName": "gh_x", "FromUserName": USER, "CreateTime": int(time.time())}
    return _raw({**base, **fields})


def _timeless(reply_xml: str) -> str:
    return re.sub(r"<CreateTime>\d+</CreateTime>", "", reply_xml)


async def test_odd_but_real_messages_are_answered_and_fit_the_columns(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    """Each of these once got a 500 (or an endless 503): WeChat then retries it forever."""
    samples = {
        "long event name": _message(MsgType="event", Event="qualification_verify_success"),
        "longer event name": _message(MsgType="event", Event="user_authorization_cancellation"),
        "huge event key": _message(MsgType="event", Event="SCAN", EventKey="K" * 5000),
        "huge click key": _message(MsgType="event", Event="CLICK", EventKey="菜" * 3000),
        "long media id": _message(MsgType="image", MediaId="M" * 300, PicUrl="http://p", MsgId=7),
        "non-numeric MsgId": _message(MsgType="text", Content="你好", MsgId="abc-123"),
        "huge MsgId": _message(MsgType="text", Content="你好", MsgId="9" * 400),
    }
    for label, xml in samples.items():
        status, _, raw = await post(client, wechat, xml)
        assert status == 200, (label, raw)
        # And its retry is recognised as one: answered alike, stored once.
        status, _, again = await post(client, wechat, xml)
        # The same answer; its CreateTime is when it was sent, so it may tick over.
        assert status == 200 and _timeless(again) == _timeless(raw), label
    async with deps.db.sessions() as s:
        rows = (await s.execute(select(Message).where(Message.direction == "in"))).scalars().all()
    assert len(rows) == len(samples)
    assert all(len(m.msg_key or "") <= 128 and len(m.msg_type) <= 32 for m in rows)
    assert {m.msg_key for m in rows} >= {"wx:abc-123"}
    assert any(m.msg_type == "image" and m.media_id is None for m in rows)


async def test_a_sender_id_no_user_could_have_is_ignored_with_success(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    xml = _raw(
        {
            "ToUserName": "gh_x",
            "FromUserName": "o" * 80,
            "CreateTime": int(time.time()),
            "MsgType": "text",
            "Content": "你好",
            "MsgId": 1,
        }
    )
    status, reply, raw = await post(client, wechat, xml)
    assert (status, reply, raw) == (200, None, "success")
    assert await count(deps, Message) == 0


async def test_with_redis_down_messages_are_still_handled_on_the_database(
    aiohttp_client: Any, settings: Any, deps: Deps, wechat: WeChatServer, sample_case: Any
) -> None:
    """Redis is a cache: without it (once a 500, then 503s) a message is answered from the
    database, stored once however often WeChat retries it, and the step is kept."""
    from redis.asyncio import Redis

    from bot.app.factory import create_app

    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, decode_responses=True)
    broken = Deps(settings=settings, db=deps.db, redis=dead)
    client = await aiohttp_client(create_app(settings, broken))
    started = time.monotonic()
    code = sample_case["short_code"]
    status, reply, _ = await post(client, wechat, text_xml(USER, code, msg_id=901))
    assert status == 200 and reply is not None and texts.ASK_DIGITS in reply["Content"]
    for _ in range(2):  # WeChat's retries: the same answer, stored once
        status, again, _ = await post(client, wechat, text_xml(USER, code, msg_id=901))
        assert status == 200 and again is not None and again["Content"] == reply["Content"]
    status, verified, _ = await post(client, wechat, text_xml(USER, "1234", msg_id=902))
    assert verified is not None and "验证成功" in verified["Content"]  # the step was kept
    assert time.monotonic() - started < 10
    async with deps.db.sessions() as s:
        keys = (await s.execute(select(Message.msg_key))).scalars().all()
    assert sorted(k for k in keys if k) == ["re:wx:901", "re:wx:902", "wx:901", "wx:902"]
    await dead.aclose()


async def test_a_message_held_during_an_outage_is_answered_once_the_database_is_back(
    client: TestClient, wechat: WeChatServer, deps: Deps
) -> None:
    gate = client.app[GATE]
    gate.down_until["database"] = time.monotonic() + 0.5  # type: ignore[attr-defined]
    started = time.monotonic()
    status, reply, _ = await post(client, wechat, text_xml(USER, "你好", msg_id=990))
    assert status == 200 and reply is not None and reply["Content"] == texts.WELCOME
    assert 0.4 < time.monotonic() - started < 3.5
    gate.down_until["database"] = time.monotonic() + 60  # type: ignore[attr-defined]
    status, _, _ = await post(client, wechat, text_xml(USER, "你好", msg_id=991))
    assert status == 503  # held for 3 s, then refused: WeChat tries again
    assert await count(deps, Message) == 2


async def test_a_burst_waits_for_a_slot_instead_of_503(
    aiohttp_client: Any, settings: Any, deps: Deps, wechat: WeChatServer
) -> None:
    """More messages at once than slots: they queue briefly and are all answered."""
    from dataclasses import replace

    from bot.app.factory import create_app

    narrow = replace(settings, max_in_flight=2, admit_wait_s=30)
    client = await aiohttp_client(create_app(narrow, deps))
    results = await asyncio.gather(
        *(post(client, wechat, text_xml(f"{USER}{i}", "你好")) for i in range(12))
    )
    assert [status for status, _, _ in results] == [200] * 12
