"""The console: a person typing at a terminal, a channel in one sub-package.

Each typed line becomes an `Inbound` for `bot.dialog.dispatch.handle`, and the `Reply` is
printed this channel's own way (WeChat's is `bot.core.reply.as_text`): the words, a
`[key] label` line for each choice, then each link as `label: url`. The outbox reaches a
console user through `ConsoleSender`. No flow and no rule knows this channel exists.

    mst console --as 王某某
"""

from __future__ import annotations

import uuid
from typing import TextIO

from bot.core.events import Inbound
from bot.core.notice import Unreadable
from bot.core.reply import Reply
from bot.dialog import dispatch
from bot.dialog.deps import Deps
from bot.outbox.senders import Letter, Retry
from handlers.notices import letter_text

CHANNEL = "console"


def inbound(user: str, line: str) -> Inbound:
    """A typed line as the channel-neutral event (every line its own de-duplication key)."""
    return Inbound(
        channel=CHANNEL, user=user, kind="text", key=f"{CHANNEL}:{uuid.uuid4().hex}", text=line
    )


def render(reply: Reply) -> str:
    """The console's way to show a reply: choices as `[key] label`, links on their own."""
    lines = [reply.text.rstrip("\n")] if reply.text.strip() else []
    lines += [f"[{choice.key}] {choice.label}" for choice in reply.choices]
    lines += [reply.footer] if reply.footer else []
    lines += [f"{link.label}: {link.url}" for link in reply.links]
    return "\n".join(lines) + "\n"


class Console:
    """One person at the console: what they type goes to the dialog, its answer to `out`."""

    def __init__(self, deps: Deps, user: str, out: TextIO) -> None:
        self.deps, self.user, self.out = deps, user, out

    async def say(self, line: str) -> Reply | None:
        reply = await dispatch.handle(self.deps, inbound(self.user, line))
        if reply is not None:
            self.out.write(render(reply))
            self.out.flush()
        return reply


class ConsoleSender:
    """The outbox's way to a console user (bot.outbox.senders.Sender): the text, printed."""

    channel = CHANNEL

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def close(self) -> None:
        """Nothing held open: the stream is the caller's."""

    async def send(self, letter: Letter) -> str:
        try:
            _, text = letter_text(letter.payload)  # a notice's words: handlers.notices
        except Unreadable as exc:  # written by another version: one that can word it will
            raise Retry(f"{exc}") from exc
        self.out.write(f"（{letter.recipient} 收到通知）\n{text}\n")
        self.out.flush()
        return CHANNEL
