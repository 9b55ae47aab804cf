"""What the commands share: a database for the length of a command, finding a case,
and one clear line (not a traceback) for an operator's typo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from bot.app.config import Settings

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


async def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    from storage import db as database

    db = database.connect(settings.database_url)
    try:
        return await fn(db)
    finally:
        await db.dispose()


def _unreadable(path: Path, exc: Exception) -> int:
    print(f"mst: cannot read {path}: {exc}", file=sys.stderr)
    return 1


def _no_file(path: Path) -> bool:
    """An operator's typo gets one line, not a traceback."""
    if path.is_file():
        return False
    print(f"mst: cannot read {path}: no such file", file=sys.stderr)
    return True


async def _ensure_schema(db: Any) -> None:
    from bot.app.factory import _schema_is_empty
    from storage.db import migrate as run_migrations

    if await _schema_is_empty(db):
        await run_migrations(db)


async def _find_case(session: Any, case_number: str) -> Any:
    """The case, or None after telling the operator there is no such case."""
    from storage.models import Case

    case = (
        await session.execute(select(Case).where(col(Case.case_number) == case_number))
    ).scalar_one_or_none()
    if case is None:
        print(f"mst: no case {case_number}", file=sys.stderr)
    return case


def _warn_if_local(settings: Settings) -> None:
    from bot.app import check

    if check.public_url_is_local(settings):
        print(
            f"注意：PUBLIC_BASE_URL 还是 {settings.public_base_url}，"
            "这样印出的二维码在当事人的手机上打不开。",
            file=sys.stderr,
        )


def _day(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-02") from None
