"""When a reply is due, counted the way a court counts: working days and working hours.

Allowances (first reply, closing) per ticket kind are in the table below, in working days
("2d") or working hours ("4h"); a court may override them in MST_RULES_FILE.

- A working-day allowance ends at 17:30 (China time) of the Nth working day after the
  day the item came in, whatever the time it came in.
- A working-hour allowance counts only working minutes, 8:30–12:00 and 13:30–17:30 on
  working days, from the moment the item came in (or from the next working minute when it
  came in outside working hours).

Which days are working days, in this order:
1. the court's holiday file (MST_HOLIDAYS_FILE) for the dates it lists;
2. mainland China's official calendar (chinese-calendar: holidays and make-up working
   days), for the years it has data for (2004–2026 in the installed release);
3. Monday–Friday, for a year that neither covers; said once per year in the log and
   listed by `calendar_warnings()` for the dashboard. Never a crash, never a silent guess.

Times in are aware datetimes (a naive one is China time); times out are aware UTC.
Importable without the database. Nothing is in force by module state: a `Deadlines`
object is built once at start-up (`load`) and passed to whoever counts.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import chinese_calendar

from bot.core.clock import court_tz
from bot.core.errors import ConfigError

log = logging.getLogger(__name__)

Which = Literal["reply", "close"]
WHICH: tuple[Which, ...] = ("reply", "close")

# Allowances per ticket kind ("Nd": N working days, "Nh": N working hours).
#   kind           first reply   closing
DEFAULT_ALLOWANCES: dict[str, tuple[str, str]] = {
    "question": ("2d", "10d"),  # 咨询
    "complaint": ("5d", "15d"),  # 投诉举报
    "asset_lead": ("1d", "10d"),  # 财产线索
    "mediation": ("1d", "5d"),  # 预约调解
}
KINDS = tuple(DEFAULT_ALLOWANCES)

# Working hours, China time.
WORK_PERIODS: tuple[tuple[time, time], ...] = (
    (time(8, 30), time(12, 0)),
    (time(13, 30), time(17, 30)),
)
DAY_ENDS = WORK_PERIODS[-1][1]

HOLIDAYS_VAR = "MST_HOLIDAYS_FILE"
RULES_VAR = "MST_RULES_FILE"
# Sanity bounds on an allowance, so a typo cannot make a deadline years away.
MAX_DAYS = 365
MAX_HOURS = MAX_DAYS * 8

_ALLOWANCE = re.compile(r"\s*([0-9]+)\s*([dDhH])\s*")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- allowances and rules -------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    amount: int
    unit: Literal["d", "h"]  # working days | working hours

    @classmethod
    def parse(cls, text: str) -> Allowance:
        """ "2d" → 2 working days, "4h" → 4 working hours; ValueError otherwise."""
        m = _ALLOWANCE.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"{text!r} is not an allowance like '2d' (working days) or '4h' (working hours)"
            )
        amount = int(m.group(1))
        unit: Literal["d", "h"] = "d" if m.group(2) in "dD" else "h"
        limit = MAX_DAYS if unit == "d" else MAX_HOURS
        if not 1 <= amount <= limit:
            raise ValueError(f"{text!r}: must be 1 to {limit}{unit}")
        return cls(amount, unit)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def say(self) -> str:
        """In words for people: 2个工作日, 4个工作小时."""
        return f"{self.amount}个工作日" if self.unit == "d" else f"{self.amount}个工作小时"


KindAllowances = Mapping[str, Mapping[str, Allowance]]  # kind -> {"reply"|"close": Allowance}


@dataclass(frozen=True)
class Rules:
    """Deadline allowances: the defaults (the table above, or the file's top-level
    "deadlines") and each court's overrides. `raw` is the whole parsed file, for the other
    sections that live in it (escalation)."""

    defaults: KindAllowances = field(default_factory=lambda: _default_allowances())
    courts: Mapping[str, KindAllowances] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None
    # A court's own holiday file (its "holidays", relative to the rules file), by court name.
    holidays: Mapping[str, Path] = field(default_factory=dict)

    def allowance(self, kind: str, which: Which = "reply", court: str | None = None) -> Allowance:
        if kind not in self.defaults:
            raise ValueError(f"unknown ticket kind {kind!r} (known: {', '.join(self.defaults)})")
        if which not in WHICH:
            raise ValueError(f"which must be 'reply' or 'close', not {which!r}")
        if court is not None:
            own = self.courts.get(court, {}).get(kind, {}).get(which)
            if own is not None:
                return own
        return self.defaults[kind][which]


def _default_allowances() -> dict[str, dict[str, Allowance]]:
    return {
        kind: {"reply": Allowance.parse(reply), "close": Allowance.parse(close)}
        for kind, (reply, close) in DEFAULT_ALLOWANCES.items()
    }


DEFAULT_RULES = Rules()
# Kept for callers of the first version: first-reply allowance in working days.
REPLY_DAYS = {kind: int(reply[:-1]) for kind, (reply, _) in DEFAULT_ALLOWANCES.items()}


def load_rules(path: str | Path) -> Rules:
    """Read and check MST_RULES_FILE:

    {"deadlines": {"question": {"reply": "2d", "close": "10d"}},          (all courts)
     "courts": {"<court name>": {"deadlines": {"asset_lead": {"reply": "4h"}}}}}

    Unknown keys are left for others (escalation settings live in the same file); an
    unknown ticket kind or a bad allowance is a ConfigError naming MST_RULES_FILE."""
    path = Path(path)
    raw = _read_json(RULES_VAR, path)

    def fail(where: str, why: str) -> ConfigError:
        return ConfigError(f"{RULES_VAR}: {path}: {where}: {why}")

    def section(value: Any, where: str) -> dict[str, dict[str, Allowance]]:
        if not isinstance(value, dict):
            raise fail(where, "must be an object of ticket kinds")
        out: dict[str, dict[str, Allowance]] = {}
        for kind, entry in value.items():
            if kind not in DEFAULT_ALLOWANCES:
                raise fail(f"{where}.{kind}", f"unknown ticket kind (known: {', '.join(KINDS)})")
            if not isinstance(entry, dict):
                raise fail(
                    f"{where}.{kind}", 'must be an object like {"reply": "2d", "close": "10d"}'
                )
            out[kind] = {}
            for which in WHICH:
                if which in entry:
                    try:
                        out[kind][which] = Allowance.parse(entry[which])
                    except ValueError as exc:
                        raise fail(f"{where}.{kind}.{which}", str(exc)) from None
        return out

    defaults = _default_allowances()
    for kind, own in section(raw.get("deadlines", {}), "deadlines").items():
        defaults[kind].update(own)
    courts_raw = raw.get("courts", {})
    if not isinstance(courts_raw, dict):
        raise fail("courts", "must be an object keyed by court name")
    courts: dict[str, KindAllowances] = {}
    holidays: dict[str, Path] = {}
    for name, court in courts_raw.items():
        if not isinstance(court, dict):
            raise fail(f"courts.{name}", "must be an object")
        if "deadlines" in court:
            courts[name] = section(court["deadlines"], f"courts.{name}.deadlines")
        if "holidays" in court:
            own = court["holidays"]
            if not isinstance(own, str) or not own.strip():
                raise fail(f"courts.{name}.holidays", "must be the path of a holiday file")
            holidays[name] = path.parent / own
            if not holidays[name].is_file():
                raise fail(f"courts.{name}.holidays", f"no such file {holidays[name]}")
    return Rules(defaults=defaults, courts=courts, raw=raw, source=path, holidays=holidays)


# --- the calendar ---------------------------------------------------------------------


@dataclass(frozen=True)
class CourtCalendar:
    """MST_HOLIDAYS_FILE: dates off and extra working days the court declares."""

    off: frozenset[date] = frozenset()
    work: frozenset[date] = frozenset()
    source: Path | None = None

    @property
    def years(self) -> frozenset[int]:
        return frozenset(d.year for d in self.off | self.work)


def load_holidays(path: str | Path) -> CourtCalendar:
    """Read and check MST_HOLIDAYS_FILE: {"off": ["2027-01-01", ...], "work": ["2027-02-07", ...]}.

    A year the file lists any date for counts as covered by it (other days of that year:
    Monday–Friday, without a warning). For a date it lists, the file wins over the
    official calendar."""
    path = Path(path)
    raw = _read_json(HOLIDAYS_VAR, path)
    unknown = sorted(set(raw) - {"off", "work"})
    if unknown:
        raise ConfigError(f'{HOLIDAYS_VAR}: {path}: unknown keys {unknown} (only "off" and "work")')
    lists: dict[str, frozenset[date]] = {}
    for key in ("off", "work"):
        values = raw.get(key, [])
        if not isinstance(values, list):
            raise ConfigError(
                f'{HOLIDAYS_VAR}: {path}: "{key}" must be a list of dates like "2027-01-01"'
            )
        days = set()
        for value in values:
            try:
                if not (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
                    raise ValueError
                days.add(date.fromisoformat(value))
            except ValueError:
                raise ConfigError(
                    f'{HOLIDAYS_VAR}: {path}: "{key}": {value!r} is not a date like "2027-01-01"'
                ) from None
        lists[key] = frozenset(days)
    both = sorted(lists["off"] & lists["work"])
    if both:
        raise ConfigError(
            f"{HOLIDAYS_VAR}: {path}: {', '.join(map(str, both))} both off and a working day"
        )
    return CourtCalendar(off=lists["off"], work=lists["work"], source=path)


def _read_json(var: str, path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{var}: {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{var}: {path} must hold a JSON object")
    return raw


def _fallback_text(year: int) -> str:
    return f"{year}年没有官方节假日数据，暂按周一至周五计算工作日（可在 {HOLIDAYS_VAR} 中补充本院节假日）"


@functools.lru_cache(maxsize=4096)
def _official_workday(day: date) -> bool | None:
    """The State Council's calendar (fixed data; asked several times per new ticket)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None  # past the package's data


