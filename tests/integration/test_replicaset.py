"""The ReplicaSet and ReplicationController controllers against a real API server: scaling,
adoption and release, replacement of deleted pods, readiness and availability, terminating
replicas, and a broken template that must not stop other ReplicaSets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import Client, load_kubeconfig
from sampan.controllers.manager import ControllerManager
from sampan.controllers.replicaset import ReplicaSetController, ReplicationControllerController
from tests.integration.helpers import eventually, new_namespace, set_pod_status

TIMEOUT = 45.0


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def namespace(client: Client) -> str:
    return await new_namespace(client, "rs")


@pytest.fixture
async def controllers(client: Client) -> AsyncIterator[ControllerManager]:
    manager = ControllerManager(client, [ReplicaSetController, ReplicationControllerController],
                                leader_election=False)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    yield manager
    stop.set()
    await asyncio.wait_for(task, 15)


def template(labels: dict[str, str], image: str = "registry.local/pause:3.9") -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": image}]}}


def replica_set(name: str, replicas: int, *, app: str | None = None, image: str | None = None,
                min_ready: int = 0) -> dict[str, Any]:
    labels = {"app": app or name}
    tmpl = template(labels) if image is None else template(labels, image)
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": labels}, "template": tmpl}}


def orphan_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    tmpl = template(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **tmpl["metadata"]},
            "spec": tmpl["spec"]}


async def owned_pods(client: Client, namespace: str, uid: str, *,
                     active: bool = True) -> list[dict[str, Any]]:
    pods = (await client.list("v1", "pods", namespace=namespace))["items"]
    owned = [p for p in pods if any(r.get("uid") == uid and r.get("controller")
                                    for r in p["metadata"].get("ownerReferences") or ())]
    if active:
        owned = [p for p in owned if not p["metadata"].get("deletionTimestamp")]
    return owned


async def wait_pods(client: Client, namespace: str, uid: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal found
        found = await owned_pods(client, namespace, uid)
        return len(found) == count
    await eventually(check, TIMEOUT, what=f"{count} pods owned by {uid}")
    return found


async def wait_status(client: Client, api_version: str, resource: str, namespace: str,
                      name: str, **expected: Any) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await client.get(api_version, resource, name, namespace=namespace)
        status = latest.get("status") or {}
        return all(status.get(k, 0) == v for k, v in expected.items())
    try:
        await eventually(check, TIMEOUT, what=f"{resource} {name} status {expected}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last status: {latest.get('status')}") from None
    return latest


async def events_for(client: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    events = (await client.list("v1", "events", namespace=namespace))["items"]
    return [e for e in events if e["involvedObject"].get("name") == name]


async def test_scale_up_and_down(client: Client, namespace: str,
                                 controllers: ControllerManager) -> None:
    rs = await client.create("apps/v1", "replicasets", replica_set("web", 3), namespace=namespace)
    uid = rs["metadata"]["uid"]
    pods = await wait_pods(client, namespace, uid, 3)
    assert all(p["metadata"]["generateName"] == "web-" for p in pods)
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["blockOwnerDeletion"]) == ("ReplicaSet", "web", True)
    await wait_status(client, "apps/v1", "replicasets", namespace, "web", replicas=3,
                      fullyLabeledReplicas=3, observedGeneration=1)

    await client.patch("apps/v1", "replicasets", "web", {"spec": {"replicas": 1}},
                       namespace=namespace)
    await wait_pods(client, namespace, uid, 1)
    await wait_status(client, "apps/v1", "replicasets", namespace, "web", replicas=1,
                      observedGeneration=2)

    async def recorded() -> bool:
        reasons = [e["reason"] for e in await events_for(client, namespace, "web")]
        return "SuccessfulCreate" in reasons and "SuccessfulDelete" in reasons
    await eventually(recorded, TIMEOUT, what="SuccessfulCreate and SuccessfulDelete events")
    event = next(e for e in await events_for(client, namespace, "web")
                 if e["reason"] == "SuccessfulCreate")
    assert event["source"]["component"] == "replicaset-controller"
    assert event["message"].startswith("Created pod: web-")


async def test_adopts_orphans_and_releases_pods_that_stop_matching(
        client: Client, namespace: str, controllers: ControllerManager) -> None:
    for name in ("orphan-a", "orphan-b"):
        await client.create("v1", "pods", orphan_pod(name, {"app": "adopt"}), namespace=namespace)
    await client.create("v1", "pods", orphan_pod("other", {"app": "unrelated"}),
                        namespace=namespace)
    rs = await client.create("apps/v1", "replicasets", replica_set("adopt", 3),
                             namespace=namespace)
    uid = rs["metadata"]["uid"]
    pods = await wait_pods(client, namespace, uid, 3)
    names = {p["metadata"]["name"] for p in pods}
    assert {"orphan-a", "orphan-b"} <= names and "other" not in names

    await client.patch("v1", "pods", "orphan-a", {"metadata": {"labels": {"app": "gone"}}},
                       namespace=namespace)

    async def released() -> bool:
        pod = await client.get("v1", "pods", "orphan-a", namespace=namespace)
        return not pod["metadata"].get("ownerReferences")
    await eventually(released, TIMEOUT, what="orphan-a released")
    pods = await wait_pods(client, namespace, uid, 3)  # a replacement for the released pod
    assert "orphan-a" not in {p["metadata"]["name"] for p in pods}


async def test_deleted_and_terminating_pods_are_replaced(
        client: Client, namespace: str, controllers: ControllerManager) -> None:
    rs = await client.create("apps/v1", "replicasets", replica_set("heal", 2),
                             namespace=namespace)
    uid = rs["metadata"]["uid"]
    first, second = await wait_pods(client, namespace, uid, 2)
    await client.delete("v1", "pods", first["metadata"]["name"], namespace=namespace)
    pods = await wait_pods(client, namespace, uid, 2)
    assert first["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}

    # A pod held by a finalizer stays terminating: replaced at once and counted separately.
    held = second["metadata"]["name"]
    await client.patch("v1", "pods", held, {"metadata": {"finalizers": ["example.com/hold"]}},
                       namespace=namespace)
    await client.delete("v1", "pods", held, namespace=namespace)
    await wait_status(client, "apps/v1", "replicasets", namespace, "heal", replicas=2,
                      terminatingReplicas=1)
    await client.patch("v1", "pods", held, {"metadata": {"finalizers": None}},
                       namespace=namespace)
    await wait_status(client, "apps/v1", "replicasets", namespace, "heal", replicas=2,
                      terminatingReplicas=0)


async def test_ready_and_available_replicas(client: Client, namespace: str,
                                            controllers: ControllerManager) -> None:
    rs = await client.create("apps/v1", "replicasets", replica_set("ready", 2, min_ready=1),
                             namespace=namespace)
    pods = await wait_pods(client, namespace, rs["metadata"]["uid"], 2)
    await set_pod_status(client, namespace, pods[0]["metadata"]["name"], ready=True)
    await wait_status(client, "apps/v1", "replicasets", namespace, "ready", readyReplicas=1)
    await set_pod_status(client, namespace, pods[1]["metadata"]["name"], ready=True)
    # Available only after minReadySeconds: noticed by a requeue, with no pod event to help.
    await wait_status(client, "apps/v1", "replicasets", namespace, "ready", replicas=2,
                      readyReplicas=2, availableReplicas=2)

    await set_pod_status(client, namespace, pods[0]["metadata"]["name"], ready=False)
    await wait_status(client, "apps/v1", "replicasets", namespace, "ready", readyReplicas=1,
                      availableReplicas=1)


async def test_a_replication_controller_works_too(client: Client, namespace: str,
                                                  controllers: ControllerManager) -> None:
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
          "spec": {"replicas": 2, "selector": {"app": "legacy"},
                   "template": template({"app": "legacy"})}}
    rc = await client.create("v1", "replicationcontrollers", rc, namespace=namespace)
    uid = rc["metadata"]["uid"]
    pods = await wait_pods(client, namespace, uid, 2)
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"
    await set_pod_status(client, namespace, pods[0]["metadata"]["name"], ready=True)
    await wait_status(client, "v1", "replicationcontrollers", namespace, "legacy", replicas=2,
                      readyReplicas=1, availableReplicas=1, observedGeneration=1)
    await client.patch("v1", "replicationcontrollers", "legacy", {"spec": {"replicas": 0}},
                       namespace=namespace)
    await wait_pods(client, namespace, uid, 0)
    latest = await wait_status(client, "v1", "replicationcontrollers", namespace, "legacy",
                               replicas=0)
    assert "terminatingReplicas" not in latest["status"]
    reasons = {e["reason"]: e for e in await events_for(client, namespace, "legacy")}
    if "SuccessfulCreate" in reasons:  # events are best effort and written in the background
        assert reasons["SuccessfulCreate"]["source"]["component"] == "replication-controller"


async def test_a_failing_template_reports_and_others_keep_converging(
        client: Client, namespace: str, controllers: ControllerManager) -> None:
    # The template passes ReplicaSet validation; pod validation rejects the image's whitespace.
    bad = await client.create("apps/v1", "replicasets",
                              replica_set("bad", 3, image="registry.local/pause:3.9 "),
                              namespace=namespace)
    good = await client.create("apps/v1", "replicasets", replica_set("good", 2),
                               namespace=namespace)
    await wait_pods(client, namespace, good["metadata"]["uid"], 2)

    latest: dict[str, Any] = {}

    async def failing() -> bool:
        nonlocal latest
        latest = await client.get("apps/v1", "replicasets", "bad", namespace=namespace)
        return any(c["type"] == "ReplicaFailure" for c in latest["status"].get("conditions") or ())
    await eventually(failing, TIMEOUT, what="ReplicaFailure condition")
    [condition] = latest["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "FailedCreate")
    assert "whitespace" in condition["message"]

    async def warned() -> bool:
        return any(e["reason"] == "FailedCreate" and e["type"] == "Warning"
                   for e in await events_for(client, namespace, "bad"))
    await eventually(warned, TIMEOUT, what="FailedCreate event")
    assert await owned_pods(client, namespace, bad["metadata"]["uid"]) == []

    await client.patch("apps/v1", "replicasets", "good", {"spec": {"replicas": 3}},
                       namespace=namespace)
    await wait_pods(client, namespace, good["metadata"]["uid"], 3)

    # Fixing the template clears the condition.
    fixed = replica_set("bad", 3)["spec"]["template"]
    await client.patch("apps/v1", "replicasets", "bad", {"spec": {"template": fixed}},
                       namespace=namespace)
    await wait_pods(client, namespace, bad["metadata"]["uid"], 3)

    async def cleared() -> bool:
        rs = await client.get("apps/v1", "replicasets", "bad", namespace=namespace)
        return not rs["status"].get("conditions") and rs["status"].get("replicas") == 3
    await eventually(cleared, TIMEOUT, what="ReplicaFailure cleared")
