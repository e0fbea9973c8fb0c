"""EndpointSlice planning: conditions, topology, packing, in-place updates and placeholders."""

from __future__ import annotations

import itertools
from typing import Any

from sampan.controllers.endpointslice import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    SliceTracker,
    endpoint_key,
    plan_slices,
)

NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}
_names = itertools.count()


def pod(name: str, ip: str, *, ready: bool = True, deleting: bool = False, node: str = "n1",
        ports: dict[str, int] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports.items()]
    metadata: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"containers": [container], "nodeName": node},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "svc", "namespace": "ns", "uid": "svc-uid",
                         "labels": {"team": "a"}},
            "spec": {"selector": {"app": "x"}, "clusterIP": "10.43.0.5", "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                     **spec}}


def pods(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [pod(f"p{i}", f"10.0.{i // 250}.{i % 250}") for i in range(start, start + count)]


def stored(plan_slice: dict[str, Any]) -> dict[str, Any]:
    """A created slice as the API server would return it."""
    name = plan_slice["metadata"].get("name") or f"svc-{next(_names)}"
    return {**plan_slice, "metadata": {**plan_slice["metadata"], "name": name, "uid": f"uid-{name}",
                                       "resourceVersion": "1"}}


def apply(existing: list[dict[str, Any]], plan) -> list[dict[str, Any]]:
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in plan.delete:
        by_name.pop(s["metadata"]["name"])
    for s in plan.update:
        by_name[s["metadata"]["name"]] = s
    for s in plan.create:
        created = stored(s)
        by_name[created["metadata"]["name"]] = created
    return list(by_name.values())


def test_endpoint_conditions_topology_and_labels() -> None:
    plan = plan_slices(service(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False),
                                   pod("c", "10.0.0.3", deleting=True)], [], NODES.get)
    assert len(plan.create) == 1 and not plan.update and not plan.delete
    created = plan.create[0]
    assert created["metadata"]["generateName"] == "svc-"
    assert created["metadata"]["labels"] == {"team": "a", LABEL_SERVICE_NAME: "svc",
                                             LABEL_MANAGED_BY: "endpointslice-controller.k8s.io"}
    assert created["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    assert created["addressType"] == "IPv4"
    assert created["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_pod = {e["targetRef"]["name"]: e for e in created["endpoints"]}
    assert by_pod["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_pod["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert by_pod["c"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert by_pod["a"]["zone"] == "z1" and by_pod["a"]["nodeName"] == "n1"


def test_headless_label_and_missing_node() -> None:
    plan = plan_slices(service(clusterIP="None"), [pod("a", "10.0.0.1", node="gone")], [],
                       NODES.get)
    assert plan.errors and "Node gone Not Found" in plan.errors[0]
    # The pod is skipped, so only the placeholder remains.
    assert plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []
    assert plan.create[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_slices_hold_at_most_max_endpoints() -> None:
    plan = plan_slices(service(), pods(250), [], NODES.get)
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100, 100]


def test_unchanged_state_needs_no_writes() -> None:
    existing = apply([], plan_slices(service(), pods(150), [], NODES.get))
    plan = plan_slices(service(), pods(150), existing, NODES.get)
    assert not plan.create and not plan.update and not plan.delete


def test_changed_endpoint_is_updated_in_place() -> None:
    existing = apply([], plan_slices(service(), pods(3), [], NODES.get))
    changed = pods(3)
    changed[1]["status"]["conditions"][0]["status"] = "False"
    plan = plan_slices(service(), changed, existing, NODES.get)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == existing[0]["metadata"]["name"]
    ready = {e["targetRef"]["name"]: e["conditions"]["ready"] for e in plan.update[0]["endpoints"]}
    assert ready == {"p0": True, "p1": False, "p2": True}


def test_new_endpoints_fill_existing_slices_before_creating() -> None:
    existing = apply([], plan_slices(service(), pods(150), [], NODES.get))
    plan = plan_slices(service(), pods(160), existing, NODES.get)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert len(plan.update[0]["endpoints"]) == 60  # the half-full slice took the ten new ones


def test_emptied_slice_is_reused_for_new_endpoints() -> None:
    existing = apply([], plan_slices(service(), pods(100), [], NODES.get))
    plan = plan_slices(service(), pods(100, start=500), existing, NODES.get)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == existing[0]["metadata"]["name"]
    assert plan.update[0]["metadata"]["resourceVersion"] == "1"


def test_placeholder_when_nothing_selected_and_kept() -> None:
    plan = plan_slices(service(), [], [], NODES.get)
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == []
    existing = apply([], plan)
    again = plan_slices(service(), [], existing, NODES.get)
    assert not again.create and not again.update and not again.delete
    # Losing every endpoint turns the last slice into the placeholder, in place.
    full = apply([], plan_slices(service(), pods(2), [], NODES.get))
    emptied = plan_slices(service(), [], full, NODES.get)
    assert not emptied.create and not emptied.delete and len(emptied.update) == 1
    assert emptied.update[0]["endpoints"] == [] and emptied.update[0]["ports"] == []


def test_ports_group_endpoints_and_stale_port_groups_go() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    plan = plan_slices(svc, [pod("a", "10.0.0.1", ports={"web": 1}),
                             pod("b", "10.0.0.2", ports={"web": 2})], [], NODES.get)
    assert sorted(s["ports"][0]["port"] for s in plan.create) == [1, 2]
    existing = apply([], plan)
    plan = plan_slices(svc, [pod("a", "10.0.0.1", ports={"web": 1})], existing, NODES.get)
    assert len(plan.delete) == 1 and plan.delete[0]["ports"][0]["port"] == 2


def test_address_types() -> None:
    dual = pod("a", "10.0.0.1")
    dual["status"]["podIPs"].append({"ip": "fd00::1"})
    plan = plan_slices(service(ipFamilies=["IPv4", "IPv6"]), [dual], [], NODES.get)
    assert {s["addressType"]: s["endpoints"][0]["addresses"] for s in plan.create} == \
        {"IPv4": ["10.0.0.1"], "IPv6": ["fd00::1"]}
    existing = apply([], plan)
    plan = plan_slices(service(), [dual], existing, NODES.get)
    assert [s["addressType"] for s in plan.delete] == ["IPv6"]


def test_slices_of_another_owner_are_replaced() -> None:
    foreign = stored(plan_slices(service(), pods(1), [], NODES.get).create[0])
    foreign["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service", "uid": "old"}]
    plan = plan_slices(service(), pods(1), [foreign], NODES.get)
    assert len(plan.create) == 1 and plan.delete == [foreign]


def test_endpoint_key_ignores_conditions() -> None:
    ref = {"namespace": "ns", "name": "p"}
    a = {"addresses": ["2", "1"], "targetRef": ref, "conditions": {"ready": True}}
    b = {"addresses": ["1", "2"], "targetRef": ref, "conditions": {"ready": False}}
    assert endpoint_key(a) == endpoint_key(b)


def test_tracker_detects_stale_cache() -> None:
    tracker = SliceTracker()
    mine = {"metadata": {"uid": "u1", "resourceVersion": "5"}}
    tracker.written("ns/svc", mine)
    assert tracker.stale("ns/svc", [])  # created but not seen yet
    assert tracker.stale("ns/svc", [{"metadata": {"uid": "u1", "resourceVersion": "4"}}])
    assert not tracker.stale("ns/svc", [mine])
    assert not tracker.should_sync("ns/svc", mine)
    assert tracker.should_sync("ns/svc", {"metadata": {"uid": "u1", "resourceVersion": "6"}})
    tracker.deleting("ns/svc", mine)
    assert tracker.stale("ns/svc", [mine])
    assert tracker.deleted("ns/svc", mine)
    assert not tracker.stale("ns/svc", [])
