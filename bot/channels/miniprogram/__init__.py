"""The mini-program (小程序): a JSON API under /api/mp/v1 (`api.py`, its types in
`schemas.py`), and the outbox's way to its users, subscribe messages (`sender.py`).

Sign-in is WeChat's: the app's `wx.login` code goes through jscode2session; the session
token we give back is opaque and kept server-side (bot.rules.app_sessions). Everything a
person does goes through the chat's own flows, as an app action (handlers.actions);
everything they read comes from bot.rules.portal, scoped to them.
"""
