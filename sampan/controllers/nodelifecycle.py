"""Node lifecycle: heartbeats, node condition taints and taint-based eviction.

Two controllers, as upstream's ``pkg/controller/nodelifecycle`` and
``pkg/controller/tainteviction``:

``NodeLifecycleController`` ("node-controller") watches each Node's heartbeat (its Lease in
``kube-node-lease`` and its Ready condition). A node silent for longer than the grace period
gets Ready/MemoryPressure/DiskPressure/PIDPressure ``Unknown``; its pods are marked not ready;
``NoSchedule`` taints mirror its conditions and ``spec.unschedulable``, and a rate-limited
queue per zone adds the ``unreachable`` / ``not-ready`` ``NoExecute`` taints. When every zone
is down at once the controller assumes the problem is its own (the control plane lost the
nodes, not the other way round) and stops tainting.

``TaintEvictionController`` ("taint-eviction-controller") deletes pods from nodes with
``NoExecute`` taints they do not tolerate at once, and those tolerating them for
``tolerationSeconds`` when that time is up.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, object_key, split_key
from sampan.client.rest import Client, retry_on_conflict
from sampan.controllers.util import now_rfc3339, parse_time

log = logging.getLogger(__name__)

Object = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
POD_NODE_NAME_INDEX = "spec.nodeName"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"

# Node condition type → {condition status → taint key}.
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE},
    "MemoryPressure": {"True": TAINT_MEMORY_PRESSURE},
    "DiskPressure": {"True": TAINT_DISK_PRESSURE},
    "NetworkUnavailable": {"True": TAINT_NETWORK_UNAVAILABLE},
    "PIDPressure": {"True": TAINT_PID_PRESSURE},
}
_CONDITION_TAINT_KEYS = {key for by_status in CONDITION_TAINTS.values() for key in by_status.values()}
# NetworkUnavailable belongs to the network plugin, not to the kubelet's heartbeat.
HEARTBEAT_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

# Upstream's kube-controller-manager defaults (node-monitor-grace-period is 50 s since 1.32).
NODE_MONITOR_PERIOD = 5.0
NODE_MONITOR_GRACE_PERIOD = 50.0
NODE_STARTUP_GRACE_PERIOD = 60.0
NODE_EVICTION_RATE = 0.1
SECONDARY_NODE_EVICTION_RATE = 0.01
LARGE_CLUSTER_SIZE_THRESHOLD = 50
UNHEALTHY_ZONE_THRESHOLD = 0.55
EVICTION_RATE_BURST = 1
NODE_EVICTION_PERIOD = 0.1
UPDATE_CONCURRENCY = 8
EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"

STATE_INITIAL, STATE_NORMAL = "Initial", "Normal"
STATE_FULL_DISRUPTION, STATE_PARTIAL_DISRUPTION = "FullDisruption", "PartialDisruption"


# -- taints and tolerations -------------------------------------------------------------------


def taint_matches(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same key and effect: the identity of a taint (``MatchTaint``)."""
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def has_taint(taints: Iterable[Mapping[str, Any]], key: str, effect: str) -> bool:
    return any(t.get("key") == key and t.get("effect") == effect for t in taints)


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``: an empty key with Exists tolerates every key; an empty
    effect every effect."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def matching_tolerations(taints: list[Mapping[str, Any]],
                         tolerations: list[Mapping[str, Any]]) -> tuple[bool, list[Mapping[str, Any]]]:
    """Whether every taint is tolerated, and the first toleration used for each."""
    used = []
    for taint in taints:
        for toleration in tolerations:
            if tolerates(toleration, taint):
                used.append(toleration)
                break
        else:
            return False, []
    return True, used


def min_toleration_seconds(tolerations: list[Mapping[str, Any]]) -> float:
    """The shortest ``tolerationSeconds`` (0 for none given, -1 when all tolerate forever)."""
    if not tolerations:
        return 0.0
    shortest: float | None = None
    for toleration in tolerations:
        seconds = toleration.get("tolerationSeconds")
        if seconds is None:
            continue
        if seconds <= 0:
            return 0.0
        shortest = seconds if shortest is None else min(shortest, seconds)
    return -1.0 if shortest is None else float(shortest)


