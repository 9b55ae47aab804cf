"""The async engine (SQLite by default, PostgreSQL at scale), sessions and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def connect(url: str, **engine_args: Any) -> Database:
    if url.startswith("sqlite"):
        # One connection: SQLite allows one writer at a time anyway, and queueing for the
        # pool (FIFO, in the event loop) beats SQLite's busy handler, which sleeps up to
        # 100 ms between retries when several connections fight over the write lock.
        engine_args.setdefault("pool_size", 1)
        engine_args.setdefault("max_overflow", 0)
        engine_args.setdefault("pool_timeout", 60)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **engine_args)
        _sqlite_setup(engine)
    else:
        # A fixed pool: a message waits its turn for a connection. Overflow connections are
        # closed as soon as they are returned, so under load every message would open one
        # (and prepare every statement again). Several processes share PostgreSQL's ~100.
        engine_args.setdefault("pool_size", 20)
        engine_args.setdefault("max_overflow", 0)
        # Recycle instead of pre-ping: a ping is a round trip on every checkout (two per message).
        engine_args.setdefault("pool_recycle", 1800)
        # Bounded waits: with PostgreSQL gone a message fails within WeChat's 5 s (503, a
        # retry) instead of queueing for a connection for half a minute.
        engine_args.setdefault("pool_timeout", 3)
        engine = create_async_engine(url, connect_args={"timeout": 3}, **engine_args)
    return Database(engine, async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False))


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can BEGIN IMMEDIATE below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        # Writers queue up at BEGIN instead of failing at COMMIT; this is what keeps
        # read-then-append sequences (audit chain heads, ticket numbers) serial on SQLite.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def migrate(db: Database, revision: str = "head") -> None:
    """Bring the schema up to date (also creates an empty database)."""

    def run(sync_conn: Connection) -> None:
        cfg = alembic_config(str(db.engine.url))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def revisions(db: Database) -> tuple[str | None, str]:
    """(the database's schema revision, the newest this code knows)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(db.engine.url))).get_current_head() or ""
    async with db.engine.connect() as conn:
        current = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    return current, head
