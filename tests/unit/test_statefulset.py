"""StatefulSet identity, ordering, partition and retention logic, and the revision history
helpers, with fake pod operations (no API server)."""

from __future__ import annotations

import copy
from typing import Any

from sampan.controllers import history
from sampan.controllers.statefulset import (
    POD_INDEX_LABEL,
    POD_NAME_LABEL,
    REVISION_LABEL,
    SetStatus,
    SetSync,
    claim_owner_refs,
    claim_owner_up_to_date,
    claims_for,
    complete_rolling_update,
    identity_matches,
    max_unavailable,
    new_stateful_pod,
    parent_and_ordinal,
    status_differs,
    storage_matches,
    versioned_pod,
)

NOW = 1_000_000.0


def sset(replicas: int = 3, *, policy: str = "OrderedReady", strategy: dict | None = None,
         claims: bool = False, image: str = "nginx:1", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid", "generation": 1},
        "spec": {"replicas": replicas, "serviceName": "svc", "podManagementPolicy": policy,
                 "selector": {"matchLabels": {"app": "web"}},
                 "updateStrategy": strategy or {"type": "RollingUpdate",
                                                "rollingUpdate": {"partition": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}},
                 **spec},
        "status": {},
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"},
                                                 "spec": {"accessModes": ["ReadWriteOnce"]}}]
    return body


def revision(s: dict[str, Any], name: str, number: int = 1) -> dict[str, Any]:
    rev = history.new_revision(s, "apps/v1", "StatefulSet", {}, history.template_patch(s),
                               number, 0)
    rev["metadata"]["name"] = name
    return rev


