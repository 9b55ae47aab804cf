"""Case codes: `mst qr` (one case) and `mst qr-sheet` (an A4 PDF of many)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from bot.app.config import Settings
from bot.cli.common import _day, _find_case, _no_file, _warn_if_local, _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    s = sub.add_parser("qr", help="a case's code: token, short code, URL, image")
    s.add_argument("case_number")
    s.add_argument("--json", action="store_true")
    s.add_argument("--png", type=Path)
    s.add_argument("--svg", type=Path)
    s.add_argument(
        "--reissue", action="store_true", help="revoke the current code and issue a new one"
    )
    s.add_argument("--revoke", action="store_true", help="revoke the current code")
    s.add_argument("--reason", default="")
    s.add_argument(
        "--scene",
        action="store_true",
        help="also ask WeChat for the account's own QR for this case: a scan opens the chat",
    )
    s.add_argument(
        "--miniprogram",
        type=Path,
        metavar="FILE",
        help="also save the mini-program code (小程序码) for this case as a PNG",
    )
    s.set_defaults(run=qr)
    from qr.sheet import LAYOUTS as label_layouts  # the module loads reportlab only to write

    s = sub.add_parser(
        "qr-sheet", help="an A4 PDF of many cases' codes to print and cut (issues missing codes)"
    )
    s.add_argument("case_numbers", nargs="*", metavar="CASE_NUMBER", help="cases to print")
    s.add_argument(
        "--cases-file", type=Path, help="one case number per line (UTF-8, or GBK as Windows saves)"
    )
    s.add_argument("--filed-from", type=_day, help="cases filed on or after, e.g. 2026-11-01")
    s.add_argument("--filed-to", type=_day, help="cases filed on or before (included)")
    s.add_argument("--court", help="only this court's cases (court name)")
    s.add_argument("--out", type=Path, required=True, help="the PDF to write")
    s.add_argument(
        "--layout",
        choices=list(label_layouts),
        default="2x4",
        help="labels per page: columns x rows (3x4: smaller type)",
    )
    s.add_argument(
        "--json", action="store_true", help="counts, unknown case numbers and every code"
    )
    s.set_defaults(run=qr_sheet)


async def qr(settings: Settings, args: argparse.Namespace) -> int:
    from qr import codes

    if args.miniprogram is not None:
        # Before anything is issued: without the mini-program there is nothing to ask for.
        if not settings.miniprogram.enabled:
            print("mst: 未设置 MP_APP_ID / MP_APP_SECRET，无法生成小程序码", file=sys.stderr)
            return 1
        if not args.miniprogram.parent.is_dir():
            print(f"mst: cannot write {args.miniprogram}: no such directory", file=sys.stderr)
            return 1
    _warn_if_local(settings)

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            if args.revoke:
                gone = await codes.revoke(
                    session, case, reason=args.reason or "revoked by admin", actor="admin"
                )
                if args.json:
                    print(json.dumps({"case_number": case.case_number, "revoked": bool(gone)}))
                else:
                    print("二维码已停用。" if gone else "这个案件没有在用的二维码。")
                return 0
            code = await codes.active_code(session, case.id or 0)
            if code is None or args.reissue:
                code = await codes.issue(session, case, actor="admin")
        url = codes.url_for(settings.public_base_url, code.token)
        scene: dict[str, Any] = {}
        if args.scene:
            try:
                scene = await _scene_qr(settings, code.token)
            except Exception as exc:  # WeChat refused or unreachable: one line, not a traceback
                print(f"mst: 微信没有生成带参数二维码：{exc}", file=sys.stderr)
                return 1
            url = scene["scene_url"]  # the image encodes WeChat's own code
        if args.miniprogram is not None:
            try:
                image = await _miniprogram_code(settings, code.short_code)
            except Exception as exc:  # WeChat refused or unreachable: one line, not a traceback
                print(f"mst: 微信没有生成小程序码：{exc}", file=sys.stderr)
                return 1
            args.miniprogram.write_bytes(image)
            scene["miniprogram_image"] = str(args.miniprogram)
        if args.png or args.svg:
            from qr import render  # qrcode and its image code: only when an image is asked for
        if args.png:
            args.png.write_bytes(render.png(url))
        if args.svg:
            args.svg.write_bytes(render.svg(url))
        info = {
            "case_number": case.case_number,
            "token": code.token,
            "short_code": code.short_code,
            "url": codes.url_for(settings.public_base_url, code.token),
            **scene,
        }
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        else:
            if "scene_url" in scene:
                print(
                    f"{case.case_number}\n  案件码：{code.short_code[:5]}-{code.short_code[5:]}"
                    f"\n  微信扫码直达：{scene['scene_url']}"
                )
            else:
                print(
                    f"{case.case_number}\n  case code: {code.short_code[:5]}-{code.short_code[5:]}\n  url: {url}"
                )
            if "miniprogram_image" in scene:
                print(f"  小程序码：{scene['miniprogram_image']}")
        return 0

    return await _with_db(settings, go)


async def _scene_qr(settings: Settings, token: str) -> dict[str, str]:
    """WeChat's own QR for the case (/cgi-bin/qrcode/create, scene = the case's token)."""
    from urllib.parse import quote

    from bot.app.factory import open_api
    from storage import state

    redis = state.connect(settings.redis_url)
    api = open_api(settings, redis)
    api.stable = True
    try:
        made = await api.scene_qr(token)
    finally:
        await api.http.close()
        await redis.aclose()
    return {
        "scene_url": str(made["url"]),
        "scene_image": "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
        + quote(str(made["ticket"])),
    }


async def _miniprogram_code(settings: Settings, short_code: str) -> bytes:
    """The mini-program code (/wxa/getwxacodeunlimit) that opens the case's page, the
    short code as its scene. Asked with the mini-program's own credentials and the stable
    token, which leaves the running server's token valid."""
    import aiohttp

    from bot.channels.wechat.api import WeChatAPI
    from storage import state

    mp = settings.miniprogram
    if not (mp.app_id and mp.app_secret):  # the caller checked; this narrows the types
        raise ValueError("MP_APP_ID / MP_APP_SECRET not set")
    redis = state.connect(settings.redis_url)
    api = WeChatAPI(
        http=aiohttp.ClientSession(),
        redis=redis,
        base=settings.wechat.api_base,
        app_id=mp.app_id,
        app_secret=mp.app_secret,
        stable=True,
    )
    try:
        return await api.wxa_code_unlimited(short_code, mp.page)
    finally:
        await api.http.close()
        await redis.aclose()


