"""Background jobs. The same functions run on a timer inside the web process (embedded
defaults) or in arq workers (`mst worker`) at scale."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.app import logs
from bot.app.config import Settings
from bot.channels.wechat import sender as wechat_sender
from bot.channels.wechat.api import INVALID_MEDIA, TransientError, WeChatError
from bot.dialog import dispatch as dialog
from bot.dialog.deps import Deps
from bot.outbox import delivery
from bot.rules import escalation, media, mediation
from handlers import voice
from storage import audit, state, transparency
from storage.db import Database

log = logging.getLogger(__name__)


async def anchor_audit(deps: Deps) -> bool:
    """Record every moved chain's head in the global chain (catches a removed tail).

    Under the cross-process lock so two workers do not anchor the same moment twice."""
    async with state.try_lock(deps.redis, "audit-anchor", timeout_s=120) as got:
        if not got:
            return False
        async with deps.db.transaction() as session:
            ev = await audit.anchor(session)
        if ev is not None:
            log.info("audit anchor #%s recorded", ev.seq)
        return ev is not None


async def transparency_log(deps: Deps) -> int:
    """Put the audit events written since the last run into the transparency log and sign
    a new tree head over them (storage.transparency); returns how many went in.

    Under the cross-process lock, as anchors are; the database's own lock keeps two
    sequencers apart even without it (`mst audit publish` extends the log too)."""
    signer = deps.rules.signer
    if signer is None:
        return 0
    async with state.try_lock(deps.redis, "transparency-log", timeout_s=120) as got:
        if not got:
            return 0
        return await extend_log(deps.db, signer)


async def extend_log(db: Database, signer: transparency.Signer) -> int:
    """Sequence what is new and sign a head over it, one transaction a pass: a backlog
    goes in `LOG_PASSES` heads of up to SEQUENCE_LIMIT events. Nothing new: no head."""
    total = 0
    for _ in range(LOG_PASSES):
        async with db.transaction() as session:
            placed = await transparency.sequence(session)
            head = await transparency.sign_head(session, signer)
        total += len(placed)
        if head is not None:
            log.info("transparency log: head of %s leaves signed", head.size)
        if len(placed) < transparency.SEQUENCE_LIMIT:
            break
    return total


LOG_PASSES = 10


Job = Callable[[Deps], Awaitable[Any]]


async def deliver_outbox(deps: Deps) -> int:
    """Deliver what is due in the outbox (a bounded number of passes per run), each row
    through its channel's sender. A process with no senders delivers nothing."""
    if not deps.senders:
        return 0
    await state.heartbeat(deps.redis)  # /healthz tells a dead worker by this
    total = 0
    for _ in range(MAX_PASSES):
        handled = await delivery.deliver_due(deps)
        total += handled
        if not handled:
            break
    return total


MAX_PASSES = 10


async def deadlines_job(deps: Deps) -> dict[str, int]:
    """Early warnings, escalations, items off absent desks (bot.rules.escalation)."""
    result = await escalation.run(deps.db, deps.redis, deps.rules.escalation)
    if any(result.values()):
        deps.wakeup.set()
    return result


async def digest_job(deps: Deps) -> int:
    """The morning digest to each staff member, once per working day."""
    sent = await escalation.morning_digest(deps.db, deps.redis, deps.rules.deadlines)
    if sent:
        deps.wakeup.set()
    return sent


async def mediation_reminders(deps: Deps) -> int:
    """Day-before and hour-before reminders; each booking's reminder is queued once."""
    async with state.try_lock(deps.redis, "mediation-reminders", timeout_s=120) as got:
        if not got:
            return 0
        async with deps.db.transaction() as session:
            sent = await mediation.send_reminders(session, deps.rules.rooms)
    if sent:
        deps.wakeup.set()
    return sent


async def resume_stranded(deps: Deps) -> int:
    """Flows of messages left half-done by a process that stopped (bot.dialog.dispatch)."""
    return await dialog.resume_stranded(deps)


