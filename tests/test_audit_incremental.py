"""`mst audit verify` incremental by default: from the last recorded check (audit_check),
the new events (their hashes, their chains' links back to events older than the check,
their messages) and the signed head chain (the check's frontier plus the new leaves give
the latest head's root); `--full` walks everything and the whole transparency log."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.app import jobs
from bot.dialog.deps import Deps
from storage import audit, transparency
from storage import db as database
from storage.merkle import EMPTY_FRONTIER, frontier_append, frontier_root, leaf_hash
from storage.models import AuditCheck, AuditEvent, TreeHead
from tests.world import mst_in_process

KEY = bytes(range(32))
SIGNER = transparency.Signer.from_private_bytes(KEY)


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    """The CLI's environment, signing with the tests' key."""
    return {**cli_env, "MST_SIGNING_KEY": base64.b64encode(KEY).decode()}


async def add_events(db: database.Database, n: int, cases: tuple[int, ...] = (7, 8)) -> None:
    async with db.transaction() as s:
        await audit.append_many(
            s,
            [
                {
                    "actor": "system",
                    "action": "code.issued",
                    "subject": f"case:{cases[i % len(cases)]}",
                    "case_id": cases[i % len(cases)],
                    "payload": {"n": i},
                }
                for i in range(n)
            ],
        )


async def verify(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    run = await mst_in_process(env, cwd, "audit", "verify", "--json", *args)
    return run.code, json.loads(run.out)


async def checks(db: database.Database) -> list[tuple[str, int]]:
    async with db.sessions() as s:
        rows = await s.execute(select(AuditCheck).order_by(col(AuditCheck.id)))
        return [(c.mode, c.size) for c in rows.scalars()]


@asynccontextmanager
async def rogue(db: database.Database) -> AsyncIterator[AsyncSession]:
    """A transaction with the append-only guards of events and heads switched off."""
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            await s.execute(text("ALTER TABLE tree_head DISABLE TRIGGER USER"))
        else:
            for name in (
                "audit_event_no_update",
                "audit_event_no_delete",
                "tree_head_no_update",
                "tree_head_no_delete",
            ):
                await s.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        yield s


async def event_id(db: database.Database, case_id: int, seq: int) -> int:
    async with db.sessions() as s:
        found = await s.execute(
            select(col(AuditEvent.id)).where(
                col(AuditEvent.chain) == audit.chain_for(case_id), col(AuditEvent.seq) == seq
            )
        )
        return found.scalar_one() or 0


async def test_incremental_checks_only_the_new_events_and_is_recorded(
    deps: Deps, env: dict[str, str], tmp_path: Path
) -> None:
    await add_events(deps.db, 6)
    code, first = await verify(env, tmp_path)  # no check yet: a full one
    assert code == 0, first
    assert first["mode"] == "full" and first["events"] == 6 and first["log"]["leaves"] == 6

    await add_events(deps.db, 4)  # chains case:7 and case:8 go on from #3
    code, second = await verify(env, tmp_path)
    assert code == 0, second["problems"]
    assert second["mode"] == "incremental" and second["intact"] is True
    assert (second["events"], second["chains"]) == (4, 2)
    assert second["log"] == {
        "from_size": 6,
        "size": 10,
        "root": second["log"]["root"],
        "new_leaves": 4,
        "chain_only": 0,
    }
    assert await checks(deps.db) == [("full", 6), ("incremental", 10)]

    # The text: the message summary first, the English verdict last, and what it covers.
    run = await mst_in_process(env, tmp_path, "audit", "verify")
    assert run.code == 0, run.err
    lines = run.out.strip().splitlines()
    assert lines[0].startswith("消息：")
    assert "增量核对只覆盖新事件和签名树头链" in run.out and "--full" in run.out
    assert lines[-1].startswith("audit log intact: 0 new events in 0 chains")
    # The check appended is refused change, as events and heads are.
    with pytest.raises(Exception, match="append-only"):
        async with deps.db.transaction() as s:
            await s.execute(update(AuditCheck).values(size=1))
    with pytest.raises(Exception, match="append-only"):
        async with deps.db.transaction() as s:
            await s.execute(delete(AuditCheck))


async def test_an_old_edit_is_left_to_full_and_a_new_edit_fails_incremental(
    deps: Deps, env: dict[str, str], tmp_path: Path
) -> None:
    await add_events(deps.db, 6)
    assert (await verify(env, tmp_path))[0] == 0
    old = await event_id(deps.db, 7, 2)
    async with rogue(deps.db) as s:
        await s.execute(
            update(AuditEvent).where(col(AuditEvent.id) == old).values(payload='{"n":99}')
        )
    await add_events(deps.db, 2)

    # Incremental: the new events and the head chain are fine; the old edit is not read.
    run = await mst_in_process(env, tmp_path, "audit", "verify")
    assert run.code == 0, run.err
    assert "增量核对只覆盖新事件和签名树头链" in run.out
    # --full walks every chain and the whole log: it is named.
    full = await mst_in_process(env, tmp_path, "audit", "verify", "--full")
    assert full.code == 1
    first = full.err.strip().splitlines()[0]
    assert f"event id={old} " in first and "edited" in first
    assert any("leaf #" in line and "edited" in line for line in full.err.splitlines())
    recorded = await checks(deps.db)
    assert recorded == [("full", 6), ("incremental", 8)]  # the failed --full: not recorded

    # A NEW event edited before it was checked fails incremental.
    await add_events(deps.db, 2)
    new = await event_id(deps.db, 8, 5)
    async with rogue(deps.db) as s:
        await s.execute(update(AuditEvent).where(col(AuditEvent.id) == new).values(actor="forger"))
    run = await mst_in_process(env, tmp_path, "audit", "verify")
    assert run.code == 1
    assert f"event id={new} " in run.err and "edited" in run.err
    assert "mst audit verify --full" in run.err
    assert await checks(deps.db) == recorded


async def test_a_new_event_must_link_to_its_chains_older_event(
    deps: Deps, env: dict[str, str], tmp_path: Path
) -> None:
    """The event before a new one is older than the check: fetched by chain and seq."""
    await add_events(deps.db, 4)
    assert (await verify(env, tmp_path))[0] == 0
    await add_events(deps.db, 2)
    new = await event_id(deps.db, 7, 3)
    async with rogue(deps.db) as s:
        # Relinked and rehashed so the event itself is consistent: only its link is wrong.
        ev = (await s.execute(select(AuditEvent).where(col(AuditEvent.id) == new))).scalar_one()
        ev.prev_hash = "f" * 64
        ev.hash = audit.compute_hash(ev)
        await s.flush()
    code, report = await verify(env, tmp_path)
    assert code == 1 and report["mode"] == "incremental"
    assert any(f"event id={new} " in p and "does not link" in p for p in report["problems"])


async def test_a_swapped_latest_head_fails_incremental_and_full(
    deps: Deps, env: dict[str, str], tmp_path: Path
) -> None:
    await add_events(deps.db, 5)
    assert (await verify(env, tmp_path))[0] == 0
    await add_events(deps.db, 3)
    await jobs.extend_log(deps.db, SIGNER)
    async with deps.db.sessions() as s:
        head = await transparency.latest_head(s)
    assert head is not None and head.size == 8
    # The same key signs another history of 8 leaves (a fork), put in the latest head's place.
    other = EMPTY_FRONTIER
    for n in range(8):
        other = frontier_append(other, leaf_hash(bytes([n]) * 32))
    root = frontier_root(other)
    signature = SIGNER.sign(
        transparency.head_bytes(8, root, transparency.timestamp_ms(head.signed_at))
    )
    async with rogue(deps.db) as s:
        await s.execute(delete(TreeHead).where(col(TreeHead.size) == 8))
        await s.execute(
            insert(TreeHead).values(
                size=8,
                root=root.hex(),
                signed_at=head.signed_at,
                signature=signature.hex(),
                key_id=SIGNER.key_id,
                frontier=json.dumps([n.hex() for n in other.nodes]),
            )
        )
    run = await mst_in_process(env, tmp_path, "audit", "verify")
    assert run.code == 1
    assert "head size 8" in run.err and "swapped" in run.err
    assert "mst audit verify --full" in run.err
    # --full runs check_log: the operator sees the head does not match the events.
    full = await mst_in_process(env, tmp_path, "audit", "verify", "--full")
    assert full.code == 1 and "head size 8" in full.err
    assert await checks(deps.db) == [("full", 5)]


async def test_a_replaced_checkpoint_head_fails_incremental(
    deps: Deps, env: dict[str, str], tmp_path: Path
) -> None:
    await add_events(deps.db, 3)
    assert (await verify(env, tmp_path))[0] == 0
    async with rogue(deps.db) as s:
        await s.execute(update(TreeHead).where(col(TreeHead.size) == 3).values(root="0" * 64))
    await add_events(deps.db, 1)
    code, report = await verify(env, tmp_path)
    assert code == 1
    assert any("head size 3" in p for p in report["problems"])
