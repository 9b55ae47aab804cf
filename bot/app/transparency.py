"""The transparency log, published (storage.transparency): the signed tree heads, inclusion
and consistency proofs, and the public key, as JSON anyone may fetch and check for
themselves. Bad or out-of-range input: 400 with a short JSON error; an unknown head or
event: 404.

    GET /transparency/head                       the latest signed head
    GET /transparency/head/{size}                the head of that size
    GET /transparency/proof/inclusion?leaf=I&size=N   (or event=ID; size: the latest head)
    GET /transparency/proof/consistency?from=M&to=N   (to: the latest head)
    GET /transparency/key                        the public key, base64 and hex, its key id
    GET /transparency/published                  the heads the court posted, newest first

A head's signature is Ed25519 over RFC 6962's TreeHeadSignature: version 0 (1 byte), type
1 (1 byte), `timestamp` in milliseconds (8 bytes), `size` (8 bytes), `root` (32 bytes),
big-endian. Hashes are hex; proofs list them nearest the leaves first (RFC 6962 PATH and
PROOF)."""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiohttp import web

from bot.core.clock import to_court
from bot.dialog.deps import DEPS
from storage import transparency as tlog
from storage.models import TreeHead

log = logging.getLogger(__name__)

MAX_EVENT_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
MAX_SIZE = 2**62  # far beyond any log; keeps a number within a BIGINT
SIGNED = (
    "Ed25519 over RFC 6962 TreeHeadSignature: version 0 (1 byte), signature_type 1 "
    "(1 byte), timestamp in ms (8 bytes), tree_size (8 bytes), sha256_root_hash (32 bytes), "
    "big-endian"
)


class _Bad(ValueError):
    """Input that gets a 400."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _number(value: str | None, name: str, *, most: int = MAX_SIZE) -> int:
    """A non-negative decimal (digits only, as a URL carries it), at most `most`."""
    if value is None or value == "":
        raise _Bad(f"{name} is missing")
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or int(value) > most:
        raise _Bad(f"{name} must be a whole number from 0 to {most}")
    return int(value)


def _optional(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return None if value is None else _number(value, name)


def head_json(head: TreeHead) -> dict[str, Any]:
    """A head as published: every value its signature covers, and how to read it."""
    return {
        "size": head.size,
        "root": head.root,
        "timestamp": tlog.timestamp_ms(head.signed_at),
        "signed_at": head.signed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "signed_at_local": to_court(head.signed_at).isoformat(timespec="seconds"),
        "signature": head.signature,
        "key_id": head.key_id,
    }


async def latest(request: web.Request) -> web.Response:
    async with request.app[DEPS].db.sessions() as session:
        head = await tlog.latest_head(session)
    if head is None:
        return _error(404, "no signed tree head yet")
    return web.json_response(head_json(head))


async def by_size(request: web.Request) -> web.Response:
    try:
        size = _number(request.match_info["size"], "size")
    except _Bad as exc:
        return _error(400, str(exc))
    async with request.app[DEPS].db.sessions() as session:
        head = await tlog.head_at(session, size)
    if head is None:
        return _error(404, f"no head of size {size}")
    return web.json_response(head_json(head))


async def inclusion(request: web.Request) -> web.Response:
    try:
        leaf = _optional(request, "leaf")
        event = request.query.get("event")
        event_id = None if event is None else _number(event, "event", most=MAX_EVENT_ID)
        if (leaf is None) == (event_id is None):
            raise _Bad("give leaf=<index> or event=<id> (one of them)")
        size = _optional(request, "size")
    except _Bad as exc:
        return _error(400, str(exc))
    try:
        async with request.app[DEPS].db.sessions() as session:
            found = await tlog.inclusion(session, leaf_index=leaf, event_id=event_id, size=size)
    except tlog.OutOfRange as exc:
        return _error(400, str(exc))
    except (tlog.NoSuchHead, tlog.NotInLog) as exc:
        return _error(404, str(exc))
    except tlog.LogDamaged as exc:
        return _damaged(exc)
    return web.json_response(
        {
            "leaf_index": found.leaf_index,
            "event_id": found.event_id,
            "event_hash": found.event_hash,
            "leaf_hash": found.leaf_hash,
            "size": found.head.size,
            "proof": found.proof,
            "head": head_json(found.head),
        }
    )


async def consistency(request: web.Request) -> web.Response:
    try:
        first = _number(request.query.get("from"), "from")
        second = _optional(request, "to")
        if second is not None and first > second:
            raise _Bad("from must not be larger than to")
    except _Bad as exc:
        return _error(400, str(exc))
    try:
        async with request.app[DEPS].db.sessions() as session:
            found = await tlog.consistency(session, first, second)
    except tlog.OutOfRange as exc:
        return _error(400, str(exc))
    except tlog.NoSuchHead as exc:
        return _error(404, str(exc))
    except tlog.LogDamaged as exc:
        return _damaged(exc)
    return web.json_response(
        {
            "from": found.first.size,
            "to": found.second.size,
            "proof": found.proof,
            "heads": [head_json(found.first), head_json(found.second)],
        }
    )


async def key(request: web.Request) -> web.Response:
    signer = request.app[DEPS].rules.signer
    if signer is None:
        return _error(404, "this server signs no tree heads")
    return web.json_response(
        {
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(signer.public_key).decode(),
            "public_key_hex": signer.public_key.hex(),
            "key_id": signer.key_id,
            "key_id_is": "SHA-256 of the raw public key, hex, first 16 characters",
            # Keys this log signed with before a rotation: their heads still verify.
            "past_keys": [
                {"public_key": base64.b64encode(k).decode(), "key_id": kid}
                for kid, k in list(signer.keys().items())[1:]
            ],
            "signs": SIGNED,
        }
    )


async def posted(request: web.Request) -> web.Response:
    """The heads the court posted (`mst audit publish`), newest first: what a notice board
    should show, for anyone comparing (the heads themselves at /transparency/head/N)."""
    async with request.app[DEPS].db.sessions() as session:
        rows = await tlog.published(session)
    return web.json_response(
        {
            "published": [
                {
                    "size": p.size,
                    "root": p.root,
                    "published_at": p.published_at.isoformat(timespec="seconds"),
                    "published_at_local": to_court(p.published_at).isoformat(timespec="seconds"),
                }
                for p in rows
            ]
        }
    )


def _damaged(exc: Exception) -> web.Response:
    log.error("transparency log damaged: %s (run check_log)", exc)
    return _error(500, "the log's stored leaves are damaged")


def setup(app: web.Application) -> None:
    app.router.add_get("/transparency/head", latest)
    app.router.add_get("/transparency/head/{size}", by_size)
    app.router.add_get("/transparency/proof/inclusion", inclusion)
    app.router.add_get("/transparency/proof/consistency", consistency)
    app.router.add_get("/transparency/key", key)
    app.router.add_get("/transparency/published", posted)
