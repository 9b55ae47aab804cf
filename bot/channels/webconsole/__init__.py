"""The staff web console (/console): court staff sign in with a password (and optionally a
TOTP code), read their inbox, open an item's thread and history, and answer, close, claim or
transfer it through the same rules as the chat. `pages.setup(app)` adds it to the app."""

from bot.channels.webconsole.pages import setup

__all__ = ["setup"]
