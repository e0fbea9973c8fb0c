"""The Deployment controller with the ReplicaSet controller against a real API server, driven
by real ``kubectl rollout status|history|undo|restart|pause|resume``. A small loop stands in
for the kubelet: it marks every new pod of the test's namespace Running and Ready."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.deployment import DeploymentController
from sampan.controllers.manager import ControllerManager
from sampan.controllers.replicaset import ReplicaSetController
from tests.cluster import KUBECTL
from tests.integration.helpers import eventually, new_namespace, set_pod_status

TIMEOUT = 60.0
REVISION = "deployment.kubernetes.io/revision"


class Kubelet:
    """Marks the pods of one namespace Running and Ready (those ``ready`` accepts)."""

    def __init__(self, client: Client, namespace: str,
                 ready: Callable[[dict[str, Any]], bool] = lambda pod: True):
        self.client, self.namespace, self.ready = client, namespace, ready
        self._done: set[str] = set()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                pods = await self.client.list("v1", "pods", namespace=self.namespace)
                for pod in pods.get("items") or []:
                    meta = pod["metadata"]
                    if meta["uid"] in self._done or meta.get("deletionTimestamp") \
                            or not self.ready(pod):
                        continue
                    try:
                        await set_pod_status(self.client, self.namespace, meta["name"])
                    except ApiError as e:
                        if not e.not_found:
                            raise
                    self._done.add(meta["uid"])
            except ApiError:
                pass
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        manager = ControllerManager(c, [ReplicaSetController, DeploymentController],
                                    leader_election=False)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        try:
            yield c
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def kubectl(kubeconfig: str, *args: str, check: bool = True) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": kubeconfig})
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    text = out.decode()
    if check:
        assert process.returncode == 0, f"kubectl {' '.join(args)} failed:\n{text}"
    return process.returncode or 0, text


def deployment(name: str, image: str = "nginx:1.25", replicas: int = 3,
               **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": "create"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": image}]}},
                 **spec},
    }


async def get_deployment(client: Client, namespace: str, name: str) -> dict[str, Any]:
    return await client.get("apps/v1", "deployments", name, namespace=namespace)


async def replica_sets(client: Client, namespace: str) -> dict[str, dict[str, Any]]:
    listed = await client.list("apps/v1", "replicasets", namespace=namespace)
    return {rs["metadata"]["name"]: rs for rs in listed.get("items") or []}


def condition(d: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (d.get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return c
    return {}


def image_of(obj: dict[str, Any]) -> str:
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


async def wait_rolled_out(client: Client, namespace: str, name: str,
                          image: str | None = None) -> dict[str, Any]:
    """Wait until every replica runs the Deployment's current template and is available."""
    latest: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal latest
        latest = await get_deployment(client, namespace, name)
        st, want = latest.get("status") or {}, latest["spec"]["replicas"]
        return (st.get("observedGeneration", 0) >= latest["metadata"]["generation"]
                and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
                and st.get("availableReplicas", 0) == want
                and (image is None or image_of(latest) == image))
    await eventually(done, TIMEOUT, f"deployment {name} rolled out")
    return latest


async def events_of(client: Client, namespace: str, name: str) -> list[str]:
    listed = await client.list("v1", "events", namespace=namespace)
    return [e["message"] for e in listed.get("items") or []
            if e["involvedObject"]["name"] == name and e["reason"] == "ScalingReplicaSet"
            and e["source"]["component"] == "deployment-controller"]


