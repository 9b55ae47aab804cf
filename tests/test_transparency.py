"""The transparency log (storage.transparency): every audit event a leaf of one RFC 6962
Merkle tree, signed tree heads, proofs over HTTP, and check_log naming every kind of
tampering. What the server publishes is checked here with code of the test's own (RFC 6962
in a few lines, Ed25519 with `cryptography`), never with storage/merkle.py."""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import json
import re
import stat
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import jobs
from bot.app.config import SIGNING_KEY_FILE_NAME, ConfigError, Settings, load_settings
from bot.core.clock import to_court
from bot.dialog.deps import Deps
from storage import audit, state, transparency
from storage import db as database
from storage.merkle import frontier_of
from storage.models import AuditEvent, TreeHead, TreeNode
from tests.world import World, ask, mst_in_process, verify_litigant

KEY = bytes(range(32))  # the log's private key in these tests
OTHER_KEY = bytes(range(100, 132))
CASE = 101


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with the log's signing key."""
    return replace(settings, signing_key=KEY)


# -- RFC 6962 and the signature, written here on purpose ------------------------------------


def leaf_h(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_h(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1: MTH over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_h(mth(leaves[:k]), mth(leaves[k:]))


def path_root(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """The root an inclusion proof (PATH, nearest the leaf first) leads to."""
    if size == 1:
        assert not path, "proof too long"
        return leaf
    assert path, "proof too short"
    k = split(size)
    *rest, top = path
    if index < k:
        return node_h(path_root(leaf, index, k, rest), top)
    return node_h(top, path_root(leaf, index - k, size - k, rest))


def consistent_roots(m: int, n: int, proof: list[bytes], old_root: bytes) -> tuple[bytes, bytes]:
    """The (old, new) roots a consistency proof PROOF(m, D[n]) leads to (RFC 6962 2.1.2 read
    backwards: SUBPROOF appends the sibling last)."""

    def sub(m: int, n: int, proof: list[bytes], whole: bool) -> tuple[bytes, bytes]:
        if m == n:
            if whole:
                assert not proof, "proof too long"
                return old_root, old_root
            assert len(proof) == 1, "proof of the wrong length"
            return proof[0], proof[0]
        assert proof, "proof too short"
        k = split(n)
        *rest, top = proof
        if m <= k:
            old, new = sub(m, k, rest, whole)
            return old, node_h(new, top)
        old, new = sub(m - k, n - k, rest, False)
        return node_h(top, old), node_h(top, new)

    return sub(m, n, proof, True)


def public_of(private: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(private).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def signed_bytes(size: int, root: bytes, ms: int) -> bytes:
    """RFC 6962 3.5 TreeHeadSignature: v1, tree_hash, timestamp, tree_size, root."""
    return struct.pack(">BBQQ32s", 0, 1, ms, size, root)


def check_head(head: dict[str, Any], public: bytes) -> None:
    """Raises unless the published head is signed by `public` over its own values."""
    Ed25519PublicKey.from_public_bytes(public).verify(
        bytes.fromhex(head["signature"]),
        signed_bytes(head["size"], bytes.fromhex(head["root"]), head["timestamp"]),
    )
    assert head["key_id"] == hashlib.sha256(public).hexdigest()[:16]
    at = datetime.fromisoformat(head["signed_at"].replace("Z", "+00:00"))
    assert int(at.timestamp() * 1000) == head["timestamp"]


# -- helpers ---------------------------------------------------------------------------------


async def add(deps: Deps, n: int, *, case_id: int | None = CASE) -> list[int]:
    """`n` events, each in its own transaction as the handlers write them; their ids."""
    ids = []
    for i in range(n):
        async with deps.db.transaction() as s:
            ev = await audit.append(
                s, actor="clerk", action="note", case_id=case_id, payload={"i": i, "t": "第条"}
            )
            ids.append(ev.id)
    return ids


async def log_now(deps: Deps) -> TreeHead | None:
    """Sequence what is new and sign a head, as the job does."""
    async with deps.db.transaction() as s:
        await transparency.sequence(s)
        return await transparency.sign_head(s, transparency.Signer.from_private_bytes(KEY))


async def in_log(deps: Deps) -> list[AuditEvent]:
    """The events in leaf order."""
    async with deps.db.sessions() as s:
        found = await s.execute(
            select(AuditEvent)
            .where(AuditEvent.leaf_index.is_not(None))  # type: ignore[union-attr]
            .order_by(AuditEvent.leaf_index)
        )
        return list(found.scalars())


def leaves_of(events: list[AuditEvent]) -> list[bytes]:
    return [leaf_h(bytes.fromhex(ev.hash)) for ev in events]


async def check(deps: Deps) -> transparency.LogVerdict:
    """check_log on its own (reading the leaves itself); and, as `mst audit verify --full`
    runs it, over the leaves verify's walk read (verify_full): both must name the same."""
    async with deps.db.sessions() as s:
        alone = await transparency.check_log(s, public_of(KEY))
        _, merged = await transparency.verify_full(s, public_of(KEY))
    assert (merged.leaves, merged.heads, merged.ok) == (alone.leaves, alone.heads, alone.ok)

    def named(v: transparency.LogVerdict) -> list[str]:
        # The walk meets a reordered leaf from the other side: "comes before" (it goes
        # chain by chain), where check_log says "comes after" (it goes leaf by leaf).
        return sorted(p.split(": comes ")[0] for p in v.problems)

    assert len(merged.problems) == len(alone.problems)
    if not any("reordered in the log" in p for p in alone.problems):
        assert named(merged) == named(alone)
    return alone


@asynccontextmanager
async def rogue(db: database.Database) -> AsyncIterator[AsyncSession]:
    """A transaction with the append-only protection of events and heads switched off."""
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            await s.execute(text("ALTER TABLE tree_head DISABLE TRIGGER USER"))
        else:
            for name in ("audit_event_no_update", "audit_event_no_delete"):
                await s.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            for name in ("tree_head_no_update", "tree_head_no_delete"):
                await s.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        yield s


async def get_json(w: World, path: str, status: int = 200) -> Any:
    resp = await w.client.get(path)
    assert resp.status == status, (path, resp.status, await resp.text())
    return await resp.json()


# -- signed heads and proofs, checked from the outside ---------------------------------------


async def test_heads_and_proofs_verify_independently(world: World) -> None:
    w = world
    await verify_litigant(w)
    await ask(w, "请问什么时候开庭？")
    await add(w.deps, 3)
    assert await jobs.transparency_log(w.deps) > 0
    first = await get_json(w, "/transparency/head")
    key = await get_json(w, "/transparency/key")
    public = base64.b64decode(key["public_key"])
    assert public == public_of(KEY) and key["public_key_hex"] == public.hex()
    assert key["key_id"] == hashlib.sha256(public).hexdigest()[:16]
    assert key["past_keys"] == []  # none rotated out
    check_head(first, public)

    events = await in_log(w.deps)
    assert [ev.leaf_index for ev in events] == list(range(first["size"]))
    async with w.deps.db.sessions() as s:
        everything = (await s.execute(select(AuditEvent))).scalars().all()
    assert len(everything) == first["size"]  # every event is in
    assert mth(leaves_of(events)).hex() == first["root"]
    assert await get_json(w, f"/transparency/head/{first['size']}") == first

    # Nothing new: no new head.
    assert await jobs.transparency_log(w.deps) == 0
    assert await get_json(w, "/transparency/head") == first

    await ask(w, "还有一个问题：要带什么材料？")
    await add(w.deps, 5, case_id=None)
    await jobs.transparency_log(w.deps)
    second = await get_json(w, "/transparency/head")
    check_head(second, public)
    events = await in_log(w.deps)
    leaves = leaves_of(events)
    assert second["size"] == len(events) > first["size"]
    assert mth(leaves).hex() == second["root"]

    # Consistency: the second head extends the first.
    m, n = first["size"], second["size"]
    proof = await get_json(w, f"/transparency/proof/consistency?from={m}&to={n}")
    assert (proof["from"], proof["to"]) == (m, n)
    assert proof["heads"] == [first, second]
    old, new = consistent_roots(m, n, [bytes.fromhex(p) for p in proof["proof"]], mth(leaves[:m]))
    assert (old.hex(), new.hex()) == (first["root"], second["root"])
    latest = await get_json(w, f"/transparency/proof/consistency?from={m}")
    assert latest == proof

    # Inclusion: every leaf in both heads, by index; and by event id.
    for head in (first, second):
        for i in range(head["size"]):
            got = await get_json(w, f"/transparency/proof/inclusion?leaf={i}&size={head['size']}")
            assert got["head"] == head and got["leaf_index"] == i
            assert got["event_hash"] == events[i].hash and got["event_id"] == events[i].id
            assert (
                got["leaf_hash"] == leaves[i].hex() == leaf_h(bytes.fromhex(events[i].hash)).hex()
            )
            path = [bytes.fromhex(p) for p in got["proof"]]
            assert path_root(leaves[i], i, head["size"], path).hex() == head["root"]
    by_event = await get_json(w, f"/transparency/proof/inclusion?event={events[-1].id}")
    assert by_event["leaf_index"] == n - 1 and by_event["head"] == second
    path = [bytes.fromhex(p) for p in by_event["proof"]]
    assert path_root(leaves[-1], n - 1, n, path).hex() == second["root"]

    verdict = await check(w.deps)
    assert verdict.ok, verdict.problems
    assert (verdict.leaves, verdict.heads, verdict.unsequenced) == (n, 2, 0)


async def test_the_job_is_scheduled_and_takes_turns(deps: Deps) -> None:
    assert jobs.transparency_log in [job for job, _ in jobs.schedule_for(deps.settings)]
    await add(deps, 2)
    async with state.try_lock(deps.redis, "transparency-log", timeout_s=60) as got:
        assert got
        assert await jobs.transparency_log(deps) == 0  # another process is at it
    assert await jobs.transparency_log(deps) == 2
    # No key (settings built in code without one): nothing is signed, nothing breaks.
    deps.rules = replace(deps.rules, signer=None)
    await add(deps, 1)
    assert await jobs.transparency_log(deps) == 0


async def test_the_first_head_is_signed_as_the_process_starts(deps: Deps) -> None:
    """Not a minute later: the in-process timer runs the job before its first wait (and
    the arq worker's cron runs it at start-up), so /transparency/head answers at once."""
    from bot.app import worker

    await add(deps, 3)
    task = asyncio.create_task(jobs.run_forever(deps, jobs.transparency_log, 3600))
    try:
        for _ in range(500):  # polled on the event loop, bounded; the hour never passes
            async with deps.db.sessions() as s:
                head = await transparency.latest_head(s)
            if head is not None:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
    assert head is not None and head.size == 3
    queued = replace(deps.settings, redis_url="redis://127.0.0.1:6379/15")  # not connected to
    crons = {c.name: c for c in worker.worker_settings(queued).cron_jobs}  # type: ignore[attr-defined]
    assert crons["cron:transparency_log"].run_at_startup
    assert not crons["cron:deliver_outbox"].run_at_startup


async def test_a_backlog_goes_in_consecutively_and_heads_grow_from_their_frontier(
    deps: Deps,
) -> None:
    ids = await add(deps, 7)
    async with deps.db.transaction() as s:
        assert await transparency.sequence(s, limit=3) == list(zip(range(3), ids[:3], strict=True))
    async with deps.db.transaction() as s:
        assert await transparency.sequence(s, limit=3) == list(
            zip(range(3, 6), ids[3:6], strict=True)
        )
    head = await log_now(deps)  # the last one, then a head over all seven
    assert head is not None and head.size == 7
    for more in (1, 2, 5, 9):
        await add(deps, more)
        head = await log_now(deps)
        assert head is not None
        events = await in_log(deps)
        assert head.size == len(events)
        assert head.root == mth(leaves_of(events)).hex()
    assert await log_now(deps) is None
    assert (await check(deps)).ok


async def test_an_event_committing_late_with_a_smaller_id_is_sequenced_not_skipped(
    deps: Deps,
) -> None:
    await add(deps, 2)
    if deps.db.dialect == "postgresql":
        # Really concurrent: its id is handed out first, it commits after the next one.
        async with deps.db.sessions() as late, late.begin():
            slow = await audit.append(late, actor="judge", action="note", case_id=202)
            quick = (await add(deps, 1, case_id=None))[0]
            first = await log_now(deps)
        slow_id = slow.id
    else:
        # SQLite has one writer at a time: the slow event is kept out of sight instead.
        slow_id, quick = (await add(deps, 1, case_id=202))[0], (await add(deps, 1, case_id=None))[0]
        async with deps.db.sessions() as s:
            kept = (
                await s.execute(select(AuditEvent).where(AuditEvent.id == slow_id))
            ).scalar_one()
            values = {c: getattr(kept, c) for c in AuditEvent.model_fields}
        async with rogue(deps.db) as s:
            await s.execute(delete(AuditEvent).where(AuditEvent.id == slow_id))  # type: ignore[arg-type]
        first = await log_now(deps)
        async with deps.db.transaction() as s:  # it commits now
            await s.execute(insert(AuditEvent).values(**values))
    assert slow_id is not None and slow_id < quick
    assert first is not None and first.size == 3
    events = await in_log(deps)
    assert [ev.id for ev in events][-1] == quick
    second = await log_now(deps)
    assert second is not None and second.size == 4
    events = await in_log(deps)
    assert [(ev.leaf_index, ev.id) for ev in events[-2:]] == [(2, quick), (3, slow_id)]
    verdict = await check(deps)
    assert verdict.ok and verdict.unsequenced == 0, verdict.problems
    async with deps.db.sessions() as s:
        proof = await transparency.inclusion(s, event_id=slow_id)
    leaf = leaf_h(bytes.fromhex(events[3].hash))
    path = [bytes.fromhex(p) for p in proof.proof]
    assert path_root(leaf, 3, 4, path).hex() == second.root


# -- the database keeps events and heads as written ------------------------------------------


async def test_a_leaf_index_is_given_once_and_nothing_else_changes(deps: Deps) -> None:
    await add(deps, 3)
    await log_now(deps)
    refused = (
        "UPDATE audit_event SET leaf_index = 99 WHERE leaf_index = 0",
        "UPDATE audit_event SET actor = 'mallory' WHERE leaf_index = 1",
        "DELETE FROM audit_event WHERE leaf_index = 2",
        "UPDATE tree_head SET root = 'x'",
        "DELETE FROM tree_head",
    )
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            async with deps.db.transaction() as s:
                await s.execute(text(statement))
    ids = await add(deps, 1)
    with pytest.raises(DBAPIError, match="append-only"):  # a leaf index with another change
        async with deps.db.transaction() as s:
            await s.execute(
                update(AuditEvent)
                .where(AuditEvent.id == ids[0])  # type: ignore[arg-type]
                .values(leaf_index=3, payload="{}")
            )
    assert (await log_now(deps)) is not None
    assert (await check(deps)).ok


# -- tampering, each kind named --------------------------------------------------------------


async def signed_log(deps: Deps) -> list[TreeHead]:
    """Events on two chains (the case's and `global`, alternating), heads at 5 and 12."""
    heads = []
    for n in (5, 7):
        for i in range(n):
            await add(deps, 1, case_id=CASE if i % 2 == 0 else None)
        head = await log_now(deps)
        assert head is not None
        heads.append(head)
    assert [h.size for h in heads] == [5, 12]
    verdict = await check(deps)
    assert verdict.ok and (verdict.leaves, verdict.heads) == (12, 2), verdict.problems
    return heads


async def leaf(deps: Deps, index: int) -> AuditEvent:
    return (await in_log(deps))[index]


async def swap(deps: Deps, a: int, b: int) -> None:
    first, second = await leaf(deps, a), await leaf(deps, b)
    async with rogue(deps.db) as s:
        for ev_id, index in ((first.id, -1), (second.id, a), (first.id, b)):
            await s.execute(
                update(AuditEvent).where(AuditEvent.id == ev_id).values(leaf_index=index)  # type: ignore[arg-type]
            )


def fake_head(size: int, root: bytes, frontier: list[bytes], private: bytes) -> dict[str, Any]:
    ms = int(datetime(2026, 11, 23, 3, 0, tzinfo=UTC).timestamp() * 1000)
    key = Ed25519PrivateKey.from_private_bytes(private)
    return {
        "size": size,
        "root": root.hex(),
        "signed_at": datetime.fromtimestamp(ms / 1000, UTC),
        "signature": key.sign(signed_bytes(size, root, ms)).hex(),
        "key_id": hashlib.sha256(public_of(private)).hexdigest()[:16],
        "frontier": json.dumps([node.hex() for node in frontier]),
    }


async def test_an_edited_event_is_named(deps: Deps) -> None:
    await signed_log(deps)
    ev = await leaf(deps, 2)
    async with rogue(deps.db) as s:
        await s.execute(
            update(AuditEvent).where(AuditEvent.id == ev.id).values(payload='{"i":99}')  # type: ignore[arg-type]
        )
    problems = (await check(deps)).problems
    assert problems == [
        f"leaf #2 (event id={ev.id}, case:{CASE} #2, note): content does not match its hash (edited)"
    ]


async def test_a_deleted_event_is_named(deps: Deps) -> None:
    await signed_log(deps)
    ev = await leaf(deps, 3)
    async with rogue(deps.db) as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id == ev.id))  # type: ignore[arg-type]
    problems = (await check(deps)).problems
    assert problems[0] == "leaf #3 missing: events deleted from the log"
    assert "head size 5 and 1 later heads: root does not match the events" in problems[1]
    assert len(problems) == 2


async def test_reordered_events_are_named(deps: Deps) -> None:
    await signed_log(deps)
    await swap(deps, 0, 4)  # both the case's: its #3 now comes before its #1
    problems = (await check(deps)).problems
    assert any("events reordered in the log" in p for p in problems), problems
    assert any(p.startswith("head size 5 and 1 later heads: root does not match") for p in problems)


async def test_reordered_events_of_two_chains_are_named(deps: Deps) -> None:
    await signed_log(deps)
    await swap(deps, 6, 7)  # one global's, one the case's: each chain still in order
    problems = (await check(deps)).problems
    assert problems == [
        "head size 12: signed by this log's key, but the events give another root: "
        "leaves #5..#11 reordered or replaced after it was signed, or a fork"
    ]


async def test_a_truncated_log_is_named(deps: Deps) -> None:
    await signed_log(deps)
    doomed = [ev.id for ev in (await in_log(deps))[9:]]
    async with rogue(deps.db) as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id.in_(doomed)))  # type: ignore[union-attr]
    problems = (await check(deps)).problems
    assert problems[0] == (
        "the log holds 9 leaves, but head size 12 signed 12: events removed at the end (truncated)"
    )
    assert problems[1].startswith("head size 12: root does not match the events")


