"""The imports: staff, cases, enforcement events (CSV, XLSX or JSON; bot/importer.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _ensure_schema, _no_file, _unreadable, _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    for name, fn, what in (
        ("import-staff", import_staff, "staff"),
        ("import-cases", import_cases, "cases"),
        ("import-events", import_events, "enforcement events"),
    ):
        s = sub.add_parser(
            name,
            help=f"import {what}: .csv or .xlsx with a header row (columns: bot/importer.py "
            "COLUMNS), else JSON Lines or a JSON array (idempotent)",
        )
        s.add_argument("file", type=Path)
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--json", action="store_true", help="one JSON object: counts and errors")
        s.set_defaults(run=fn)


def _import_result(
    args: argparse.Namespace,
    summary: str,
    counts: dict[str, int],
    skipped: list[tuple[int, str]],
    source: Any,
) -> int:
    """An import's figures and skipped rows: Chinese for people, one JSON object with --json.
    Rows are numbered as the person finds them: a JSON file's line, a spreadsheet's row."""
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(args.file),
                    "format": source.format,  # json | csv | xlsx
                    "header_row": source.header_row,  # csv/xlsx: "row" counts sheet rows
                    **counts,
                    "skipped": len(skipped),
                    "errors": [{"row": n, "reason": why} for n, why in skipped],
                    "ignored_columns": source.ignored,
                },
                ensure_ascii=False,
            )
        )
        return 0 if not skipped else 1
    for n, why in skipped:
        print(f"第 {n} 行未导入：{why}", file=sys.stderr)
    if skipped and source.header_row:
        head = source.header_row
        print(
            f"（行号即表格中的行号：表头是第 {head} 行，其下第一行是第 {head + 1} 行）",
            file=sys.stderr,
        )
    if source.ignored:
        print(f"未识别的列，已忽略：{'、'.join(source.ignored)}", file=sys.stderr)
    print(summary)
    return 0 if not skipped else 1


def _print_report(args: argparse.Namespace, report: Any, what: str) -> int:
    counts = {"added": report.added, "changed": report.updated, "unchanged": report.unchanged}
    return _import_result(args, report.summary(what), counts, report.skipped, report)


async def import_staff(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        try:
            report = await importer.import_staff(
                db, args.file, progress=not (args.quiet or args.json)
            )
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        return _print_report(args, report, "人员")

    return await _with_db(settings, go)


async def import_cases(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        try:
            report = await importer.import_cases(
                db, args.file, secret=settings.secret_key, progress=not (args.quiet or args.json)
            )
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        return _print_report(args, report, "案件")

    return await _with_db(settings, go)


async def import_events(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import enforcement, importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        try:
            loaded = importer.load(args.file, "events")
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        outcome = enforcement.Outcome()
        # Rows that could not be read say why themselves (ingest would only see no object).
        outcome.skipped = [(n, str(r)) for n, r in loaded.rows if isinstance(r, importer.RowError)]
        rows = [(n, r) for n, r in loaded.rows if not isinstance(r, importer.RowError)]
        for start in range(0, len(rows), importer.BATCH):
            async with db.transaction() as session:
                await enforcement.ingest(
                    session, rows[start : start + importer.BATCH], outcome, actor="import"
                )
        from storage import backup
        from storage.models import AuditEvent, EnforcementEvent

        # Statistics for the rows loaded: the next query plans for them.
        await backup.analyze(db, [str(t.__tablename__) for t in (EnforcementEvent, AuditEvent)])
        outcome.skipped.sort(key=lambda item: item[0])
        summary = (
            f"执行事件：新增 {outcome.added}，已有 {outcome.unchanged}，跳过 {len(outcome.skipped)}"
        )
        counts = {"added": outcome.added, "changed": 0, "unchanged": outcome.unchanged}
        return _import_result(args, summary, counts, outcome.skipped, loaded)

    return await _with_db(settings, go)
