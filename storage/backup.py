"""What `mst backup`, `mst restore` and `mst migrate-data` need of the database, whichever
it is: a consistent copy (PostgreSQL's own pg_dump, SQLite's online backup API), putting
one back into an empty database, and copying every table from one database into another.

Nothing here knows about the audit log's meaning: the CLI (bot/cli/backup.py) checks the
restored or copied record with storage.transparency afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (every table on SQLModel.metadata)
from storage.db import Database

COPY_BATCH = 1000  # rows read and written at a time by copy_tables
# The schema's own bookkeeping: never copied (the target is migrated by its own Alembic).
_NOT_DATA = frozenset({"alembic_version"})


class BackupError(Exception):
    """A step could not be done; the message says what, for an operator."""


# -- where a URL points ----------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    """The file a sqlite URL names (sqlite+aiosqlite:///./mst.db → ./mst.db)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url}: an in-memory SQLite database cannot be backed up")
    return Path(database)


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump's / pg_restore's connection arguments for a SQLAlchemy URL, and the
    environment that carries the password (never on the command line, where `ps` shows it)."""
    parsed: URL = make_url(url)
    args = []
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    args += ["--dbname", parsed.database or "postgres"]
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    ssl = parsed.query.get("ssl") or parsed.query.get("sslmode")
    if isinstance(ssl, str):
        env["PGSSLMODE"] = {"true": "require"}.get(ssl, ssl)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return args, env


def pg_tool(name: str) -> str:
    """pg_dump or pg_restore from PATH; a clear error when the PostgreSQL client is missing."""
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client "
            "(Debian/Ubuntu: apt-get install postgresql-client; its major version at least "
            "the server's)"
        )
    return found


async def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        raise BackupError(f"{Path(argv[0]).name} failed: " + (" / ".join(said[-3:]) or "no output"))


# -- a consistent copy -----------------------------------------------------------------------


async def pg_dump(url: str, out: Path) -> None:
    """pg_dump's custom format (compressed; pg_restore reads it): one snapshot of the whole
    database, taken while the server keeps serving."""
    args, env = _libpq(url)
    await _run(
        [
            pg_tool("pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            str(out),
            *args,
        ],
        env,
    )


async def pg_restore(url: str, archive: Path, *, clean: bool) -> None:
    """The archive into the database `url` names, in one transaction (all or nothing).
    `clean`: drop the empty tables a `mst migrate` left there first."""
    args, env = _libpq(url)
    argv = [
        pg_tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
    ]
    if clean:
        argv += ["--clean", "--if-exists"]
    await _run([*argv, *args, str(archive)], env)


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup API: a consistent copy page by page, while writers go on
    (in WAL mode they are not even held up); the copy is a plain database file."""
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        # A standalone file: no -wal beside it to lose.
        dst.execute("PRAGMA journal_mode=DELETE")


async def sqlite_backup(url: str, out: Path) -> None:
    source = sqlite_path(url)
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    await asyncio.to_thread(_sqlite_copy, source, out)


async def sqlite_restore(backup: Path, url: str) -> None:
    """The backup file's pages into the database `url` names (replacing what is there: the
    caller has checked it holds no data)."""
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)

    def copy() -> None:
        with closing(sqlite3.connect(backup)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")  # as storage.db keeps it

    await asyncio.to_thread(copy)


# -- what a database holds -------------------------------------------------------------------


async def table_names(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def row_counts(db: Database, tables: list[str] | None = None) -> dict[str, int]:
    """Rows in each table (the data tables the models know, or `tables`), by name."""
    known = {t.name: t for t in SQLModel.metadata.sorted_tables}
    present = set(await table_names(db))
    counts: dict[str, int] = {}
    async with db.engine.connect() as conn:
        for name in tables or [t for t in known if t in present]:
            table = known[name]
            counts[name] = int(
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return counts


async def holds_data(db: Database) -> list[str]:
    """The tables that hold rows (the schema's own bookkeeping aside): empty means a new
    database, or one `mst migrate` (or a first `mst serve`) only gave its schema."""
    present = [n for n in await table_names(db) if n not in _NOT_DATA]
    if not present:
        return []
    full = []
    async with db.engine.connect() as conn:
        for name in present:
            quoted = db.engine.dialect.identifier_preparer.quote(name)
            if (await conn.execute(text(f"SELECT 1 FROM {quoted} LIMIT 1"))).first():
                full.append(name)
    return full


async def has_tables(db: Database) -> bool:
    return bool(await table_names(db))


async def analyze(db: Database, tables: list[str] | None = None) -> None:
    """Fresh planner statistics after a bulk load (an import, a copy, a restore), so the
    first queries after it are planned for the rows now there, not for an empty table:
    `ANALYZE` of the tables named (None: every data table), on PostgreSQL and on SQLite
    (whose sqlite_stat1 it fills). Autovacuum would get there, later; a command that
    loaded the rows knows when."""
    names = tables if tables is not None else [t.name for t in data_tables()]
    if not names:
        return
    async with db.engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        if db.dialect == "postgresql":
            await conn.execute(text("ANALYZE " + ", ".join(quote(n) for n in names)))
        else:
            for name in names:
                await conn.execute(text(f"ANALYZE {quote(name)}"))


# -- copying every table ---------------------------------------------------------------------


def data_tables() -> list[Table]:
    """Every table of the models, parents before the tables that refer to them."""
    return [t for t in SQLModel.metadata.sorted_tables if t.name not in _NOT_DATA]


async def copy_tables(
    source: Database, target: Database, *, batch: int = COPY_BATCH
) -> dict[str, int]:
    """Every row of every table from `source` into `target` (migrated to the same revision,
    holding no data), parents first, `batch` rows at a time, in ONE transaction on the
    target: a copy that fails leaves it as empty as it was. Values go through the models'
    column types both ways (times stay aware UTC, so every audit hash still matches).
    Returns rows copied by table."""
    copied: dict[str, int] = {}
    async with source.engine.connect() as src, target.engine.begin() as dst:
        for table in data_tables():
            order = list(table.primary_key.columns) or list(table.columns)
            result = await src.stream(
                select(table).order_by(*order), execution_options={"yield_per": batch}
            )
            n = 0
            async for rows in result.partitions(batch):
                await dst.execute(table.insert(), [dict(r._mapping) for r in rows])
                n += len(rows)
            copied[table.name] = n
        if target.dialect == "postgresql":
            await _reset_sequences(dst)
    return copied


async def _reset_sequences(conn: Any) -> None:
    """Rows were inserted with their ids, which leaves each serial's sequence at 1: set
    each past the largest id, so the next row written gets a new one."""
    for table in data_tables():
        for column in table.primary_key.columns:
            seq = (
                await conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": f'"{table.name}"', "c": column.name},
                )
            ).scalar_one()
            if seq is None:
                continue
            top = (await conn.execute(select(func.max(column)))).scalar_one()
            # setval(seq, n, false): the next nextval() gives n.
            await conn.execute(
                text("SELECT setval(:s, :n, false)"), {"s": seq, "n": (top or 0) + 1}
            )


# -- files -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def private_umask() -> Iterator[None]:
    """Files written meanwhile are readable by their owner only (a backup holds the keys)."""
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)
