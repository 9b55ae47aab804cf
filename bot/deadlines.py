"""When a reply is due, counted in working days as a court counts them.

Working days follow mainland China's official calendar (chinese-calendar: holidays and
make-up working Saturdays). Past the calendar's data the fallback is Monday–Friday,
said once in the log, never a crash or a silent guess.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

import chinese_calendar

from bot.clock import CHINA_TZ

log = logging.getLogger(__name__)

# First-reply allowance per ticket kind, in working days.
REPLY_DAYS = {"question": 2, "complaint": 5, "asset_lead": 1, "mediation": 1}
DAY_ENDS = time(17, 30)
_warned_years: set[int] = set()


def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            log.warning(
                "no official holiday data for %d: counting Monday-Friday as working days", day.year
            )
        return day.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """The end of the `days`-th working day after `start`'s day (China time), as UTC-aware."""
    day = start.astimezone(CHINA_TZ).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_workday(day):
            counted += 1
    return datetime.combine(day, DAY_ENDS, CHINA_TZ)


def reply_due(kind: str, start: datetime) -> datetime:
    return add_working_days(start, REPLY_DAYS.get(kind, 2))
