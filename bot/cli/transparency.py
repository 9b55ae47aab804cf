"""The transparency log: `mst audit publish` (registered in the `audit` group)."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import sys
from typing import Any

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
            if head is not None:  # a receipt's page then names this head as the posted one
                posted = await transparency.record_published(
                    session, head, args.by or getpass.getuser()
                )
        if head is None:
            print("mst: 审计日志还是空的，没有可公布的树头。", file=sys.stderr)
            return 1
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
