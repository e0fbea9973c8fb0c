"""Work queues of keys, as client-go's ``util/workqueue``.

``WorkQueue`` guarantees that an item is processed by one worker at a time and that adding an
item already waiting is a no-op (dedup); an item added while it is processed is queued again
when the worker calls ``done``. ``RateLimitingQueue`` adds delayed adds (``add_after``) and
per-item backoff (``add_rate_limited`` / ``forget``) driven by a ``RateLimiter``.

Everything runs on the event loop: no threads, no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T", bound=Hashable)

# client-go's workqueue metrics, by queue name.
_BUCKETS = tuple(1e-8 * 10 ** i for i in range(11))
_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ["name"])
_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"])
_RETRIES = Counter("workqueue_retries_total", "Total number of retries handled by workqueue",
                   ["name"])
_QUEUE_DURATION = Histogram("workqueue_queue_duration_seconds",
                            "How long in seconds an item stays in workqueue before being "
                            "requested", ["name"], buckets=_BUCKETS)
_WORK_DURATION = Histogram("workqueue_work_duration_seconds",
                           "How long in seconds processing an item from workqueue takes",
                           ["name"], buckets=_BUCKETS)


class ShutDown(Exception):
    """The queue was shut down and has nothing left to hand out."""


# -- rate limiters ---------------------------------------------------------------------------


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before ``item`` may be processed again."""

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (it succeeded)."""

    def num_requeues(self, item: Hashable) -> int:
        ...


class ItemExponentialFailureRateLimiter:
    """``base * 2**failures`` per item, capped."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp > 64:  # 2**64 * base is past any cap; avoid huge floats
            return self.max_delay
        return min(self.base_delay * 2 ** exp, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (``golang.org/x/time/rate`` reservations): ``qps`` tokens a
    second, at most ``burst`` saved up; a caller without a token is told when its will come."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock=time.monotonic):
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any of the limiters asks for."""

    def __init__(self, *limiters: RateLimiter):
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> MaxOfRateLimiter:
    """Per-item exponential backoff 5 ms → 1000 s, and 10 qps / 100 burst overall."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(qps=10.0, burst=100))


# -- queues ------------------------------------------------------------------------------------


class WorkQueue(Generic[T]):
    """A FIFO of distinct items with processing/dirty bookkeeping."""

    def __init__(self, name: str = ""):
        self.name = name
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        self._depth = _DEPTH.labels(name)
        self._adds = _ADDS.labels(name)
        self._queue_duration = _QUEUE_DURATION.labels(name)
        self._work_duration = _WORK_DURATION.labels(name)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        self._adds.inc()
        self._added_at.setdefault(item, time.monotonic())
        if item in self._processing:
            return  # queued again by done()
        self._push(item)

    async def get(self) -> T:
        """The next item, waiting for one; ``ShutDown`` once shut down and drained."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            finally:
                if not getter.done():
                    getter.cancel()
        item = self._queue.popleft()
        self._depth.dec()
        now = time.monotonic()
        self._queue_duration.observe(now - self._added_at.pop(item, now))
        self._started_at[item] = now
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        self._processing.discard(item)
        started = self._started_at.pop(item, None)
        if started is not None:
            self._work_duration.observe(time.monotonic() - started)
        if item in self._dirty:
            self._push(item)

    def _push(self, item: T) -> None:
        self._queue.append(item)
        self._depth.inc()
        self._wake_one()

    def shut_down(self) -> None:
        self._shutting_down = True
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return


class RateLimitingQueue(WorkQueue[T]):
    """A work queue with delayed adds and per-item rate-limited requeues."""

    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = ""):
        super().__init__(name)
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self._waiting: dict[T, tuple[float, asyncio.TimerHandle]] = {}

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed; an earlier pending add wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(item)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        handle = loop.call_at(ready_at, self._fire, item)
        self._waiting[item] = (ready_at, handle)

    def _fire(self, item: T) -> None:
        self._waiting.pop(item, None)
        self.add(item)

    def add_rate_limited(self, item: T) -> None:
        _RETRIES.labels(self.name).inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def shut_down(self) -> None:
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        super().shut_down()
