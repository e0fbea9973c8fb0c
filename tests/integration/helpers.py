"""What integration tests share: waiting for a condition, a namespace per test, and a stand-in
for the kubelet that moves pods through their phases by writing ``pods/status`` (until the
hollow nodes or a real node agent do it)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from sampan.client import ApiError, Client, retry_on_conflict
from sampan.controllers.util import now_rfc3339

TIMEOUT = 30.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT,
                     what: str = "condition") -> None:
    """Poll ``check`` every 0.1 s until it is true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.1)


async def new_namespace(client: Client, prefix: str = "it") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name}})
    return name


async def exists(client: Client, api_version: str, resource: str, name: str,
                 namespace: str | None = None) -> bool:
    try:
        await client.get(api_version, resource, name, namespace=namespace)
        return True
    except ApiError as e:
        if e.not_found:
            return False
        raise


def _condition(type_: str, status: bool, now: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if status else "False",
            "lastProbeTime": None, "lastTransitionTime": now}


async def set_pod_status(client: Client, namespace: str, name: str, *, phase: str = "Running",
                         ready: bool = True, exit_code: int | None = None,
                         node_name: str | None = None) -> dict[str, Any]:
    """Write the status a kubelet would report for a pod in ``phase`` (Ready or not; finished
    with ``exit_code`` for Succeeded/Failed)."""
    async def write() -> dict[str, Any]:
        pod = await client.get("v1", "pods", name, namespace=namespace)
        now = now_rfc3339()
        containers = pod["spec"].get("containers") or []
        finished = phase in ("Succeeded", "Failed")
        running = phase == "Running"
        statuses = []
        for c in containers:
            if finished:
                state = {"terminated": {"exitCode": exit_code if exit_code is not None else
                                        (0 if phase == "Succeeded" else 1),
                                        "reason": "Completed" if phase == "Succeeded" else "Error",
                                        "startedAt": now, "finishedAt": now}}
            elif running:
                state = {"running": {"startedAt": now}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append({"name": c["name"], "image": c.get("image", ""), "imageID": "",
                             "ready": ready and running, "restartCount": 0,
                             "started": running, "state": state})
        is_ready = ready and running
        pod["status"] = {
            "phase": phase,
            "conditions": [_condition("PodScheduled", True, now),
                           _condition("Initialized", True, now),
                           _condition("ContainersReady", is_ready, now),
                           _condition("Ready", is_ready, now)],
            "containerStatuses": statuses,
            "hostIP": "10.99.0.1", "podIP": "10.42.0.10", "podIPs": [{"ip": "10.42.0.10"}],
            "startTime": now,
        }
        if node_name and not pod["spec"].get("nodeName"):
            await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Binding",
                                               "metadata": {"name": name},
                                               "target": {"kind": "Node", "name": node_name}},
                                namespace=namespace, name=name, subresource="binding")
            pod = {**pod, "metadata": {**pod["metadata"], "resourceVersion": None}}
        return await client.update("v1", "pods", pod, namespace=namespace, subresource="status")
    return await retry_on_conflict(write)


@contextlib.asynccontextmanager
async def running_controllers(client: Client, controllers: Sequence[Any]) -> AsyncIterator[Any]:
    """A ControllerManager running ``controllers`` (without leader election) for the block."""
    from sampan.controllers.manager import ControllerManager

    manager = ControllerManager(client, tuple(controllers), leader_election=False)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        await asyncio.wait_for(manager.leading.wait(), 30)
        yield manager
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
