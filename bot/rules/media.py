"""Photos and voice a litigant sent, for the staff who hold the item: a signed link to the
file (WeChat keeps users' media three days; the link lives as long).

A voice message's audio is fetched from WeChat at once by a job (bot.app.jobs.fetch_voices)
and kept here (storage.models.MediaFile) with its SHA-256 in the audit log, so it outlives
WeChat's three days and the record covers it. Its length comes from the AMR frames; a
browser plays it once ffmpeg (Debian's package, when installed) has made an mp3 of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import links
from bot.core.clock import now
from storage import audit
from storage.models import MediaFile, Message

log = logging.getLogger(__name__)

LINK_TTL = timedelta(days=3)
KINDS = ("image", "voice")  # what a litigant sends that staff get a link to (words: handlers.texts)
KEPT_BY_WECHAT = timedelta(days=3)  # temporary media: /cgi-bin/media/get answers this long


@dataclass(frozen=True)
class MediaLinks:
    """Signs and checks the links to a litigant's media, built once at start-up (flows get
    the links, never the secret). A voice message's play page and its browser copy are
    signed as the file is: one link's signature opens all three."""

    base_url: str
    secret: str

    def link(self, message_id: int) -> str:
        return f"{self.base_url}/media/{message_id}?{self.query(message_id)}"

    def play(self, message_id: int) -> str:
        """The page that plays a voice message (a browser opening `link` is sent there)."""
        return f"{self.base_url}/media/{message_id}/play?{self.query(message_id)}"

    def query(self, message_id: int) -> str:
        return links.query(self.secret, LINK_TTL, "media", message_id)

    def valid(self, message_id: int, expires: str, sig: str) -> bool:
        return links.valid(self.secret, expires, sig, "media", message_id)


# -- audio: how long, and a copy a browser plays ---------------------------------------

# AMR storage format (RFC 4867, section 5): a magic line, then frames of 20 ms, each a
# header byte (its FT bits say the mode) and that mode's speech bits. Bytes after the
# header byte for FT 0..15; 0 for NO_DATA and the reserved types.
AMR_NB = b"#!AMR\n"
AMR_WB = b"#!AMR-WB\n"
AMR_NB_BYTES = (12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0)
AMR_WB_BYTES = (17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0)
FRAME_S = 0.02
# What WeChat labels voice with (its voice is AMR-NB; speex and silk come from other
# APIs; mp3 from the mini-program's recorder), and what a browser plays as it is.
AUDIO_TYPES = ("audio/amr", "audio/amr-wb", "audio/speex", "audio/x-speex", "audio/silk")
BROWSER_TYPES = ("audio/mpeg", "audio/mp3", "audio/ogg", "audio/wav", "audio/x-wav")
FFMPEG_TIMEOUT_S = 20.0
MAX_AUDIO_BYTES = 5 * 1024 * 1024  # WeChat's voice is at most 2 MB (60 s of AMR is 24 KB)


def audio_seconds(body: bytes) -> float | None:
    """How long an AMR-NB or AMR-WB file plays (20 ms a frame), counted from its frames;
    None for another format, or for bytes that are not whole frames."""
    if body.startswith(AMR_NB):
        sizes, at = AMR_NB_BYTES, len(AMR_NB)
    elif body.startswith(AMR_WB):
        sizes, at = AMR_WB_BYTES, len(AMR_WB)
    else:
        return None
    frames = 0
    while at < len(body):
        at += 1 + sizes[(body[at] >> 3) & 0x0F]
        frames += 1
    if at != len(body):  # the last frame is cut short: say nothing rather than a guess
        return None
    return frames * FRAME_S


def ffmpeg() -> str | None:
    """Debian's ffmpeg, where it is installed (apt-get install ffmpeg)."""
    return shutil.which("ffmpeg")


async def to_browser(body: bytes, content_type: str) -> tuple[bytes, str] | None:
    """The audio as a browser's <audio> plays it: as it is when it already is such a
    format, else an mp3 made by ffmpeg (mono, 16 kHz, 32 kbit/s: speech, small). None
    when there is no ffmpeg, or it cannot read the format (WeChat's silk), or it takes
    too long."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in BROWSER_TYPES:
        return body, kind
    program = ffmpeg()
    if program is None or len(body) > MAX_AUDIO_BYTES:
        return None
    proc = await asyncio.create_subprocess_exec(
        program,
        *("-hide_banner", "-loglevel", "error", "-nostdin", "-i", "pipe:0", "-vn", "-ac", "1"),
        *("-ar", "16000", "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3", "pipe:1"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(body), FFMPEG_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("ffmpeg took over %.0f s on a %s file; not played", FFMPEG_TIMEOUT_S, kind)
        return None
    if proc.returncode != 0 or not out:
        log.info("ffmpeg could not convert a %s file: %s", kind, err.decode(errors="replace")[:200])
        return None
    return out, "audio/mpeg"


# -- the stored files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A voice message whose audio is to be fetched."""

    message_id: int
    media_id: str
    case_id: int | None
    user: str = ""  # who sent it: their account's client fetches it (bot.core.addresses)