async def test_a_head_with_a_swapped_root_is_named(deps: Deps) -> None:
    five, twelve = await signed_log(deps)
    async with rogue(deps.db) as s:
        await s.execute(
            update(TreeHead).where(TreeHead.size == 5).values(root=twelve.root)  # type: ignore[arg-type]
        )
    assert (await check(deps)).problems == [
        "head size 5: its signature does not verify: its root, size or time was altered "
        "after signing"
    ]


async def test_a_head_signed_by_another_key_is_named(deps: Deps) -> None:
    await signed_log(deps)
    leaves = leaves_of((await in_log(deps))[:8])
    other = fake_head(8, mth(leaves), list(frontier_of(leaves).nodes), OTHER_KEY)
    async with deps.db.transaction() as s:
        await s.execute(insert(TreeHead).values(**other))
    ours = hashlib.sha256(public_of(KEY)).hexdigest()[:16]
    assert (await check(deps)).problems == [
        f"head size 8: signed by another key (key id {other['key_id']}; this log's key is {ours})"
    ]


async def test_a_fork_is_named(deps: Deps) -> None:
    """Our key signed a head of 8 leaves that the heads of 5 and 12 do not extend."""
    await signed_log(deps)
    real = leaves_of((await in_log(deps))[:8])
    forked = real[:3] + [leaf_h(b"another history %d" % i) for i in range(5)]
    fork = fake_head(8, mth(forked), list(frontier_of(forked).nodes), KEY)
    async with deps.db.transaction() as s:
        await s.execute(insert(TreeHead).values(**fork))
    assert (await check(deps)).problems == [
        "head size 8: a fork: signed by this log's key, but not consistent with head size 12, "
        "which the events match: the key signed two different histories"
    ]


