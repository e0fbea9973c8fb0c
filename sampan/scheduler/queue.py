"""The scheduling queue (upstream ``internal/queue``): three places a pending pod can be.

- activeQ: a heap ordered by the profile's queue-sort plugin (priority, then time); the
  scheduler pops from it.
- backoffQ: pods that failed recently, each waiting ``1s * 2^(attempts-1)`` (at most 10s).
- unschedulable pods: pods no node fits. A cluster event that could help (a node added, a pod
  deleted, ...; each plugin registers the events that may undo its rejections) moves them back
  to activeQ or backoffQ; after five minutes they are retried anyway. Pods held by a
  pre-enqueue plugin (scheduling gates) also wait here until their own update releases them.

It also keeps the *nominated* pods: pods that preempted others and wait for room on a node.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sampan.scheduler.cache import PodInfo
from sampan.scheduler.framework import Framework, Status

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE_DURATION = 300.0
FLUSH_BACKOFF_INTERVAL = 1.0
FLUSH_UNSCHEDULABLE_INTERVAL = 30.0

# Cluster events, as "Resource/Action" (upstream framework.ClusterEvent).
NODE_ADD = "Node/Add"
NODE_DELETE = "Node/Delete"
NODE_ALLOCATABLE = "Node/UpdateNodeAllocatable"
NODE_LABEL = "Node/UpdateNodeLabel"
NODE_TAINT = "Node/UpdateNodeTaint"
NODE_CONDITION = "Node/UpdateNodeCondition"
POD_ADD = "Pod/Add"            # an assigned pod appeared
POD_UPDATE = "Pod/Update"      # an assigned pod changed (labels, ...)
POD_DELETE = "Pod/Delete"      # an assigned pod went away
PVC_CHANGE = "PersistentVolumeClaim/*"
PV_CHANGE = "PersistentVolume/*"
STORAGE_CLASS_CHANGE = "StorageClass/*"
UNSCHEDULABLE_TIMEOUT = "UnschedulableTimeout"
FORCE_ACTIVATE = "ForceActivate"


def event_matches(registered: str, event: str) -> bool:
    if registered == event or registered == "*":
        return True
    resource, _, action = registered.partition("/")
    return action == "*" and event.startswith(resource + "/")


@dataclass(eq=False)
class QueuedPodInfo:
    pod: PodInfo
    timestamp: float                       # last time it entered the queue
    initial_attempt: float | None = None   # first time it was popped
    attempts: int = 0
    unschedulable_plugins: set[str] = field(default_factory=set)
    gated_by: str = ""                     # the pre-enqueue plugin holding it, if any
    error: bool = False

    @property
    def key(self) -> str:
        return self.pod.key


class SchedulingQueue:
    """activeQ + backoffQ + unschedulable pods for every profile (one queue-sort order)."""

    def __init__(self, frameworks: dict[str, Framework], *, clock: Callable[[], float] =
                 time.monotonic, initial_backoff: float = INITIAL_BACKOFF,
                 max_backoff: float = MAX_BACKOFF,
                 max_unschedulable: float = MAX_UNSCHEDULABLE_DURATION):
        self.frameworks = frameworks
        self.sort = next(iter(frameworks.values())).queue_sort
        self.clock = clock
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable = max_unschedulable
        self._seq = itertools.count()
        self._active_heap: list[tuple[Any, ...]] = []
        self.active: dict[str, tuple[Any, ...]] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self.backoff: dict[str, tuple[QueuedPodInfo, float]] = {}
        self.unschedulable: dict[str, QueuedPodInfo] = {}
        self.in_flight: dict[str, QueuedPodInfo] = {}
        self._in_flight_changed: dict[str, PodInfo | None] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._wakeup = asyncio.Event()
        self._closed = False
        self.on_gated: Callable[[PodInfo], None] | None = None  # told when a gate holds a pod
        self._events = {}
        for fw in frameworks.values():
            for plugin, events in fw.events_by_plugin().items():
                self._events.setdefault(plugin, set()).update(events)
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self._nominated_node: dict[str, str] = {}

    # -- sizes (metrics) -------------------------------------------------------------------
    def pending(self) -> dict[str, int]:
        gated = sum(1 for q in self.unschedulable.values() if q.gated_by)
        return {"active": len(self.active), "backoff": len(self.backoff),
                "unschedulable": len(self.unschedulable) - gated, "gated": gated}

    def __len__(self) -> int:
        return len(self.active) + len(self.backoff) + len(self.unschedulable)

    def __contains__(self, key: str) -> bool:
        return key in self.active or key in self.backoff or key in self.unschedulable

    # -- adding ------------------------------------------------------------------------------
    def _framework(self, pod: PodInfo) -> Framework | None:
        from sampan.scheduler.framework import DEFAULT_SCHEDULER_NAME
        return self.frameworks.get(pod.spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME)

    def _pre_enqueue(self, qpi: QueuedPodInfo) -> bool:
        fw = self._framework(qpi.pod)
        status = fw.run_pre_enqueue(qpi.pod) if fw is not None else Status()
        qpi.gated_by = "" if status.success else (status.plugin or "PreEnqueue")
        return status.success

    def _to_active(self, qpi: QueuedPodInfo) -> None:
        if not self._pre_enqueue(qpi):
            self.unschedulable[qpi.key] = qpi
            if self.on_gated is not None:
                self.on_gated(qpi.pod)
            return
        self.unschedulable.pop(qpi.key, None)
        self._drop_backoff(qpi.key)
        entry = (*self.sort.sort_key(qpi.pod, qpi.timestamp), next(self._seq), qpi)
        self.active[qpi.key] = entry
        heapq.heappush(self._active_heap, entry)
        self._wakeup.set()

    def _to_backoff(self, qpi: QueuedPodInfo) -> None:
        self.unschedulable.pop(qpi.key, None)
        expiry = qpi.timestamp + self.backoff_duration(qpi)
        self.backoff[qpi.key] = (qpi, expiry)
        heapq.heappush(self._backoff_heap, (expiry, next(self._seq), qpi.key))

    def _drop_backoff(self, key: str) -> None:
        self.backoff.pop(key, None)  # its heap entry is skipped lazily

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        if qpi.attempts <= 0:
            return 0.0
        return min(self.initial_backoff * 2 ** (qpi.attempts - 1), self.max_backoff)

    def _backing_off(self, qpi: QueuedPodInfo, now: float) -> bool:
        return qpi.timestamp + self.backoff_duration(qpi) > now

    def add(self, pod: PodInfo) -> None:
        """A new pending pod."""
        if pod.key in self or pod.key in self.in_flight:
            self.update(pod)
            return
        self._add_nominated_from(pod)
        self._to_active(QueuedPodInfo(pod, self.clock()))

    def update(self, pod: PodInfo) -> None:
        """A pending pod changed: an unschedulable (or gated) pod gets another chance."""
        key = pod.key
        self._add_nominated_from(pod)
        if key in self.in_flight:
            self._in_flight_changed[key] = pod
            return
        entry = self.active.get(key)
        if entry is not None:
            entry[-1].pod = pod
            return
        held = self.backoff.get(key)
        if held is not None:
            held[0].pod = pod
            return
        qpi = self.unschedulable.get(key)
        if qpi is None:
            self.add(pod)
            return
        qpi.pod = pod
        if qpi.gated_by or not self._backing_off(qpi, self.clock()):
            self._to_active(qpi)
        else:
            self._to_backoff(qpi)

    def refresh(self, pod: PodInfo) -> None:
        """A pending pod changed only in ways no plugin cares about (its status): keep the
        newer object where it waits, without moving it."""
        self._add_nominated_from(pod)
        entry = self.active.get(pod.key)
        if entry is not None:
            entry[-1].pod = pod
        elif pod.key in self.backoff:
            self.backoff[pod.key][0].pod = pod
        elif pod.key in self.unschedulable:
            self.unschedulable[pod.key].pod = pod
        elif pod.key in self.in_flight:
            self.in_flight[pod.key].pod = pod

    def delete(self, key: str) -> None:
        self.active.pop(key, None)
        self._drop_backoff(key)
        self.unschedulable.pop(key, None)
        if key in self.in_flight:
            self._in_flight_changed[key] = None
        self.delete_nominated(key)

    # -- popping -------------------------------------------------------------------------------
    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule, waiting for one if activeQ is empty."""
        while True:
            qpi = self.pop_nowait()
            if qpi is not None:
                return qpi
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            await self._wakeup.wait()

    def pop_nowait(self) -> QueuedPodInfo | None:
        """The next pod if one is ready, without waiting."""
        while self._active_heap:
            entry = self._active_heap[0]
            if self.active.get(entry[-1].key) is entry:
                break
            heapq.heappop(self._active_heap)
        if not self._active_heap:
            return None
        entry = heapq.heappop(self._active_heap)
        qpi = entry[-1]
        del self.active[qpi.key]
        self.scheduling_cycle += 1
        qpi.attempts += 1
        if qpi.initial_attempt is None:
            qpi.initial_attempt = self.clock()
        self.in_flight[qpi.key] = qpi
        return qpi

    def done(self, key: str) -> None:
        """The scheduler is finished with the pod it popped (bound or requeued)."""
        self.in_flight.pop(key, None)
        self._in_flight_changed.pop(key, None)

    def requeue(self, qpi: QueuedPodInfo, cycle: int, *, error: bool = False) -> None:
        """Put back a pod that failed its attempt (AddUnschedulableIfNotPresent)."""
        key = qpi.key
        changed = self._in_flight_changed.pop(key, False)
        self.in_flight.pop(key, None)
        if changed is None:  # deleted meanwhile
            return
        if key in self:
            return
        if changed is not False:
            qpi.pod = changed
        qpi.timestamp = self.clock()
        qpi.error = error
        if error or changed is not False or self.move_request_cycle >= cycle:
            self._to_backoff(qpi)
        else:
            self.unschedulable[key] = qpi

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    # -- moving -------------------------------------------------------------------------------
    def flush_backoff(self) -> None:
        now = self.clock()
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff_heap)
            held = self.backoff.get(key)
            if held is None or held[1] > now:
                continue
            del self.backoff[key]
            self._to_active(held[0])

    def flush_unschedulable(self) -> None:
        now = self.clock()
        stale = [q for q in self.unschedulable.values()
                 if not q.gated_by and now - q.timestamp > self.max_unschedulable]
        self._move(stale, now)

    def on_event(self, event: str, precheck: Callable[[PodInfo], bool] | None = None) -> None:
        """A cluster event: move the unschedulable pods it may help."""
        self.move_request_cycle = self.scheduling_cycle
        if not self.unschedulable:
            return
        movable = [q for q in self.unschedulable.values()
                   if not q.gated_by and self._interested(q, event)
                   and (precheck is None or precheck(q.pod))]
        self._move(movable, self.clock())

    def _interested(self, qpi: QueuedPodInfo, event: str) -> bool:
        if not qpi.unschedulable_plugins or event in (UNSCHEDULABLE_TIMEOUT, FORCE_ACTIVATE):
            return True
        return any(event_matches(registered, event)
                   for plugin in qpi.unschedulable_plugins
                   for registered in self._events.get(plugin, ()))

    def _move(self, pods: Iterable[QueuedPodInfo], now: float) -> None:
        for qpi in pods:
            if self._backing_off(qpi, now):
                self._to_backoff(qpi)
            else:
                self._to_active(qpi)

    async def run(self) -> None:
        """Flush backoffQ every second and old unschedulable pods every 30s, until cancelled."""
        last_unschedulable_flush = self.clock()
        while True:
            await asyncio.sleep(min(FLUSH_BACKOFF_INTERVAL, self.initial_backoff))
            self.flush_backoff()
            if self.clock() - last_unschedulable_flush >= FLUSH_UNSCHEDULABLE_INTERVAL:
                last_unschedulable_flush = self.clock()
                self.flush_unschedulable()

    # -- nominated pods --------------------------------------------------------------------
    def _add_nominated_from(self, pod: PodInfo) -> None:
        node = (pod.pod.get("status") or {}).get("nominatedNodeName") or ""
        if node:
            self.add_nominated(pod, node)
        elif pod.key in self._nominated_node:
            self.delete_nominated(pod.key)

    def add_nominated(self, pod: PodInfo, node_name: str) -> None:
        self.delete_nominated(pod.key)
        self.nominated.setdefault(node_name, {})[pod.key] = pod
        self._nominated_node[pod.key] = node_name

    def delete_nominated(self, key: str) -> None:
        node = self._nominated_node.pop(key, None)
        if node is not None:
            pods = self.nominated.get(node, {})
            pods.pop(key, None)
            if not pods:
                self.nominated.pop(node, None)

    def nominated_pods_for_node(self, node_name: str) -> list[PodInfo]:
        return list(self.nominated.get(node_name, {}).values())
