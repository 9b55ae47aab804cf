"""The province's view (全省各院): `/console/province`, every court's headline figures side
by side for a period, each court linking to its own dashboard (read only), and a CSV.

Only for staff with role `province` (bot.rules.access.reads_province); anyone else gets
the console's "not found", as for any page they may not see. The figures are
bot.rules.dashboard.by_court's: the conditions each court's own dashboard counts with."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.webconsole import pages
from bot.channels.webconsole.dashboard import LONGEST, _attachment, _day, written
from bot.core.clock import now, say_time
from bot.rules import access
from bot.rules import dashboard as figures
from bot.rules.dashboard import Row

TITLE = "全省各院"

# The columns side by side: (heading, the Row attribute written, dashboard.written's way).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("收到诉求", "items"),
    ("已到期", "judged"),
    ("按时答复", "on_time"),
    ("按时答复率", "on_time_rate"),
    ("有评价", "rated"),
    ("诉求满意率", "feedback_satisfaction"),
    ("评价条数", "ratings"),
    ("评价满意率", "rating_satisfaction"),
    ("升级", "escalated"),
    ("代办", "assisted"),
    ("当前未办结", "open_now"),
    ("当前超期", "overdue_now"),
    ("扫码人数", "visitors"),
)


async def _reader(request: web.Request, session: AsyncSession) -> pages.Me:
    me = await pages._me(request, session)
    if me is None:
        raise pages._to_login(request)
    if not access.reads_province(me.staff):
        raise pages.not_found(request)
    return me


def _period(request: web.Request) -> dict[str, str]:
    """The period asked for (this month unless a sound one is given)."""
    first, last = figures.this_month(now())
    asked_first = _day(request.query.get("from", ""))
    asked_last = _day(request.query.get("to", ""))
    if asked_first and asked_last and timedelta() <= asked_last - asked_first <= LONGEST:
        first, last = asked_first, asked_last
    return {"from": first.isoformat(), "to": last.isoformat()}


async def _figures(request: web.Request) -> tuple[pages.Me, dict[str, str], Row, list[Row]]:
    deps = pages._deps(request)
    async with deps.db.sessions() as session:
        me = await _reader(request, session)
        chosen = _period(request)
        since, until = figures.period_of(
            _day(chosen["from"]) or now().date(), _day(chosen["to"]) or now().date()
        )
        total, courts = await figures.by_court(session, since, until, now())
    return me, chosen, total, courts


def court_link(chosen: dict[str, str], row: Row) -> str:
    """The court's own dashboard for the same period, read only."""
    return "/console/dashboard?" + urlencode({"court": str(row.court_id), **chosen})


async def province(request: web.Request) -> web.StreamResponse:
    me, chosen, total, courts = await _figures(request)
    return pages.render(
        request,
        "province.html",
        title=TITLE,
        nav="province",
        chosen=chosen,
        total=total,
        courts=courts,
        columns=COLUMNS,
        written=written,
        court_link=court_link,
        definitions=figures.DEFINITIONS,
        exports=urlencode(chosen),
        generated=say_time(now()),
        **pages._me_context(request, me),
    )


async def export_csv(request: web.Request) -> web.StreamResponse:
    _, chosen, total, courts = await _figures(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["法院"] + [heading for heading, _ in COLUMNS])
    for row in [*courts, total]:
        writer.writerow([row.label] + [written(row, attr) for _, attr in COLUMNS])
    name = f"province-{chosen['from']}-{chosen['to']}.csv"
    # With a BOM, so that Excel on a court's PC reads the Chinese as UTF-8.
    return _attachment(out.getvalue().encode("utf-8-sig"), "text/csv", name)


def setup_province(app: web.Application) -> None:
    for path, handler in (
        ("/console/province", province),
        ("/console/province.csv", export_csv),
    ):
        app.router.add_route("GET", path, pages._guarded(handler))
