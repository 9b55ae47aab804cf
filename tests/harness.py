"""Driving the dialog as any channel does, at the Inbound/Reply level: what a person sends
in, the `Reply` the flows give back, before a channel renders it. Every channel's tests can
use it (WeChat's own wire, XML and all, is driven through tests.world.World)."""

from __future__ import annotations

import itertools

from bot.core.events import Inbound
from bot.core.reply import Reply
from bot.dialog import dispatch
from bot.dialog.deps import Deps
from tests.world import World

_serial = itertools.count(1)


def deps_of(where: World | Deps) -> Deps:
    return where.deps if isinstance(where, World) else where


async def say(
    where: World | Deps, user: str, text: str, *, channel: str = "console", kind: str = "text"
) -> Reply:
    """`user` sends `text` on `channel`; the answer, as the flows gave it."""
    inbound = Inbound(channel, user, kind, f"{channel}:test:{next(_serial)}", text=text)
    reply = await dispatch.handle(deps_of(where), inbound)
    assert reply is not None, f"no answer to {text!r}"
    return reply


def keys(reply: Reply) -> list[str]:
    return [choice.key for choice in reply.choices]


def labels(reply: Reply) -> dict[str, str]:
    return {choice.key: choice.label for choice in reply.choices}
