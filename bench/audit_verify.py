"""`mst audit verify`, full against incremental: a log of N events written with the
project's own bulk append (storage.audit.append_many), sequenced and signed, verified whole
(`--full`: every chain, every message and the Merkle tree, in one read), then 1,000 new events verified from the
recorded check (the default).

    python -m bench.audit_verify [--events 1000000] [--new 1000] [--backend sqlite|pg]

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


async def _add(db: object, first: int, n: int) -> None:
    from storage import audit

    async with db.transaction() as s:  # type: ignore[attr-defined]
        await audit.append_many(
            s,
            [
                {
                    "actor": "system",
                    "action": "code.issued",
                    "subject": f"case:{(first + i) % CASES + 1}",
                    "case_id": (first + i) % CASES + 1,
                    "payload": {"short_code": f"{first + i:010d}"},
                }
                for i in range(n)
            ],
        )


async def _sequence_and_sign(db: object, signer: object) -> None:
    from storage import transparency

    while True:
        async with db.transaction() as s:  # type: ignore[attr-defined]
            placed = await transparency.sequence(s, limit=100_000)
            await transparency.sign_head(s, signer)  # type: ignore[arg-type]
        if len(placed) < 100_000:
            return


async def run(url: str, events: int, new: int) -> dict[str, float | int | bool]:
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
            await _add(db, first, min(CHUNK, events - first))
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
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--new", type=int, default=1_000)
    p.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mst-bench-verify-") as tmp:
        if args.backend == "pg":
            common.reset_pg(common.PG_URL)
            url = common.PG_URL
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'verify.db'}"
        r = asyncio.run(run(url, args.events, args.new))
    n = r["events"]
    print(f"audit verify, {args.backend}: {n:,} events over {CASES:,} case chains")
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
    if n < 1_000_000:
        print(
            f"  projection at 1,000,000: full ≈ {r['full_s'] * 1_000_000 / n:.0f} s "
            f"(linear); incremental unchanged (it reads the new events only)"
        )


if __name__ == "__main__":
    main()