def running(pod: dict[str, Any], ready: bool = True, phase: str = "Running") -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["uid"] = f"uid-{pod['metadata']['name']}"
    pod["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    return pod


class FakeOps:
    def __init__(self, claims: dict[str, dict[str, Any]] | None = None):
        self.calls: list[tuple[str, str]] = []
        self.claims = claims or {}

    async def create_pod(self, s, pod):
        self.calls.append(("create", pod["metadata"]["name"]))

    async def delete_pod(self, s, pod):
        self.calls.append(("delete", pod["metadata"]["name"]))

    async def update_pod(self, s, pod):
        self.calls.append(("update", pod["metadata"]["name"]))

    async def create_missing_claims(self, s, pod):
        self.calls.append(("claims", pod["metadata"]["name"]))

    def claim_is_stale(self, s, pod):
        return False

    def claims_match_retention(self, s, pod):
        return True

    async def update_claims_for_retention(self, s, pod):
        self.calls.append(("retain", pod["metadata"]["name"]))


async def sync(s: dict[str, Any], pods: list[dict[str, Any]], current: str = "web-1",
               update: str = "web-1", ops: FakeOps | None = None) -> tuple[FakeOps, SetStatus]:
    ops = ops or FakeOps()
    status = await SetSync(ops, s, revision(s, current), revision(s, update), 0, pods,
                           now=NOW).run()
    return ops, status


def pods_at(s: dict[str, Any], ordinals, rev: str = "web-1", **state) -> list[dict[str, Any]]:
    out = []
    for i in ordinals:
        pod = new_stateful_pod(s, i)
        pod["metadata"]["labels"][REVISION_LABEL] = rev
        out.append(running(pod, **state))
    return out


# -- identity ----------------------------------------------------------------------------------


def test_parent_and_ordinal() -> None:
    assert parent_and_ordinal("web-0") == ("web", 0)
    assert parent_and_ordinal("my-app-12") == ("my-app", 12)
    assert parent_and_ordinal("web") == ("", -1)
    assert parent_and_ordinal("web-99999999999") == ("web", -1)


def test_new_pod_has_identity_storage_and_owner() -> None:
    s = sset(claims=True, ordinals={"start": 5})
    pod = new_stateful_pod(s, 5)
    assert pod["metadata"]["name"] == "web-5"
    assert pod["metadata"]["labels"] == {"app": "web", POD_NAME_LABEL: "web-5",
                                         POD_INDEX_LABEL: "5"}
    assert pod["spec"]["hostname"] == "web-5" and pod["spec"]["subdomain"] == "svc"
    assert pod["spec"]["volumes"] == [{"name": "data",
                                       "persistentVolumeClaim": {"claimName": "data-web-5"}}]
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "StatefulSet" and ref["uid"] == "set-uid" and ref["controller"]
    assert identity_matches(s, pod) and storage_matches(s, pod)
    pod["metadata"]["labels"].pop(POD_NAME_LABEL)
    assert not identity_matches(s, pod)


def test_claims_are_named_and_labelled_per_ordinal() -> None:
    claims = claims_for(sset(claims=True), 2)
    assert list(claims) == ["data"]
    claim = claims["data"]
    assert claim["metadata"]["name"] == "data-web-2"
    assert claim["metadata"]["namespace"] == "ns"
    assert claim["metadata"]["labels"] == {"app": "web"}
    assert claim["kind"] == "PersistentVolumeClaim"


def test_versioned_pod_below_partition_uses_current_revision() -> None:
    current = sset(image="nginx:1", strategy={"type": "RollingUpdate",
                                              "rollingUpdate": {"partition": 2}})
    update = sset(image="nginx:2")
    low = versioned_pod(current, update, "web-a", "web-b", 1)
    high = versioned_pod(current, update, "web-a", "web-b", 2)
    assert low["metadata"]["labels"][REVISION_LABEL] == "web-a"
    assert low["spec"]["containers"][0]["image"] == "nginx:1"
    assert high["metadata"]["labels"][REVISION_LABEL] == "web-b"
    assert high["spec"]["containers"][0]["image"] == "nginx:2"


def test_max_unavailable_scales_and_is_at_least_one() -> None:
    assert max_unavailable(sset(10, strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": "25%"}})) == 3
    assert max_unavailable(sset(3, strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 0}})) == 1


# -- ordering ----------------------------------------------------------------------------------


async def test_ordered_ready_creates_the_first_missing_pod_only() -> None:
    ops, _ = await sync(sset(3), [])
    assert ops.calls == [("create", "web-0")]


async def test_ordered_ready_waits_for_a_pod_that_is_not_ready() -> None:
    s = sset(3)
    ops, status = await sync(s, pods_at(s, [0], ready=False))
    assert ops.calls == []
    assert status.replicas == 1 and status.ready_replicas == 0
    ops, status = await sync(s, pods_at(s, [0]))
    assert ops.calls == [("create", "web-1")]
    assert status.ready_replicas == 1


async def test_parallel_creates_every_missing_pod() -> None:
    s = sset(4, policy="Parallel")
    ops, _ = await sync(s, pods_at(s, [1], ready=False))
    assert sorted(ops.calls) == [("create", "web-0"), ("create", "web-2"), ("create", "web-3")]


async def test_scale_down_deletes_the_highest_ordinal_first() -> None:
    s = sset(1)
    ops, _ = await sync(s, pods_at(s, [0, 1, 2]))
    assert ops.calls == [("delete", "web-2")]


async def test_scale_down_waits_while_a_lower_pod_is_unhealthy() -> None:
    s = sset(1)
    pods = pods_at(s, [0, 1]) + pods_at(s, [2], ready=False)
    pods[1]["status"]["conditions"][0]["status"] = "False"
    ops, _ = await sync(s, pods)
    # web-2 is not the first unhealthy pod (web-1 is), so nothing goes.
    assert ops.calls == []


async def test_failed_pod_is_deleted_for_recreation() -> None:
    s = sset(2)
    pods = pods_at(s, [0]) + pods_at(s, [1], phase="Failed", ready=False)
    ops, _ = await sync(s, pods)
    assert ops.calls == [("delete", "web-1")]


async def test_pending_pod_gets_missing_claims() -> None:
    s = sset(1, claims=True)
    ops, _ = await sync(s, pods_at(s, [0], phase="Pending", ready=False))
    assert ops.calls == [("claims", "web-0")]


# -- updates -----------------------------------------------------------------------------------


async def test_rolling_update_deletes_highest_out_of_date_pod() -> None:
    s = sset(3)
    pods = pods_at(s, [0, 1, 2], rev="web-old")
    ops, status = await sync(s, pods, current="web-old", update="web-new")
    assert ops.calls == [("delete", "web-2")]
    assert status.current_replicas == 2


async def test_rolling_update_stops_at_the_partition() -> None:
    s = sset(3, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    pods = pods_at(s, [0, 1], rev="web-old") + pods_at(s, [2], rev="web-new")
    ops, _ = await sync(s, pods, current="web-old", update="web-new")
    assert ops.calls == []


async def test_rolling_update_honours_max_unavailable() -> None:
    s = sset(4, strategy={"type": "RollingUpdate",
                          "rollingUpdate": {"partition": 0, "maxUnavailable": 2}})
    ops, _ = await sync(s, pods_at(s, [0, 1, 2, 3], rev="web-old"), current="web-old",
                        update="web-new")
    assert ops.calls == [("delete", "web-3"), ("delete", "web-2")]


async def test_rolling_update_waits_for_an_unavailable_updated_pod() -> None:
    s = sset(3, policy="Parallel")
    pods = pods_at(s, [0, 1], rev="web-old") + pods_at(s, [2], rev="web-new", ready=False)
    ops, _ = await sync(s, pods, current="web-old", update="web-new")
    assert ops.calls == []


async def test_on_delete_never_deletes_for_an_update() -> None:
    s = sset(2, strategy={"type": "OnDelete"})
    ops, status = await sync(s, pods_at(s, [0, 1], rev="web-old"), current="web-old",
                             update="web-new")
    assert ops.calls == []
    assert status.current_replicas == 2 and status.updated_replicas == 0


async def test_deleting_set_only_reports_status() -> None:
    s = sset(3)
    s["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    ops, status = await sync(s, pods_at(s, [0]))
    assert ops.calls == [] and status.replicas == 1


# -- status ------------------------------------------------------------------------------------


def test_complete_rolling_update_moves_current_revision() -> None:
    status = SetStatus(replicas=3, ready_replicas=3, updated_replicas=3, current_replicas=0,
                       current_revision="a", update_revision="b")
    complete_rolling_update(sset(), status)
    assert status.current_revision == "b" and status.current_replicas == 3
    waiting = SetStatus(replicas=3, ready_replicas=2, updated_replicas=3,
                        current_revision="a", update_revision="b")
    complete_rolling_update(sset(), waiting)
    assert waiting.current_revision == "a"


def test_status_differs() -> None:
    s = sset()
    status = SetStatus(observed_generation=1, current_revision="a", update_revision="a")
    assert status_differs(s, status)
    s["status"] = status.to_dict()
    assert not status_differs(s, status)
    status.ready_replicas = 1
    assert status_differs(s, status)


# -- claim retention ---------------------------------------------------------------------------


def _claim(refs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "data-web-1", "ownerReferences": refs or []}}


def test_retention_delete_when_deleted_owns_claim_by_set() -> None:
    s = sset(2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                      "whenScaled": "Retain"})
    pod = running(new_stateful_pod(s, 1))
    claim = _claim()
    assert not claim_owner_up_to_date(claim, s, pod)
    refs = claim_owner_refs(claim, s, pod)
    assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [
        ("StatefulSet", "set-uid", True)]
    assert claim_owner_up_to_date(_claim(refs), s, pod)


def test_retention_delete_when_scaled_owns_condemned_claim_by_pod() -> None:
    s = sset(1, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                      "whenScaled": "Delete"})
    pod = running(new_stateful_pod(s, 1))  # ordinal 1 is beyond 1 replica
    set_ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid",
               "controller": True}
    refs = claim_owner_refs(_claim([set_ref]), s, pod)
    assert [(r["kind"], r["name"]) for r in refs] == [("Pod", "web-1")]


