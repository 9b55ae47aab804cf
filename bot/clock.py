"""One source of "now", so tests and deadline code can move time without patching datetime."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Aware UTC; the database stores and returns UTC (sqlmodel's UTCDateTime)."""
    return _now().astimezone(UTC)


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Tests: replace the clock (an aware datetime factory); None restores the real one."""
    global _now
    _now = fn or (lambda: datetime.now(UTC))


def to_china(moment: datetime) -> datetime:
    return moment.astimezone(CHINA_TZ)
