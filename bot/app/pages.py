"""Plain HTTP pages: health, and the landing page a phone camera opens for a case code."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.app import keys
from bot.channels.h5 import pages as h5
from bot.channels.wechat import sender as wechat_sender
from bot.channels.wechat.api import TransientError, WeChatError
from bot.core import metrics
from bot.core.clock import now, say_time, to_court
from bot.dialog.deps import DEPS, Deps
from bot.outbox import queue as outbox
from bot.outbox.links import link_valid
from bot.rules import enforcement, media, mediation, receipts
from handlers import texts
from storage import state
from storage import transparency as tlog
from storage.models import MediaFile, Message, Outbox

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0
MAX_ROW_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL


# /healthz turns 503 past these: the jobs have not run (a dead worker), a notice has
# waited too long, or many notices failed lately. Each needs a person.
JOBS_STALE_S = 120.0
WAITING_TOO_LONG_S = 600.0
FAILED_LAST_HOUR_MAX = 20


async def healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    report: dict[str, Any] = {}
    problems: list[str] = []
    for name, check in (("database", deps.db.ping), ("redis", deps.redis.ping)):
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            report[name] = "ok"
        except Exception as exc:
            report[name] = f"down: {type(exc).__name__}"
            problems.append(name)
            log.warning("health: %s is down: %s", name, exc)
    report["redis_mode"] = "redis" if deps.settings.redis_url else "in-process"
    report["database_kind"] = deps.db.dialect
    if "redis" not in problems:
        age = await state.heartbeat_age(deps.redis)
        report["jobs_last_ran_s"] = None if age is None else round(age, 1)
        # No heartbeat yet is fine for a process that has just started.
        if (
            age if age is not None else time.monotonic() - request.app[keys.STARTED]
        ) > JOBS_STALE_S:
            problems.append("jobs")
    if "database" not in problems:
        try:
            async with deps.db.sessions() as session:
                waiting = await outbox.report(session, failed_limit=0)
                failed_lately = await outbox.failed_since(session, now() - timedelta(hours=1))
        except Exception as exc:  # e.g. a schema not yet migrated
            report["outbox"] = f"unreadable: {type(exc).__name__}"
            problems.append("outbox")
            return _health(report, problems)
        oldest = (
            None
            if waiting.oldest_waiting is None
            else round((now() - waiting.oldest_waiting).total_seconds(), 1)
        )
        report["outbox"] = {
            "waiting": waiting.counts.get("pending", 0) + waiting.counts.get("sending", 0),
            "oldest_waiting_s": oldest,
            "failed": waiting.counts.get("failed", 0),
            "failed_last_hour": failed_lately,
        }
        if oldest is not None and oldest > WAITING_TOO_LONG_S:
            problems.append("outbox")
        if failed_lately >= FAILED_LAST_HOUR_MAX:
            problems.append("deliveries")
    return _health(report, problems)


def _health(report: dict[str, Any], problems: list[str]) -> web.Response:
    report["problems"] = problems
    return web.json_response(
        {"status": "degraded" if problems else "ok", **report}, status=503 if problems else 200
    )


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text format: this process's counters, and the outbox as it stands."""
    deps = request.app[DEPS]
    try:
        async with deps.db.sessions() as session:
            waiting = await outbox.report(session, failed_limit=0)
        for status in ("pending", "sending", "sent", "failed"):
            metrics.OUTBOX_ROWS.labels(status).set(waiting.counts.get(status, 0))
        metrics.OUTBOX_OLDEST.set(
            0
            if waiting.oldest_waiting is None
            else (now() - waiting.oldest_waiting).total_seconds()
        )
    except Exception as exc:  # the counters still say something; the gauges keep their last
        log.warning("metrics: the outbox could not be read: %s", exc)
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
 body {{ font-family: -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif;
        font-size: 22px; line-height: 1.7; margin: 0; padding: 24px; color: #222; background: #f7f7f2; }}
 h1 {{ font-size: 28px; margin: 0 0 16px; }}
 .card {{ background: #fff; border-radius: 12px; padding: 20px; margin-bottom: 20px; }}
 .qr {{ width: 220px; height: 220px; display: block; margin: 8px 0; }}
 .code {{ font-size: 32px; font-weight: bold; letter-spacing: 4px; color: #a61b1b; }}
 ol {{ padding-left: 1.3em; }}
 .ok {{ border-left: 8px solid #2e7d32; }}
 .bad {{ border-left: 8px solid #a61b1b; }}
</style></head>
<body>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def landing(request: web.Request) -> web.StreamResponse:
    """What a scan opens: the H5 pages' entry (bot.channels.h5): the case's public facts
    and how to go on in any browser; in WeChat's, sign-in, verify and the case's pages."""
    return await h5.landing(request)


async def receipt_page(request: web.Request) -> web.Response:
    """A litigant's receipt, checked: what the court recorded, when, that the case's record
    is unchanged since, and that the event is in the court's signed public log — with the
    proof, which a small script checks again in the person's own browser (WebCrypto:
    SHA-256 and Ed25519), so they need not take the server's word. Never the words
    themselves, nor anyone's name."""
    deps = request.app[DEPS]
    async with deps.db.sessions() as session:
        found = await receipts.check(session, request.match_info["receipt"])
        logged = await receipts.logged(session, found.event_id) if found else None
    if found is None or logged is None:
        unknown = html.escape(texts.RECEIPT_UNKNOWN).replace("\n", "")
        return page(
            "没有找到回执",
            f"<h1>没有找到这份回执</h1><div class='card'>{unknown}</div>",
            status=404,
        )
    number = texts.RECEIPT_NUMBER.format(ticket=found.ticket_id) if found.ticket_id else ""
    recorded = texts.RECEIPT_RECORDED.format(
        court=found.court,
        kind=texts.kind_name(found.kind),
        number=number,
        case_number=found.case_number,
        at=say_time(found.at),
    )
    state = (
        f"<div class='card ok'>{html.escape(texts.RECEIPT_INTACT)}</div>"
        if found.intact
        else f"<div class='card bad'>{html.escape(texts.RECEIPT_BROKEN)}</div>"
    )
    if not found.intact:
        log.error("receipt %s: the case's audit chain does not verify", found.case_number)
    shown = html.escape(recorded).replace("\n", "<br>")
    body = f"<h1>回执核对</h1><div class='card'>{shown}</div>{state}{_in_log(deps, logged)}"
    return page("回执核对", body)


_RECEIPT_STYLE = (
    "<style>.verify { font-size: 24px; font-weight: bold; }"
    " .notice { font-size: 20px; color: #444; overflow-wrap: anywhere; }</style>"
)


def _in_log(deps: Any, logged: receipts.Logged) -> str:
    """The receipt's place in the court's public log: the words, the head to compare with
    the notice board, and the proof embedded for the page's own script to check."""
    if logged.damaged:
        log.error("receipt page: the transparency log is damaged (run check_log)")
        return f"<div class='card bad'>{html.escape(texts.RECEIPT_LOG_DAMAGED)}</div>"
    found = logged.proof
    if found is None:
        return f"<div class='card'>{html.escape(texts.RECEIPT_NOT_LOGGED)}</div>"
    head = found.head
    words = texts.RECEIPT_LOGGED.format(
        index=found.leaf_index + 1, size=head.size, at=say_time(head.signed_at)
    )
    # The head the proof is against: the first one the court posted that holds the record
    # (`mst audit publish`), which the person can compare with the notice board; else
    # the latest, with a word that it is not posted yet.
    notice = texts.RECEIPT_NOTICE.format(
        when=to_court(head.signed_at).strftime("%Y-%m-%d %H:%M"),
        size=head.size,
        root=f"{head.root[:8]}…{head.root[-8:]}",
        key_id=head.key_id,
    )
    posted = logged.published
    notice += "\n" + (
        texts.RECEIPT_PUBLISHED.format(date=say_time(posted.published_at))
        if posted is not None and posted.size == head.size
        else texts.RECEIPT_NOT_PUBLISHED
    )
    signer = deps.rules.signer
    # The key that signed this head: the current one, or one it replaced (a rotation).
    known = signer.keys() if signer is not None else {}
    key = (
        {"algorithm": "Ed25519", "public_key": known[head.key_id].hex(), "key_id": head.key_id}
        if head.key_id in known
        else None
    )
    proof = {
        "leaf_input": found.event_hash,
        "leaf_index": found.leaf_index,
        "head": {
            "size": head.size,
            "root": head.root,
            "timestamp": tlog.timestamp_ms(head.signed_at),
            "signature": head.signature,
            "key_id": head.key_id,
        },
        "proof": found.proof,
        "key": key,
        "words": {
            "verified": texts.RECEIPT_VERIFIED,
            "failed": texts.RECEIPT_FAILED,
            "receipt": texts.RECEIPT_FAILED_RECEIPT,
            "proof": texts.RECEIPT_FAILED_PROOF,
            "signature": texts.RECEIPT_FAILED_SIGNATURE,
            "key": texts.RECEIPT_FAILED_KEY,
            "cannot": texts.RECEIPT_CANNOT_CHECK,
        },
    }
    return (
        f"{_RECEIPT_STYLE}<div class='card ok'>{html.escape(words)}"
        f"<div class='notice'>{html.escape(notice).replace(chr(10), '<br>')}</div></div>"
        f"<div id='verify' class='card verify'>{html.escape(texts.RECEIPT_CHECKING)}"
        f"<noscript>{html.escape(texts.RECEIPT_NO_SCRIPT)}</noscript></div>"
        f"<script type='application/json' id='receipt-proof'>{script_json(proof)}</script>"
        f"<script>{VERIFY_SCRIPT}</script>"
    )


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' (so no '</script>')."""
    return (
        json.dumps(value, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


# The receipt page's own check, in the person's browser (no file fetched, nothing sent):
# the leaf hash SHA-256(0x00 || input) (RFC 6962), the inclusion proof walked as RFC 9162
# 2.1.3.2 says (nodes SHA-256(0x01 || left || right)) to the head's root, then the head's
# Ed25519 signature over RFC 6962's TreeHeadSignature (version 0, type 1, timestamp ms,
# size, root; big-endian) with the court's key, whose id is its SHA-256's first 16 hex.
VERIFY_SCRIPT = """
(async function () {
  var out = document.getElementById("verify");
  var d = JSON.parse(document.getElementById("receipt-proof").textContent);
  var w = d.words;
  function done(result, text) {
    out.textContent = text;
    out.className = "card verify " + (result === "verified" ? "ok" : "bad");
    out.setAttribute("data-result", result);
  }
  function fail(reason) { done("failed", w.failed.replace("{reason}", reason)); }
  function hex(s) {
    if (typeof s !== "string" || s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error("hex");
    var b = new Uint8Array(s.length / 2);
    for (var i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16);
    return b;
  }
  function cat(a, b, c) {
    var r = new Uint8Array(a.length + b.length + c.length);
    r.set(a, 0); r.set(b, a.length); r.set(c, a.length + b.length);
    return r;
  }
  function same(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function tohex(b) {
    return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }
  async function sha(b) { return new Uint8Array(await crypto.subtle.digest("SHA-256", b)); }
  var NONE = new Uint8Array(0);
  if (!(window.crypto && crypto.subtle && window.BigInt)) return done("unsupported", w.cannot);
  var leaf, proof, root, sig, key;
  try {
    leaf = hex(d.leaf_input);
    proof = d.proof.map(hex);
    root = hex(d.head.root);
    sig = hex(d.head.signature);
  } catch (e) { return fail(w.proof); }
  var receipt = location.pathname.split("/").pop().toLowerCase();
  if (leaf.length !== 32 || receipt.length < 16 || d.leaf_input.toLowerCase().indexOf(receipt) !== 0)
    return fail(w.receipt);
  try {
    var r = await sha(cat(Uint8Array.of(0), leaf, NONE));
    var fn = BigInt(d.leaf_index), sn = BigInt(d.head.size) - 1n;
    if (fn < 0n || fn > sn) return fail(w.proof);
    for (var i = 0; i < proof.length; i++) {
      var p = proof[i];
      if (p.length !== 32 || sn === 0n) return fail(w.proof);
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha(cat(Uint8Array.of(1), p, r));
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await sha(cat(Uint8Array.of(1), r, p));
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n || root.length !== 32 || !same(r, root)) return fail(w.proof);
    if (!d.key) return fail(w.key);
    var raw = hex(d.key.public_key);
    var id = tohex(await sha(raw)).slice(0, 16);
    if (raw.length !== 32 || id !== d.key.key_id || id !== d.head.key_id) return fail(w.key);
    var signed = new Uint8Array(50), v = new DataView(signed.buffer);
    v.setUint8(0, 0); v.setUint8(1, 1);
    v.setBigUint64(2, BigInt(d.head.timestamp)); v.setBigUint64(10, BigInt(d.head.size));
    signed.set(root, 18);
  } catch (e) { return fail(w.proof); }
  try {
    key = await crypto.subtle.importKey("raw", raw, {name: "Ed25519"}, false, ["verify"]);
  } catch (e) { return done("unsupported", w.cannot); }
  var ok = false;
  try { ok = await crypto.subtle.verify("Ed25519", key, sig, signed); } catch (e) { ok = false; }
  return ok ? done("verified", w.verified) : fail(w.signature);
})();
"""


async def _file_of(
    deps: Deps, message: Message, kept: MediaFile | None
) -> tuple[bytes, str] | web.Response:
    """The file as kept here, else as WeChat still has it (or the page saying why not)."""
    if kept is not None and kept.body is not None:
        return kept.body, kept.content_type or "application/octet-stream"
    return await _from_wechat(deps, message)


async def media_file(request: web.Request) -> web.Response:
    """A photo or voice message a litigant sent, for the holder of a signed link (staff get
    it in their notice and in `#n`): a voice message's kept audio (bot.rules.media), else
    the file fetched from WeChat (kept there three days). A browser opening a voice
    message's link is shown the page that plays it; `download=1` always gives the file."""
    deps = request.app[DEPS]
    found = await _signed_message(request)
    if isinstance(found, web.Response):
        return found
    message, kept = found
    if message.msg_type == "voice" and _wants_page(request):
        raise web.HTTPFound(f"/media/{message.id}/play?{_signature(request)}")
    fetched = await _file_of(deps, message, kept)
    if isinstance(fetched, web.Response):
        return fetched
    body, content_type = fetched
    name = f"{'照片' if message.msg_type == 'image' else '语音'}-{message.id}"
    how = "attachment" if request.query.get("download") else "inline"
    return web.Response(
        body=body,
        content_type=content_type,
        headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": f"{how}; filename*=UTF-8''{quote(name + _extension(content_type))}",
        },
    )


def _gone() -> web.Response:
    return page(
        "链接已失效", "<h1>链接已失效</h1><div class='card'>请在公众号里重新查看。</div>", 403
    )


async def _signed_message(request: web.Request) -> tuple[Message, MediaFile | None] | web.Response:
    """The message a media link names, when its signature holds and it has a file (a
    message erased by law has none, whatever was kept), with its kept audio if any."""
    deps = request.app[DEPS]
    raw = request.match_info["message_id"]
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ROW_ID):
        return _gone()
    if not deps.rules.media.valid(int(raw), request.query.get("e", ""), request.query.get("s", "")):
        return _gone()
    async with deps.db.sessions() as session:
        message = await session.get(Message, int(raw))
        kept = await media.stored(session, int(raw)) if message is not None else None
    if message is None or not message.media_id or message.msg_type not in media.KINDS:
        return _gone()
    return message, kept


def _signature(request: web.Request) -> str:
    return urlencode({"e": request.query.get("e", ""), "s": request.query.get("s", "")})


def _wants_page(request: web.Request) -> bool:
    """A browser opening the link (not an <audio> element, not a download)."""
    return "text/html" in request.headers.get("Accept", "") and not request.query.get("download")


def _extension(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    return {
        "audio/amr": ".amr",
        "audio/mpeg": ".mp3",
        "audio/mp3": ".mp3",
        "audio/speex": ".spx",
        "audio/x-speex": ".spx",
        "audio/silk": ".silk",
        "image/jpeg": ".jpg",
        "image/png": ".png",
    }.get(kind, "")


async def _from_wechat(deps: Deps, message: Message) -> tuple[bytes, str] | web.Response:
    """The file from WeChat, with the client WeChat's sender holds (a photo, or a voice
    the job has not kept yet)."""
    sender = deps.senders.get(wechat_sender.CHANNEL)
    if not isinstance(sender, wechat_sender.WeChatSender) or not message.media_id:
        return _gone()
    try:
        api = sender.api_for(message.openid)  # the account it was sent to
        if api is None:
            raise TransientError(f"no Official Account for message {message.id}")
        return await api.get_media(message.media_id)
    except WeChatError as exc:
        log.info("media of message %s: %s", message.id, exc)
        return page(
            "文件已过期",
            "<h1>文件已过期</h1><div class='card'>微信只保存用户发来的照片和语音三天。"
            "请联系当事人重新发送。</div>",
            410,
        )
    except TransientError as exc:
        log.warning("media of message %s: %s", message.id, exc)
        return page(
            "请稍后再试", "<h1>暂时取不到文件</h1><div class='card'>请稍后再试。</div>", 503
        )


# The play page: only its own audio and its inline style; no script at all.
PLAY_CSP = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"


async def media_play(request: web.Request) -> web.Response:
    """A voice message's page for staff: how long it is, a player (the audio made into
    mp3 by ffmpeg, when the server has it) and a link to download the file itself."""
    deps = request.app[DEPS]
    found = await _signed_message(request)
    if isinstance(found, web.Response):
        return found
    message, kept = found
    if message.msg_type != "voice":
        return _gone()
    played = await _playable(deps, message, kept)
    if isinstance(played, web.Response):
        return played
    seconds, can_play = played
    signature = html.escape(_signature(request))
    title = texts.voice_note(seconds)
    when = texts.VOICE_PAGE_FROM.format(at=say_time(message.created_at))
    player = (
        f"<audio controls preload='auto' src='/media/{message.id}/audio?{signature}'"
        " style='width:100%'></audio>"
        if can_play
        else f"<p>{html.escape(texts.VOICE_PAGE_NO_PLAYER)}</p>"
    )
    body = (
        f"<h1>{html.escape(title)}</h1><div class='card'><p>{html.escape(when)}</p>{player}"
        f"<p><a href='/media/{message.id}?{signature}&amp;download=1'>"
        f"{html.escape(texts.VOICE_PAGE_DOWNLOAD)}</a></p></div>"
    )
    resp = page(title, body)
    resp.headers["Content-Security-Policy"] = PLAY_CSP
    resp.headers["X-Robots-Tag"] = "noindex"
    return resp


async def _playable(
    deps: Deps, message: Message, kept: MediaFile | None
) -> tuple[float | None, bool] | web.Response:
    """How long the voice is, and whether a browser can play it: its mp3 made (once, and
    kept with the file) if it is not made yet."""
    if kept is not None and kept.play_body is not None:
        return kept.seconds, True
    if kept is not None and kept.body is not None:
        body, content_type, seconds = kept.body, kept.content_type or "", kept.seconds
    else:
        fetched = await _from_wechat(deps, message)
        if isinstance(fetched, web.Response):
            return fetched
        (body, content_type), seconds = fetched, media.audio_seconds(fetched[0])
    converted = await media.to_browser(body, content_type)
    if converted is not None and kept is not None:
        await _keep_played(deps, kept.message_id, converted)
    return seconds, converted is not None


async def _keep_played(deps: Deps, message_id: int, converted: tuple[bytes, str]) -> None:
    async with deps.db.transaction() as session:
        row = await session.get(MediaFile, message_id)
        if row is not None:
            row.play_body, row.play_type = converted
            session.add(row)


async def media_audio(request: web.Request) -> web.StreamResponse:
    """The voice as a browser plays it (the play page's <audio>), with byte ranges, which
    Safari (WeChat's browser on an iPhone) asks for before it plays anything."""
    deps = request.app[DEPS]
    found = await _signed_message(request)
    if isinstance(found, web.Response):
        return found
    message, kept = found
    if message.msg_type != "voice":
        return _gone()
    if kept is not None and kept.play_body is not None:
        converted: tuple[bytes, str] | None = (kept.play_body, kept.play_type or "audio/mpeg")
    else:
        fetched = await _file_of(deps, message, kept)
        if isinstance(fetched, web.Response):
            return fetched
        body, content_type = fetched
        converted = await media.to_browser(body, content_type)
        if converted is not None and kept is not None:
            await _keep_played(deps, kept.message_id, converted)
    if converted is None:
        return page(
            "无法播放",
            f"<h1>无法播放</h1><div class='card'>{texts.VOICE_PAGE_NO_PLAYER}</div>",
            415,
        )
    return _ranged(request, *converted)


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _ranged(request: web.Request, body: bytes, content_type: str) -> web.Response:
    """The whole body, or the one byte range asked for (206); a range past the end: 416."""
    headers = {"Cache-Control": "private, no-store", "Accept-Ranges": "bytes"}
    asked = RANGE.match(request.headers.get("Range", "").strip())
    if asked is None or not (asked.group(1) or asked.group(2)):
        return web.Response(body=body, content_type=content_type, headers=headers)
    size = len(body)
    if asked.group(1):
        first = int(asked.group(1))
        last = min(int(asked.group(2)), size - 1) if asked.group(2) else size - 1
    else:  # the last N bytes
        first, last = max(size - int(asked.group(2)), 0), size - 1
    if first >= size or first > last:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return web.Response(
        status=206, body=body[first : last + 1], content_type=content_type, headers=headers
    )


async def account_qr(request: web.Request) -> web.StreamResponse:
    """The Official Account's own QR (WECHAT_ACCOUNT_QR), shown on the landing page."""
    path = request.app[DEPS].settings.wechat.account_qr
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


async def waiting_message(request: web.Request) -> web.Response:
    """The page a template message links to: one message, for the link's holder only,
    until the link expires (the link is signed for that recipient and row)."""
    deps = request.app[DEPS]
    row_id = request.match_info["row_id"]
    if not (row_id.isascii() and row_id.isdigit() and 0 < int(row_id) <= MAX_ROW_ID):
        return page(
            "没有找到",
            "<h1>没有找到这条消息</h1><div class='card'>请回到公众号对话框查看。</div>",
            404,
        )
    async with deps.db.sessions() as session:
        row = await session.get(Outbox, int(row_id))
    ok = row is not None and link_valid(
        deps.settings.secret_key, row, request.query.get("e", ""), request.query.get("s", "")
    )
    if not ok or row is None:
        return page(
            "链接已失效",
            "<h1>链接已失效</h1><div class='card'>请回到公众号对话框查看消息。</div>",
            403,
        )
    from handlers.notices import letter_text  # the row's words, as its sender sent them

    _, text = letter_text(json.loads(row.payload))
    body = f"<h1>您有一条新消息</h1><div class='card'>{html.escape(text).replace(chr(10), '<br>')}</div>"
    return page("新消息", body)


async def enforcement_events(request: web.Request) -> web.Response:
    """The court's enforcement system pushes events here (a JSON object or an array).
    Authenticated by a bearer token; idempotent by each event's `event_id`."""
    deps = request.app[DEPS]
    token = deps.settings.enforcement_token
    if not token:
        return web.json_response({"error": "the enforcement endpoint is not enabled"}, status=404)
    # The whole header, scheme included, compared in constant time.
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return web.json_response({"error": "bad or missing bearer token"}, status=401)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "the body must be JSON"}, status=400)
    except RecursionError:  # nesting deeper than the parser goes: never a real event
        return web.json_response({"error": "the JSON is nested too deeply"}, status=400)
    items = body if isinstance(body, list) else [body]
    if len(items) > 1000:
        return web.json_response({"error": "at most 1000 events per request"}, status=413)
    outcome = enforcement.Outcome()
    async with deps.db.transaction() as session:
        await enforcement.ingest(
            session, list(enumerate(items, start=1)), outcome, actor="enforcement-system"
        )
    deps.wakeup.set()
    return web.json_response(
        {
            "added": outcome.added,
            "already_known": outcome.unchanged,
            "skipped": [{"item": n, "reason": why} for n, why in outcome.skipped],
        }
    )


ROOM_STATUS = {
    "booked": "已预约",
    "cancelled": "已取消",
    "no_show": "调解员记录为未到场",
    "attended": "已完成",
}


async def mediation_room(request: web.Request) -> web.Response:
    """A booked remote mediation's page: the link in the booking reply and the reminders
    (a slot added with `--room <PUBLIC_BASE_URL>/room/{token}`). The case, the time in
    China time, the mediator, and how to join; never a party's name. The token is signed
    (bot.rules.mediation.Rooms): a guessed or changed one gets the same 404 as no booking."""
    deps = request.app[DEPS]
    async with deps.db.sessions() as session:
        room = await mediation.room_for_token(
            session, request.match_info["token"], deps.rules.rooms
        )
    if room is None:
        return page(
            "没有找到",
            "<h1>没有找到这次调解</h1><div class='card'>请回到公众号对话框，"
            "点击预约成功消息里的链接。</div>",
            404,
        )
    slot, booking = room.slot, room.booking
    minutes = int((slot.end_at - slot.start_at).total_seconds() // 60)
    when = f"{to_court(slot.start_at).year}年{say_time(slot.start_at)}"
    status = ROOM_STATUS.get(booking.status, booking.status)
    if booking.status == "booked" and slot.end_at <= now():
        status = "调解时间已过"
    speciality = f"（{room.mediator.speciality}）" if room.mediator.speciality else ""
    body = (
        f"<h1>{html.escape(room.court.name)}<br>远程视频调解</h1>"
        f"<div class='card'>案号：{html.escape(room.case.case_number)}<br>"
        f"时间：{html.escape(when)}（北京时间，约{minutes}分钟）<br>"
        f"调解员：{html.escape(room.mediator.name + speciality)}<br>"
        f"状态：<b>{html.escape(status)}</b></div>"
    )
    if booking.status == "booked" and slot.end_at > now():
        body += (
            "<div class='card'><b>怎样参加：</b><ol>"
            "<li>开始前5分钟打开本页面，核对时间和调解员；</li>"
            "<li>用能视频通话的手机或电脑，找一个安静、光线充足的地方，准备好身份证件；</li>"
            "<li>到时调解员会与您视频连线，请保持手机畅通，留意本公众号的消息；</li>"
            "<li>要改约或取消：开始2小时以前，在公众号菜单里选择“预约调解”，按提示办理。</li>"
            "</ol></div>"
        )
    elif booking.status == "cancelled":
        body += (
            "<div class='card'>这次预约已经取消。如仍需调解，"
            "请在公众号菜单里选择“预约调解”重新预约。</div>"
        )
    body += f"<div class='card'>有问题请{html.escape(texts.call(room.court))}。</div>"
    resp = page(f"远程视频调解 {room.case.case_number}", body)
    resp.headers["X-Robots-Tag"] = "noindex"
    return resp


def setup(app: web.Application) -> None:
    app[keys.STARTED] = time.monotonic()
    app.router.add_post("/api/enforcement/events", enforcement_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/q/{token}", landing)
    app.router.add_get("/account-qr", account_qr)
    app.router.add_get("/v/{receipt}", receipt_page)
    app.router.add_get("/media/{message_id}", media_file)
    app.router.add_get("/media/{message_id}/play", media_play)
    app.router.add_get("/media/{message_id}/audio", media_audio)
    app.router.add_get("/m/{row_id}", waiting_message)
    app.router.add_get("/room/{token}", mediation_room)
