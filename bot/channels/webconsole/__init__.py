"""The staff web console (/console): court staff sign in with a password (and optionally a
TOTP code), read their inbox, open an item's thread and history, and answer, close, claim,
transfer or escalate it through the same rules as the chat (`pages.py`); leaders read the court's
figures on the dashboard (`dashboard.py`), the high court every court's side by side
(`province.py`); the service desk acts for people who
come in person (`desk.py`). `setup(app)` adds both to the app."""

from aiohttp import web

from bot.channels.webconsole import dashboard, desk, pages, province, wecom_signin


def setup(app: web.Application) -> None:
    """The console and its dashboard on `app`; a second call changes nothing."""
    if app.get(pages.READY):
        return
    pages.setup(app)
    dashboard.setup_dashboard(app)
    province.setup_province(app)  # the high court's: every court side by side
    desk.setup_desk(app)
    wecom_signin.setup(app)  # when the court has WeCom (WECOM_*)


__all__ = ["setup"]
