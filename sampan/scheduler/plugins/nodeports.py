"""NodePorts: a pod's host ports must be free on the node."""

from __future__ import annotations

from sampan.scheduler.cache import Cache, NodeInfo, PodInfo
from sampan.scheduler.framework import (SKIP, SUCCESS, CycleState, NodeFilterPlugin,
                                        PreFilterPlugin, Status)

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"
_ANY = "0.0.0.0"


def ports_conflict(wanted: list[tuple[str, str, int]],
                   used: dict[tuple[str, str, int], int]) -> bool:
    for protocol, ip, port in wanted:
        for used_protocol, used_ip, used_port in used:
            if (used_port == port and used_protocol == protocol
                    and (used_ip == ip or used_ip == _ANY or ip == _ANY)):
                return True
    return False


class NodePorts(PreFilterPlugin, NodeFilterPlugin):
    name = "NodePorts"

    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        return SUCCESS if pod.ports else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if ports_conflict(pod.ports, node.used_ports):
            return Status.unschedulable(ERR_REASON)
        return SUCCESS

    def events_to_register(self):
        return ("Pod/Delete", "Node/Add")
