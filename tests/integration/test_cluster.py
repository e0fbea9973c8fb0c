"""The whole control plane on hollow nodes, as separate processes like a real cluster:
``sampan server``, ``sampan scheduler``, ``sampan controller-manager`` and two
``sampan hollow-nodes`` processes, driven with real kubectl and the Python client.

What it shows: workloads converge (Deployment, StatefulSet, DaemonSet, Job, Service
endpoints), a rollout survives the controller manager being killed mid-way, ``kubectl rollout
status|history|undo`` work, a pod that fits nowhere is reported like upstream, and the pods
of a node that dies are recreated elsewhere after their toleration.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sampan.client import ApiError, Client, load_kubeconfig
from tests.cluster import KUBECTL, Server, start_server
from tests.integration.helpers import eventually, new_namespace

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("cluster"))
    try:
        server.start_component("hollow-nodes", "--count", "2", "--prefix", "hn-a")
        server.start_component("hollow-nodes", "--count", "1", "--prefix", "hn-b")
        server.start_component("scheduler")
        server.start_controllers("--node-monitor-grace-period", "6")
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(cluster: Server) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(cluster.kubeconfig)) as c:
        yield c


def kubectl(cluster: Server, *args: str, timeout: float = TIMEOUT) -> str:
    done = subprocess.run([KUBECTL, "--kubeconfig", cluster.kubeconfig, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


async def kubectl_async(cluster: Server, *args: str, timeout: float = TIMEOUT) -> str:
    return await asyncio.to_thread(kubectl, cluster, *args, timeout=timeout)


def deployment(name: str, replicas: int, image: str, **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image,
                                                       "resources": {"requests": {"cpu": "100m"}}}],
                                       **pod_spec}}}}


async def pods_of(client: Client, namespace: str, app: str) -> list[dict[str, Any]]:
    return (await client.list("v1", "pods", namespace=namespace,
                              label_selector=f"app={app}"))["items"]


async def wait_ready(client: Client, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` pods of ``app`` are live (not terminating) and Ready."""
    live: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal live
        live = [p for p in await pods_of(client, namespace, app)
                if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        return len(live) == count and len(ready) == count
    await eventually(check, TIMEOUT, f"{count} ready pods of {app}")
    return live


async def test_nodes_register_and_become_ready(client: Client) -> None:
    async def three_ready() -> bool:
        nodes = (await client.list("v1", "nodes"))["items"]
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n["status"].get("conditions") or [])]
        return len(ready) >= 3 and all(n["spec"].get("podCIDR") for n in ready)
    await eventually(three_ready, TIMEOUT, "three Ready nodes with pod CIDRs")


async def test_a_rollout_survives_the_controller_manager_being_killed(
        client: Client, cluster: Server) -> None:
    ns = await new_namespace(client, "roll")
    await client.create("apps/v1", "deployments", deployment("web", 6, "web:1"), namespace=ns)
    await kubectl_async(cluster, "-n", ns, "rollout", "status", "deployment/web",
                        f"--timeout={int(TIMEOUT)}s")
    pods = await wait_ready(client, ns, "web", 6)
    assert all(p["spec"]["nodeName"].startswith(("hn-a", "hn-b")) for p in pods)

    await kubectl_async(cluster, "-n", ns, "set", "image", "deployment/web", "app=web:2")

    async def rollout_started() -> bool:
        rs = (await client.list("apps/v1", "replicasets", namespace=ns))["items"]
        return len(rs) == 2
    await eventually(rollout_started, TIMEOUT, "new ReplicaSet")
    # Kill the controller manager mid-rollout; a new one must finish the job.
    assert cluster.controllers is not None
    cluster.stop_component(cluster.controllers, signal.SIGKILL)
    cluster.start_controllers("--node-monitor-grace-period", "6")
    await kubectl_async(cluster, "-n", ns, "rollout", "status", "deployment/web",
                        f"--timeout={int(TIMEOUT)}s")
    pods = await wait_ready(client, ns, "web", 6)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"web:2"}

    history = await kubectl_async(cluster, "-n", ns, "rollout", "history", "deployment/web")
    assert "REVISION" in history and "1 " in history and "2 " in history
    await kubectl_async(cluster, "-n", ns, "rollout", "undo", "deployment/web")
    await kubectl_async(cluster, "-n", ns, "rollout", "status", "deployment/web",
                        f"--timeout={int(TIMEOUT)}s")
    pods = await wait_ready(client, ns, "web", 6)
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"web:1"}
    dep = await client.get("apps/v1", "deployments", "web", namespace=ns)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert dep["status"]["updatedReplicas"] == 6 and dep["status"]["availableReplicas"] == 6