async def test_deployment_becomes_available(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "deploy")
    kubelet = Kubelet(client, ns)
    try:
        await client.create("apps/v1", "deployments", deployment("web"), namespace=ns)
        _, out = await kubectl(kubeconfig, "rollout", "status", "deployment/web", "-n", ns,
                               "--timeout=60s")
        assert 'deployment "web" successfully rolled out' in out
        d = await wait_rolled_out(client, ns, "web")
        st = d["status"]
        assert st["readyReplicas"] == 3 and "unavailableReplicas" not in st
        assert d["metadata"]["annotations"][REVISION] == "1"
        assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
        assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
        (rs,) = (await replica_sets(client, ns)).values()
        pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{pod_hash}"
        assert rs["spec"]["selector"]["matchLabels"]["pod-template-hash"] == pod_hash
        assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        annotations = rs["metadata"]["annotations"]
        assert annotations[REVISION] == "1"
        assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
        assert annotations["deployment.kubernetes.io/max-replicas"] == "4"
        assert annotations["kubernetes.io/change-cause"] == "create"
        message = f"Scaled up replica set {rs['metadata']['name']} from 0 to 3"

        async def scaled_event() -> bool:
            return message in await events_of(client, ns, "web")
        await eventually(scaled_event, TIMEOUT, "ScalingReplicaSet event")
        _, described = await kubectl(kubeconfig, "describe", "deployment/web", "-n", ns)
        assert f"NewReplicaSet:   {rs['metadata']['name']} (3/3 replicas created)" in described
        assert message in described
    finally:
        await kubelet.stop()


async def test_rolling_update_history_and_undo(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "deploy")
    kubelet = Kubelet(client, ns)
    try:
        await client.create("apps/v1", "deployments",
                            deployment("web", replicas=4, revisionHistoryLimit=5), namespace=ns)
        await wait_rolled_out(client, ns, "web")
        (first,) = await replica_sets(client, ns)
        await client.patch("apps/v1", "deployments", "web", {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "to 1.26"}},
            "spec": {"template": {"spec": {"containers": [{"name": "web",
                                                             "image": "nginx:1.26"}]}}}},
            namespace=ns, patch_type="strategic")
        await kubectl(kubeconfig, "rollout", "status", "deployment/web", "-n", ns,
                      "--timeout=60s")
        d = await wait_rolled_out(client, ns, "web", "nginx:1.26")
        assert d["metadata"]["annotations"][REVISION] == "2"
        rss = await replica_sets(client, ns)
        assert len(rss) == 2 and rss[first]["spec"]["replicas"] == 0
        (second,) = set(rss) - {first}
        assert rss[second]["metadata"]["annotations"][REVISION] == "2"
        assert rss[second]["spec"]["replicas"] == 4

        _, history = await kubectl(kubeconfig, "rollout", "history", "deployment/web", "-n", ns)
        lines = [line.split() for line in history.splitlines()]
        assert ["1", "create"] in lines and ["2", "to", "1.26"] in lines
        _, detail = await kubectl(kubeconfig, "rollout", "history", "deployment/web", "-n", ns,
                                  "--revision=1")
        assert "nginx:1.25" in detail

        _, out = await kubectl(kubeconfig, "rollout", "undo", "deployment/web", "-n", ns)
        assert "rolled back" in out
        await kubectl(kubeconfig, "rollout", "status", "deployment/web", "-n", ns,
                      "--timeout=60s")
        d = await wait_rolled_out(client, ns, "web", "nginx:1.25")

        async def revision_3() -> bool:
            current = await get_deployment(client, ns, "web")
            return current["metadata"]["annotations"].get(REVISION) == "3"
        await eventually(revision_3, TIMEOUT, "deployment revision 3")
        rss = await replica_sets(client, ns)
        assert set(rss) == {first, second}, "the old ReplicaSet is reused"
        annotations = rss[first]["metadata"]["annotations"]
        assert annotations[REVISION] == "3"
        assert annotations["deployment.kubernetes.io/revision-history"] == "1"
        assert annotations["kubernetes.io/change-cause"] == "create"
        assert rss[first]["spec"]["replicas"] == 4 and rss[second]["spec"]["replicas"] == 0
        messages = await events_of(client, ns, "web")
        assert f"Scaled down replica set {second} from 4 to 0" in " ".join(messages) or any(
            m.startswith(f"Scaled down replica set {second}") for m in messages)
    finally:
        await kubelet.stop()


