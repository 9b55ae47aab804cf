"""Channel-neutral inbound events: what channels produce and handlers consume."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Inbound:
    channel: str  # wechat | wecom | miniprogram | h5
    user: str  # the channel's user id (WeChat openid)
    kind: str  # text | scan | subscribe | unsubscribe | click | voice | image | video | location | link | file | action | other
    key: str  # the channel's de-duplication key for this delivery
    text: str = ""  # text content, voice recognition result, or menu click key
    code: str | None = None  # case-code token carried by a scan
    media_id: str | None = None
    raw_type: str = ""  # the channel's own type name, for logs and unknown kinds
    # At the service desk (bot.rules.desk): the open desk session this turn runs in and the
    # staff member acting in it; `user` is then the party they act for. None: oneself.
    desk: int | None = None
    assisted_by: str | None = None  # the staff member's username
    # An app's form (kind "action": handlers.actions): which one; `code` carries its fields.
    action: str | None = None

    @property
    def plain(self) -> str:
        """The text as a command is read: NFKC (full-width digits and letters as plain
        ones) and trimmed. What the person said is `text`, kept as they said it."""
        return unicodedata.normalize("NFKC", self.text).strip()
