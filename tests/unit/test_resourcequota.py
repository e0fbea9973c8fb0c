"""Quota usage: object counts, compute resources, scopes and quantity formatting."""

from __future__ import annotations

from typing import Any

from sampan.controllers.resourcequota import (
    Usage,
    claim_usage,
    compute_usage,
    pod_counts_for_quota,
    pod_resources,
    pod_usage,
    service_usage,
    used_for,
)


def pod(name: str, *, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
        phase: str = "Running", **spec: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": resources}], **spec},
            "status": {"phase": phase}}


def quota(hard: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": hard, **spec}}


def usage_of(q: dict[str, Any], **objects: list[dict[str, Any]]) -> dict[str, str]:
    return used_for(q, compute_usage(q, objects, now=0.0))


def test_pod_compute_usage_formats_like_upstream() -> None:
    q = quota({"pods": "10", "requests.cpu": "4", "limits.cpu": "4", "requests.memory": "8Gi",
               "memory": "8Gi", "cpu": "4", "limits.memory": "8Gi", "count/pods": "10"})
    pods = [pod("a", requests={"cpu": "250m", "memory": "128Mi"},
                limits={"cpu": "1", "memory": "1Gi"}),
            pod("b", requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "2Gi"}),
            pod("done", requests={"cpu": "3"}, phase="Succeeded")]
    assert usage_of(q, pods=pods) == {
        "pods": "2", "count/pods": "3", "requests.cpu": "1250m", "cpu": "1250m",
        "limits.cpu": "3", "requests.memory": "1152Mi", "memory": "1152Mi", "limits.memory": "3Gi"}


def test_unused_resources_are_zero_and_unknown_ones_keep_their_last_value() -> None:
    q = quota({"pods": "1", "requests.cpu": "1", "secrets": "1", "count/widgets.example.com": "2"})
    q["status"] = {"used": {"count/widgets.example.com": "1"}}
    assert usage_of(q) == {"pods": "0", "requests.cpu": "0", "secrets": "0",
                           "count/widgets.example.com": "1"}


def test_init_containers_sidecars_and_overhead() -> None:
    p = pod("a", requests={"cpu": "100m"}, overhead={"cpu": "10m"},
            initContainers=[{"name": "init", "resources": {"requests": {"cpu": "500m"}}},
                            {"name": "side", "restartPolicy": "Always",
                             "resources": {"requests": {"cpu": "50m"}}}])
    requests = pod_resources(p, "requests")
    # max(100m + 50m sidecar, 500m init) + 10m overhead
    assert requests["cpu"][0] * 1000 == 510


def test_extended_and_hugepages_requests() -> None:
    p = pod("a", requests={"nvidia.com/gpu": "2", "hugepages-2Mi": "4Mi"})
    usage = pod_usage(p, now=0.0)
    assert usage.formatted("requests.nvidia.com/gpu") == "2"
    assert usage.formatted("requests.hugepages-2Mi") == "4Mi"
    assert "nvidia.com/gpu" not in usage.values


def test_pods_past_their_deletion_grace_period_are_released() -> None:
    p = pod("a")
    p["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z", deletionGracePeriodSeconds=30)
    assert pod_counts_for_quota(p, now=1704067200.0 + 10)
    assert not pod_counts_for_quota(p, now=1704067200.0 + 31)


def test_scopes() -> None:
    best_effort = pod("be")
    burstable = pod("bu", requests={"cpu": "100m"})
    terminating = pod("t", requests={"cpu": "200m"}, activeDeadlineSeconds=60)
    high = pod("h", requests={"cpu": "300m"}, priorityClassName="high")
    pods = [best_effort, burstable, terminating, high]
    assert usage_of(quota({"pods": "9"}, scopes=["BestEffort"]), pods=pods) == {"pods": "1"}
    not_best_effort = quota({"pods": "9", "requests.cpu": "9"}, scopes=["NotBestEffort"])
    assert usage_of(not_best_effort, pods=pods) == \
        {"pods": "3", "requests.cpu": "600m"}
    assert usage_of(quota({"pods": "9"}, scopes=["Terminating"]), pods=pods) == {"pods": "1"}
    both = quota({"pods": "9"}, scopes=["NotTerminating", "NotBestEffort"])
    assert usage_of(both, pods=pods) == \
        {"pods": "2"}
    selector = {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In",
                                      "values": ["high"]}]}
    assert usage_of(quota({"requests.cpu": "9"}, scopeSelector=selector), pods=pods) == \
        {"requests.cpu": "300m"}
    # Scoped quotas do not count other kinds of objects.
    assert usage_of(quota({"configmaps": "9"}, scopes=["BestEffort"]), configmaps=[{}]) == {}


def test_services_and_claims() -> None:
    node_port = {"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}
    balancer = {"spec": {"type": "LoadBalancer", "ports": [{"port": 1}]}}
    q = quota({"services": "9", "services.nodeports": "9", "services.loadbalancers": "9"})
    assert usage_of(q, services=[node_port, balancer, {"spec": {}}]) == \
        {"services": "3", "services.nodeports": "3", "services.loadbalancers": "1"}
    assert service_usage({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False,
                                   "ports": [{"port": 1}, {"port": 2, "nodePort": 30000}]}}
                         ).formatted("services.nodeports") == "1"
    claim = {"metadata": {}, "spec": {"storageClassName": "fast",
                                      "resources": {"requests": {"storage": "1Gi"}}},
             "status": {"allocatedResources": {"storage": "2Gi"}}}
    usage = claim_usage(claim)
    assert usage.formatted("requests.storage") == "2Gi"
    assert usage.formatted("fast.storageclass.storage.k8s.io/requests.storage") == "2Gi"
    assert usage.formatted("fast.storageclass.storage.k8s.io/persistentvolumeclaims") == "1"


def test_usage_keeps_the_format_of_the_first_addend() -> None:
    usage = Usage()
    usage.add_quantity("memory", "512Mi")
    usage.add_quantity("memory", "1G")
    assert usage.formatted("memory") == "1536870912"  # 512Mi + 1e9 bytes, not a whole Mi multiple
    usage.add_quantity("cpu", "1.5")
    assert usage.formatted("cpu") == "1500m"
