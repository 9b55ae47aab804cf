"""Staff sign-in to the web console: passwords (argon2), one-time set-up links, an optional
TOTP second factor, and how many wrong tries an account and an address have left.

Only an argon2 hash of a password is kept, only the SHA-256 of a set-up link's token. Wrong
tries are `FailedAttempt` rows (as bot.rules.attempts counts a case's digits), written in
the sign-in's own transaction: a Redis restart hands out no fresh tries. The rules hold no
wording: a refused password is a code (`PasswordError.code`) the caller puts in words.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.clock import now
from storage import audit
from storage.models import FailedAttempt, Staff

PASSWORD_MIN = 10
PASSWORD_MAX = 200  # argon2 takes anything; a megabyte "password" would only cost us time
SETUP_TTL = timedelta(hours=24)
WINDOW = timedelta(minutes=15)
PER_ACCOUNT = 5
PER_ADDRESS = 20  # a few colleagues behind one office address mistyping, not a guesser
# FailedAttempt.kind: one row of each per wrong try (`openid` holds the name or address).
ACCOUNT = "console_user"
ADDRESS = "console_addr"
TOTP_ISSUER = "码上通"

_hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106's second choice)


class PasswordError(ValueError):
    """A new password refused: `code` is too_short, too_long or is_username."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def check_new(password: str, username: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise PasswordError("too_short")
    if len(password) > PASSWORD_MAX:
        raise PasswordError("too_long")
    if password.strip().lower() == username.lower():
        raise PasswordError("is_username")


def hash_password(password: str) -> str:
    """CPU- and memory-heavy (about a quarter of a second): callers off the event loop run it
    in a thread."""
    return _hasher.hash(password)


@cache
def _decoy() -> str:
    return _hasher.hash(secrets.token_hex(16))


def password_ok(staff: Staff | None, password: str) -> bool:
    """Whether `password` is the staff member's. An unknown name or an account without a
    password costs the same time as a wrong password, so timing does not tell which names
    exist. Heavy, as hash_password."""
    stored = staff.password_hash if staff is not None and staff.active else None
    try:
        _hasher.verify(stored or _decoy(), password[:PASSWORD_MAX])
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None


async def set_password(
    session: AsyncSession, staff: Staff, password_hash: str, *, actor: str
) -> datetime:
    """Store a new password's hash (checked and hashed by the caller); any set-up link is
    used up and every session made before now ends."""
    staff.password_hash = password_hash
    staff.password_set_at = now()
    staff.setup_token_hash = None
    staff.setup_expires_at = None
    session.add(staff)
    await audit.append(
        session, actor=actor, action="staff.password_set", subject=f"staff:{staff.username}"
    )
    return staff.password_set_at


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_setup_link(
    session: AsyncSession, staff: Staff, *, actor: str
) -> tuple[str, datetime]:
    """A fresh one-time set-up token (an earlier one stops working) and when it ends."""
    token = secrets.token_urlsafe(32)
    staff.setup_token_hash = _digest(token)
    staff.setup_expires_at = now() + SETUP_TTL
    session.add(staff)
    await audit.append(
        session,
        actor=actor,
        action="staff.setup_link_issued",
        subject=f"staff:{staff.username}",
        payload={"expires_at": staff.setup_expires_at.isoformat()},
    )
    return token, staff.setup_expires_at


async def by_setup_token(session: AsyncSession, token: str) -> Staff | None:
    """The active staff member a live, unused set-up token was issued to."""
    if not token or len(token) > 100:
        return None
    found = (
        await session.execute(select(Staff).where(col(Staff.setup_token_hash) == _digest(token)))
    ).scalar_one_or_none()
    if found is None or not found.active or found.setup_expires_at is None:
        return None
    return found if found.setup_expires_at > now() else None


# -- TOTP ------------------------------------------------------------------------------------


async def enable_totp(session: AsyncSession, staff: Staff, *, actor: str) -> str:
    """A new TOTP secret (any earlier one stops working); its otpauth:// URI, shown once."""
    secret = pyotp.random_base32()
    staff.totp_secret = secret
    session.add(staff)
    await audit.append(
        session, actor=actor, action="staff.totp_set", subject=f"staff:{staff.username}"
    )
    return pyotp.TOTP(secret).provisioning_uri(name=staff.username, issuer_name=TOTP_ISSUER)


async def disable_totp(session: AsyncSession, staff: Staff, *, actor: str) -> None:
    staff.totp_secret = None
    session.add(staff)
    await audit.append(
        session, actor=actor, action="staff.totp_removed", subject=f"staff:{staff.username}"
    )


def totp_ok(staff: Staff, code: str) -> bool:
    """A six-digit code of this 30-second step or the one either side (clocks drift)."""
    code = code.strip()
    if staff.totp_secret is None or len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    return pyotp.TOTP(staff.totp_secret).verify(code, for_time=now(), valid_window=1)


# -- wrong tries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tries:
    account: int
    address: int

    def blocked(self) -> bool:
        return self.account >= PER_ACCOUNT or self.address >= PER_ADDRESS


async def tries(
    session: AsyncSession, username: str, address: str, *, since: datetime | None = None
) -> Tries:
    """Wrong tries within the window: at this account name (since its last sign-in, when
    that is later) and from this address. (Parallel guesses at one account are kept apart
    by the caller: the console checks one password per account name at a time.)"""
    start = now() - WINDOW
    account_since = max(start, since) if since is not None else start
    mine = (col(FailedAttempt.kind) == ACCOUNT) & (col(FailedAttempt.openid) == username[:64])
    here = (col(FailedAttempt.kind) == ADDRESS) & (col(FailedAttempt.openid) == address[:64])
    row = (
        await session.execute(
            select(
                func.count(case((mine & (col(FailedAttempt.at) > account_since), 1))),
                func.count(case((here, 1))),
            ).where(col(FailedAttempt.at) > start, or_(mine, here))
        )
    ).one()
    return Tries(int(row[0]), int(row[1]))


async def record_failure(session: AsyncSession, username: str, address: str) -> None:
    moment = now()
    await session.execute(
        insert(FailedAttempt),
        [
            {"kind": ACCOUNT, "openid": username[:64], "case_id": None, "at": moment},
            {"kind": ADDRESS, "openid": address[:64], "case_id": None, "at": moment},
        ],
    )
