"""The dashboard's figures (驾驶舱): one court, one period, optionally one team or one judge;
totals, by team, by judge, and by week. The console shows them (bot.channels.webconsole.
dashboard); `bench/dashboard.py` times them at a court's scale.

Each item figure is one SQL condition on a ticket (FIGURES). The totals are sums of that
condition, and the list behind a figure (`items`) is the tickets meeting it: what is
counted and what is listed cannot drift apart. DEFINITIONS says in words what each counts.

Which tickets: those of the court created in the period (from the first day 00:00 to the
day after the last, court time). "Now" figures (open, overdue) are the court's state at
this moment, whatever the period. Team: the team holding the item (Ticket.team). Judge:
the case's handling judge (Case.judge_id), as `mst stats --judge`. Scans, bookings and
pushes belong to a case, not an item: their judge is the case's, their team that judge's
team as the staff list has it now (Staff.team), cases without either under NO_TEAM."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import Grouping
from sqlmodel import col

from bot.core.clock import court_tz
from bot.rules.deadlines import WORK_PERIODS, Deadlines
from storage.models import (
    AuditEvent,
    Booking,
    Case,
    Court,
    EnforcementEvent,
    Rating,
    Staff,
    Ticket,
)

_Ts = TypeVarTuple("_Ts")
SATISFIED = (1, 2)  # 满意, 基本满意
OPEN = ("open", "answered")  # not yet closed
NO_TEAM = ""  # Filter.team for items held by no team
NO_JUDGE = 0  # Filter.judge_id for cases without a judge
MAX_WEEKS = 60  # longer periods are charted by month
NOW_FIGURES = ("open_now", "overdue_now")
# Figures not about tickets: their own rows (scans, ratings, bookings, pushed events).
OTHER_FIGURES = ("visitors", "ratings", "ratings_satisfied", "bookings", "no_shows", "enforcement")


@dataclass(frozen=True)
class Filter:
    court_id: int
    since: datetime  # aware; included
    until: datetime  # aware; excluded
    team: str | None = None  # None: every team; NO_TEAM: items held by no team
    judge_id: int | None = None  # None: every judge; NO_JUDGE: cases without one


def period_of(first: date, last: date) -> tuple[datetime, datetime]:
    """Court days `first`..`last` (both included) as [since, until) in aware UTC."""
    tz = court_tz()
    since = datetime.combine(first, time(0), tz)
    until = datetime.combine(last + timedelta(days=1), time(0), tz)
    return since.astimezone(UTC), until.astimezone(UTC)


def this_month(moment: datetime) -> tuple[date, date]:
    """The court's current month, first and last day."""
    today = moment.astimezone(court_tz()).date()
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


# -- what each item figure counts -------------------------------------------------------------


def _conditions(moment: datetime) -> dict[str, ColumnElement[bool]]:
    """Each item figure's condition on a ticket (joined to its rating, if any)."""
    due_passed = col(Ticket.due_at) <= moment
    replied = col(Ticket.first_reply_at).is_not(None)
    judged = and_(col(Ticket.due_at).is_not(None), or_(replied, due_passed))
    on_time = and_(
        col(Ticket.due_at).is_not(None), replied, col(Ticket.first_reply_at) <= col(Ticket.due_at)
    )
    return {
        "items": true(),
        "judged": judged,
        "on_time": on_time,
        "late": and_(judged, ~on_time),
        "replied": replied,
        "escalated": col(Ticket.level) > 0,
        "assisted": col(Ticket.assisted_by_id).is_not(None),
        "rated": col(Rating.id).is_not(None),
        "satisfied": col(Rating.score).in_(SATISFIED),
        "open_now": col(Ticket.status).in_(OPEN),
        "overdue_now": and_(
            col(Ticket.status).in_(OPEN), col(Ticket.first_reply_at).is_(None), due_passed
        ),
    }


ITEM_FIGURES = tuple(_conditions(datetime.now(UTC)))


def ticket_conditions(moment: datetime) -> dict[str, ColumnElement[bool]]:
    """Each item figure's condition on a ticket outer-joined to its rating (`mst stats`
    counts with the same ones: bot.rules.stats)."""
    return _conditions(moment)


