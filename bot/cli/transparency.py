"""The transparency log: `mst audit publish` and `mst audit witness` (registered in the
`audit` group).

publish prints the latest head for the notice board, after checking that it extends the
head posted before (a consistency proof): a posted head is never silently rewritten.
witness is what another court runs against this one: it fetches the latest head over HTTP,
checks its signature with the key it pinned and the consistency proof from the head it saw
last, and keeps that head (a file a court, in its data dir). Two heads that are not
consistent are a fork: it says so and prints both, signed, as evidence."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from bot.app.config import Settings
from bot.cli.common import _with_db


def add_to(audit_commands: Any) -> None:
    """This module's commands on `mst audit`'s subparsers."""
    s = audit_commands.add_parser(
        "publish",
        help="sign a tree head over what is new in the log, then print the latest head as "
        "one line a court can post (date, size, root, signature, key id), and record it as "
        "posted (receipts' pages name it); --json: the full values",
    )
    s.add_argument("--json", action="store_true", help="one JSON object: the full values")
    s.add_argument(
        "--by", metavar="NAME", help="who posts it (recorded with the head; default: the login)"
    )
    s.set_defaults(run=audit_publish)
    s = audit_commands.add_parser(
        "witness",
        help="check another court's log: its latest head signed by its key, and consistent "
        "with the head seen last time (kept in the data dir); exit 1 on a fork",
    )
    s.add_argument("url", help="the other court's address, e.g. https://mst.court-b.example")
    s.add_argument(
        "--key",
        metavar="BASE64",
        help="its public key, as it posted it (default: the one it serves, pinned at first use)",
    )
    s.add_argument("--json", action="store_true", help="one JSON object: what was checked")
    s.set_defaults(run=audit_witness)


def _short(value: str, head: int = 8, tail: int = 8) -> str:
    return f"{value[:head]}…{value[-tail:]}" if len(value) > head + tail else value


def notice_line(head: Any) -> str:
    """The head in one short line for a notice board, in the court's time."""
    from bot.core.clock import to_court

    when = to_court(head.signed_at).strftime("%Y-%m-%d %H:%M")
    return (
        f"码上通 审计日志 {when} 共 {head.size} 条 根 {_short(head.root)} "
        f"签名 {_short(head.signature, 8, 4)}（公钥编号 {head.key_id}）"
    )


async def audit_publish(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app.jobs import extend_log
    from bot.app.transparency import head_json
    from bot.rules import rulebook
    from storage import transparency

    signer = rulebook.of(settings).signer

    async def go(db: Any) -> int:
        if signer is not None:  # what the job has not put in yet goes in first
            try:
                await extend_log(db, signer)
            except transparency.LogDamaged as exc:
                print(f"mst: 审计日志已损坏，不能公布：{exc}", file=sys.stderr)
                return 1
        async with db.transaction() as session:
            head = await transparency.latest_head(session)
            if head is None:
                print("mst: 审计日志还是空的，没有可公布的树头。", file=sys.stderr)
                return 1
            before = await transparency.published(session, limit=1)
            if before:
                # What was posted must still be the log's past: the same root at its size,
                # and the new head proved to extend it (consistency() checks its proof).
                try:
                    then = await transparency.head_at(session, before[0].size)
                    if then is None or then.root != before[0].root:
                        raise transparency.LogDamaged(
                            f"head size {before[0].size} is not the one posted"
                        )
                    await transparency.consistency(session, before[0].size, head.size)
                except transparency.LogDamaged as exc:
                    print(
                        f"mst: 审计日志与上次公布的树头（{before[0].size} 条）对不上，不能公布："
                        f"{exc}。请运行 mst audit verify --full。",
                        file=sys.stderr,
                    )
                    return 1
            # A receipt's page then names this head as the posted one.
            posted = await transparency.record_published(
                session, head, args.by or getpass.getuser()
            )
        line = notice_line(head)
        if not args.json:
            print(line)
            return 0
        ours = signer is not None and signer.key_id == head.key_id
        print(
            json.dumps(
                {
                    **head_json(head),
                    "public_key": base64.b64encode(signer.public_key).decode()
                    if ours and signer is not None
                    else None,
                    "line": line,
                    "published_at": posted.published_at.isoformat(timespec="seconds"),
                    "published_by": posted.by,
                },
                ensure_ascii=False,
            )
        )
        return 0

    return await _with_db(settings, go)


WITNESS_DIR = ".mst_witness"  # in the data dir: one file per court watched


def _witness_file(settings: Settings, url: str) -> Path:
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in url.split("://")[-1])
    return settings.data_dir / WITNESS_DIR / f"{name.strip('_')[:100]}.json"


async def audit_witness(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    from storage import merkle, transparency

    base = args.url.rstrip("/")
    path = _witness_file(settings, base)
    seen: dict[str, Any] = {}
    if path.is_file():
        try:
            seen = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"mst: cannot read {path}: {exc}", file=sys.stderr)
            return 1

    def fail(line: str, evidence: dict[str, Any] | None = None) -> int:
        print(f"mst: {base}: {line}", file=sys.stderr)
        if evidence is not None:
            print(json.dumps(evidence, ensure_ascii=False), file=sys.stderr)
        return 1

    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def get(route: str, **params: int) -> dict[str, Any]:
                async with http.get(base + route, params=params) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200 or not isinstance(body, dict):
                        raise ValueError(f"{route}: HTTP {resp.status} {body}")
                    return body

            key_b64 = (
                args.key or seen.get("public_key") or (await get("/transparency/key"))["public_key"]
            )
            public = base64.b64decode(key_b64, validate=True)
            if seen.get("public_key") and seen["public_key"] != key_b64:
                return fail("the key given is not the one pinned before (a rotation? check it)")
            head = await get("/transparency/head")
            size, root = int(head["size"]), bytes.fromhex(head["root"])
            signed = transparency.head_bytes(size, root, int(head["timestamp"]))
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(
                bytes.fromhex(head["signature"]), signed
            )
            old_size = int(seen.get("size", 0))
            if old_size:
                old_root = bytes.fromhex(seen["root"])
                if size < old_size:
                    return fail(
                        f"它的日志变短了：上次 {old_size} 条，现在 {size} 条（历史被改写）",
                        {"seen": seen, "now": head},
                    )
                proof = (
                    []
                    if size == old_size
                    else (
                        await get("/transparency/proof/consistency", to=size, **{"from": old_size})
                    )["proof"]
                )
                if not merkle.verify_consistency(
                    old_size, size, old_root, root, [bytes.fromhex(p) for p in proof]
                ):
                    return fail(
                        f"分叉：它现在的树头（{size} 条）不是上次见证的树头（{old_size} 条）的延续，"
                        "两个都由它的密钥签名，是它改写历史的证据",
                        {"seen": seen, "now": head, "proof": proof},
                    )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return fail(f"cannot reach it: {exc}")
    except (ValueError, KeyError, TypeError, InvalidSignature) as exc:
        return fail(f"its answer does not check: {exc!r}")
    kept = {
        "url": base,
        "public_key": key_b64,
        "size": size,
        "root": head["root"],
        "timestamp": head["timestamp"],
        "signature": head["signature"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    if args.json:
        print(json.dumps({**kept, "from_size": old_size}, ensure_ascii=False))
    else:
        grown = (
            f"，比上次见证的 {old_size} 条多 {size - old_size} 条，一致"
            if old_size
            else "（首次见证）"
        )
        print(f"已见证 {base} 的审计日志：{size} 条，根 {_short(head['root'])}，签名有效{grown}。")
    return 0
