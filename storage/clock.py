"""One source of "now" for everything stored, so tests and deadline code can move time
without patching datetime. The court's time zone and how people read times are in
bot/core/clock.py; this is only the moment, in UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Aware UTC; the database stores and returns UTC (sqlmodel's UTCDateTime)."""
    return _now().astimezone(UTC)


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Tests: replace the clock (an aware datetime factory); None restores the real one."""
    global _now
    _now = fn or (lambda: datetime.now(UTC))