async def tune_aggregates(session: AsyncSession) -> bool:
    """Settings for a few big aggregates over a period's tickets, for this transaction
    only (PostgreSQL; on SQLite nothing). Returns whether the database is PostgreSQL."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    # JIT compiling costs more than it saves on these few aggregates (~0.1 s a query),
    # grouping a year of items wants more than 4 MB, and the scans (rows handed from
    # parallel workers by the ten thousand) gain by being parallel more than the default
    # cost of handing a row over (0.1) lets the planner see.
    await session.execute(text("SET LOCAL jit = off"))
    await session.execute(text("SET LOCAL work_mem = '64MB'"))
    await session.execute(text("SET LOCAL parallel_tuple_cost = 0.01"))
    # Planned for the period at hand each time (a few ms), not once for any period.
    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    return True


# What each figure counts, in words, so anyone can count it again from the items.
DEFINITIONS: dict[str, str] = {
    "items": "本期（按收到时间）本院收到的全部诉求，含咨询、投诉举报、调解预约、财产线索。",
    "visitors": "本期扫描本院案件二维码的人数：同一微信号多次扫码只算1人。"
    "按团队、法官查看时，扫码算作所扫案件的承办法官及其所在团队的（见“团队与法官”）。",
    "on_time": "按时答复率 = 按时答复件数 ÷ 已到期件数。已到期：有答复期限，且已答复或期限已过；"
    "期限未到且未答复的不计入。按时：首次答复时间不晚于当初告知当事人的期限（升级不改变期限）。",
    "hours": "首次答复用时：从收到到首次答复之间的工作时间（工作日 8:30–12:00、13:30–17:30，"
    "节假日不计），以小时计。只计本期收到且已答复的诉求。中位数：排序后居中的值（偶数件取中间两件的平均）；"
    "90%分位：排序后第 ⌈0.9×件数⌉ 件的值。",
    "feedback_satisfaction": "诉求满意率 = 本期收到的诉求中评价为“满意”或“基本满意”的件数 ÷ 有评价的件数。",
    "ratings": "评价满意率 = 本期作出的全部评价（对诉求办理的评价和对整体服务的评价）中“满意”和“基本满意”"
    "的条数 ÷ 评价条数。按团队查看时只计该团队诉求的评价。",
    "open_now": "当前未办结：此刻状态为待答复或已答复（未办结）的诉求，不论何时收到。",
    "overdue_now": "当前超期：此刻未办结、从未答复、且已过答复期限的诉求，不论何时收到。",
    "escalated": "升级：本期收到的诉求中，被升级过至少一次的件数：逾期未答复自动升级的，"
    "和工作人员上报升级的。",
    "assisted": "代办：本期收到的诉求中，由工作人员在诉讼服务中心为到场当事人代为提交的件数"
    "（陪诉访导：核对身份、当事人同意后代办，见代办记录）。",
    "bookings": "调解预约：本期新预约的调解场次（含之后取消的）；未到场：其中标记为未到场的。"
    "按团队、法官查看时，算作预约所属案件的承办法官及其所在团队的。",
    "enforcement": "执行进展推送：本期导入、向关注该案的当事人推送的公开执行节点条数。"
    "按团队、法官查看时，算作所属案件的承办法官及其所在团队的。",
    "teams": "团队：诉求算作它当前所在的团队（诉求移交、升级后随之改变）；扫码、调解预约和"
    "执行推送不属于某件诉求，算作所属案件承办法官现在所在的团队，案件没有承办法官或法官"
    "未分团队的列为“（未分团队）”。法官：案件的承办法官。",
}


# -- the figures -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of figures: the court, a team, or a judge."""

    label: str
    team: str | None = None  # the Filter.team its links carry
    judge_id: int | None = None
    court_id: int | None = None  # the province's view: the court the row is (by_court)
    items: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    judged: int = 0
    on_time: int = 0
    late: int = 0
    replied: int = 0
    escalated: int = 0
    assisted: int = 0  # submitted at the service desk for a person there (bot.rules.desk)
    rated: int = 0
    satisfied: int = 0
    open_now: int = 0
    overdue_now: int = 0
    hours: list[float] = field(default_factory=list)  # working hours to first reply
    # Or, counted by the database (PostgreSQL): median and 90th percentile of those hours.
    hours_figures: tuple[float, float] | None = None
    # Scans, bookings and pushes: by the case's judge and that judge's team.
    visitors: int = 0
    ratings: int = 0
    ratings_satisfied: int = 0
    bookings: int = 0
    no_shows: int = 0
    enforcement: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return share(self.on_time, self.judged)

    @property
    def feedback_satisfaction(self) -> float | None:
        return share(self.satisfied, self.rated)

    @property
    def rating_satisfaction(self) -> float | None:
        return share(self.ratings_satisfied, self.ratings)

    @property
    def median_hours(self) -> float | None:
        if not self.hours:
            return round(self.hours_figures[0], 1) if self.hours_figures else None
        return round(statistics.median(self.hours), 1)

    @property
    def p90_hours(self) -> float | None:
        if not self.hours:
            return round(self.hours_figures[1], 1) if self.hours_figures else None
        ordered = sorted(self.hours)
        return round(ordered[math.ceil(0.9 * len(ordered)) - 1], 1)


