"""NodeAffinity: ``nodeSelector`` and required node affinity filter; preferred node affinity
terms score (the sum of the weights of the terms a node matches)."""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, NodeInfo, PodInfo
from sampan.scheduler.framework import (SKIP, SUCCESS, CycleState, FilterPlugin, FilterResult,
                                        PreScorePlugin, ScorePlugin, Status, default_normalize)
from sampan.scheduler.plugins.helpers import (MaskCache, codes_per_slot, freeze,
                                              node_selector_matches,
                                              required_node_affinity_matches, term_matches)

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"
ERR_REASON_ENFORCED = "node(s) didn't match scheduler-enforced node affinity"


def _required_key(pod: PodInfo) -> bytes:
    node_affinity = (pod.affinity.get("nodeAffinity") or {})
    return freeze([pod.spec.get("nodeSelector") or {},
                   node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")])


class NodeAffinity(FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "NodeAffinity"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self.added_affinity = self.args.get("addedAffinity") or {}
        self._masks = MaskCache()
        self._scores = MaskCache()

    # -- filter ---------------------------------------------------------------------------
    def required_codes(self, pod: PodInfo, cache: Cache) -> np.ndarray:
        """Per slot 0 where the pod's required affinity holds (1: pod's own, 2: enforced)."""
        def build() -> np.ndarray:
            added = self.added_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")

            def check(node: NodeInfo) -> Status | None:
                if added and not node_selector_matches(added, node):
                    return _ENFORCED
                if not required_node_affinity_matches(pod.spec, node):
                    return _POD
                return None
            codes, table = codes_per_slot(cache, check)
            # Fixed codes so the mask means the same whatever order statuses were met in.
            remap = np.array([0] + [1 if s is _POD else 2 for s in table], dtype=np.int32)
            return remap[codes]
        return self._masks.get(_required_key(pod), cache.node_generation, build)

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        return self.required_codes(pod, cache)[slots], [_POD, _ENFORCED]

    # -- score ----------------------------------------------------------------------------
    def _preferred(self, pod: PodInfo) -> list:
        node_affinity = pod.affinity.get("nodeAffinity") or {}
        terms = list(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        terms += self.added_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        return terms

    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        return SUCCESS if self._preferred(pod) else SKIP

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        terms = self._preferred(pod)

        def build() -> np.ndarray:
            scores = np.zeros(cache.capacity, dtype=np.int64)
            for info in cache.nodes.values():
                scores[info.slot] = sum(int(t.get("weight") or 0) for t in terms
                                        if term_matches(t.get("preference") or {}, info))
            return scores
        return self._scores.get(freeze(terms), cache.node_generation, build)[slots]

    def normalize(self, state: CycleState, pod: PodInfo, scores: np.ndarray) -> np.ndarray:
        return default_normalize(scores)

    def events_to_register(self):
        return ("Node/Add", "Node/UpdateNodeLabel")


_POD = Status.unresolvable(ERR_REASON_POD)
_ENFORCED = Status.unresolvable(ERR_REASON_ENFORCED)
