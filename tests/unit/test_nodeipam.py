"""Pod CIDR allocation (the range allocator) and pod GC's choice of finished pods."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sampan.client.informer import InformerFactory
from sampan.controllers.nodeipam import CIDRRangeFullError, CIDRSet, NodeIpamController
from sampan.controllers.podgc import terminated_to_delete


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch(self, api_version: str, resource: str, name: str, patch: Any,
                    **_: Any) -> dict[str, Any]:
        self.patches.append((name, copy.deepcopy(patch)))
        return {}


def test_cidr_set_allocates_in_order_and_wraps() -> None:
    cidrs = CIDRSet("10.42.0.0/22", 24)
    assert [cidrs.allocate_next() for _ in range(4)] == [
        "10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"]
    with pytest.raises(CIDRRangeFullError):
        cidrs.allocate_next()
    cidrs.release("10.42.1.0/24")
    assert cidrs.allocate_next() == "10.42.1.0/24"


def test_cidr_set_occupy_ignores_foreign_ranges() -> None:
    cidrs = CIDRSet("10.42.0.0/16", 24)
    assert cidrs.occupy("10.42.0.0/24")
    assert not cidrs.occupy("10.99.0.0/24")
    assert not cidrs.occupy("fd00::/64")
    assert cidrs.allocate_next() == "10.42.1.0/24"


def test_cidr_set_ipv6() -> None:
    cidrs = CIDRSet("fd42::/56", 64)
    assert cidrs.allocate_next() == "fd42::/64"
    assert cidrs.allocate_next() == "fd42:0:0:1::/64"


def _node(name: str, cidrs: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if cidrs:
        spec = {"podCIDR": cidrs[0], "podCIDRs": cidrs}
    return {"metadata": {"name": name, "uid": "u-" + name}, "spec": spec}


def _controller(cluster_cidrs: list[str]) -> tuple[NodeIpamController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(), FakeRecorder()
    controller = NodeIpamController(client, InformerFactory(client), recorder=recorder,
                                    cluster_cidrs=cluster_cidrs)
    return controller, client, recorder


async def test_new_nodes_get_free_cidrs_and_deleted_nodes_return_them() -> None:
    controller, client, _ = _controller(["10.42.0.0/16"])
    existing = _node("old", ["10.42.0.0/24"])
    controller.nodes.indexer.upsert(existing)
    controller.occupy(existing)  # as run() rebuilds the map at start
    controller.nodes.indexer.upsert(_node("new"))
    await controller.reconcile("new")
    assert client.patches == [("new", {"metadata": {"uid": "u-new"},
                                       "spec": {"podCIDR": "10.42.1.0/24",
                                                "podCIDRs": ["10.42.1.0/24"]}})]
    # A second pass before the cache shows the write re-sends the same CIDR.
    await controller.reconcile("new")
    assert client.patches[-1][1]["spec"]["podCIDR"] == "10.42.1.0/24"

    controller.nodes.indexer.remove("old")
    await controller.reconcile("old")
    assert controller.cidr_sets[0].allocate_next() == "10.42.2.0/24"
    assert controller.cidr_sets[0].allocate_next() == "10.42.3.0/24"


async def test_dual_stack_and_exhaustion_event() -> None:
    controller, client, recorder = _controller(["10.42.0.0/24", "fd42::/64"])
    controller.nodes.indexer.upsert(_node("a"))
    await controller.reconcile("a")
    assert client.patches[0][1]["spec"]["podCIDRs"] == ["10.42.0.0/24", "fd42::/64"]
    controller.nodes.indexer.upsert(_node("b"))
    with pytest.raises(CIDRRangeFullError):
        await controller.reconcile("b")
    assert recorder.events == [("b", "CIDRNotAvailable", "Node b status is now: CIDRNotAvailable")]


def test_terminated_pod_gc_picks_the_oldest_beyond_the_threshold() -> None:
    def pod(name: str, phase: str, created: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
                "status": {"phase": phase}}
    pods = [pod("a", "Succeeded", "2023-01-01T00:00:03Z"), pod("b", "Failed", "2023-01-01T00:00:01Z"),
            pod("c", "Running", "2023-01-01T00:00:00Z"), pod("d", "Succeeded", "2023-01-01T00:00:02Z")]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 1)] == ["b", "d"]
    assert terminated_to_delete(pods, 3) == []
    assert terminated_to_delete(pods, 0) == []


class FakePodGCClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        from sampan.client.errors import ApiError
        raise ApiError({"code": 404, "reason": "NotFound", "message": "not found"})

    async def patch(self, api_version: str, resource: str, name: str, patch: Any,
                    **_: Any) -> dict[str, Any]:
        self.calls.append(("patch", name, patch))
        return {}

    async def delete(self, api_version: str, resource: str, name: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("delete", name, kwargs.get("grace_period_seconds")))
        return {}


async def test_pod_gc_deletes_orphans_after_quarantine_and_unscheduled_terminating_pods() -> None:
    from sampan.controllers.podgc import PodGCController
    client = FakePodGCClient()
    controller = PodGCController(client, InformerFactory(client), recorder=FakeRecorder(),
                                 quarantine_time=0.01)
    controller.pods.indexer.upsert({"metadata": {"name": "orphan", "namespace": "ns", "uid": "1"},
                                    "spec": {"nodeName": "gone"}, "status": {"phase": "Running"}})
    controller.pods.indexer.upsert({"metadata": {"name": "stuck", "namespace": "ns", "uid": "2",
                                                 "deletionTimestamp": "2023-01-01T00:00:00Z"},
                                    "spec": {}, "status": {"phase": "Pending"}})
    await controller.gc()
    assert ("delete", "stuck", 0) in client.calls
    assert not any(c[1] == "orphan" for c in client.calls)  # quarantined first
    await controller.reconcile("gone")
    patch = next(c[2] for c in client.calls if c[:2] == ("patch", "orphan"))
    assert patch["status"]["phase"] == "Failed"
    assert patch["status"]["conditions"][0]["reason"] == "DeletionByPodGC"
    assert ("delete", "orphan", 0) in client.calls