@dataclass
class Bucket:
    """A week (or month) of the trend chart."""

    label: str
    since: datetime
    until: datetime
    items: int = 0
    judged: int = 0
    on_time: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return share(self.on_time, self.judged)


@dataclass
class Dashboard:
    filter: Filter
    moment: datetime
    total: Row
    teams: list[Row]
    judges: list[Row]
    buckets: list[Bucket]
    by_month: bool  # the trend is by month (the period is too long for weeks)
    warnings: list[str]


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percent(value: float | None) -> str:
    """As courts write it: 83.5%; "—" when there is nothing to judge."""
    return "—" if value is None else f"{value * 100:.1f}%"


def hours_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _scoped(q: Select[*_Ts], f: Filter, *, period: bool = True) -> Select[*_Ts]:
    """Tickets of the filter's court, team, judge (and period, unless a "now" figure)."""
    q = q.where(col(Ticket.court_id) == f.court_id)
    if period:
        q = q.where(col(Ticket.created_at) >= f.since, col(Ticket.created_at) < f.until)
    if f.team is not None:
        q = q.where(col(Ticket.team).is_(None) if f.team == NO_TEAM else col(Ticket.team) == f.team)
    if f.judge_id is not None:
        q = q.where(_judge_is(f.judge_id))
    return q


def _judge_is(judge_id: int) -> ColumnElement[bool]:
    return col(Case.judge_id).is_(None) if judge_id == NO_JUDGE else col(Case.judge_id) == judge_id


# A case's team for scans, bookings and pushes: its judge's team now (Staff outer-joined on
# Case.judge_id), NO_TEAM ("") when it has no judge or the judge no team.
def _case_team() -> ColumnElement[str]:
    # NO_TEAM written into the SQL, not bound: each use the same text, so that GROUP BY
    # matches the SELECT (PostgreSQL would see $1 and $2 as two expressions).
    return func.coalesce(col(Staff.team), literal_column("''"))


def _with_judge(q: Select[*_Ts]) -> Select[*_Ts]:
    return q.outerjoin(Staff, col(Staff.id) == col(Case.judge_id))


def _cases_of(f: Filter) -> Select[Any]:
    """The filter's cases, for what belongs to a case: its court, judge and judge's team."""
    q = select(col(Case.id)).where(col(Case.court_id) == f.court_id)
    if f.judge_id is not None:
        q = q.where(_judge_is(f.judge_id))
    if f.team is not None:
        q = _with_judge(q).where(_case_team() == f.team)
    return q


def buckets_of(f: Filter) -> tuple[list[Bucket], bool]:
    """Monday-to-Sunday weeks (court time) covering the period, cut at its ends; by month
    when there would be more than MAX_WEEKS."""
    tz = court_tz()
    first = f.since.astimezone(tz).date()
    last = (f.until.astimezone(tz) - timedelta(microseconds=1)).date()
    starts: list[date] = []
    by_month = (last - first).days // 7 + 1 > MAX_WEEKS
    day = first
    while day <= last:
        starts.append(day)
        if by_month:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        else:
            day = day + timedelta(days=7 - day.weekday())
    found = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else last + timedelta(days=1)
        label = f"{start.year}-{start.month:02d}" if by_month else f"{start.month}/{start.day}"
        found.append(
            Bucket(
                label,
                max(f.since, datetime.combine(start, time(0), tz).astimezone(UTC)),
                min(f.until, datetime.combine(end, time(0), tz).astimezone(UTC)),
            )
        )
    return found, by_month


