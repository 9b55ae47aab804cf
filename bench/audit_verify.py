"""`mst audit verify`, full against incremental: a log of N events written with the
project's own bulk append (storage.audit.append_many), sequenced and signed, verified whole
(`--full`: every chain, every message and the Merkle tree, in one read), then 1,000 new events verified from the
recorded check (the default).

    python -m bench.audit_verify [--events 100000 | --million] [--messages 0.5] [--new 1000]
                                 [--backend sqlite|pg] [--db FILE [--reuse]]

A share of the events (`--messages`, half by default) are messages: a `message` row and
its `message.in` event (its text's digest), four in five on the `global` chain (users not
bound to a case), as the dialog records them. After the in-process timings, `audit.verify`
of the whole log (chains, anchors, every message) runs again in a process of its own, which
prints its time and peak RSS: what `mst audit verify --full` holds in memory while it walks.
`--db FILE` builds the SQLite log there and keeps it; `--reuse` measures that file again
(only the separate process), e.g. to compare two versions of storage.audit.

The checks are the command's own (storage.audit.verify, transparency.check_log,
transparency.verify_since, record_check), called in-process on one database: SQLite in a
temp dir, or PostgreSQL at bench.common.PG_URL (its public schema dropped and made again).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench import common

KEY = bytes(range(32))
CASES = 10_000  # events spread over this many case chains
CHUNK = 5_000  # events a transaction while building
PROOFS = 20  # of each kind, timed


async def _add(db: object, first: int, n: int, messages: float = 0.0) -> None:
    """Events first..first+n: codes issued on the case chains, and (a `messages` share)
    messages, each its row and its `message.in` event, 4 in 5 on `global`."""
    from sqlalchemy import insert
    from sqlmodel import col

    from storage import audit
    from storage.models import Message

    said = [i for i in range(first, first + n) if messages and (i * messages) % 1 < messages]
    async with db.transaction() as s:  # type: ignore[attr-defined]
        ids: list[int] = []
        if said:
            conn = await s.connection()
            rows = [
                {
                    "direction": "in",
                    "channel": "wechat",
                    "openid": f"oBench{i % 5000}",
                    "msg_type": "text",
                    "content": f"请问案件进展如何？第{i}条",
                }
                for i in said
            ]
            ids = list(
                (
                    await conn.execute(
                        insert(Message).returning(col(Message.id), sort_by_parameter_order=True),
                        rows,
                    )
                ).scalars()
            )
        texts = dict(zip(said, ids, strict=True))
        events = []
        for i in range(first, first + n):
            case_id = (i % CASES + 1) if i not in texts or i % 5 == 0 else None
            if i in texts:
                events.append(
                    {
                        "actor": f"oBench{i % 5000}",
                        "action": "message.in",
                        "subject": f"message:{texts[i]}",
                        "case_id": case_id,
                        "payload": {
                            "type": "text",
                            "sha256": audit.content_digest(f"请问案件进展如何？第{i}条"),
                            "media_sha256": None,
                            "channel": "wechat",
                        },
                    }
                )
            else:
                events.append(
                    {
                        "actor": "system",
                        "action": "code.issued",
                        "subject": f"case:{case_id}",
                        "case_id": case_id,
                        "payload": {"short_code": f"{i:010d}"},
                    }
                )
        await audit.append_many(s, events)


# Run in a process of its own (python -c), so that its peak RSS is the verify's alone.
_VERIFY_CHILD = """
import asyncio, json, resource, sys, time
from storage import audit
from storage import db as database

