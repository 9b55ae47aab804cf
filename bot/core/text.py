"""Small helpers for text people read; the words themselves are in handlers/texts.py."""

from __future__ import annotations


def gist(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
