"""Time as people read it: the court's time zone (MST_TIMEZONE) and times in plain words.
The moment itself comes from storage.clock, the one source of "now"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from storage.clock import now, set_clock

__all__ = [
    "CHINA_TZ",
    "DEFAULT_TIMEZONE",
    "court_tz",
    "now",
    "say_time",
    "say_waited",
    "set_clock",
    "set_timezone",
    "to_court",
]

# China Standard Time as a fixed offset (no DST since 1991): tests write moments with it.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DEFAULT_TIMEZONE = "Asia/Shanghai"
_court_tz: tzinfo = ZoneInfo(DEFAULT_TIMEZONE)


def court_tz() -> tzinfo:
    """The time zone every time a person reads is in (MST_TIMEZONE, Asia/Shanghai by default)."""
    return _court_tz


def set_timezone(name: str) -> None:
    """Put MST_TIMEZONE in force; an unknown name raises KeyError (zoneinfo's own error)."""
    global _court_tz
    _court_tz = ZoneInfo(name)


def to_court(moment: datetime) -> datetime:
    return moment.astimezone(_court_tz)


_WEEKDAYS = "一二三四五六日"


def say_time(moment: datetime) -> str:
    """In plain words for people: 11月25日 周三 下午5:30."""
    t = to_court(moment)
    if t.hour < 12:
        part, hour = "上午", t.hour
    else:
        part, hour = "下午", t.hour - 12 if t.hour > 12 else 12
    return f"{t.month}月{t.day}日 周{_WEEKDAYS[t.weekday()]} {part}{hour}:{t.minute:02d}"


def say_waited(since: datetime) -> str:
    """How long something has waited: 35分钟, 3小时, 2天."""
    minutes = int((now() - since).total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 1)}分钟"
    if minutes < 24 * 60:
        return f"{minutes // 60}小时"
    return f"{minutes // (24 * 60)}天"
