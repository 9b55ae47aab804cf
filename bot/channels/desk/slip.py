"""The slip the desk prints for a person helped there (`/slip/<ticket>?e=&s=`): what was
submitted, its number, who answers by when, the answers so far, the court's phone, and a
QR code of the receipt's check page (bot.rules.receipts). Large type, one A4 or A5 page on
an ordinary office printer (print CSS). The link is signed and lives a day: it is made by
the console's desk page for staff, never guessed."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2
from aiohttp import web

from bot.channels import pages as shared
from bot.core.clock import say_time
from bot.core.masking import mask_name
from bot.dialog.deps import DEPS
from bot.rules import desk, receipts
from handlers import texts
from qr import render

HERE = Path(__file__).resolve().parent
STYLE = shared.StyleSheet.load(HERE / "static" / "slip.css", "/slip/static/slip.css")
_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
MAX_ID = 2**63 - 1


def _page(template: str, code: int = 200, **context: object) -> web.Response:
    body = _PAGES.get_template(template).render(css=STYLE.url, **context)
    return web.Response(
        text=body, content_type="text/html", status=code, headers={"Cache-Control": "no-store"}
    )


async def slip_page(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    raw = request.match_info["ticket"]
    ok = raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID
    if not ok or not desk.slip_valid(
        deps.settings.secret_key, int(raw), request.query.get("e", ""), request.query.get("s", "")
    ):
        return _page("gone.html", 403)
    async with deps.db.sessions() as session:
        found = await desk.slip(session, int(raw))
    if found is None:
        return _page("gone.html", 403)
    receipt = receipts.url(deps.settings.public_base_url, found.receipt) if found.receipt else None
    qr = base64.b64encode(render.svg(receipt)).decode() if receipt else None
    t = found.ticket
    return _page(
        "slip.html",
        court=found.court.name,
        phone=found.court.phone or "",
        desk=texts.desk(found.court),
        case_number=found.case.case_number,
        party=f"{found.party.role} {mask_name(found.party.name)}" if found.party else "",
        kind=texts.kind_name(t.kind),
        number=t.id,
        status=texts.status_name(t.status),
        at=say_time(t.created_at),
        holder=texts.holder_words(t, found.holder),
        due=texts.due_words(t) if t.status == "open" else None,
        helper=texts.SUBMITTED_BY_STAFF.format(name=found.helper) if found.helper else None,
        said=[
            {
                "mine": m.direction == "in",
                "at": say_time(m.created_at),
                "text": m.content or texts.unsaid(m.msg_type),
            }
            for m in found.said
        ],
        receipt=receipt,
        qr=qr,
    )


_secure_headers = shared.locked_down(lambda path: path.startswith("/slip/"), referrer="no-referrer")


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(_secure_headers)
    app.router.add_get(STYLE.path, STYLE.serve)
    app.router.add_get("/slip/{ticket}", slip_page)
