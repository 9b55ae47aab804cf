"""The aiohttp application factory: settings in, app out; resources opened on startup
and closed on cleanup (aiohttp signals)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import inspect

from bot.app import jobs, logs, pages, transparency
from bot.app.config import ConfigError, Settings
from bot.channels import desk, webconsole, wecom
from bot.channels.h5 import pages as h5
from bot.channels.miniprogram import api as miniprogram
from bot.channels.miniprogram.sender import MiniProgramSender
from bot.channels.wechat import callback as wechat
from bot.channels.wechat.api import WeChatAPI
from bot.channels.wechat.sender import Account as WeChatAccount
from bot.channels.wechat.sender import WeChatSender
from bot.channels.wecom.sender import open_sender as wecom_sender
from bot.core import metrics
from bot.dialog import once
from bot.dialog.deps import DEPS, SETTINGS, Deps
from bot.outbox.senders import Sender, by_channel
from storage import db as database
from storage import state

log = logging.getLogger(__name__)


async def _schema_is_empty(db: database.Database) -> bool:
    async with db.engine.connect() as conn:
        return not await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))


async def open_deps(settings: Settings, *, migrate_empty: bool = True) -> Deps:
    db = database.connect(settings.database_url)
    current, head = await database.revisions(db)
    if current is None and migrate_empty:
        log.info("empty database: creating the schema")
        await database.migrate(db)
    elif current != head:
        # Several processes may share this database: upgrading is a deliberate step.
        await db.dispose()
        raise ConfigError(
            f"DATABASE_URL: schema is at revision {current}, this code needs {head}: run `mst migrate`"
        )
    redis = state.connect(settings.redis_url)
    api = open_api(settings, redis)
    return Deps(settings=settings, db=db, redis=redis, senders=open_senders(settings, api, db))


def open_api(settings: Settings, redis: Redis, court: str | None = None) -> WeChatAPI:
    """The Official Account's API client: the default account's, or (`court`: a slug of
    MST_COURTS_FILE) that court's own. KeyError for a slug no court has."""
    account = settings.wechat
    if court is not None:
        account = {c.slug: c.wechat for c in settings.courts}[court]
    return WeChatAPI(
        http=aiohttp.ClientSession(),
        redis=redis,
        base=account.api_base,
        app_id=account.app_id,
        app_secret=account.app_secret,
    )


def open_senders(
    settings: Settings, api: WeChatAPI, db: database.Database | None = None
) -> dict[str, Sender]:
    """`Deps.senders`: what the outbox delivers through, one sender per channel. The
    mini-program's (when MP_APP_ID is set) shares the Official Account's HTTP client."""
    senders: list[Sender] = [
        WeChatSender(
            api=api,
            template_id=settings.wechat.template_id,
            base_url=settings.public_base_url,
            secret=settings.secret_key,
            # Each court's own account: its own client (its token under its app id in
            # Redis, like the default one's), sharing the HTTP client.
            courts={
                court.slug: WeChatAccount(
                    WeChatAPI(
                        http=api.http,
                        redis=api.redis,
                        base=court.wechat.api_base,
                        app_id=court.wechat.app_id,
                        app_secret=court.wechat.app_secret,
                    ),
                    court.wechat.template_id,
                )
                for court in settings.courts
            },
        )
    ]
    if db is not None:  # the service desk: answers for people helped there (bot.rules.desk)
        senders.append(desk.DeskSender(db))
    if settings.wecom is not None and db is not None:  # the court's WeCom app, for staff
        senders.append(wecom_sender(settings, api.http, api.redis, db))
    mp = settings.miniprogram
    if mp.app_id and mp.app_secret and db is not None:
        mp_api = WeChatAPI(
            http=api.http,
            redis=api.redis,
            base=settings.wechat.api_base,
            app_id=mp.app_id,
            app_secret=mp.app_secret,
        )
        senders.append(
            MiniProgramSender(api=mp_api, db=db, template_id=mp.subscribe_template_id, page=mp.page)
        )
    return by_channel(*senders)


async def close_deps(deps: Deps) -> None:
    try:
        for sender in deps.senders.values():
            await sender.close()
        await deps.redis.aclose()
    finally:
        await deps.db.dispose()  # even when Redis is gone


@web.middleware
async def measured(request: web.Request, handler: Any) -> web.StreamResponse:
    """Requests and latencies by route pattern (never by raw path: ids would explode it)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.REQUESTS.labels(route, str(status)).inc()
        metrics.LATENCY.labels(route).observe(time.perf_counter() - started)


def create_app(settings: Settings, deps: Deps | None = None) -> web.Application:
    """`deps` given (tests, demo): the caller owns them; otherwise opened and closed here."""
    app = web.Application(client_max_size=1024 * 1024, middlewares=[logs.access, measured])
    app[SETTINGS] = settings
    wechat.setup(app)
    pages.setup(app)
    transparency.setup(app)
    miniprogram.setup(app)
    h5.setup(app)
    webconsole.setup(app)
    desk.setup(app)
    wecom.setup(app)  # /wecom and WeCom's console sign-in, when WECOM_* are set

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        owned = deps is None
        app[DEPS] = await open_deps(settings) if deps is None else deps
        tasks = jobs.start_in_process(app[DEPS]) if settings.jobs_in_process else []
        yield
        # Requests are done by now; the work behind them next.
        await once.finish_behind(wechat.FINISH_BEHIND_S)
        await jobs.stop(tasks)
        if owned:
            await close_deps(app[DEPS])

    app.cleanup_ctx.append(lifecycle)
    return app