# -- proofs from stored interior nodes: O(log n) reads -----------------------------------------


async def proved(deps: Deps, index: int, size: int | None = None) -> list[bytes]:
    """The server's inclusion proof for leaf `index`, checked here against its head."""
    async with deps.db.sessions() as s:
        inc = await transparency.inclusion(s, leaf_index=index, size=size)
    path = [bytes.fromhex(h) for h in inc.proof]
    assert (
        path_root(bytes.fromhex(inc.leaf_hash), index, inc.head.size, path).hex() == inc.head.root
    )
    return path


async def test_interior_nodes_are_kept_and_proofs_read_them_not_every_leaf(deps: Deps) -> None:
    await add(deps, 40)
    head = await log_now(deps)
    assert head is not None and head.size == 40
    async with deps.db.sessions() as s:
        nodes = (await s.execute(select(TreeNode.level, TreeNode.idx))).all()  # type: ignore[call-overload]
    # Subtrees of 16 leaves and more: [0,16), [16,32) and [0,32).
    assert sorted(nodes) == [(4, 0), (4, 1), (5, 0)]
    events = await in_log(deps)
    leaves = leaves_of(events)
    assert await proved(deps, 37) == [
        leaves[36],
        mth(leaves[38:40]),
        mth(leaves[32:36]),
        mth(leaves[0:32]),
    ]
    # Leaves #0..#31 gone (a rogue edit, named by check_log): the proof for #37 does not
    # read them, so it still comes out: it used the stored node [0,32) instead.
    async with rogue(deps.db) as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.leaf_index < 32))  # type: ignore[arg-type, operator]
    assert await proved(deps, 37) == [
        leaves[36],
        mth(leaves[38:40]),
        mth(leaves[32:36]),
        mth(leaves[0:32]),
    ]


