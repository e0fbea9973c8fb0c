"""DaemonSet node eligibility, placement, rolling update and status logic (no API server)."""

from __future__ import annotations

import copy
from typing import Any

from sampan.controllers.daemonset import (
    HASH_LABEL,
    Eligibility,
    FailedPodBackoff,
    add_daemon_tolerations,
    compute_status,
    daemon_pod_template,
    manage_plan,
    nodes_to_daemon_pods,
    pin_to_node,
    rolling_update_plan,
    target_node,
    tolerates,
)

NOW = 1_000_000.0


def ds(*, node_selector: dict[str, str] | None = None, affinity: dict | None = None,
       tolerations: list | None = None, rolling: dict | None = None,
       strategy: str = "RollingUpdate", **pod_spec: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "a"}], **pod_spec}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = tolerations
    update = {"type": strategy}
    if strategy == "RollingUpdate":
        update["rollingUpdate"] = rolling or {"maxUnavailable": 1, "maxSurge": 0}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": update,
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}}


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []}}


def pod(name: str, node_name: str, *, hash_: str = "h1", phase: str = "Running",
        ready: bool = True, created: str = "2020-01-01T00:00:00Z",
        bound: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "a"}]}
    if bound:
        spec["nodeName"] = node_name
    else:
        pin_to_node(spec, node_name)
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": {"app": "agent", HASH_LABEL: hash_}},
            "spec": spec,
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False",
                 "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}


# -- eligibility -------------------------------------------------------------------------------


def test_tolerates() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates({"key": "k", "value": "v"}, taint)
    assert tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)


def test_default_tolerations_replace_same_key_and_effect() -> None:
    spec = {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 10}]}
    add_daemon_tolerations(spec)
    not_ready = [t for t in spec["tolerations"] if t["key"] == "node.kubernetes.io/not-ready"]
    assert not_ready == [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                          "effect": "NoExecute"}]
    assert len(spec["tolerations"]) == 6
    host = {"hostNetwork": True}
    add_daemon_tolerations(host)
    assert any(t["key"] == "node.kubernetes.io/network-unavailable" for t in host["tolerations"])


def test_node_selector_and_affinity() -> None:
    e = Eligibility(ds(node_selector={"role": "web"}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["4"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]},
        ]}}}))
    assert e.check(node("n1", {"role": "web", "cpus": "8"})) == (True, True)
    assert e.check(node("n2", {"role": "web", "cpus": "2"})) == (False, False)
    assert e.check(node("n9", {"role": "web"})) == (True, True)
    assert e.check(node("n3", {"role": "db", "cpus": "8"})) == (False, False)


def test_empty_affinity_term_matches_nothing() -> None:
    e = Eligibility(ds(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}))
    assert e.check(node("n1")) == (False, False)


def test_taints() -> None:
    e = Eligibility(ds(tolerations=[{"key": "gpu", "operator": "Exists"}]))
    assert e.check(node("n", taints=[{"key": "gpu", "effect": "NoSchedule"}])) == (True, True)
    # NoSchedule alone: no new pod, but an existing one may keep running.
    assert e.check(node("n", taints=[{"key": "x", "effect": "NoSchedule"}])) == (False, True)
    assert e.check(node("n", taints=[{"key": "x", "effect": "NoExecute"}])) == (False, False)
    assert e.check(node("n", taints=[{"key": "x", "effect": "PreferNoSchedule"}])) == (True, True)
    # Daemon pods tolerate the node lifecycle taints by default.
    lifecycle = [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                 {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert e.check(node("n", taints=lifecycle)) == (True, True)


def test_template_node_name() -> None:
    e = Eligibility(ds(nodeName="n1"))
    assert e.check(node("n1")) == (True, True)
    assert e.check(node("n2")) == (False, False)


# -- pods and nodes ----------------------------------------------------------------------------


def test_pin_to_node_replaces_required_terms_and_keeps_preferred() -> None:
    spec = {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]},
        "podAntiAffinity": {}}}
    pin_to_node(spec, "n7")
    node_affinity = spec["affinity"]["nodeAffinity"]
    assert node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert "podAntiAffinity" in spec["affinity"]
    assert target_node({"spec": spec}) == "n7"
    assert target_node({"spec": {"nodeName": "n3"}}) == "n3"
    assert target_node({"spec": {}}) is None


def test_pod_template_has_hash_label_and_tolerations() -> None:
    d = ds()
    d["metadata"]["annotations"] = {"deprecated.daemonset.template.generation": "4"}
    template = daemon_pod_template(d, "h9")
    assert template["metadata"]["labels"] == {"app": "agent", HASH_LABEL: "h9",
                                              "pod-template-generation": "4"}
    assert len(template["spec"]["tolerations"]) == 6
    assert "tolerations" not in d["spec"]["template"]["spec"]


# -- manage ------------------------------------------------------------------------------------


def plan_for(d, nodes, pods, hash_="h1", **kw):
    return manage_plan(d, nodes, nodes_to_daemon_pods(pods), hash_, NOW, **kw)


def test_manage_creates_on_eligible_nodes_without_pods() -> None:
    d = ds(node_selector={"role": "web"})
    nodes = [node("a", {"role": "web"}), node("b", {"role": "web"}), node("c", {"role": "db"})]
    plan = plan_for(d, nodes, [pod("p-a", "a")])
    assert plan.create_on == ["b"] and plan.delete == []


def test_manage_deletes_pods_on_ineligible_nodes_and_duplicates() -> None:
    d = ds(node_selector={"role": "web"})
    nodes = [node("a", {"role": "web"}), node("c", {"role": "db"})]
    pods = [pod("old", "a", created="2020-01-01T00:00:00Z"),
            pod("new", "a", created="2020-01-02T00:00:00Z"), pod("p-c", "c")]
    plan = plan_for(d, nodes, pods)
    assert sorted(plan.delete) == ["new", "p-c"]
    assert plan.create_on == []


