"""Pod startup benchmark: 100 pods created at 10 pods/s on one real node, time from create to
Ready, beside the raw limit measured in the same run — ``runc run`` of the same container
from a prepared bundle — and the agent's memory with every pod running.

    .venv/bin/python -m bench.pod_startup [--pods 100 --rate 10 --raw-runs 30]

Needs root (real containers). The cluster is the e2e one: ``sampan server``, controller
manager and scheduler as processes, ``sampan agent`` in a test host's network namespace
(tests/nodehost.py), the offline busybox image. Results are printed and recorded in
``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.apiserver import percentile, rss_mib
from sampan.client import Client
from sampan.client.config import load_kubeconfig
from tests.e2e.nodecluster import BUSYBOX, start_node_cluster

NAMESPACE = "bench-startup"
TARGETS = {"p99_startup_s": 2.0, "ratio_to_raw_runc": 3.0, "agent_rss_mib": 100}
UPSTREAM_SLO = ("Kubernetes pod startup SLO: 99th percentile of stateless pod startup "
                "(excluding image pulls) <= 5 s, https://github.com/kubernetes/community/blob/"
                "master/sig-scalability/slos/pod_startup_latency.md")


# -- the raw limit: runc run of the same container -------------------------------------------
def raw_runc(image_layers: list[Path], runs: int, work: Path) -> dict[str, Any]:
    """``runc run --detach`` of busybox ``sleep`` from a bundle whose rootfs is an overlay of
    the image's layers (what the agent's runtime assembles), timed per container."""
    root = work / "runc-root"
    times = []
    for i in range(runs):
        bundle = work / f"bundle-{i}"
        (bundle / "rootfs").mkdir(parents=True)
        upper, wd = bundle / "upper", bundle / "work"
        upper.mkdir()
        wd.mkdir()
        lower = ":".join(str(p) for p in reversed(image_layers))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={wd}",
                        str(bundle / "rootfs")], check=True)
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        spec_path = bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["sleep", "3600"]
        spec["root"]["path"] = "rootfs"
        spec["linux"]["cgroupsPath"] = f"/sampan-bench-raw/c{i}"
        spec_path.write_text(json.dumps(spec))
        name = f"sampan-bench-raw-{os.getpid()}-{i}"
        start = time.perf_counter()
        subprocess.run(["runc", "--root", str(root), "run", "--detach", "--bundle", str(bundle),
                        name], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        subprocess.run(["runc", "--root", str(root), "kill", name, "KILL"], capture_output=True)
        subprocess.run(["runc", "--root", str(root), "delete", "--force", name],
                       capture_output=True)
        subprocess.run(["umount", str(bundle / "rootfs")], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "sampan-bench-raw"
        if top.is_dir():
            for d in sorted(top.iterdir(), reverse=True):
                if d.is_dir():
                    d.rmdir()
            top.rmdir()
    times.sort()
    return {"runs": runs, "p50_ms": round(percentile(times, 50) * 1000, 1),
            "p99_ms": round(percentile(times, 99) * 1000, 1),
            "max_ms": round(times[-1] * 1000, 1)}


# -- the pods ------------------------------------------------------------------------------------
def pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"startup-{i:03d}", "labels": {"bench": "startup"}},
            "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": BUSYBOX,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}]}}


def _ready_at(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or ())


async def create_pods(client: Client, count: int, rate: float) -> dict[str, Any]:
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        listing = await client.list("v1", "pods", namespace=NAMESPACE)
        async for event in client.watch("v1", "pods", namespace=NAMESPACE,
                                        resource_version=listing["metadata"]["resourceVersion"]):
            if event.type not in ("ADDED", "MODIFIED"):
                continue
            obj = event.object
            name = obj["metadata"]["name"]
            if name not in ready and _ready_at(obj):
                ready[name] = time.perf_counter()
                if len(ready) == count:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    for i in range(count):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = pod(i)
        await client.create("v1", "pods", body, namespace=NAMESPACE)
        created[body["metadata"]["name"]] = time.perf_counter()
    try:
        await asyncio.wait_for(done.wait(), 300)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    latencies = sorted(ready[n] - created[n] for n in created if n in ready)
    return {"pods": count, "rate_per_s": rate, "ready": len(latencies),
            "create_to_ready_p50_s": round(percentile(latencies, 50), 3),
            "create_to_ready_p99_s": round(percentile(latencies, 99), 3),
            "create_to_ready_max_s": round(latencies[-1], 3) if latencies else None,
            "seconds_for_all": round(max(ready.values()) - start, 2) if ready else None}


def agent_breakdown(text: str) -> dict[str, float]:
    """Mean milliseconds of the agent's steps, from its kubelet-style histograms."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("kubelet_runtime_operations_duration_seconds",
                               "kubelet_pod_worker_start_duration_seconds"):
            continue
        for sample in family.samples:
            key = sample.labels.get("operation_type", "pod_worker_start")
            if sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
    return {k: round(1000 * sums[k] / counts[k], 1) for k in sums if counts.get(k)}


