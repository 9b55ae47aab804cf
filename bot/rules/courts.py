"""A court's own details that people are told: its service desk's phone, address and hours.

Set by the court's admin (`mst court set`); the chat's texts use them (handlers.texts.desk,
handlers.texts.call) wherever they send a person to the court."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage import audit
from storage.models import Court

# Landlines with area code and extension, mobile numbers and the 12368 hotline.
_PHONE = re.compile(r"[0-9０-９()（）\-－ ]{3,40}(转[0-9]{1,6})?")
FIELDS = ("phone", "address", "hours")
LIMITS = {"phone": 40, "address": 200, "hours": 100}


class DeskError(ValueError):
    """A value a court admin gave that people could not use; the message says which."""


@dataclass(frozen=True)
class DeskChange:
    court: Court
    changed: dict[str, str | None]


async def by_name(session: AsyncSession, name: str) -> Court | None:
    return (
        await session.execute(select(Court).where(col(Court.name) == name))
    ).scalar_one_or_none()


async def all_courts(session: AsyncSession) -> list[Court]:
    return list((await session.execute(select(Court).order_by(col(Court.id)))).scalars())


def clean(field: str, value: str) -> str | None:
    """An empty value clears the field; anything else must fit and, for a phone, dial."""
    value = " ".join(value.split())
    if not value:
        return None
    if len(value) > LIMITS[field]:
        raise DeskError(f"{field} 最多 {LIMITS[field]} 个字")
    if field == "phone" and not all(
        _PHONE.fullmatch(p.strip()) for p in re.split("[,，、/]", value)
    ):
        raise DeskError(f"电话号码看不懂：{value}（例如 0318-2123456 或 12368）")
    return value


async def set_desk(
    session: AsyncSession, court: Court, values: dict[str, str], *, actor: str
) -> DeskChange:
    """Change what was given, record it, and say what changed (nothing: no event)."""
    changed: dict[str, str | None] = {}
    for field, raw in values.items():
        value = clean(field, raw)
        if getattr(court, field) != value:
            setattr(court, field, value)
            changed[field] = value
    if changed:
        session.add(court)
        await audit.append(
            session,
            actor=actor,
            action="court.desk_set",
            subject=f"court:{court.id}",
            payload=changed,
        )
    return DeskChange(court, changed)


def missing(court: Court) -> list[str]:
    """What people would not be told: the fields still empty."""
    return [f for f in FIELDS if not getattr(court, f)]
