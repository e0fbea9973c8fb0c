"""The work queue and its rate limiters (client-go's util/workqueue semantics)."""

from __future__ import annotations

import asyncio

import pytest

from sampan.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- rate limiters ---------------------------------------------------------------------------


def test_exponential_backoff_doubles_per_item_up_to_the_cap() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    assert all(b >= a for a, b in zip(delays, delays[1:]))
    assert limiter.when("b") == 0.005  # items back off independently
    assert limiter.num_requeues("a") == 20


def test_forget_resets_an_items_backoff() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(5):
        limiter.when("a")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005


def test_exponential_backoff_survives_very_many_failures() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(2000):
        delay = limiter.when("a")
    assert delay == 1000.0


def test_bucket_allows_a_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=10.0, burst=100, clock=clock)
    assert [bucket.when(i) for i in range(100)] == [0.0] * 100
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)  # reservations queue up
    clock.now += 10.0  # tokens refill
    assert bucket.when("z") == 0.0


def test_max_of_takes_the_longest_delay_and_forgets_everywhere() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                               BucketRateLimiter(qps=1.0, burst=1, clock=clock))
    assert limiter.when("a") == 0.005  # bucket had one token
    assert limiter.when("a") == pytest.approx(1.0)  # bucket empty: 1 s beats 10 ms
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_rate_limiter_matches_client_go() -> None:
    limiter = default_controller_rate_limiter()
    assert limiter.when("k") == 0.005
    exp, bucket = limiter.limiters
    assert (exp.base_delay, exp.max_delay) == (0.005, 1000.0)
    assert (bucket.qps, bucket.burst) == (10.0, 100)


# -- the queue ---------------------------------------------------------------------------------


async def test_adding_a_waiting_item_again_is_a_no_op() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_an_item_added_while_processing_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first has it
    q.done(item)
    assert len(q) == 1
    assert await q.get() == "a"


async def test_done_without_re_add_drops_the_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0


async def test_get_waits_for_an_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.add("a")
    assert await asyncio.wait_for(getter, 1.0) == "a"


async def test_many_waiting_getters_each_get_one_item() -> None:
    q: WorkQueue[int] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(5)]
    await asyncio.sleep(0)
    for i in range(5):
        q.add(i)
    assert sorted(await asyncio.wait_for(asyncio.gather(*getters), 1.0)) == [0, 1, 2, 3, 4]


async def test_a_cancelled_getter_does_not_swallow_an_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    cancelled = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    assert await asyncio.wait_for(waiting, 1.0) == "a"


async def test_shut_down_drains_then_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.shut_down()
    q.add("b")  # refused after shutdown
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()


async def test_shut_down_wakes_waiting_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shut_down()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 1.0)
    assert all(isinstance(r, ShutDown) for r in results)


# -- delays and rate limiting -------------------------------------------------------------------


async def test_add_after_delivers_once_the_delay_passes() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue()
    q.add_after("a", 0.05)
    assert len(q) == 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(q.get(), 1.0) == "a"
    assert loop.time() - started >= 0.04


async def test_add_after_keeps_the_earliest_pending_time() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue()
    q.add_after("a", 10.0)
    q.add_after("a", 0.02)  # earlier wins
    q.add_after("a", 5.0)   # later is ignored
    assert await asyncio.wait_for(q.get(), 1.0) == "a"
    q.done("a")
    await asyncio.sleep(0.05)
    assert len(q) == 0  # delivered once


async def test_add_after_zero_is_an_add() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue()
    q.add_after("a", 0)
    assert len(q) == 1


async def test_add_rate_limited_backs_off_per_item_until_forgotten() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.01, 1.0)
    q: RateLimitingQueue[str] = RateLimitingQueue(limiter)
    for expected in (1, 2, 3):
        q.add_rate_limited("a")
        assert q.num_requeues("a") == expected
        q.done(await asyncio.wait_for(q.get(), 1.0))
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_shut_down_cancels_delayed_adds() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue()
    q.add_after("a", 0.02)
    q.shut_down()
    await asyncio.sleep(0.05)
    assert len(q) == 0
    with pytest.raises(ShutDown):
        await q.get()


async def test_queues_export_client_go_metrics() -> None:
    from prometheus_client import REGISTRY

    labels = {"name": "metrics-test"}
    q: RateLimitingQueue[str] = RateLimitingQueue(name="metrics-test")
    q.add("a")
    q.add("b")
    assert REGISTRY.get_sample_value("workqueue_depth", labels) == 2
    item = await q.get()
    assert REGISTRY.get_sample_value("workqueue_depth", labels) == 1
    q.done(item)
    q.add_rate_limited(item)
    assert REGISTRY.get_sample_value("workqueue_adds_total", labels) == 2
    assert REGISTRY.get_sample_value("workqueue_retries_total", labels) == 1
    assert REGISTRY.get_sample_value("workqueue_work_duration_seconds_count", labels) == 1
