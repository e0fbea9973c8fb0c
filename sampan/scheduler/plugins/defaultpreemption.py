"""DefaultPreemption: when no node fits, find a node where evicting lower-priority pods
would make room, pick the cheapest such node, nominate it and delete the victims.

Victims on a node: remove every lower-priority pod, check the pod fits, then give back as
many as possible, most important first, pods whose eviction would break a
PodDisruptionBudget before the others. The node with the fewest budget violations, then the
lowest highest victim priority, the smallest priority sum and the fewest victims wins.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from sampan.client.errors import ApiError
from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import (SUCCESS, Code, CycleState, PostFilterPlugin, Status,
                                        fit_error_message)
from sampan.scheduler.plugins.helpers import _selector

log = logging.getLogger(__name__)

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100


@dataclass
class Candidate:
    slot: int
    node_name: str
    victims: list[PodInfo]
    pdb_violations: int


class DefaultPreemption(PostFilterPlugin):
    name = "DefaultPreemption"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self.min_percentage = int(self.args.get("minCandidateNodesPercentage",
                                                MIN_CANDIDATE_NODES_PERCENTAGE))
        self.min_absolute = int(self.args.get("minCandidateNodesAbsolute",
                                              MIN_CANDIDATE_NODES_ABSOLUTE))
        self._tasks: set[asyncio.Task] = set()

    # -- eligibility --------------------------------------------------------------------------
    def _ineligible(self, pod: PodInfo, cache: Cache) -> str:
        if pod.spec.get("preemptionPolicy") == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName")
        node = cache.nodes.get(nominated or "")
        if node is not None and any(p.terminating and p.priority < pod.priority
                                    for p in node.pods.values()):
            return "not eligible due to a terminating pod on the nominated node."
        return ""

    def post_filter(self, state: CycleState, pod: PodInfo,
                    statuses: dict[int, Status]) -> tuple[str | None, Status]:
        cache = self.handle.cache
        reason = self._ineligible(pod, cache)
        if reason:
            return None, Status.unschedulable("preemption: " + reason)
        all_slots = cache.node_slots()
        node_statuses: dict[int, Status] = {}
        potential = []
        for slot in all_slots.tolist():
            status = statuses.get(slot)
            if status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                node_statuses[slot] = Status.unresolvable(NOT_HELPFUL)
            else:
                potential.append(slot)
        wanted = max(len(all_slots) * self.min_percentage // 100, self.min_absolute)
        candidates: list[Candidate] = []
        pdbs = self._pdbs(pod)
        for slot in potential:
            victims, violations, status = self.select_victims(pod, slot, pdbs)
            if status.success and victims:
                candidates.append(Candidate(slot, cache.slot_infos[slot].name, victims,
                                            violations))
                if len(candidates) >= wanted:
                    break
            elif status.success:
                node_statuses[slot] = Status.error(
                    f"expected at least one victim pod on node {cache.slot_infos[slot].name!r}")
            else:
                node_statuses[slot] = status
        if not candidates:
            message = fit_error_message(len(all_slots), node_statuses.values())
            return None, Status.unschedulable("preemption: " + message)
        best = pick_one(candidates)
        self._prepare(pod, best)
        return best.node_name, SUCCESS

    # -- victims ------------------------------------------------------------------------------
    def _pdbs(self, pod: PodInfo) -> list[list]:
        lister = self.handle.listers.get("poddisruptionbudgets")
        if lister is None:
            return []
        out = []
        for pdb in lister.list():
            allowed = int((pdb.get("status") or {}).get("disruptionsAllowed") or 0)
            out.append([pdb["metadata"].get("namespace", ""),
                        _selector((pdb.get("spec") or {}).get("selector")), allowed])
        return out

    def _fits(self, pod: PodInfo, slot: int) -> Status:
        framework = self.handle.framework
        state = CycleState()
        status = framework.run_pre_filter(state, pod)
        if not status.success:
            return status
        codes, table = framework.run_filters(state, pod, np.array([slot]))
        return SUCCESS if codes[0] == 0 else table[codes[0] - 1]

    def select_victims(self, pod: PodInfo, slot: int,
                       pdbs: list[list] | None = None) -> tuple[list[PodInfo], int, Status]:
        cache = self.handle.cache
        info = cache.slot_infos[slot]
        lower = [p for p in info.pods.values() if p.priority < pod.priority]
        if not lower:
            return [], 0, Status.unresolvable(NO_VICTIMS)
        for p in lower:
            cache.detach_pod(p.key)
        try:
            status = self._fits(pod, slot)
            if not status.success:
                return [], 0, status
            lower.sort(key=lambda p: (-p.priority, p.start_time))
            budgets = [list(b) for b in (pdbs or [])]
            violating, other = [], []
            for p in lower:
                (violating if _violates(p, budgets) else other).append(p)
            victims, violations = [], 0
            for group, breaks in ((violating, True), (other, False)):
                for p in group:
                    cache.reattach_pod(p.key)
                    if not self._fits(pod, slot).success:
                        cache.detach_pod(p.key)
                        victims.append(p)
                        violations += breaks
            return victims, violations, SUCCESS
        finally:
            for p in lower:
                cache.reattach_pod(p.key)

    # -- acting -------------------------------------------------------------------------------
    def _prepare(self, pod: PodInfo, candidate: Candidate) -> None:
        task = asyncio.get_running_loop().create_task(self._evict(pod, candidate),
                                                      name=f"preempt for {pod.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evict(self, pod: PodInfo, candidate: Candidate) -> None:
        client, recorder = self.handle.client, self.handle.recorder
        scheduler_name = pod.spec.get("schedulerName") or "default-scheduler"
        for victim in candidate.victims:
            try:
                await client.patch("v1", "pods", victim.name, {"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": f"{scheduler_name}: preempting to accommodate a higher "
                               "priority pod"}]}},
                    namespace=victim.namespace, subresource="status",
                    patch_type="strategic")
            except ApiError as e:
                if e.not_found:
                    continue
                log.info("could not mark %s as a disruption target: %s", victim.key, e)
            try:
                await client.delete("v1", "pods", victim.name, namespace=victim.namespace)
            except ApiError as e:
                if not e.not_found:
                    log.warning("could not preempt %s: %s", victim.key, e)
                    continue
            if recorder is not None:
                recorder.event({"apiVersion": "v1", "kind": "Pod", "metadata": victim.pod.get(
                    "metadata") or {}}, "Normal", "Preempted",
                    f"Preempted by pod {pod.uid} on node {candidate.node_name}")


def _violates(pod: PodInfo, budgets: list[list]) -> bool:
    hit = False
    for budget in budgets:
        namespace, selector, _ = budget
        if namespace == pod.namespace and not selector.empty and selector.matches(pod.labels):
            budget[2] -= 1
            hit = hit or budget[2] < 0
    return hit


def pick_one(candidates: list[Candidate]) -> Candidate:
    def rank(c: Candidate):
        priorities = [v.priority for v in c.victims]
        return (c.pdb_violations, max(priorities), sum(priorities), len(c.victims))
    return min(candidates, key=rank)