async def test_pause_resume_and_restart(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "deploy")
    kubelet = Kubelet(client, ns)
    try:
        await client.create("apps/v1", "deployments", deployment("web", replicas=2),
                            namespace=ns)
        await wait_rolled_out(client, ns, "web")
        await kubectl(kubeconfig, "rollout", "pause", "deployment/web", "-n", ns)

        async def paused() -> bool:
            d = await get_deployment(client, ns, "web")
            return condition(d, "Progressing").get("reason") == "DeploymentPaused"
        await eventually(paused, TIMEOUT, "DeploymentPaused condition")
        await kubectl(kubeconfig, "set", "image", "deployment/web", "web=nginx:1.27", "-n", ns)
        await kubectl(kubeconfig, "scale", "deployment/web", "--replicas=3", "-n", ns)

        async def scaled_while_paused() -> bool:
            d = await get_deployment(client, ns, "web")
            st = d.get("status") or {}
            return (st.get("observedGeneration") == d["metadata"]["generation"]
                    and st.get("replicas") == 3 and st.get("availableReplicas") == 3)
        await eventually(scaled_while_paused, TIMEOUT, "scaled while paused")
        (only,) = (await replica_sets(client, ns)).values()  # no rollout while paused
        assert image_of(only) == "nginx:1.25" and only["spec"]["replicas"] == 3
        d = await get_deployment(client, ns, "web")
        assert "updatedReplicas" not in d["status"]
        assert condition(d, "Progressing")["status"] == "Unknown"

        await kubectl(kubeconfig, "rollout", "resume", "deployment/web", "-n", ns)
        await kubectl(kubeconfig, "rollout", "status", "deployment/web", "-n", ns,
                      "--timeout=60s")
        d = await wait_rolled_out(client, ns, "web", "nginx:1.27")
        assert len(await replica_sets(client, ns)) == 2

        await kubectl(kubeconfig, "rollout", "restart", "deployment/web", "-n", ns)
        await kubectl(kubeconfig, "rollout", "status", "deployment/web", "-n", ns,
                      "--timeout=60s")
        d = await wait_rolled_out(client, ns, "web")
        assert "kubectl.kubernetes.io/restartedAt" in \
            d["spec"]["template"]["metadata"]["annotations"]
        rss = await replica_sets(client, ns)
        assert len(rss) == 3
        assert sorted(rs["spec"]["replicas"] for rs in rss.values()) == [0, 0, 3]
    finally:
        await kubelet.stop()


async def test_recreate_scales_old_to_zero_first(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "deploy")
    kubelet = Kubelet(client, ns)
    try:
        await client.create("apps/v1", "deployments",
                            deployment("db", replicas=2, strategy={"type": "Recreate"}),
                            namespace=ns)
        await wait_rolled_out(client, ns, "db")
        (first,) = await replica_sets(client, ns)
        await kubectl(kubeconfig, "set", "image", "deployment/db", "web=nginx:1.26", "-n", ns)
        await kubectl(kubeconfig, "rollout", "status", "deployment/db", "-n", ns,
                      "--timeout=60s")
        await wait_rolled_out(client, ns, "db", "nginx:1.26")
        rss = await replica_sets(client, ns)
        (second,) = set(rss) - {first}
        assert rss[first]["spec"]["replicas"] == 0 and rss[second]["spec"]["replicas"] == 2

        async def ordered_events() -> bool:
            messages = await events_of(client, ns, "db")
            down = f"Scaled down replica set {first} from 2 to 0"
            up = f"Scaled up replica set {second} from 0 to 2"
            return down in messages and up in messages
        await eventually(ordered_events, TIMEOUT, "Recreate events")
    finally:
        await kubelet.stop()


async def test_progress_deadline_exceeded(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "deploy")
    kubelet = Kubelet(client, ns, ready=lambda pod: False)  # pods never become ready
    try:
        await client.create("apps/v1", "deployments",
                            deployment("stuck", replicas=1, progressDeadlineSeconds=2),
                            namespace=ns)

        async def timed_out() -> bool:
            d = await get_deployment(client, ns, "stuck")
            return condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded"
        await eventually(timed_out, TIMEOUT, "ProgressDeadlineExceeded")
        d = await get_deployment(client, ns, "stuck")
        progressing = condition(d, "Progressing")
        assert progressing["status"] == "False"
        assert progressing["message"].endswith("has timed out progressing.")
        assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
        code, out = await kubectl(kubeconfig, "rollout", "status", "deployment/stuck", "-n", ns,
                                  "--timeout=30s", check=False)
        assert code != 0 and "exceeded its progress deadline" in out
    finally:
        await kubelet.stop()
