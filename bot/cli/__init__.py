"""`mst`: the command line (CONTRACT.md lists the commands), one module per group of
commands; each adds its own to the parser."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.app import logs
from bot.app.config import ConfigError, load_settings
from bot.cli import audit, backup, codes, imports, menu, outbox, run, slots, staff, stats, tickets
from bot.core.masking import setup_logging

GROUPS = (run, imports, slots, outbox, stats, codes, staff, tickets, audit, menu, backup)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    setup_logging(level)
    try:
        try:
            settings = load_settings()
        except ConfigError:
            if args.command != "check":
                raise
            # `mst check` names what is wrong in the files and groups it reads itself
            # (bot.app.check); anything else still stops it here.
            from bot.app.check import settings_for_check

            settings = settings_for_check()
        logs.setup(level, settings.log_format)  # LOG_FORMAT, known once settings are read
        if args.command in ("serve", "worker"):
            code = args.run(settings, args)  # these own their event loop
        else:
            code = asyncio.run(args.run(settings, args))
    except ConfigError as exc:
        print(f"mst: configuration error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mst", description="码上通: case codes and a WeChat channel to the court"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add(sub)
    return p