async def main(url):
    db = database.connect(url)
    try:
        t0 = time.perf_counter()
        async with db.sessions() as s:
            v = await audit.verify(s)
        wall = time.perf_counter() - t0
    finally:
        await db.dispose()
    print(json.dumps({"s": wall, "ok": v.ok, "events": v.events, "messages": v.messages,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

asyncio.run(main(sys.argv[1]))
"""


def verify_apart(url: str) -> dict[str, float | int | bool]:
    """audit.verify of the whole log in a fresh interpreter: its time and peak RSS."""
    import json
    import os
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="mst-bench-verify-child-") as cwd:
        out = subprocess.run(
            [sys.executable, "-c", _VERIFY_CHILD, url],
            cwd=cwd,  # not the repository: PYTHONPATH may name another storage package
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=3600,
            check=True,
        ).stdout
    result: dict[str, float | int | bool] = json.loads(out.strip().splitlines()[-1])
    return result


async def _sequence_and_sign(db: object, signer: object) -> None:
    from storage import transparency

    while True:
        async with db.transaction() as s:  # type: ignore[attr-defined]
            placed = await transparency.sequence(s, limit=100_000)
            await transparency.sign_head(s, signer)  # type: ignore[arg-type]
        if len(placed) < 100_000:
            return


async def run(
    url: str, events: int, new: int, messages: float = 0.0
) -> dict[str, float | int | bool]:
    from sqlalchemy import select

    from storage import audit, transparency
    from storage import db as database
    from storage.models import TreeHead

    signer = transparency.Signer.from_private_bytes(KEY)
    db = database.connect(url)
    out: dict[str, float | int | bool] = {"events": events, "new": new}
    try:
        await database.migrate(db)
        t0 = time.perf_counter()
        for first in range(0, events, CHUNK):
            await _add(db, first, min(CHUNK, events - first), messages)
        out["append_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        await _sequence_and_sign(db, signer)
        out["sequence_sign_s"] = time.perf_counter() - t1
        out["build_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        async with db.transaction() as s:
            verdict, logv = await transparency.verify_full(s, signer.public_key)
            head = await transparency.latest_head(s)
            await transparency.record_check(s, head, mode="full", events=verdict.events)
        out["full_s"] = time.perf_counter() - t0
        out["full_ok"] = verdict.ok and logv.ok and verdict.events == events == logv.leaves
        out["messages"] = verdict.messages
        # The two reads verify_full saves, timed for comparison: the walk alone, then
        # check_log reading and hashing the leaves again on its own.
        t0 = time.perf_counter()
        async with db.sessions() as s:
            await audit.verify(s)
            out["walk_only_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            await transparency.check_log(s, signer.public_key)
            out["check_log_only_s"] = time.perf_counter() - t1

        # Proofs at this size: O(log n) stored nodes each, whatever the size.
        async with db.sessions() as s:
            head = await transparency.latest_head(s)
            assert head is not None
            t0 = time.perf_counter()
            for i in range(PROOFS):
                await transparency.inclusion(s, leaf_index=i * (head.size // PROOFS))
            out["inclusion_ms"] = (time.perf_counter() - t0) * 1000 / PROOFS
            t0 = time.perf_counter()
            older = list((await s.execute(select(TreeHead.size))).scalars())[:-1]
            for size in older[:PROOFS]:
                await transparency.consistency(s, size)
            out["consistency_ms"] = (time.perf_counter() - t0) * 1000 / max(1, len(older[:PROOFS]))

        await _add(db, events, new)
        t0 = time.perf_counter()
        await _sequence_and_sign(db, signer)  # what `mst audit verify` does first
        out["incr_sign_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        async with db.transaction() as s:
            inc = await transparency.verify_since(s, signer.public_key)
            assert inc is not None
            await transparency.record_check(s, inc.head, mode="incremental", events=new)
        out["incr_verify_s"] = time.perf_counter() - t1
        out["incr_s"] = time.perf_counter() - t0
        out["incr_ok"] = inc.ok and inc.verdict.events == new and inc.leaves == new
    finally:
        await db.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.audit_verify", description=__doc__.split("\n")[0]
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--million", action="store_true", help="1,000,000 events (~20 min)")
    p.add_argument("--messages", type=float, default=0.5, help="share of events that are messages")
    p.add_argument("--new", type=int, default=1_000)
    p.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    p.add_argument("--db", type=Path, help="SQLite: build the log in this file and keep it")
    p.add_argument("--reuse", action="store_true", help="measure the --db (or pg) log again")
    args = p.parse_args(argv)
    if args.million:
        args.events = 1_000_000
    with tempfile.TemporaryDirectory(prefix="mst-bench-verify-") as tmp:
        if args.backend == "pg":
            url = common.PG_URL
            if not args.reuse:
                common.reset_pg(common.PG_URL)
        else:
            db_file = args.db or Path(tmp) / "verify.db"
            if not args.reuse and db_file.exists():
                raise SystemExit(f"bench: {db_file} exists; --reuse to measure it again")
            url = f"sqlite+aiosqlite:///{db_file}"
        if args.reuse:
            apart = verify_apart(url)
            print(
                f"audit verify, {args.backend}, in a process of its own: {apart['events']:,} "
                f"events, {apart['messages']:,} messages: {apart['s']:.1f} s, peak RSS "
                f"{apart['peak_mb']:.0f} MB  {'ok' if apart['ok'] else 'FAILED'}"
            )
            return
        r = asyncio.run(run(url, args.events, args.new, args.messages))
        apart = verify_apart(url)
    n = r["events"]
    print(
        f"audit verify, {args.backend}: {n:,} events over {CASES:,} case chains and global, "
        f"{r['messages']:,} of them messages"
    )
    print(
        f"  build       {r['build_s']:8.1f} s  (append {r['append_s']:.1f} s = "
        f"{n / r['append_s']:,.0f} events/s; sequence+sign {r['sequence_sign_s']:.1f} s)"
    )
    print(
        f"  full        {r['full_s']:8.1f} s  = {n / r['full_s']:,.0f} events/s, one read "
        f"(apart: chains+messages {r['walk_only_s']:.1f} s, check_log alone "
        f"{r['check_log_only_s']:.1f} s)  {'ok' if r['full_ok'] else 'FAILED'}"
    )
    print(
        f"  proofs      inclusion {r['inclusion_ms']:.1f} ms, consistency "
        f"{r['consistency_ms']:.1f} ms (mean of {PROOFS}, at {n:,} leaves)"
    )
    print(
        f"  incremental {r['incr_s']:8.3f} s  after {r['new']:,} new events "
        f"(sequence+sign {r['incr_sign_s']:.3f} s, verify {r['incr_verify_s']:.3f} s) "
        f"= {r['new'] / r['incr_s']:,.0f} events/s  {'ok' if r['incr_ok'] else 'FAILED'}"
    )
    print(
        f"  apart       {apart['s']:8.1f} s  audit.verify of the whole log in a process of its "
        f"own: peak RSS {apart['peak_mb']:.0f} MB  {'ok' if apart['ok'] else 'FAILED'}"
    )
    if n < 1_000_000:
        print(
            f"  projection at 1,000,000: full ≈ {r['full_s'] * 1_000_000 / n:.0f} s "
            f"(linear); incremental unchanged (it reads the new events only)"
        )


if __name__ == "__main__":
    main()
