"""What a flow answers, channel-neutral: its words, the choices it offers as data, the links
it mentions, and what it concerns. Each channel renders a `Reply` its own way; `as_text` is
the chat's way (a WeChat text message): the words, then one line per choice.

Flows build an answer from parts (a note, then the menu): `a + b` (or `a.then(b)`) joins
them; the choices offered are the last part's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    """One thing the person may send next: `key` is what they send ("1", "0", "切换"),
    `label` the words for it ("咨询法官")."""

    key: str
    label: str
    # How the chat writes this choice when not as its `key label` line ("发送 0 返回菜单。");
    # "" when the chat's words already say it (the text, or another choice's line).
    chat: str | None = None


@dataclass(frozen=True)
class Link:
    """An address the reply mentions (a receipt, a mediation room). The chat's words carry
    it inline already; a channel with buttons may show it as one."""

    label: str
    url: str


@dataclass(frozen=True)
class Reply:
    text: str
    choices: tuple[Choice, ...] = ()
    links: tuple[Link, ...] = ()
    item: str | None = None  # what it concerns, where the flow knows: "ticket:12", "booking:3"
    footer: str = ""  # words after the choices ("请回复序号切换。")

    def then(self, other: Reply | str) -> Reply:
        """This reply followed by `other`: the words joined (this one's choices stay in them
        as the chat writes them), the choices and footer of `other`, the links of both."""
        if isinstance(other, str):
            other = Reply(other)
        return Reply(
            text=as_text(self) + other.text,
            choices=other.choices,
            links=self.links + other.links,
            item=other.item if other.item is not None else self.item,
            footer=other.footer,
        )

    def __add__(self, other: Reply | str) -> Reply:
        return self.then(other)

    def __radd__(self, other: str) -> Reply:
        return Reply(other).then(self)


def choice_line(choice: Choice) -> str:
    """A choice as the chat writes it: "1 咨询法官", or its own words."""
    return f"{choice.key} {choice.label}" if choice.chat is None else choice.chat


def as_text(reply: Reply) -> str:
    """The chat's rendering: the words, a line for each choice, then the footer."""
    lines = [line for line in map(choice_line, reply.choices) if line]
    return "\n".join(part for part in (reply.text, *lines, reply.footer) if part)
