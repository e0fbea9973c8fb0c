"""SchedulingGates: a pod with ``spec.schedulingGates`` stays out of the active queue."""

from __future__ import annotations

from sampan.scheduler.cache import PodInfo
from sampan.scheduler.framework import SUCCESS, PreEnqueuePlugin, Status

GATED_REASON = "SchedulingGated"
GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"


class SchedulingGates(PreEnqueuePlugin):
    name = "SchedulingGates"

    def pre_enqueue(self, pod: PodInfo) -> Status:
        gates = pod.spec.get("schedulingGates") or []
        if not gates:
            return SUCCESS
        names = [g.get("name", "") for g in gates]
        return Status.unresolvable(f"waiting for scheduling gates: {names}", plugin=self.name)

    def events_to_register(self):
        return ("Pod/UpdatePodSchedulingGatesEliminated",)
