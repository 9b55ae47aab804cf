"""The WeCom app's callback, `/wecom`: WeCom's wire format in, Inbound events out.

WeCom always encrypts (its EncodingAESKey, the corp's id inside every message). The URL
check is a GET whose `echostr` we decrypt and echo. Order of checks on POST, as /wechat's:
parameters (400), timestamp window (403), body size (413), XML without DTDs or entities
(400), signature over the ciphertext (403), decryption for this corp (403/400), the
decrypted XML (400), the replay window (403). A message for another of the corp's apps is
answered and dropped. Then the dialog (bot.dialog.once) de-duplicates it (WeCom retries
three times when it has no answer in 5 s), stores, handles and answers it within the time
this wire gives; a reply too late goes through the outbox. Nothing here makes an outbound
HTTP call.

Everyone here is `wecom:<userid>` (bot.core.addresses): staff linked by userid get the
staff commands; anyone else is asked for their bind code (bot.dialog.dispatch).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from aiohttp import web
from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.enterprise.replies import TextReply
from wechatpy.exceptions import InvalidSignatureException

from bot.channels.wechat.callback import (
    GATE,
    MAX_EVENT_KEY,
    MAX_MEDIA_ID,
    MAX_TYPE,
    Gate,
    Ignored,
    Rejected,
    bounded_key,
    read_body,
    safe_xml,
)
from bot.channels.wecom.api import TEXT_MAX_BYTES
from bot.channels.wecom.sender import chunks
from bot.core.addresses import WECOM, WECOM_USERID_MAX, wecom_user
from bot.core.events import Inbound
from bot.core.reply import Reply, as_text
from bot.core.settings import Settings, WeComSettings
from bot.dialog import once
from bot.dialog.deps import DEPS, SETTINGS, Deps
from bot.outbox import queue as outbox

log = logging.getLogger(__name__)

ANSWER_BY_S = 4.0  # WeCom, as WeChat, gives up at 5 s
# Events that are no words of anyone's: no reply, nothing stored (entering the app, a
# menu's link opened, a location reported, the app's contacts changed …).
SPOKEN_EVENTS = {"subscribe", "click"}
MESSAGE_KINDS = {"text", "voice", "image", "video", "location", "link", "file"}


def _settings(request: web.Request) -> WeComSettings:
    wecom = request.app[SETTINGS].wecom
    assert wecom is not None  # the routes are only added when WeCom is configured
    return wecom


@functools.lru_cache(maxsize=8)
def _crypto(token: str, aes_key: str, corp_id: str) -> WeChatCrypto:
    return WeChatCrypto(token, aes_key, corp_id)


def crypto(wecom: WeComSettings) -> WeChatCrypto:
    return _crypto(wecom.token, wecom.aes_key, wecom.corp_id)


def check_query(settings: Settings, query: Any) -> tuple[str, str, str]:
    """(msg_signature, timestamp, nonce), all present and the timestamp fresh. The
    signature itself covers the ciphertext: it is checked with it (`decrypt`)."""
    signature, timestamp, nonce = (
        query.get(k, "") for k in ("msg_signature", "timestamp", "nonce")
    )
    if not (signature and timestamp and nonce):
        raise Rejected(400, "missing msg_signature, timestamp or nonce")
    if (
        not timestamp.isdigit()
        or abs(time.time() - int(timestamp)) > settings.timestamp_tolerance_s
    ):
        raise Rejected(403, f"timestamp {timestamp[:20]!r} is too far from our clock")
    return signature, timestamp, nonce


def decrypt(wecom: WeComSettings, body: bytes, signature: str, timestamp: str, nonce: str) -> str:
    """The message's plain XML: the envelope checked first (no DTD, no entity), then the
    signature, the corp and the plain XML itself."""
    safe_xml(body)
    try:
        plain: str = crypto(wecom).decrypt_message(body, signature, timestamp, nonce)
    except InvalidSignatureException as exc:
        raise Rejected(403, "bad msg_signature") from exc
    except InvalidCorpIdException as exc:
        raise Rejected(403, "message encrypted for another CorpID") from exc
    except Exception as exc:  # no <Encrypt>, bad base64, bad padding: the sender's fault
        raise Rejected(400, f"cannot decrypt ({type(exc).__name__})") from exc
    safe_xml(plain)
    return plain


def to_inbound(wecom: WeComSettings, xml: str) -> tuple[Inbound, Any]:
    try:
        msg = parse_message(xml)
    except (KeyError, TypeError, ValueError) as exc:
        raise Rejected(400, "message without MsgType") from exc
    if msg is None:
        raise Rejected(400, "empty message")
    data = msg._data
    userid = str(data.get("FromUserName") or "")
    if not userid or not data.get("ToUserName"):
        raise Rejected(400, "message without FromUserName/ToUserName")
    agent = str(data.get("AgentID") or "").strip()
    if agent and agent != str(wecom.agent_id):
        raise Ignored(f"a message for app {agent[:12]}, not ours ({wecom.agent_id})")
    if len(userid) > WECOM_USERID_MAX:
        raise Ignored(f"FromUserName of {len(userid)} characters is no member of ours")
    user = wecom_user(userid)
    created = str(data.get("CreateTime") or "")[:20]
    raw = str(data.get("MsgType", "")).lower()[:MAX_TYPE]
    if raw == "event":
        event = str(data.get("Event", "")).lower()[:MAX_TYPE]
        event_key = str(data.get("EventKey") or "")[:MAX_EVENT_KEY]
        key = bounded_key(f"wc:{userid}:{created}:{event}:{event_key}")
        kind = event if event in SPOKEN_EVENTS else "silent"
        text = event_key if event == "click" else ""
        return Inbound(WECOM, user, kind, key, text=text, raw_type=f"event.{event}"[:MAX_TYPE]), msg
    msg_id = str(data.get("MsgId") or "").strip()
    key = bounded_key(f"wc:{msg_id}" if msg_id else f"wc:{userid}:{created}:{raw}")
    text = str(data.get("Content") or "") if raw == "text" else ""
    kind = raw if raw in MESSAGE_KINDS else "other"
    media_id = str(data.get("MediaId") or "") or None
    if media_id is not None and len(media_id) > MAX_MEDIA_ID:
        media_id = None
    # WeCom's media are fetched with WeCom's token, not WeChat's: not kept by id here.
    if kind in ("voice", "image", "video", "file"):
        media_id = None
    return Inbound(WECOM, user, kind, key, text=text, media_id=media_id, raw_type=raw), msg


def render(wecom: WeComSettings, msg: Any, answer: str, nonce: str) -> str:
    """A passive text reply, encrypted; nothing to say is an empty body (WeCom then sends
    nothing and does not retry)."""
    if not answer:
        return ""
    reply = TextReply(source=msg.target, target=msg.source, content=answer, agent=wecom.agent_id)
    encrypted: str = crypto(wecom).encrypt_message(reply.render(), nonce, str(int(time.time())))
    return encrypted


async def verify_url(request: web.Request) -> web.Response:
    """WeCom's URL check: `echostr` decrypted and echoed when the signature is ours."""
    settings = request.app[SETTINGS]
    wecom = _settings(request)
    try:
        signature, timestamp, nonce = check_query(settings, request.query)
        echostr = request.query.get("echostr", "")
        if not echostr:
            raise Rejected(400, "missing echostr")
        try:
            plain: str = crypto(wecom).check_signature(signature, timestamp, nonce, echostr)
        except InvalidSignatureException as exc:
            raise Rejected(403, "bad msg_signature") from exc
        except InvalidCorpIdException as exc:
            raise Rejected(403, "echostr encrypted for another CorpID") from exc
        except Exception as exc:
            raise Rejected(400, f"cannot decrypt echostr ({type(exc).__name__})") from exc
    except Rejected as exc:
        log.warning("wecom GET refused: %s", exc.reason)
        return web.Response(status=exc.status, text=exc.reason)
    return web.Response(text=plain)


