"""LimitRanger defaults and limits, and the quota admission check: which quotas cover an
object, what it adds, and upstream's refusal messages."""

from __future__ import annotations

from typing import Any

import pytest

from sampan.api.registry import Resource
from sampan.apiserver.quota import (
    LIMIT_RANGER_ANNOTATION,
    Refused,
    aggregate,
    apply_limit_defaults,
    charge,
    check_request,
    claim_limit_errors,
    evaluator_for,
    forbidden,
    pod_constraints,
    pod_limit_errors,
    usage_delta,
)


def container(name: str, requests: dict[str, str] | None = None,
              limits: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "busybox", **({"resources": resources} if resources else {})}


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (),
        **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": list(containers), **spec}
    if init:
        body["initContainers"] = list(init)
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": body,
            "status": {"phase": "Pending"}}


def limit_range(*items: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": list(items)}}


def quota(name: str, hard: dict[str, str], used: dict[str, str] | None = None,
          **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"hard": hard}
    if used is not None:
        status["used"] = used
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec},
            "status": status}


PODS = evaluator_for("", "pods")


# -- LimitRanger ---------------------------------------------------------------------------------


def test_defaults_fill_missing_requests_and_limits_and_are_annotated() -> None:
    p = pod(container("app"), container("side", requests={"cpu": "50m"}),
            init=(container("setup", limits={"memory": "64Mi"}),))
    apply_limit_defaults(p, limit_range({"type": "Container",
                                         "default": {"cpu": "500m", "memory": "128Mi"},
                                         "defaultRequest": {"cpu": "100m", "memory": "0.0625Gi"}}))
    app, side = p["spec"]["containers"]
    assert app["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert side["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    setup = p["spec"]["initContainers"][0]
    assert setup["resources"]["limits"] == {"memory": "64Mi", "cpu": "500m"}
    assert p["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container app; "
        "cpu, memory limit for container app; memory request for container side; "
        "cpu, memory limit for container side; cpu, memory request for init container setup; "
        "cpu limit for init container setup")


def test_nothing_to_default_leaves_the_pod_alone() -> None:
    p = pod(container("app", requests={"cpu": "1"}, limits={"cpu": "1"}))
    before = repr(p)
    apply_limit_defaults(p, limit_range({"type": "Container", "default": {"cpu": "2"}}))
    apply_limit_defaults(p, limit_range({"type": "Pod", "max": {"cpu": "2"}}))
    assert repr(p) == before


def test_container_max_min_and_ratio_messages() -> None:
    lr = limit_range({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"},
                      "maxLimitRequestRatio": {"cpu": "2"}})
    over = pod(container("app", requests={"cpu": "1", "memory": "20Mi"}, limits={"cpu": "4"}))
    assert pod_limit_errors(lr, over) == [
        "maximum cpu usage per Container is 2, but limit is 4",
        "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"]
    unset = pod(container("app"))
    assert pod_limit_errors(lr, unset) == [
        "minimum memory usage per Container is 10Mi.  No request is specified",
        "maximum cpu usage per Container is 2.  No limit is specified",
        "cpu max limit to request ratio per Container is 2, but no request is specified or "
        "request is 0"]
    low = pod(container("app", requests={"cpu": "1", "memory": "5Mi"}, limits={"cpu": "2000m"}))
    assert pod_limit_errors(lr, low) == [
        "minimum memory usage per Container is 10Mi, but request is 5Mi"]
    fine = pod(container("app", requests={"cpu": "1", "memory": "10Mi"}, limits={"cpu": "2"}))
    assert pod_limit_errors(lr, fine) == []


def test_pod_limits_apply_to_the_sum_of_containers() -> None:
    lr = limit_range({"type": "Pod", "max": {"cpu": "1"}})
    p = pod(container("a", requests={"cpu": "600m"}, limits={"cpu": "600m"}),
            container("b", requests={"cpu": "600m"}, limits={"cpu": "600m"}))
    assert pod_limit_errors(lr, p) == ["maximum cpu usage per Pod is 1, but limit is 1200m"]


def test_claim_storage_min_and_max_and_unchanged_requests() -> None:
    lr = limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"},
                      "max": {"storage": "2Gi"}})

    def claim(size: str) -> dict[str, Any]:
        return {"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": size}}}}

    assert claim_limit_errors(lr, claim("5Gi")) == [
        "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
    assert claim_limit_errors(lr, claim("500Mi")) == [
        "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
    assert claim_limit_errors(lr, claim("1Gi")) == []
    assert claim_limit_errors(lr, claim("5Gi"), old=claim("5Gi")) == []


def test_aggregate_and_forbidden_message() -> None:
    assert aggregate(["a"]) == "a"
    assert aggregate(["a", "b", "a"]) == "[a, b]"
    error = forbidden(Resource("", "v1", "pods", "Pod", True), "x", "boom")
    assert (error.code, error.reason, error.message) == (403, "Forbidden",
                                                         'pods "x" is forbidden: boom')
    grouped = forbidden(Resource("apps", "v1", "deployments", "Deployment", True), "d", "no")
    assert grouped.message == 'deployments.apps "d" is forbidden: no'
    assert grouped.details == {"name": "d", "kind": "deployments", "group": "apps"}


# -- ResourceQuota -------------------------------------------------------------------------------


def test_exceeded_quota_message_like_upstream() -> None:
    q = quota("compute", {"requests.cpu": "2", "pods": "10"}, {"requests.cpu": "1", "pods": "1"})
    p = pod(container("app", requests={"cpu": "2"}))
    with pytest.raises(Refused) as refused:
        check_request([q], p, PODS)
    assert str(refused.value) == ("exceeded quota: compute, requested: requests.cpu=2, "
                                  "used: requests.cpu=1, limited: requests.cpu=2")


def test_charge_adds_the_delta_to_used() -> None:
    q = quota("compute", {"requests.cpu": "2", "pods": "3", "requests.memory": "1Gi"},
              {"requests.cpu": "500m", "pods": "1", "requests.memory": "0"})
    p = pod(container("app", requests={"cpu": "250m", "memory": "256Mi"}))
    charged, delta = check_request([q], p, PODS)
    assert charged == [q]
    assert charge(q, delta) == {"requests.cpu": "750m", "pods": "2",
                                "requests.memory": "268435456"}


def test_third_pod_refused_by_a_pod_count_quota() -> None:
    q = quota("count", {"pods": "2"}, {"pods": "2"})
    with pytest.raises(Refused, match="exceeded quota: count, requested: pods=1, used: pods=2, "
                                      "limited: pods=2"):
        check_request([q], pod(container("app")), PODS)


def test_pods_must_state_what_the_quota_restricts() -> None:
    q = quota("compute", {"requests.cpu": "2", "limits.cpu": "4"},
              {"requests.cpu": "0", "limits.cpu": "0"})
    p = pod(container("app"), container("ok", requests={"cpu": "1"}, limits={"cpu": "1"}))
    with pytest.raises(Refused) as refused:
        check_request([q], p, PODS)
    assert str(refused.value) == ("failed quota: compute: must specify limits.cpu for: app; "
                                  "requests.cpu for: app")
    assert pod_constraints(["pods", "requests.storage"], p) is None


def test_quota_without_usage_refuses_with_status_unknown() -> None:
    q = quota("compute", {"pods": "2", "requests.cpu": "1"}, {"pods": "0"})
    with pytest.raises(Refused) as refused:
        check_request([q], pod(container("app", requests={"cpu": "1"})), PODS)
    assert str(refused.value) == "status unknown for quota: compute, resources: pods,requests.cpu"


def test_quota_not_yet_synced_does_not_cover_anything() -> None:
    fresh = {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": {"pods": "0"}}}
    assert check_request([fresh], pod(container("app")), PODS)[0] == []


def test_scopes_select_which_quotas_cover_a_pod() -> None:
    best_effort = quota("be", {"pods": "1"}, {"pods": "1"}, scopes=["BestEffort"])
    burstable = pod(container("app", requests={"cpu": "1"}))
    assert check_request([best_effort], burstable, PODS)[0] == []
    with pytest.raises(Refused, match="exceeded quota: be"):
        check_request([best_effort], pod(container("app")), PODS)
    terminating = quota("t", {"pods": "0"}, {"pods": "0"}, scopes=["Terminating"])
    assert check_request([terminating], pod(container("app")), PODS)[0] == []


def test_terminal_pods_only_count_as_objects() -> None:
    done = pod(container("app", requests={"cpu": "1"}))
    done["status"]["phase"] = "Succeeded"
    assert set(usage_delta(done, PODS).values) == {"count/pods"}
    q = quota("compute", {"requests.cpu": "0", "pods": "0"}, {"requests.cpu": "0", "pods": "0"})
    assert check_request([q], done, PODS)[0] == []


def test_object_counts_and_services() -> None:
    configmaps = evaluator_for("", "configmaps")
    q = quota("objects", {"configmaps": "1", "count/secrets": "5"},
              {"configmaps": "1", "count/secrets": "0"})
    with pytest.raises(Refused, match="requested: configmaps=1, used: configmaps=1"):
        check_request([q], {"metadata": {"name": "c"}}, configmaps)
    charged, delta = check_request([q], {"metadata": {"name": "s"}}, evaluator_for("", "secrets"))
    assert charge(charged[0], delta) == {"configmaps": "1", "count/secrets": "1"}
    deployments = evaluator_for("apps", "deployments")
    dq = quota("apps", {"count/deployments.apps": "0"}, {"count/deployments.apps": "0"})
    with pytest.raises(Refused, match="count/deployments.apps=1"):
        check_request([dq], {"metadata": {"name": "d"}}, deployments)
    services = evaluator_for("", "services")
    sq = quota("svc", {"services.nodeports": "1"}, {"services.nodeports": "0"})
    node_port = {"metadata": {"name": "s"}, "spec": {"type": "NodePort",
                                                     "ports": [{"port": 1}, {"port": 2}]}}
    with pytest.raises(Refused, match="requested: services.nodeports=2"):
        check_request([sq], node_port, services)
    assert evaluator_for("", "events") is None


def test_claims_are_charged_storage_per_class() -> None:
    claims = evaluator_for("", "persistentvolumeclaims")
    name = "fast.storageclass.storage.k8s.io/requests.storage"
    q = quota("storage", {name: "10Gi", "requests.storage": "100Gi"},
              {name: "8Gi", "requests.storage": "8Gi"})
    claim = {"metadata": {"name": "c"}, "spec": {"storageClassName": "fast",
                                                 "resources": {"requests": {"storage": "4Gi"}}}}
    with pytest.raises(Refused) as refused:
        check_request([q], claim, claims)
    assert str(refused.value) == (f"exceeded quota: storage, requested: {name}=4Gi, "
                                  f"used: {name}=8Gi, limited: {name}=10Gi")
