"""Admission plugins that shape pods: DefaultTolerationSeconds and Priority."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from tests.integration.helpers import new_namespace


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


def pod(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_pods_tolerate_unready_and_unreachable_nodes_for_five_minutes(client: Client) -> None:
    ns = await new_namespace(client, "adm")
    created = await client.create("v1", "pods", pod("p"), namespace=ns)
    assert {(t["key"], t["effect"], t["tolerationSeconds"]) for t in created["spec"]["tolerations"]} == {
        ("node.kubernetes.io/not-ready", "NoExecute", 300),
        ("node.kubernetes.io/unreachable", "NoExecute", 300)}
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 5}
    created = await client.create("v1", "pods", pod("q", tolerations=[own]), namespace=ns)
    unreachable = [t for t in created["spec"]["tolerations"]
                   if t["key"] == "node.kubernetes.io/unreachable"]
    assert unreachable == [own]


async def test_priority_class_name_becomes_the_pods_priority(client: Client) -> None:
    ns = await new_namespace(client, "adm")
    await client.create("scheduling.k8s.io/v1", "priorityclasses", {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": f"high-{ns}"}, "value": 1000, "preemptionPolicy": "Never"})
    created = await client.create("v1", "pods", pod("p", priorityClassName=f"high-{ns}"),
                                  namespace=ns)
    assert created["spec"]["priority"] == 1000
    assert created["spec"]["preemptionPolicy"] == "Never"
    plain = await client.create("v1", "pods", pod("plain"), namespace=ns)
    assert plain["spec"]["priority"] == 0
    critical = await client.create("v1", "pods", pod("c", priorityClassName="system-cluster-critical"),
                                   namespace=ns)
    assert critical["spec"]["priority"] == 2000000000

    with pytest.raises(ApiError) as missing:
        await client.create("v1", "pods", pod("m", priorityClassName="nope"), namespace=ns)
    assert missing.value.code == 403
    assert "no PriorityClass with name nope was found" in missing.value.message
    with pytest.raises(ApiError) as mismatch:
        await client.create("v1", "pods", pod("x", priorityClassName=f"high-{ns}", priority=7),
                            namespace=ns)
    assert mismatch.value.code == 403
    assert "must not be provided in pod spec" in mismatch.value.message


async def test_creating_through_put_or_server_side_apply_passes_admission(client: Client) -> None:
    ns = await new_namespace(client, "adm")
    applied = await client.apply("v1", "pods", {**pod("ssa"), "metadata": {"name": "ssa"}},
                                 namespace=ns, field_manager="test")
    assert applied["spec"]["priority"] == 0
    assert applied["spec"]["serviceAccountName"] == "default"
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in applied["spec"]["tolerations"])
    await client.delete("v1", "namespaces", ns)
    with pytest.raises(ApiError) as refused:  # namespace lifecycle: no new content
        await client.apply("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": "late"}},
                           namespace=ns, field_manager="test")
    assert refused.value.code in (403, 404)
