"""`mst audit verify` in flat memory (issue 20): the messages are checked a batch at a time
as the walk meets them, the anchors' claims looked up a batch at a time after it. However
small the batches, the verdict is the one a single batch gives: the same findings, in the
same order, with the same words."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from bot.dialog.deps import Deps
from storage import audit
from storage.models import Message
from tests.test_audit import edit, rogue

CHAINS = (None, 7, 9, 12)  # global and three cases


async def _log(deps: Deps, n: int) -> dict[str, list[int]]:
    """`n` messages with their events over four chains (most on `global`), anchors between,
    some erased by law; then tampering of every kind verify names. Returns the ids."""
    rnd = random.Random(20)
    ids: list[int] = []
    for i in range(n):
        case_id = rnd.choice(CHAINS + (None, None))
        async with deps.db.transaction() as s:
            conn = await s.connection()
            text_ = f"第{i}条消息"
            msg_id = (
                await conn.execute(
                    insert(Message).returning(Message.id),  # type: ignore[arg-type]
                    {
                        "direction": "in",
                        "channel": "wechat",
                        "openid": f"u{i % 5}",
                        "msg_type": "text",
                        "content": text_,
                        "media_id": f"m{i}" if i % 9 == 0 else None,
                    },
                )
            ).scalar_one()
            payload: dict[str, Any] = {"type": "text", "sha256": audit.content_digest(text_)}
            if i % 4:  # older events hold no attachment digest
                payload["media_sha256"] = audit.media_digest(f"m{i}" if i % 9 == 0 else None)
            if i % 11 == 5:
                payload.pop("sha256")  # not covered
            await audit.append(
                s,
                actor="u",
                action="message.in",
                subject=f"message:{msg_id}",
                case_id=case_id,
                payload=payload,
            )
            ids.append(msg_id)
        if i % 13 == 0:
            async with deps.db.transaction() as s:
                await audit.anchor(s)
    erased = ids[3::17]
    for message_id in erased:
        async with deps.db.transaction() as s:
            await audit.erase_message(s, message_id, by="书记员", reason="依法删除")
    edited, deleted = ids[5::19], ids[8::23]
    async with deps.db.transaction() as s:
        await s.execute(
            update(Message).where(Message.id.in_(edited)).values(content="改过")  # type: ignore[union-attr]
        )
        await s.execute(update(Message).where(Message.id == erased[0]).values(content="又有了"))
        await s.execute(delete(Message).where(Message.id.in_(deleted + [erased[1]])))  # type: ignore[union-attr]
        forged = [
            (
                await s.execute(
                    insert(Message).returning(Message.id),  # type: ignore[arg-type]
                    {"direction": "out", "channel": "wechat", "openid": "x", "msg_type": "text"},
                )
            ).scalar_one()
            for _ in range(3)
        ]
    async with deps.db.sessions() as s:
        global_events = (
            await s.execute(
                select(audit.AuditEvent.id, audit.AuditEvent.seq)
                .where(audit.AuditEvent.chain == "case:9")
                .order_by(audit.AuditEvent.seq)
            )
        ).all()
    await edit(deps.db, global_events[2][0], actor="someone else")  # a broken hash
    async with rogue(deps.db) as s:  # a removed tail an anchor saw
        await s.execute(delete(audit.AuditEvent).where(audit.AuditEvent.chain == "case:12"))
    return {"ids": ids, "erased": erased, "edited": edited, "deleted": deleted, "forged": forged}


async def _verify(deps: Deps, **kwargs: Any) -> audit.Verdict:
    async with deps.db.sessions() as s:
        return await audit.verify(s, **kwargs)


async def test_small_batches_give_the_verdict_of_one(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await _log(deps, 160)
    whole = await _verify(deps, limit_problems=1000)
    chains = {c: await _verify(deps, chain=c, limit_problems=1000) for c in ("global", "case:7")}
    limited = await _verify(deps, limit_problems=20)
    # Every kind of finding is there, so the comparison below compares something.
    # (case:12 removed: its messages are unrecorded now, beside the three forged.)
    assert whole.unrecorded > 3 and whole.not_covered > 0 and whole.anchors > 0
    assert whole.erased and whole.deleted and whole.edited
    assert {f.message_id for f in whole.erased} <= set(made["erased"][2:])
    assert {f.message_id for f in whole.deleted} <= set(made["deleted"] + [made["erased"][1]])
    assert {f.message_id for f in whole.edited} <= set(made["edited"]) | {made["erased"][0]}
    assert any("anchor id=" in p for p in whole.problems)
    assert any("content does not match its hash" in p for p in whole.problems)
    assert len(limited.problems) == 20

    monkeypatch.setattr(audit, "_CHECK_BATCH", 3)
    monkeypatch.setattr(audit, "_CLAIMS_PER_QUERY", 2)
    monkeypatch.setattr(audit, "_IDS_PER_QUERY", 2)  # the range read, and the read by id
    monkeypatch.setattr(audit, "READ_BATCH", 7)
    assert await _verify(deps, limit_problems=1000) == whole
    for c, verdict in chains.items():
        assert await _verify(deps, chain=c, limit_problems=1000) == verdict
    assert await _verify(deps, limit_problems=20) == limited


async def test_what_verify_keeps_is_one_bit_a_message() -> None:
    seen = audit._Seen()
    assert seen.add(5) and not seen.add(5) and 5 in seen and 6 not in seen
    assert seen.add(10**12) and 10**12 in seen and 10**12 + 1 not in seen
    many = range(1, 200_001)
    assert all(seen.add(i) for i in many if i != 5)
    assert sum(len(page) for page in seen._pages.values()) <= 5 * 8192