async def voices_to_fetch(session: AsyncSession, limit: int = 20) -> list[Due]:
    """Voice messages of the last three days with no file kept yet: never tried, or a try
    that failed for a reason that passes (then not before its next try)."""
    moment = now()
    rows = await session.execute(
        select(col(Message.id), col(Message.media_id), col(Message.case_id), col(Message.openid))
        .outerjoin(MediaFile, col(MediaFile.message_id) == col(Message.id))
        .where(
            col(Message.msg_type) == "voice",
            col(Message.created_at) >= moment - KEPT_BY_WECHAT,
            col(Message.direction) == "in",
            col(Message.media_id).is_not(None),
            or_(
                col(MediaFile.message_id).is_(None),
                and_(col(MediaFile.status) == "retry", col(MediaFile.next_try_at) <= moment),
            ),
        )
        .order_by(col(Message.id))
        .limit(limit)
    )
    return [Due(i, str(m), c, u) for i, m, c, u in rows.all() if i is not None]  # ids: never None


async def _row(session: AsyncSession, message_id: int) -> MediaFile:
    found = await session.get(MediaFile, message_id)
    return found if found is not None else MediaFile(message_id=message_id, status="retry")


async def store(session: AsyncSession, due: Due, body: bytes, content_type: str) -> MediaFile:
    """Keep the audio, and record its SHA-256 in the case's audit chain: the record then
    covers the sound, not only WeChat's name for it."""
    row = await _row(session, due.message_id)
    row.status, row.content_type, row.body = "stored", content_type[:64], body
    row.sha256 = hashlib.sha256(body).hexdigest()
    row.seconds = audio_seconds(body)
    row.fetched_at, row.next_try_at, row.last_error = now(), None, None
    row.tries += 1
    session.add(row)
    await session.flush()
    await audit.append(
        session,
        actor="worker",
        action="media.stored",
        subject=f"message:{due.message_id}",
        case_id=due.case_id,
        payload={
            "sha256": row.sha256,
            "bytes": len(body),
            "content_type": row.content_type,
            "seconds": row.seconds,
            "media_sha256": audit.media_digest(due.media_id),
        },
    )
    return row


async def expired(session: AsyncSession, due: Due, error: str) -> MediaFile:
    """WeChat no longer has it (40007: past its three days, or never ours): recorded, in
    the row and the audit log, and not asked for again."""
    row = await _row(session, due.message_id)
    row.status, row.last_error, row.next_try_at = "expired", error[:300], None
    row.tries += 1
    session.add(row)
    await session.flush()
    await audit.append(
        session,
        actor="worker",
        action="media.expired",
        subject=f"message:{due.message_id}",
        case_id=due.case_id,
        payload={"media_sha256": audit.media_digest(due.media_id), "error": error[:300]},
    )
    return row


def retry_after(tries: int) -> timedelta:
    """10 s, 20 s, 40 s … up to half an hour: WeChat busy or the network down."""
    return timedelta(seconds=min(10 * 2 ** max(tries - 1, 0), 1800))


async def failed(session: AsyncSession, due: Due, error: str) -> MediaFile:
    """A try that failed for a reason that passes: asked again later (until its three days
    are over, after which WeChat has nothing to give)."""
    row = await _row(session, due.message_id)
    row.tries += 1
    row.status, row.last_error = "retry", error[:300]
    row.next_try_at = now() + retry_after(row.tries)
    session.add(row)
    await session.flush()
    return row


async def stored(session: AsyncSession, message_id: int) -> MediaFile | None:
    """The kept audio of a message, if it was fetched."""
    row = await session.get(MediaFile, message_id)
    return row if row is not None and row.status == "stored" and row.body is not None else None


async def seconds_of(session: AsyncSession, message_ids: list[int]) -> dict[int, float | None]:
    """How long each kept voice message plays, by message id (those not kept: absent)."""
    if not message_ids:
        return {}
    rows = await session.execute(
        select(col(MediaFile.message_id), col(MediaFile.seconds)).where(
            col(MediaFile.message_id).in_(message_ids), col(MediaFile.status) == "stored"
        )
    )
    return {int(i): s for i, s in rows.all()}