async def test_a_log_begun_before_nodes_were_kept_still_proves_from_its_leaves(
    deps: Deps,
) -> None:
    await add(deps, 20)
    await log_now(deps)
    async with rogue(deps.db) as s:  # as after migration 0011 on an older log: no nodes
        if deps.db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE tree_node DISABLE TRIGGER USER"))
        else:
            await s.execute(text("DROP TRIGGER IF EXISTS tree_node_no_delete"))
        await s.execute(delete(TreeNode))
    await add(deps, 20)
    await log_now(deps)
    leaves = leaves_of(await in_log(deps))
    for index in (0, 15, 19, 20, 39):
        path = await proved(deps, index)
        assert path_root(leaves[index], index, 40, path) == mth(leaves)
    async with deps.db.sessions() as s:
        both = await transparency.consistency(s, 20, 40)
    old, new = consistent_roots(
        20, 40, [bytes.fromhex(h) for h in both.proof], bytes.fromhex(both.first.root)
    )
    assert (old, new) == (mth(leaves[:20]), mth(leaves))
    assert (await check(deps)).ok


async def test_an_altered_interior_node_is_refused_and_named(deps: Deps) -> None:
    await add(deps, 40)
    await log_now(deps)
    async with rogue(deps.db) as s:
        if deps.db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE tree_node DISABLE TRIGGER USER"))
        else:
            await s.execute(text("DROP TRIGGER IF EXISTS tree_node_no_update"))
        await s.execute(
            update(TreeNode).where(TreeNode.level == 4, TreeNode.idx == 0).values(hash="ab" * 32)  # type: ignore[arg-type]
        )
    # The server checks a proof against the head before giving it out: none is given.
    with pytest.raises(transparency.LogDamaged, match="do not give head 40"):
        await proved(deps, 20)
    assert await proved(deps, 3)  # one that does not go through it is still good
    assert (await check(deps)).problems == [
        "interior node (level 4, leaves #0..#15): does not match its leaves (altered): "
        "proofs through it would not verify"
    ]


