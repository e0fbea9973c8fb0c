"""The scheduler's view of the cluster: nodes and the pods on them, kept from informers, plus
the pods it has *assumed* onto nodes while their bindings are in flight.

Per-node numbers the hot plugins need live in numpy arrays indexed by node *slot* (allocatable
and requested cpu / memory / ephemeral storage / pod count, upstream's non-zero requests for
scoring), updated incrementally on every add / remove / assume. Generation counters tell the
plugins when their per-pod-shape caches (node selector, affinity, taint masks) must be rebuilt,
so a scheduling cycle reads the cache directly instead of copying a snapshot: a cycle is
synchronous and nothing changes the cache while it runs.

Pods are also counted per *label group* (namespace + exact labels) and node, so "how many pods
matching this selector sit in each topology domain" is a sum of a few arrays instead of a scan
over every pod (inter-pod affinity, topology spread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from sampan.api.selectors import LabelSelector
from sampan.api.validation import QuantityError, parse_quantity

Object = dict[str, Any]

DEFAULT_MILLI_CPU_REQUEST = 100  # 0.1 core, for scoring pods that request nothing
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
ASSUMED_POD_TTL = 15 * 60.0
_INITIAL_CAPACITY = 64


@lru_cache(maxsize=4096)
def quantity_value(raw: Any, milli: bool = False) -> int:
    """A quantity as an integer, rounded up (``Quantity.Value`` / ``MilliValue``)."""
    try:
        value = parse_quantity(raw).value
    except (QuantityError, TypeError):
        return 0
    return math.ceil(value * 1000) if milli else math.ceil(value)


def is_scalar_resource(name: str) -> bool:
    """Extended, hugepages and attachable-volume resources (checked by name, summed as ints)."""
    return (name.startswith("hugepages-") or name.startswith("attachable-volumes-")
            or ("/" in name and not name.startswith("kubernetes.io/")
                and not name.startswith("requests.")))


@dataclass(slots=True)
class Resources:
    cpu: int = 0  # millicores
    memory: int = 0
    ephemeral: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Resources:
        out = cls()
        for name, value in (raw or {}).items():
            out.set(name, value)
        return out

    def set(self, name: str, value: Any) -> None:
        if name == "cpu":
            self.cpu = quantity_value(value, True)
        elif name == "memory":
            self.memory = quantity_value(value)
        elif name == "ephemeral-storage":
            self.ephemeral = quantity_value(value)
        elif is_scalar_resource(name):
            self.scalar[name] = quantity_value(value)

    def add(self, other: Resources) -> None:
        self.cpu += other.cpu
        self.memory += other.memory
        self.ephemeral += other.ephemeral
        for name, value in other.scalar.items():
            self.scalar[name] = self.scalar.get(name, 0) + value

    def set_max(self, other: Resources) -> None:
        self.cpu = max(self.cpu, other.cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral = max(self.ephemeral, other.ephemeral)
        for name, value in other.scalar.items():
            self.scalar[name] = max(self.scalar.get(name, 0), value)

    def copy(self) -> Resources:
        return Resources(self.cpu, self.memory, self.ephemeral, dict(self.scalar))

    @property
    def empty(self) -> bool:
        return not (self.cpu or self.memory or self.ephemeral or any(self.scalar.values()))


def pod_requests(spec: Mapping[str, Any], non_zero: bool = False) -> Resources:
    """The pod's effective requests: app containers and sidecars summed, the largest init
    container step, plus overhead (``resourcehelper.PodRequests``). With ``non_zero`` a
    container without a cpu / memory request counts as 100m / 200Mi."""
    def container_requests(c: Mapping[str, Any]) -> Resources:
        requests = (c.get("resources") or {}).get("requests") or {}
        r = Resources.of(requests)
        if non_zero:
            if "cpu" not in requests:
                r.cpu = DEFAULT_MILLI_CPU_REQUEST
            if "memory" not in requests:
                r.memory = DEFAULT_MEMORY_REQUEST
        return r

    total = Resources()
    for c in spec.get("containers") or []:
        total.add(container_requests(c))
    init_max = Resources()
    sidecars = Resources()
    for c in spec.get("initContainers") or []:
        r = container_requests(c)
        if c.get("restartPolicy") == "Always":
            total.add(r)
            sidecars.add(r)
            step = sidecars.copy()
        else:
            step = r.copy()
            step.add(sidecars)
        init_max.set_max(step)
    total.set_max(init_max)
    if spec.get("overhead"):
        total.add(Resources.of(spec["overhead"]))
    return total


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def host_ports(spec: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(protocol, hostIP, hostPort) the pod's containers claim on the node."""
    out = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append((port.get("protocol") or "TCP", port.get("hostIP") or "0.0.0.0",
                            int(port["hostPort"])))
    return out


