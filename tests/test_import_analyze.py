"""After a bulk load the command that loaded the rows refreshes the planner's statistics
(issue 20): `mst import-*` for the tables it wrote, `mst migrate-data` and `mst restore`
for every table. PostgreSQL: pg_stat_user_tables.last_analyze; SQLite: sqlite_stat1."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
from sqlalchemy import text

from bot.dialog.deps import Deps
from storage import backup
from storage import db as database
from tests.conftest import WORKER
from tests.test_import import case_rows, run_cases, run_staff, staff_rows, write_lines
from tests.world import mst_in_process


async def analyzed(db: database.Database, table: str) -> bool:
    """Whether `table` has statistics from an ANALYZE. Both are there when ANALYZE has
    returned: PostgreSQL writes last_analyze to its shared statistics as it ends (15+),
    SQLite fills sqlite_stat1 in the statement."""
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            when = (
                await conn.execute(
                    text(
                        "SELECT last_analyze FROM pg_stat_user_tables "
                        "WHERE schemaname = 'public' AND relname = :t"
                    ),
                    {"t": table},
                )
            ).scalar()
            return when is not None
        has_stats = (
            await conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"))
        ).scalar()
        if not has_stats:
            return False
        found = await conn.execute(
            text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}
        )
        return bool(found.scalar())


async def test_an_import_analyzes_the_tables_it_loaded(deps: Deps, tmp_path: Path) -> None:
    assert not await analyzed(deps.db, "case")
    await run_staff(deps, write_lines(tmp_path / "staff.jsonl", staff_rows()))
    assert await analyzed(deps.db, "staff")
    await run_cases(deps, write_lines(tmp_path / "cases.jsonl", case_rows()))
    for table in ("case", "party", "audit_event"):
        assert await analyzed(deps.db, table), table


async def test_migrate_data_analyzes_what_it_copied(
    deps: Deps, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    await run_staff(deps, write_lines(tmp_path / "staff.jsonl", staff_rows()))
    # A database of this test's own beside the suite's (named after it, so two people's
    # runs on one server do not meet), dropped afterwards.
    base = (
        os.environ.get("MST_TEST_DATABASE_URL")
        or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    server, name = base.rsplit("/", 1)
    own = f"{name}_w{WORKER}_analyze"
    admin = server.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{own}"')
    finally:
        await conn.close()
    target = database.connect(f"{server}/{own}")
    try:
        run = await mst_in_process(cli_env, tmp_path, "migrate-data", "--to", f"{server}/{own}")
        assert run.code == 0, run.out + run.err
        for table in ("staff", "court", "audit_event", "ticket"):
            assert await analyzed(target, table), table
    finally:
        await target.dispose()
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_analyze_names_every_data_table_by_default(deps: Deps, tmp_path: Path) -> None:
    async with deps.db.engine.begin() as conn:  # rows an ANALYZE has not seen
        await conn.execute(text("INSERT INTO court (name) VALUES ('甲院'), ('乙院')"))
    await backup.analyze(deps.db)
    if deps.db.dialect == "sqlite":  # PostgreSQL: no row in sqlite_stat1's sense to look at
        async with deps.db.engine.connect() as conn:
            stats = await conn.execute(text("SELECT tbl FROM sqlite_stat1"))
            assert "court" in {t for (t,) in stats}
    else:
        assert await analyzed(deps.db, "court") and await analyzed(deps.db, "ticket")
