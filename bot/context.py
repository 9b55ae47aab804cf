"""What a flow handler is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.events import Inbound


@dataclass
class Context:
    """A handler writes through `session` (one transaction, committed after it returns)
    and keeps what the conversation must remember in `state`."""

    session: AsyncSession
    inbound: Inbound
    settings: Settings
    redis: Redis
    state: dict[str, Any] = field(default_factory=dict)
    message_id: int | None = None  # the stored inbound message
