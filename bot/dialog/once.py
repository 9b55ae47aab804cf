"""Each delivery answered once, within the channel's time: de-duplication, retries and late
answers, so a channel keeps only its wire (signature, crypto, parsing, its time budget).

A channel that may deliver the same message again (WeChat retries three times when it has
no answer within 5 s) calls `admit` first: "new", "retry" (this key was taken before) or
"replay" (the same timestamp and nonce for another message). Then `answer` for a new one,
`answer_retry` for a retry; both return within the `deadline` the channel gives. A flow
that runs past it goes on behind the answer, and what it says is queued in the outbox for
the person's channel. A retry gets the first delivery's answer (kept in Redis, and in the
database with the message), never a second run of the flow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.exceptions import RedisError

from bot.core.events import Inbound
from bot.core.reply import Reply, as_text
from bot.dialog import dispatch
from bot.dialog.deps import Deps
from bot.outbox import queue as outbox
from storage import state

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a delivery keeps, of the time it has, for its own work (storing, answering).
MIN_WORK_S = 1.0
# How often a retry looks whether the first delivery has answered.
RETRY_POLL_S = 0.1


async def admit(deps: Deps, timestamp: str, nonce: str, key: str, window_s: int) -> str:
    """The replay window and retry de-duplication (Redis). With Redis unreachable the
    message is still taken: the database's unique key de-duplicates it, and the replay
    window is off until Redis is back (a signed request is good for its timestamp's window
    only, and the message's own key still keeps each message to one)."""
    try:
        return await state.admit(deps.redis, timestamp, nonce, key, window_s)
    except RedisError as exc:
        log.warning("redis unavailable (%s): taking %s without the replay window", exc, key)
        return "new"


async def answer_retry(
    deps: Deps, inbound: Inbound, deadline: float, *, first_within: float
) -> Reply | None:
    """A delivery taken before, again: the first delivery's answer, waited for until the
    `deadline`. Once the first has had its `first_within` seconds, it has answered or stored
    the message, unless its process died: then a stored message gets the answer stored
    with it, or None (its flow, if cut off, is the resume job's), and one never stored is
    handled here. Should the first come back after all, the message's unique key in the
    database keeps it to one."""
    while True:
        said, claimed = await state.seen(deps.redis, inbound.key)
        if said is not None:
            return Reply(said) if said else None
        if claimed is not None and claimed >= first_within:
            stored, said = await dispatch.stored_reply(deps, inbound.key)
            if stored:
                return Reply(said) if said else None
            log.warning("%s claimed %.0f s ago and never stored; handling it", inbound.key, claimed)
            return await answer(deps, inbound, deadline)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(RETRY_POLL_S)


async def answer(deps: Deps, inbound: Inbound, deadline: float) -> Reply | None:
    """Store and answer a new delivery by the `deadline`. A flow still running then goes on
    behind: if the message is stored, None (the channel says "received") and the answer
    follows through the outbox; if it is not stored yet, this waits for it, so that a
    storage failure reaches the channel (which then lets the sender try again)."""
    budget = max(deadline - time.monotonic(), MIN_WORK_S)
    accepted = asyncio.Event()
    task = behind(_process(deps, inbound, accepted, budget * 0.75))
    try:
        return await asyncio.wait_for(asyncio.shield(task), budget)
    except TimeoutError:
        if not accepted.is_set():
            log.error(
                "message %s not stored within %.1f s; leaving it to the sender's retry",
                inbound.key,
                budget,
            )
            return await asyncio.shield(task)
        task.add_done_callback(lambda t: _late_answer(deps, inbound, t))
        log.warning("handler for %s passed %.1f s; answered success", inbound.key, budget)
        return None


async def _process(
    deps: Deps, inbound: Inbound, accepted: asyncio.Event, store_within: float
) -> Reply | None:
    try:
        # Leave time to store the message on its own if the flow is slow. The dialog
        # remembers its answer for retries of this message.
        return await dispatch.handle(deps, inbound, accepted, store_within=store_within)
    except dispatch.Duplicate:
        # The database has it: an earlier delivery stored it (or our de-duplication store
        # forgot, e.g. restarted). No double; answer as that delivery did, if it is kept.
        log.info("duplicate %s found in the database", inbound.key)
        said: str | None
        try:
            said = await state.settle(deps.redis, inbound.key)
        except RedisError:  # the answer given to it is in the database too
            said = (await dispatch.stored_reply(deps, inbound.key))[1]
        return Reply(said) if said else None
    except Exception:
        if not accepted.is_set():
            # Not stored: forget the claim so the sender's retry gets a fresh try.
            await state.release_message(deps.redis, inbound.key)
        raise


def _late_answer(deps: Deps, inbound: Inbound, task: asyncio.Task[Reply | None]) -> None:
    if task.cancelled() or task.exception() is not None or task.result() is None:
        return
    reply = task.result()
    assert reply is not None
    late = behind(
        outbox.enqueue_text(deps.db, inbound.user, as_text(reply), channel=inbound.channel)
    )
    late.add_done_callback(_late_done)


def _late_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not queue a late answer: %s", task.exception())


# Work that may outlive its delivery: a flow behind a `success`, a late answer being queued.
# Held here because the loop keeps only weak references to tasks, and waited for at shutdown.
_BEHIND: set[asyncio.Task[Any]] = set()


def behind(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(work)
    _BEHIND.add(task)
    task.add_done_callback(_BEHIND.discard)
    return task


async def finish_behind(timeout_s: float) -> None:
    """Shutdown: a message answered `success` is stored, but its flow and answer are still
    on their way. Let them finish (into the database and the outbox) before the
    connections close, or the person would never hear back."""
    deadline = time.monotonic() + timeout_s
    while _BEHIND:  # a finished flow may start a late answer: look again
        left = deadline - time.monotonic()
        if left <= 0:
            log.error("shutting down with %d answers still being worked on", len(_BEHIND))
            return
        await asyncio.wait(set(_BEHIND), timeout=left)
