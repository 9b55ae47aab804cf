"""`mst worker`: the background jobs as arq cron jobs against REDIS_URL."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings

from bot import jobs
from bot.app import close_deps, open_deps
from bot.config import ConfigError, Settings


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
            return await _job(ctx["deps"])

        run.__qualname__ = run.__name__ = job.__name__
        crons.append(cron(run, run_at_startup=False, unique=True, **_every(every)))

    return type(
        "WorkerSettings",
        (),
        {
            "redis_settings": RedisSettings.from_dsn(settings.redis_url),
            "on_startup": startup,
            "on_shutdown": shutdown,
            "cron_jobs": crons,
            "functions": [],
        },
    )