async def receive(request: web.Request) -> web.Response:
    """Every callback is answered within ANSWER_BY_S: waiting for a slot comes out of the
    time left to handle it (the process's admission is /wechat's own)."""
    settings = request.app[SETTINGS]
    deps = request.app[DEPS]
    gate = request.app[GATE]
    deadline = time.monotonic() + ANSWER_BY_S
    if (down := gate.down()) is not None:
        return web.Response(status=503, text=f"{down} unavailable, try again")
    if not await gate.admit(max(deadline - once.MIN_WORK_S - time.monotonic(), 0.0)):
        return web.Response(status=503, text="busy, try again")
    try:
        return await _receive(request, settings, deps, gate, deadline)
    finally:
        gate.slots.release()


async def _receive(
    request: web.Request, settings: Settings, deps: Deps, gate: Gate, deadline: float
) -> web.Response:
    wecom = _settings(request)
    try:
        signature, timestamp, nonce = check_query(settings, request.query)
        body = await read_body(request, settings.max_callback_bytes)
        inbound, msg = to_inbound(wecom, decrypt(wecom, body, signature, timestamp, nonce))
        admitted = await once.admit(
            deps, timestamp, nonce, inbound.key, settings.timestamp_tolerance_s * 2
        )
        if admitted == "replay":
            raise Rejected(403, "timestamp and nonce already used for another message")
    except Rejected as exc:
        log.warning("wecom POST refused (%s): %s", exc.status, exc.reason)
        return web.Response(status=exc.status, text=exc.reason)
    except Ignored as exc:
        log.warning("wecom POST ignored: %s", exc)
        return web.Response(text="")
    if inbound.kind == "silent":
        return web.Response(text="")
    try:
        if admitted == "retry":
            answer = await once.answer_retry(deps, inbound, deadline, first_within=ANSWER_BY_S)
        else:
            answer = await once.answer(deps, inbound, deadline)
    except Exception as exc:
        if gate.failed(exc) == "database":
            await deps.db.engine.dispose()
        log.exception("could not handle %s; WeCom will retry", inbound.key)
        return web.Response(status=503, text="temporarily unavailable")
    said = _said(answer)
    parts = chunks(said, TEXT_MAX_BYTES) if said else [""]
    if len(parts) > 1 and admitted != "retry":
        # A reply WeCom would cut: its first part now, the rest through the outbox.
        try:
            for part in parts[1:]:
                await outbox.enqueue_text(deps.db, inbound.user, part, channel=WECOM)
            deps.wakeup.set()
        except Exception:
            log.exception("could not queue the rest of the answer to %s", inbound.key)
    body_out = render(wecom, msg, parts[0], nonce)
    return web.Response(text=body_out, content_type="text/xml" if body_out else "text/plain")


def _said(answer: Reply | None) -> str:
    return as_text(answer) if answer is not None else ""


def setup(app: web.Application) -> None:
    """`/wecom` on the app when WeCom is configured (WECOM_*); nothing otherwise."""
    settings = app[SETTINGS]
    if settings.wecom is None:
        return
    if GATE not in app:  # /wechat's admission is the process's: shared when it is there
        app[GATE] = Gate(asyncio.Semaphore(settings.max_in_flight), settings.admit_wait_s)
    app.router.add_get("/wecom", verify_url)
    app.router.add_post("/wecom", receive)
