"""The court's rules as a process holds them: deadlines (calendar and allowances), the
escalation policy, and the key that signs room links. Read and checked once at start-up
(`load`), then handed down — `Deps.rules` to jobs, `Context.rules` to flows — never kept
in module state, so two courts' settings in one test run cannot leak into each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.rules import deadlines, escalation
from bot.rules.deadlines import Deadlines
from bot.rules.escalation import Policy
from bot.rules.mediation import Rooms


@dataclass(frozen=True)
class Rulebook:
    deadlines: Deadlines
    escalation: Policy
    rooms: Rooms


def load(
    *, secret_key: str, holidays_file: Path | None = None, rules_file: Path | None = None
) -> Rulebook:
    """MST_HOLIDAYS_FILE and MST_RULES_FILE read and checked (a ConfigError names the
    variable), the room-link key derived from MST_SECRET_KEY."""
    working = deadlines.load(holidays_file=holidays_file, rules_file=rules_file)
    return Rulebook(working, escalation.load_policy(working), Rooms.from_secret(secret_key))