def _china(moment: datetime) -> datetime:
    return (
        moment.replace(tzinfo=court_tz())
        if moment.tzinfo is None
        else moment.astimezone(court_tz())
    )


@dataclass
class Deadlines:
    """The court's working time: its calendar and its allowances, built once at start-up
    (`load`) and handed to whoever counts a deadline. It remembers which years it had to
    guess (Monday–Friday), to say so once per year and on the dashboard."""

    calendar: CourtCalendar = field(default_factory=CourtCalendar)
    rules: Rules = DEFAULT_RULES
    _guessed_years: set[int] = field(default_factory=set)
    # Courts with a holiday file of their own (by name): their calendar is the
    # installation's with theirs on top (`for_court`).
    courts: Mapping[str, CourtCalendar] = field(default_factory=dict)
    _own: dict[str, Deadlines] = field(default_factory=dict, repr=False)

    def for_court(self, court: str | None) -> Deadlines:
        """The working time of `court`: its own holiday file over the installation's (a
        date either lists counts; where they differ, the court's wins). Courts without one
        share the installation's."""
        if court is None or court not in self.courts:
            return self
        if court not in self._own:
            own, base = self.courts[court], self.calendar
            merged = CourtCalendar(
                off=(base.off - own.work) | own.off,
                work=(base.work - own.off) | own.work,
                source=own.source,
            )
            self._own[court] = Deadlines(merged, self.rules, self._guessed_years)
        return self._own[court]

    def calendar_warnings(self) -> list[str]:
        """For the dashboard: the years whose working days are a Monday–Friday guess."""
        return [_fallback_text(year) for year in sorted(self._guessed_years)]

    def is_workday(self, day: date) -> bool:
        if isinstance(day, datetime):
            day = _china(day).date()
        calendar = self.calendar
        if day in calendar.work:
            return True
        if day in calendar.off:
            return False
        official = _official_workday(day)
        if official is not None:
            return official
        if day.year not in calendar.years and day.year not in self._guessed_years:
            self._guessed_years.add(day.year)
            log.warning(
                "calendar: no official holiday data for %d and no %s dates for it: "
                "counting Monday-Friday as working days (%s)",
                day.year,
                HOLIDAYS_VAR,
                _fallback_text(day.year),
            )
        return day.weekday() < 5

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(day):
            return []
        return [
            (datetime.combine(day, start, court_tz()), datetime.combine(day, end, court_tz()))
            for start, end in WORK_PERIODS
        ]

    def _after_working(self, start: datetime, amount: timedelta) -> datetime:
        """The moment `amount` of working time has passed since `start` (China time).

        An amount used up exactly at the end of a period ends there (17:30, not 8:30 next day)."""
        moment = _china(start)
        day = moment.date()
        left = amount
        while True:
            for begin, end in self._periods(day):
                if moment >= end:
                    continue
                moment = max(moment, begin)
                if left <= end - moment:
                    return moment + left
                left -= end - moment
                moment = end
            day += timedelta(days=1)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """17:30 (China time) of the `days`-th working day after `start`'s day, as aware UTC."""
        day = _china(start).date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        return datetime.combine(day, DAY_ENDS, court_tz()).astimezone(UTC)

    def add_working_hours(self, start: datetime, hours: int) -> datetime:
        """The moment `hours` working hours have passed since `start`, as aware UTC."""
        return self._after_working(start, timedelta(hours=hours)).astimezone(UTC)

    def due(
        self,
        kind: str,
        start: datetime,
        *,
        which: Which = "reply",
        court: str | None = None,
        rules: Rules | None = None,
    ) -> datetime:
        """When the first reply (which="reply") or the closing ("close") of an item of `kind`
        that came in at `start` is due, for `court` (its overrides, else the defaults).
        `rules`: other allowances than the court's own, counted in its calendar (what if).
        ValueError for an unknown kind."""
        allowance = (rules or self.rules).allowance(kind, which, court)
        clock = self.for_court(court)
        if allowance.unit == "d":
            return clock.add_working_days(start, allowance.amount)
        return clock.add_working_hours(start, allowance.amount)

    def working_minutes_between(self, a: datetime, b: datetime) -> int:
        """Whole working minutes from `a` to `b` (negative when `b` is before `a`)."""
        if b < a:
            return -self.working_minutes_between(b, a)
        return int(self._working_time(a, b) // timedelta(minutes=1))

    def _working_time(self, a: datetime, b: datetime) -> timedelta:
        a, b = _china(a), _china(b)
        total = timedelta()
        day = a.date()
        while day <= b.date():
            for begin, end in self._periods(day):
                lo, hi = max(begin, a), min(end, b)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def warning_point(self, start: datetime, due: datetime, share: float = 0.75) -> datetime:
        """The moment `share` of the working time allowed from `start` to `due` has passed,
        as aware UTC (the due time itself when no working time lies between them)."""
        if not 0 <= share <= 1:
            raise ValueError(f"share must be between 0 and 1, not {share}")
        allowed = self._working_time(start, due) if due > start else timedelta()
        if allowed <= timedelta():
            return _china(due).astimezone(UTC)
        return self._after_working(start, allowed * share).astimezone(UTC)


def load(
    *, holidays_file: str | Path | None = None, rules_file: str | Path | None = None
) -> Deadlines:
    """Load and check the court's holiday file and rules (None: none): done once at
    start-up; a bad file is a ConfigError naming its variable."""
    calendar = load_holidays(holidays_file) if holidays_file else CourtCalendar()
    rules = load_rules(rules_file) if rules_file else DEFAULT_RULES
    courts = {name: load_holidays(own) for name, own in rules.holidays.items()}
    if calendar.source is not None:
        log.info(
            "holiday file %s: %d days off, %d extra working days (years %s)",
            calendar.source,
            len(calendar.off),
            len(calendar.work),
            ", ".join(map(str, sorted(calendar.years))) or "none",
        )
    return Deadlines(calendar, rules, courts=courts)