def test_manage_deletes_failed_pods_unless_backing_off() -> None:
    d = ds()
    pods = [pod("bad", "a", phase="Failed", ready=False)]
    plan = plan_for(d, [node("a")], pods)
    assert plan.delete == ["bad"] and [p["metadata"]["name"] for p, _ in plan.failed] == ["bad"]
    held = plan_for(d, [node("a")], pods, allow_failed_delete=lambda n: False)
    assert held.delete == []


def test_manage_deletes_unscheduled_pods_of_missing_nodes_only() -> None:
    plan = plan_for(ds(), [], [pod("pinned", "gone"), pod("bound", "gone", bound=True)])
    assert plan.delete == ["pinned"]


def test_failed_pod_backoff_doubles() -> None:
    clock = [0.0]
    backoff = FailedPodBackoff(initial=1.0, maximum=8.0, clock=lambda: clock[0])
    assert backoff.in_backoff("k") == 0.0
    backoff.next("k")
    assert backoff.in_backoff("k") == 1.0
    clock[0] = 1.5
    assert backoff.in_backoff("k") == 0.0
    backoff.next("k")
    assert backoff.in_backoff("k") == 2.0


# -- rolling update ----------------------------------------------------------------------------


def test_rolling_update_deletes_within_max_unavailable() -> None:
    d = ds(rolling={"maxUnavailable": 1, "maxSurge": 0})
    nodes = [node("a"), node("b"), node("c")]
    pods = [pod("pa", "a", hash_="old"), pod("pb", "b", hash_="old"), pod("pc", "c", hash_="old")]
    plan = rolling_update_plan(d, nodes, nodes_to_daemon_pods(pods), "new", NOW)
    assert len(plan.delete) == 1 and plan.create_on == []


def test_rolling_update_waits_for_unavailable_new_pod() -> None:
    d = ds(rolling={"maxUnavailable": 1, "maxSurge": 0})
    nodes = [node("a"), node("b")]
    pods = [pod("pa", "a", hash_="new", ready=False), pod("pb", "b", hash_="old")]
    plan = rolling_update_plan(d, nodes, nodes_to_daemon_pods(pods), "new", NOW)
    assert plan.delete == []


def test_rolling_update_replaces_unavailable_old_pods_at_once() -> None:
    d = ds(rolling={"maxUnavailable": 1, "maxSurge": 0})
    nodes = [node("a"), node("b"), node("c")]
    pods = [pod("pa", "a", hash_="old", ready=False), pod("pb", "b", hash_="old", ready=False),
            pod("pc", "c", hash_="old")]
    plan = rolling_update_plan(d, nodes, nodes_to_daemon_pods(pods), "new", NOW)
    assert sorted(plan.delete) == ["pa", "pb"]


def test_rolling_update_with_surge_creates_then_deletes() -> None:
    d = ds(rolling={"maxUnavailable": 0, "maxSurge": 1})
    nodes = [node("a"), node("b")]
    pods = [pod("pa", "a", hash_="old"), pod("pb", "b", hash_="old")]
    plan = rolling_update_plan(d, nodes, nodes_to_daemon_pods(pods), "new", NOW)
    assert len(plan.create_on) == 1 and plan.delete == []
    surged = pods + [pod("pa2", "a", hash_="new", created="2020-01-02T00:00:00Z")]
    plan = rolling_update_plan(d, nodes, nodes_to_daemon_pods(surged), "new", NOW)
    # The new pod on a is available: its old pod goes, and the surge moves on to b.
    assert plan.delete == ["pa"] and plan.create_on == ["b"]


def test_surge_keeps_old_pod_until_new_one_is_available() -> None:
    d = ds(rolling={"maxUnavailable": 0, "maxSurge": 1})
    pods = [pod("old", "a", hash_="old"),
            pod("new", "a", hash_="new", ready=False, created="2020-01-02T00:00:00Z")]
    plan = manage_plan(d, [node("a")], nodes_to_daemon_pods(pods), "new", NOW)
    assert plan.delete == []
    pods[1] = pod("new", "a", hash_="new", created="2020-01-02T00:00:00Z")
    plan = manage_plan(d, [node("a")], nodes_to_daemon_pods(pods), "new", NOW)
    assert plan.delete == ["old"]


# -- status ------------------------------------------------------------------------------------


def test_status_counts() -> None:
    d = ds(node_selector={"role": "web"})
    nodes = [node("a", {"role": "web"}), node("b", {"role": "web"}), node("c", {"role": "db"}),
             node("d", {"role": "web"})]
    pods = [pod("pa", "a"), pod("pb", "b", hash_="old", ready=False), pod("pc", "c")]
    status = compute_status(d, nodes, nodes_to_daemon_pods(pods), "h1", NOW).to_dict()
    assert status == {"desiredNumberScheduled": 3, "currentNumberScheduled": 2,
                      "numberMisscheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1,
                      "numberAvailable": 1, "numberUnavailable": 2}


def test_min_ready_seconds_delays_availability() -> None:
    d = ds()
    d["spec"]["minReadySeconds"] = 30
    ready_pod = copy.deepcopy(pod("pa", "a"))
    ready_pod["status"]["conditions"][0]["lastTransitionTime"] = "1970-01-12T13:46:30Z"
    status = compute_status(d, [node("a")], nodes_to_daemon_pods([ready_pod]), "h1", NOW)
    assert status.ready == 1 and status.available == 0