def _sheet_numbers(args: argparse.Namespace) -> list[str] | None:
    """The case numbers asked for, in order, each once; None for a filing-date selection."""
    if args.cases_file is None and not args.case_numbers:
        return None
    raw = list(args.case_numbers)
    if args.cases_file is not None:
        data = args.cases_file.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")  # Notepad's "ANSI" on Chinese Windows
        raw += text.splitlines()
    wanted = (n.strip() for n in raw)
    return list(dict.fromkeys(n for n in wanted if n and not n.startswith("#")))


async def qr_sheet(settings: Settings, args: argparse.Namespace) -> int:
    """`mst qr-sheet`: every chosen case's code on labels, the way `mst qr` shows one."""
    from sqlalchemy import and_

    from qr import codes, sheet
    from storage.models import Case, CaseCode, Court

    by_list = bool(args.case_numbers or args.cases_file)
    by_date = args.filed_from is not None or args.filed_to is not None
    if by_list == by_date:
        print(
            "mst: give case numbers (or --cases-file), or --filed-from/--filed-to; not both",
            file=sys.stderr,
        )
        return 2
    if args.filed_from and args.filed_to and args.filed_from > args.filed_to:
        print("mst: --filed-from is after --filed-to", file=sys.stderr)
        return 2
    if args.cases_file is not None and _no_file(args.cases_file):
        return 1
    if not args.out.parent.is_dir():
        print(f"mst: cannot write {args.out}: no such directory", file=sys.stderr)
        return 1
    numbers = _sheet_numbers(args)
    if numbers == []:
        print(f"mst: no case numbers in {args.cases_file}", file=sys.stderr)
        return 1
    _warn_if_local(settings)

    columns = (
        col(Case.id),
        col(Case.case_number),
        col(Court.name),
        col(CaseCode.token),
        col(CaseCode.short_code),
    )
    live = and_(col(CaseCode.case_id) == col(Case.id), col(CaseCode.revoked_at).is_(None))
    base = (
        select(*columns).join(Court, col(Court.id) == col(Case.court_id)).outerjoin(CaseCode, live)
    )

    async def go(db: Any) -> int:
        rows: list[Any] = []
        issued: list[str] = []
        elsewhere: list[str] = []
        unknown: list[str] = []
        async with db.sessions() as session:
            if args.court is not None:
                court_id = (
                    await session.execute(
                        select(col(Court.id)).where(col(Court.name) == args.court)
                    )
                ).scalar_one_or_none()
                if court_id is None:
                    print(f"mst: no court {args.court}", file=sys.stderr)
                    return 1
            if numbers is None:
                query = base.where(col(Case.filed_on).is_not(None))
                if args.filed_from:
                    query = query.where(col(Case.filed_on) >= args.filed_from)
                if args.filed_to:
                    query = query.where(col(Case.filed_on) <= args.filed_to)
                if args.court is not None:
                    query = query.where(col(Case.court_id) == court_id)
                rows = list(
                    (await session.execute(query.order_by(col(Case.filed_on), col(Case.id)))).all()
                )
            else:
                found: dict[str, Any] = {}
                for i in range(0, len(numbers), 500):
                    chunk = numbers[i : i + 500]
                    query = base.where(col(Case.case_number).in_(chunk))
                    found.update((r.case_number, r) for r in await session.execute(query))
                for number in numbers:
                    row = found.get(number)
                    if row is None:
                        unknown.append(number)
                    elif args.court is not None and row.name != args.court:
                        elsewhere.append(number)
                    else:
                        rows.append(row)
        # A case without a live code gets one, as `mst qr` gives it (one written meanwhile
        # by someone else is kept).
        missing = [i for i, row in enumerate(rows) if row.token is None]
        if missing:
            async with db.transaction() as session:
                for i in missing:
                    row = rows[i]
                    code = await codes.active_code(session, row.id)
                    if code is None:
                        case = await session.get(Case, row.id)
                        code = await codes.issue(session, case, actor="admin")
                        issued.append(row.case_number)
                    rows[i] = (row.id, row.case_number, row.name, code.token, code.short_code)
        labels = [
            sheet.Label(court, number, short, codes.url_for(settings.public_base_url, token))
            for _, number, court, token, short in rows
        ]
        pages = sheet.write(labels, args.out, layout=args.layout) if labels else 0
        per_page = sheet.per_page(args.layout)
        if args.json:
            info = {
                "file": str(args.out) if labels else None,
                "cases": len(labels),
                "pages": pages,
                "layout": args.layout,
                "issued": issued,
                "unknown": unknown,
                "other_court": elsewhere,
                "codes": [
                    {
                        "case_number": label.case_number,
                        "court": label.court,
                        "token": token,
                        "short_code": label.short_code,
                        "url": label.url,
                        "page": i // per_page + 1,
                    }
                    for i, (label, (_, _, _, token, _)) in enumerate(zip(labels, rows, strict=True))
                ],
            }
            print(json.dumps(info, ensure_ascii=False))
        else:
            if unknown:
                print(f"mst: 以下 {len(unknown)} 个案号查无此案，未打印：", file=sys.stderr)
                for number in unknown:
                    print(f"  {number}", file=sys.stderr)
            if elsewhere:
                print(
                    f"mst: 以下 {len(elsewhere)} 个案件不属于{args.court}，未打印：",
                    file=sys.stderr,
                )
                for number in elsewhere:
                    print(f"  {number}", file=sys.stderr)
            if labels:
                print(f"已生成 {len(labels)} 个案件的二维码，共 {pages} 页：{args.out}")
                if issued:
                    print(f"其中 {len(issued)} 个案件原先没有二维码，已新发")
            else:
                print("mst: 没有可打印的案件，未生成文件", file=sys.stderr)
        return 0 if labels else 1

    return await _with_db(settings, go)