class WorkClock:
    """Working time as a running total: working seconds from a fixed day to a moment, so the
    working time between two moments is one subtraction (the deadlines' own walk, day by
    day, is too slow for a year of items)."""

    def __init__(self, deadlines: Deadlines) -> None:
        self.deadlines = deadlines
        self.origin: date | None = None
        self.totals: list[float] = []  # working seconds before each day from origin
        self.day_length = sum(
            (datetime.combine(date.min, e) - datetime.combine(date.min, s)).total_seconds()
            for s, e in WORK_PERIODS
        )

    def _before(self, day: date) -> float:
        if self.origin is None:
            self.origin, self.totals = day, [0.0]
        assert self.origin is not None
        if day < self.origin:  # start earlier: rebuild from there
            old, old_total = self.origin, self.totals[0]
            self.origin, self.totals = day, [0.0]
            self._extend(old)
            # Keep the totals already handed out: the same moment, the same total.
            shift = self.totals[(old - day).days] - old_total
            self.totals = [t - shift for t in self.totals]
        self._extend(day)
        return self.totals[(day - self.origin).days]

    def _extend(self, day: date) -> None:
        assert self.origin is not None
        while len(self.totals) <= (day - self.origin).days:
            previous = self.origin + timedelta(days=len(self.totals) - 1)
            worked = self.day_length if self.deadlines.is_workday(previous) else 0.0
            self.totals.append(self.totals[-1] + worked)

    def at(self, moment: datetime) -> float:
        local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(court_tz())
        day = local.date()
        total = self._before(day)
        if self.deadlines.is_workday(day):
            now_s = local.hour * 3600 + local.minute * 60 + local.second
            for s, e in WORK_PERIODS:
                lo = s.hour * 3600 + s.minute * 60
                hi = e.hour * 3600 + e.minute * 60
                total += max(0, min(now_s, hi) - lo)
        return total

    def hours(self, a: datetime, b: datetime) -> float:
        return (self.at(b) - self.at(a)) / 3600

    def days(self, first: date, last: date) -> tuple[list[int], list[int]]:
        """For each day `first`..`last`: the working seconds before it (from `first`) and
        whether it is a working day (1 or 0), for the database to count as `at` does."""
        before, workday = [], []
        for i in range((last - first).days + 1):
            day = first + timedelta(days=i)
            before.append(int(self._before(day) - self._before(first)))
            workday.append(1 if self.deadlines.is_workday(day) else 0)
        return before, workday


