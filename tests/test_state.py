"""Short-lived shared state in Redis (or the in-process stand-in): conversations, retry
de-duplication, the replay window, rate limits and the cross-process lock."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import LockError

from storage import state
from tests.conftest import REDIS_URL


# The callback asks Redis once per message (state.admit: replay check + de-duplication),
# and the dialog once more (state.turn: the turn, the conversation and the rate): these
# name the three questions they answer.
async def claim(r: Redis, msg_key: str) -> bool:
    """Is this the first delivery of msg_key? (a fresh timestamp+nonce each time)"""
    return await state.admit(r, "1700000000", secrets.token_hex(8), msg_key, 300) == "new"


async def fits(r: Redis, timestamp: str, nonce: str, msg_key: str, ttl_s: int) -> bool:
    """May this timestamp+nonce carry msg_key? (not a replay with another body)"""
    return await state.admit(r, timestamp, nonce, msg_key, ttl_s) != "replay"


async def within(r: Redis, user: str, limit: int, window_s: int) -> bool:
    async with state.turn(r, user, rate_limit=limit, rate_window_s=window_s) as turn:
        return turn.within_rate


@pytest.fixture
async def r() -> AsyncIterator[Redis]:
    client = state.connect(REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Redis, Redis]]:
    """Two separate clients of one server, as two processes would have."""
    if REDIS_URL:
        a, b = state.connect(REDIS_URL), state.connect(REDIS_URL)
    else:
        server = fakeredis.FakeServer()
        a = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
        b = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    await a.flushdb()
    assert a.connection_pool is not b.connection_pool
    yield a, b
    await a.aclose()
    await b.aclose()


async def all_keys(r: Redis) -> list[str]:
    return sorted([k async for k in r.scan_iter("*")])


# -- conversation state --------------------------------------------------------------------


async def test_conversation_round_trip_with_ttl(r: Redis) -> None:
    assert await state.load_conversation(r, "oUser1") == {}
    conv = {"step": "verify", "case_id": 12, "tries": [1, 2], "名字": "王某某", "x": None}
    await state.save_conversation(r, "oUser1", conv)
    assert await state.load_conversation(r, "oUser1") == conv
    assert await state.load_conversation(r, "oUser2") == {}
    ttl = await r.ttl("mst:conv:oUser1")
    assert state.CONVERSATION_TTL_S - 5 <= ttl <= state.CONVERSATION_TTL_S
    # Stored readable (ensure_ascii off), under the documented prefix.
    assert "王某某" in (await r.get("mst:conv:oUser1") or "")
    assert await all_keys(r) == ["mst:conv:oUser1"]


async def test_saving_again_replaces_and_renews_the_ttl(r: Redis) -> None:
    await state.save_conversation(r, "oUser1", {"step": "a", "old": True})
    await r.expire("mst:conv:oUser1", 50)
    await state.save_conversation(r, "oUser1", {"step": "b"})
    assert await state.load_conversation(r, "oUser1") == {"step": "b"}
    assert await r.ttl("mst:conv:oUser1") > 50


async def test_saving_an_empty_conversation_deletes_it(r: Redis) -> None:
    await state.save_conversation(r, "oUser1", {"step": "menu"})
    await state.save_conversation(r, "oUser2", {"step": "menu"})
    await state.save_conversation(r, "oUser1", {})
    assert await r.exists("mst:conv:oUser1") == 0
    assert await state.load_conversation(r, "oUser1") == {}
    assert await state.load_conversation(r, "oUser2") == {"step": "menu"}
    await state.save_conversation(r, "nobody", {})  # deleting what is not there is fine
    assert await all_keys(r) == ["mst:conv:oUser2"]


# -- retry de-duplication ---------------------------------------------------------------------


async def test_claim_message_only_once(r: Redis) -> None:
    assert await claim(r, "m1") is True
    assert await claim(r, "m1") is False
    assert await claim(r, "m1") is False
    assert await claim(r, "m2") is True
    ttl = await r.ttl("mst:seen:m1")
    assert state.DEDUPE_TTL_S - 5 <= ttl <= state.DEDUPE_TTL_S


async def test_concurrent_claims_have_one_winner(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    results = await asyncio.gather(*(claim(c, "m1") for c in (a, b) * 10))
    assert results.count(True) == 1


async def test_earlier_answer_pending_then_answered(r: Redis) -> None:
    assert await state.earlier_answer(r, "m1") is None  # never seen
    assert await claim(r, "m1")
    assert await state.earlier_answer(r, "m1") is None  # still being worked on
    async with state.turn(r, "u1", rate_limit=30, remember="m1") as t:
        t.answer = "<xml>reply</xml>"
    assert await state.earlier_answer(r, "m1") == "<xml>reply</xml>"
    assert await claim(r, "m1") is False  # answering does not free the claim
    ttl = await r.ttl("mst:seen:m1")
    assert state.DEDUPE_TTL_S - 5 <= ttl <= state.DEDUPE_TTL_S


async def test_a_claim_tells_its_age_until_answered(r: Redis) -> None:
    assert await state.claimed_for(r, "m1") is None  # never seen
    assert await claim(r, "m1")
    first = await state.claimed_for(r, "m1")
    assert first is not None and 0 <= first < 1
    await asyncio.sleep(0.2)
    later = await state.claimed_for(r, "m1")
    assert later is not None and later >= first + 0.15
    await state.settle(r, "m1")
    assert await state.claimed_for(r, "m1") is None


async def test_settling_ends_a_claim_with_success_and_never_wipes_an_answer(r: Redis) -> None:
    assert await claim(r, "m1")
    assert await state.settle(r, "m1") == ""
    answer = await state.earlier_answer(r, "m1")
    assert answer == "" and answer is not None  # success, not pending
    assert await claim(r, "m2")
    async with state.turn(r, "u1", rate_limit=30, remember="m2") as t:
        t.answer = "<xml>reply</xml>"
    assert await state.settle(r, "m2") == "<xml>reply</xml>"
    assert await state.earlier_answer(r, "m2") == "<xml>reply</xml>"
    assert await state.settle(r, "m3") == ""  # forgotten (e.g. Redis restarted): success


async def test_release_lets_a_retry_claim_again(r: Redis) -> None:
    assert await claim(r, "m1")
    assert await claim(r, "m2")
    await state.release_message(r, "m1")
    assert await state.earlier_answer(r, "m1") is None
    assert await claim(r, "m1") is True
    assert await claim(r, "m2") is False  # others untouched


# -- replay window ------------------------------------------------------------------------------


async def test_nonce_carries_only_its_own_message(r: Redis) -> None:
    assert await fits(r, "1700000000", "n1", "msgA", 300) is True
    assert await fits(r, "1700000000", "n1", "msgA", 300) is True  # a retry
    assert await fits(r, "1700000000", "n1", "msgB", 300) is False  # forged body
    assert await fits(r, "1700000000", "n2", "msgB", 300) is True
    assert await fits(r, "1700000001", "n1", "msgB", 300) is True
    # The first message keeps the nonce; a refused one does not take it over.
    assert await fits(r, "1700000000", "n1", "msgA", 300) is True
    ttl = await r.ttl("mst:nonce:1700000000:n1")
    assert 295 <= ttl <= 300


# -- rate limits -------------------------------------------------------------------------------


async def test_within_rate_counts_per_bucket(r: Redis) -> None:
    assert [await within(r, "u1", 3, 60) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert await within(r, "u2", 3, 60) is True
    assert 55 <= await r.ttl("mst:rate:user:u1") <= 60


async def test_within_rate_is_a_fixed_window(r: Redis) -> None:
    """Later hits do not push the window out: it ends window_s after the first hit."""
    assert await within(r, "u1", 2, 60)
    await r.expire("mst:rate:user:u1", 5)  # as if 55 s of the window had passed
    assert await within(r, "u1", 2, 60)
    assert 0 < await r.ttl("mst:rate:user:u1") <= 5
    assert await within(r, "u1", 2, 60) is False
    assert 0 < await r.ttl("mst:rate:user:u1") <= 5


async def test_within_rate_opens_again_after_the_window(r: Redis) -> None:
    assert [await within(r, "u1", 2, 1) for _ in range(3)] == [True, True, False]
    await asyncio.sleep(1.1)
    assert [await within(r, "u1", 2, 1) for _ in range(3)] == [True, True, False]


# -- a user's turn ----------------------------------------------------------------------------


async def test_a_turn_brings_the_conversation_and_saves_what_it_is_given(r: Redis) -> None:
    await state.save_conversation(r, "u1", {"step": "ask", "case_id": 7})
    async with state.turn(r, "u1", rate_limit=5) as turn:
        assert turn.held and turn.within_rate
        assert turn.conversation == {"step": "ask", "case_id": 7}
        turn.save = {"step": None, "case_id": 7, "note": "王某"}
    assert await state.load_conversation(r, "u1") == {"step": None, "case_id": 7, "note": "王某"}
    assert 0 < await r.ttl("mst:conv:u1") <= state.CONVERSATION_TTL_S
    assert await r.exists("mst:lock:user:u1") == 0  # the turn is given back


async def test_a_turn_remembers_the_answer_for_retries(r: Redis) -> None:
    assert await claim(r, "wx:1")
    assert await state.earlier_answer(r, "wx:1") is None  # still being worked on
    async with state.turn(r, "u1", rate_limit=5, remember="wx:1") as turn:
        turn.answer = "已收到"
    assert await state.earlier_answer(r, "wx:1") == "已收到"
    assert 0 < await r.ttl("mst:seen:wx:1") <= state.DEDUPE_TTL_S
    async with state.turn(r, "u1", rate_limit=5) as turn:
        turn.answer = "没有 remember：不记"
    assert await state.earlier_answer(r, "wx:1") == "已收到"
    assert not await r.exists("mst:seen:")


async def test_a_turn_that_saves_nothing_leaves_the_conversation_alone(r: Redis) -> None:
    await state.save_conversation(r, "u1", {"step": "ask"})
    with pytest.raises(RuntimeError):
        async with state.turn(r, "u1", rate_limit=5):
            raise RuntimeError("the flow failed")
    assert await state.load_conversation(r, "u1") == {"step": "ask"}
    assert await r.exists("mst:lock:user:u1") == 0
    async with state.turn(r, "u1", rate_limit=5) as turn:
        turn.save = {}  # an empty conversation is forgotten
    assert await r.exists("mst:conv:u1") == 0


async def test_turns_of_one_user_go_one_at_a_time(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    order: list[str] = []

    async def first() -> None:
        async with state.turn(a, "u1", rate_limit=5) as turn:
            order.append("first in")
            await asyncio.sleep(0.3)
            turn.save = {"n": 1}
            order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0.05)
        async with state.turn(b, "u1", rate_limit=5) as turn:
            order.append(f"second in, sees {turn.conversation}")
        async with state.turn(b, "u2", rate_limit=5) as other:
            assert other.held  # another user never waits

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in, sees {'n': 1}"]


async def test_a_turn_held_too_long_is_not_waited_for_forever(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    async with state.turn(a, "u1", rate_limit=5) as stuck:
        async with state.turn(b, "u1", rate_limit=5, wait_s=0.2) as late:
            assert stuck.held and not late.held
            late.save = {"late": True}  # still saved, but the stuck turn is not freed by it
        assert await a.exists("mst:lock:user:u1") == 1
    assert await a.exists("mst:lock:user:u1") == 0
    assert await state.load_conversation(a, "u1") == {"late": True}


async def test_an_expired_turn_is_not_freed_by_its_old_holder(r: Redis) -> None:
    old = state.turn(r, "u1", rate_limit=5, timeout_s=0.1)
    assert (await old.__aenter__()).held
    await asyncio.sleep(0.2)  # the old message ran past the lock time
    async with state.turn(r, "u1", rate_limit=5, wait_s=0) as new:
        assert new.held
        await old.__aexit__(None, None, None)
        assert await r.exists("mst:lock:user:u1") == 1  # still the new message's


# -- cross-process lock -------------------------------------------------------------------------


async def test_try_lock_is_exclusive_between_clients(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    async with state.try_lock(a, "job") as got_a:
        assert got_a is True
        async with state.try_lock(b, "job") as got_b:
            assert got_b is False
        async with state.try_lock(a, "job") as again:
            assert again is False  # not re-entrant either
        async with state.try_lock(b, "other-job") as other:
            assert other is True
        # B's refused attempt did not free A's lock.
        assert await b.exists("mst:lock:job") == 1
    assert await b.exists("mst:lock:job") == 0
    async with state.try_lock(b, "job") as got_b:
        assert got_b is True


async def test_try_lock_is_released_on_error(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    with pytest.raises(RuntimeError):
        async with state.try_lock(a, "job") as got:
            assert got
            raise RuntimeError("job failed")
    async with state.try_lock(b, "job") as got_b:
        assert got_b is True


async def test_an_expired_lock_passes_on_and_its_old_holder_cannot_free_it(
    pair: tuple[Redis, Redis],
) -> None:
    a, b = pair
    async with contextlib.AsyncExitStack() as held_by_b:
        async with state.try_lock(a, "job", timeout_s=0.2) as got_a:
            assert got_a
            await asyncio.sleep(0.35)  # A overruns its lock
            got_b = await held_by_b.enter_async_context(state.try_lock(b, "job", timeout_s=5))
            assert got_b is True
        # A finished late: leaving its block raised nothing and freed nothing of B's.
        assert await a.exists("mst:lock:job") == 1
        async with state.try_lock(a, "job") as retry:
            assert retry is False
    async with state.try_lock(a, "job") as after_b:
        assert after_b is True


async def test_blocking_lock_waits_for_the_holder(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    order: list[str] = []

    async def holder() -> None:
        async with state.lock(a, "token", timeout_s=5):
            order.append("a in")
            await asyncio.sleep(0.3)
            order.append("a out")

    async def waiter() -> None:
        await asyncio.sleep(0.05)
        async with state.lock(b, "token", timeout_s=5, wait_s=3):
            order.append("b in")

    await asyncio.gather(holder(), waiter())
    assert order == ["a in", "a out", "b in"]


async def test_blocking_lock_gives_up_after_wait_s(pair: tuple[Redis, Redis]) -> None:
    a, b = pair
    async with state.lock(a, "token", timeout_s=5):
        with pytest.raises(LockError):
            async with state.lock(b, "token", timeout_s=5, wait_s=0.2):
                pytest.fail("got a lock that another client holds")


async def test_every_key_has_the_prefix(r: Redis) -> None:
    await state.save_conversation(r, "u", {"a": 1})
    assert await state.admit(r, "1", "n", "m", 60) == "new"
    async with state.turn(r, "u", rate_limit=5) as turn, state.try_lock(r, "job") as got:
        assert got and turn.held and turn.within_rate
        keys = await all_keys(r)
    assert len(keys) == 6
    assert all(k.startswith(state.PREFIX) for k in keys), keys
