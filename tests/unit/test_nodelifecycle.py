"""Node lifecycle logic: taints and tolerations, heartbeat bookkeeping, zone states, rate limits,
and the taint eviction schedule — with a fake client, no API server."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from sampan.client.informer import InformerFactory
from sampan.controllers.nodelifecycle import (
    STATE_FULL_DISRUPTION,
    STATE_NORMAL,
    STATE_PARTIAL_DISRUPTION,
    NodeLifecycleController,
    TaintEvictionController,
    TokenBucket,
    compute_zone_state,
    matching_tolerations,
    min_toleration_seconds,
    no_schedule_taint_diff,
    swap_taints,
    tolerates,
    zone_key,
)
from sampan.controllers.util import now_rfc3339


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], type_, reason, message))


class FakeClient:
    """Records writes and answers them with the body (a fresh resourceVersion)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str | None = None, subresource: str | None = None) -> dict[str, Any]:
        self.writes.append(("update", resource, copy.deepcopy(body), subresource))
        self.objects[(resource, body["metadata"]["name"])] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(resource, name)])


# -- taints and tolerations -------------------------------------------------------------------

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def test_toleration_matching_follows_upstream_rules() -> None:
    assert tolerates({"operator": "Exists"}, UNREACHABLE)  # empty key + Exists: everything
    assert tolerates({"key": UNREACHABLE["key"], "operator": "Exists"}, UNREACHABLE)
    assert not tolerates({"key": UNREACHABLE["key"], "operator": "Exists", "effect": "NoSchedule"},
                         UNREACHABLE)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoSchedule"})


def test_min_toleration_seconds() -> None:
    assert min_toleration_seconds([]) == 0
    assert min_toleration_seconds([{"operator": "Exists"}]) == -1  # forever
    assert min_toleration_seconds([{"tolerationSeconds": 300}, {"tolerationSeconds": 5}]) == 5
    assert min_toleration_seconds([{"tolerationSeconds": -3}]) == 0


def test_matching_tolerations_needs_every_taint_tolerated() -> None:
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    tol = {"key": UNREACHABLE["key"], "operator": "Exists", "tolerationSeconds": 5}
    ok, used = matching_tolerations([UNREACHABLE], [tol])
    assert ok and used == [tol]
    ok, _ = matching_tolerations([UNREACHABLE, not_ready], [tol])
    assert not ok


def test_swap_taints_stamps_added_and_is_none_without_change() -> None:
    taints = [{"key": "a", "effect": "NoSchedule"}]
    new = swap_taints(taints, [UNREACHABLE], [{"key": "a", "effect": "NoSchedule"}], "T")
    assert new == [{**UNREACHABLE, "timeAdded": "T"}]
    assert swap_taints(new, [UNREACHABLE], [], "T2") is None


def test_no_schedule_taints_mirror_conditions_and_unschedulable() -> None:
    node = {"metadata": {"name": "n"},
            "spec": {"unschedulable": True,
                     "taints": [{"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
                                {"key": "custom", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"},
                                      {"type": "DiskPressure", "status": "False"}]}}
    add, remove = no_schedule_taint_diff(node)
    assert {t["key"] for t in add} == {"node.kubernetes.io/not-ready",
                                       "node.kubernetes.io/unschedulable"}
    assert remove == [{"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}]


def test_zone_state_and_key() -> None:
    assert compute_zone_state(["Unknown"]) == (1, STATE_FULL_DISRUPTION)
    assert compute_zone_state(["True", "Unknown"]) == (1, STATE_NORMAL)
    assert compute_zone_state(["True"] + ["False"] * 3) == (3, STATE_PARTIAL_DISRUPTION)
    assert zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "z1"}}}) == ":\x00:z1"
    assert zone_key({"metadata": {}}) == ""


def test_token_bucket_rate() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(0.1, 1, clock)
    assert bucket.try_accept()
    assert not bucket.try_accept()
    clock.now = 9.9
    assert not bucket.try_accept()
    clock.now = 10.1
    assert bucket.try_accept()
    assert not TokenBucket(0.0, 1, clock).try_accept()


# -- heartbeats ----------------------------------------------------------------------------------


