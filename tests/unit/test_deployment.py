"""The Deployment controller's decisions: the pod-template hash, fenceposts, proportions,
annotations and conditions as pure functions, and whole rollouts against an in-memory API
(a fake that writes through to the controller's informer caches) with a stand-in for the
ReplicaSet controller, checking upstream's surge and availability bounds at every step."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from sampan.client.controller import Requeue
from sampan.client.errors import ApiError, status_for
from sampan.client.informer import InformerFactory
from sampan.controllers.deployment import DeploymentController
from sampan.controllers.deployment import util as du

# -- pure functions ----------------------------------------------------------------------------


def test_fnv32a_and_safe_encoding() -> None:
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.safe_encode_string("0123456789") == "456789bcdf"


def test_compute_hash_depends_on_template_and_collision_count() -> None:
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    h = du.compute_hash(template, None)
    assert h == du.compute_hash(copy.deepcopy(template), None)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert du.compute_hash(template, 1) != h
    assert du.compute_hash(template, 1) != du.compute_hash(template, 2)
    other = copy.deepcopy(template)
    other["spec"]["containers"][0]["image"] = "nginx:2"
    assert du.compute_hash(other, None) != h


def test_equal_ignore_hash() -> None:
    a = {"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}},
         "spec": {"containers": [{"name": "c", "image": "i"}]}}
    b = {"metadata": {"labels": {"app": "x"}, "annotations": {}},
         "spec": {"containers": [{"name": "c", "image": "i", "env": []}]}}
    assert du.equal_ignore_hash(a, b)
    b["spec"]["containers"][0]["image"] = "j"
    assert not du.equal_ignore_hash(a, b)
    assert a["metadata"]["labels"]["pod-template-hash"] == "abc"  # not mutated


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("25%", "25%", 10, (3, 2)),
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 1, (1, 0)),
    ("0%", "1%", 2, (0, 1)),      # both round to zero: one may be unavailable
    ("1%", "25%", 2, (1, 0)),
    (0, "1%", 1, (0, 1)),
    (2, 0, 5, (2, 0)),
    ("50%", None, 3, (2, 0)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int,
                            expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == expected


def test_scaled_value_rejects_a_string_without_percent() -> None:
    with pytest.raises(ValueError):
        du.scaled_value("5", 10, True)


def _d(replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%", **spec: Any
       ) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge,
                                                    "maxUnavailable": unavailable}},
                     **spec},
            "status": {}}


def _rs(name: str, replicas: int, available: int | None = None, created: int = 0,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}",
                         "creationTimestamp": f"2024-01-01T00:00:{created:02d}Z",
                         "annotations": dict(annotations or {})},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas,
                       "availableReplicas": replicas if available is None else available}}


def test_max_surge_and_unavailable_of_a_deployment() -> None:
    d = _d(10)
    assert (du.max_surge(d), du.max_unavailable(d)) == (3, 2)
    assert du.max_unavailable(_d(0)) == 0
    assert du.max_unavailable(_d(2, surge=0, unavailable=5)) == 2  # capped at replicas
    recreate = {**_d(3), "spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}
    assert (du.max_surge(recreate), du.max_unavailable(recreate)) == (0, 0)


def test_new_rs_new_replicas() -> None:
    d = _d(10)
    new = _rs("new", 0)
    assert du.new_rs_new_replicas(d, [_rs("old", 10), new], new) == 3
    assert du.new_rs_new_replicas(d, [_rs("old", 13), new], new) == 0
    new = _rs("new", 8)
    assert du.new_rs_new_replicas(d, [_rs("old", 3), new], new) == 10  # never past desired
    recreate = {**d, "spec": {**d["spec"], "strategy": {"type": "Recreate"}}}
    assert du.new_rs_new_replicas(recreate, [new], new) == 10


def test_proportional_scaling_mid_rollout() -> None:
    """10 → 20 replicas while a rollout is half done: each active ReplicaSet grows in
    proportion to its share of the old maximum (13 = 10 + surge 3)."""
    d = _d(20)
    annotations = {du.MAX_REPLICAS: "13", du.DESIRED_REPLICAS: "10"}
    old = _rs("old", 8, created=1, annotations=annotations)
    new = _rs("new", 5, created=2, annotations=annotations)
    sizes, operation = du.proportional_sizes(d, [new, old])
    assert operation == "up"
    assert [(du.name(rs), size) for rs, size in sizes] == [("old", 15), ("new", 10)]
    assert sum(size for _, size in sizes) == 20 + du.max_surge(d)


def test_proportional_scaling_down_takes_leftovers_from_the_largest() -> None:
    d = _d(5)  # from 10: maximum 13 before, 5 + 2 = 7 now
    annotations = {du.MAX_REPLICAS: "13"}
    old = _rs("old", 6, created=1, annotations=annotations)
    new = _rs("new", 7, created=2, annotations=annotations)
    sizes, operation = du.proportional_sizes(d, [old, new])
    assert operation == "down"
    result = {du.name(rs): size for rs, size in sizes}
    assert du.name(sizes[0][0]) == "new"
    assert sum(result.values()) == 7 and all(v >= 0 for v in result.values())


def test_find_active_or_latest() -> None:
    old1, old2 = _rs("a", 0, created=1), _rs("b", 0, created=2)
    assert du.find_active_or_latest(None, [old1, old2]) is old2
    new = _rs("n", 0, created=3)
    assert du.find_active_or_latest(new, [old1, old2]) is new
    busy = _rs("busy", 2, created=1)
    assert du.find_active_or_latest(new, [busy, old2]) is busy
    assert du.find_active_or_latest(_rs("n2", 1, created=3), [busy]) is None


def test_new_replica_set_annotations_keep_revision_history() -> None:
    d = _d(3)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "edit",
                                    du.LAST_APPLIED: "{}", du.REVISION: "9"}
    rs = _rs("rs", 3, annotations={du.REVISION: "1"})
    assert du.set_new_replica_set_annotations(d, rs, 4, exists=True)
    ann = rs["metadata"]["annotations"]
    assert ann[du.REVISION] == "4" and ann[du.REVISION_HISTORY] == "1"
    assert ann["kubernetes.io/change-cause"] == "edit"
    assert du.LAST_APPLIED not in ann
    assert du.DESIRED_REPLICAS not in ann  # only a ReplicaSet being created gets these
    assert du.set_new_replica_set_annotations(d, rs, 7, exists=True)
    assert ann[du.REVISION_HISTORY] == "1,4"
    assert not du.set_new_replica_set_annotations(d, rs, 7, exists=True)
    fresh = _rs("fresh", 0, annotations={})
    du.set_new_replica_set_annotations(d, fresh, 1, exists=False)
    assert fresh["metadata"]["annotations"][du.MAX_REPLICAS] == "4"


def test_revision_history_is_bounded() -> None:
    rs = _rs("rs", 1, annotations={du.REVISION: "100", du.REVISION_HISTORY: "1,2,3"})
    du.set_new_replica_set_annotations(_d(1), rs, 101, exists=True, history_limit=8)
    assert rs["metadata"]["annotations"][du.REVISION_HISTORY] == "2,3,100"


def test_calculate_status_and_availability() -> None:
    d = _d(4)
    new = _rs("new", 3, available=1)
    old = _rs("old", 2, available=2)
    st = du.calculate_status([old, new], new, d)
    assert st["replicas"] == 5 and st["updatedReplicas"] == 3
    assert st["availableReplicas"] == 3 and st["unavailableReplicas"] == 2
    assert st["observedGeneration"] == 1
    assert du.get_condition(st, du.AVAILABLE)["reason"] == du.MINIMUM_REPLICAS_AVAILABLE
    st = du.calculate_status([_rs("new", 4, available=1)], None, d)
    available = du.get_condition(st, du.AVAILABLE)
    assert available["status"] == "False"
    assert available["message"] == "Deployment does not have minimum availability."
    assert "updatedReplicas" not in st  # zero counts are omitted


def test_rollout_status_conditions() -> None:
    d = _d(2, progressDeadlineSeconds=10)
    new = _rs("web-abc", 2, available=0)
    d["status"] = {"replicas": 2, "updatedReplicas": 2, "conditions": [du.new_condition(
        du.PROGRESSING, "True", du.NEW_REPLICA_SET, 'Created new replica set "web-abc"',
        now=1000.0)]}
    stuck = du.rollout_status([new], new, d, now=1005.0)
    assert du.get_condition(stuck, du.PROGRESSING)["reason"] == du.NEW_REPLICA_SET
    assert du.progress_recheck_after(d, stuck, now=1005.0) == pytest.approx(5.0, abs=1)
    late = du.rollout_status([new], new, d, now=1011.0)
    timed_out = du.get_condition(late, du.PROGRESSING)
    assert (timed_out["status"], timed_out["reason"]) == ("False", du.TIMED_OUT)
    assert timed_out["message"] == 'ReplicaSet "web-abc" has timed out progressing.'
    done = du.rollout_status([_rs("web-abc", 2)], _rs("web-abc", 2), d, now=1011.0)
    complete = du.get_condition(done, du.PROGRESSING)
    assert complete["reason"] == du.NEW_RS_AVAILABLE
    assert complete["message"] == 'ReplicaSet "web-abc" has successfully progressed.'
    assert complete["lastTransitionTime"] == d["status"]["conditions"][0]["lastTransitionTime"]


def test_replica_failure_is_carried_over() -> None:
    d = _d(1)
    rs = _rs("rs", 1, available=0)
    rs["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True",
                                   "reason": "FailedCreate", "message": "quota",
                                   "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    st = du.rollout_status([rs], rs, d)
    assert du.get_condition(st, du.REPLICA_FAILURE)["message"] == "quota"


# -- whole rollouts against an in-memory API ----------------------------------------------------


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def messages(self, reason: str = "ScalingReplicaSet") -> list[str]:
        return [m for _, r, m in self.events if r == reason]


class FakeApi:
    """Deployments and ReplicaSets in memory, with resourceVersion conflicts, generations and
    the status subresource; every write goes straight into the controller's caches."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.revision = itertools.count(1)
        self.clock = itertools.count(0)
        self.informers: dict[str, Any] = {}

    def _store(self, resource: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self.revision))
        m = obj["metadata"]
        self.objects[(resource, m["namespace"], m["name"])] = obj
        informer = self.informers.get(resource)
        if informer is not None:
            informer._handle_event(event, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def _current(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.objects[(resource, namespace, name)]
        except KeyError:
            raise ApiError(status_for(404, f'{resource} "{name}" not found')) from None

    async def get(self, api_version: str, resource: str, name: str, *, namespace: str,
                  **_: Any) -> dict[str, Any]:
        return copy.deepcopy(self._current(resource, namespace, name))

    async def create(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str, **_: Any) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        m = obj["metadata"]
        m["namespace"] = namespace
        if (resource, namespace, m["name"]) in self.objects:
            raise ApiError(status_for(409, f'{resource} "{m["name"]}" already exists',
                                      "AlreadyExists"))
        m.update(uid=f"uid-{m['name']}", generation=1,
                 creationTimestamp=f"2024-01-01T00:{next(self.clock):02d}:00Z")
        obj["status"] = {}
        return self._store(resource, obj, "ADDED")

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str, subresource: str | None = None, **_: Any) -> dict[str, Any]:
        current = self._current(resource, namespace, body["metadata"]["name"])
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(status_for(409, "the object has been modified", "Conflict"))
        obj = copy.deepcopy(body)
        if subresource == "status":
            obj["spec"] = copy.deepcopy(current["spec"])
            obj["metadata"]["generation"] = current["metadata"]["generation"]
        else:
            obj["status"] = copy.deepcopy(current.get("status") or {})
            generation = current["metadata"]["generation"]
            obj["metadata"]["generation"] = generation + (obj["spec"] != current["spec"])
        return self._store(resource, obj, "MODIFIED")

    async def patch(self, api_version: str, resource: str, name: str, patch: dict[str, Any], *,
                    namespace: str, **_: Any) -> dict[str, Any]:
        obj = copy.deepcopy(self._current(resource, namespace, name))
        for key, value in patch.get("metadata", {}).items():
            if key not in ("uid", "resourceVersion"):
                obj["metadata"][key] = value
        return self._store(resource, obj, "MODIFIED")

    async def delete(self, api_version: str, resource: str, name: str, *, namespace: str,
                     **_: Any) -> dict[str, Any]:
        obj = self.objects.pop((resource, namespace, name))
        self.informers[resource]._handle_event("DELETED", copy.deepcopy(obj))
        return {}

    def replica_sets(self) -> list[dict[str, Any]]:
        return sorted((o for (r, _, _), o in self.objects.items() if r == "replicasets"),
                      key=lambda rs: rs["metadata"]["creationTimestamp"])

    def deployment(self, name: str = "web") -> dict[str, Any]:
        return self.objects[("deployments", "ns", name)]


class Rollout:
    """The controller, the fake API and a ReplicaSet controller that brings pods up one step
    after they are asked for (they are available the step after that)."""

    def __init__(self) -> None:
        self.api = FakeApi()
        self.recorder = FakeRecorder()
        fake: Any = self.api
        self.controller = DeploymentController(fake, InformerFactory(fake),
                                               recorder=self.recorder)  # type: ignore[arg-type]
        self.api.informers = {"deployments": self.controller.deployments,
                              "replicasets": self.controller.replica_sets}

    async def create(self, d: dict[str, Any]) -> None:
        await self.api.create("apps/v1", "deployments", d, namespace="ns")

    async def change(self, **spec: Any) -> None:
        d = copy.deepcopy(self.api.deployment())
        for key, value in spec.items():
            if key == "image":
                d["spec"]["template"]["spec"]["containers"][0]["image"] = value
            else:
                d["spec"][key] = value
        await self.api.update("apps/v1", "deployments", d, namespace="ns")

    async def replica_set_controller_step(self) -> bool:
        changed = False
        for rs in self.api.replica_sets():
            want, st = rs["spec"]["replicas"], rs["status"]
            have = st.get("replicas", 0)
            available = min(want, have)  # pods that existed a step ago are available
            new_status = {"replicas": want, "readyReplicas": available,
                          "availableReplicas": available,
                          "observedGeneration": rs["metadata"]["generation"]}
            if new_status != st:
                changed = True
                updated = copy.deepcopy(rs)
                updated["status"] = new_status
                await self.api.update("apps/v1", "replicasets", updated, namespace="ns",
                                      subresource="status")
        return changed

    async def settle(self, check=lambda api: None, steps: int = 60) -> int:
        """Reconcile and step the pods until nothing changes; ``check`` sees every step."""
        for step in range(steps):
            before = next(self.api.revision)
            try:
                await self.controller.reconcile("ns/web")
            except Requeue:  # the worker would requeue it
                pass
            check(self.api)
            await self.replica_set_controller_step()
            if next(self.api.revision) == before + 1:
                return step
        raise AssertionError("the rollout did not settle")


def deployment(replicas: int = 10, image: str = "nginx:1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"kubernetes.io/change-cause": "v1"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}


def rolling_bounds(replicas: int, surge: int, unavailable: int):
    def check(api: FakeApi) -> None:
        rss = api.replica_sets()
        assert sum(rs["spec"]["replicas"] for rs in rss) <= replicas + surge
        available = sum(rs["status"].get("availableReplicas", 0) for rs in rss)
        assert available >= replicas - unavailable
    return check


def images(api: FakeApi) -> dict[str, int]:
    return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
            for rs in api.replica_sets()}


async def test_create_names_the_replica_set_by_template_hash() -> None:
    r = Rollout()
    await r.create(deployment(replicas=3))
    await r.settle()
    (rs,) = r.api.replica_sets()
    d = r.api.deployment()
    pod_hash = du.compute_hash(d["spec"]["template"], None)
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["selector"]["matchLabels"]["pod-template-hash"] == pod_hash
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["annotations"][du.REVISION] == "1"
    assert d["metadata"]["annotations"][du.REVISION] == "1"
    assert d["status"]["availableReplicas"] == 3
    assert du.get_condition(d["status"], du.PROGRESSING)["reason"] == du.NEW_RS_AVAILABLE
    assert r.recorder.messages() == [f"Scaled up replica set web-{pod_hash} from 0 to 3"]


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    (10, "25%", "25%"), (10, 0, 1), (10, 3, 0), (3, "50%", "50%"), (1, 1, 0), (5, "10%", "10%"),
])
async def test_rolling_update_stays_within_surge_and_availability(
        replicas: int, surge: Any, unavailable: Any) -> None:
    r = Rollout()
    strategy = {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    await r.create(deployment(replicas=replicas, strategy=strategy))
    await r.settle()
    max_surge, max_unavailable = du.resolve_fenceposts(surge, unavailable, replicas)
    await r.change(image="nginx:2")
    await r.settle(rolling_bounds(replicas, max_surge, min(max_unavailable, replicas)))
    assert images(r.api) == {"nginx:1": 0, "nginx:2": replicas}
    d = r.api.deployment()
    assert d["metadata"]["annotations"][du.REVISION] == "2"
    assert d["status"]["updatedReplicas"] == replicas
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]


