"""The StatefulSet controller against a real API server: pods are moved through their phases
with ``set_pod_status`` (there are no kubelets here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, InformerFactory, load_kubeconfig
from sampan.controllers.garbagecollector import GarbageCollector
from sampan.controllers.statefulset import StatefulSetController
from tests.integration.helpers import eventually, exists, new_namespace, set_pod_status

TIMEOUT = 45.0


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def controller(client: Client) -> AsyncIterator[StatefulSetController]:
    informers = InformerFactory(client)
    ctl = StatefulSetController(client, informers)
    informers.start()
    task = asyncio.create_task(ctl.run())
    yield ctl
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await informers.stop()


@pytest.fixture
async def ns(client: Client) -> AsyncIterator[str]:
    name = await new_namespace(client, "sts")
    yield name
    await client.delete("v1", "namespaces", name)


def stateful_set(name: str, replicas: int, *, image: str = "nginx:1", claims: bool = False,
                 **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}},
                 **spec},
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


async def pod_names(client: Client, ns: str) -> set[str]:
    pods = await client.list("v1", "pods", namespace=ns)
    return {p["metadata"]["name"] for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")}


async def wait_pods(client: Client, ns: str, names: set[str], what: str = "pods") -> None:
    async def check() -> bool:
        return await pod_names(client, ns) == names
    await eventually(check, TIMEOUT, what)


async def make_ready(client: Client, ns: str, name: str) -> None:
    await eventually(lambda: exists(client, "v1", "pods", name, ns), TIMEOUT, f"pod {name}")
    await set_pod_status(client, ns, name)


async def sts_status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return (await client.get("apps/v1", "statefulsets", name, namespace=ns)).get("status") or {}


async def record_deletions(client: Client, ns: str, deleted: list[str]) -> None:
    listed = await client.list("v1", "pods", namespace=ns)
    async with client.watch("v1", "pods", namespace=ns,
                            resource_version=listed["metadata"]["resourceVersion"]) as stream:
        async for kind, obj in stream:
            if kind == "DELETED":
                deleted.append(obj["metadata"]["name"])


async def _true(value: bool) -> bool:
    return value


async def events(client: Client, ns: str) -> list[tuple[str, str]]:
    items = (await client.list("v1", "events", namespace=ns))["items"]
    return [(e.get("reason"), e.get("message")) for e in items]


async def test_ordered_creation_with_claims_and_reverse_scale_down(
        client: Client, controller: StatefulSetController, ns: str) -> None:
    await client.create("apps/v1", "statefulsets", stateful_set("web", 3, claims=True),
                        namespace=ns)
    await wait_pods(client, ns, {"web-0"}, "web-0 alone")
    pod = await client.get("v1", "pods", "web-0", namespace=ns)
    assert pod["spec"]["hostname"] == "web-0" and pod["spec"]["subdomain"] == "web"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["controller-revision-hash"].startswith("web-")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "data-web-0"
    claim = await client.get("v1", "persistentvolumeclaims", "data-web-0", namespace=ns)
    assert claim["metadata"]["labels"] == {"app": "web"}

    # Nothing more until web-0 is Running and Ready; then one at a time, in order.
    await asyncio.sleep(0.5)
    assert await pod_names(client, ns) == {"web-0"}
    await make_ready(client, ns, "web-0")
    await wait_pods(client, ns, {"web-0", "web-1"})
    await make_ready(client, ns, "web-1")
    await wait_pods(client, ns, {"web-0", "web-1", "web-2"})
    await make_ready(client, ns, "web-2")
    for i in range(3):
        assert await exists(client, "v1", "persistentvolumeclaims", f"data-web-{i}", ns)

    async def all_ready() -> bool:
        status = await sts_status(client, ns, "web")
        return status.get("readyReplicas") == 3 and status.get("availableReplicas") == 3
    await eventually(all_ready, TIMEOUT, "3 ready replicas")
    status = await sts_status(client, ns, "web")
    assert status["replicas"] == 3 and status["currentRevision"] == status["updateRevision"]
    assert status["observedGeneration"] == 1 and status["collisionCount"] == 0
    assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") \
        in await events(client, ns)
    assert ("SuccessfulCreate", "create Claim data-web-0 Pod web-0 in StatefulSet web success") \
        in await events(client, ns)

    # Scale down: highest ordinal first; claims are retained (whenScaled: Retain).
    deleted: list[str] = []
    watcher = asyncio.create_task(record_deletions(client, ns, deleted))
    await asyncio.sleep(0.2)
    await client.patch("apps/v1", "statefulsets", "web", {"spec": {"replicas": 1}},
                       namespace=ns)
    await wait_pods(client, ns, {"web-0"}, "scaled down to web-0")
    await eventually(lambda: _true(len(deleted) == 2), TIMEOUT, "deletions seen")
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert deleted == ["web-2", "web-1"]
    assert await exists(client, "v1", "persistentvolumeclaims", "data-web-2", ns)
    messages = [m for r, m in await events(client, ns) if r == "SuccessfulDelete"]
    assert "delete Pod web-2 in StatefulSet web successful" in messages


async def test_failed_pod_is_recreated(client: Client, controller: StatefulSetController,
                                       ns: str) -> None:
    await client.create("apps/v1", "statefulsets", stateful_set("db", 1), namespace=ns)
    await make_ready(client, ns, "db-0")
    first = (await client.get("v1", "pods", "db-0", namespace=ns))["metadata"]["uid"]
    await set_pod_status(client, ns, "db-0", phase="Failed", ready=False)

    async def replaced() -> bool:
        try:
            pod = await client.get("v1", "pods", "db-0", namespace=ns)
        except ApiError:
            return False
        return pod["metadata"]["uid"] != first
    await eventually(replaced, TIMEOUT, "db-0 recreated")


async def test_rolling_update_with_partition(client: Client, controller: StatefulSetController,
                                             ns: str) -> None:
    body = stateful_set("app", 3, podManagementPolicy="Parallel",
                        updateStrategy={"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": 1}})
    await client.create("apps/v1", "statefulsets", body, namespace=ns)
    await wait_pods(client, ns, {"app-0", "app-1", "app-2"}, "parallel creation")
    for i in range(3):
        await make_ready(client, ns, f"app-{i}")
    await eventually(lambda: _ready(client, ns, "app", 3), TIMEOUT, "ready")
    old_revision = (await sts_status(client, ns, "app"))["updateRevision"]

    await client.patch("apps/v1", "statefulsets", "app", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "nginx:2"}]}}}}, namespace=ns)

    async def updated(name: str) -> bool:
        try:
            pod = await client.get("v1", "pods", name, namespace=ns)
        except ApiError:
            return False
        if pod["spec"]["containers"][0]["image"] != "nginx:2":
            return False
        if (pod.get("status") or {}).get("phase") != "Running":
            await set_pod_status(client, ns, name)
        return True
    await eventually(lambda: updated("app-2"), TIMEOUT, "app-2 updated")
    await eventually(lambda: updated("app-1"), TIMEOUT, "app-1 updated")

    async def partitioned() -> bool:
        status = await sts_status(client, ns, "app")
        return status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 3
    await eventually(partitioned, TIMEOUT, "two updated")
    pod0 = await client.get("v1", "pods", "app-0", namespace=ns)
    assert pod0["spec"]["containers"][0]["image"] == "nginx:1"
    status = await sts_status(client, ns, "app")
    assert status["currentRevision"] == old_revision != status["updateRevision"]
    assert status["currentReplicas"] == 1

    # Lowering the partition finishes the rollout; the update revision becomes current.
    await client.patch("apps/v1", "statefulsets", "app", {"spec": {"updateStrategy": {
        "rollingUpdate": {"partition": 0}}}}, namespace=ns)
    await eventually(lambda: updated("app-0"), TIMEOUT, "app-0 updated")

    async def complete() -> bool:
        status = await sts_status(client, ns, "app")
        return (status.get("currentRevision") == status.get("updateRevision")
                and status.get("updatedReplicas") == 3 and status.get("readyReplicas") == 3)
    await eventually(complete, TIMEOUT, "rollout complete")
    revisions = await client.list("apps/v1", "controllerrevisions", namespace=ns)
    assert len(revisions["items"]) == 2

    # Rolling back to the first template reuses (renumbers) its revision.
    await client.patch("apps/v1", "statefulsets", "app", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "nginx:1"}]}}}}, namespace=ns)

    async def rolled_back() -> bool:
        status = await sts_status(client, ns, "app")
        return status.get("updateRevision") == old_revision
    await eventually(rolled_back, TIMEOUT, "the old revision is the update revision again")
    revisions = await client.list("apps/v1", "controllerrevisions", namespace=ns)
    numbers = {r["metadata"]["name"]: r["revision"] for r in revisions["items"]}
    assert len(numbers) == 2 and numbers[old_revision] == 3


async def _ready(client: Client, ns: str, name: str, count: int) -> bool:
    return (await sts_status(client, ns, name)).get("readyReplicas") == count


async def test_on_delete_waits_for_the_user(client: Client, controller: StatefulSetController,
                                            ns: str) -> None:
    body = stateful_set("od", 2, podManagementPolicy="Parallel",
                        updateStrategy={"type": "OnDelete"})
    await client.create("apps/v1", "statefulsets", body, namespace=ns)
    await wait_pods(client, ns, {"od-0", "od-1"})
    for i in range(2):
        await make_ready(client, ns, f"od-{i}")
    await eventually(lambda: _ready(client, ns, "od", 2), TIMEOUT, "ready")
    await client.patch("apps/v1", "statefulsets", "od", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "nginx:2"}]}}}}, namespace=ns)

    async def revision_seen() -> bool:
        status = await sts_status(client, ns, "od")
        return status.get("updateRevision") != status.get("currentRevision") \
            and status.get("observedGeneration") == 2
    await eventually(revision_seen, TIMEOUT, "new update revision")
    await asyncio.sleep(0.5)
    for i in range(2):
        pod = await client.get("v1", "pods", f"od-{i}", namespace=ns)
        assert pod["spec"]["containers"][0]["image"] == "nginx:1"

    await client.delete("v1", "pods", "od-1", namespace=ns)

    async def recreated_new() -> bool:
        try:
            pod = await client.get("v1", "pods", "od-1", namespace=ns)
        except ApiError:
            return False
        return pod["spec"]["containers"][0]["image"] == "nginx:2"
    await eventually(recreated_new, TIMEOUT, "od-1 recreated at the new revision")
    pod0 = await client.get("v1", "pods", "od-0", namespace=ns)
    assert pod0["spec"]["containers"][0]["image"] == "nginx:1"


async def test_claims_deleted_when_scaled_with_delete_policy(
        client: Client, ns: str, controller: StatefulSetController) -> None:
    gc = GarbageCollector(client)
    gc_task = asyncio.create_task(gc.run())
    try:
        body = stateful_set("kv", 2, claims=True, podManagementPolicy="Parallel",
                            persistentVolumeClaimRetentionPolicy={"whenScaled": "Delete",
                                                                  "whenDeleted": "Retain"})
        await client.create("apps/v1", "statefulsets", body, namespace=ns)
        for i in range(2):
            await make_ready(client, ns, f"kv-{i}")
        await eventually(lambda: _ready(client, ns, "kv", 2), TIMEOUT, "ready")
        await client.patch("apps/v1", "statefulsets", "kv", {"spec": {"replicas": 1}},
                           namespace=ns)
        await wait_pods(client, ns, {"kv-0"}, "kv-1 deleted")

        async def claim_gone() -> bool:
            return not await exists(client, "v1", "persistentvolumeclaims", "data-kv-1", ns)
        await eventually(claim_gone, TIMEOUT, "data-kv-1 deleted by its pod owner")
        claim = await client.get("v1", "persistentvolumeclaims", "data-kv-0", namespace=ns)
        assert not claim["metadata"].get("ownerReferences")
    finally:
        gc_task.cancel()
        await asyncio.gather(gc_task, return_exceptions=True)
