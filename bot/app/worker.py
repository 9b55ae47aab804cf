"""`mst worker`: the background jobs as arq cron jobs against REDIS_URL.

arq's worker exits when its Redis connection breaks (a Redis restart, a network blip).
`run` keeps it going: the worker is started again with a growing pause, so delivery,
escalation and anchors resume once Redis is back; only a stop signal ends it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import create_worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.app import jobs, logs
from bot.app.config import ConfigError, Settings
from bot.app.factory import close_deps, open_deps
from storage import state

log = logging.getLogger(__name__)
# What a lost connection looks like from inside arq; anything else is a bug and stops it.
OUTAGES = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, TimeoutError)
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def _every(seconds: float) -> dict[str, Any]:
    """arq cron arguments for 'every N seconds' (N dividing a minute or an hour)."""
    s = int(seconds)
    if s < 60:
        return {"second": set(range(0, 60, max(s, 1)))}
    return {"minute": set(range(0, 60, max(s // 60, 1))), "second": 0}


def worker_settings(settings: Settings) -> type:
    if settings.redis_url is None:
        raise ConfigError(
            "REDIS_URL must be set for `mst worker` (without it, `mst serve` runs the jobs itself)"
        )

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = await open_deps(settings)

    async def shutdown(ctx: dict[str, Any]) -> None:
        await close_deps(ctx["deps"])

    crons = []
    for job, every in jobs.schedule_for(settings):

        async def run(ctx: dict[str, Any], _job: Any = job) -> Any:
            async with logs.job_run(_job.__name__):  # one log line per run
                return await _job(ctx["deps"])

        run.__qualname__ = run.__name__ = job.__name__
        # Delivery runs on every worker (rows are claimed, so each goes once): a second
        # worker doubles what is sent (bench.scale: 99 → 209 rows/s). The other jobs once
        # per tick across all workers.
        once = job is not jobs.deliver_outbox
        crons.append(cron(run, run_at_startup=jobs.at_start(job), unique=once, **_every(every)))

    return type(
        "WorkerSettings",
        (),
        {
            "redis_settings": redis_settings(settings.redis_url),
            "on_startup": startup,
            "on_shutdown": shutdown,
            "cron_jobs": crons,
            "functions": [],
        },
    )


def redis_settings(url: str) -> RedisSettings:
    """arq's connection for REDIS_URL; a `redis+sentinel://` URL (storage.state) asks the
    sentinels for the master, as the web processes do."""
    if not url.startswith(state.SENTINEL_SCHEME + "://"):
        return RedisSettings.from_dsn(url)
    address = state.parse_sentinel(url)
    return RedisSettings(
        host=list(address.sentinels),
        sentinel=True,
        sentinel_master=address.master,
        database=address.db,
        username=address.username,
        password=address.password,
    )


def run(settings: Settings) -> int:
    """Run the worker until a stop signal; ride out Redis and database outages."""
    worker_class = worker_settings(settings)
    stopping = False
    failures = 0
    while True:
        worker = create_worker(worker_class)
        started = time.monotonic()
        try:
            worker.run()  # returns when a stop signal (SIGINT, SIGTERM) ended it
            return 0
        except asyncio.CancelledError:
            # The stop signal came while a job ran: arq cancels it, and its close, waiting
            # for that job, gets the cancellation. The worker stopped as it was asked to;
            # the job's rows are leased and go out on the next start.
            _close_quietly(worker.ctx.get("deps"))
            return 0
        except OUTAGES as exc:
            log.error("worker lost a connection (%s: %s)", type(exc).__name__, exc)
            _close_quietly(worker.ctx.get("deps"))
        if time.monotonic() - started > 60:
            failures = 0  # it ran a good while: start the pauses from the shortest again
        pause = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
        failures += 1

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        log.warning("starting the worker again in %.0f s", pause)
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            asyncio.get_event_loop().run_until_complete(asyncio.sleep(0.2))
        if stopping:
            return 0


def _close_quietly(deps: Any) -> None:
    """arq's own close could not reach Redis, so its shutdown hook never ran: close the
    database pool here, or each outage would leave one open."""
    if deps is None:
        return
    try:
        asyncio.get_event_loop().run_until_complete(close_deps(deps))
    except Exception as exc:  # Redis is still down: its client's close may fail too
        log.warning("closing after the outage: %s", exc)
