"""LimitRanger and ResourceQuota admission against a real API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.manager import ControllerManager
from sampan.controllers.resourcequota import ResourceQuotaController
from tests.integration.helpers import eventually, exists, new_namespace


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


def pod(name: str, requests: dict[str, str] | None = None,
        limits: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}}


async def create_fresh(client: Client, resource: str, body: dict[str, Any], ns: str) -> dict:
    """Create, then read back: a read waits until the server's caches hold the write, so the
    next request's admission sees it."""
    created = await client.create("v1", resource, body, namespace=ns)
    return await client.get("v1", resource, created["metadata"]["name"], namespace=ns)


async def quota_with_status(client: Client, ns: str, name: str, hard: dict[str, str],
                            used: dict[str, str]) -> None:
    """A quota whose status the controller would have computed, written by hand."""
    q = await client.create("v1", "resourcequotas", {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
        "spec": {"hard": hard}}, namespace=ns)
    q["status"] = {"hard": hard, "used": used}
    await client.update("v1", "resourcequotas", q, namespace=ns, subresource="status")
    await client.get("v1", "resourcequotas", name, namespace=ns)


async def refused(create) -> ApiError:
    with pytest.raises(ApiError) as error:
        await create
    assert error.value.code == 403 and error.value.reason == "Forbidden"
    return error.value


async def used(client: Client, ns: str, name: str) -> dict[str, str]:
    q = await client.get("v1", "resourcequotas", name, namespace=ns)
    return (q.get("status") or {}).get("used") or {}


async def test_limit_range_defaults_and_maximum(client: Client) -> None:
    ns = await new_namespace(client, "lr")
    await create_fresh(client, "limitranges", {
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"},
                             "default": {"cpu": "500m", "memory": "128Mi"},
                             "defaultRequest": {"cpu": "100m"}}]}}, ns)
    created = await client.create("v1", "pods", pod("plain"), namespace=ns)
    resources = created["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "128Mi"},
                         "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert created["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; "
        "cpu, memory limit for container app")
    limited = await client.create("v1", "pods", pod("limited", limits={"cpu": "1"}), namespace=ns)
    assert limited["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"

    error = await refused(client.create("v1", "pods", pod("big", limits={"cpu": "4"}),
                                        namespace=ns))
    assert error.message == 'pods "big" is forbidden: maximum cpu usage per Container is 2, ' \
                            'but limit is 4'
    assert not await exists(client, "v1", "pods", "big", ns)


async def test_limit_range_bounds_claim_storage(client: Client) -> None:
    ns = await new_namespace(client, "lr")
    await create_fresh(client, "limitranges", {
        "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "storage"},
        "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}]}}, ns)

    def claim(name: str, size: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": size}}}}

    await client.create("v1", "persistentvolumeclaims", claim("ok", "1Gi"), namespace=ns)
    error = await refused(client.create("v1", "persistentvolumeclaims", claim("big", "5Gi"),
                                        namespace=ns))
    assert error.message == ('persistentvolumeclaims "big" is forbidden: maximum storage usage '
                             'per PersistentVolumeClaim is 2Gi, but request is 5Gi')


async def test_pod_count_quota_refuses_the_third_pod(client: Client) -> None:
    ns = await new_namespace(client, "rq")
    await quota_with_status(client, ns, "pods", {"pods": "2"}, {"pods": "0"})
    await client.create("v1", "pods", pod("one"), namespace=ns)
    await client.create("v1", "pods", pod("two"), namespace=ns)
    assert await used(client, ns, "pods") == {"pods": "2"}
    error = await refused(client.create("v1", "pods", pod("three"), namespace=ns))
    assert error.message == ('pods "three" is forbidden: exceeded quota: pods, requested: pods=1, '
                             'used: pods=2, limited: pods=2')
    # a dry run is checked but never charged
    await quota_with_status(client, ns, "more", {"count/configmaps": "1"},
                            {"count/configmaps": "0"})
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    await client.create("v1", "configmaps", cm, namespace=ns, dry_run=True)
    assert await used(client, ns, "more") == {"count/configmaps": "0"}


async def test_concurrent_creates_cannot_overshoot_the_quota(client: Client) -> None:
    ns = await new_namespace(client, "rq")
    await quota_with_status(client, ns, "pods", {"pods": "3"}, {"pods": "0"})
    results = await asyncio.gather(*(client.create("v1", "pods", pod(f"p{i}"), namespace=ns)
                                     for i in range(8)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, dict)]
    assert len(admitted) == 3
    assert all(isinstance(r, ApiError) and r.code == 403 for r in results if r not in admitted)
    assert await used(client, ns, "pods") == {"pods": "3"}


async def test_cpu_quota_refuses_over_limit_pods_and_pods_without_requests(client: Client) -> None:
    ns = await new_namespace(client, "rq")
    await quota_with_status(client, ns, "compute", {"requests.cpu": "2", "limits.cpu": "4"},
                            {"requests.cpu": "0", "limits.cpu": "0"})
    await client.create("v1", "pods", pod("small", {"cpu": "1"}, {"cpu": "1"}), namespace=ns)
    assert await used(client, ns, "compute") == {"requests.cpu": "1", "limits.cpu": "1"}

    error = await refused(client.create("v1", "pods", pod("big", {"cpu": "2"}, {"cpu": "2"}),
                                        namespace=ns))
    assert error.message == ('pods "big" is forbidden: exceeded quota: compute, requested: '
                             'requests.cpu=2, used: requests.cpu=1, limited: requests.cpu=2')
    error = await refused(client.create("v1", "pods", pod("bare"), namespace=ns))
    assert error.message == ('pods "bare" is forbidden: failed quota: compute: must specify '
                             'limits.cpu for: app; requests.cpu for: app')
    assert await used(client, ns, "compute") == {"requests.cpu": "1", "limits.cpu": "1"}


async def test_quota_with_unknown_usage_refuses(client: Client) -> None:
    ns = await new_namespace(client, "rq")
    await quota_with_status(client, ns, "half", {"pods": "5", "services": "1"}, {"services": "0"})
    error = await refused(client.create("v1", "pods", pod("p"), namespace=ns))
    assert error.message == 'pods "p" is forbidden: status unknown for quota: half, resources: pods'


async def test_deleting_frees_quota_once_the_controller_recomputes(client: Client) -> None:
    ns = await new_namespace(client, "rq")
    manager = ControllerManager(client, [ResourceQuotaController], leader_election=False)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        await client.create("v1", "resourcequotas", {
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
            "spec": {"hard": {"pods": "1", "requests.cpu": "1"}}}, namespace=ns)

        async def synced() -> bool:
            return await used(client, ns, "q") == {"pods": "0", "requests.cpu": "0"}
        await eventually(synced, what="quota usage computed")
        await client.create("v1", "pods", pod("first", {"cpu": "500m"}), namespace=ns)
        error = await refused(client.create("v1", "pods", pod("second", {"cpu": "500m"}),
                                            namespace=ns))
        assert "exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1" \
            in error.message

        await client.delete("v1", "pods", "first", namespace=ns, grace_period_seconds=0)
        await eventually(synced, what="quota usage released by the deletion")
        await client.create("v1", "pods", pod("second", {"cpu": "500m"}), namespace=ns)
        await eventually(lambda: _equals(used(client, ns, "q"), {"pods": "1",
                                                                  "requests.cpu": "500m"}),
                         what="quota usage of the new pod")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _equals(value, expected) -> bool:
    return await value == expected
