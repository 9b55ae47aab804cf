"""The figures a court reports: `mst stats`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _with_db
from bot.rules import rulebook


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
            result = await figures.compute(session, scope, rulebook.of(settings).deadlines)
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(report(result, _stats_title(args)))
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


def percent(value: float | None) -> str:
    """As courts write it: 83.5%; nothing to judge yet is said, not shown as 0."""
    return "—（暂无可计算的事项）" if value is None else f"{value * 100:.1f}%"


def report(figures: dict[str, Any], title: str) -> str:
    """The figures (bot.rules.stats.compute) in Chinese, the way a court reports them."""
    from handlers import texts

    kinds = "，".join(
        f"{texts.KIND_NAMES.get(k, k)} {n}" for k, n in sorted(figures["feedback_by_kind"].items())
    )
    states = "，".join(
        f"{texts.status_name(k)} {n}" for k, n in sorted(figures["feedback_by_status"].items())
    )
    lines = [
        title,
        f"扫码访问：{figures['visitors']} 人",
        f"诉求：{figures['feedback']} 件" + (f"（{kinds}）" if kinds else ""),
    ]
    if states:
        lines.append(f"办理情况：{states}")
    lines += [
        f"按时答复率：{percent(figures['on_time_rate'])}"
        f"（{figures['on_time_judged']} 件已到答复期限）",
        f"按时办结率：{percent(figures['close_on_time_rate'])}"
        f"（{figures['close_on_time_judged']} 件已到办结期限）",
        f"当前超期未答复：{figures['overdue_now']} 件",
        f"诉求满意率：{percent(figures['feedback_satisfaction'])}"
        f"（{figures['feedback_rated']} 件有评价）",
        f"全部评价满意率：{percent(figures['rating_satisfaction'])}"
        f"（共 {figures['ratings']} 条评价，满意和基本满意计入）",
    ]
    lines += [f"注意：{warning}" for warning in figures["calendar_warnings"]]
    return "\n".join(lines)