def _seconds_in_db(
    clock: WorkClock, offset: int, first: date, last: date
) -> Callable[[Any], ColumnElement[Any]]:
    """WorkClock.at as SQL (PostgreSQL) for moments on days `first`..`last`, court time
    being UTC + `offset` seconds all along: the calendar goes as two arrays, one entry a day
    (working seconds before it, working day or not), the moment's time of day does the rest."""
    before, workday = clock.days(first, last)
    # In brackets: ($1::BIGINT[])[i], not $1::BIGINT[][i].
    before_p = Grouping(bindparam("work_before", before, type_=ARRAY(BigInteger)))
    workday_p = Grouping(bindparam("work_day", workday, type_=ARRAY(Integer)))
    origin = (first - date(1970, 1, 1)).days

    def at(moment: Any) -> ColumnElement[Any]:
        # Whole seconds of court time since 1970 (WorkClock.at drops the fraction too).
        local = cast(func.floor(func.date_part("epoch", moment)), BigInteger) + offset
        i = cast(local // 86400 - (origin - 1), Integer)
        now_s = local % 86400
        worked: ColumnElement[Any] | None = None
        for s, e in WORK_PERIODS:
            lo = s.hour * 3600 + s.minute * 60
            hi = e.hour * 3600 + e.minute * 60
            part = func.greatest(0, func.least(now_s, hi) - lo)
            worked = part if worked is None else worked + part
        assert worked is not None
        return before_p[i] + workday_p[i] * worked

    return at


def _bucket_of(created: Any, ends: list[datetime], first: int = 0) -> Any:
    """The index of the first of `ends` (ascending) after `created`, from `first` on, or the
    number of ends if none: a search by halves, a few comparisons an item, not one a week."""
    if not ends:
        return first
    half = len(ends) // 2
    return case(
        (created < ends[half], _bucket_of(created, ends[:half], first)),
        else_=_bucket_of(created, ends[half + 1 :], first + half + 1),
    )


async def compute(
    session: AsyncSession, f: Filter, deadlines: Deadlines, moment: datetime
) -> Dashboard:
    """The court's figures for the filter: total, by team, by judge, by week."""
    cond = _conditions(moment)
    postgres = await tune_aggregates(session)
    names = await _judge_names(session, f.court_id)
    total = Row("全院" if f.team is None and f.judge_id is None else "所选范围")
    teams: dict[str | None, Row] = {}
    judges: dict[int | None, Row] = {}

    def team_row(team: str | None) -> Row:
        if team not in teams:
            teams[team] = Row(team or "（未分团队）", team=team or NO_TEAM)
        return teams[team]

    def judge_row(judge: int | None) -> Row:
        if judge not in judges:
            judges[judge] = Row(
                names.get(judge, "（未指定承办法官）") if judge else "（未指定承办法官）",
                judge_id=judge or NO_JUDGE,
            )
        return judges[judge]

    buckets, by_month = buckets_of(f)
    bucket = _bucket_of(col(Ticket.created_at), [b.until for b in buckets])
    summed = ("judged", "on_time", "late", "replied", "escalated", "assisted", "rated", "satisfied")
    q = select(
        col(Ticket.team),
        col(Case.judge_id),
        col(Ticket.kind),
        bucket,
        func.count(),
        func.min(case((cond["replied"], col(Ticket.created_at)))),
        func.max(case((cond["replied"], col(Ticket.created_at)))),
        func.min(col(Ticket.first_reply_at)),
        func.max(col(Ticket.first_reply_at)),
        *[func.sum(case((cond[n], 1), else_=0)) for n in summed],
    ).select_from(Ticket)
    q = q.join(Case, col(Case.id) == col(Ticket.case_id)).outerjoin(
        Rating, col(Rating.ticket_id) == col(Ticket.id)
    )
    q = _scoped(q, f).group_by(col(Ticket.team), col(Case.judge_id), col(Ticket.kind), bucket)
    span: list[datetime] = []  # the first and last moments the first-reply hours count from
    for team, judge, kind, b, count, c0, c1, r0, r1, *sums in (await session.execute(q)).all():
        span += [m for m in (c0, c1, r0, r1) if isinstance(m, datetime)]
        for row in (total, team_row(team), judge_row(judge)):
            row.items += count
            row.by_kind[kind] = row.by_kind.get(kind, 0) + count
            for name, value in zip(summed, sums, strict=True):
                setattr(row, name, getattr(row, name) + int(value or 0))
        if b < len(buckets):
            buckets[b].items += count
            buckets[b].judged += int(sums[0] or 0)
            buckets[b].on_time += int(sums[1] or 0)

    q = select(
        col(Ticket.team),
        col(Case.judge_id),
        func.count(),
        func.sum(case((cond["overdue_now"], 1), else_=0)),
    ).select_from(Ticket)
    q = q.join(Case, col(Case.id) == col(Ticket.case_id)).where(cond["open_now"])
    q = _scoped(q, f, period=False).group_by(col(Ticket.team), col(Case.judge_id))
    for team, judge, count, overdue in (await session.execute(q)).all():
        for row in (total, team_row(team), judge_row(judge)):
            row.open_now += count
            row.overdue_now += int(overdue or 0)

    clock = WorkClock(deadlines)
    done = postgres and bool(span)
    if done:
        done = await _hours_in_db(
            session, f, cond["replied"], clock, span, total, team_row, judge_row
        )
    q = select(
        col(Ticket.team), col(Case.judge_id), col(Ticket.created_at), col(Ticket.first_reply_at)
    ).select_from(Ticket)
    q = _scoped(q.join(Case, col(Case.id) == col(Ticket.case_id)).where(cond["replied"]), f)
    rows = [] if done else (await session.execute(q)).all()
    for team, judge, created, replied in rows:
        hours = clock.hours(created, replied)
        for row in (total, team_row(team), judge_row(judge)):
            row.hours.append(hours)

    await _ratings(session, f, total, team_row, judge_row)
    await _others(session, f, total, team_row, judge_row)
    return Dashboard(
        f,
        moment,
        total,
        sorted(teams.values(), key=lambda r: (r.team == NO_TEAM, r.label)),
        sorted(judges.values(), key=lambda r: (r.judge_id == NO_JUDGE, r.label)),
        buckets,
        by_month,
        deadlines.calendar_warnings(),
    )


async def _hours_in_db(
    session: AsyncSession,
    f: Filter,
    replied: ColumnElement[bool],
    clock: WorkClock,
    span: list[datetime],
    total: Row,
    team_row: Callable[[str | None], Row],
    judge_row: Callable[[int | None], Row],
) -> bool:
    """The first-reply hours' median and 90th percentile by the database (PostgreSQL), as
    Row.median_hours and Row.p90_hours count them from every item's hours. False, nothing
    done, when court time is not one offset from UTC over the days (summer time)."""
    tz = court_tz()
    first = min(span).astimezone(tz).date()
    last = max(span).astimezone(tz).date()
    offsets = {
        tz.utcoffset(datetime.combine(first + timedelta(days=i), time(h)))
        for i in range((last - first).days + 1)
        for h in (0, 12)
    }
    offset = offsets.pop() if len(offsets) == 1 else None
    if offset is None or offset % timedelta(seconds=1):
        return False
    at = _seconds_in_db(clock, int(offset.total_seconds()), first, last)
    seconds = at(col(Ticket.first_reply_at)) - at(col(Ticket.created_at))
    q = select(col(Ticket.team), col(Case.judge_id), seconds.label("seconds"))
    q = _scoped(q.join(Case, col(Case.id) == col(Ticket.case_id)).where(replied), f)
    # OFFSET 0 keeps the subquery apart: each item's seconds counted once, not once a set.
    items = q.offset(0).subquery()
    # percentile_disc(p): the value at ⌈p×n⌉, as p90_hours. 0.5: the lower middle; 0.5 + 2⁻³⁰:
    # the upper middle (the same one when n is odd), for n below 2²⁹.
    fractions = bindparam("fractions", [0.5, 0.5 + 2**-30, 0.9], type_=ARRAY(Float))
    q = select(
        items.c.team,
        items.c.judge_id,
        func.grouping(items.c.team),
        func.grouping(items.c.judge_id),
        func.percentile_disc(fractions).within_group(items.c.seconds),
    ).group_by(func.grouping_sets(tuple_(), tuple_(items.c.team), tuple_(items.c.judge_id)))
    for team, judge, by_team, by_judge, (lower, upper, p90) in (await session.execute(q)).all():
        middle = lower / 3600 if lower == upper else (lower / 3600 + upper / 3600) / 2
        figures = (middle, p90 / 3600)
        if not by_team:
            team_row(team).hours_figures = figures
        elif not by_judge:
            judge_row(judge).hours_figures = figures
        else:
            total.hours_figures = figures
    return True


async def _judge_names(session: AsyncSession, court_id: int) -> dict[int | None, str]:
    rows = await session.execute(
        select(col(Staff.id), col(Staff.name)).where(col(Staff.court_id) == court_id)
    )
    return {i: n for i, n in rows.all()}


def _ratings_query(f: Filter) -> Select[Any]:
    """Every rating given in the period on the court's cases (of an item's handling or of
    the service in general); with a team, only ratings of that team's items."""
    q = (
        select(Rating)
        .join(Case, col(Case.id) == col(Rating.case_id))
        .outerjoin(Ticket, col(Ticket.id) == col(Rating.ticket_id))
        .where(
            col(Case.court_id) == f.court_id,
            col(Rating.created_at) >= f.since,
            col(Rating.created_at) < f.until,
        )
    )
    if f.team is not None:
        q = q.where(
            col(Ticket.id).is_not(None),
            col(Ticket.team).is_(None) if f.team == NO_TEAM else col(Ticket.team) == f.team,
        )
    if f.judge_id is not None:
        q = q.where(_judge_is(f.judge_id))
    return q


async def _ratings(
    session: AsyncSession,
    f: Filter,
    total: Row,
    team_row: Callable[[str | None], Row],
    judge_row: Callable[[int | None], Row],
) -> None:
    # The rating's item's team, looked up rating by rating: cheaper than joining every
    # ticket of the court to one period's ratings. Otherwise as _ratings_query.
    team_of = select(col(Ticket.team)).where(col(Ticket.id) == col(Rating.ticket_id))
    team = team_of.scalar_subquery().label("team")
    q = (
        select(
            team,
            col(Case.judge_id),
            func.count(),
            func.sum(case((col(Rating.score).in_(SATISFIED), 1), else_=0)),
        )
        .select_from(Rating)
        .join(Case, col(Case.id) == col(Rating.case_id))
        .where(
            col(Case.court_id) == f.court_id,
            col(Rating.created_at) >= f.since,
            col(Rating.created_at) < f.until,
        )
    )
    if f.team is not None:
        held = team_of.scalar_subquery()
        q = q.where(
            col(Rating.ticket_id).is_not(None),
            held.is_(None) if f.team == NO_TEAM else held == f.team,
        )
    if f.judge_id is not None:
        q = q.where(_judge_is(f.judge_id))
    for held_by, judge, count, good in (
        await session.execute(q.group_by(team, col(Case.judge_id)))
    ).all():
        rows = [total, judge_row(judge)] + ([team_row(held_by)] if held_by is not None else [])
        for row in rows:
            row.ratings += count
            row.ratings_satisfied += int(good or 0)


def _other_query(figure: str, f: Filter) -> Select[Any]:
    """The rows behind a figure that is not about items: scans, bookings, pushed events."""
    cases = _cases_of(f).scalar_subquery()
    if figure == "visitors":
        return select(AuditEvent).where(
            col(AuditEvent.action) == "code.scanned",
            col(AuditEvent.case_id).in_(cases),
            col(AuditEvent.at) >= f.since,
            col(AuditEvent.at) < f.until,
        )
    if figure in ("bookings", "no_shows"):
        q = select(Booking).where(
            col(Booking.case_id).in_(cases),
            col(Booking.created_at) >= f.since,
            col(Booking.created_at) < f.until,
        )
        return q.where(col(Booking.status) == "no_show") if figure == "no_shows" else q
    if figure == "enforcement":
        return select(EnforcementEvent).where(
            col(EnforcementEvent.case_id).in_(cases),
            col(EnforcementEvent.public),
            col(EnforcementEvent.created_at) >= f.since,
            col(EnforcementEvent.created_at) < f.until,
        )
    raise ValueError(figure)


async def _others(
    session: AsyncSession,
    f: Filter,
    total: Row,
    team_row: Callable[[str | None], Row],
    judge_row: Callable[[int | None], Row],
) -> None:
    """Scans, bookings and pushes: by court, by the case's judge, and by that judge's team
    (_case_team()): a case's, not an item's, so not by the team holding an item."""
    # The scans of _other_query("visitors"), joined to their case rather than also looked
    # up among the filter's cases. People, not scans: one who scanned cases of two judges is
    # one visitor of the court (and of a team both judges are in). Each judge's people once
    # each, then counted by judge, by team and, people once, for the court.
    scans = _with_judge(
        select(col(Case.judge_id), _case_team().label("team"), col(AuditEvent.actor))
        .select_from(AuditEvent)
        .join(Case, col(Case.id) == col(AuditEvent.case_id))
    ).where(
        col(AuditEvent.action) == "code.scanned",
        col(Case.court_id) == f.court_id,
        col(AuditEvent.at) >= f.since,
        col(AuditEvent.at) < f.until,
    )
    if f.judge_id is not None:
        scans = scans.where(_judge_is(f.judge_id))
    if f.team is not None:
        scans = scans.where(_case_team() == f.team)
    pairs = scans.group_by(col(Case.judge_id), _case_team(), col(AuditEvent.actor)).cte("pairs")
    by_team = select(pairs.c.team, pairs.c.actor).group_by(pairs.c.team, pairs.c.actor).subquery()
    people = select(pairs.c.actor).group_by(pairs.c.actor).subquery()
    counted = union_all(
        select(pairs.c.judge_id, null(), func.count(), literal(0)).group_by(pairs.c.judge_id),
        select(null(), by_team.c.team, func.count(), literal(1)).group_by(by_team.c.team),
        select(null(), null(), func.count(), literal(2)).select_from(people),
    )
    for judge, team, n, which in (await session.execute(counted)).all():
        if which == 2:
            total.visitors = n
        elif which == 1:
            team_row(team or None).visitors = n
        else:
            judge_row(judge).visitors = n
    for figure in ("bookings", "no_shows", "enforcement"):
        sub = _other_query(figure, f).subquery()
        q = _with_judge(
            select(col(Case.judge_id), _case_team(), func.count())
            .select_from(sub)
            .join(Case, col(Case.id) == sub.c.case_id)
        ).group_by(col(Case.judge_id), _case_team())
        for judge, team, n in (await session.execute(q)).all():
            for row in (total, team_row(team or None), judge_row(judge)):
                setattr(row, figure, getattr(row, figure) + n)


# -- the province: every court side by side ---------------------------------------------------


async def by_court(
    session: AsyncSession, since: datetime, until: datetime, moment: datetime
) -> tuple[Row, list[Row]]:
    """Each court's headline figures for [since, until) — items, on time, satisfaction,
    ratings, escalated, assisted, open and overdue now (at `moment`), visitors — counted by
    the database grouped by court, with the conditions of a court's own dashboard
    (_conditions): the same figure is the same count in both. Every court is listed, those
    with nothing to count too. The province's row: the courts' sums, except visitors: a
    person who scanned codes of two courts is one visitor of the province."""
    cond = _conditions(moment)
    courts = {
        court_id: Row(name, court_id=court_id)
        for court_id, name in (
            await session.execute(select(col(Court.id), col(Court.name)).order_by(col(Court.id)))
        ).all()
    }
    total = Row("全省")
    summed = ("judged", "on_time", "late", "replied", "escalated", "assisted", "rated", "satisfied")
    q = (
        select(
            col(Ticket.court_id),
            func.count(),
            *[func.sum(case((cond[n], 1), else_=0)) for n in summed],
        )
        .select_from(Ticket)
        .outerjoin(Rating, col(Rating.ticket_id) == col(Ticket.id))
        .where(col(Ticket.created_at) >= since, col(Ticket.created_at) < until)
        .group_by(col(Ticket.court_id))
    )
    for court_id, count, *sums in (await session.execute(q)).all():
        for row in (courts[court_id], total):
            row.items += count
            for name, value in zip(summed, sums, strict=True):
                setattr(row, name, getattr(row, name) + int(value or 0))
    now_q = (
        select(
            col(Ticket.court_id), func.count(), func.sum(case((cond["overdue_now"], 1), else_=0))
        )
        .where(cond["open_now"])
        .group_by(col(Ticket.court_id))
    )
    for court_id, count, overdue in (await session.execute(now_q)).all():
        for row in (courts[court_id], total):
            row.open_now += count
            row.overdue_now += int(overdue or 0)
    rated_q = (
        select(
            col(Case.court_id),
            func.count(),
            func.sum(case((col(Rating.score).in_(SATISFIED), 1), else_=0)),
        )
        .select_from(Rating)
        .join(Case, col(Case.id) == col(Rating.case_id))
        .where(col(Rating.created_at) >= since, col(Rating.created_at) < until)
        .group_by(col(Case.court_id))
    )
    for court_id, count, good in (await session.execute(rated_q)).all():
        for row in (courts[court_id], total):
            row.ratings += count
            row.ratings_satisfied += int(good or 0)
    # Visitors as a court's dashboard counts them (_others): people who scanned its codes.
    scans = (
        select(col(Case.court_id), col(AuditEvent.actor))
        .select_from(AuditEvent)
        .join(Case, col(Case.id) == col(AuditEvent.case_id))
        .where(
            col(AuditEvent.action) == "code.scanned",
            col(AuditEvent.at) >= since,
            col(AuditEvent.at) < until,
        )
        .group_by(col(Case.court_id), col(AuditEvent.actor))
        .cte("scans")
    )
    people = select(scans.c.actor).group_by(scans.c.actor).subquery()
    counted = union_all(
        select(scans.c.court_id, func.count()).group_by(scans.c.court_id),
        select(null(), func.count()).select_from(people),
    )
    for court_id, n in (await session.execute(counted)).all():
        if court_id is None:
            total.visitors = n
        else:
            courts[court_id].visitors = n
    return total, list(courts.values())


# -- the items behind a figure ----------------------------------------------------------------


FIGURE_NAMES: dict[str, str] = {
    "items": "收到诉求",
    "judged": "已到答复期限",
    "on_time": "按时答复",
    "late": "未按时答复",
    "replied": "已答复（计入答复用时）",
    "escalated": "升级",
    "assisted": "代办提交",
    "rated": "有评价的诉求",
    "satisfied": "满意或基本满意的诉求",
    "open_now": "当前未办结",
    "overdue_now": "当前超期未答复",
    "visitors": "扫码记录",
    "ratings": "全部评价",
    "ratings_satisfied": "满意或基本满意的评价",
    "bookings": "调解预约",
    "no_shows": "调解未到场",
    "enforcement": "执行进展推送",
}


def known_figure(figure: str) -> bool:
    if figure.startswith("kind:"):
        return bool(figure[5:]) and len(figure) <= 40
    return figure in FIGURE_NAMES


def tickets_query(figure: str, f: Filter, moment: datetime) -> Select[Ticket, Case, Rating]:
    """The tickets a ticket figure counts, with their case and rating (if any), by id."""
    cond = _conditions(moment)
    q = (
        select(Ticket, Case, Rating)
        .join(Case, col(Case.id) == col(Ticket.case_id))
        .outerjoin(Rating, col(Rating.ticket_id) == col(Ticket.id))
    )
    if figure.startswith("kind:"):
        where = col(Ticket.kind) == figure[5:]
    else:
        where = cond.get(figure, false())
    return _scoped(q.where(where), f, period=figure not in NOW_FIGURES).order_by(col(Ticket.id))


def ratings_query(figure: str, f: Filter) -> Select[Any]:
    q = _ratings_query(f).add_columns(Case)
    if figure == "ratings_satisfied":
        q = q.where(col(Rating.score).in_(SATISFIED))
    return q.order_by(col(Rating.id))


def other_rows(figure: str, f: Filter) -> Select[Any]:
    q = _other_query(figure, f)
    entity = q.column_descriptions[0]["entity"]
    return q.add_columns(Case).join(Case, col(Case.id) == entity.case_id).order_by(entity.id)


def is_ticket_figure(figure: str) -> bool:
    return figure.startswith("kind:") or figure in ITEM_FIGURES
