"""Recording ``core/v1`` Events about objects, like client-go's ``tools/record``.

``event()`` never blocks and never fails the caller: events are best effort and go through a
bounded queue to one writer task. Repeats of the same event (same object, type, reason and
message from the same source) are folded into the first Event by raising its ``count`` and
``lastTimestamp``, as the upstream event correlator does.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sampan.client.errors import ApiError

if TYPE_CHECKING:
    from sampan.client.rest import Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
QUEUE_SIZE = 1000
CACHE_SIZE = 4096
CLOSE_TIMEOUT = 5.0
DROP_LOG_INTERVAL = 10.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Key:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class _Seen:
    namespace: str
    name: str
    count: int


class EventRecorder:
    """Events from one component (``source.component``) on one host."""

    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 writers: int = 1, queue_size: int = QUEUE_SIZE):
        """``writers`` requests in flight at most: a component recording hundreds of events
        a second (the scheduler's ``Scheduled``) needs more than one."""
        self.client = client
        self.component = component
        self.host = host if host is not None else socket.gethostname()
        self.writers = max(1, writers)
        self._queue: asyncio.Queue[tuple[_Key, dict[str, Any]]] = asyncio.Queue(queue_size)
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self._dropped_logged_at = 0.0

    def event(self, obj: dict[str, Any], type: str, reason: str, message: str) -> None:
        """Record that ``reason`` happened to ``obj``; ``type`` is Normal or Warning."""
        meta = obj.get("metadata") or {}
        key = _Key(obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "",
                   meta.get("name", ""), meta.get("uid", ""), type, reason, message)
        involved = {"apiVersion": key.api_version, "kind": key.kind, "name": key.name,
                    "uid": key.uid, "resourceVersion": meta.get("resourceVersion", "")}
        if key.namespace:
            involved["namespace"] = key.namespace
        try:
            self._queue.put_nowait((key, involved))
        except asyncio.QueueFull:
            self.dropped += 1
            now = time.monotonic()
            if now - self._dropped_logged_at > DROP_LOG_INTERVAL:
                self._dropped_logged_at = now
                log.warning("event queue full; %d events dropped so far", self.dropped,
                            extra={"reason": reason})
            return
        self._tasks = [t for t in self._tasks if not t.done()]
        if len(self._tasks) < self.writers and (not self._tasks or self._queue.qsize() > 1):
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._write_all(), name="event recorder"))

    async def flush(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Wait until queued events are written (or the timeout passes)."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            log.warning("gave up waiting for %d events", self._queue.qsize())

    async def close(self) -> None:
        await self.flush()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _write_all(self) -> None:
        while True:
            key, involved = await self._queue.get()
            try:
                await self._write(key, involved)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # best effort: a lost event must not stop the next ones
                log.warning("could not write event %s/%s: %r", key.name, key.reason, e)
            finally:
                self._queue.task_done()

    async def _write(self, key: _Key, involved: dict[str, Any]) -> None:
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            try:
                await self.client.patch("v1", "events", seen.name, namespace=seen.namespace,
                                        patch={"count": seen.count + 1, "lastTimestamp": _now()})
                seen.count += 1
                return
            except ApiError as e:
                if not e.not_found:  # an expired Event is recreated below
                    raise
        created = await self.client.create("v1", "events", self._new_event(key, involved))
        meta = created["metadata"]
        self._seen[key] = _Seen(meta["namespace"], meta["name"], 1)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)

    def _new_event(self, key: _Key, involved: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{key.name}.{time.time_ns():x}",
                         "namespace": key.namespace or "default"},
            "involvedObject": involved,
            "reason": key.reason, "message": key.message, "type": key.type,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
