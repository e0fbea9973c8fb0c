"""The namespace controller, the garbage collector and the controller manager against a real
Sampan API server (the ``kubeconfig`` fixture of conftest.py starts one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers import ControllerManager

FAST_ELECTION = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
TIMEOUT = 30.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT,
                     what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.1)


class RunningManager:
    """A controller manager running in this event loop until ``stop()``."""

    def __init__(self, client: Client, lease_name: str, identity: str):
        self.manager = ControllerManager(client, identity=identity, lease_name=lease_name,
                                         **FAST_ELECTION)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.manager.run(self._stop))

    @property
    def leading(self) -> bool:
        return self.manager.leading.is_set()

    async def wait_leading(self, timeout: float = TIMEOUT) -> None:
        await asyncio.wait_for(self.manager.leading.wait(), timeout)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 15)


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
def lease_name() -> str:
    return f"cm-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def manager(client: Client, lease_name: str) -> AsyncIterator[RunningManager]:
    running = RunningManager(client, lease_name, "manager-a")
    await running.wait_leading()
    yield running
    await running.stop()


@pytest.fixture
async def namespace(client: Client) -> str:
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    await client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name}})
    return name


def configmap(name: str, owner: dict[str, Any] | None = None, *, block: bool = False,
              finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": owner.get("kind", "ConfigMap"),
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"],
                                    "blockOwnerDeletion": block}]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


async def exists(client: Client, resource: str, name: str, namespace: str | None = None) -> bool:
    try:
        await client.get("v1", resource, name, namespace=namespace)
        return True
    except ApiError as e:
        if e.not_found:
            return False
        raise


async def gone(client: Client, resource: str, name: str, namespace: str | None = None) -> None:
    async def check() -> bool:
        return not await exists(client, resource, name, namespace)
    await eventually(check, what=f"{resource} {namespace}/{name} gone")


# -- namespace controller --------------------------------------------------------------------


async def test_deleting_a_namespace_removes_its_content_and_then_the_namespace(
        client: Client, manager: RunningManager, namespace: str) -> None:
    for i in range(5):
        await client.create("v1", "configmaps", configmap(f"cm-{i}"), namespace=namespace)
    await client.create("v1", "secrets", {"apiVersion": "v1", "kind": "Secret",
                                          "metadata": {"name": "s"}, "stringData": {"a": "b"}},
                        namespace=namespace)
    await client.delete("v1", "namespaces", namespace)
    await gone(client, "namespaces", namespace)
    assert (await client.list("v1", "configmaps", namespace=namespace))["items"] == []
    assert (await client.list("v1", "secrets", namespace=namespace))["items"] == []


async def test_a_namespace_waits_for_content_finalizers_and_reports_them(
        client: Client, manager: RunningManager, namespace: str) -> None:
    await client.create("v1", "configmaps", configmap("held", finalizers=["example.com/hold"]),
                        namespace=namespace)
    await client.delete("v1", "namespaces", namespace)

    async def reports_finalizer() -> bool:
        ns = await client.get("v1", "namespaces", namespace)
        conditions = {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}
        remaining = conditions.get("NamespaceFinalizersRemaining", {})
        return remaining.get("status") == "True" and \
            "example.com/hold in 1 resource instances" in remaining.get("message", "")

    await eventually(reports_finalizer, what="NamespaceFinalizersRemaining condition")
    ns = await client.get("v1", "namespaces", namespace)
    conditions = {c["type"]: c for c in ns["status"]["conditions"]}
    assert ns["status"]["phase"] == "Terminating"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert conditions["NamespaceContentRemaining"]["status"] == "True"
    assert "configmaps. has 1 resource instances" in conditions["NamespaceContentRemaining"]["message"]
    assert conditions["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    assert conditions["NamespaceDeletionContentFailure"]["status"] == "False"

    await client.patch("v1", "configmaps", "held", {"metadata": {"finalizers": None}},
                       namespace=namespace)
    await gone(client, "namespaces", namespace)


# -- garbage collector -----------------------------------------------------------------------


async def test_background_deletion_collects_dependents(
        client: Client, manager: RunningManager, namespace: str) -> None:
    owner = await client.create("v1", "configmaps", configmap("owner"), namespace=namespace)
    await client.create("v1", "configmaps", configmap("child", owner), namespace=namespace)
    secret_child = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "secret-child", "ownerReferences": configmap("x", owner)["metadata"]["ownerReferences"]}}
    await client.create("v1", "secrets", secret_child, namespace=namespace)
    await asyncio.sleep(0.5)
    assert await exists(client, "configmaps", "child", namespace)  # owner still there

    await client.delete("v1", "configmaps", "owner", namespace=namespace,
                        propagation_policy="Background")
    await gone(client, "configmaps", "child", namespace)
    await gone(client, "secrets", "secret-child", namespace)


async def test_a_dependent_of_an_owner_that_never_existed_is_collected(
        client: Client, manager: RunningManager, namespace: str) -> None:
    phantom = {"metadata": {"name": "phantom", "uid": str(uuid.uuid4())}}
    await client.create("v1", "configmaps", configmap("orphaned", phantom), namespace=namespace)
    await gone(client, "configmaps", "orphaned", namespace)


async def test_a_dependent_whose_owner_name_was_reused_is_collected(
        client: Client, manager: RunningManager, namespace: str) -> None:
    """The owner is identified by uid: a new object with the old name does not count."""
    stale = {"metadata": {"name": "reused", "uid": str(uuid.uuid4())}}
    await client.create("v1", "configmaps", configmap("reused"), namespace=namespace)
    await client.create("v1", "configmaps", configmap("child", stale), namespace=namespace)
    await gone(client, "configmaps", "child", namespace)
    assert await exists(client, "configmaps", "reused", namespace)


async def test_foreground_deletion_removes_dependents_before_the_owner(
        client: Client, manager: RunningManager, namespace: str) -> None:
    owner = await client.create("v1", "configmaps", configmap("owner"), namespace=namespace)
    await client.create("v1", "configmaps", configmap("child", owner, block=True),
                        namespace=namespace)
    await client.create("v1", "configmaps", configmap("held", owner, block=True,
                                                      finalizers=["example.com/hold"]),
                        namespace=namespace)
    listed = await client.list("v1", "configmaps", namespace=namespace)
    deletions: list[str] = []

    async def record() -> None:
        async with client.watch("v1", "configmaps", namespace=namespace,
                                resource_version=listed["metadata"]["resourceVersion"],
                                timeout_seconds=60) as events:
            async for kind, obj in events:
                if kind == "DELETED":
                    deletions.append(obj["metadata"]["name"])

    watcher = asyncio.create_task(record())
    try:
        await client.delete("v1", "configmaps", "owner", namespace=namespace,
                            propagation_policy="Foreground")
        await gone(client, "configmaps", "child", namespace)
        # A blocking dependent held by its own finalizer keeps the owner.
        await asyncio.sleep(1.0)
        waiting = await client.get("v1", "configmaps", "owner", namespace=namespace)
        assert waiting["metadata"]["deletionTimestamp"]
        assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
        held = await client.get("v1", "configmaps", "held", namespace=namespace)
        assert held["metadata"]["deletionTimestamp"]

        await client.patch("v1", "configmaps", "held", {"metadata": {"finalizers": None}},
                           namespace=namespace)
        await gone(client, "configmaps", "owner", namespace)
        await eventually(lambda: _true(len(deletions) == 3), what="three deletions watched")
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert deletions[-1] == "owner"
    assert sorted(deletions[:2]) == ["child", "held"]


async def _true(value: bool) -> bool:
    return value


async def test_orphan_deletion_keeps_dependents_and_strips_the_reference(
        client: Client, manager: RunningManager, namespace: str) -> None:
    owner = await client.create("v1", "configmaps", configmap("owner"), namespace=namespace)
    other = await client.create("v1", "configmaps", configmap("other"), namespace=namespace)
    child = configmap("child", owner, block=True)
    child["metadata"]["ownerReferences"] += configmap("x", other)["metadata"]["ownerReferences"]
    await client.create("v1", "configmaps", child, namespace=namespace)

    await client.delete("v1", "configmaps", "owner", namespace=namespace,
                        propagation_policy="Orphan")
    await gone(client, "configmaps", "owner", namespace)
    kept = await client.get("v1", "configmaps", "child", namespace=namespace)
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["other"]
    await asyncio.sleep(1.0)
    assert await exists(client, "configmaps", "child", namespace)


# -- the controller manager ------------------------------------------------------------------


async def test_work_done_while_the_manager_was_down_is_caught_up_after_restart(
        client: Client, lease_name: str, namespace: str) -> None:
    first = RunningManager(client, lease_name, "restart-1")
    await first.wait_leading()
    owner = await client.create("v1", "configmaps", configmap("owner"), namespace=namespace)
    await client.create("v1", "configmaps", configmap("child", owner), namespace=namespace)
    doomed = f"{namespace}-doomed"
    await client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": doomed}})
    await client.create("v1", "configmaps", configmap("content"), namespace=doomed)
    await first.stop()

    await client.delete("v1", "configmaps", "owner", namespace=namespace)
    await client.delete("v1", "namespaces", doomed)
    await asyncio.sleep(1.0)
    assert await exists(client, "configmaps", "child", namespace)  # nobody collects it
    assert await exists(client, "namespaces", doomed)

    second = RunningManager(client, lease_name, "restart-2")
    try:
        await second.wait_leading()
        await gone(client, "configmaps", "child", namespace)
        await gone(client, "namespaces", doomed)
    finally:
        await second.stop()


async def test_of_two_managers_only_one_leads_and_the_other_takes_over(
        client: Client, lease_name: str) -> None:
    a = RunningManager(client, lease_name, "manager-a")
    b = RunningManager(client, lease_name, "manager-b")
    try:
        await eventually(lambda: _true(a.leading or b.leading), what="a leader")
        for _ in range(30):  # longer than a lease duration
            assert not (a.leading and b.leading)
            await asyncio.sleep(0.1)
        leader, follower = (a, b) if a.leading else (b, a)
        assert not follower.leading
        lease = await client.get("coordination.k8s.io/v1", "leases", lease_name,
                                 namespace="kube-system")
        assert lease["spec"]["holderIdentity"] == leader.manager.identity

        await leader.stop()  # releases the lease
        await follower.wait_leading(timeout=10)
        lease = await client.get("coordination.k8s.io/v1", "leases", lease_name,
                                 namespace="kube-system")
        assert lease["spec"]["holderIdentity"] == follower.manager.identity
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        await a.stop()
        await b.stop()