class PodInfo:
    """A pod plus what the scheduler derives from it once (requests, ports, affinity)."""

    __slots__ = ("pod", "key", "uid", "namespace", "name", "labels", "spec", "priority",
                 "requests", "non_zero", "ports", "affinity", "has_required_affinity",
                 "has_required_anti_affinity", "has_affinity_terms", "group")

    def __init__(self, pod: Object):
        self.pod = pod
        meta = pod.get("metadata") or {}
        self.namespace = meta.get("namespace") or ""
        self.name = meta.get("name") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.uid = meta.get("uid") or ""
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.spec: Object = pod.get("spec") or {}
        self.priority = int(self.spec.get("priority") or 0)
        self.requests = pod_requests(self.spec)
        self.non_zero = pod_requests(self.spec, non_zero=True)
        self.ports = host_ports(self.spec)
        self.affinity: Object = self.spec.get("affinity") or {}
        pod_affinity = self.affinity.get("podAffinity") or {}
        anti = self.affinity.get("podAntiAffinity") or {}
        self.has_required_affinity = bool(
            pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
        self.has_required_anti_affinity = bool(
            anti.get("requiredDuringSchedulingIgnoredDuringExecution"))
        self.has_affinity_terms = bool(pod_affinity or anti)
        self.group = (self.namespace, tuple(sorted(self.labels.items())),
                      bool(meta.get("deletionTimestamp")))

    @property
    def node_name(self) -> str:
        return self.spec.get("nodeName") or ""

    @property
    def terminating(self) -> bool:
        return bool((self.pod.get("metadata") or {}).get("deletionTimestamp"))

    @property
    def start_time(self) -> str:
        return ((self.pod.get("status") or {}).get("startTime")
                or (self.pod.get("metadata") or {}).get("creationTimestamp") or "")


class NodeInfo:
    """One node and the pods the cache puts on it."""

    __slots__ = ("name", "node", "slot", "labels", "taints", "unschedulable", "allocatable",
                 "requested", "non_zero_requested", "pods", "used_ports", "images",
                 "pods_with_affinity", "pods_with_required_anti_affinity", "generation")

    def __init__(self, name: str, slot: int):
        self.name = name
        self.slot = slot
        self.node: Object | None = None
        self.labels: dict[str, str] = {}
        self.taints: list[Object] = []
        self.unschedulable = False
        self.allocatable = Resources()
        self.requested = Resources()
        self.non_zero_requested = Resources()
        self.pods: dict[str, PodInfo] = {}
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.images: dict[str, int] = {}  # normalised image name → size
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.generation = 0

    @property
    def allowed_pods(self) -> int:
        return self.allocatable.scalar.get("pods", 0)


def normalized_image_name(name: str) -> str:
    """``docker.io/library/nginx`` stays; a name without a tag gets ``:latest``."""
    if "@" in name:
        return name
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


@dataclass
class _Assumed:
    pod: PodInfo
    node: str
    binding_finished: bool = False
    deadline: float = 0.0


class _Group:
    """Assigned pods with one namespace and one exact label set, counted per node slot."""

    __slots__ = ("namespace", "labels", "terminating", "counts", "total")

    def __init__(self, namespace: str, labels: dict[str, str], terminating: bool, capacity: int):
        self.namespace = namespace
        self.labels = labels
        self.terminating = terminating
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.total = 0


class Cache:
    """Nodes by slot, pods by key, assumed pods, and the per-slot arrays."""

    RESOURCE_ARRAYS = ("alloc_cpu", "alloc_mem", "alloc_eph", "alloc_pods", "req_cpu",
                       "req_mem", "req_eph", "req_pods", "nz_cpu", "nz_mem")

    def __init__(self, *, assumed_ttl: float = ASSUMED_POD_TTL):
        self.assumed_ttl = assumed_ttl
        self.capacity = 0
        self.slot_infos: list[NodeInfo | None] = []  # type: ignore[assignment]
        self.nodes: dict[str, NodeInfo] = {}
        self.free_slots: list[int] = []
        self.pods: dict[str, PodInfo] = {}
        self.pod_nodes: dict[str, str] = {}
        self.orphans: dict[str, set[str]] = {}  # node name → pods bound to a node not seen yet
        self.assumed: dict[str, _Assumed] = {}
        self.valid = np.zeros(0, dtype=bool)
        for name in self.RESOURCE_ARRAYS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        self.alloc_scalar: dict[str, np.ndarray] = {}
        self.req_scalar: dict[str, np.ndarray] = {}
        self.groups: dict[tuple[str, tuple[tuple[str, str], ...], bool], _Group] = {}
        self.groups_by_namespace: dict[str, list[_Group]] = {}
        self.image_nodes: dict[str, int] = {}  # normalised image → number of nodes with it
        self.node_generation = 0   # labels, taints, unschedulable, node set
        self.group_generation = 0  # the set of label groups
        self.pod_generation = 0    # any assigned pod change
        self.image_generation = 0  # images present on nodes
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self._slots_cache: tuple[int, np.ndarray] | None = None
        self._domains: dict[str, tuple[int, np.ndarray, list[str]]] = {}
        self._selector_groups: dict[Any, tuple[int, list[_Group]]] = {}
        self._grow(_INITIAL_CAPACITY)

    # -- slots --------------------------------------------------------------------------------
    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        self.valid = np.concatenate([self.valid, np.zeros(extra, dtype=bool)])
        for name in self.RESOURCE_ARRAYS:
            setattr(self, name, np.concatenate([getattr(self, name),
                                                np.zeros(extra, dtype=np.int64)]))
        for arrays in (self.alloc_scalar, self.req_scalar):
            for name, array in arrays.items():
                arrays[name] = np.concatenate([array, np.zeros(extra, dtype=np.int64)])
        for group in self.groups.values():
            group.counts = np.concatenate([group.counts, np.zeros(extra, dtype=np.int64)])
        self.slot_infos.extend([None] * extra)
        self.free_slots.extend(range(capacity - 1, self.capacity - 1, -1))
        self.capacity = capacity

    def node_slots(self) -> np.ndarray:
        """The slots of every node, in slot order (the order nodes are visited)."""
        if self._slots_cache is None or self._slots_cache[0] != self.node_generation:
            self._slots_cache = (self.node_generation, np.flatnonzero(self.valid))
        return self._slots_cache[1]

    def node_count(self) -> int:
        return len(self.nodes)

    def scalar_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.alloc_scalar:
            self.alloc_scalar[name] = np.zeros(self.capacity, dtype=np.int64)
            self.req_scalar[name] = np.zeros(self.capacity, dtype=np.int64)
        return self.alloc_scalar[name], self.req_scalar[name]

    # -- nodes --------------------------------------------------------------------------------
    def add_node(self, node: Object) -> NodeInfo:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            if not self.free_slots:
                self._grow(self.capacity * 2)
            slot = self.free_slots.pop()
            info = NodeInfo(name, slot)
            self.nodes[name] = info
            self.slot_infos[slot] = info
            self.valid[slot] = True
            self.node_generation += 1
            self._set_node(info, node)
            for key in self.orphans.pop(name, ()):
                self._add_to_node(self.pods[key], info)
            return info
        self._set_node(info, node)
        return info

    update_node = add_node

    def _set_node(self, info: NodeInfo, node: Object) -> None:
        spec, status = node.get("spec") or {}, node.get("status") or {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        taints = spec.get("taints") or []
        unschedulable = bool(spec.get("unschedulable"))
        if (labels != info.labels or taints != info.taints
                or unschedulable != info.unschedulable or info.node is None):
            self.node_generation += 1
            info.generation += 1
        info.node = node
        info.labels, info.taints, info.unschedulable = labels, taints, unschedulable
        allocatable = Resources.of(status.get("allocatable"))
        pods = quantity_value((status.get("allocatable") or {}).get("pods", 0))
        allocatable.scalar["pods"] = pods
        info.allocatable = allocatable
        s = info.slot
        self.alloc_cpu[s], self.alloc_mem[s] = allocatable.cpu, allocatable.memory
        self.alloc_eph[s], self.alloc_pods[s] = allocatable.ephemeral, pods
        for name in set(self.alloc_scalar) | set(allocatable.scalar):
            if name != "pods":
                self.scalar_arrays(name)[0][s] = allocatable.scalar.get(name, 0)
        self._set_images(info, status.get("images") or [])

    def _set_images(self, info: NodeInfo, images: list[Object]) -> None:
        new: dict[str, int] = {}
        for image in images:
            for name in image.get("names") or []:
                new[normalized_image_name(name)] = int(image.get("sizeBytes") or 0)
        if new == info.images:
            return
        self.image_generation += 1
        for name in info.images:
            self.image_nodes[name] -= 1
            if not self.image_nodes[name]:
                del self.image_nodes[name]
        for name in new:
            self.image_nodes[name] = self.image_nodes.get(name, 0) + 1
        info.images = new

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        for pod in list(info.pods.values()):  # pods outlive their node until deleted
            self._remove_from_node(pod, info)
            self.orphans.setdefault(name, set()).add(pod.key)
        self._set_images(info, [])
        s = info.slot
        self.valid[s] = False
        self.slot_infos[s] = None
        for name_ in self.RESOURCE_ARRAYS:
            getattr(self, name_)[s] = 0
        for arrays in (self.alloc_scalar, self.req_scalar):
            for array in arrays.values():
                array[s] = 0
        self.free_slots.append(s)
        self.node_generation += 1

    # -- pods ---------------------------------------------------------------------------------
    def _add_to_node(self, pod: PodInfo, info: NodeInfo) -> None:
        s, sign = info.slot, 1
        self._account(pod, info, s, sign)
        info.pods[pod.key] = pod
        for port in pod.ports:
            info.used_ports[port] = info.used_ports.get(port, 0) + 1
        if pod.has_affinity_terms:
            info.pods_with_affinity[pod.key] = pod
            self.pods_with_affinity[pod.key] = pod
        if pod.has_required_anti_affinity:
            info.pods_with_required_anti_affinity[pod.key] = pod
            self.pods_with_required_anti_affinity[pod.key] = pod
        group = self.groups.get(pod.group)
        if group is None:
            group = _Group(pod.namespace, pod.labels, pod.group[2], self.capacity)
            self.groups[pod.group] = group
            self.groups_by_namespace.setdefault(pod.namespace, []).append(group)
            self.group_generation += 1
        group.counts[s] += 1
        group.total += 1
        self.pod_generation += 1

    def _remove_from_node(self, pod: PodInfo, info: NodeInfo) -> None:
        if info.pods.pop(pod.key, None) is None:
            return
        self._account(pod, info, info.slot, -1)
        for port in pod.ports:
            left = info.used_ports.get(port, 0) - 1
            if left > 0:
                info.used_ports[port] = left
            else:
                info.used_ports.pop(port, None)
        info.pods_with_affinity.pop(pod.key, None)
        info.pods_with_required_anti_affinity.pop(pod.key, None)
        self.pods_with_affinity.pop(pod.key, None)
        self.pods_with_required_anti_affinity.pop(pod.key, None)
        group = self.groups.get(pod.group)
        if group is not None:
            group.counts[info.slot] -= 1
            group.total -= 1
            if group.total <= 0:
                del self.groups[pod.group]
                self.groups_by_namespace[pod.namespace].remove(group)
                self.group_generation += 1
        self.pod_generation += 1

    def _account(self, pod: PodInfo, info: NodeInfo, s: int, sign: int) -> None:
        r, nz = pod.requests, pod.non_zero
        self.req_cpu[s] += sign * r.cpu
        self.req_mem[s] += sign * r.memory
        self.req_eph[s] += sign * r.ephemeral
        self.req_pods[s] += sign
        self.nz_cpu[s] += sign * nz.cpu
        self.nz_mem[s] += sign * nz.memory
        info.requested.cpu += sign * r.cpu
        info.requested.memory += sign * r.memory
        info.requested.ephemeral += sign * r.ephemeral
        info.non_zero_requested.cpu += sign * nz.cpu
        info.non_zero_requested.memory += sign * nz.memory
        for name, value in r.scalar.items():
            self.scalar_arrays(name)[1][s] += sign * value
            info.requested.scalar[name] = info.requested.scalar.get(name, 0) + sign * value

    def _place(self, pod: PodInfo, node_name: str) -> None:
        self._unplace(pod.key)
        info = self.nodes.get(node_name)
        self.pods[pod.key] = pod
        self.pod_nodes[pod.key] = node_name
        if info is not None:
            self._add_to_node(pod, info)
        else:
            self.orphans.setdefault(node_name, set()).add(pod.key)

    def _unplace(self, key: str) -> PodInfo | None:
        old = self.pods.pop(key, None)
        node_name = self.pod_nodes.pop(key, None)
        if old is not None and node_name is not None:
            if node_name in self.nodes:
                self._remove_from_node(old, self.nodes[node_name])
            else:
                waiting = self.orphans.get(node_name)
                if waiting is not None:
                    waiting.discard(key)
                    if not waiting:
                        del self.orphans[node_name]
        return old

    def add_pod(self, pod: Object) -> None:
        """An assigned pod the informer saw (confirms an assumed pod)."""
        info = PodInfo(pod)
        self.assumed.pop(info.key, None)
        self._place(info, info.node_name)

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        self.assumed.pop(key, None)
        self._unplace(key)

    def assume_pod(self, pod: PodInfo, node_name: str) -> None:
        self._place(pod, node_name)
        self.assumed[pod.key] = _Assumed(pod, node_name)

    def finish_binding(self, key: str, now: float | None = None) -> None:
        assumed = self.assumed.get(key)
        if assumed is not None:
            assumed.binding_finished = True
            assumed.deadline = (time.monotonic() if now is None else now) + self.assumed_ttl

    def forget_pod(self, key: str) -> None:
        if self.assumed.pop(key, None) is not None:
            self._unplace(key)

    def detach_pod(self, key: str) -> None:
        """Take a pod off its node for a what-if (preemption); ``reattach_pod`` undoes it."""
        pod, node = self.pods.get(key), self.nodes.get(self.pod_nodes.get(key, ""))
        if pod is not None and node is not None:
            self._remove_from_node(pod, node)

    def reattach_pod(self, key: str) -> None:
        pod, node = self.pods.get(key), self.nodes.get(self.pod_nodes.get(key, ""))
        if pod is not None and node is not None and key not in node.pods:
            self._add_to_node(pod, node)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def cleanup_assumed(self, now: float | None = None) -> list[str]:
        """Drop assumed pods whose binding finished long ago but never showed up."""
        now = time.monotonic() if now is None else now
        expired = [k for k, a in self.assumed.items() if a.binding_finished and a.deadline < now]
        for key in expired:
            self.forget_pod(key)
        return expired

    # -- derived views ------------------------------------------------------------------------
    def topology_domains(self, key: str) -> tuple[np.ndarray, list[str]]:
        """Per slot the index of the node's value for label ``key`` (-1 without the label),
        and the values."""
        cached = self._domains.get(key)
        if cached is not None and cached[0] == self.node_generation:
            return cached[1], cached[2]
        ids = np.full(self.capacity, -1, dtype=np.int64)
        values: dict[str, int] = {}
        for info in self.nodes.values():
            value = info.labels.get(key)
            if value is not None:
                ids[info.slot] = values.setdefault(value, len(values))
        result = (self.node_generation, ids, list(values))
        self._domains[key] = result
        return ids, result[2]

    def matching_groups(self, namespaces: frozenset[str] | None,
                        selector: LabelSelector, namespace_filter: Any = None,
                        include_terminating: bool = True) -> list[_Group]:
        """Label groups in ``namespaces`` (None: all, or those ``namespace_filter`` accepts)
        whose labels ``selector`` matches."""
        cache_key = (namespaces, selector, namespace_filter, include_terminating)
        cached = self._selector_groups.get(cache_key)
        if cached is not None and cached[0] == self.group_generation:
            return cached[1]
        if namespaces is None:
            candidates: Iterable[_Group] = self.groups.values()
        else:
            candidates = [g for ns in namespaces for g in self.groups_by_namespace.get(ns, ())]
        groups = [g for g in candidates if selector.matches(g.labels)
                  and (include_terminating or not g.terminating)
                  and (namespace_filter is None or namespace_filter(g.namespace))]
        if len(self._selector_groups) > 4096:
            self._selector_groups.clear()
        self._selector_groups[cache_key] = (self.group_generation, groups)
        return groups

    def count_matching(self, namespaces: frozenset[str] | None, selector: LabelSelector,
                       namespace_filter: Any = None,
                       include_terminating: bool = True) -> np.ndarray:
        """Per slot: assigned pods matching ``selector`` in ``namespaces``."""
        groups = self.matching_groups(namespaces, selector, namespace_filter,
                                      include_terminating)
        if not groups:
            return np.zeros(self.capacity, dtype=np.int64)
        total = groups[0].counts.copy()
        for group in groups[1:]:
            total += group.counts
        return total