async def test_proportional_scaling_during_a_rollout() -> None:
    r = Rollout()
    await r.create(deployment(replicas=10))
    await r.settle()
    await r.change(image="nginx:2")
    # The new ReplicaSet is created with the surge (3); 2 old pods may go at once.
    await r.controller.reconcile("ns/web")
    await r.replica_set_controller_step()
    assert images(r.api) == {"nginx:1": 8, "nginx:2": 3}
    await r.change(replicas=20)
    await r.controller.reconcile("ns/web")
    # 11 of at most 13 → at most 25: 8 → 15 and 3 → 6 in proportion, and the 4 left over
    # go to the largest.
    assert images(r.api) == {"nginx:1": 19, "nginx:2": 6}
    messages = r.recorder.messages()
    assert any(m.startswith("Scaled up replica set") and m.endswith("from 8 to 19")
               for m in messages)
    await r.settle(rolling_bounds(20, 5, 20))  # pods for the new size take a while
    assert images(r.api) == {"nginx:1": 0, "nginx:2": 20}


async def test_recreate_scales_down_before_up() -> None:
    r = Rollout()
    await r.create(deployment(replicas=4, strategy={"type": "Recreate"}))
    await r.settle()
    await r.change(image="nginx:2")

    def never_both(api: FakeApi) -> None:
        """The new ReplicaSet wants pods only once no old pod is left."""
        by_image = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs
                    for rs in api.replica_sets()}
        new = by_image.get("nginx:2")
        if new is not None and new["spec"]["replicas"] > 0:
            assert by_image["nginx:1"]["status"].get("replicas", 0) == 0
    await r.settle(never_both)
    assert images(r.api) == {"nginx:1": 0, "nginx:2": 4}
    old, new = (rs["metadata"]["name"] for rs in r.api.replica_sets())
    assert r.recorder.messages()[-2:] == [f"Scaled down replica set {old} from 4 to 0",
                                          f"Scaled up replica set {new} from 0 to 4"]


