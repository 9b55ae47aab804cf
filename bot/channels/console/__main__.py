"""`python -m bot.channels.console --as NAME`: chat with the bot at a terminal, on the
database and Redis the settings name (as `mst serve` would). An empty line or end of
input leaves."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.app.config import load_settings
from bot.app.factory import close_deps, open_deps
from bot.channels.console import Console, ConsoleSender


async def main(user: str) -> None:
    deps = await open_deps(load_settings())
    deps.senders[ConsoleSender.channel] = ConsoleSender(sys.stdout)
    console = Console(deps, user, sys.stdout)
    try:
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            await console.say(line)
    finally:
        await close_deps(deps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bot.channels.console")
    parser.add_argument("--as", dest="user", required=True, help="who you are on this channel")
    asyncio.run(main(parser.parse_args().user))