def _conmon_rss(agent_pid: int) -> float:
    """Sum of RSS of the container monitors (informational: they are not the agent)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() == "conmon":
                total += rss_mib(int(entry))
        except OSError:
            pass
    return round(total, 1)


async def run(pods: int, rate: float, raw_runs: int, work: Path) -> dict[str, Any]:
    cluster = start_node_cluster(work / "cluster")
    try:
        host = cluster.add_node("node-a")
        from sampan.node.images import ImageStore

        image = ImageStore(work / "cluster" / "node-a" / "images").get(BUSYBOX)
        raw = raw_runc([Path(p) for p in image.layers], raw_runs, work)
        cluster.kubectl("create", "namespace", NAMESPACE)
        client = Client(load_kubeconfig(cluster.server.kubeconfig))
        try:
            rss_before = rss_mib(host.process.pid)
            startup = await create_pods(client, pods, rate)
            await asyncio.sleep(5)  # steady state with every pod running
            rss_running = rss_mib(host.process.pid)
            conmon = _conmon_rss(host.process.pid)
            try:
                breakdown = agent_breakdown(cluster.kubectl(
                    "get", "--raw", "/api/v1/nodes/node-a/proxy/metrics"))
            except Exception as e:  # the figures are still worth recording without it
                breakdown = {"error": str(e)}
            start = time.perf_counter()
            await client.delete_collection("v1", "pods", namespace=NAMESPACE)

            async def gone() -> bool:
                return not (await client.list("v1", "pods", namespace=NAMESPACE))["items"]
            while not await gone():
                await asyncio.sleep(0.5)
            deleted_s = round(time.perf_counter() - start, 2)
        finally:
            await client.close()
    finally:
        cluster.stop()
    ratio = round(startup["create_to_ready_p50_s"] * 1000 / raw["p50_ms"], 2)
    return {"raw_runc": raw, "startup": startup,
            "ratio_startup_p50_to_raw_runc_p50": ratio,
            "agent_rss_mib": {"idle": round(rss_before, 1), "with_pods_running": round(
                rss_running, 1)},
            "conmon_rss_mib_total": conmon, "delete_all_seconds": deleted_s,
            "agent_mean_ms": breakdown}


def report(result: dict[str, Any]) -> str:
    raw, s = result["raw_runc"], result["startup"]
    return "\n".join([
        f"pod startup benchmark: {s['pods']} pods at {s['rate_per_s']} pods/s on one node",
        f"  {'raw runc run --detach (p50 / p99)':<40} {raw['p50_ms']} / {raw['p99_ms']} ms "
        f"({raw['runs']} runs)",
        f"  {'create -> Ready p50 / p99 / max':<40} {s['create_to_ready_p50_s']} / "
        f"{s['create_to_ready_p99_s']} / {s['create_to_ready_max_s']} s"
        f"   (target p99 < {TARGETS['p99_startup_s']} s)",
        f"  {'ratio to raw runc (p50)':<40} {result['ratio_startup_p50_to_raw_runc_p50']}"
        f"   (target <= {TARGETS['ratio_to_raw_runc']})",
        f"  {'agent RSS idle / with pods running':<40} {result['agent_rss_mib']['idle']} / "
        f"{result['agent_rss_mib']['with_pods_running']} MiB"
        f"   (target < {TARGETS['agent_rss_mib']})",
        f"  {'conmon monitors RSS (sum)':<40} {result['conmon_rss_mib_total']} MiB",
        f"  {'delete all pods':<40} {result['delete_all_seconds']} s",
        f"  {'agent steps, mean ms':<40} {result['agent_mean_ms']}",
        f"  {UPSTREAM_SLO}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--raw-runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.pod_startup needs root (it runs real containers)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sampan-bench-startup-"))
    try:
        result = asyncio.run(run(args.pods, args.rate, args.raw_runs, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(result), flush=True)
    record = {"benchmark": "pod_startup",
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine.describe(), "result": result, "targets": TARGETS,
              "upstream": UPSTREAM_SLO,
              "notes": ["create -> Ready: from the create's acknowledgement to the first watch "
                        "event with the Ready condition True (scheduler, agent, runtime, "
                        "network, status write included)",
                        "raw = runc run --detach of the same image's overlay rootfs, no network "
                        "namespace, no monitor: the physical limit of starting the container",
                        "the ratio compares medians; the SLO-style target is on the p99"]}
    out = Path(__file__).parent / "results" / f"pod_startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