def no_execute_taints(node: Mapping[str, Any] | None) -> list[Object]:
    if node is None:
        return []
    return [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == NO_EXECUTE]


def swap_taints(taints: list[Object], add: list[Object], remove: list[Object],
                now: str) -> list[Object] | None:
    """``taints`` without ``remove`` and with ``add`` (stamped ``timeAdded``); None when that
    changes nothing."""
    kept = [t for t in taints if not any(taint_matches(t, r) for r in remove)]
    for taint in add:
        if not any(taint_matches(t, taint) for t in kept):
            kept.append({**taint, "timeAdded": now})
    return None if kept == taints else kept


def node_condition(node: Mapping[str, Any], type_: str) -> Object | None:
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return condition
    return None


def zone_key(node: Mapping[str, Any]) -> str:
    """``nodetopology.GetZoneKey``: region and zone labels (stable, then beta)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or \
        labels.get("failure-domain.beta.kubernetes.io/region") or ""
    zone = labels.get("topology.kubernetes.io/zone") or \
        labels.get("failure-domain.beta.kubernetes.io/zone") or ""
    return f"{region}:\x00:{zone}" if region or zone else ""


def index_pod_by_node_name(pod: Object) -> list[str]:
    node_name = (pod.get("spec") or {}).get("nodeName")
    return [node_name] if node_name else []


def node_ref(node: Mapping[str, Any]) -> Object:
    """What an Event about a node names (namespace-less, as upstream's ``RecordNodeEvent``)."""
    meta = node.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": meta.get("name"), "uid": meta.get("uid") or meta.get("name")}}


def pod_ref(namespace: str, name: str) -> Object:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name}}


async def update_node_taints(client: Client, name: str, add: list[Object],
                             remove: list[Object]) -> bool:
    """Swap taints on the node (``SwapNodeControllerTaint``), re-reading on conflict; False
    when the node is gone."""
    async def write() -> bool:
        try:
            node = await client.get("v1", "nodes", name)
        except ApiError as e:
            if e.not_found:
                return False
            raise
        taints = (node.get("spec") or {}).get("taints") or []
        new = swap_taints(taints, add, remove, now_rfc3339())
        if new is None:
            return True
        node.setdefault("spec", {})["taints"] = new or None
        try:
            await client.update("v1", "nodes", node)
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return True
    return await retry_on_conflict(write)


