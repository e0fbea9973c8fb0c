"""The pods/eviction subresource honours PodDisruptionBudgets, as ``kubectl drain`` relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from tests.integration.helpers import exists, new_namespace, set_pod_status


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


async def evict(client: Client, namespace: str, name: str) -> dict:
    return await client.create("v1", "pods", {
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
        "deleteOptions": {"gracePeriodSeconds": 0}},
        namespace=namespace, name=name, subresource="eviction")


async def running_pod(client: Client, namespace: str, name: str) -> None:
    await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=namespace)
    await set_pod_status(client, namespace, name, phase="Running", ready=True)


async def budget(client: Client, namespace: str, allowed: int, healthy: int, desired: int) -> None:
    pdb = await client.create("policy/v1", "poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": "db"}}}},
        namespace=namespace)
    pdb["status"] = {"observedGeneration": pdb["metadata"]["generation"],
                     "disruptionsAllowed": allowed, "currentHealthy": healthy,
                     "desiredHealthy": desired, "expectedPods": healthy}
    await client.update("policy/v1", "poddisruptionbudgets", pdb, subresource="status")


async def test_eviction_is_refused_when_the_budget_allows_no_disruption(client: Client) -> None:
    ns = await new_namespace(client, "evict")
    await running_pod(client, ns, "db-0")
    await budget(client, ns, allowed=0, healthy=1, desired=1)
    with pytest.raises(ApiError) as refused:
        await evict(client, ns, "db-0")
    assert refused.value.code == 429
    assert refused.value.message == \
        "Cannot evict pod as it would violate the pod's disruption budget."
    assert refused.value.details["causes"] == [{
        "reason": "DisruptionBudget",
        "message": "The disruption budget db needs 1 healthy pods and has 1 currently"}]
    assert await exists(client, "v1", "pods", "db-0", ns)


async def test_eviction_within_the_budget_deletes_the_pod_and_charges_it(client: Client) -> None:
    ns = await new_namespace(client, "evict")
    await running_pod(client, ns, "db-0")
    await running_pod(client, ns, "db-1")
    await budget(client, ns, allowed=1, healthy=2, desired=1)
    answer = await evict(client, ns, "db-0")
    assert answer["status"] == "Success"
    assert not await exists(client, "v1", "pods", "db-0", ns)
    pdb = await client.get("policy/v1", "poddisruptionbudgets", "db", namespace=ns)
    assert pdb["status"]["disruptionsAllowed"] == 0
    assert list(pdb["status"]["disruptedPods"]) == ["db-0"]
    with pytest.raises(ApiError) as refused:
        await evict(client, ns, "db-1")
    assert refused.value.code == 429


async def test_pods_without_a_budget_or_not_running_are_simply_deleted(client: Client) -> None:
    ns = await new_namespace(client, "evict")
    await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=ns)
    await budget(client, ns, allowed=0, healthy=0, desired=1)
    await evict(client, ns, "pending")
    assert not await exists(client, "v1", "pods", "pending", ns)
    with pytest.raises(ApiError) as missing:
        await evict(client, ns, "nope")
    assert missing.value.code == 404
