"""Endpoints subsets: grouping by port, readiness, named ports, hostnames and truncation."""

from __future__ import annotations

from typing import Any

from sampan.controllers.endpoints import (
    OVER_CAPACITY_ANNOTATION,
    TriggerTimeTracker,
    capacity_annotation_set_correctly,
    desired_subsets,
    find_port,
    format_trigger_time,
    normalize_subsets,
    pod_endpoints_changed,
    should_pod_be_in_endpoints,
    truncate_subsets,
)


def pod(name: str, ip: str = "10.0.0.1", *, ready: bool = True, ports: dict[str, int] | None = None,
        phase: str = "Running", deleting: bool = False, node: str = "n1",
        **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports.items()]
    metadata: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": metadata,
            "spec": {"containers": [container], "nodeName": node, **spec},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": "2024-01-01T00:00:05Z"}]}}


def service(ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    if ports is None:
        ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    return {"metadata": {"name": "svc", "namespace": "ns",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"selector": {"app": "x"}, "clusterIP": "10.43.0.5", "ports": ports, **spec}}


def names(subset: dict[str, Any], field: str) -> list[str]:
    return [a["targetRef"]["name"] for a in subset.get(field) or ()]


def test_ready_and_not_ready_addresses_share_a_subset() -> None:
    subsets = desired_subsets(service(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)])
    assert len(subsets) == 1
    assert names(subsets[0], "addresses") == ["a"]
    assert names(subsets[0], "notReadyAddresses") == ["b"]
    assert subsets[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    address = subsets[0]["addresses"][0]
    assert address == {"ip": "10.0.0.1", "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}


def test_publish_not_ready_addresses_lists_everyone_ready() -> None:
    subsets = desired_subsets(service(publishNotReadyAddresses=True),
                              [pod("a"), pod("b", "10.0.0.2", ready=False),
                               pod("c", "10.0.0.3", deleting=True)])
    assert names(subsets[0], "addresses") == ["a", "b", "c"]
    assert "notReadyAddresses" not in subsets[0]


def test_finished_deleting_and_ip_less_pods_are_left_out() -> None:
    no_ip = pod("d")
    no_ip["status"].pop("podIP")
    no_ip["status"].pop("podIPs")
    pods = [pod("a", phase="Succeeded"), pod("b", "10.0.0.2", deleting=True), no_ip]
    assert desired_subsets(service(), pods) == []
    assert not should_pod_be_in_endpoints(pod("b", deleting=True), False)
    assert should_pod_be_in_endpoints(pod("b", deleting=True), True)


def test_named_target_port_resolved_per_pod_splits_subsets() -> None:
    svc = service([{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    pods = [pod("a", "10.0.0.1", ports={"web": 8080}), pod("b", "10.0.0.2", ports={"web": 9090}),
            pod("c", "10.0.0.3", ports={"other": 1})]
    subsets = desired_subsets(svc, pods)
    by_port = {s["ports"][0]["port"]: names(s, "addresses") for s in subsets}
    assert by_port == {8080: ["a"], 9090: ["b"]}


def test_ports_offered_by_the_same_addresses_are_grouped() -> None:
    svc = service([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}])
    together = desired_subsets(svc, [pod("a", "10.0.0.1", ports={"metrics": 9100}),
                                     pod("b", "10.0.0.2", ports={"metrics": 9100})])
    assert len(together) == 1
    assert [p["name"] for p in together[0]["ports"]] == ["http", "metrics"]
    assert names(together[0], "addresses") == ["a", "b"]

    apart = desired_subsets(svc, [pod("a", "10.0.0.1", ports={"metrics": 9100}),
                                  pod("b", "10.0.0.2")])
    by_port = {s["ports"][0]["name"]: names(s, "addresses") for s in apart}
    assert by_port == {"http": ["a", "b"], "metrics": ["a"]}


def test_headless_without_ports_and_hostnames() -> None:
    svc = service([], clusterIP="None")
    pods = [pod("a", hostname="a", subdomain="svc"),
            pod("b", "10.0.0.2", hostname="b", subdomain="other")]
    subsets = desired_subsets(svc, pods)
    assert len(subsets) == 1 and "ports" not in subsets[0]
    hostnames = {a["targetRef"]["name"]: a.get("hostname") for a in subsets[0]["addresses"]}
    assert hostnames == {"a": "a", "b": None}
    # A service with a cluster IP and no ports has no endpoints.
    assert desired_subsets(service([]), pods) == []


def test_ip_family_of_the_service_picks_the_address() -> None:
    dual = pod("a")
    dual["status"]["podIPs"] = [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]
    subsets = desired_subsets(service(ipFamilies=["IPv6"]), [dual])
    assert subsets[0]["addresses"][0]["ip"] == "fd00::1"


def test_find_port() -> None:
    p = pod("a", ports={"web": 8080})
    assert find_port(p, {"port": 80, "targetPort": "web"}) == 8080
    assert find_port(p, {"port": 80, "targetPort": "web", "protocol": "UDP"}) is None
    assert find_port(p, {"port": 80, "targetPort": 81}) == 81
    assert find_port(p, {"port": 80}) == 80
    sidecar = pod("b", initContainers=[{"name": "s", "restartPolicy": "Always",
                                        "ports": [{"name": "side", "containerPort": 7000}]}])
    assert find_port(sidecar, {"port": 1, "targetPort": "side"}) == 7000


def test_truncation_keeps_ready_addresses_first() -> None:
    ready = [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(900)]
    not_ready = [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(300)]
    subsets = [{"addresses": ready, "notReadyAddresses": not_ready, "ports": [{"port": 1}]}]
    assert not capacity_annotation_set_correctly({}, subsets)
    assert truncate_subsets(subsets)
    assert len(subsets[0]["addresses"]) == 900
    assert len(subsets[0]["notReadyAddresses"]) == 100
    assert capacity_annotation_set_correctly({}, subsets)
    assert not capacity_annotation_set_correctly({OVER_CAPACITY_ANNOTATION: "truncated"}, subsets)

    many = [{"addresses": [{"ip": str(i)} for i in range(800)], "notReadyAddresses": [{"ip": "x"}]},
            {"addresses": [{"ip": str(i)} for i in range(400)]}]
    assert truncate_subsets(many)
    assert sum(len(s.get("addresses") or ()) for s in many) == 1000
    assert all("notReadyAddresses" not in s for s in many)
    assert not truncate_subsets([{"addresses": [{"ip": "1"}]}])


def test_normalize_ignores_target_ref_resource_version_and_empty_fields() -> None:
    subsets = desired_subsets(service(), [pod("a")])
    stored = [{"addresses": [{**subsets[0]["addresses"][0], "hostname": "",
                              "targetRef": {**subsets[0]["addresses"][0]["targetRef"],
                                            "resourceVersion": "7"}}],
               "notReadyAddresses": [], "ports": subsets[0]["ports"]}]
    assert normalize_subsets(stored) == subsets


def test_pod_changes_that_matter() -> None:
    a = pod("a")
    assert pod_endpoints_changed(a, pod("a")) == (False, False)
    assert pod_endpoints_changed(a, pod("a", ready=False)) == (True, False)
    relabelled = pod("a")
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert pod_endpoints_changed(a, relabelled) == (False, True)


def test_trigger_time_tracker() -> None:
    tracker = TriggerTimeTracker()
    svc = service()
    first = tracker.compute("ns/svc", svc, [pod("a")])
    assert format_trigger_time(first) == "2024-01-01T00:00:00Z"  # a new service: its creation
    assert tracker.compute("ns/svc", svc, [pod("a")]) is None  # nothing changed since
    later = pod("b")
    later["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:01:00.5Z"
    assert format_trigger_time(tracker.compute("ns/svc", svc, [pod("a"), later])) == \
        "2024-01-01T00:01:00.5Z"
