"""Scheduler benchmark on hollow nodes: pods/s scheduled, time from create to bound, control
plane RSS and CPU, and a 1,000-replica Deployment rollout — beside the physical limit measured
in the same run (pods created and bound directly, no scheduling) and the published
kube-scheduler figures.

    .venv/bin/python -m bench.scheduler [--nodes 1000 --pods 30000] [--quick]

Every component is its own process, as in a cluster: ``sampan server`` (SQLite, fresh data
directory under /tmp), ``sampan hollow-nodes``, ``sampan scheduler`` and, for the Deployment,
``sampan controller-manager``. Results are printed and recorded in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import machine
from bench.apiserver import CONNECTIONS, Bench, percentile, rss_mib
from tests.cluster import SAMPAN, Server, start_server

NODE_PREFIX = "hollow-node"
RAW_NAMESPACE = "bench-raw"
NAMESPACE = "bench-sched"
DEPLOY_NAMESPACE = "bench-deploy"
PHASE_TIMEOUT = 900.0
STALL_TIMEOUT = 120.0  # no pod bound for this long: give up waiting

# Published kube-scheduler figures to read ours against (sources are cited in every result).
PUBLISHED = [
    {"figure": "SchedulingThroughput average 100 pods/s in a 5,000-node cluster (gce-5000Nodes "
               "density test, Kubernetes 1.14 era; the test itself was rate limited to 100 "
               "pods/s)",
     "pods_per_s": 100, "nodes": 5000,
     "source": "https://github.com/kubernetes/kubernetes/pull/74041"},
    {"figure": "scheduler_perf SchedulingWithPodChurn/5000Nodes: average 332.5 pods/s, "
               "median 300 pods/s (2021, before a regression was found)",
     "pods_per_s": 332.5, "nodes": 5000,
     "source": "https://github.com/kubernetes/kubernetes/issues/99913"},
    {"figure": "scheduler_perf SchedulingBasic/500Nodes: 792-909 pods/s (2020)",
     "pods_per_s": 850, "nodes": 500,
     "source": "https://gist.github.com/alculquicondor/293a4e309fda4a6c7b2cef18e8f31433"},
    {"figure": "5,000-node density test: ~300 pods per 10 s at the end of a 150,000-pod run "
               "(2017, reported as a throughput decrease)",
     "pods_per_s": 30, "nodes": 5000,
     "source": "https://github.com/kubernetes/kubernetes/issues/56714"},
    {"figure": "scheduler_perf density test shape: 30,000 pods on 1,000 fake nodes",
     "pods_per_s": None, "nodes": 1000,
     "source": "https://github.com/kubernetes/kubernetes/tree/master/test/integration/"
               "scheduler_perf"},
]
TARGETS = {"scheduled_pods_per_s": 300, "control_plane_rss_mib": 2048}


# -- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SPAWNED: dict[str, tuple[subprocess.Popen, Path]] = {}


def spawn(name: str, args: list[str], log_dir: Path) -> subprocess.Popen:
    path = log_dir / f"{name}.log"
    with open(path, "ab") as log:
        process = subprocess.Popen([SAMPAN, *args], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _SPAWNED[name] = (process, path)
    return process


def check_processes() -> None:
    """Fail at once (not after a phase's timeout) when a component died."""
    for name, (process, path) in _SPAWNED.items():
        if process.poll() is not None:
            tail = path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Usage:
    """RSS (peak, sampled every second) and CPU seconds of the control plane's processes."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peak_rss: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def rss(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                out[name] = rss_mib(pid)
            except OSError:
                out[name] = float("nan")
        return out

    async def _sample(self) -> None:
        while True:
            for name, value in self.rss().items():
                if value == value:  # not NaN
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0.0), value)
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -- API helpers -----------------------------------------------------------------------------


def pod_body(name: str, image: str = "registry.example/pause:3.10") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "resources": {"requests": {"cpu": "100m",
                                                                "memory": "128Mi"}}}]}}


class Api:
    """Plain HTTP against the API server (what the load generator of a benchmark should be:
    cheap, and not the code under test)."""

    def __init__(self, server: Server):
        self.bench = Bench(server)
        self.url = server.url

    def session(self, limit: int = CONNECTIONS) -> aiohttp.ClientSession:
        return self.bench.session(limit)

    async def ensure_namespace(self, s: aiohttp.ClientSession, name: str) -> None:
        async with s.post(f"{self.url}/api/v1/namespaces",
                          json={"metadata": {"name": name}}) as r:
            assert r.status in (201, 409), await r.text()

    async def get(self, s: aiohttp.ClientSession, path: str) -> Any:
        async with s.get(self.url + path) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def ready_nodes(self, s: aiohttp.ClientSession) -> int:
        nodes = await self.get(s, f"/api/v1/nodes?labelSelector=sampan.io/hollow-nodes%3D"
                                  f"{NODE_PREFIX}")
        return sum(1 for n in nodes["items"]
                   if any(c["type"] == "Ready" and c["status"] == "True"
                          for c in (n.get("status") or {}).get("conditions") or ()))


async def wait_for(check, timeout: float, what: str, interval: float = 1.0) -> float:
    start = time.perf_counter()
    while not await check():
        check_processes()
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what} not reached in {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.perf_counter() - start


# -- phases ----------------------------------------------------------------------------------


async def raw_create_and_bind(api: Api, count: int, nodes: int) -> dict[str, Any]:
    """The physical limit: create + binding POST per pod, round-robin over the nodes."""
    base = f"{api.url}/api/v1/namespaces/{RAW_NAMESPACE}/pods"
    names = iter(range(count))
    errors = 0
    async with api.session(CONNECTIONS + 8) as s:
        await api.ensure_namespace(s, RAW_NAMESPACE)
        watch = PodWatch(api, RAW_NAMESPACE)
        await watch.start(s)

        async def worker() -> None:
            nonlocal errors
            for i in names:
                name = f"raw-{i:05d}"
                body = pod_body(name)
                body["spec"]["schedulerName"] = "bench-no-scheduler"
                async with s.post(base, json=body) as r:
                    await r.read()
                    if r.status != 201:
                        errors += 1
                        continue
                binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                           "target": {"kind": "Node", "name": f"{NODE_PREFIX}-{i % nodes}"}}
                async with s.post(f"{base}/{name}/binding", json=binding) as r:
                    await r.read()
                    if r.status != 201:
                        errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
        await watch.wait(watch.running_at, count - errors)
        await watch.stop()
        async with s.delete(f"{base}?gracePeriodSeconds=0",
                            timeout=aiohttp.ClientTimeout(total=600)) as r:
            await r.read()
    return {"pods": count, "seconds": round(elapsed, 2),
            "pods_per_s": round(count / elapsed, 1), "errors": errors,
            "hollow_nodes": running_figures(watch, start)}


class PodWatch:
    """Watches a namespace's pods and notes when each is first seen bound and Running."""

    def __init__(self, api: Api, namespace: str):
        self.api, self.namespace = api, namespace
        self.bound_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        self.node_of: dict[str, str] = {}
        self.last_rv = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self, s: aiohttp.ClientSession) -> None:
        listed = await self.api.get(s, f"/api/v1/namespaces/{self.namespace}/pods?limit=1")
        rv = listed["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._watch(s, rv))

    async def _watch(self, s: aiohttp.ClientSession, rv: str) -> None:
        while True:
            url = (f"{self.api.url}/api/v1/namespaces/{self.namespace}/pods?watch=1"
                   f"&resourceVersion={rv}&allowWatchBookmarks=true")
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=None)) as r:
                async for line in r.content:
                    self._seen(orjson.loads(line).get("object") or {}, time.perf_counter())
                    rv = self.last_rv or rv

    def _seen(self, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        self.last_rv = meta.get("resourceVersion", self.last_rv)
        name = meta.get("name")
        node = (obj.get("spec") or {}).get("nodeName")
        if node and name not in self.bound_at:
            self.bound_at[name] = now
            self.node_of[name] = node
        if (obj.get("status") or {}).get("phase") == "Running" and name not in self.running_at:
            self.running_at[name] = now

    async def wait(self, what: dict[str, float], count: int) -> None:
        """Until ``count`` pods are in ``what`` or nothing moved for STALL_TIMEOUT."""
        seen, last_progress, start = 0, time.perf_counter(), time.perf_counter()
        while len(what) < count:
            await asyncio.sleep(0.5)
            check_processes()
            if len(what) > seen:
                seen, last_progress = len(what), time.perf_counter()
            elif time.perf_counter() - last_progress > STALL_TIMEOUT:
                return
            if time.perf_counter() - start > PHASE_TIMEOUT:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def running_figures(watch: PodWatch, start: float) -> dict[str, Any]:
    """How fast the hollow nodes marked the bound pods Running."""
    running = sorted(watch.running_at.values())
    lags = [watch.running_at[n] - watch.bound_at[n] for n in watch.running_at
            if n in watch.bound_at]
    if not running:
        return {"running": 0}
    return {"running": len(running),
            "running_pods_per_s": round(len(running) / (running[-1] - start), 1),
            "bound_to_running_p50_ms": round(percentile(lags, 50) * 1000, 1),
            "bound_to_running_p99_ms": round(percentile(lags, 99) * 1000, 1)}


async def scheduled(api: Api, count: int) -> dict[str, Any]:
    """Pods created as fast as the API accepts them while the scheduler places them."""
    base = f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods"
    created_at: dict[str, float] = {}
    errors = 0
    names = iter(range(count))
    async with api.session(CONNECTIONS + 8) as s:
        await api.ensure_namespace(s, NAMESPACE)
        watch = PodWatch(api, NAMESPACE)
        await watch.start(s)

        async def worker() -> None:
            nonlocal errors
            for i in names:
                name = f"pod-{i:05d}"
                async with s.post(base, json=pod_body(name)) as r:
                    await r.read()
                    if r.status == 201:
                        created_at[name] = time.perf_counter()
                    else:
                        errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        created_in = time.perf_counter() - start
        await watch.wait(watch.bound_at, len(created_at))
        await watch.wait(watch.running_at, len(watch.bound_at))
        await watch.stop()
        events = await api.get(s, f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector="
                                  f"reason%3DFailedScheduling")
    bound = sorted(watch.bound_at.values())
    latencies = [max(0.0, watch.bound_at[n] - created_at[n]) for n in watch.bound_at
                 if n in created_at]
    n = len(bound)
    result: dict[str, Any] = {
        "pods": count, "created": len(created_at), "create_errors": errors,
        "creates_per_s": round(len(created_at) / created_in, 1) if created_in else None,
        "bound": n, "unbound": len(created_at) - n,
        "failed_scheduling_events": len(events.get("items") or []),
    }
    if n >= 10:
        lo, hi = bound[int(n * 0.1)], bound[int(n * 0.9) - 1]
        result["scheduled_pods_per_s_overall"] = round(n / (bound[-1] - start), 1)
        result["scheduled_pods_per_s_sustained"] = round((int(n * 0.9) - int(n * 0.1)) /
                                                         (hi - lo), 1) if hi > lo else None
        result["create_to_bound_p50_ms"] = round(percentile(latencies, 50) * 1000, 1)
        result["create_to_bound_p99_ms"] = round(percentile(latencies, 99) * 1000, 1)
        result["seconds_to_last_bound"] = round(bound[-1] - start, 2)
        per_node: dict[str, int] = {}
        for node in watch.node_of.values():
            per_node[node] = per_node.get(node, 0) + 1
        result["pods_per_node_min_max"] = [min(per_node.values()), max(per_node.values())]
        result["nodes_used"] = len(per_node)
    result["hollow_nodes"] = running_figures(watch, start)
    return result


def rolled_out(deployment: dict[str, Any]) -> bool:
    """What ``kubectl rollout status`` waits for."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
            and status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas)


async def deployment_rollout(api: Api, replicas: int) -> dict[str, Any]:
    path = f"/apis/apps/v1/namespaces/{DEPLOY_NAMESPACE}/deployments"
    labels = {"app": "bench-rollout"}
    template = pod_body("unused", "registry.example/app:v1")
    template["metadata"] = {"labels": labels}
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "rollout"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": template["metadata"], "spec": template["spec"]}}}
    async with api.session(4) as s:
        await api.ensure_namespace(s, DEPLOY_NAMESPACE)

        async def done() -> bool:
            return rolled_out(await api.get(s, f"{path}/rollout"))

        async with s.post(api.url + path, json=body) as r:
            assert r.status == 201, await r.text()
        created = await wait_for(done, PHASE_TIMEOUT, "deployment available", 0.5)
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "registry.example/app:v2"}]}}}}
        async with s.patch(f"{api.url}{path}/rollout", data=orjson.dumps(patch),
                           headers={"Content-Type": "application/strategic-merge-patch+json"}) as r:
            assert r.status == 200, await r.text()
        rolled = await wait_for(done, PHASE_TIMEOUT, "rollout complete", 0.5)
    return {"replicas": replicas, "seconds_to_available": round(created, 1),
            "seconds_to_roll_to_new_image": round(rolled, 1)}


def scheduler_available() -> str | None:
    """Why the scheduler cannot run yet, or None."""
    if importlib.util.find_spec("sampan.scheduler") is None:
        return "sampan.scheduler does not exist yet"
    import sampan.scheduler

    if not hasattr(sampan.scheduler, "run_scheduler"):
        return "sampan.scheduler has no run_scheduler yet"
    return None


def deployment_available() -> str | None:
    try:
        if importlib.util.find_spec("sampan.controllers.deployment") is None:
            return "sampan.controllers.deployment does not exist yet"
        importlib.import_module("sampan.controllers.deployment")
    except Exception as e:  # noqa: BLE001 - a half-written module is reported, not fatal
        return f"sampan.controllers.deployment is not importable: {e!r}"
    return None


# -- the run ---------------------------------------------------------------------------------


async def run(nodes: int, pods: int, replicas: int, workdir: Path) -> dict[str, Any]:
    logs = workdir / "logs"
    logs.mkdir(parents=True)
    server = start_server(workdir / "server")
    kubeconfig = server.kubeconfig
    usage = Usage()
    usage.add("apiserver", server.process.pid)
    processes: list[subprocess.Popen] = []
    result: dict[str, Any] = {"nodes": nodes, "pods": pods, "workdir": str(workdir)}
    api = Api(server)
    usage.start()
    try:
        hollow = spawn("hollow-nodes", ["hollow-nodes", "--kubeconfig", kubeconfig,
                                        "--count", str(nodes), "--prefix", NODE_PREFIX], logs)
        processes.append(hollow)
        usage.add("hollow-nodes", hollow.pid)
        async with api.session(4) as s:
            result["seconds_to_register_nodes"] = round(await wait_for(
                lambda: _ready(api, s, nodes), 600, f"{nodes} hollow nodes Ready"), 1)
        print(f"{nodes} hollow nodes Ready in {result['seconds_to_register_nodes']} s",
              flush=True)

        raw_count = min(pods, 10_000)
        result["raw"] = await raw_create_and_bind(api, raw_count, nodes)
        print(f"raw create+bind: {result['raw']}", flush=True)

        why = scheduler_available()
        if why:
            result["scheduling"] = {"skipped": why}
            print(f"scheduling phase skipped: {why}", flush=True)
        else:
            scheduler = spawn("scheduler", ["scheduler", "--kubeconfig", kubeconfig,
                                            "--metrics-bind-address", ""], logs)
            processes.append(scheduler)
            usage.add("scheduler", scheduler.pid)
            async with api.session(4) as s:
                await wait_for(lambda: _has_leader(api, s), 60, "scheduler leading")
            cpu_before = usage.cpu()
            result["scheduling"] = await scheduled(api, pods)
            cpu_after = usage.cpu()
            result["scheduling"]["cpu_seconds"] = {
                k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1) for k in cpu_after}
            print(f"scheduling: {result['scheduling']}", flush=True)
        result["rss_mib_after_scheduling"] = {k: round(v, 1) for k, v in usage.rss().items()}

        why = deployment_available() or scheduler_available()
        if why or replicas <= 0:
            result["deployment"] = {"skipped": why or "--replicas 0"}
            print(f"deployment phase skipped: {result['deployment']['skipped']}", flush=True)
        else:
            manager = spawn("controller-manager", ["controller-manager", "--kubeconfig",
                                                   kubeconfig, "--metrics-bind-address", ""],
                            logs)
            processes.append(manager)
            usage.add("controller-manager", manager.pid)
            result["deployment"] = await deployment_rollout(api, replicas)
            print(f"deployment: {result['deployment']}", flush=True)
        result["cpu_seconds_total"] = {k: round(v, 1) for k, v in usage.cpu().items()}
        result["rss_mib_peak"] = {k: round(v, 1) for k, v in usage.peak_rss.items()}
        result["control_plane_rss_mib_peak"] = round(sum(
            v for k, v in usage.peak_rss.items() if k != "hollow-nodes"), 1)
    finally:
        await usage.stop()
        for process in reversed(processes):
            stop(process)
        server.stop()
    return result


async def _ready(api: Api, s: aiohttp.ClientSession, nodes: int) -> bool:
    return await api.ready_nodes(s) >= nodes


async def _has_leader(api: Api, s: aiohttp.ClientSession) -> bool:
    async with s.get(f"{api.url}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                     "kube-scheduler") as r:
        if r.status != 200:
            return False
        return bool(((await r.json()).get("spec") or {}).get("holderIdentity"))


def _running(phase: dict[str, Any]) -> str:
    h = phase.get("hollow_nodes") or {}
    return (f"{h.get('running_pods_per_s')!s:>10} pods/s ({h.get('running')} Running; bound -> "
            f"Running p50 {h.get('bound_to_running_p50_ms')} ms, "
            f"p99 {h.get('bound_to_running_p99_ms')} ms)")


def report(result: dict[str, Any]) -> str:
    raw = result.get("raw") or {}
    sched = result.get("scheduling") or {}
    deploy = result.get("deployment") or {}
    raw_rate = raw.get("pods_per_s")
    rate = sched.get("scheduled_pods_per_s_sustained")
    lines = [f"scheduler benchmark: {result['nodes']} hollow nodes, {result['pods']} pods",
             f"  {'raw create+bind (no scheduler)':<38} {raw_rate!s:>10} pods/s "
             f"({raw.get('pods')} pods, {raw.get('errors')} errors)",
             f"  {'hollow nodes marking them Running':<38} {_running(raw)}"]
    if "skipped" in sched:
        lines.append(f"  scheduling: skipped ({sched['skipped']})")
    else:
        ratio = round(rate / raw_rate, 3) if rate and raw_rate else None
        lines += [
            f"  {'creates accepted':<38} {sched.get('creates_per_s')!s:>10} pods/s",
            f"  {'scheduled, sustained (middle 80%)':<38} {rate!s:>10} pods/s"
            f"   ratio to raw {ratio}   (target >= {TARGETS['scheduled_pods_per_s']})",
            f"  {'scheduled, overall':<38} {sched.get('scheduled_pods_per_s_overall')!s:>10}"
            " pods/s",
            f"  {'create -> bound p50 / p99':<38} {sched.get('create_to_bound_p50_ms')!s:>10}"
            f" / {sched.get('create_to_bound_p99_ms')} ms",
            f"  {'bound / created / errors':<38} {sched.get('bound')!s:>10} / "
            f"{sched.get('created')} / {sched.get('create_errors')}",
            f"  {'pods per node (min, max)':<38} {sched.get('pods_per_node_min_max')!s:>10}",
            f"  {'hollow nodes marking them Running':<38} {_running(sched)}",
            f"  {'CPU seconds during scheduling':<38} {sched.get('cpu_seconds')}",
        ]
    lines.append(f"  {'peak RSS MiB':<38} {result.get('rss_mib_peak')}")
    lines.append(f"  {'control plane peak RSS MiB (sum)':<38} "
                 f"{result.get('control_plane_rss_mib_peak')!s:>10}"
                 f"   (target < {TARGETS['control_plane_rss_mib']})")
    if "skipped" in deploy:
        lines.append(f"  deployment rollout: skipped ({deploy['skipped']})")
    elif deploy:
        lines.append(f"  {'deployment of ' + str(deploy['replicas']) + ' replicas':<38} "
                     f"available in {deploy['seconds_to_available']} s, rolled to a new image "
                     f"in {deploy['seconds_to_roll_to_new_image']} s")
    lines.append("  published kube-scheduler figures:")
    for p in PUBLISHED:
        ratio = (f"  ours/theirs {round(rate / p['pods_per_s'], 2)}"
                 if rate and p["pods_per_s"] else "")
        lines.append(f"    - {p['figure']}{ratio}\n      {p['source']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=30_000)
    parser.add_argument("--replicas", type=int, default=1000,
                        help="Deployment size for the rollout phase (0 to skip it)")
    parser.add_argument("--quick", action="store_true", help="100 nodes, 2,000 pods, 200 replicas")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.pods, args.replicas = 100, 2000, 200
    workdir = Path(tempfile.mkdtemp(prefix="sampan-bench-scheduler-"))
    # SIGTERM unwinds like Ctrl-C, so that the components this started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(run(args.nodes, args.pods, args.replicas, workdir))
    print(report(result), flush=True)
    record = {"benchmark": "scheduler", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine.describe(), "quick": args.quick, "result": result,
              "published_kube_scheduler": PUBLISHED, "targets": TARGETS,
              "notes": ["raw = pods created and bound by the benchmark itself (32 connections), "
                        "with the hollow nodes marking them Running as in the scheduled phase",
                        "sustained = pods bound between the 10th and 90th percentile of bind "
                        "times, divided by that time",
                        "create -> bound = from the create's acknowledgement to the first "
                        "watch event showing spec.nodeName"]}
    out = Path(__file__).parent / "results" / f"scheduler-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded {out}")


if __name__ == "__main__":
    sys.exit(main())