async def test_workloads_converge(client: Client, cluster: Server) -> None:
    ns = await new_namespace(client, "wl")
    manifests = Path(cluster.data_dir / f"{ns}.yaml")
    manifests.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
         "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"serviceName": "db", "replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                  "template": {"metadata": {"labels": {"app": "db"}},
                               "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
         "spec": {"selector": {"matchLabels": {"app": "agent"}},
                  "template": {"metadata": {"labels": {"app": "agent"}},
                               "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
         "spec": {"completions": 4, "parallelism": 2,
                  "template": {"metadata": {"annotations": {"sampan.io/hollow-run-seconds": "1"}},
                               "spec": {"restartPolicy": "Never",
                                        "containers": [{"name": "j", "image": "job:1"}]}}}},
    ]))
    await kubectl_async(cluster, "apply", "-n", ns, "-f", str(manifests))

    db = await wait_ready(client, ns, "db", 3)
    assert sorted(p["metadata"]["name"] for p in db) == ["db-0", "db-1", "db-2"]
    await kubectl_async(cluster, "-n", ns, "rollout", "status", "statefulset/db",
                        f"--timeout={int(TIMEOUT)}s")
    nodes = (await client.list("v1", "nodes"))["items"]
    agents = await wait_ready(client, ns, "agent", len(nodes))
    assert sorted(p["spec"]["nodeName"] for p in agents) == \
        sorted(n["metadata"]["name"] for n in nodes)
    await kubectl_async(cluster, "-n", ns, "wait", "--for=condition=Complete", "job/batch",
                        f"--timeout={int(TIMEOUT)}s")
    job = await client.get("batch/v1", "jobs", "batch", namespace=ns)
    assert job["status"]["succeeded"] == 4

    async def endpoints_ready() -> bool:
        try:
            slices = (await client.list("discovery.k8s.io/v1", "endpointslices", namespace=ns,
                                        label_selector="kubernetes.io/service-name=db"))["items"]
        except ApiError:
            return False
        ready = [e for s in slices for e in s.get("endpoints") or []
                 if (e.get("conditions") or {}).get("ready")]
        return len(ready) == 3
    await eventually(endpoints_ready, TIMEOUT, "three ready endpoints for db")


async def test_a_pod_that_fits_nowhere_is_reported_like_upstream(client: Client) -> None:
    ns = await new_namespace(client, "fit")
    await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
        "spec": {"containers": [{"name": "c", "image": "x",
                                 "resources": {"requests": {"cpu": "1000"}}}]}}, namespace=ns)

    async def reported() -> bool:
        events = (await client.list("v1", "events", namespace=ns,
                                    field_selector="involvedObject.name=huge"))["items"]
        return any(e["reason"] == "FailedScheduling" for e in events)
    await eventually(reported, TIMEOUT, "FailedScheduling event")
    events = (await client.list("v1", "events", namespace=ns,
                                field_selector="involvedObject.name=huge"))["items"]
    message = next(e["message"] for e in events if e["reason"] == "FailedScheduling")
    nodes = len((await client.list("v1", "nodes"))["items"])
    assert message.startswith(f"0/{nodes} nodes are available: {nodes} Insufficient cpu.")
    pod = await client.get("v1", "pods", "huge", namespace=ns)
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"


async def test_pods_of_a_dead_node_are_recreated_elsewhere(client: Client, cluster: Server) -> None:
    ns = await new_namespace(client, "evict")
    # Tolerate an unreachable node for 2 s instead of the default 300 s.
    tolerations = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 2},
                   {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 2}]
    await client.create("apps/v1", "deployments",
                        deployment("spread", 3, "s:1", tolerations=tolerations,
                                   topologySpreadConstraints=[{
                                       "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       # the dead node stays a domain unless its taint counts
                                       "nodeTaintsPolicy": "Honor",
                                       "labelSelector": {"matchLabels": {"app": "spread"}}}]),
                        namespace=ns)
    pods = await wait_ready(client, ns, "spread", 3)
    assert len({p["spec"]["nodeName"] for p in pods}) == 3  # one per node
    victim = next(p for p in cluster.components
                  if "hn-b" in " ".join(p.args if isinstance(p.args, list) else [p.args]))
    cluster.stop_component(victim, signal.SIGKILL)

    async def node_unknown() -> bool:
        node = await client.get("v1", "nodes", "hn-b-0")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        return ready["status"] == "Unknown" and "node.kubernetes.io/unreachable" in taints
    await eventually(node_unknown, TIMEOUT, "hn-b-0 unknown and tainted")

    async def moved() -> bool:
        live = [p for p in await pods_of(client, ns, "spread")
                if not p["metadata"].get("deletionTimestamp")]
        return len(live) == 3 and all(p["spec"].get("nodeName", "").startswith("hn-a")
                                      for p in live)
    await eventually(moved, TIMEOUT, "pods recreated on the live nodes")
