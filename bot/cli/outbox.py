"""Notices waiting or failed: `mst outbox [retry]`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    s = sub.add_parser("outbox", help="notices waiting or failed; `retry` sends failed ones again")
    s.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    s.add_argument("ids", nargs="*", type=int, help="retry: only these rows (default: all failed)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=outbox_command)


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core.clock import now, say_time, say_waited
    from bot.core.masking import mask_text
    from bot.outbox import delivery
    from bot.outbox import queue as outbox

    async def go(db: Any) -> int:
        if args.action == "retry":
            n = await delivery.requeue_failed(db, args.ids or None, actor="cli")
            if args.json:
                print(json.dumps({"requeued": n}))
            else:
                print(f"已重新排队 {n} 条失败的通知，后台会马上发送。" if n else "没有失败的通知。")
            return 0
        async with db.sessions() as session:
            r = await outbox.report(session)
        if args.json:
            print(
                json.dumps(
                    {
                        "counts": r.counts,
                        "oldest_waiting_s": (
                            int((now() - r.oldest_waiting).total_seconds())
                            if r.oldest_waiting
                            else None
                        ),
                        "failed": [
                            {
                                "id": row.id,
                                "recipient": row.recipient,
                                "case_id": row.case_id,
                                "ticket_id": row.ticket_id,
                                "error": row.last_error,
                                "created_at": row.created_at.isoformat(),
                            }
                            for row in r.failed
                        ],
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        names = {"pending": "待发送", "sending": "发送中", "sent": "已发送", "failed": "失败"}
        print(
            "通知：" + "，".join(f"{names.get(k, k)} {v} 条" for k, v in sorted(r.counts.items()))
        )
        if r.oldest_waiting:
            print(f"最早一条待发送的通知已等 {say_waited(r.oldest_waiting)}")
        for row in r.failed:
            what = mask_text(_words(json.loads(row.payload)))[:30]
            print(f"  失败 {row.id}：{say_time(row.created_at)}  {row.last_error}  “{what}”")
        if r.failed:
            print("要重新发送，请运行：mst outbox retry（或 mst outbox retry 编号）")
        return 0

    return await _with_db(settings, go)


def _words(payload: dict[str, Any]) -> str:
    """A row's text as it was (or is to be) sent; a notice this version cannot word, by
    its kind."""
    from bot.core.notice import Unreadable
    from handlers.notices import letter_text

    try:
        return letter_text(payload)[1]
    except Unreadable:
        return str(payload.get("notice_kind", ""))
