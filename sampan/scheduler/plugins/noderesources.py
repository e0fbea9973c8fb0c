"""NodeResourcesFit and NodeResourcesBalancedAllocation, as array operations over nodes.

Fit filters nodes without room for the pod's requests (cpu, memory, ephemeral storage,
extended resources, the pod count) and scores with a strategy: LeastAllocated (default),
MostAllocated or RequestedToCapacityRatio. BalancedAllocation prefers nodes whose resource
fractions stay close to one another.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.scheduler.cache import Cache, NodeInfo, PodInfo
from sampan.scheduler.framework import (MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, FilterPlugin,
                                        FilterResult, PreFilterPlugin, PreScorePlugin,
                                        ScorePlugin, Status)

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
REQUESTED_TO_CAPACITY_RATIO = "RequestedToCapacityRatio"
MAX_CUSTOM_PRIORITY_SCORE = 10
MAX_UTILIZATION = 100
DEFAULT_RESOURCES = ({"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1})
_NOMINATED = "NodeResourcesFit/nominated"


def _nominated_extra(pod: PodInfo, cache: Cache, nominator: Any) -> dict[int, PodInfo] | None:
    """Requests of pods nominated to nodes with at least this pod's priority (they will take
    that room once their victims are gone)."""
    if nominator is None or not nominator.nominated:
        return None
    extra: dict[str, list[PodInfo]] = {}
    for node_name, pods in nominator.nominated.items():
        chosen = [p for k, p in pods.items() if k != pod.key and p.priority >= pod.priority]
        if chosen and node_name in cache.nodes:
            extra[cache.nodes[node_name].slot] = chosen
    return extra or None


def insufficient(pod: PodInfo, node: NodeInfo, extra: list[PodInfo] = ()) -> list[tuple[str, bool]]:
    """(reason, unresolvable) for each resource the node lacks (``fitsRequest``)."""
    requested = node.requested.copy()
    pod_count = len(node.pods) + len(extra)
    for p in extra:
        requested.add(p.requests)
    out: list[tuple[str, bool]] = []
    if pod_count + 1 > node.allowed_pods:
        out.append(("Too many pods", False))
    r, alloc = pod.requests, node.allocatable
    if r.empty:
        return out
    for name, want, have, used in (("cpu", r.cpu, alloc.cpu, requested.cpu),
                                   ("memory", r.memory, alloc.memory, requested.memory),
                                   ("ephemeral-storage", r.ephemeral, alloc.ephemeral,
                                    requested.ephemeral)):
        if want > 0 and want > have - used:
            out.append((f"Insufficient {name}", want > have))
    for name in sorted(r.scalar):
        want = r.scalar[name]
        if want == 0:
            continue
        have = alloc.scalar.get(name, 0)
        if want > have - requested.scalar.get(name, 0):
            out.append((f"Insufficient {name}", want > have))
    return out


def status_of(reasons: list[tuple[str, bool]]) -> Status:
    texts = tuple(reason for reason, _ in reasons)
    if any(unresolvable for _, unresolvable in reasons):
        return Status.unresolvable(*texts)
    return Status.unschedulable(*texts)


class NodeResourcesFit(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "NodeResourcesFit"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        strategy = self.args.get("scoringStrategy") or {}
        self.strategy = strategy.get("type") or LEAST_ALLOCATED
        self.resources = list(strategy.get("resources") or DEFAULT_RESOURCES)
        shape = (strategy.get("requestedToCapacityRatio") or {}).get("shape") or [
            {"utilization": 0, "score": MAX_CUSTOM_PRIORITY_SCORE},
            {"utilization": 100, "score": 0}]
        scale = MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE
        self.shape = [(int(p["utilization"]), int(p["score"]) * scale) for p in shape]

    # -- filter ---------------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        state[_NOMINATED] = _nominated_extra(pod, cache, self.handle.nominator)
        return SUCCESS

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        extra = state.get(_NOMINATED)
        if extra:
            return self._filter_with_nominated(pod, cache, slots, extra)
        r = pod.requests
        checks: list[tuple[str, np.ndarray, np.ndarray | None]] = [
            ("Too many pods", cache.req_pods[slots] + 1 > cache.alloc_pods[slots], None)]
        if not r.empty:
            for name, want, alloc, used in (("cpu", r.cpu, cache.alloc_cpu, cache.req_cpu),
                                            ("memory", r.memory, cache.alloc_mem, cache.req_mem),
                                            ("ephemeral-storage", r.ephemeral, cache.alloc_eph,
                                             cache.req_eph)):
                if want > 0:
                    have = alloc[slots]
                    checks.append((f"Insufficient {name}", want > have - used[slots],
                                   want > have))
            for name in sorted(r.scalar):
                if r.scalar[name]:
                    alloc, used = cache.scalar_arrays(name)
                    have = alloc[slots]
                    checks.append((f"Insufficient {name}", r.scalar[name] > have - used[slots],
                                   r.scalar[name] > have))
        return _combine(checks, len(slots))

    def _filter_with_nominated(self, pod: PodInfo, cache: Cache, slots: np.ndarray,
                               extra: dict[int, list[PodInfo]]) -> FilterResult:
        codes = np.zeros(len(slots), dtype=np.int32)
        plain = np.array([s not in extra for s in slots.tolist()], dtype=bool)
        if plain.any():
            sub_codes, table = self.filter_nodes(CycleState(), pod, cache, slots[plain])
            codes[plain] = sub_codes
        else:
            table = []
        seen = {s: i + 1 for i, s in enumerate(table)}
        for i, slot in enumerate(slots.tolist()):
            if slot in extra:
                reasons = insufficient(pod, cache.slot_infos[slot], extra[slot])
                if reasons:
                    status = status_of(reasons)
                    if status not in seen:
                        table.append(status)
                        seen[status] = len(table)
                    codes[i] = seen[status]
        return codes, table

    # -- score ----------------------------------------------------------------------------
    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        return SUCCESS

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        allocs, reqs, weights = resource_columns(pod, cache, slots, self.resources,
                                                 use_requested=False)
        if self.strategy == LEAST_ALLOCATED:
            per = [np.where((a == 0) | (q > a), 0, (a - q) * MAX_NODE_SCORE // np.maximum(a, 1))
                   for a, q in zip(allocs, reqs)]
        elif self.strategy == MOST_ALLOCATED:
            per = [np.where(a == 0, 0, np.minimum(q, a) * MAX_NODE_SCORE // np.maximum(a, 1))
                   for a, q in zip(allocs, reqs)]
        else:
            return self._ratio(allocs, reqs, weights)
        return _weighted(per, allocs, weights, rounded=False)

    def _ratio(self, allocs, reqs, weights) -> np.ndarray:
        per = []
        for a, q in zip(allocs, reqs):
            utilization = np.where((a == 0) | (q > a), MAX_UTILIZATION,
                                   q * MAX_UTILIZATION // np.maximum(a, 1))
            per.append(broken_linear(self.shape, utilization))
        return _weighted(per, allocs, weights, rounded=True)

    def events_to_register(self):
        return ("Pod/Delete", "Node/Add", "Node/UpdateNodeAllocatable")


def broken_linear(shape: list[tuple[int, int]], p: np.ndarray) -> np.ndarray:
    """``helper.BuildBrokenLinearFunction`` over an array of utilisations."""
    out = np.full_like(p, shape[-1][1])
    for i in range(len(shape) - 1, -1, -1):
        u, s = shape[i]
        if i == 0:
            out = np.where(p <= u, s, out)
            continue
        u0, s0 = shape[i - 1]
        inside = (p > u0) & (p <= u)
        out = np.where(inside, s0 + (s - s0) * (p - u0) // max(u - u0, 1), out)
    return out


def resource_columns(pod: PodInfo, cache: Cache, slots: np.ndarray, resources: list[dict],
                     use_requested: bool):
    """Allocatable and requested-after-placing-the-pod arrays for each scored resource;
    cpu and memory count pods without requests at 100m / 200Mi unless ``use_requested``."""
    request = pod.requests if use_requested else pod.non_zero
    allocs, reqs, weights = [], [], []
    for resource in resources:
        name, weight = resource["name"], int(resource.get("weight") or 1)
        if name == "cpu":
            used = cache.req_cpu if use_requested else cache.nz_cpu
            alloc, req = cache.alloc_cpu[slots], used[slots] + request.cpu
        elif name == "memory":
            used = cache.req_mem if use_requested else cache.nz_mem
            alloc, req = cache.alloc_mem[slots], used[slots] + request.memory
        elif name == "ephemeral-storage":
            alloc, req = cache.alloc_eph[slots], cache.req_eph[slots] + pod.requests.ephemeral
        else:
            want = pod.requests.scalar.get(name, 0)
            if want == 0:  # an extended resource the pod does not ask for is not scored
                continue
            a, u = cache.scalar_arrays(name)
            alloc, req = a[slots], u[slots] + want
        allocs.append(alloc)
        reqs.append(req)
        weights.append(weight)
    return allocs, reqs, weights


def _weighted(per, allocs, weights, rounded: bool) -> np.ndarray:
    if not per:
        return np.zeros(0, dtype=np.int64)
    total = np.zeros_like(per[0])
    weight_sum = np.zeros_like(per[0])
    for score, alloc, weight in zip(per, allocs, weights):
        counted = alloc != 0
        total += np.where(counted, score * weight, 0)
        weight_sum += np.where(counted, weight, 0)
    if rounded:
        out = np.rint(total / np.maximum(weight_sum, 1)).astype(np.int64)
    else:
        out = total // np.maximum(weight_sum, 1)
    return np.where(weight_sum == 0, 0, out)


def _combine(checks: list[tuple[str, np.ndarray, np.ndarray | None]], n: int) -> FilterResult:
    """Per-node failing resources → one status per distinct combination."""
    bits = np.zeros(n, dtype=np.int64)
    unresolvable = np.zeros(n, dtype=bool)
    for i, (_, failed, unres) in enumerate(checks):
        bits |= failed.astype(np.int64) << i
        if unres is not None:
            unresolvable |= failed & unres
    key = bits * 2 + unresolvable
    codes = np.zeros(n, dtype=np.int32)
    failing = bits != 0
    if not failing.any():
        return codes, []
    distinct, inverse = np.unique(key[failing], return_inverse=True)
    table = []
    for value in distinct.tolist():
        reasons = tuple(checks[i][0] for i in range(len(checks)) if (value >> 1) >> i & 1)
        table.append(Status.unresolvable(*reasons) if value & 1 else
                     Status.unschedulable(*reasons))
    codes[failing] = inverse.reshape(-1).astype(np.int32) + 1
    return codes, table


class NodeResourcesBalancedAllocation(PreScorePlugin, ScorePlugin):
    name = "NodeResourcesBalancedAllocation"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self.resources = list(self.args.get("resources") or DEFAULT_RESOURCES)

    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        return SKIP if pod.requests.empty else SUCCESS

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        allocs, reqs, _ = resource_columns(pod, cache, slots, self.resources,
                                           use_requested=True)
        if not allocs:
            return np.zeros(len(slots), dtype=np.int64)
        fractions, valid = [], []
        for a, q in zip(allocs, reqs):
            counted = a != 0
            fractions.append(np.where(counted, np.minimum(q / np.maximum(a, 1), 1.0), 0.0))
            valid.append(counted)
        f, v = np.array(fractions), np.array(valid)
        n = v.sum(axis=0)
        if len(fractions) == 2:
            std = np.where(n == 2, np.abs((f[0] - f[1]) / 2), 0.0)
        else:
            mean = (f * v).sum(axis=0) / np.maximum(n, 1)
            var = (((f - mean) * v) ** 2).sum(axis=0) / np.maximum(n, 1)
            std = np.where(n > 2, np.sqrt(var), np.where(n == 2, 0.0, 0.0))
            if (n == 2).any():
                pair = np.abs(np.sum(np.where(v, f, 0.0) * np.where(
                    np.cumsum(v, axis=0) == 1, 1, -1), axis=0)) / 2
                std = np.where(n == 2, pair, std)
        return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)

    def events_to_register(self):
        return ("Pod/Delete", "Node/Add", "Node/UpdateNodeAllocatable")
