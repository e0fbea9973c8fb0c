"""PodTopologySpread: spread matching pods over topology domains.

DoNotSchedule constraints filter (skew = pods in the node's domain + the pod itself - the
fewest in any eligible domain must stay within maxSkew; minDomains, nodeAffinityPolicy and
nodeTaintsPolicy decide which domains count); ScheduleAnyway constraints, and upstream's
system default constraints for pods owned by a Service / ReplicaSet / StatefulSet /
ReplicationController, score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sampan.api.selectors import LabelSelector, Requirement, EQUALS
from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import (MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, FilterPlugin,
                                        FilterResult, PreFilterPlugin, PreScorePlugin,
                                        ScorePlugin, Status)
from sampan.scheduler.plugins.helpers import (FILTER_TAINT_EFFECTS, MaskCache, _selector,
                                              first_untolerated, freeze,
                                              required_node_affinity_matches)

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = (ERR_REASON_CONSTRAINTS_NOT_MATCH +
                                   " (missing required label)")
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
SYSTEM_DEFAULT_CONSTRAINTS = (
    {"topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 3},
    {"topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 5},
)
MAX_INT32 = 2 ** 31 - 1


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    selector: LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def _constraints(pod: PodInfo, raw: list[dict], action: str,
                 default_selector: LabelSelector | None = None) -> list[Constraint]:
    out = []
    for c in raw:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != action:
            continue
        selector = default_selector if default_selector is not None else _selector(
            c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or [] if k in pod.labels]
        if keys:
            selector = LabelSelector([*selector.requirements,
                                      *(Requirement(k, EQUALS, (pod.labels[k],)) for k in keys)])
        out.append(Constraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "", selector,
                              int(c.get("minDomains") or 1),
                              (c.get("nodeAffinityPolicy") or "Honor") == "Honor",
                              (c.get("nodeTaintsPolicy") or "Ignore") == "Honor"))
    return out


def _affinity_key(pod: PodInfo) -> bytes:
    return freeze([pod.spec.get("nodeSelector") or {},
                   (pod.affinity.get("nodeAffinity") or {}).get(
                       "requiredDuringSchedulingIgnoredDuringExecution")])


def _node_mask(cache: Cache, check) -> np.ndarray:
    mask = np.zeros(cache.capacity, dtype=bool)
    for info in cache.nodes.values():
        mask[info.slot] = check(info)
    return mask


class PodTopologySpread(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "PodTopologySpread"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self._masks = MaskCache()
        self.defaulting = self.args.get("defaultingType") or "System"
        self.default_constraints = (list(self.args.get("defaultConstraints") or [])
                                    if self.defaulting == "List" else
                                    list(SYSTEM_DEFAULT_CONSTRAINTS))

    # -- shared -------------------------------------------------------------------------------
    def _eligible(self, pod: PodInfo, cache: Cache, constraints: list[Constraint]) -> np.ndarray:
        """Slots whose domains count: all topology keys present, and the node policies."""
        ok = cache.valid.copy()
        for c in constraints:
            ok &= cache.topology_domains(c.topology_key)[0] >= 0
        if any(c.honor_affinity for c in constraints):
            ok &= self._masks.get(("affinity", _affinity_key(pod)), cache.node_generation,
                                  lambda: _node_mask(cache, lambda info:
                                                     required_node_affinity_matches(pod.spec,
                                                                                    info)))
        if any(c.honor_taints for c in constraints):
            tolerations = pod.spec.get("tolerations") or []
            ok &= self._masks.get(("taints", freeze(tolerations)), cache.node_generation,
                                  lambda: _node_mask(cache, lambda info: first_untolerated(
                                      info.taints, tolerations, FILTER_TAINT_EFFECTS) is None))
        return ok

    @staticmethod
    def _counts(pod: PodInfo, cache: Cache, c: Constraint) -> np.ndarray:
        return cache.count_matching(frozenset((pod.namespace,)), c.selector,
                                    include_terminating=False)

    # -- filter ---------------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        constraints = _constraints(pod, pod.spec.get("topologySpreadConstraints") or [],
                                   "DoNotSchedule")
        if not constraints:
            return SKIP
        eligible = self._eligible(pod, cache, constraints)
        prepared = []
        for c in constraints:
            ids, values = cache.topology_domains(c.topology_key)
            counts = self._counts(pod, cache, c)
            totals = np.bincount(ids[eligible], weights=counts[eligible], minlength=len(values))
            present = np.zeros(len(values), dtype=bool)
            present[ids[eligible]] = True
            domains = int(present.sum())
            if domains < c.min_domains:
                minimum = 0
            else:
                minimum = int(totals[present].min()) if domains else MAX_INT32
            totals = np.where(present, totals, 0)
            self_match = 1 if c.selector.matches(pod.labels) else 0
            prepared.append((c, totals, minimum, self_match))
        state["PodTopologySpread/filter"] = prepared
        return SUCCESS

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        codes = np.zeros(len(slots), dtype=np.int32)
        for c, totals, minimum, self_match in state["PodTopologySpread/filter"]:
            ids = cache.topology_domains(c.topology_key)[0][slots]
            missing = ids < 0
            codes[(codes == 0) & missing] = 1
            match = np.where(missing, 0, totals[np.maximum(ids, 0)] if len(totals) else 0)
            skew = match + self_match - minimum
            codes[(codes == 0) & (skew > c.max_skew)] = 2
        return codes, [_MISSING_LABEL, _NOT_MATCH]

    # -- score ----------------------------------------------------------------------------
    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        raw = pod.spec.get("topologySpreadConstraints") or []
        if raw:
            constraints = _constraints(pod, raw, "ScheduleAnyway")
            require_all = True
        else:
            selector = self._default_selector(pod)
            if selector is None or not self.default_constraints:
                return SKIP
            constraints = _constraints(pod, self.default_constraints, "ScheduleAnyway",
                                       selector)
            require_all = self.defaulting != "System"
        if not constraints:
            return SKIP
        state["PodTopologySpread/score"] = (constraints, require_all)
        return SUCCESS

    def _default_selector(self, pod: PodInfo) -> LabelSelector | None:
        selector = self.handle.default_selector(pod)
        if selector is None or selector.empty or selector.selects_nothing:
            return None
        return selector

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        constraints, require_all = state["PodTopologySpread/score"]
        ignored = np.zeros(len(slots), dtype=bool)
        if require_all:
            for c in constraints:
                ignored |= cache.topology_domains(c.topology_key)[0][slots] < 0
        counted = ~ignored
        all_keys = cache.valid.copy()
        for c in constraints:
            all_keys &= cache.topology_domains(c.topology_key)[0] >= 0
        score = np.zeros(len(slots), dtype=np.float64)
        for c in constraints:
            ids, values = cache.topology_domains(c.topology_key)
            node_ids = ids[slots]
            counts = self._counts(pod, cache, c)
            if not values:
                continue
            if c.topology_key == HOSTNAME:
                size = int(counted.sum())
                per = counts[slots].astype(np.float64)
            else:
                domains = np.unique(node_ids[counted & (node_ids >= 0)])
                size = len(domains)
                honour = self._policy_mask(pod, cache, c)
                if require_all:
                    honour = honour & all_keys
                totals = np.bincount(ids[honour & (ids >= 0)],
                                     weights=counts[honour & (ids >= 0)],
                                     minlength=len(values)) if len(values) else np.zeros(0)
                per = np.where(node_ids >= 0, totals[np.maximum(node_ids, 0)]
                               if len(totals) else 0, 0).astype(np.float64)
            weight = math.log(size + 2)
            score += np.where(node_ids >= 0, per * weight + (c.max_skew - 1), 0)
        out = np.rint(score).astype(np.int64)
        return np.where(ignored, -1, out)

    def _policy_mask(self, pod: PodInfo, cache: Cache, c: Constraint) -> np.ndarray:
        return self._eligible(pod, cache, [Constraint(c.max_skew, c.topology_key, c.selector,
                                                      c.min_domains, c.honor_affinity,
                                                      c.honor_taints)])

    def normalize(self, state: CycleState, pod: PodInfo, scores: np.ndarray) -> np.ndarray:
        if len(scores) == 0:
            return scores
        valid = scores >= 0
        if not valid.any():
            return np.zeros_like(scores)
        low, high = int(scores[valid].min()), int(scores[valid].max())
        if high == 0:
            return np.where(valid, MAX_NODE_SCORE, 0)
        return np.where(valid, MAX_NODE_SCORE * (high + low - scores) // high, 0)

    def events_to_register(self):
        return ("Pod/*", "Node/Add", "Node/Delete", "Node/UpdateNodeLabel",
                "Node/UpdateNodeTaint")


_MISSING_LABEL = Status.unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH)
_NOT_MATCH = Status.unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
