"""The ReplicaSet / ReplicationController controller's logic: the replica diff, which pods a
scale-down picks, the status it computes, and a sync against a fake client whose cache lags
behind (expectations must stop a second round of creations)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sampan.client.errors import ApiError
from sampan.client.informer import InformerFactory, object_key
from sampan.controllers.replicaset import (
    FAILED_CREATE,
    FAILED_DELETE,
    REPLICA_FAILURE,
    REPLICA_SET,
    REPLICATION_CONTROLLER,
    ReplicaSetController,
    ReplicationControllerController,
    calculate_status,
    choose_pods_to_delete,
    failure_reason,
    index_orphans_by_namespace,
    is_terminating_replica,
    next_availability_check,
    replica_diff,
    status_needs_update,
)
from sampan.controllers.util import now_rfc3339

NOW = float(int(time.time()))  # scale-down compares ages on a log scale against the clock


def replica_set(replicas: int = 3, *, min_ready: int = 0, status: dict | None = None,
                generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": generation,
                     "resourceVersion": "1"},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": status or {},
    }


def pod(name: str, *, labels: dict | None = None, owner: str | None = "rs-uid",
        phase: str = "Running", ready: bool = False, ready_since: float = NOW - 3600,
        node: str | None = "n1", cost: int | None = None, created: float = NOW - 7200,
        deleting: bool = False, kind: str = "ReplicaSet") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "resourceVersion": "1",
                            "labels": {"app": "web", "tier": "front"} if labels is None else labels,
                            "creationTimestamp": now_rfc3339(created)}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": "web",
                                    "uid": owner, "controller": True}]
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    if deleting:
        meta["deletionTimestamp"] = now_rfc3339(NOW)
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": now_rfc3339(ready_since)}]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": phase, "conditions": conditions}}


# -- diff and ranking ---------------------------------------------------------------------------


def test_replica_diff_creates_and_deletes_within_the_burst() -> None:
    assert replica_diff(0, 3) == 3
    assert replica_diff(5, 3) == -2
    assert replica_diff(3, 3) == 0
    assert replica_diff(0, 2000) == 500
    assert replica_diff(2000, 0) == -500
    assert replica_diff(0, 10, burst=4) == 4


def test_scale_down_prefers_unscheduled_pending_not_ready_cheap_pods() -> None:
    pods = [pod("ready-old", ready=True),
            pod("not-ready", ready=False),
            pod("pending", phase="Pending", ready=False),
            pod("unscheduled", phase="Pending", node=None)]
    names = [p["metadata"]["name"] for p in choose_pods_to_delete(pods, 3)]
    assert names == ["unscheduled", "pending", "not-ready"]


def test_scale_down_honours_pod_deletion_cost() -> None:
    pods = [pod("cheap", ready=True, cost=-10), pod("dear", ready=True, cost=100),
            pod("plain", ready=True)]
    assert [p["metadata"]["name"] for p in choose_pods_to_delete(pods, 2)] == ["cheap", "plain"]


def test_scale_down_prefers_newer_pods_and_takes_all_without_ranking() -> None:
    # Ages compare on a log2 scale against the clock: make them differ by orders of magnitude.
    pods = [pod("old", ready=True, ready_since=NOW - 100_000, created=NOW - 100_000),
            pod("new", ready=True, ready_since=NOW - 10, created=NOW - 10)]
    assert [p["metadata"]["name"] for p in choose_pods_to_delete(pods, 1)] == ["new"]
    assert len(choose_pods_to_delete(pods, 5)) == 2


# -- status ---------------------------------------------------------------------------------------


def test_status_counts_labels_ready_and_available() -> None:
    rs = replica_set(4, min_ready=30)
    pods = [pod("a", ready=True, ready_since=NOW - 60),          # available
            pod("b", ready=True, ready_since=NOW - 5),           # ready, not yet available
            pod("c", ready=False),
            pod("d", labels={"app": "web"}, ready=False)]        # not fully labeled
    status = calculate_status(rs, pods, [], None, now=NOW)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 2,
                      "availableReplicas": 1, "terminatingReplicas": 0}


def test_status_leaves_zero_counts_out_and_reports_terminating_for_replica_sets_only() -> None:
    rs = replica_set(1, status={"replicas": 2, "readyReplicas": 2, "availableReplicas": 2})
    status = calculate_status(rs, [], [pod("going", deleting=True)], None, now=NOW)
    assert status == {"replicas": 0, "terminatingReplicas": 1}
    assert "terminatingReplicas" not in calculate_status(rs, [], None, None, now=NOW)


def test_failure_condition_is_set_kept_and_cleared() -> None:
    rs = replica_set(3)
    error = ApiError({"code": 422, "reason": "Invalid", "message": "Pod is invalid"})
    failed = calculate_status(rs, [], [], error, now=NOW)
    [condition] = failed["conditions"]
    assert condition["type"] == REPLICA_FAILURE and condition["status"] == "True"
    assert condition["reason"] == FAILED_CREATE and condition["message"] == "Pod is invalid"

    again = calculate_status(replica_set(3, status=failed), [], [],
                             RuntimeError("another error"), now=NOW + 10)
    assert again["conditions"] == [condition]  # the first failure stays as it was

    healed = calculate_status(replica_set(3, status=failed), [pod("a")] * 3, [], None, now=NOW)
    assert "conditions" not in healed


def test_failure_reason_depends_on_the_direction() -> None:
    assert failure_reason(1, 3) == FAILED_CREATE
    assert failure_reason(4, 3) == FAILED_DELETE


def test_status_update_only_when_something_changed() -> None:
    status = {"replicas": 2, "readyReplicas": 2, "terminatingReplicas": 0}
    current = replica_set(2, status={**status, "observedGeneration": 1})
    assert not status_needs_update(current, status)
    assert status_needs_update(replica_set(2, status=status, generation=2), status)
    assert status_needs_update(current, {**status, "readyReplicas": 1})
    assert status_needs_update(current, {**status, "terminatingReplicas": 1})
    assert status_needs_update(current, {**status, "conditions": [{"type": REPLICA_FAILURE}]})


def test_availability_recheck_when_a_ready_pod_is_not_yet_available() -> None:
    pods = [pod("a", ready=True, ready_since=NOW - 60), pod("b", ready=True, ready_since=NOW - 25)]
    wait = next_availability_check(pods, 30, NOW)
    assert wait is not None and 5 <= wait < 6
    assert next_availability_check(pods[:1], 30, NOW) is None
    assert next_availability_check(pods, 0, NOW) is None


def test_terminating_replicas_exclude_finished_pods() -> None:
    assert is_terminating_replica(pod("a", deleting=True))
    assert not is_terminating_replica(pod("a", deleting=True, phase="Succeeded"))
    assert not is_terminating_replica(pod("a"))


# -- kinds and indexes ---------------------------------------------------------------------------


def test_selectors_of_both_kinds() -> None:
    rs = replica_set()
    assert REPLICA_SET.selector(rs).matches({"app": "web", "x": "y"})
    assert not REPLICA_SET.selector(rs).matches({"app": "db"})
    rc = {"spec": {"selector": {"app": "web"}}}
    assert REPLICATION_CONTROLLER.selector(rc).matches({"app": "web"})
    assert not REPLICATION_CONTROLLER.selector(rc).matches({"app": "db"})


def test_orphans_are_indexed_by_namespace() -> None:
    assert index_orphans_by_namespace(pod("a", owner=None)) == ["ns"]
    assert index_orphans_by_namespace(pod("a")) == []


# -- a sync against a fake client ----------------------------------------------------------------


class FakeClient:
    """Records writes; creations get names, nothing reaches any cache by itself."""

    def __init__(self, fail_create: ApiError | None = None):
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self.patches: list[tuple[str, Any]] = []
        self.fail_create = fail_create
        self.objects: dict[str, dict[str, Any]] = {}

    async def create(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        if self.fail_create is not None:
            raise self.fail_create
        n = len(self.created)
        created = {**body, "metadata": {**body["metadata"], "name": f"web-{n}",
                                        "uid": f"new-{n}", "resourceVersion": "2"}}
        self.created.append(created)
        return created

    async def delete(self, api_version: str, resource: str, name: str, **_: Any) -> dict:
        self.deleted.append(name)
        return {}

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     subresource: str | None = None, **_: Any) -> dict[str, Any]:
        assert subresource == "status"
        self.statuses.append(body["status"])
        return body

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict:
        return self.objects[name]

    async def patch(self, api_version: str, resource: str, name: str, patch: Any,
                    **_: Any) -> dict[str, Any]:
        self.patches.append((name, patch))
        return {"metadata": {"name": name}}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def controller(client: FakeClient, cls=ReplicaSetController):
    recorder = FakeRecorder()
    ctl = cls(client, InformerFactory(client), recorder=recorder)  # type: ignore[arg-type]
    return ctl, recorder


async def test_sync_creates_once_until_the_cache_catches_up() -> None:
    client = FakeClient()
    ctl, recorder = controller(client)
    rs = replica_set(3)
    ctl.owners.indexer.upsert(rs)
    await ctl.reconcile("ns/web")
    assert len(client.created) == 3
    assert [r for _, r, _ in recorder.events] == ["SuccessfulCreate"] * 3
    created = client.created[0]
    assert created["metadata"]["generateName"] == "web-"
    assert created["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert created["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert client.statuses[-1]["replicas"] == 0

    await ctl.reconcile("ns/web")  # the informer has not seen the pods: no second round
    assert len(client.created) == 3

    for p in client.created:
        ctl.pods.indexer.upsert(p)
        ctl._pod_added(p)
    await ctl.reconcile("ns/web")
    assert len(client.created) == 3
    assert client.statuses[-1]["replicas"] == 3


async def test_sync_deletes_the_surplus_once() -> None:
    client = FakeClient()
    ctl, recorder = controller(client)
    ctl.owners.indexer.upsert(replica_set(1))
    for p in (pod("a", ready=True), pod("b", ready=False), pod("c", ready=True, cost=-5)):
        ctl.pods.indexer.upsert(p)
    await ctl.reconcile("ns/web")
    assert sorted(client.deleted) == ["b", "c"]
    assert [r for _, r, _ in recorder.events] == ["SuccessfulDelete"] * 2
    await ctl.reconcile("ns/web")
    assert len(client.deleted) == 2


async def test_failed_creation_sets_the_condition_and_stops_the_batch() -> None:
    error = ApiError({"code": 422, "reason": "Invalid", "message": "Pod \"web-x\" is invalid"})
    client = FakeClient(fail_create=error)
    ctl, recorder = controller(client)
    ctl.owners.indexer.upsert(replica_set(5))
    with pytest.raises(ApiError):
        await ctl.reconcile("ns/web")
    assert [r for _, r, _ in recorder.events] == ["FailedCreate"]  # slow start: one attempt
    [condition] = client.statuses[-1]["conditions"]
    assert condition["reason"] == FAILED_CREATE
    assert ctl.expectations.satisfied("ns/web")  # failed creations are not waited for


async def test_adopts_matching_orphans_and_releases_non_matching_pods() -> None:
    client = FakeClient()
    ctl, _ = controller(client)
    rs = replica_set(2)
    client.objects["web"] = rs
    ctl.owners.indexer.upsert(rs)
    ctl.pods.indexer.upsert(pod("orphan", owner=None))
    ctl.pods.indexer.upsert(pod("stray", labels={"app": "db"}))
    ctl.pods.indexer.upsert(pod("mine"))
    ctl.pods.indexer.upsert(pod("theirs", owner="other-uid"))
    await ctl.reconcile("ns/web")
    patched = {name: p for name, p in client.patches}
    assert patched["orphan"]["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert patched["stray"]["metadata"]["ownerReferences"] is None
    assert "theirs" not in patched
    assert client.created == [] and client.deleted == []  # mine + orphan = 2


async def test_pod_events_reach_the_owner_through_the_controller_reference() -> None:
    client = FakeClient()
    ctl, _ = controller(client)
    ctl.owners.indexer.upsert(replica_set(2))
    ctl._pod_added(pod("x", owner="someone-else"))
    assert len(ctl.queue) == 0
    ctl._pod_added(pod("y", owner=None, labels={"app": "web"}))
    assert len(ctl.queue) == 1
    ctl.expectations.expect("ns/web", deleting=["ns/z"])
    ctl._pod_deleted(pod("z"))
    assert ctl.expectations.satisfied("ns/web")


async def test_replication_controller_uses_its_own_kind() -> None:
    client = FakeClient()
    ctl, _ = controller(client, ReplicationControllerController)
    rc = {"apiVersion": "v1", "kind": "ReplicationController",
          "metadata": {"name": "web", "namespace": "ns", "uid": "rc-uid", "generation": 1},
          "spec": {"replicas": 2, "selector": {"app": "web"},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    ctl.owners.indexer.upsert(rc)
    await ctl.reconcile(object_key(rc))
    assert len(client.created) == 2
    ref = client.created[0]["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"], ref["uid"]) == ("v1", "ReplicationController", "rc-uid")
    assert "terminatingReplicas" not in client.statuses[-1]
    assert client.statuses[-1]["observedGeneration"] == 1


def test_scale_down_takes_pods_doubled_up_on_a_node_before_lonely_ones() -> None:
    lonely = pod("lonely", ready=True, ready_since=NOW - 100, created=NOW - 100)
    lonely["spec"]["nodeName"] = "n1"
    pair = [pod(f"pair-{i}", ready=True, ready_since=NOW - 100, created=NOW - 100)
            for i in range(2)]
    for p in pair:
        p["spec"]["nodeName"] = "n2"
    chosen = choose_pods_to_delete([lonely, *pair], 1)
    assert chosen[0]["metadata"]["name"].startswith("pair-")
