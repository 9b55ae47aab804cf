"""Daily caps on what one person raises on one case: complaints, and messages added to
them. Counted in Redis per court day; a count is bumped only once what it counts has
committed (the caller runs `count_today`'s result after its transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from redis.asyncio import Redis

from bot.core.clock import court_tz, now
from storage import state

COMPLAINTS = "complaints"
COMPLAINT_MESSAGES = "complaint-messages"
KEPT_S = 2 * 24 * 3600  # a day's count outlives the day: the court's day, whatever the zone


def _day_key(what: str, user: str, case_id: int | None) -> str:
    return f"cap:{what}:{user}:{case_id}:{now().astimezone(court_tz()).date().isoformat()}"


async def used_today(redis: Redis, what: str, user: str, case_id: int | None) -> int:
    """How many of `what` the person has raised on the case today."""
    return await state.counted(redis, _day_key(what, user, case_id))


def count_today(
    redis: Redis, what: str, user: str, case_id: int | None
) -> Callable[[], Awaitable[int]]:
    """One more of `what` today: to run once it is stored (one rolled back uses none)."""
    return partial(state.bump, redis, _day_key(what, user, case_id), KEPT_S)
