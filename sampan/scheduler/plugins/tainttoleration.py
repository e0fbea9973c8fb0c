"""TaintToleration: NoSchedule / NoExecute taints the pod does not tolerate filter a node;
untolerated PreferNoSchedule taints lower its score."""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, NodeInfo, PodInfo
from sampan.scheduler.framework import (CycleState, FilterPlugin, FilterResult, ScorePlugin,
                                        Status, default_normalize)
from sampan.scheduler.plugins.helpers import (MaskCache, codes_per_slot, first_untolerated,
                                              freeze, tolerates)

FILTER_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def untolerated_reason(taint) -> str:
    # Upstream named the taint ("untolerated taint {key: value}") until 1.33; since then
    # the reason no longer leaks taint values, so nodes with different taints group together.
    return "node(s) had untolerated taint(s)"


class TaintToleration(FilterPlugin, ScorePlugin):
    name = "TaintToleration"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self._masks = MaskCache()
        self._scores = MaskCache()

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        tolerations = pod.spec.get("tolerations") or []

        def check(node: NodeInfo) -> Status | None:
            taint = first_untolerated(node.taints, tolerations, FILTER_EFFECTS)
            return None if taint is None else Status.unresolvable(untolerated_reason(taint))
        codes, table = self._masks.get(freeze(tolerations), cache.node_generation,
                                       lambda: codes_per_slot(cache, check))
        return codes[slots], table

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        tolerations = [t for t in pod.spec.get("tolerations") or []
                       if (t.get("effect") or "") in ("", "PreferNoSchedule")]

        def build() -> np.ndarray:
            scores = np.zeros(cache.capacity, dtype=np.int64)
            for info in cache.nodes.values():
                scores[info.slot] = sum(
                    1 for taint in info.taints if taint.get("effect") == "PreferNoSchedule"
                    and not any(tolerates(t, taint) for t in tolerations))
            return scores
        return self._scores.get(freeze(tolerations), cache.node_generation, build)[slots]

    def normalize(self, state: CycleState, pod: PodInfo, scores: np.ndarray) -> np.ndarray:
        return default_normalize(scores, reverse=True)

    def events_to_register(self):
        return ("Node/Add", "Node/UpdateNodeTaint")
