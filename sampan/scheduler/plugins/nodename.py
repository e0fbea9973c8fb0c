"""NodeName: a pod that names its node fits only there."""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import CycleState, FilterPlugin, FilterResult, Status

ERR_REASON = "node(s) didn't match the requested node name"


class NodeName(FilterPlugin):
    name = "NodeName"

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        wanted = pod.spec.get("nodeName") or ""
        codes = np.zeros(len(slots), dtype=np.int32)
        if not wanted:
            return codes, []
        infos = cache.slot_infos
        for i, slot in enumerate(slots.tolist()):
            if infos[slot].name != wanted:
                codes[i] = 1
        return codes, [Status.unresolvable(ERR_REASON)]

    def events_to_register(self):
        return ("Node/Add", "Node/UpdateNodeLabel")
