"""In-process watch fan-out for the SQLite store: a ring of recent events and one queue per watcher.

The writer publishes every committed batch here (on the event loop). Each watcher has its own
bounded queue, so a slow consumer never blocks the writer or other watchers: when a watcher's
queue would exceed ``max_pending`` events, its queue is dropped and the watcher is marked
*lagging*. A lagging watcher catches up again from the ring, or from the log table when the ring
no longer reaches back far enough, and then rejoins the live stream (etcd's synced / unsynced
watcher split). Consumers dedupe by revision, so the hand-over has no gaps and no duplicates.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .base import Event


class Watcher:
    """One consumer's view: events under ``prefix`` after ``last``."""

    __slots__ = ("_pending", "_pending_events", "_wake", "closed", "lagging", "last", "prefix")

    def __init__(self, prefix: str, last: int) -> None:
        self.prefix = prefix
        self.last = last  # the highest revision handed to the consumer
        self.lagging = True  # starts by catching up from history
        self.closed = False
        self._pending: deque[list[Event]] = deque()
        self._pending_events = 0
        self._wake = asyncio.Event()

    def push(self, events: list[Event], max_pending: int) -> None:
        if self.lagging:
            return
        if self._pending_events + len(events) > max_pending:
            self.lag()
        else:
            self._pending.append(events)
            self._pending_events += len(events)
        self._wake.set()

    def lag(self) -> None:
        """Drop queued events: the consumer must catch up from history."""
        self.lagging = True
        self._pending.clear()
        self._pending_events = 0

    def resume(self) -> None:
        """Accept live events again (called right before catching up)."""
        self.lagging = False

    def pop(self) -> list[Event] | None:
        """The next queued events newer than ``last`` (possibly empty), or None if none queued."""
        if not self._pending:
            return None
        batch = self._pending.popleft()
        self._pending_events -= len(batch)
        return [e for e in batch if e.revision > self.last]

    async def wait(self) -> None:
        self._wake.clear()
        if not self._pending and not self.lagging and not self.closed:
            await self._wake.wait()

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class Broadcaster:
    """Recent events (a ring) and the live watchers; used only from the event loop thread."""

    def __init__(self, revision: int, *, ring_size: int = 8192, max_pending: int = 20000) -> None:
        self._ring: deque[Event] = deque()
        self._ring_size = ring_size
        self._ring_start = revision  # the ring holds every event with revision > _ring_start
        self._max_pending = max_pending
        self._watchers: set[Watcher] = set()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def publish(self, events: list[Event]) -> None:
        if not events:
            return
        self._append(events)
        for watcher in self._watchers:
            matching = [e for e in events if e.kv.key.startswith(watcher.prefix)]
            if matching:
                watcher.push(matching, self._max_pending)

    def since(self, revision: int, prefix: str) -> list[Event] | None:
        """Events under ``prefix`` after ``revision``, or None if the ring does not reach back."""
        if revision < self._ring_start:
            return None
        return [e for e in self._ring if e.revision > revision and e.kv.key.startswith(prefix)]

    def subscribe(self, prefix: str, after_revision: int) -> Watcher:
        watcher = Watcher(prefix, after_revision)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        watcher.close()

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()

    def _append(self, events: list[Event]) -> None:
        self._ring.extend(events)
        while len(self._ring) > self._ring_size:
            self._ring_start = self._ring.popleft().revision