async def mark_pods_not_ready(client: Client, recorder: EventRecorder | None,
                              pods: Iterable[Object], node_name: str) -> None:
    """Set each pod's Ready condition False (``MarkPodsNotReady``); a Warning NodeNotReady
    Event on each pod changed."""
    errors: list[Exception] = []
    for cached in pods:
        if (cached.get("spec") or {}).get("nodeName") != node_name:
            continue
        ready = next((c for c in (cached.get("status") or {}).get("conditions") or ()
                      if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") == "False":
            continue
        pod = copy.deepcopy(cached)
        for condition in pod["status"]["conditions"]:
            if condition.get("type") == "Ready":
                condition["status"] = "False"
                condition["lastTransitionTime"] = now_rfc3339()
        try:
            await client.update("v1", "pods", pod, subresource="status")
        except ApiError as e:
            if e.not_found:
                continue
            errors.append(e)
            continue
        if recorder is not None:
            recorder.event(pod, WARNING, "NodeNotReady", "Node is not ready")
    if errors:
        raise errors[0]


# -- rate-limited tainting ---------------------------------------------------------------------


class TokenBucket:
    """``flowcontrol.NewTokenBucketRateLimiter``: ``qps`` tokens a second, ``burst`` saved; a
    qps of 0 never allows anything."""

    def __init__(self, qps: float, burst: int = EVICTION_RATE_BURST, clock=time.monotonic):
        self.qps, self.burst, self._clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def try_accept(self) -> bool:
        if self.qps <= 0:
            return False
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass
class RateLimitedTimedQueue:
    """Node names waiting for a rate-limited action (``RateLimitedTimedQueue``): each name once,
    in order of addition; ``try_process`` hands them out while the limiter allows."""

    limiter: TokenBucket
    _items: dict[str, float] = field(default_factory=dict)  # name → not before (monotonic)

    def add(self, name: str) -> bool:
        if name in self._items:
            return False
        self._items[name] = 0.0
        return True

    def remove(self, name: str) -> bool:
        return self._items.pop(name, None) is not None

    def swap_limiter(self, qps: float) -> None:
        if qps != self.limiter.qps:
            self.limiter = TokenBucket(qps, self.limiter.burst, self.limiter._clock)

    def __len__(self) -> int:
        return len(self._items)

    def ready(self, now: float) -> list[str]:
        return [n for n, at in self._items.items() if at <= now]

    def retry_later(self, name: str, at: float) -> None:
        if name in self._items:
            self._items[name] = at


@dataclass
class _Health:
    """What the controller last saw of a node's heartbeat, timed by its own clock."""

    probe_timestamp: float
    ready_transition_timestamp: float
    ready: Object | None  # the Ready condition as last seen
    lease_renew: float | None = None


def compute_zone_state(ready_statuses: list[str | None],
                       unhealthy_threshold: float = UNHEALTHY_ZONE_THRESHOLD) -> tuple[int, str]:
    """(not-ready nodes, zone state) as ``ComputeZoneState``."""
    ready = sum(1 for s in ready_statuses if s == "True")
    not_ready = len(ready_statuses) - ready
    if ready == 0 and not_ready > 0:
        return not_ready, STATE_FULL_DISRUPTION
    if not_ready > 2 and not_ready / (not_ready + ready) >= unhealthy_threshold:
        return not_ready, STATE_PARTIAL_DISRUPTION
    return not_ready, STATE_NORMAL


def no_schedule_taint_diff(node: Mapping[str, Any]) -> tuple[list[Object], list[Object]]:
    """The NoSchedule taints the node's conditions and ``spec.unschedulable`` call for, as
    (to add, to remove) against the ones it has."""
    wanted: list[Object] = []
    for condition in (node.get("status") or {}).get("conditions") or ():
        key = CONDITION_TAINTS.get(condition.get("type"), {}).get(condition.get("status"))
        if key:
            wanted.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append({"key": TAINT_UNSCHEDULABLE, "effect": NO_SCHEDULE})
    current = [t for t in (node.get("spec") or {}).get("taints") or ()
               if t.get("effect") == NO_SCHEDULE
               and (t.get("key") == TAINT_UNSCHEDULABLE or t.get("key") in _CONDITION_TAINT_KEYS)]
    add = [t for t in wanted if not any(taint_matches(t, c) for c in current)]
    remove = [c for c in current if not any(taint_matches(t, c) for t in wanted)]
    return add, remove


# -- node lifecycle controller -----------------------------------------------------------------


class NodeLifecycleController(Controller):
    """Marks silent nodes Unknown, taints nodes after their conditions and marks the pods of
    unready nodes not ready. Queue keys: ``node:<name>`` (NoSchedule taints) and
    ``pod:<ns>/<name>`` (a pod newly bound to a node)."""

    name = "node-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 4,
                 node_monitor_period: float = NODE_MONITOR_PERIOD,
                 node_monitor_grace_period: float = NODE_MONITOR_GRACE_PERIOD,
                 node_startup_grace_period: float = NODE_STARTUP_GRACE_PERIOD,
                 node_eviction_rate: float = NODE_EVICTION_RATE,
                 secondary_node_eviction_rate: float = SECONDARY_NODE_EVICTION_RATE,
                 large_cluster_size_threshold: int = LARGE_CLUSTER_SIZE_THRESHOLD,
                 unhealthy_zone_threshold: float = UNHEALTHY_ZONE_THRESHOLD,
                 clock: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.node_monitor_period = node_monitor_period
        self.node_monitor_grace_period = node_monitor_grace_period
        self.node_startup_grace_period = node_startup_grace_period
        self.node_eviction_rate = node_eviction_rate
        self.secondary_node_eviction_rate = secondary_node_eviction_rate
        self.large_cluster_size_threshold = large_cluster_size_threshold
        self.unhealthy_zone_threshold = unhealthy_zone_threshold
        self.clock = clock
        self.nodes = informers.informer("v1", "nodes")
        self.leases = informers.informer("coordination.k8s.io/v1", "leases",
                                         namespace=NODE_LEASE_NAMESPACE)
        self.pods = informers.informer("v1", "pods",
                                       indexers={POD_NODE_NAME_INDEX: index_pod_by_node_name})
        self.known_nodes: dict[str, Object] = {}
        self.health: dict[str, _Health] = {}
        self.zone_states: dict[str, str] = {}
        self.zone_tainters: dict[str, RateLimitedTimedQueue] = {}
        self.nodes_to_retry: set[str] = set()
        self.nodes.add_event_handler(on_add=self._node_changed,
                                     on_update=lambda old, new: self._node_changed(new))
        self.pods.add_event_handler(on_add=lambda pod: self._pod_changed(None, pod),
                                    on_update=self._pod_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.nodes, self.leases, self.pods]

    def _node_changed(self, node: Object) -> None:
        self.queue.add("node:" + node["metadata"]["name"])

    def _pod_changed(self, old: Object | None, new: Object) -> None:
        node_name = (new.get("spec") or {}).get("nodeName")
        if node_name and (old is None or (old.get("spec") or {}).get("nodeName") != node_name):
            self.queue.add("pod:" + object_key(new))

    async def run(self) -> None:
        loops = [asyncio.create_task(self._every(self.node_monitor_period, self.monitor_node_health),
                                     name=f"{self.name} monitor"),
                 asyncio.create_task(self._every(NODE_EVICTION_PERIOD, self.no_execute_tainting_pass),
                                     name=f"{self.name} tainter")]
        try:
            await super().run()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _every(self, period: float, fn: Callable[[], Any]) -> None:
        await wait_for_synced(self.watched_informers())
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s failed", self.name, getattr(fn, "__name__", fn))
            await asyncio.sleep(period)

    # -- queue items ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "node":
            await self.no_schedule_tainting_pass(rest)
        elif kind == "pod":
            await self.process_pod(rest)

    async def no_schedule_tainting_pass(self, name: str) -> None:
        node = self.nodes.indexer.get(name)
        if node is None:
            return
        add, remove = no_schedule_taint_diff(node)
        if add or remove:
            await update_node_taints(self.client, name, add, remove)

    async def process_pod(self, key: str) -> None:
        """A pod just bound to a node the controller knows to be unready is not ready either."""
        pod = self.pods.indexer.get(key)
        if pod is None:
            return
        node_name = pod["spec"]["nodeName"]
        health = self.health.get(node_name)
        if health is None or self.nodes.indexer.get(node_name) is None:
            return
        current = node_condition(self.nodes.indexer.get(node_name), "Ready")
        if current is not None and current.get("status") != "True":
            await mark_pods_not_ready(self.client, self.recorder, [pod], node_name)

    # -- health --------------------------------------------------------------------------------
    async def monitor_node_health(self) -> None:
        nodes = self.nodes.indexer.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            name = node["metadata"]["name"]
            if name not in self.known_nodes:
                self._event(node, NORMAL, "RegisteredNode",
                            f"Node {name} event: Registered Node {name} in Controller")
                self.known_nodes[name] = node
                self._zone_tainter(node)
                await self.mark_node_reachable(node)
        for name in [n for n in self.known_nodes if n not in names]:
            node = self.known_nodes.pop(name)
            self.health.pop(name, None)
            self.nodes_to_retry.discard(name)
            self._event(node, NORMAL, "RemovingNode",
                        f"Node {name} event: Removing Node {name} from Controller")
        for node in nodes:
            self._zone_tainter(node)

        semaphore = asyncio.Semaphore(UPDATE_CONCURRENCY)
        zone_conditions: dict[str, list[str | None]] = {}

        async def one(node: Object) -> None:
            async with semaphore:
                ready = await self._update_node(node)
            if ready is not None and EXCLUDE_DISRUPTION_LABEL not in (
                    node["metadata"].get("labels") or {}):
                zone_conditions.setdefault(zone_key(node), []).append(ready)

        await asyncio.gather(*(one(n) for n in nodes))
        await self.handle_disruption(zone_conditions, nodes)

    async def _update_node(self, node: Object) -> str | None:
        """One node's pass: returns its Ready status for the zone's health (None on failure)."""
        name = node["metadata"]["name"]
        try:
            node, observed, current = await self._update_health_with_retries(node)
        except Exception as e:
            log.warning("%s: updating health of node %s failed: %r; no pods will be evicted",
                        self.name, name, e)
            return None
        if current is None:
            return None
        pods = self.pods.indexer.by_index(POD_NODE_NAME_INDEX, name)
        await self.process_taint_based_eviction(node, observed)
        became_unready = current.get("status") != "True" and observed.get("status") == "True"
        if became_unready:
            self._event(node, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        if became_unready or (name in self.nodes_to_retry and observed.get("status") != "True"):
            try:
                await mark_pods_not_ready(self.client, self.recorder, pods, name)
            except Exception as e:
                log.warning("%s: marking pods of node %s not ready failed: %r; will retry",
                            self.name, name, e)
                self.nodes_to_retry.add(name)
                return current.get("status")
        self.nodes_to_retry.discard(name)
        return current.get("status")

    async def _update_health_with_retries(self, node: Object) -> tuple[Object, Object, Object | None]:
        for attempt in range(5):
            try:
                return await self.try_update_node_health(copy.deepcopy(node))
            except ApiError as e:
                if not e.conflict or attempt == 4:
                    raise
            node = await self.client.get("v1", "nodes", node["metadata"]["name"])
        raise AssertionError("unreachable")

    def observe_health(self, node: Object) -> tuple[float, Object, _Health]:
        """Fold what the node shows now into the saved health (``tryUpdateNodeHealth``'s
        bookkeeping): the grace period that applies, the observed Ready condition, the health."""
        name = node["metadata"]["name"]
        now = self.clock()
        created = parse_time(node["metadata"].get("creationTimestamp")) or now
        current = node_condition(node, "Ready")
        saved = self.health.get(name)
        if current is None:
            observed: Object = {"type": "Ready", "status": "Unknown",
                                "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                "lastTransitionTime": node["metadata"].get("creationTimestamp")}
            grace = self.node_startup_grace_period
            if saved is None:
                saved = _Health(created, created, None)
            else:
                saved.ready = None
        else:
            observed = copy.deepcopy(current)
            grace = self.node_monitor_grace_period
        if saved is None or (saved.ready is None and current is not None):
            saved = _Health(now, now, copy.deepcopy(current), saved.lease_renew if saved else None)
        elif current is not None and saved.ready is not None and \
                saved.ready.get("lastHeartbeatTime") != current.get("lastHeartbeatTime"):
            transitioned = saved.ready.get("lastTransitionTime") != current.get("lastTransitionTime")
            saved = _Health(now, now if transitioned else saved.ready_transition_timestamp,
                            copy.deepcopy(current), saved.lease_renew)
        lease = self.leases.indexer.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        renew = parse_time(((lease or {}).get("spec") or {}).get("renewTime")) if lease else None
        if renew is not None and (saved.lease_renew is None or saved.lease_renew < renew):
            saved.lease_renew = renew
            saved.probe_timestamp = now
        self.health[name] = saved
        return grace, observed, saved

    async def try_update_node_health(self, node: Object) -> tuple[Object, Object, Object | None]:
        """(node, observed Ready condition, current Ready condition): after the grace period
        without a heartbeat, the heartbeat conditions become Unknown."""
        grace, observed, health = self.observe_health(node)
        current = node_condition(node, "Ready")
        if self.clock() <= health.probe_timestamp + grace:
            return node, observed, current
        now = now_rfc3339(self.clock())
        conditions = node.setdefault("status", {}).setdefault("conditions", [])
        for type_ in HEARTBEAT_CONDITIONS:
            condition = node_condition(node, type_)
            if condition is None:
                conditions.append({"type": type_, "status": "Unknown",
                                   "reason": "NodeStatusNeverUpdated",
                                   "message": "Kubelet never posted node status.",
                                   "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                   "lastTransitionTime": now})
            elif condition.get("status") != "Unknown":
                condition.update(status="Unknown", reason="NodeStatusUnknown",
                                 message="Kubelet stopped posting node status.",
                                 lastTransitionTime=now)
        current = node_condition(node, "Ready")
        if current != observed:
            node = await self.client.update("v1", "nodes", node, subresource="status")
            self.health[node["metadata"]["name"]] = _Health(
                health.probe_timestamp, self.clock(), copy.deepcopy(node_condition(node, "Ready")),
                health.lease_renew)
        return node, observed, current

    # -- NoExecute tainting --------------------------------------------------------------------
    def _zone_tainter(self, node: Object) -> RateLimitedTimedQueue:
        zone = zone_key(node)
        tainter = self.zone_tainters.get(zone)
        if tainter is None:
            self.zone_states[zone] = STATE_INITIAL
            tainter = RateLimitedTimedQueue(TokenBucket(self.node_eviction_rate))
            self.zone_tainters[zone] = tainter
        return tainter

    async def process_taint_based_eviction(self, node: Object, observed: Object) -> None:
        taints = (node.get("spec") or {}).get("taints") or []
        name = node["metadata"]["name"]
        status = observed.get("status")
        not_ready = {"key": TAINT_NOT_READY, "effect": NO_EXECUTE}
        unreachable = {"key": TAINT_UNREACHABLE, "effect": NO_EXECUTE}
        if status in ("False", "Unknown"):
            want, opposite = (not_ready, unreachable) if status == "False" else (unreachable, not_ready)
            if has_taint(taints, opposite["key"], NO_EXECUTE):
                # Already tainted the other way: swap at once, no rate limit.
                await update_node_taints(self.client, name, [want], [opposite])
                return
            tainter = self._zone_tainter(node)
            if not has_taint(taints, want["key"], NO_EXECUTE):
                tainter.remove(name)
            tainter.add(name)
        elif status == "True":
            await self.mark_node_reachable(node)

    async def mark_node_reachable(self, node: Object) -> None:
        taints = (node.get("spec") or {}).get("taints") or []
        name = node["metadata"]["name"]
        remove = [t for t in ({"key": TAINT_UNREACHABLE, "effect": NO_EXECUTE},
                              {"key": TAINT_NOT_READY, "effect": NO_EXECUTE})
                  if has_taint(taints, t["key"], NO_EXECUTE)]
        if remove:
            await update_node_taints(self.client, name, [], remove)
        self._zone_tainter(node).remove(name)

    async def no_execute_tainting_pass(self) -> None:
        now = time.monotonic()
        for tainter in list(self.zone_tainters.values()):
            for name in tainter.ready(now):
                if not tainter.limiter.try_accept():
                    break
                done = await self._taint_no_execute(name)
                if done:
                    tainter.remove(name)
                else:
                    tainter.retry_later(name, time.monotonic() + 0.05)

    async def _taint_no_execute(self, name: str) -> bool:
        node = self.nodes.indexer.get(name)
        if node is None:
            return True
        ready = node_condition(node, "Ready")
        if ready is None:
            return False
        not_ready = {"key": TAINT_NOT_READY, "effect": NO_EXECUTE}
        unreachable = {"key": TAINT_UNREACHABLE, "effect": NO_EXECUTE}
        if ready.get("status") == "False":
            add, remove = not_ready, unreachable
        elif ready.get("status") == "Unknown":
            add, remove = unreachable, not_ready
        else:
            return True
        try:
            await update_node_taints(self.client, name, [add], [remove])
        except ApiError as e:
            log.warning("%s: tainting node %s failed: %r", self.name, name, e)
            return False
        return True

    # -- disruption ----------------------------------------------------------------------------
    def _reduced_qps(self, size: int) -> float:
        return self.secondary_node_eviction_rate if size > self.large_cluster_size_threshold else 0.0

    def _set_limiter(self, zone: str, size: int, state: str) -> None:
        tainter = self.zone_tainters.get(zone)
        if tainter is None:
            return
        if state == STATE_NORMAL:
            tainter.swap_limiter(self.node_eviction_rate)
        elif state == STATE_PARTIAL_DISRUPTION:
            tainter.swap_limiter(self._reduced_qps(size))
        elif state == STATE_FULL_DISRUPTION:
            tainter.swap_limiter(self.node_eviction_rate)

    async def handle_disruption(self, zone_conditions: dict[str, list[str | None]],
                                nodes: list[Object]) -> None:
        """Slow or stop tainting when a zone (or the whole cluster) looks disrupted."""
        new_states: dict[str, str] = {}
        all_fully_disrupted = True
        for zone, statuses in zone_conditions.items():
            _, state = compute_zone_state(statuses, self.unhealthy_zone_threshold)
            all_fully_disrupted &= state == STATE_FULL_DISRUPTION
            new_states[zone] = state
            self.zone_states.setdefault(zone, STATE_INITIAL)
        all_were_fully_disrupted = True
        for zone in list(self.zone_states):
            if zone not in zone_conditions:
                del self.zone_states[zone]
                continue
            if self.zone_states[zone] != STATE_FULL_DISRUPTION:
                all_were_fully_disrupted = False
        if not zone_conditions or (all_fully_disrupted and all_were_fully_disrupted):
            return
        if all_fully_disrupted:
            log.info("%s: every node is not ready; entering master disruption mode", self.name)
            for node in nodes:
                await self.mark_node_reachable(node)
            for zone in self.zone_states:
                if zone in self.zone_tainters:
                    self.zone_tainters[zone].swap_limiter(0.0)
                self.zone_states[zone] = STATE_FULL_DISRUPTION
            return
        if all_were_fully_disrupted:
            log.info("%s: some nodes are ready; leaving master disruption mode", self.name)
            now = self.clock()
            for health in self.health.values():
                health.probe_timestamp = health.ready_transition_timestamp = now
        for zone, state in new_states.items():
            if all_were_fully_disrupted or self.zone_states.get(zone) != state:
                self._set_limiter(zone, len(zone_conditions[zone]), state)
                self.zone_states[zone] = state

    def _event(self, node: Object, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(node_ref(node), type_, reason, message)


async def wait_for_synced(informers: list[SharedInformer]) -> None:
    await asyncio.gather(*(i.wait_for_sync() for i in informers))


# -- taint eviction ----------------------------------------------------------------------------


@dataclass
class _ScheduledEviction:
    created_at: float
    fire_at: float
    handle: asyncio.TimerHandle


class TaintEvictionController(Controller):
    """Deletes pods that do not tolerate their node's NoExecute taints (at once, or after the
    shortest ``tolerationSeconds`` of the tolerations used). Queue keys: ``node:<name>``,
    ``pod:<ns>/<name>`` and ``evict:<ns>/<name>`` (a scheduled deletion that came due)."""

    name = "taint-eviction-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 4,
                 clock: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.clock = clock
        self.nodes = informers.informer("v1", "nodes")
        self.pods = informers.informer("v1", "pods",
                                       indexers={POD_NODE_NAME_INDEX: index_pod_by_node_name})
        self.tainted_nodes: dict[str, list[Object]] = {}
        self.scheduled: dict[str, _ScheduledEviction] = {}
        self.due: set[str] = set()  # pods whose eviction came due and is not done yet
        self.nodes.add_event_handler(on_add=lambda n: self._node_changed(None, n),
                                     on_update=self._node_changed,
                                     on_delete=lambda n: self._node_changed(n, None))
        self.pods.add_event_handler(on_add=lambda p: self._pod_changed(None, p),
                                    on_update=self._pod_changed,
                                    on_delete=lambda p: self._pod_changed(p, None))

    def watched_informers(self) -> list[SharedInformer]:
        return [self.nodes, self.pods]

    def _node_changed(self, old: Object | None, new: Object | None) -> None:
        if old is not None and new is not None and no_execute_taints(old) == no_execute_taints(new):
            return
        self.queue.add("node:" + (new or old)["metadata"]["name"])  # type: ignore[index]

    def _pod_changed(self, old: Object | None, new: Object | None) -> None:
        if old is not None and new is not None:
            old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
            if old_spec.get("nodeName") == new_spec.get("nodeName") and \
                    old_spec.get("tolerations") == new_spec.get("tolerations"):
                return
        self.queue.add("pod:" + object_key(new or old))  # type: ignore[arg-type]

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "node":
            self.handle_node(rest)
        elif kind == "pod":
            self.handle_pod(rest)
        elif kind == "evict":
            await self.evict(rest)

    def handle_node(self, name: str) -> None:
        node = self.nodes.indexer.get(name)
        if node is None:
            self.tainted_nodes.pop(name, None)
            return
        taints = no_execute_taints(node)
        log.debug("%s: node %s has NoExecute taints %s", self.name, name, taints)
        if taints:
            self.tainted_nodes[name] = taints
        else:
            self.tainted_nodes.pop(name, None)
        pods = self.pods.indexer.by_index(POD_NODE_NAME_INDEX, name)
        now = self.clock()
        for pod in pods:
            key = object_key(pod)
            if not taints:
                self.cancel(key)
            else:
                self.process_pod_on_node(key, (pod.get("spec") or {}).get("tolerations") or [],
                                         taints, now)

    def handle_pod(self, key: str) -> None:
        pod = self.pods.indexer.get(key)
        if pod is None:
            self.cancel(key)
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        taints = self.tainted_nodes.get(node_name) if node_name else None
        if not taints:
            return
        self.process_pod_on_node(key, (pod.get("spec") or {}).get("tolerations") or [], taints,
                                 self.clock())

    def process_pod_on_node(self, key: str, tolerations: list[Object], taints: list[Object],
                            now: float) -> None:
        if not taints:
            self.cancel(key)
            return
        all_tolerated, used = matching_tolerations(taints, tolerations)
        if not all_tolerated:
            self.cancel(key)
            self._schedule(key, now, now)
            return
        seconds = min_toleration_seconds(used)
        if seconds < 0:
            self.cancel(key)
            return
        start = now
        scheduled = self.scheduled.get(key)
        if scheduled is not None:
            start = scheduled.created_at
            if start + seconds < now + seconds:
                return
            self.cancel(key)
        self._schedule(key, start, now + seconds)

    def _schedule(self, key: str, created_at: float, fire_at: float) -> None:
        if key in self.scheduled:
            return
        delay = max(0.0, fire_at - self.clock())
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self.scheduled[key] = _ScheduledEviction(created_at, fire_at, handle)

    def _fire(self, key: str) -> None:
        self.scheduled.pop(key, None)
        self.due.add(key)
        self.queue.add("evict:" + key)

    def cancel(self, key: str) -> None:
        self.due.discard(key)
        scheduled = self.scheduled.pop(key, None)
        if scheduled is None:
            return
        scheduled.handle.cancel()
        namespace, name = split_key(key)
        self._event(namespace, name, "Cancelling deletion of Pod " + key)

    async def evict(self, key: str) -> None:
        if key not in self.due:
            return  # cancelled after it came due
        namespace, name = split_key(key)
        log.info("%s: deleting pod %s", self.name, key)
        self._event(namespace, name, "Marking for deletion Pod " + key)
        try:
            pod = await self.client.get("v1", "pods", name, namespace=namespace)
            await self._set_disruption_target(pod)
            await self.client.delete("v1", "pods", name, namespace=namespace)
        except ApiError as e:
            if not e.not_found:
                raise  # retried while still due
        self.due.discard(key)

    async def _set_disruption_target(self, pod: Object) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
               for c in conditions):
            return
        pod.setdefault("status", {})["conditions"] = [
            c for c in conditions if c.get("type") != "DisruptionTarget"] + [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now_rfc3339()}]
        try:
            await self.client.update("v1", "pods", pod, subresource="status")
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for scheduled in self.scheduled.values():
                scheduled.handle.cancel()
            self.scheduled.clear()
            self.due.clear()

    def _event(self, namespace: str, name: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod_ref(namespace, name), NORMAL, "TaintManagerEviction", message)