def test_retention_retain_removes_our_refs_and_keeps_others() -> None:
    s = sset(2)
    pod = running(new_stateful_pod(s, 1))
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "x"}
    set_ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid"}
    claim = _claim([other, set_ref])
    assert not claim_owner_up_to_date(claim, s, pod)
    assert claim_owner_refs(claim, s, pod) == [other]


# -- history -----------------------------------------------------------------------------------


def test_fnv_known_values() -> None:
    assert history.fnv32a(b"") == 0x811C9DC5
    assert history.fnv32a(b"a") == 0xE40C292C
    assert history.fnv32(b"a") == 0x050C5D7E


def test_revision_hash_is_stable_and_collision_count_changes_it() -> None:
    data = history.template_patch(sset())
    assert history.hash_revision_data(data, 0) == history.hash_revision_data(
        copy.deepcopy(data), 0)
    assert history.hash_revision_data(data, 0) != history.hash_revision_data(data, 1)
    assert set(history.hash_revision_data(data, 0)) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert history.compute_hash({"a": 1}, None) != history.compute_hash({"a": 1}, 1)


def test_revision_name_truncates_long_prefixes() -> None:
    assert history.revision_name("web", "abc") == "web-abc"
    assert history.revision_name("x" * 300, "abc") == "x" * 223 + "-abc"


def test_new_revision_and_template_round_trip() -> None:
    s = sset(image="nginx:7")
    rev = history.new_revision(s, "apps/v1", "StatefulSet", {"app": "web"},
                               history.template_patch(s), 3, 0)
    assert rev["metadata"]["name"].startswith("web-")
    assert rev["metadata"]["labels"]["app"] == "web"
    assert rev["metadata"]["labels"][history.REVISION_HASH_LABEL]
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert history.template_from_revision(rev) == s["spec"]["template"]


def test_excess_revisions_keeps_live_and_newest() -> None:
    revs = [{"metadata": {"name": f"r{i}"}, "revision": i} for i in range(1, 6)]
    excess = history.excess_revisions(revs, 2, lambda r: r["metadata"]["name"] in {"r1", "r5"})
    assert [r["metadata"]["name"] for r in excess] == ["r2"]
    assert history.excess_revisions(revs, -1, lambda r: False) == []