async def fetch_voices(deps: Deps) -> int:
    """Voice messages' audio, fetched from WeChat as soon as they come (WeChat keeps it
    three days) and kept with its digest in the audit log (bot.rules.media); the notices
    held for a voice without words then go, saying how long it is (handlers.voice).
    WeChat busy or the network down: tried again by a later run; a media id WeChat no
    longer knows: recorded, and not asked for again. Returns how many were looked at."""
    sender = deps.senders.get(wechat_sender.CHANNEL)
    if not isinstance(sender, wechat_sender.WeChatSender):
        return 0
    async with state.try_lock(deps.redis, "voice-fetch", timeout_s=120) as got:
        if not got:
            return 0
        async with deps.db.sessions() as session:
            due = await media.voices_to_fetch(session, VOICES_PER_RUN)
        for voice_message in due:
            try:
                await _fetch_voice(deps, sender, voice_message)
            except Exception:  # one bad message must not hold up the others behind it
                log.exception("voice of message %s: not kept", voice_message.message_id)
                async with deps.db.transaction() as session:
                    await media.failed(session, voice_message, "unexpected error")
    if due:
        deps.wakeup.set()  # notices released
    return len(due)


VOICES_PER_RUN = 20


async def _fetch_voice(deps: Deps, sender: wechat_sender.WeChatSender, due: media.Due) -> None:
    api = sender.api_for(due.user)  # the account it was sent to
    try:
        if api is None:  # a court account the courts file no longer has: later, maybe
            raise TransientError(f"no Official Account for {due.user[:12]}")
        body, content_type = await api.get_media(due.media_id)
    except WeChatError as exc:
        async with deps.db.transaction() as session:
            if exc.errcode == INVALID_MEDIA:
                log.info("voice of message %s: WeChat no longer has it", due.message_id)
                await media.expired(session, due, str(exc))
                await voice.release(session, due.message_id, None)
            else:
                log.warning("voice of message %s: %s", due.message_id, exc)
                await media.failed(session, due, str(exc))
        return
    except TransientError as exc:
        log.warning("voice of message %s: %s; trying again later", due.message_id, exc)
        async with deps.db.transaction() as session:
            await media.failed(session, due, str(exc))
        return
    async with deps.db.transaction() as session:
        kept = await media.store(session, due, body, content_type)
        await voice.release(session, due.message_id, kept.seconds)
    log.info("voice of message %s kept (%d bytes)", due.message_id, len(body))


def at_start(job: Job) -> bool:
    """Jobs that also run as the process starts, not a period later: the log signs a head
    at once (/transparency/head answers from the first minute, and events written while
    the server was down go in), flows a stopped process left are resumed, and voice
    messages that came meanwhile are fetched while WeChat still has them."""
    return job in (transparency_log, resume_stranded, fetch_voices)


def schedule_for(settings: Settings) -> list[tuple[Job, float]]:
    """(job, interval in seconds): the one list both the in-process timer and arq use."""
    return [
        (deliver_outbox, settings.outbox_interval_s),
        (anchor_audit, settings.anchor_interval_s),
        (transparency_log, 60.0),
        (mediation_reminders, settings.reminder_interval_s),
        (resume_stranded, 30.0),
        (fetch_voices, 5.0),  # WeChat keeps a voice three days: fetched within seconds
        (deadlines_job, 60.0),
        (digest_job, 60.0),
    ]


async def run_forever(deps: Deps, job: Job, every_s: float) -> None:
    first = at_start(job)
    while True:
        if first:
            first = False
        elif job is deliver_outbox:
            # New outbox rows wake delivery at once; otherwise look every `every_s`.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(deps.wakeup.wait(), every_s)
            deps.wakeup.clear()
        else:
            await asyncio.sleep(every_s)
        try:
            async with logs.job_run(job.__name__):  # one log line per run
                await job(deps)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed; will run again", job.__name__)


def start_in_process(deps: Deps) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(run_forever(deps, job, every))
        for job, every in schedule_for(deps.settings)
    ]


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
