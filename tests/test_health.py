"""GET /healthz: 200 when the database and Redis answer, 503 naming whichever does not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from sqlalchemy import update

from bot.app.config import Settings
from bot.app.factory import create_app
from bot.dialog.dispatch import Deps
from storage import db as database
from storage import state

# Nothing listens on port 1: connections are refused at once.
DEAD_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"

Healthz = Callable[[Deps], Awaitable[tuple[int, dict[str, Any]]]]


def dead_redis() -> Redis:
    return Redis(
        host="127.0.0.1",
        port=1,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        decode_responses=True,
    )


def dead_database(tmp_path: Path, kind: str) -> database.Database:
    if kind == "postgresql":
        return database.connect(DEAD_PG_URL)
    return database.connect(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/mst.db")


@pytest.fixture
async def healthz(aiohttp_client: Any) -> AsyncIterator[Healthz]:
    """GET /healthz on an app built around the given deps; broken deps are closed after."""
    made: list[Deps] = []

    async def get(deps: Deps) -> tuple[int, dict[str, Any]]:
        made.append(deps)
        client: TestClient = await aiohttp_client(create_app(deps.settings, deps))
        resp = await client.get("/healthz")
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()

    yield get
    for deps in made:
        await deps.redis.aclose()
        await deps.db.dispose()
    # aiosqlite finishes a failed connect on its worker thread, which then reports to the
    # event loop; let it do so before the test's loop is closed.
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, 2)


async def test_healthy(client: TestClient, deps: Deps, settings: Settings) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "redis_mode": "redis" if settings.redis_url else "in-process",
        "database_kind": deps.db.dialect,
        "jobs_last_ran_s": None,  # no worker yet, but the process has only just started
        "outbox": {"waiting": 0, "oldest_waiting_s": None, "failed": 0, "failed_last_hour": 0},
        "problems": [],
    }
    assert body["database_kind"] == ("sqlite" if settings.is_sqlite else "postgresql")


async def test_redis_down(healthz: Healthz, settings: Settings) -> None:
    broken = Deps(
        settings=replace(settings, redis_url=DEAD_REDIS_URL),
        db=database.connect(settings.database_url),
        redis=dead_redis(),
    )
    started = time.monotonic()
    status, body = await healthz(broken)
    assert time.monotonic() - started < 5
    assert status == 503
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["redis"].startswith("down: ")
    assert "ConnectionError" in body["redis"]
    assert body["redis_mode"] == "redis"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_database_down(
    healthz: Healthz, settings: Settings, tmp_path: Path, kind: str
) -> None:
    broken = Deps(
        settings=settings,
        db=dead_database(tmp_path, kind),
        redis=state.connect(settings.redis_url),  # the configured Redis, or the stand-in
    )
    started = time.monotonic()
    status, body = await healthz(broken)
    assert time.monotonic() - started < 5
    assert status == 503
    assert body["status"] == "degraded"
    assert body["redis"] == "ok"
    assert body["database"].startswith("down: ")
    assert body["database_kind"] == kind


async def test_both_down(healthz: Healthz, settings: Settings, tmp_path: Path) -> None:
    broken = Deps(
        settings=replace(settings, redis_url=DEAD_REDIS_URL),
        db=dead_database(tmp_path, "sqlite"),
        redis=dead_redis(),
    )
    status, body = await healthz(broken)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["database"].startswith("down: ")
    assert body["redis"].startswith("down: ")


async def test_serve_refuses_a_schema_that_is_behind(tmp_path: Path) -> None:
    """An old schema is not silently used (or silently upgraded under other processes)."""
    from dataclasses import replace as _replace

    from bot.app.config import ConfigError, Settings
    from bot.app.factory import open_deps
    from storage import db as database

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    db = database.connect(url)
    await database.migrate(db, "0001")
    await db.dispose()
    settings = _replace(Settings(secret_key="s" * 48, data_dir=tmp_path), database_url=url)
    with pytest.raises(ConfigError, match="mst migrate"):
        await open_deps(settings)


async def test_the_migrations_build_exactly_the_tables_the_models_describe(deps: Deps) -> None:
    """A model changed without a migration (or the reverse) shows here, on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    async with deps.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata)
        )
    assert diff == []


async def test_serve_stops_cleanly_when_told_twice(settings: Settings, deps: Deps) -> None:
    """Ctrl+C and systemd signal every process of `mst serve`, which passes the stop on
    too: a worker is told twice. The second must not cut its cleanup short."""
    import os
    import signal
    import socket
    import sys

    import aiohttp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "WECHAT_", "MST_"))
    }
    env.update(DATABASE_URL=settings.database_url, MST_DATA_DIR=str(settings.data_dir))
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    mst = Path(sys.executable).parent / "mst"
    proc = await asyncio.create_subprocess_exec(
        str(mst),
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("mst serve did not come up")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    stderr = err.decode()
    assert "Traceback" not in stderr and "Exception closing" not in stderr, stderr
    assert proc.returncode == 0, stderr


# -- what /healthz adds about the work behind the web: jobs, the outbox ------------------


async def test_a_dead_worker_turns_health_503(client: TestClient, deps: Deps) -> None:
    await state.heartbeat(deps.redis)
    assert (await client.get("/healthz")).status == 200
    await deps.redis.set(state.HEARTBEAT_KEY, f"{time.time() - 300:.3f}")  # 5 minutes silent
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["problems"] == ["jobs"] and body["jobs_last_ran_s"] >= 300


async def test_a_notice_waiting_too_long_or_many_failing_turn_health_503(
    client: TestClient, deps: Deps
) -> None:
    from bot.core.clock import now
    from bot.outbox import queue as outbox
    from storage.models import Outbox

    await state.heartbeat(deps.redis)
    async with deps.db.transaction() as s:
        await outbox.tell(s, "oWaiting0000000000000001", "还在等")
        await s.execute(update(Outbox).values(created_at=now() - timedelta(minutes=11)))
    body = await (await client.get("/healthz")).json()
    assert body["problems"] == ["outbox"] and body["outbox"]["oldest_waiting_s"] >= 660
    async with deps.db.transaction() as s:
        await s.execute(update(Outbox).values(status="sent"))
        for i in range(20):
            await outbox.tell(s, f"oGone{i:019d}", "对方已取消关注")
        await s.execute(update(Outbox).where(Outbox.status == "pending").values(status="failed"))
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["problems"] == ["deliveries"]
    assert body["outbox"]["failed_last_hour"] == 20


async def test_metrics_in_prometheus_text(client: TestClient, deps: Deps) -> None:
    from bot.outbox import queue as outbox

    async with deps.db.transaction() as s:
        await outbox.tell(s, "oWaiting0000000000000001", "还在等")
    await client.get("/healthz")
    await client.get("/m/123456789012")  # a route pattern, not the raw path, is the label
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert 'mst_http_requests_total{route="/healthz",status="200"}' in text
    assert 'route="/m/{row_id}",status="404"' in text and "123456789012" not in text
    assert 'mst_outbox_rows{status="pending"} 1.0' in text
    assert "mst_outbox_oldest_waiting_seconds" in text
    assert "mst_wechat_token_refreshes_total" in text