def _node(name: str, ready: str = "True", heartbeat: str = "2023-01-01T00:00:00Z") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": "u-" + name, "resourceVersion": "1",
                         "creationTimestamp": "2023-01-01T00:00:00Z"},
            "spec": {},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat},
                {"type": "MemoryPressure", "status": "False",
                 "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat}]}}


def _lease(name: str, renew: float) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": now_rfc3339(renew)}}


def _controller(clock: FakeClock) -> tuple[NodeLifecycleController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(), FakeRecorder()
    controller = NodeLifecycleController(client, InformerFactory(client), recorder=recorder,
                                         node_monitor_grace_period=2.0, clock=clock)
    return controller, client, recorder


async def test_silent_node_becomes_unknown_after_the_grace_period() -> None:
    clock = FakeClock()
    controller, client, _ = _controller(clock)
    node = _node("n1")
    controller.nodes.indexer.upsert(node)
    controller.leases.indexer.upsert(_lease("n1", clock.now))
    _, observed, current = await controller.try_update_node_health(copy.deepcopy(node))
    assert current["status"] == "True" and not client.writes

    clock.now += 1.5
    await controller.try_update_node_health(copy.deepcopy(node))
    assert not client.writes  # within the grace period

    clock.now += 1.0
    written, observed, current = await controller.try_update_node_health(copy.deepcopy(node))
    assert observed["status"] == "True"
    assert current["status"] == "Unknown"
    assert current["reason"] == "NodeStatusUnknown"
    assert current["message"] == "Kubelet stopped posting node status."
    conditions = {c["type"]: c for c in written["status"]["conditions"]}
    assert conditions["MemoryPressure"]["status"] == "Unknown"
    # Never reported conditions are added as never updated.
    assert conditions["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert conditions["PIDPressure"]["message"] == "Kubelet never posted node status."
    assert client.writes[-1][3] == "status"


async def test_a_renewed_lease_keeps_the_node_healthy() -> None:
    clock = FakeClock()
    controller, client, _ = _controller(clock)
    node = _node("n1")
    controller.leases.indexer.upsert(_lease("n1", clock.now))
    await controller.try_update_node_health(copy.deepcopy(node))
    for _ in range(5):
        clock.now += 1.5
        controller.leases.indexer.upsert(_lease("n1", clock.now))
        await controller.try_update_node_health(copy.deepcopy(node))
    assert not client.writes


async def test_monitor_pass_taints_and_marks_pods_not_ready() -> None:
    clock = FakeClock()
    controller, client, recorder = _controller(clock)
    controller.node_eviction_rate = 1000.0
    for name in ("good", "bad"):
        node = _node(name)
        controller.nodes.indexer.upsert(node)
        client.objects[("nodes", name)] = copy.deepcopy(node)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "1"},
           "spec": {"nodeName": "bad"},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    controller.pods.indexer.upsert(pod)
    controller.leases.indexer.upsert(_lease("good", clock.now))
    controller.leases.indexer.upsert(_lease("bad", clock.now))
    await controller.monitor_node_health()
    assert [e[2] for e in recorder.events] == ["RegisteredNode", "RegisteredNode"]

    clock.now += 3
    controller.leases.indexer.upsert(_lease("good", clock.now))
    await controller.monitor_node_health()
    reasons = [(e[0], e[2]) for e in recorder.events]
    assert ("bad", "NodeNotReady") in reasons and ("p", "NodeNotReady") in reasons
    pod_writes = [w for w in client.writes if w[1] == "pods"]
    assert pod_writes[0][2]["status"]["conditions"][0]["status"] == "False"

    # The informer sees the Unknown status; the next pass queues the NoExecute taint.
    controller.nodes.indexer.upsert(client.objects[("nodes", "bad")])
    await controller.monitor_node_health()
    await controller.no_execute_tainting_pass()
    taints = client.objects[("nodes", "bad")]["spec"]["taints"]
    assert [(t["key"], t["effect"]) for t in taints] == [("node.kubernetes.io/unreachable",
                                                          "NoExecute")]
    assert "timeAdded" in taints[0]


# -- taint eviction ------------------------------------------------------------------------------


async def test_eviction_schedule_follows_toleration_seconds() -> None:
    clock = FakeClock()
    client, recorder = FakeClient(), FakeRecorder()
    controller = TaintEvictionController(client, InformerFactory(client), recorder=recorder,
                                         clock=clock)
    taints = [UNREACHABLE]
    controller.process_pod_on_node("ns/now", [], taints, clock.now)
    controller.process_pod_on_node("ns/later", [{"key": UNREACHABLE["key"], "operator": "Exists",
                                                 "tolerationSeconds": 30}], taints, clock.now)
    controller.process_pod_on_node("ns/never", [{"operator": "Exists"}], taints, clock.now)
    assert controller.scheduled["ns/now"].fire_at == clock.now
    assert controller.scheduled["ns/later"].fire_at == clock.now + 30
    assert "ns/never" not in controller.scheduled
    await asyncio.sleep(0.01)
    assert "evict:ns/now" in controller.queue._dirty  # came due at once

    controller.process_pod_on_node("ns/later", [], [], clock.now)  # taints gone: cancelled
    assert "ns/later" not in controller.scheduled
    assert recorder.events[-1][2:] == ("TaintManagerEviction", "Cancelling deletion of Pod ns/later")
    controller.cancel("ns/now")
