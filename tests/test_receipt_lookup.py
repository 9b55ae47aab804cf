"""A receipt is looked up by its hash's index, never by reading the log (issue 20): the
look-up is a range on ix_audit_event_hash, on PostgreSQL (whose btree in a non-C collation
LIKE 'prefix%' cannot use) and on SQLite; `mst audit receipt` checks the record's chain,
not the whole log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bot.dialog.deps import Deps
from storage import audit
from tests.world import mst_in_process


async def _events(deps: Deps, n: int = 60) -> list[audit.AuditEvent]:
    async with deps.db.transaction() as s:
        await audit.append_many(
            s,
            [
                {"actor": "system", "action": "note", "case_id": 1 + i % 3, "payload": {"i": i}}
                for i in range(n)
            ],
        )
    async with deps.db.sessions() as s:
        from sqlalchemy import select

        return list((await s.execute(select(audit.AuditEvent))).scalars())


async def test_a_receipt_is_found_by_its_prefix_whatever_its_last_digit(deps: Deps) -> None:
    events = await _events(deps)
    async with deps.db.sessions() as s:
        for ev in events:
            for n in (8, 16, 63, 64):
                found = await audit.find_receipt(s, ev.hash[:n].upper())
                assert [f.hash for f in found if f.hash == ev.hash] == [ev.hash]
                assert all(f.hash.startswith(ev.hash[:n]) for f in found)
        assert await audit.find_receipt(s, "ffffffffff") == []
        assert await audit.find_receipt(s, "0000000") == []  # too short to look for
        # "…f": the range's end is "…g", after every hash starting "…f".
        hashes = sorted(ev.hash for ev in events)
        last = hashes[-1]
        prefix = last[:8]
        want = [h for h in hashes if h.startswith(prefix)]
        assert sorted(f.hash for f in await audit.find_receipt(s, prefix)) == want


async def test_the_lookup_uses_the_hash_index(deps: Deps) -> None:
    events = await _events(deps)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "audit_event.hash >=" in statement:
            seen.append((statement, parameters))

    event.listen(deps.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with deps.db.sessions() as s:
            assert await audit.find_receipt(s, events[5].hash[:16])
    finally:
        event.remove(deps.db.engine.sync_engine, "before_cursor_execute", record)
    assert len(seen) == 1
    statement, parameters = seen[0]
    async with deps.db.engine.connect() as conn:
        if deps.db.dialect == "postgresql":
            # A table this small is read whole whichever way; with that ruled out, a plan
            # that could not use the index (as LIKE 'prefix%' cannot) would still read it all.
            await conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                r[0] for r in await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "ix_audit_event_hash" in plan and "Seq Scan" not in plan, plan
        else:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "USING INDEX ix_audit_event_hash (hash>? AND hash<?)" in plan, plan


async def test_mst_audit_receipt_checks_the_records_chain_only(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = await _events(deps)
    calls: list[str | None] = []
    verify = audit.verify

    async def counted(session: Any, **kwargs: Any) -> audit.Verdict:
        calls.append(kwargs.get("chain"))
        return await verify(session, **kwargs)

    monkeypatch.setattr(audit, "verify", counted)
    target = events[7]
    run = await mst_in_process(cli_env, tmp_path, "audit", "receipt", target.hash[:16])
    assert run.code == 0, run.err
    assert target.hash in run.out and "intact" in run.out
    assert calls == [target.chain]
