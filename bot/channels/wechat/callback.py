"""The Official Account callback, `/wechat`: WeChat's wire format in, Inbound events out.
A court with its own account (MST_COURTS_FILE) has its own callback, `/wechat/<slug>`,
checked with that account's token and key; its senders are `wx:<slug>:<openid>`.

Order of checks on POST: signature and timestamp (403), body size (413), XML safety and
shape (400), decryption in safe mode (403/400), replay window (403). Then the message is
handed to the dialog (bot.dialog.once), which de-duplicates it (WeChat retries three times
within 15 s when it has no answer in 5 s), stores, handles and answers it within the time
this wire gives. Nothing here makes an outbound HTTP call.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar
from xml.etree.ElementTree import ParseError

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.core.addresses import ACCOUNT_PREFIX, wechat_user
from bot.core.events import Inbound
from bot.core.reply import Reply, as_text
from bot.core.settings import CourtAccount, Settings, WeChatSettings
from bot.dialog import once
from bot.dialog.deps import DEPS, SETTINGS, Deps

log = logging.getLogger(__name__)
T = TypeVar("T")

# WeChat gives up at 5 s; answer by 4 s whatever happens, and finish the work behind it.
ANSWER_BY_S = 4.0
# On shutdown, work still running behind a `success` is given this long to finish.
FINISH_BEHIND_S = 20.0
SUCCESS = "success"
# Events that are notices to the account, not something a person said: no reply.
SILENT_EVENTS = {
    "unsubscribe",
    "view",
    "view_miniprogram",
    "templatesendjobfinish",
    "masssendjobfinish",
    "subscribe_msg_popup_event",
    "subscribe_msg_change_event",
    "subscribe_msg_sent_event",
}
MESSAGE_KINDS = {"text", "voice", "image", "video", "shortvideo", "location", "link", "file"}


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Ignored(Exception):
    """A signed message from WeChat we cannot use (an id too long to be a user's, say):
    answered `success`, so WeChat does not retry it forever, and logged with the reason."""


# What our columns hold. Every field from outside is bounded here, where it enters.
MAX_OPENID = 64  # WeChat's openids are 28 characters
MAX_KEY = 96  # de-duplication keys; the stored answer's key adds a prefix (dispatch.reply_key)
MAX_TYPE = 32
MAX_MEDIA_ID = 128
MAX_EVENT_KEY = 128  # a scene string is at most 64; menu keys at most 128 bytes


def bounded_key(key: str) -> str:
    """A de-duplication key that fits its column: long ones are replaced by their digest."""
    if len(key) <= MAX_KEY:
        return key
    return "wx:h:" + hashlib.sha256(key.encode()).hexdigest()


def _crypto(account: WeChatSettings) -> WeChatCrypto | None:
    if account.aes_key is None:
        return None
    return _crypto_for(account.token, account.aes_key, account.app_id)


@functools.lru_cache(maxsize=8)
def _crypto_for(token: str, aes_key: str, app_id: str) -> WeChatCrypto:
    # Built once, not twice per message (decrypt, then encrypt the reply).
    return WeChatCrypto(token, aes_key, app_id)


def check_request(
    settings: Settings, query: Any, account: WeChatSettings | None = None
) -> tuple[str, str]:
    """Signature (with `account`'s token: a court's own, else the default account's) and
    freshness of a callback URL; returns (timestamp, nonce)."""
    signature, timestamp, nonce = (query.get(k, "") for k in ("signature", "timestamp", "nonce"))
    if not (signature and timestamp and nonce):
        raise Rejected(400, "missing signature, timestamp or nonce")
    try:
        check_signature((account or settings.wechat).token, signature, timestamp, nonce)
    except InvalidSignatureException as exc:
        raise Rejected(403, "bad signature") from exc
    if (
        not timestamp.isdigit()
        or abs(time.time() - int(timestamp)) > settings.timestamp_tolerance_s
    ):
        raise Rejected(403, f"timestamp {timestamp[:20]!r} is too far from our clock")
    return timestamp, nonce


def safe_xml(body: bytes | str) -> None:
    """Refuse DTDs, entities and anything that is not a WeChat <xml> document."""
    try:
        root = safe_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError) as exc:
        raise Rejected(400, f"malformed or unsafe XML ({type(exc).__name__})") from exc
    if root.tag != "xml":
        raise Rejected(400, f"unexpected root element <{root.tag[:20]}>")


def decode(
    settings: Settings, query: Any, body: bytes, account: WeChatSettings | None = None
) -> str:
    """The plaintext message XML: decrypted in safe (and compatible) mode."""
    safe_xml(body)
    crypto = _crypto(account or settings.wechat)
    if query.get("encrypt_type", "raw") != "aes":
        if crypto is not None:
            raise Rejected(403, "plaintext message while safe mode (WECHAT_AES_KEY) is on")
        return body.decode("utf-8", errors="strict")
    if crypto is None:
        raise Rejected(400, "encrypted message but WECHAT_AES_KEY is not set")
    msg_signature = query.get("msg_signature", "")
    try:
        plain: str = crypto.decrypt_message(body, msg_signature, query["timestamp"], query["nonce"])
    except InvalidSignatureException as exc:
        raise Rejected(403, "bad msg_signature") from exc
    except InvalidAppIdException as exc:
        raise Rejected(403, "message encrypted for another AppID") from exc
    except Exception as exc:  # bad base64, padding, missing <Encrypt>: all the sender's fault
        raise Rejected(400, f"cannot decrypt ({type(exc).__name__})") from exc
    safe_xml(plain)
    return plain


def to_inbound(xml: str, account: str | None = None) -> tuple[Inbound, Any]:
    """The message as an Inbound; `account`: the slug of the court account it came to
    (its sender is then `wx:<slug>:<openid>`, its keys carry the slug too)."""
    try:
        msg = parse_message(xml)
    except (KeyError, TypeError, ValueError) as exc:
        raise Rejected(400, "message without MsgType") from exc
    data = msg._data
    source = str(data.get("FromUserName") or "")
    if not source or not data.get("ToUserName"):
        raise Rejected(400, "message without FromUserName/ToUserName")
    room = MAX_OPENID - (0 if account is None else len(f"{ACCOUNT_PREFIX}{account}:"))
    if len(source) > room:
        raise Ignored(f"FromUserName of {len(source)} characters is no user of ours")
    # Keys are WeChat's (MsgId, FromUserName + CreateTime), unique within one account.
    wx = "wx" if account is None else f"wx:{account}"
    created = str(data.get("CreateTime") or "")[:20]
    raw = str(data.get("MsgType", "")).lower()[:MAX_TYPE]
    if raw == "event":
        event = str(data.get("Event", "")).lower()
        event_key = str(data.get("EventKey") or "")
        # WeChat's rule is FromUserName + CreateTime; the event and its key keep two
        # different scans within one second apart.
        key = bounded_key(f"{wx}:{source}:{created}:{event}:{event_key}")
        kind, code, text = _event_kind(event, event_key[:MAX_EVENT_KEY])
        user = wechat_user(source, account)
        return Inbound(
            "wechat", user, kind, key, text=text, code=code, raw_type=f"event.{event}"[:MAX_TYPE]
        ), msg
    # The MsgId as WeChat wrote it: a number today, but never trusted to be one.
    msg_id = str(data.get("MsgId") or "").strip()
    key = bounded_key(f"{wx}:{msg_id}" if msg_id else f"{wx}:{source}:{created}:{raw}")
    text = ""
    if raw == "text":
        text = str(data.get("Content") or "")
    elif raw == "voice":
        text = str(data.get("Recognition") or "")  # speech recognised by WeChat, if enabled
    kind = raw if raw in MESSAGE_KINDS else "other"
    media_id = str(data.get("MediaId") or "") or None
    if media_id is not None and len(media_id) > MAX_MEDIA_ID:
        log.warning("MediaId of %d characters from %s not kept", len(media_id), source[:8])
        media_id = None
    user = wechat_user(source, account)
    return Inbound("wechat", user, kind, key, text=text, media_id=media_id, raw_type=raw), msg


def _event_kind(event: str, key: str) -> tuple[str, str | None, str]:
    if event == "subscribe_scan":  # a scan by a new follower; wechatpy strips qrscene_
        return "subscribe", key, ""
    if event == "subscribe":
        return "subscribe", None, ""
    if event == "scan":
        return "scan", key, ""
    if event == "click":
        return "click", None, key
    if event in SILENT_EVENTS:
        return "silent", None, ""
    return "event", None, ""


def render(
    settings: Settings,
    msg: Any,
    reply: Reply | None,
    nonce: str,
    account: WeChatSettings | None = None,
) -> str:
    """WeChat's rendering of a reply: the chat text (numbered choices), as a passive reply
    (encrypted in safe mode); nothing to say is `success`."""
    answer = as_text(reply) if reply is not None else ""
    if not answer:
        return SUCCESS
    xml: str = TextReply(source=msg.target, target=msg.source, content=answer).render()
    crypto = _crypto(account or settings.wechat)
    if crypto is None:
        return xml
    encrypted: str = crypto.encrypt_message(xml, nonce, str(int(time.time())))
    return encrypted


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body of {request.content_length} bytes is over {limit}")
    body = await request.content.read(limit + 1)
    while len(body) <= limit and not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise Rejected(413, f"body is over {limit} bytes")
    return body


ACCOUNTS = web.AppKey("wechat_accounts", dict[str, CourtAccount])  # slug -> a court's own


def account_of(request: web.Request) -> CourtAccount | None:
    """The court account a callback came to (`/wechat/<slug>`); None: the default one
    (`/wechat`). A slug no court has: 404, as for any path we do not serve."""
    slug = request.match_info.get("slug")
    if slug is None:
        return None
    found = request.app[ACCOUNTS].get(slug)
    if found is None:
        raise web.HTTPNotFound(text="no such account")
    return found


async def verify_url(request: web.Request) -> web.Response:
    """WeChat's server-URL check: echo `echostr` when the signature is ours."""
    settings = request.app[SETTINGS]
    court = account_of(request)
    try:
        check_request(settings, request.query, court.wechat if court else None)
    except Rejected as exc:
        log.warning("wechat GET refused: %s", exc.reason)
        return web.Response(status=exc.status, text=exc.reason)
    return web.Response(text=request.query.get("echostr", ""))


# A store that just failed is taken as down for this long; the first callback after it
# tries again (and so finds out whether it is back).
OUTAGE_HOLD_S = 0.5
# While the database is known to be down, a callback waits this long for it to come back
# before answering 503: WeChat tries three times 5 s apart, so a short outage is ridden
# out by a later try being held until the database answers again, not lost.
HOLD_FOR_STORE_S = 3.0
MIN_WORK_S = once.MIN_WORK_S  # what a callback keeps, of its ANSWER_BY_S, for its own work


@dataclass
class Gate:
    """Admission for this process: `slots` callbacks work at once, the rest wait their turn
    for `wait_s` at most; and which store (database, redis) is known to be down."""

    slots: asyncio.Semaphore
    wait_s: float
    down_until: dict[str, float] = field(default_factory=dict)

    def down(self) -> str | None:
        moment = time.monotonic()
        return next((k for k, until in self.down_until.items() if until > moment), None)

    async def admit(self, seconds: float) -> bool:
        """A slot, waited for `seconds` at most."""
        if not self.slots.locked():
            await self.slots.acquire()
            return True
        try:
            await asyncio.wait_for(self.slots.acquire(), seconds)
        except TimeoutError:
            return False
        return True

    async def back_within(self, seconds: float) -> bool:
        """Wait while a store is known to be down, `seconds` at most: True once it may be
        back (its hold is over: this callback may be the one that finds out)."""
        deadline = time.monotonic() + seconds
        while self.down() is not None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def failed(self, exc: BaseException) -> str | None:
        """Note an outage if `exc` says a store is unreachable; returns which."""
        store = _store_of(exc)
        if store is not None:
            self.down_until[store] = time.monotonic() + OUTAGE_HOLD_S
        return store


GATE = web.AppKey("wechat_gate", Gate)  # this process's admission and known outages


def _store_of(exc: BaseException) -> str | None:
    """Which store an error says is unreachable. Redis is not one to hold messages off
    for: without it they are handled on the database alone."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, RedisError):
            return None
        if isinstance(chain, SQLAlchemyError | ConnectionError | OSError | TimeoutError):
            return "database"
        chain = chain.__cause__ or chain.__context__
    return None


async def receive(request: web.Request) -> web.Response:
    """Every callback is answered within ANSWER_BY_S of its arrival: time spent waiting for
    the database to come back or for a slot comes out of the time left to handle it."""
    settings = request.app[SETTINGS]
    deps = request.app[DEPS]
    gate = request.app[GATE]
    court = account_of(request)
    deadline = time.monotonic() + ANSWER_BY_S
    down = gate.down()
    if down is not None and not await gate.back_within(min(HOLD_FOR_STORE_S, _left(deadline))):
        # Refuse before claiming anything, so WeChat's retry is a clean retry.
        return web.Response(status=503, text=f"{down} unavailable, try again")
    if not await gate.admit(min(gate.wait_s, _left(deadline))):
        # Overloaded: what waits longer would be answered too late anyway.
        log.warning("no callback slot in time; answering 503")
        return web.Response(status=503, text="busy, try again")
    try:
        return await _receive(request, settings, deps, gate, deadline, court)
    finally:
        gate.slots.release()


def _left(deadline: float) -> float:
    """How long a callback may still wait and keep MIN_WORK_S to be handled in."""
    return max(deadline - MIN_WORK_S - time.monotonic(), 0.0)


async def _receive(
    request: web.Request,
    settings: Settings,
    deps: Deps,
    gate: Gate,
    deadline: float,
    court: CourtAccount | None = None,
) -> web.Response:
    account = court.wechat if court else settings.wechat
    try:
        _, nonce = check_request(settings, request.query, account)
        body = await read_body(request, settings.max_callback_bytes)
        xml = decode(settings, request.query, body, account)
        inbound, msg = to_inbound(xml, court.slug if court else None)
        admitted = await once.admit(
            deps, request.query["timestamp"], nonce, inbound.key, settings.timestamp_tolerance_s * 2
        )
        if admitted == "replay":
            raise Rejected(403, "timestamp and nonce already used for another message")
    except Rejected as exc:
        log.warning("wechat POST refused (%s): %s", exc.status, exc.reason)
        return web.Response(status=exc.status, text=exc.reason)
    except Ignored as exc:
        log.warning("wechat POST ignored: %s", exc)
        return web.Response(text=SUCCESS)

    if inbound.kind == "silent":
        return web.Response(text=SUCCESS)
    if admitted == "retry":
        try:
            answer = await once.answer_retry(deps, inbound, deadline, first_within=ANSWER_BY_S)
        except Exception as exc:
            _log_failure(gate, exc, f"could not handle the retry of {inbound.key}")
            return web.Response(status=503, text="temporarily unavailable")
        log.info("wechat retry of %s answered %s", inbound.key, "again" if answer else "success")
        return web.Response(
            text=render(settings, msg, answer, nonce, account), content_type="text/xml"
        )
    try:
        answer = await once.answer(deps, inbound, deadline)
    except Exception as exc:
        # Not stored (database down?): no answer, so WeChat retries in a few seconds.
        if _log_failure(gate, exc, f"could not store {inbound.key}") == "database":
            # Pooled connections may be dead (a restarted server): start the pool afresh,
            # so the first callback after the outage finds the database, not a stale socket.
            await deps.db.engine.dispose()
        return web.Response(status=503, text="temporarily unavailable")
    body_out = render(settings, msg, answer, nonce, account)
    return web.Response(text=body_out, content_type="text/xml" if answer else "text/plain")


def _log_failure(gate: Gate, exc: BaseException, what: str) -> str | None:
    store = gate.failed(exc)
    if store is None:
        log.exception("%s; WeChat will retry", what)
    else:  # an outage is one line, not a traceback per message
        log.error("%s: %s unavailable (%s); WeChat will retry", what, store, type(exc).__name__)
    return store


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[GATE] = Gate(asyncio.Semaphore(settings.max_in_flight), settings.admit_wait_s)
    app[ACCOUNTS] = {court.slug: court for court in settings.courts}
    app.router.add_get("/wechat", verify_url)
    app.router.add_post("/wechat", receive)
    if settings.courts:  # each court's own account: its own URL, token and key
        app.router.add_get("/wechat/{slug}", verify_url)
        app.router.add_post("/wechat/{slug}", receive)
