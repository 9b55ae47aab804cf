"""The court's WeCom (企业微信) app, for staff: its wire (`callback.py`: /wecom, WeCom's
signature and AES, the 5-second rule), its API client (`api.py`: one access token shared
through Redis), its sender (`sender.py`: app messages within each member's budget, digests
when it runs low). The console's sign-in with WeCom is the console's own
(bot.channels.webconsole.wecom_signin), using this client. `setup(app)` adds /wecom when
WECOM_* are set; nothing otherwise."""

from aiohttp import web

from bot.channels.wecom import callback


def setup(app: web.Application) -> None:
    callback.setup(app)


__all__ = ["setup"]
