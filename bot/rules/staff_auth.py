"""Staff sign-in to the web console: passwords (argon2), one-time set-up links, an optional
TOTP second factor, and how many wrong tries an account and an address have left.

Only an argon2 hash of a password is kept, only the SHA-256 of a set-up link's token, and a
TOTP secret only sealed (AES-GCM, `TotpBox`) under a key drawn from MST_SECRET_KEY. Wrong
tries are `FailedAttempt` rows (as bot.rules.attempts counts a case's digits), written in
the sign-in's own transaction: a Redis restart hands out no fresh tries. The rules hold no
wording: a refused password is a code (`PasswordError.code`) the caller puts in words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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

SEALED = "v1:"  # a sealed secret's prefix; anything else in the column is an older clear one
_NONCE = 12
_COLUMN = 64  # Staff.totp_secret's length


@dataclass(frozen=True)
class TotpBox:
    """Seals TOTP secrets for the database: AES-256-GCM under a key drawn from MST_SECRET_KEY
    by HKDF with a label of its own (so no key is shared with the links or forms that secret
    signs, and no new setting is needed), a fresh random nonce each time, the staff member's
    id as associated data (a sealed secret copied onto another account does not open).
    Stored as "v1:" + Base85 of nonce, ciphertext and tag: a 160-bit secret is 63
    characters, Base64 would not fit the 64-character column. A new MST_SECRET_KEY opens
    none of them: each person's TOTP is then set again (`mst staff-password USER --totp`)."""

    key: bytes

    @classmethod
    def from_secret(cls, secret_key: str) -> TotpBox:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mst console totp v1")
        return cls(hkdf.derive(secret_key.encode()))

    @staticmethod
    def _aad(staff: Staff) -> bytes:
        assert staff.id is not None, "a stored staff member"
        return f"staff:{staff.id}".encode()

    def seal(self, staff: Staff, secret: str) -> str:
        raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + AESGCM(self.key).encrypt(nonce, raw, self._aad(staff))
        return SEALED + base64.b85encode(sealed).decode()

    def open(self, staff: Staff, stored: str) -> str | None:
        """The secret in base32, or None when it does not open (another key, another
        account's, damaged)."""
        try:
            sealed = base64.b85decode(stored.removeprefix(SEALED))
            raw = AESGCM(self.key).decrypt(sealed[:_NONCE], sealed[_NONCE:], self._aad(staff))
        except (ValueError, InvalidTag):
            return None
        return base64.b32encode(raw).decode().rstrip("=")


def _box(secret_key: str | None) -> TotpBox | None:
    return TotpBox.from_secret(secret_key) if secret_key else None


def totp_secret(staff: Staff, secret_key: str | None) -> str | None:
    """The staff member's TOTP secret in clear, for checking a code: opened with the key
    from `secret_key`, or an older clear one as it is."""
    stored = staff.totp_secret
    if not stored:
        return None
    if not stored.startswith(SEALED):
        return stored
    box = _box(secret_key)
    return box.open(staff, stored) if box else None


def seal_totp(staff: Staff, secret_key: str) -> bool:
    """An older secret kept in clear, sealed now (the caller's transaction stores it):
    True when it was. Called where a secret is used, so old rows close up as people sign in."""
    stored = staff.totp_secret
    if not stored or stored.startswith(SEALED):
        return False
    try:
        sealed = TotpBox.from_secret(secret_key).seal(staff, stored)
    except (binascii.Error, ValueError):
        return False  # not base32: no code could match it anyway
    if len(sealed) > _COLUMN:
        return False
    staff.totp_secret = sealed
    return True


async def enable_totp(session: AsyncSession, staff: Staff, *, actor: str, secret_key: str) -> str:
    """A new TOTP secret (any earlier one stops working), sealed with the key drawn from
    `secret_key` (MST_SECRET_KEY); its otpauth:// URI, shown once."""
    secret = pyotp.random_base32()
    staff.totp_secret = TotpBox.from_secret(secret_key).seal(staff, secret)
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


def totp_ok(staff: Staff, code: str, *, secret_key: str | None = None) -> bool:
    """A six-digit code of this 30-second step or the one either side (clocks drift). A
    sealed secret needs `secret_key` to be read."""
    code = code.strip()
    secret = totp_secret(staff, secret_key)
    if secret is None or len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    return pyotp.TOTP(secret).verify(code, for_time=now(), valid_window=1)


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
