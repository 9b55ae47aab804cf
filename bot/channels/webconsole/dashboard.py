"""The dashboard (驾驶舱): `/console/dashboard`, the items behind each figure, CSV and XLSX.

For leaders, admins and supervision, of their own court only; the high court's staff with
role `province` read any court's (`?court=ID`, from the province's view: province.py),
read only. Anyone else gets the same "not found" page as a page that does not exist. The figures come from bot.rules.dashboard;
this module reads the filter, draws the charts (inline SVG with presentation attributes:
the console's CSP allows no inline style) and writes the exports."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.channels.webconsole import pages
from bot.core.clock import court_tz, now, say_time
from bot.rules import access
from bot.rules import dashboard as figures
from bot.rules.dashboard import Dashboard, Filter, Row, hours_text, percent
from handlers import texts
from storage.models import AuditEvent, Booking, Court, EnforcementEvent, Staff

ROLES = ("leader", "admin", "supervision")
LONGEST = timedelta(days=366 * 5)  # a longer period is refused: years of items at once
ITEMS_MAX = 500  # rows on the items page; the export has them all
EXPORT_MAX = 200_000  # rows of items in an export
TITLE = "驾驶舱"
ITEMS_TITLE = "数据明细"

# The table's columns: (heading, how to write it, the figure its number links to).
COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("收到诉求", "items", "items"),
    ("已到期", "judged", "judged"),
    ("按时答复", "on_time", "on_time"),
    ("按时答复率", "on_time_rate", "judged"),
    ("答复用时中位数（工作小时）", "median_hours", "replied"),
    ("90%分位（工作小时）", "p90_hours", "replied"),
    ("有评价", "rated", "rated"),
    ("诉求满意率", "feedback_satisfaction", "rated"),
    ("评价条数", "ratings", "ratings"),
    ("评价满意率", "rating_satisfaction", "ratings"),
    ("升级", "escalated", "escalated"),
    ("代办", "assisted", "assisted"),
    ("当前未办结", "open_now", "open_now"),
    ("当前超期", "overdue_now", "overdue_now"),
    ("扫码人数", "visitors", "visitors"),
    ("调解预约", "bookings", "bookings"),
    ("未到场", "no_shows", "no_shows"),
    ("执行推送", "enforcement", "enforcement"),
)
RATES = {"on_time_rate", "feedback_satisfaction", "rating_satisfaction"}
HOURS = {"median_hours", "p90_hours"}


def allowed(me: pages.Me) -> bool:
    return me.court is not None and (
        any(me.staff.has_role(r) for r in ROLES) or access.reads_province(me.staff)
    )


async def court_read(request: web.Request, session: AsyncSession, me: pages.Me) -> Court:
    """The court whose figures are read: the reader's own, or (a province reader only) the
    court `?court=ID` names. Anyone else naming another court: not found."""
    assert me.court is not None
    raw = request.query.get("court", "")
    if not raw or raw == str(me.court.id):
        return me.court
    court = await session.get(Court, int(raw)) if raw.isdigit() and len(raw) < 10 else None
    if court is None or not access.reads_province(me.staff):
        raise pages.not_found(request)
    return court


def written(row: Row, attr: str) -> str:
    value = getattr(row, attr)
    if attr in RATES:
        return percent(value)
    if attr in HOURS:
        return hours_text(value)
    return "—" if value is None else str(value)


# -- the filter ------------------------------------------------------------------------------


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


async def _choices(session: AsyncSession, court_id: int) -> tuple[list[str], list[Staff]]:
    teams = (
        await session.execute(
            select(col(Staff.team))
            .where(col(Staff.court_id) == court_id, col(Staff.team).is_not(None))
            .distinct()
        )
    ).scalars()
    judges = (
        await session.execute(
            select(Staff).where(col(Staff.court_id) == court_id).order_by(col(Staff.name))
        )
    ).scalars()
    return sorted(t for t in teams if t), [j for j in judges if j.has_role("judge")]


async def _filter(
    request: web.Request, session: AsyncSession, me: pages.Me, court: Court
) -> tuple[Filter, dict[str, str], tuple[list[str], list[Staff]]]:
    """The filter the query asks for, within the court read (court_read); what it cannot
    mean (a bad date, another court's judge) falls back to the default."""
    assert me.court is not None and court.id is not None
    q = request.query
    first, last = figures.this_month(now())
    asked_first, asked_last = _day(q.get("from", "")), _day(q.get("to", ""))
    if asked_first and asked_last and timedelta() <= asked_last - asked_first <= LONGEST:
        first, last = asked_first, asked_last
    teams, judges = await _choices(session, court.id)
    team: str | None = q.get("team", "") or None
    if team == "-":
        team = figures.NO_TEAM
    elif team is not None and team not in teams:
        team = None
    judge_id: int | None = None
    raw = q.get("judge", "")
    if raw == "0":
        judge_id = figures.NO_JUDGE
    elif raw.isdigit() and int(raw) in {j.id for j in judges}:
        judge_id = int(raw)
    since, until = figures.period_of(first, last)
    chosen = {"from": first.isoformat(), "to": last.isoformat()}
    if court.id != me.court.id:  # a province reader's: every link and export keeps it
        chosen["court"] = str(court.id)
    if team is not None:
        chosen["team"] = team or "-"
    if judge_id is not None:
        chosen["judge"] = str(judge_id)
    return Filter(court.id, since, until, team, judge_id), chosen, (teams, judges)


def link(chosen: dict[str, str], figure: str, row: Row | None = None) -> str:
    """The items behind `figure` for the filter, narrowed to the row's team or judge."""
    params = dict(chosen)
    if row is not None and row.team is not None:
        params["team"] = row.team or "-"
    if row is not None and row.judge_id is not None:
        params["judge"] = str(row.judge_id)
    params["figure"] = figure
    return "/console/dashboard/items?" + urlencode(params)


# -- charts ----------------------------------------------------------------------------------


def trend_svg(board: Dashboard) -> dict[str, Any]:
    """Items per week as bars, on-time % as a line with dots; numbers for the template."""
    width, height, left, bottom, top = 560, 240, 36, 36, 20
    n = max(1, len(board.buckets))
    step = (width - left - 10) / n
    most = max([b.items for b in board.buckets] + [1])
    plot = height - bottom - top
    bars, dots = [], []
    for i, b in enumerate(board.buckets):
        h = plot * b.items / most
        x = left + i * step
        bars.append(
            {
                "x": round(x + step * 0.15, 1),
                "y": round(top + plot - h, 1),
                "w": round(step * 0.7, 1),
                "h": round(h, 1),
                "label": b.label,
                "lx": round(x + step / 2, 1),
                "items": b.items,
                "title": f"{b.label}：收到 {b.items} 件，按时答复率 {percent(b.on_time_rate)}",
            }
        )
        if b.on_time_rate is not None:
            dots.append(
                {"x": round(x + step / 2, 1), "y": round(top + plot * (1 - b.on_time_rate), 1)}
            )
    line = " ".join(f"{d['x']},{d['y']}" for d in dots)
    every = max(1, n // 14)  # at most ~14 labels under the bars
    return {
        "width": width,
        "height": height,
        "top": top,
        "base": top + plot,
        "left": left,
        "bars": bars,
        "dots": dots,
        "line": line,
        "most": most,
        "every": every,
        "label_y": height - bottom + 16,
    }


def team_svg(board: Dashboard) -> dict[str, Any]:
    """Items by team as horizontal bars, each with its on-time %."""
    rows = board.teams
    width, left, bar_h, gap = 460, 96, 22, 12
    most = max([r.items for r in rows] + [1])
    span = width - left - 150
    shown = []
    for i, r in enumerate(rows):
        y = 10 + i * (bar_h + gap)
        w = span * r.items / most
        shown.append(
            {
                "y": y,
                "ty": y + bar_h - 6,
                "w": round(max(w, 1), 1),
                "label": r.label,
                "end": round(left + w + 8, 1),
                "text": f"{r.items} 件 · 按时 {percent(r.on_time_rate)}",
            }
        )
    return {
        "width": width,
        "height": 20 + len(rows) * (bar_h + gap),
        "left": left,
        "bar_h": bar_h,
        "rows": shown,
    }


# -- pages -----------------------------------------------------------------------------------


async def _reader(request: web.Request, session: AsyncSession) -> tuple[pages.Me, Court]:
    me = await pages._me(request, session)
    if me is None:
        raise pages._to_login(request)
    if not allowed(me):
        raise pages.not_found(request)
    return me, await court_read(request, session, me)


async def dashboard(request: web.Request) -> web.StreamResponse:
    deps = pages._deps(request)
    async with deps.db.sessions() as session:
        me, court = await _reader(request, session)
        f, chosen, (teams, judges) = await _filter(request, session, me, court)
        working = deps.rules.deadlines.for_court(court.name)  # its own holidays, if any
        board = await figures.compute(session, f, working, now())
    kinds = sorted(board.total.by_kind.items())
    return pages.render(
        request,
        "dashboard.html",
        title=TITLE,
        nav="dashboard",
        board=board,
        court=court,
        chosen=chosen,
        teams=teams,
        judges=judges,
        columns=COLUMNS,
        written=written,
        link=link,
        kinds=[(texts.kind_name(k), n, f"kind:{k}") for k, n in kinds],
        percent=percent,
        hours=hours_text,
        trend=trend_svg(board),
        by_team=team_svg(board),
        definitions=figures.DEFINITIONS,
        exports=urlencode(chosen),
        generated=say_time(board.moment),
        **pages._me_context(request, me),
    )


async def item_rows(
    session: AsyncSession, f: Filter, figure: str, limit: int
) -> tuple[list[dict[str, str]], bool]:
    """The rows behind a figure: items, ratings, scans, bookings or pushed events."""
    out: list[dict[str, str]] = []
    if figures.is_ticket_figure(figure):
        q = figures.tickets_query(figure, f, now()).limit(limit + 1)
        found = (await session.execute(q)).all()
        names = await _names(session, {c.judge_id for _, c, _ in found})
        for t, c, r in found[:limit]:
            out.append(
                {
                    "id": f"#{t.id}",
                    "href": f"/console/items/{t.id}",
                    "case": c.case_number,
                    "what": texts.kind_name(t.kind),
                    "state": texts.status_name(t.status),
                    "team": t.team or "",
                    "judge": names.get(c.judge_id, ""),
                    "at": say_time(t.created_at),
                    "due": say_time(t.due_at) if t.due_at else "—",
                    "reply": say_time(t.first_reply_at) if t.first_reply_at else "—",
                    "score": RATING_WORDS.get(r.score, "") if r is not None else "",
                    "level": str(t.level),
                }
            )
        return out, len(found) > limit
    if figure in ("ratings", "ratings_satisfied"):
        q = figures.ratings_query(figure, f).limit(limit + 1)
        rows: list[Any] = list((await session.execute(q)).all())
        for rating, c in rows[:limit]:
            out.append(
                {
                    "id": f"#{rating.ticket_id}" if rating.ticket_id else "整体服务",
                    "href": f"/console/items/{rating.ticket_id}" if rating.ticket_id else "",
                    "case": c.case_number,
                    "what": RATING_WORDS.get(rating.score, str(rating.score)),
                    "at": say_time(rating.created_at),
                }
            )
        return out, len(rows) > limit
    q = figures.other_rows(figure, f).limit(limit + 1)
    rows = list((await session.execute(q)).all())
    for thing, c in rows[:limit]:
        if isinstance(thing, AuditEvent):
            what, at = f"扫码人 {thing.actor[:4]}…", thing.at
        elif isinstance(thing, Booking):
            what, at = BOOKING_WORDS.get(thing.status, thing.status), thing.created_at
        else:
            assert isinstance(thing, EnforcementEvent)
            what, at = thing.kind, thing.created_at
        out.append(
            {
                "id": str(thing.id),
                "href": "",
                "case": c.case_number,
                "what": what,
                "at": say_time(at),
            }
        )
    return out, len(rows) > limit


RATING_WORDS = {1: "满意", 2: "基本满意", 3: "不满意"}
BOOKING_WORDS = {
    "booked": "已预约",
    "cancelled": "已取消",
    "no_show": "未到场",
    "attended": "已到场",
}


async def _names(session: AsyncSession, ids: set[int | None]) -> dict[int | None, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(col(Staff.id), col(Staff.name)).where(col(Staff.id).in_(wanted))
    )
    return {i: n for i, n in rows.all()}


def _figure(request: web.Request) -> str:
    figure = request.query.get("figure", "")
    if not figures.known_figure(figure):
        raise pages.not_found(request)
    return figure


async def items(request: web.Request) -> web.StreamResponse:
    deps = pages._deps(request)
    async with deps.db.sessions() as session:
        me, court = await _reader(request, session)
        figure = _figure(request)
        f, chosen, _ = await _filter(request, session, me, court)
        rows, more = await item_rows(session, f, figure, ITEMS_MAX)
    name = figures.FIGURE_NAMES.get(figure) or texts.kind_name(figure[5:])
    return pages.render(
        request,
        "dashboard_items.html",
        title=ITEMS_TITLE,
        nav="dashboard",
        name=name,
        figure=figure,
        rows=rows,
        tickets=figures.is_ticket_figure(figure),
        more=more,
        limit=ITEMS_MAX,
        chosen=chosen,
        back="/console/dashboard?" + urlencode(chosen),
        now_figure=figure in figures.NOW_FIGURES,
        **pages._me_context(request, me),
    )


# -- exports ---------------------------------------------------------------------------------

ITEM_HEADINGS = (
    "编号",
    "案号",
    "类别",
    "状态",
    "团队",
    "承办法官",
    "收到时间",
    "答复期限",
    "首次答复时间",
    "首次答复用时（工作小时）",
    "已到期",
    "按时答复",
    "升级次数",
    "评价",
)


async def _tables(request: web.Request) -> tuple[list[list[Any]], list[list[Any]], str]:
    deps = pages._deps(request)
    async with deps.db.sessions() as session:
        me, court = await _reader(request, session)
        f, chosen, _ = await _filter(request, session, me, court)
        moment = now()
        working = deps.rules.deadlines.for_court(court.name)
        board = await figures.compute(session, f, working, moment)
        found = (
            await session.execute(figures.tickets_query("items", f, moment).limit(EXPORT_MAX))
        ).all()
        names = await _names(session, {c.judge_id for _, c, _ in found})
    summary: list[list[Any]] = [["范围", "行"] + [c[0] for c in COLUMNS]]
    for scope, rows in (("全院", [board.total]), ("团队", board.teams), ("法官", board.judges)):
        for row in rows:
            summary.append([scope, row.label] + [written(row, c[1]) for c in COLUMNS])
    clock = figures.WorkClock(working)
    listed: list[list[Any]] = [list(ITEM_HEADINGS)]
    for t, c, r in found:
        judged = t.due_at is not None and (t.first_reply_at is not None or t.due_at <= moment)
        on_time = (
            judged
            and t.first_reply_at is not None
            and t.first_reply_at <= (t.due_at or t.first_reply_at)
        )
        listed.append(
            [
                t.id,
                c.case_number,
                texts.kind_name(t.kind),
                texts.status_name(t.status),
                t.team or "",
                names.get(c.judge_id, ""),
                _local(t.created_at),
                _local(t.due_at),
                _local(t.first_reply_at),
                round(clock.hours(t.created_at, t.first_reply_at), 1) if t.first_reply_at else "",
                "是" if judged else "否",
                ("是" if on_time else "否") if judged else "",
                t.level,
                RATING_WORDS.get(r.score, "") if r is not None else "",
            ]
        )
    name = f"dashboard-{chosen['from']}-{chosen['to']}"
    return summary, listed, name


def _local(moment: datetime | None) -> str:
    return moment.astimezone(court_tz()).strftime("%Y-%m-%d %H:%M") if moment else ""


def _attachment(body: bytes, content_type: str, filename: str) -> web.Response:
    response = web.Response(body=body, content_type=content_type, headers=pages.PRIVATE)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


async def export_csv(request: web.Request) -> web.StreamResponse:
    summary, listed, name = await _tables(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["指标"])
    writer.writerows(summary)
    writer.writerow([])
    writer.writerow(["事项明细"])
    writer.writerows(listed)
    # With a BOM, so that Excel on a court's PC reads the Chinese as UTF-8.
    return _attachment(out.getvalue().encode("utf-8-sig"), "text/csv", f"{name}.csv")


async def export_xlsx(request: web.Request) -> web.StreamResponse:
    summary, listed, name = await _tables(request)
    book = Workbook(write_only=True)
    for title, rows in (("指标", summary), ("事项明细", listed)):
        sheet = book.create_sheet(title)
        for values in rows:
            sheet.append(values)
    out = io.BytesIO()
    book.save(out)
    return _attachment(
        out.getvalue(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"{name}.xlsx",
    )


def setup_dashboard(app: web.Application) -> None:
    for path, handler in (
        ("/console/dashboard", dashboard),
        ("/console/dashboard/items", items),
        ("/console/dashboard.csv", export_csv),
        ("/console/dashboard.xlsx", export_xlsx),
    ):
        app.router.add_route("GET", path, pages._guarded(handler))