async def test_a_rotated_key_keeps_the_old_heads_checkable(deps: Deps) -> None:
    """The court rotates its key (MST_SIGNING_KEY new, the old public key in
    MST_PAST_SIGNING_KEYS): heads signed before verify with the old key, later ones with
    the new, and the log stays one tree. A key not listed is still refused."""
    await add(deps, 5)
    first = await log_now(deps)  # signed with KEY
    new = transparency.Signer.from_private_bytes(OTHER_KEY, (public_of(KEY),))
    await add(deps, 4)
    async with deps.db.transaction() as s:
        await transparency.sequence(s)
        second = await transparency.sign_head(s, new)
    assert first is not None and second is not None
    assert (first.key_id, second.key_id) == (transparency.key_id(public_of(KEY)), new.key_id)
    async with deps.db.transaction() as s:
        ok = await transparency.check_log(s, new.public_key, past_keys=new.past_keys)
        _, merged = await transparency.verify_full(s, new.public_key, past_keys=new.past_keys)
        alone = await transparency.check_log(s, new.public_key)  # the old key not listed
        await transparency.record_check(s, first, mode="full", events=5)
        since = await transparency.verify_since(s, new.public_key, past_keys=new.past_keys)
    assert ok.ok and merged.ok and (ok.leaves, ok.heads) == (9, 2), ok.problems
    assert alone.problems[0].startswith("head size 5: signed by another key")
    assert since is not None and since.ok and since.leaves == 4, since.problems
    assert new.keys() == {
        new.key_id: public_of(OTHER_KEY),
        transparency.key_id(public_of(KEY)): public_of(KEY),
    }


