"""The H5 pages: what a scanned code's link (`/q/<token>`) opens, server-rendered (Jinja2
through aiohttp-jinja2), every step a plain link or form, so nothing needs JavaScript.

Inside WeChat's browser, web authorisation (snsapi_base) gives the Official Account openid:
the same person as in the chat, with the same cases and lockouts. They verify with the
phone's last four digits, then ask, read their items and answers, follow enforcement and
rate; every write is an app action through the chat's own flows (bot.dialog.forms), every
read is bot.rules.portal, scoped to them. In any other browser: the case's public facts,
how to follow the account, a button into the mini-program, and the court's desk.

A court with an Official Account of its own (MST_COURTS_FILE) signs its people in through
that account: its code's page, `/h5/?court=<slug>` (its menu's link) and its cases' pages
send WeChat its app id, the code comes back to `/h5/oauth/<slug>` and is exchanged with its
secret, and the person is the one its chat knows, `wx:<slug>:<openid>`.
"""
