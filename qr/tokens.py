"""Tokens (in the QR's URL) and short codes (printed under it, typed by hand).

Short codes use Crockford's base32 (no I, L, O, U) plus a Luhn mod-32 check
character, so a single mistyped character or a swap of two neighbours is told
apart from a well-formed code that does not exist.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
# What people type for what they read: Crockford's decoding rules.
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
BODY_LEN = 9  # 45 random bits; guessing is stopped by phone verification and lockout
TOKEN_BYTES = 24  # 192 bits → 32 URL-safe characters (fits a mini-program scene too)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def looks_like_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))


def check_char(body: str) -> str:
    """Luhn mod N over the base32 values."""
    total, factor = 0, 2
    for ch in reversed(body):
        addend = factor * _VALUE[ch]
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return ALPHABET[(32 - total % 32) % 32]


def new_short_code() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return body + check_char(body)


def normalize(text: str) -> str:
    """Upper-case, drop spaces and dashes, read O as 0 and I/L as 1."""
    return re.sub(r"[\s\-—_·.]", "", text.upper()).translate(_READ_AS)


def short_code_status(text: str) -> str:
    """'ok' for a well-formed short code, 'mistyped' for one whose check fails,
    'no' for text that is not a short code at all."""
    code = normalize(text)
    if len(code) != BODY_LEN + 1 or any(ch not in _VALUE for ch in code):
        return "no"
    return "ok" if check_char(code[:-1]) == code[-1] else "mistyped"


def pretty(code: str) -> str:
    """As printed: two groups of five, easy to read aloud."""
    return f"{code[:5]}-{code[5:]}"