def test_past_keys_are_read_from_the_environment(tmp_path: Path) -> None:
    old = base64.b64encode(public_of(KEY)).decode()
    env = {
        "MST_DATA_DIR": str(tmp_path),
        "MST_SIGNING_KEY": base64.b64encode(OTHER_KEY).decode(),
        "MST_PAST_SIGNING_KEYS": f" {old} ,",
    }
    assert load_settings(env).past_signing_keys == (public_of(KEY),)
    with pytest.raises(ConfigError, match="MST_PAST_SIGNING_KEYS"):
        load_settings({**env, "MST_PAST_SIGNING_KEYS": "bm90IGEga2V5"})


# -- bad input gets 400, an unknown head 404, never a 5xx ------------------------------------


async def test_bad_and_unknown_requests(world: World) -> None:
    w = world
    assert (await get_json(w, "/transparency/head", 404))["error"]
    assert "head" in (await get_json(w, "/transparency/proof/inclusion?leaf=0", 404))["error"]
    await add(w.deps, 4)
    await jobs.transparency_log(w.deps)
    size = (await get_json(w, "/transparency/head"))["size"]
    waiting = (await add(w.deps, 1))[0]
    cases = {
        "/transparency/head/abc": 400,
        "/transparency/head/-1": 400,
        "/transparency/head/1.5": 400,
        "/transparency/head/" + "9" * 30: 400,
        "/transparency/head/%EF%BC%91": 400,  # a full-width digit
        f"/transparency/head/{size + 1}": 404,
        "/transparency/head/0": 404,
        "/transparency/proof/inclusion": 400,
        "/transparency/proof/inclusion?leaf=": 400,
        "/transparency/proof/inclusion?leaf=x": 400,
        "/transparency/proof/inclusion?leaf=-1": 400,
        "/transparency/proof/inclusion?leaf=1e3": 400,
        "/transparency/proof/inclusion?leaf=0&event=1": 400,
        f"/transparency/proof/inclusion?leaf={size}": 400,
        f"/transparency/proof/inclusion?leaf=0&size={size + 7}": 404,
        "/transparency/proof/inclusion?leaf=0&size=abc": 400,
        "/transparency/proof/inclusion?event=0": 404,
        "/transparency/proof/inclusion?event=2147483647": 404,
        "/transparency/proof/inclusion?event=2147483648": 400,
        f"/transparency/proof/inclusion?event={waiting}": 404,  # not in the log yet
        "/transparency/proof/consistency": 400,
        "/transparency/proof/consistency?from=x": 400,
        f"/transparency/proof/consistency?from={size}&to={size - 1}": 400,
        f"/transparency/proof/consistency?from={size}&to=" + "9" * 40: 400,
        "/transparency/proof/consistency?from=1": 404,
        f"/transparency/proof/consistency?from={size}&to={size + 3}": 404,
    }
    for path, status in cases.items():
        body = await get_json(w, path, status)
        assert isinstance(body["error"], str) and 0 < len(body["error"]) < 120, (path, body)
    assert (await get_json(w, f"/transparency/proof/consistency?from={size}&to={size}"))[
        "proof"
    ] == []
    w.deps.rules = replace(w.deps.rules, signer=None)
    assert (await get_json(w, "/transparency/key", 404))["error"]


