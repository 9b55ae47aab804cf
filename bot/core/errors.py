"""Errors every layer may raise; here so that no two modules import each other for them."""


class ConfigError(Exception):
    """One wrong or missing setting; the message names it."""
