"""Plain HTTP pages: health, and the landing page a phone camera opens for a case code."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import time
from datetime import timedelta
from typing import Any

from aiohttp import web

from bot import delivery, enforcement, keys, metrics, outbox
from bot.clock import now
from handlers import texts
from qr import codes, tokens
from storage import state
from storage.models import Outbox

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0
MAX_ROW_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL


# /healthz turns 503 past these: the jobs have not run (a dead worker), a notice has
# waited too long, or many notices failed lately. Each needs a person.
JOBS_STALE_S = 120.0
WAITING_TOO_LONG_S = 600.0
FAILED_LAST_HOUR_MAX = 20


async def healthz(request: web.Request) -> web.Response:
    deps = request.app[keys.DEPS]
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
    deps = request.app[keys.DEPS]
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
</style></head>
<body>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def landing(request: web.Request) -> web.Response:
    """What a scan shows: the court and case number (never party names) and how to go on:
    follow the account (its name and QR), send the case code, give the phone's last digits."""
    deps = request.app[keys.DEPS]
    settings = deps.settings
    async with deps.db.sessions() as session:
        lookup = await codes.by_token(session, request.match_info["token"])
    if lookup.status == "revoked":
        return page(
            "二维码已停用",
            "<h1>这个二维码已经停用</h1><div class='card'>请向法院索取新的二维码，"
            f"或{html.escape(texts.call(lookup.court))}咨询。</div>",
            status=410,
        )
    if lookup.status != "ok" or lookup.case is None or lookup.court is None or lookup.code is None:
        return page(
            "没有找到案件",
            "<h1>没有找到这个案件</h1><div class='card'>请确认扫描的是法院文书上的二维码。</div>",
            status=404,
        )
    name = settings.wechat_account_name
    if settings.wechat_account_qr is not None:
        follow = (
            f"<li>长按下面的二维码，选“识别图中二维码”，关注“{html.escape(name or '本院公众号')}”；"
            "<br><img class='qr' src='/account-qr' alt='公众号二维码'></li>"
        )
    elif name:
        follow = f"<li>在微信里搜索“{html.escape(name)}”，关注这个公众号；</li>"
    else:
        follow = "<li>在微信里搜索并关注本院公众号；</li>"
    body = (
        f"<h1>{html.escape(lookup.court.name)}</h1>"
        f"<div class='card'>案号：{html.escape(lookup.case.case_number)}<br>"
        f"案由：{html.escape(lookup.case.cause)}</div>"
        f"<div class='card'><b>怎样继续：</b><ol>{follow}"
        "<li>在公众号对话框里发送下面的案件码；</li>"
        "<li>按提示输入登记手机号的后四位。</li></ol>"
        f"<div class='code'>{html.escape(tokens.pretty(lookup.code.short_code))}</div></div>"
        f"<div class='card'>不会操作？请到{html.escape(texts.desk(lookup.court))}，"
        "工作人员会帮您办理。</div>"
    )
    return page(f"{lookup.court.name} {lookup.case.case_number}", body)


async def account_qr(request: web.Request) -> web.StreamResponse:
    """The Official Account's own QR (WECHAT_ACCOUNT_QR), shown on the landing page."""
    path = request.app[keys.DEPS].settings.wechat_account_qr
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


async def waiting_message(request: web.Request) -> web.Response:
    """The page a template message links to: one message, for the link's holder only,
    until the link expires (the link is signed for that recipient and row)."""
    deps = request.app[keys.DEPS]
    row_id = request.match_info["row_id"]
    if not (row_id.isascii() and row_id.isdigit() and 0 < int(row_id) <= MAX_ROW_ID):
        return page(
            "没有找到",
            "<h1>没有找到这条消息</h1><div class='card'>请回到公众号对话框查看。</div>",
            404,
        )
    async with deps.db.sessions() as session:
        row = await session.get(Outbox, int(row_id))
    ok = row is not None and delivery.link_valid(
        deps.settings.secret_key, row, request.query.get("e", ""), request.query.get("s", "")
    )
    if not ok or row is None:
        return page(
            "链接已失效",
            "<h1>链接已失效</h1><div class='card'>请回到公众号对话框查看消息。</div>",
            403,
        )
    text = json.loads(row.payload).get("text", "")
    body = f"<h1>您有一条新消息</h1><div class='card'>{html.escape(text).replace(chr(10), '<br>')}</div>"
    return page("新消息", body)


async def enforcement_events(request: web.Request) -> web.Response:
    """The court's enforcement system pushes events here (a JSON object or an array).
    Authenticated by a bearer token; idempotent by each event's `event_id`."""
    deps = request.app[keys.DEPS]
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


def setup(app: web.Application) -> None:
    app[keys.STARTED] = time.monotonic()
    app.router.add_post("/api/enforcement/events", enforcement_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/q/{token}", landing)
    app.router.add_get("/account-qr", account_qr)
    app.router.add_get("/m/{row_id}", waiting_message)