# -- the key, and `mst audit publish` --------------------------------------------------------


def test_the_signing_key_is_kept_in_the_data_dir_or_read_from_the_environment(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = load_settings({"MST_DATA_DIR": str(data)}, env_file=None)
    path = data / SIGNING_KEY_FILE_NAME
    assert first.signing_key is not None and len(first.signing_key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == first.signing_key
    again = load_settings({"MST_DATA_DIR": str(data)}, env_file=None)
    assert again.signing_key == first.signing_key
    assert [p.name for p in data.iterdir() if p.name.startswith(SIGNING_KEY_FILE_NAME)] == [
        SIGNING_KEY_FILE_NAME
    ]  # no temporary file left behind

    given = load_settings(
        {
            "MST_DATA_DIR": str(tmp_path / "other"),
            "MST_SIGNING_KEY": base64.b64encode(KEY).decode(),
        },
        env_file=None,
    )
    assert given.signing_key == KEY
    assert not (tmp_path / "other" / SIGNING_KEY_FILE_NAME).exists()
    for bad in (
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(KEY * 2).decode(),
    ):
        with pytest.raises(ConfigError, match="^MST_SIGNING_KEY must be"):
            load_settings({"MST_DATA_DIR": str(tmp_path), "MST_SIGNING_KEY": bad}, env_file=None)
    path.write_text("garbage\n")
    with pytest.raises(ConfigError, match="MST_SIGNING_KEY not set, and .*mst_signing_key must"):
        load_settings({"MST_DATA_DIR": str(data)}, env_file=None)


async def test_mst_audit_publish(deps: Deps, cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "MST_SIGNING_KEY": base64.b64encode(KEY).decode()}
    run = await mst_in_process(env, tmp_path, "audit", "publish")
    assert run.code == 1 and "审计日志还是空的" in run.err and run.out == ""
    await add(deps, 5)
    await log_now(deps)
    await add(deps, 7)  # not in the log yet: publish puts them in and signs first

    run = await mst_in_process(env, tmp_path, "audit", "publish")
    assert run.code == 0, run.err
    async with deps.db.sessions() as s:
        head = await transparency.latest_head(s)
    assert head is not None and head.size == 12
    key_id = hashlib.sha256(public_of(KEY)).hexdigest()[:16]
    when = to_court(head.signed_at).strftime("%Y-%m-%d %H:%M")
    line = (
        f"码上通 审计日志 {when} 共 12 条 根 {head.root[:8]}…{head.root[-8:]} "
        f"签名 {head.signature[:8]}…{head.signature[-4:]}（公钥编号 {key_id}）"
    )
    assert run.out == line + "\n"
    assert line.isprintable() and len(line) < 100

    run = await mst_in_process(env, tmp_path, "audit", "publish", "--json", "--by", "书记员李")
    assert run.code == 0, run.err
    said = json.loads(run.out)
    assert said["line"] == line and said["published_by"] == "书记员李"
    async with deps.db.sessions() as s:  # each publish recorded: what receipts' pages name
        posted = await transparency.published(s)
    assert [(p.size, p.root, p.by) for p in posted][:2] == [
        (12, head.root, "书记员李"),
        (12, head.root, getpass.getuser()),
    ]
    assert (said["size"], said["root"], said["signature"], said["key_id"]) == (
        12,
        head.root,
        head.signature,
        key_id,
    )
    assert base64.b64decode(said["public_key"]) == public_of(KEY)
    check_head(said, public_of(KEY))
    assert mth(leaves_of(await in_log(deps))).hex() == said["root"]

    # Without MST_SIGNING_KEY the command keeps a key of its own: not the one that signed.
    run = await mst_in_process(cli_env, tmp_path, "audit", "publish", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["public_key"] is None
    assert stat.S_IMODE((tmp_path / SIGNING_KEY_FILE_NAME).stat().st_mode) == 0o600
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=\n", (tmp_path / SIGNING_KEY_FILE_NAME).read_text())


async def test_publish_refuses_a_log_that_no_longer_extends_what_it_posted(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "MST_SIGNING_KEY": base64.b64encode(KEY).decode()}
    await add(deps, 5)
    assert (await mst_in_process(env, tmp_path, "audit", "publish")).code == 0
    await add(deps, 3)
    assert (await mst_in_process(env, tmp_path, "audit", "publish")).code == 0  # extends it
    await add(deps, 1)
    await log_now(deps)  # a head of 9, not posted
    # The posted head of 8 leaves replaced by another history's (a rogue edit).
    async with rogue(deps.db) as s:
        await s.execute(update(TreeHead).where(TreeHead.size == 8).values(root="cd" * 32))  # type: ignore[arg-type]
    run = await mst_in_process(env, tmp_path, "audit", "publish")
    assert run.code == 1 and run.out == ""
    assert "与上次公布的树头（8 条）对不上，不能公布" in run.err
    async with deps.db.sessions() as s:
        assert [p.size for p in await transparency.published(s)] == [8, 5]


async def test_another_court_witnesses_the_log_and_catches_a_fork(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Court B runs `mst audit witness <court A>`: the head's signature with A's key pinned
    at first use, and each new head consistent with the last one it saw (over HTTP)."""
    w = world
    base = str(w.client.make_url("")).rstrip("/")
    await add(w.deps, 5)
    n = await jobs.transparency_log(w.deps)  # the world's own events, and these five
    witness_dir = tmp_path / "court-b"
    witness_dir.mkdir()
    (tmp_path / "court-c").mkdir()
    env = {**cli_env, "MST_DATA_DIR": str(witness_dir)}
    first = await mst_in_process(env, witness_dir, "audit", "witness", base)
    assert first.code == 0, first.err
    assert first.out.startswith(f"已见证 {base} 的审计日志：{n} 条") and "首次见证" in first.out

    await add(w.deps, 4)
    await jobs.transparency_log(w.deps)
    second = await mst_in_process(env, witness_dir, "audit", "witness", base, "--json")
    assert second.code == 0, second.err
    said = json.loads(second.out)
    assert (said["from_size"], said["size"]) == (n, n + 4)
    assert said["public_key"] == base64.b64encode(public_of(KEY)).decode()

    # What B saw last was another history (A showed B a different head of that size): a fork.
    [kept] = list((witness_dir / ".mst_witness").iterdir())
    seen = json.loads(kept.read_text())
    kept.write_text(json.dumps({**seen, "root": "ab" * 32}))
    await add(w.deps, 2)
    await jobs.transparency_log(w.deps)
    forked = await mst_in_process(env, witness_dir, "audit", "witness", base)
    assert (
        forked.code == 1 and "分叉" in forked.err and f"上次见证的树头（{n + 4} 条）" in forked.err
    )
    evidence = json.loads(forked.err.splitlines()[1])
    assert evidence["seen"]["root"] == "ab" * 32 and evidence["now"]["size"] == n + 6

    # A key other than the pinned one is refused; so is a head it did not sign.
    other = base64.b64encode(public_of(OTHER_KEY)).decode()
    wrong = await mst_in_process(env, witness_dir, "audit", "witness", base, "--key", other)
    assert wrong.code == 1 and "not the one pinned" in wrong.err
    fresh = {**cli_env, "MST_DATA_DIR": str(tmp_path / "court-c")}
    run = await mst_in_process(
        fresh, tmp_path / "court-c", "audit", "witness", base, "--key", other
    )
    assert run.code == 1 and "does not check" in run.err
    unreachable = await mst_in_process(fresh, tmp_path, "audit", "witness", "http://127.0.0.1:9")
    assert unreachable.code == 1 and "cannot reach it" in unreachable.err
