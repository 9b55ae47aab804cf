"""An app's form as a turn of the dialog: the mini-program's and the H5 pages' "ask this",
"add to #12", "verify with these digits". The form becomes an Inbound of kind "action"
(handlers.actions runs the chat's own flow for it), handled as any message is: stored,
recorded with its channel, within the person's rate, de-duplicated by its key.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from bot.core.addresses import DESK
from bot.core.events import Inbound
from bot.core.reply import Reply
from bot.dialog import dispatch
from bot.dialog.deps import Deps


async def submit(
    deps: Deps,
    *,
    channel: str,
    user: str,
    action: str,
    fields: dict[str, int | str],
    text: str = "",
    key: str | None = None,
) -> Reply | None:
    """The flow's answer; None when it is not the person's to do (not found, not theirs).
    `key`: the form's own de-duplication key (a resubmitted form is answered once)."""
    inbound = Inbound(
        channel=channel,
        user=user,
        kind="action",
        key=key or f"{channel}:{uuid.uuid4().hex}",
        text=text,
        code=urlencode(fields),
        action=action,
        raw_type=f"app.{action}",
    )
    return await dispatch.handle(deps, inbound)


def ticket_of(reply: Reply) -> int | None:
    """The item an answer is about (its `item`), when it is one."""
    kind, _, ref = (reply.item or "").partition(":")
    return int(ref) if kind == "ticket" and ref.isdigit() else None


async def at_desk(
    deps: Deps,
    *,
    desk: int,
    staff: str,
    user: str,
    text: str = "",
    action: str | None = None,
    fields: dict[str, int | str] | None = None,
) -> Reply | None:
    """A turn at the service desk: staff member `staff` (username), in their open desk
    session `desk`, says `text` for the party `user` — a chat line, or an app form
    (`action`) as `submit` takes it. Raises dispatch.DeskClosed when nobody may act in
    that session now (ended, idle, someone else's): then nothing was stored."""
    inbound = Inbound(
        channel=DESK,
        user=user,
        kind="action" if action else "text",
        key=f"{DESK}:{uuid.uuid4().hex}",
        text=text,
        code=urlencode(fields) if fields else None,
        action=action,
        raw_type=f"app.{action}" if action else "text",
        desk=desk,
        assisted_by=staff,
    )
    return await dispatch.handle(deps, inbound)