async def test_paused_deployment_scales_but_does_not_roll_out() -> None:
    r = Rollout()
    await r.create(deployment(replicas=2))
    await r.settle()
    await r.change(paused=True)
    await r.settle()
    condition = du.get_condition(r.api.deployment()["status"], du.PROGRESSING)
    assert (condition["status"], condition["reason"]) == ("Unknown", du.PAUSED)
    await r.change(image="nginx:2", replicas=5)
    await r.settle()
    assert images(r.api) == {"nginx:1": 5}
    await r.change(paused=False)
    await r.settle()
    assert images(r.api) == {"nginx:1": 0, "nginx:2": 5}
    assert du.get_condition(r.api.deployment()["status"], du.PROGRESSING)["reason"] == \
        du.NEW_RS_AVAILABLE


async def test_undo_reuses_the_old_replica_set_with_a_new_revision() -> None:
    r = Rollout()
    await r.create(deployment(replicas=3))
    await r.settle()
    first = r.api.replica_sets()[0]["metadata"]["name"]
    await r.change(image="nginx:2")
    await r.settle()
    # ``kubectl rollout undo`` patches the old template (and annotations) back in.
    d = copy.deepcopy(r.api.deployment())
    old = r.api.objects[("replicasets", "ns", first)]
    d["spec"]["template"] = du.template_from_replica_set(old)
    await r.api.update("apps/v1", "deployments", d, namespace="ns")
    await r.settle()
    rss = {rs["metadata"]["name"]: rs for rs in r.api.replica_sets()}
    assert len(rss) == 2 and rss[first]["spec"]["replicas"] == 3
    assert rss[first]["metadata"]["annotations"][du.REVISION] == "3"
    assert rss[first]["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
    assert r.api.deployment()["metadata"]["annotations"][du.REVISION] == "3"


async def test_deprecated_rollback_to_annotation() -> None:
    r = Rollout()
    await r.create(deployment(replicas=1))
    await r.settle()
    await r.change(image="nginx:2")
    await r.settle()
    d = copy.deepcopy(r.api.deployment())
    d["metadata"]["annotations"][du.DEPRECATED_ROLLBACK_TO] = "0"  # the previous revision
    await r.api.update("apps/v1", "deployments", d, namespace="ns")
    await r.settle()
    d = r.api.deployment()
    assert du.DEPRECATED_ROLLBACK_TO not in d["metadata"]["annotations"]
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert 'Rolled back deployment "web" to revision 1' in r.recorder.messages(du.ROLLBACK_DONE)
    assert images(r.api) == {"nginx:1": 1, "nginx:2": 0}


async def test_revision_history_limit_deletes_the_oldest() -> None:
    r = Rollout()
    await r.create(deployment(replicas=1, revisionHistoryLimit=2))
    await r.settle()
    for version in range(2, 7):
        await r.change(image=f"nginx:{version}")
        await r.settle()
    assert images(r.api) == {"nginx:4": 0, "nginx:5": 0, "nginx:6": 1}


async def test_hash_collision_bumps_collision_count() -> None:
    r = Rollout()
    d = deployment(replicas=1)
    await r.create(d)
    template = r.api.deployment()["spec"]["template"]
    squatter = {"metadata": {"name": f"web-{du.compute_hash(template, None)}",
                             "labels": {"other": "app"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"other": "app"}},
                         "template": {"metadata": {"labels": {"other": "app"}}}}}
    await r.api.create("apps/v1", "replicasets", squatter, namespace="ns")
    await r.settle()
    d = r.api.deployment()
    assert d["status"]["collisionCount"] == 1
    owned = [rs for rs in r.api.replica_sets() if rs["metadata"].get("ownerReferences")]
    assert [rs["metadata"]["name"] for rs in owned] == [f"web-{du.compute_hash(template, 1)}"]


