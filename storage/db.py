"""The async engine (SQLite by default, PostgreSQL at scale), sessions and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import uuid4

from sqlalchemy import Table, event, insert, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import SQLModel

if TYPE_CHECKING:  # alembic is imported where a migration runs, not by every process start
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

# `?pooler=pgbouncer` on a PostgreSQL DATABASE_URL: the address is a PgBouncer in
# transaction mode (session mode needs nothing; statement mode cannot run our transactions).
# Each transaction may run on a different server connection, so a prepared statement made by
# one client connection must never be looked for by name on the next: asyncpg's statement
# cache is off (statement_cache_size=0), SQLAlchemy's too (prepared_statement_cache_size=0),
# and the statements SQLAlchemy still prepares inside a transaction (to learn the result's
# columns) get names no other connection can have made (a uuid), instead of asyncpg's
# __asyncpg_stmt_1__, 2, … which every client connection counts from 1. Everything else the
# code does is transaction-scoped already: pg_advisory_xact_lock (audit, transparency log),
# SET LOCAL (dashboard); nothing LISTENs or SETs a session. The flag is taken off the URL
# before asyncpg sees it.
POOLER = "pooler"
POOLERS = ("pgbouncer",)


def split_pooler(url: str) -> tuple[str, str | None]:
    """(the URL without `pooler=…`, the pooler or None). ValueError: an unknown pooler, or
    one on a database that is not PostgreSQL."""
    if f"{POOLER}=" not in url:
        return url, None
    parsed = make_url(url)
    value = parsed.query.get(POOLER)
    if value is None:
        return url, None
    if not isinstance(value, str) or value not in POOLERS:
        raise ValueError(f"pooler must be one of {', '.join(POOLERS)}, got {value!r}")
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"pooler={value} is for PostgreSQL URLs only")
    plain = parsed.difference_update_query([POOLER])
    return plain.render_as_string(hide_password=False), value


def pooler_connect_args(pooler: str | None) -> dict[str, Any]:
    """asyncpg's connect arguments for a pooler (none without one)."""
    if pooler != "pgbouncer":
        return {}
    return {
        "statement_cache_size": 0,  # asyncpg's own cache
        "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg dialect's
        "prepared_statement_name_func": _statement_name,
    }


def _statement_name() -> str:
    return f"__mst_{uuid4().hex}__"


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
    """An engine for `url`; a PostgreSQL URL may carry `?pooler=pgbouncer` (split_pooler)."""
    url, pooler = split_pooler(url)
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
        connect_args = {"timeout": 3, **pooler_connect_args(pooler)}
        engine = create_async_engine(url, connect_args=connect_args, **engine_args)
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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def migrate(db: Database, revision: str = "head") -> None:
    """Bring the schema up to date (also creates an empty database)."""

    from alembic import command

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


_INSERTS: dict[Table, Any] = {}
M = TypeVar("M", bound=SQLModel)


async def insert_new(session: AsyncSession, obj: M) -> M:
    """Write a new row with one Core INSERT … RETURNING id (built once per table) and keep
    `obj` in the session as if just loaded: later changes to it are flushed as usual. For
    rows written with nearly every message, where the unit of work's flush costs more than
    the statement."""
    table = inspect(type(obj)).local_table
    assert isinstance(table, Table)
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = insert(table).returning(table.c.id)
    values = {c.key: getattr(obj, c.key) for c in table.columns if c.key != "id"}
    new_id = (await (await session.connection()).execute(stmt, values)).scalar_one()
    obj.id = new_id
    make_transient_to_detached(obj)
    session.add(obj)
    return obj
