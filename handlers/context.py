"""What a flow is given: the message, its transaction, what the conversation remembers,
the court's rules and the few settings a flow reads (no secret)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.events import Inbound
from bot.core.settings import FlowSettings
from bot.rules import people
from bot.rules.rulebook import Rulebook


@dataclass
class Context:
    """A handler writes through `session` (one transaction, committed after it returns)
    and keeps what the conversation must remember in `state`. Redis writes that must
    count only if that transaction commits go to `after_commit`."""

    session: AsyncSession
    inbound: Inbound
    settings: FlowSettings
    redis: Redis
    rules: Rulebook  # the court's deadlines, escalation policy and room links
    state: dict[str, Any] = field(default_factory=dict)
    message_id: int | None = None  # the stored inbound message
    # Run once the flow's transaction has committed. A flow may be rolled back (it failed)
    # or cut off and run again (too slow): counters bumped inside it would count twice.
    after_commit: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    _person: int | None = field(default=None, repr=False)

    async def person(self) -> int:
        """Who sent it (bot.rules.people), whichever channel: looked up when a flow needs
        it, not for every message; their person is made on first need."""
        if self._person is None:
            self._person = await people.person_for(
                self.session, self.inbound.channel, self.inbound.user
            )
        return self._person
