"""An app's form as a turn of the dialog: the mini-program's and the H5 pages' "ask this",
"add to #12", "verify with these digits". The form becomes an Inbound of kind "action"
(handlers.actions runs the chat's own flow for it), handled as any message is: stored,
recorded with its channel, within the person's rate, de-duplicated by its key.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

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
