"""The figures a court reports: `mst stats`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.app.config import Settings, rules_of
from bot.cli.common import _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    s = sub.add_parser("stats", help="visitors, feedback, ratings, satisfaction, on-time replies")
    s.add_argument("--court", help="court name")
    s.add_argument("--judge", help="the handling judge's username")
    s.add_argument("--team", help="items held by this team (e.g. 集约接待)")
    s.add_argument("--from", dest="since", help="first day, e.g. 2026-11-01 (China time)")
    s.add_argument("--to", dest="until", help="last day, included")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=stats)


async def stats(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot.core.clock import court_tz
    from bot.rules import stats as figures

    def day(text: str | None, *, end: bool = False) -> datetime | None:
        if not text:
            return None
        d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return datetime.combine(d, time(0), court_tz())

    try:
        scope = figures.Scope(
            args.court, args.judge, day(args.since), day(args.until, end=True), team=args.team
        )
    except ValueError:
        print("mst: --from/--to must be dates like 2026-11-01", file=sys.stderr)
        return 2

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            result = await figures.compute(session, scope, rules_of(settings).deadlines)
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(figures.report(result, _stats_title(args)))
        return 0

    return await _with_db(settings, go)


def _stats_title(args: argparse.Namespace) -> str:
    who = "，".join(
        x
        for x in (
            args.court or "全部法院",
            f"团队 {args.team}" if args.team else "",
            f"承办法官 {args.judge}" if args.judge else "",
        )
        if x
    )
    when = (
        f"{args.since or '开始'} 至 {args.until or '今天'}"
        if args.since or args.until
        else "全部时间"
    )
    return f"{who}（{when}）"
