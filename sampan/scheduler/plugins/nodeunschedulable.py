"""NodeUnschedulable: ``spec.unschedulable`` nodes take only pods tolerating that taint."""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import CycleState, FilterPlugin, FilterResult, Status
from sampan.scheduler.plugins.helpers import MaskCache, tolerates

ERR_REASON = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable(FilterPlugin):
    name = "NodeUnschedulable"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self._masks = MaskCache(4)

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        if any(tolerates(t, UNSCHEDULABLE_TAINT) for t in pod.spec.get("tolerations") or []):
            return np.zeros(len(slots), dtype=np.int32), []
        mask = self._masks.get("", cache.node_generation, lambda: self._build(cache))
        return mask[slots], [Status.unresolvable(ERR_REASON)]

    @staticmethod
    def _build(cache: Cache) -> np.ndarray:
        codes = np.zeros(cache.capacity, dtype=np.int32)
        for info in cache.nodes.values():
            if info.unschedulable:
                codes[info.slot] = 1
        return codes

    def events_to_register(self):
        return ("Node/Add", "Node/UpdateNodeTaint")
