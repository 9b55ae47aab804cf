"""The outbox delivers each row through the sender of its channel (`Deps.senders`): what
the sender says — sent (and how), `Refused`, `Retry` — is what happens to the row; a row
whose channel has no sender here waits, saying so, and is not lost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.app import jobs
from bot.channels.wechat.sender import MINUTE_LIMIT_WAIT, WeChatSender
from bot.core.clock import now
from bot.dialog.deps import Deps
from bot.outbox import delivery
from bot.outbox import queue as outbox
from bot.outbox.senders import Letter, Refused, Retry
from storage.models import AuditEvent, Outbox
from tests.world import LITIGANT, World

MEMBER = "zhangwei"  # a WeCom userid


@dataclass
class FakeSender:
    """A channel's sender that answers what the test tells it and keeps what it was given."""

    channel: str
    answer: str | Exception = "app-message"
    letters: list[Letter] = field(default_factory=list)

    async def send(self, letter: Letter) -> str:
        self.letters.append(letter)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def queue(deps: Deps, recipient: str, text: str, *, channel: str) -> None:
    async with deps.db.transaction() as s:
        await outbox.add(
            s, recipient=recipient, kind="cs_text", payload={"text": text}, channel=channel
        )


async def row_of(deps: Deps, recipient: str) -> Outbox:
    async with deps.db.sessions() as s:
        return (
            await s.execute(select(Outbox).where(col(Outbox.recipient) == recipient))
        ).scalar_one()


async def events(deps: Deps, action: str) -> list[AuditEvent]:
    async with deps.db.sessions() as s:
        return list(
            (await s.execute(select(AuditEvent).where(col(AuditEvent.action) == action))).scalars()
        )


async def test_a_row_goes_through_its_own_channels_sender(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    wecom = FakeSender("wecom")
    w.deps.senders["wecom"] = wecom
    await queue(w.deps, MEMBER, "新的问题 #7", channel="wecom")
    await queue(w.deps, LITIGANT, "法官已答复", channel="wechat")
    assert await w.deliver() == 2
    [letter] = wecom.letters
    row = await row_of(w.deps, MEMBER)
    assert (letter.id, letter.channel, letter.recipient, letter.kind, letter.payload) == (
        row.id,
        "wecom",
        MEMBER,
        "cs_text",
        {"text": "新的问题 #7"},
    )
    assert row.status == "sent" and row.sent_at == now() and row.last_error is None
    assert w.fake.sent_to(MEMBER) == []  # not through WeChat...
    assert w.inbox(LITIGANT) == ["法官已答复"]  # ...which still has its own rows
    delivered = {
        json.loads(e.payload)["to"]: json.loads(e.payload)["via"]
        for e in await events(w.deps, "message.delivered")
    }
    assert delivered == {MEMBER: "app-message", LITIGANT: "custom"}


async def test_refused_fails_the_row_at_once_with_the_reason(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    w.deps.senders["wecom"] = FakeSender("wecom", Refused("60111 成员不存在"))
    await queue(w.deps, MEMBER, "新的问题 #7", channel="wecom")
    await w.deliver()
    row = await row_of(w.deps, MEMBER)
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "60111 成员不存在")
    [failed] = await events(w.deps, "delivery.failed")
    assert failed.subject == f"outbox:{row.id}"


async def test_retry_with_a_wait_is_not_tried_before_it(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    wecom = FakeSender("wecom", Retry("45033 接口调用超过限制", wait=timedelta(minutes=10)))
    w.deps.senders["wecom"] = wecom
    await queue(w.deps, MEMBER, "新的问题 #7", channel="wecom")
    await w.deliver()
    row = await row_of(w.deps, MEMBER)
    assert row.status == "pending" and row.last_error == "45033 接口调用超过限制"
    assert row.next_attempt_at >= now() + timedelta(minutes=10)
    frozen_clock[0] += timedelta(minutes=10) - timedelta(seconds=1)
    await w.deliver()
    assert len(wecom.letters) == 1  # not yet
    frozen_clock[0] += timedelta(seconds=1)
    wecom.answer = "app-message"
    await w.deliver()
    assert len(wecom.letters) == 2
    assert (await row_of(w.deps, MEMBER)).status == "sent"


async def test_retry_without_a_wait_backs_off_as_usual(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    w.deps.senders["wecom"] = FakeSender("wecom", Retry("-1 系统繁忙"))
    await queue(w.deps, MEMBER, "新的问题 #7", channel="wecom")
    await w.deliver()
    row = await row_of(w.deps, MEMBER)
    assert row.status == "pending" and row.last_error == "-1 系统繁忙"
    assert row.next_attempt_at == now() + delivery.backoff(1)


async def test_a_row_for_a_channel_without_a_sender_waits_then_fails_naming_it(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await queue(w.deps, MEMBER, "新的问题 #7", channel="wecom")  # no WeCom sender here
    await w.deliver()
    row = await row_of(w.deps, MEMBER)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "no sender for channel wecom"
    assert row.next_attempt_at == now() + delivery.backoff(1)
    # Not lost, and not left forever: after the usual give-up rule, failed for a person.
    frozen_clock[0] += delivery.GIVE_UP_AFTER
    for _ in range(delivery.GIVE_UP_TRIES):
        frozen_clock[0] += timedelta(seconds=delivery.BACKOFF_MAX_S)
        await w.deliver()
    row = await row_of(w.deps, MEMBER)
    assert (row.status, row.attempts) == ("failed", delivery.GIVE_UP_TRIES)
    assert row.last_error == "no sender for channel wecom (not sent in 3 days)"


async def test_a_process_without_senders_leaves_the_outbox_alone(deps: Deps) -> None:
    await queue(deps, LITIGANT, "法官已答复", channel="wechat")
    assert deps.senders == {}
    assert await jobs.deliver_outbox(deps) == 0
    row = await row_of(deps, LITIGANT)
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)


@pytest.mark.parametrize(
    ("errcode", "outcome", "wait"),
    [
        (43004, Refused, None),  # unfollowed
        (40003, Refused, None),  # not our user
        (45009, Retry, MINUTE_LIMIT_WAIT),  # the API's daily quota
        (45011, Retry, MINUTE_LIMIT_WAIT),  # calls per minute
        (48001, Retry, None),  # our configuration: may be fixed
        (-500, Retry, None),  # WeChat down (TransientError)
    ],
)
async def test_wechat_errors_become_the_outboxs_words(
    world: World, errcode: int, outcome: type[Exception], wait: timedelta | None
) -> None:
    w = world
    sender = w.deps.senders["wechat"]
    assert isinstance(sender, WeChatSender)
    w.fake.fail("/cgi-bin/message/custom/send", errcode)
    letter = Letter(
        id=1, channel="wechat", recipient=LITIGANT, kind="cs_text", payload={"text": "x"}
    )
    with pytest.raises(outcome) as raised:
        await sender.send(letter)
    if isinstance(raised.value, Retry):
        assert raised.value.wait == wait
    else:
        assert str(raised.value).startswith(f"{errcode} ")