async def test_orphan_replica_set_is_adopted() -> None:
    r = Rollout()
    template = deployment()["spec"]["template"]
    orphan = {"metadata": {"name": "web-orphan", "labels": {"app": "web"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": copy.deepcopy(template)}}
    await r.api.create("apps/v1", "replicasets", orphan, namespace="ns")
    await r.create(deployment(replicas=2))
    await r.settle()
    (rs,) = r.api.replica_sets()
    assert rs["metadata"]["name"] == "web-orphan"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == r.api.deployment()["metadata"]["uid"]
    assert r.api.deployment()["status"]["availableReplicas"] == 2


async def test_selecting_everything_is_refused() -> None:
    r = Rollout()
    await r.create(deployment(selector={}))
    await r.controller.reconcile("ns/web")
    assert r.api.replica_sets() == []
    assert r.recorder.messages("SelectingAll")
    assert r.api.deployment()["status"]["observedGeneration"] == 1


async def test_replica_set_relabelled_away_is_released() -> None:
    r = Rollout()
    await r.create(deployment(replicas=1))
    await r.settle()
    (rs,) = r.api.replica_sets()
    relabelled = copy.deepcopy(rs)
    relabelled["metadata"]["labels"] = {"app": "debug"}
    await r.api.update("apps/v1", "replicasets", relabelled, namespace="ns")
    await r.settle()
    rss = {x["metadata"]["name"]: x for x in r.api.replica_sets()}
    assert not rss[rs["metadata"]["name"]]["metadata"].get("ownerReferences")
    # Its name is taken, so the replacement hashes with a collision count.
    template = r.api.deployment()["spec"]["template"]
    replacement = rss[f"web-{du.compute_hash(template, 1)}"]
    assert replacement["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert r.api.deployment()["status"]["availableReplicas"] == 1
