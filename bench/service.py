"""Service benchmark: requests/s and latency to one backend pod through a ClusterIP Service and
through the Ingress, beside the limit measured in the same run — the same backend reached
directly by pod IP —, how fast a newly ready endpoint is programmed, and the proxy's rule sync
time for 1,000 services x 10 endpoints.

    .venv/bin/python -m bench.service [--seconds 3 --warmup 1 --rounds 5 --connections 16
                                       --changes 50]

Needs root and gcc (real containers; the backend and load client are bench/service_http.c,
built static and mounted into busybox pods). The cluster is the e2e one (tests/e2e/
nodecluster.py): one node agent in a test host's network namespace runs the pods and the
service proxy; the ingress controller runs in the same namespace, as ``sampan up`` runs it on
a node. Every address used is inside namespaces the benchmark made. Results are printed and
recorded in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine
from bench.apiserver import percentile
from sampan.client import Client
from sampan.client.config import load_kubeconfig
from sampan.controllers.endpoints import format_trigger_time
from tests.e2e.nodecluster import BUSYBOX, NodeCluster, http_get, start_node_cluster, wait_for
from tests.nodehost import AgentHost

NAMESPACE = "bench-service"
BACKEND_PORT, PROGRAMMED_PORT, INGRESS_PORT = 8080, 8081, 18080
INGRESS_HOST = "bench.sampan.test"
TARGETS = {"clusterip_rps_ratio_min": 0.9, "ingress_rps_ratio_min": 0.5,
           "endpoint_programming_p99_s": 1.0, "sync_1000x10_s": 2.0}
UPSTREAM_SLO = ("Kubernetes in-cluster network programming latency SLO: 99th percentile <= 30 s "
                "(from an endpoint change to the proxy's rules), https://github.com/kubernetes/"
                "community/blob/master/sig-scalability/slos/network_programming_latency.md")
SOURCE = Path(__file__).with_name("service_http.c")


# -- the backend and the load client -------------------------------------------------------------
def build_tool(work: Path) -> Path:
    """bench/service_http.c, static, in a directory the pods mount (a hostPath under /tmp)."""
    out = work / "bin" / "service_http"
    out.parent.mkdir(parents=True)
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(SOURCE)], check=True)
    return out


def _tool_pod(name: str, tool_dir: Path, command: list[str], **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                 "command": command,
                 "volumeMounts": [{"name": "tool", "mountPath": "/bench", "readOnly": True}],
                 **extra}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                     "containers": [container],
                     "volumes": [{"name": "tool", "hostPath": {"path": str(tool_dir),
                                                                "type": "Directory"}}]}}


def manifests(tool_dir: Path) -> list[dict[str, Any]]:
    backend = _tool_pod("backend", tool_dir, ["/bench/service_http", "serve", str(BACKEND_PORT),
                                              str(PROGRAMMED_PORT)],
                        readinessProbe={"tcpSocket": {"port": BACKEND_PORT},
                                        "periodSeconds": 1})
    client = _tool_pod("client", tool_dir, ["sleep", "3600"])
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
               "spec": {"selector": {"app": "backend"},
                        "ports": [{"name": "http", "port": 80, "targetPort": BACKEND_PORT}]}}
    # No selector: its EndpointSlice is the benchmark's own (endpoint programming).
    programmed = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "programmed"},
                  "spec": {"ports": [{"name": "http", "port": 80}]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "backend"},
               "spec": {"ingressClassName": "sampan", "rules": [{
                   "host": INGRESS_HOST, "http": {"paths": [{
                       "path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "backend",
                                               "port": {"number": 80}}}}]}}]}}
    return [backend, client, service, programmed, ingress]


@dataclass
class Target:
    name: str
    address: str
    port: int
    host_header: str = ""


def _proc_stat() -> list[int]:
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]  # user .. steal


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _find_tool(mode: bytes) -> int | None:
    """The pid of a ``service_http <mode>`` process (a container's, seen from the host)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[0].endswith(b"service_http") and argv[1] == mode:
                return int(entry)
    return None


class CpuSampler:
    """Samples the machine's CPU ticks and named processes' CPU time every 50 ms in a thread,
    so that a window given in CLOCK_MONOTONIC (the load client's) can be cut out afterwards."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self.samples: list[tuple[float, list[int], dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if "client" not in self.pids and (pid := _find_tool(b"load")) is not None:
                self.pids["client"] = pid
            self.samples.append((time.monotonic(), _proc_stat(),
                                 {n: _process_cpu_s(p) for n, p in self.pids.items()}))
            self._stop.wait(0.05)

    def window(self, start: float, end: float) -> dict[str, float]:
        """Cores used between ``start`` and ``end``, per process and for the whole machine."""
        first = next(s for s in self.samples if s[0] >= start)
        last = next(s for s in reversed(self.samples) if s[0] <= end)
        seconds = last[0] - first[0]
        ticks = [b - a for a, b in zip(first[1], last[1])]
        total = sum(ticks) or 1
        cpus = os.cpu_count() or 1
        out = {"machine_busy": round(cpus * (total - ticks[3] - ticks[4]) / total, 2),
               "machine_softirq": round(cpus * ticks[6] / total, 2)}
        for name in last[2]:
            if name in first[2]:
                out[name] = round((last[2][name] - first[2][name]) / seconds, 2)
        named = sum(v for k, v in out.items() if not k.startswith("machine"))
        out["rest"] = round(out["machine_busy"] - named, 2)
        return out


def run_load(cluster: NodeCluster, target: Target, mode: str, connections: int,
             seconds: float, warmup: float, pids: dict[str, int]) -> dict[str, Any]:
    """The load client in the client pod (kubectl exec), closed loop for ``seconds`` after
    ``warmup``, with the cores each party used in the measured window."""
    with CpuSampler(pids) as sampler:
        out = cluster.kubectl(
            "exec", "-n", NAMESPACE, "client", "--", "/bench/service_http", "load",
            target.address, str(target.port), str(connections), str(seconds), str(warmup), mode,
            *([target.host_header] if target.host_header else []),
            timeout=seconds + warmup + 60)
    result = json.loads(out.strip().splitlines()[-1])
    cores = sampler.window(result.pop("window_start"), result.pop("window_end"))
    result["cpu_cores"] = cores
    result.pop("client_cpu_user_s"), result.pop("client_cpu_sys_s")
    path_cores = sum(cores.get(k, 0.0) for k in ("client", "backend", "ingress",
                                                 "machine_softirq"))
    result["cpu_us_per_request"] = round(path_cores * 1e6 / max(result["rps"], 1.0), 1)
    return result


# -- endpoint programming ------------------------------------------------------------------------
class Probe:
    """``service_http probe`` in the node's network namespace: connects to the Service every
    millisecond and reports each change of reachability with a CLOCK_MONOTONIC timestamp (the
    clock of ``time.monotonic()``, so directly comparable with the write's)."""

    def __init__(self, host: AgentHost, tool: Path, address: str, seconds: float):
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host.netns}", str(tool), "probe", address, "80",
             "1000", str(seconds)], stdout=subprocess.PIPE, text=True)
        self.changes: queue.Queue[tuple[float, str]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            moment, state = line.split()
            self.changes.put((float(moment), state))

    async def wait(self, state: str, after: float, timeout: float = 10.0) -> float | None:
        """The moment the Service became ``state`` after ``after`` (None: not in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                moment, seen = self.changes.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.001)
                continue
            if seen == state and moment >= after:
                return moment
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.reader.join(5)


def programmed_slice(pod_ip: str, ready: bool) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "programmed-bench",
                         "labels": {"kubernetes.io/service-name": "programmed",
                                    "endpointslice.kubernetes.io/managed-by": "bench.sampan.io"}},
            "addressType": "IPv4",
            "endpoints": [_endpoint(pod_ip, ready)],
            "ports": [{"name": "http", "port": PROGRAMMED_PORT, "protocol": "TCP"}]}


def _endpoint(pod_ip: str, ready: bool) -> dict[str, Any]:
    return {"addresses": [pod_ip], "nodeName": "node-a",
            "conditions": {"ready": ready, "serving": ready, "terminating": False}}


async def endpoint_programming(client: Client, probe: Probe, pod_ip: str,
                               changes: int) -> dict[str, Any]:
    """Flip the hand-made slice's endpoint to ready and back ``changes`` times; each latency
    runs from just before the write is sent to the first connection the probe gets through
    (or, for the removal, the first one rejected)."""
    added: list[float] = []
    removed: list[float] = []
    missed = 0
    if await probe.wait("down", 0.0) is None:
        raise RuntimeError("the programmed Service answers before it has a ready endpoint")
    for i in range(changes):
        for ready, latencies in ((True, added), (False, removed)):
            sent = time.monotonic()
            patch = {"metadata": {"annotations": {
                        "endpoints.kubernetes.io/last-change-trigger-time":
                            format_trigger_time(time.time())}},
                     "endpoints": [_endpoint(pod_ip, ready)]}
            await client.patch("discovery.k8s.io/v1", "endpointslices", "programmed-bench",
                               patch, namespace=NAMESPACE)
            seen = await probe.wait("up" if ready else "down", sent)
            if seen is None:
                missed += 1
            else:
                latencies.append(seen - sent)
            await asyncio.sleep(0.05 + 0.1 * (i % 3))  # not in step with the proxy's syncs

    def figures(values: list[float]) -> dict[str, Any]:
        return {"p50_ms": round(percentile(values, 50) * 1000, 1),
                "p99_ms": round(percentile(values, 99) * 1000, 1),
                "max_ms": round(max(values) * 1000, 1) if values else None}
    return {"changes": changes, "missed_within_10s": missed,
            "endpoint_ready_to_routed": figures(added),
            "endpoint_unready_to_rejected": figures(removed)}


def proxy_metrics(text: str) -> dict[str, dict[str, Any]]:
    """The proxy's histograms from the agent's /metrics: count, sum and cumulative buckets."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("kubeproxy_network_programming_duration_seconds",
              "kubeproxy_sync_proxy_rules_duration_seconds",
              "kubeproxy_sync_partial_proxy_rules_duration_seconds",
              "kubeproxy_sync_full_proxy_rules_duration_seconds")
    out: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        entry = out.setdefault(family.name, {"count": 0.0, "sum": 0.0, "buckets": {}})
        for sample in family.samples:
            if sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
            elif sample.name.endswith("_bucket"):
                entry["buckets"][float(sample.labels["le"])] = sample.value
    return out


def histogram_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Count, mean and bucket-bound p50/p99 of what was observed between two scrapes."""
    count = after["count"] - before.get("count", 0.0)
    if count <= 0:
        return {"count": 0}
    buckets = {le: n - before.get("buckets", {}).get(le, 0.0)
               for le, n in after["buckets"].items()}

    def bound(q: float) -> float:
        return next(le for le, n in sorted(buckets.items()) if n >= q * count)
    return {"count": int(count),
            "mean_ms": round(1000 * (after["sum"] - before.get("sum", 0.0)) / count, 1),
            "p50_le_s": bound(0.5), "p99_le_s": bound(0.99)}


# -- rule sync -----------------------------------------------------------------------------------
def rule_sync(runs: int = 3) -> dict[str, Any]:
    """``sampan.proxy.bench.measure_sync`` of 1,000 x 10 in a scratch network namespace."""
    from sampan.proxy.bench import measure_sync

    netns = f"sbsvc{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        nft = ["nsenter", f"--net=/run/netns/{netns}", "nft"]
        times = [asyncio.run(measure_sync(1000, 10, nft=nft)) for _ in range(runs)]
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)

    def median(values: list[float]) -> float:
        return round(sorted(values)[len(values) // 2], 3)
    return {"services": 1000, "endpoints_per_service": 10, "runs": runs,
            "script_kib": times[0].script_bytes // 1024,
            "full_generate_s": median([t.generate_s for t in times]),
            "full_apply_s": median([t.full_apply_s for t in times]),
            "full_total_s": median([t.generate_s + t.full_apply_s for t in times]),
            "partial_generate_s": median([t.partial_generate_s for t in times]),
            "partial_apply_s": median([t.partial_apply_s for t in times]),
            "partial_total_s": median([t.partial_generate_s + t.partial_apply_s
                                       for t in times])}


# -- the run -------------------------------------------------------------------------------------
def start_ingress(cluster: NodeCluster, host: AgentHost, work: Path) -> subprocess.Popen | None:
    """The ingress controller in the node's namespace on ``node IP:18080`` (None when the
    module is not there)."""
    try:
        import sampan.ingress.run  # noqa: F401
    except ImportError:
        return None
    log = open(work / "ingress.log", "ab")
    process = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{host.netns}", sys.executable, "-m", "sampan.ingress",
         "--kubeconfig", cluster.server.kubeconfig, "--http-address",
         f"{host.ip}:{INGRESS_PORT}", "--https-address", "", "--publish-address", host.ip],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return process


def _ingress_answers(host: AgentHost) -> bool:
    code = ("import urllib.request; r = urllib.request.Request("
            f"'http://{host.ip}:{INGRESS_PORT}/', headers={{'Host': {INGRESS_HOST!r}}}); "
            "print(urllib.request.urlopen(r, timeout=2).read().decode())")
    r = host.nsenter(sys.executable, "-c", code, timeout=10)
    return r.returncode == 0 and "hello from" in r.stdout


async def _programming(cluster: NodeCluster, host: AgentHost, tool: Path, pod_ip: str,
                       changes: int) -> dict[str, Any]:
    client = Client(load_kubeconfig(cluster.server.kubeconfig))
    try:
        await client.create("discovery.k8s.io/v1", "endpointslices",
                            programmed_slice(pod_ip, False), namespace=NAMESPACE)
        vip = (await client.get("v1", "services", "programmed",
                                namespace=NAMESPACE))["spec"]["clusterIP"]
        metrics_path = "/api/v1/nodes/node-a/proxy/metrics"
        before = proxy_metrics(cluster.kubectl("get", "--raw", metrics_path))
        probe = Probe(host, tool, vip, seconds=changes * 4 + 30)
        try:
            result = await endpoint_programming(client, probe, pod_ip, changes)
        finally:
            probe.stop()
        after = proxy_metrics(cluster.kubectl("get", "--raw", metrics_path))
        result["proxy_metrics_during_test"] = {
            name: histogram_delta(before.get(name, {}), value) for name, value in after.items()}
        return result
    finally:
        await client.close()


def run(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    tool = build_tool(work)
    cluster = start_node_cluster(work / "cluster")
    ingress: subprocess.Popen | None = None
    try:
        host = cluster.add_node("node-a")
        cluster.kubectl("create", "namespace", NAMESPACE)
        for obj in manifests(tool.parent):
            cluster.kubectl("create", "-n", NAMESPACE, "-f", "-", input=json.dumps(obj))
        backend = cluster.wait_pod(NAMESPACE, "backend")
        cluster.wait_pod(NAMESPACE, "client")
        backend_ip = backend["status"]["podIP"]
        cluster_ip = cluster.json("get", "service", "-n", NAMESPACE, "backend")["spec"][
            "clusterIP"]
        targets = [Target("direct (pod IP)", backend_ip, BACKEND_PORT),
                   Target("ClusterIP", cluster_ip, 80)]
        ingress = start_ingress(cluster, host, work)
        ingress_error = "sampan.ingress is not there" if ingress is None else ""
        if ingress is not None:
            try:
                wait_for(lambda: _ingress_answers(host), 60, "the Ingress to answer")
                targets.append(Target("Ingress", host.ip, INGRESS_PORT, INGRESS_HOST))
            except AssertionError as e:
                ingress_error = f"the Ingress did not answer: {str(e)[:300]}"
        wait_for(lambda: _cluster_ip_answers(host, cluster_ip), 30, "the ClusterIP to answer")
        backend_pid = _find_tool(b"serve")
        assert backend_pid is not None and host.process is not None
        pids = {"backend": backend_pid, "node_agent": host.process.pid,
                "apiserver": cluster.server.process.pid}
        if ingress is not None:
            pids["ingress"] = ingress.pid

        busy_before = machine_busy_cores(2.0)
        load: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for mode in ("keepalive", "close"):
            load[mode] = {t.name: [] for t in targets}
            for i in range(args.rounds):  # interleaved, so drift hits every path alike
                for target in targets:
                    r = run_load(cluster, target, mode, args.connections, args.seconds,
                                 args.warmup, pids)
                    load[mode][target.name].append(r)
                    print(f"  round {i + 1} {mode:<9} {target.name:<16} {r['rps']:>9.0f} req/s "
                          f"p99 {r['p99_us']} us", flush=True)
        programming = asyncio.run(_programming(cluster, host, tool, backend_ip, args.changes))
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        cluster.kubectl("delete", "pods", "-n", NAMESPACE, "--all", "--grace-period=1",
                        "--timeout=60s", check=False)
    finally:
        if ingress is not None:
            ingress.terminate()
            try:
                ingress.wait(20)
            except subprocess.TimeoutExpired:
                ingress.kill()
                ingress.wait(5)
        cluster.stop()
    sync = rule_sync()
    return {"setup": {"connections": args.connections, "seconds": args.seconds,
                      "warmup_s": args.warmup, "rounds": args.rounds, "backend_ip": backend_ip,
                      "cluster_ip": cluster_ip,
                      "machine_busy_cores_before_load": busy_before,
                      "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]},
            "load": summarize(load), "ratios": ratios(load), "load_rounds": load,
            "ingress_error": ingress_error,
            "endpoint_programming": programming, "rule_sync": sync}


def _cluster_ip_answers(host: AgentHost, cluster_ip: str) -> bool:
    try:
        return "hello from" in http_get(host, f"http://{cluster_ip}/", timeout=2)
    except AssertionError:
        return False


def machine_busy_cores(seconds: float) -> float:
    """Busy cores of the whole machine over ``seconds`` (others' work included)."""
    before = _proc_stat()
    time.sleep(seconds)
    ticks = [b - a for a, b in zip(before, _proc_stat())]
    return round((os.cpu_count() or 1) * (1 - (ticks[3] + ticks[4]) / (sum(ticks) or 1)), 2)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summarize(load: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per path: the median over rounds of req/s and latency, errors summed, mean cores."""
    out: dict[str, dict[str, Any]] = {}
    for mode, by_target in load.items():
        out[mode] = {}
        for name, rounds in by_target.items():
            cores = {k: round(sum(r["cpu_cores"].get(k, 0.0) for r in rounds) / len(rounds), 2)
                     for k in rounds[0]["cpu_cores"]}
            out[mode][name] = {
                "rps": round(_median([r["rps"] for r in rounds]), 1),
                "cpu_us_per_request": round(_median([r["cpu_us_per_request"] for r in rounds]), 1),
                **{k: round(_median([r[k] for r in rounds])) for k in
                   ("p50_us", "p90_us", "p99_us")},
                "max_us": max(r["max_us"] for r in rounds),
                "errors": sum(r["errors"] for r in rounds),
                "requests": sum(r["requests"] for r in rounds), "cpu_cores": cores}
    return out


def ratios(load: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Each path against direct in the same round, the median over rounds."""
    out: dict[str, dict[str, Any]] = {}
    for mode, by_target in load.items():
        direct = by_target["direct (pod IP)"]
        out[mode] = {}
        for name, rounds in by_target.items():
            if name == "direct (pod IP)":
                continue
            pairs = list(zip(rounds, direct))
            out[mode][name] = {
                "rps": round(_median([r["rps"] / d["rps"] for r, d in pairs]), 3),
                "rps_per_round": [round(r["rps"] / d["rps"], 3) for r, d in pairs],
                "p50_latency": round(_median([r["p50_us"] / max(d["p50_us"], 1)
                                              for r, d in pairs]), 2),
                "p99_latency": round(_median([r["p99_us"] / max(d["p99_us"], 1)
                                              for r, d in pairs]), 2)}
    return out


CPU_COLUMNS = {"machine_busy": "busy", "machine_softirq": "sirq", "client": "clnt",
               "backend": "back", "ingress": "ingr", "node_agent": "agent", "apiserver": "api",
               "rest": "rest"}


def _proxy_summary(metrics: dict[str, dict[str, Any]]) -> str:
    names = {"kubeproxy_network_programming_duration_seconds": "network programming",
             "kubeproxy_sync_partial_proxy_rules_duration_seconds": "partial syncs",
             "kubeproxy_sync_full_proxy_rules_duration_seconds": "full syncs"}
    parts = []
    for metric, label in names.items():
        h = metrics.get(metric, {"count": 0})
        parts.append(f"{label} n={h['count']}" + (
            f" mean {h['mean_ms']} ms p99 <= {h['p99_le_s']} s" if h["count"] else ""))
    return "; ".join(parts)


def report(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [f"service benchmark: one backend pod, {setup['connections']} connections, "
             f"{setup['seconds']} s after {setup['warmup_s']} s warm-up, {setup['rounds']} "
             "interleaved rounds (medians), load client in a second pod on the same node",
             f"  machine busy before the load: {setup['machine_busy_cores_before_load']} cores "
             f"(loadavg {' '.join(setup['loadavg_before'])})" + (
                 "  -- SHARED MACHINE: req/s ratios are noisy, cpu us/req is the steadier "
                 "figure" if setup["machine_busy_cores_before_load"] > 0.3 else ""),
             f"  {'mode / path':<28} {'req/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'errors':>6} {'cpu us/req':>10}  cores: "
             + " ".join(f"{v:>5}" for v in CPU_COLUMNS.values())]
    for mode, by_target in result["load"].items():
        for name, r in by_target.items():
            ratio = result["ratios"][mode].get(name, {}).get("rps", 1.0)
            cpu = r["cpu_cores"]
            lines.append(
                f"  {mode + ' ' + name:<28} {r['rps']:>9.0f} {ratio:>6.2f} "
                f"{r['p50_us'] / 1000:>7.2f} {r['p99_us'] / 1000:>7.2f} {r['errors']:>6} "
                f"{r['cpu_us_per_request']:>10}  "
                + " ".join(f"{cpu.get(k, '-')!s:>5}" for k in CPU_COLUMNS))
    lines.append(f"  targets: ClusterIP >= {TARGETS['clusterip_rps_ratio_min']} of direct req/s,"
                 f" Ingress >= {TARGETS['ingress_rps_ratio_min']}; ratio = median of per-round "
                 "ratios: " + "; ".join(f"{m} {n} {v['rps_per_round']}"
                                        for m, by in result["ratios"].items()
                                        for n, v in by.items()))
    if result["ingress_error"]:
        lines.append(f"  Ingress not measured: {result['ingress_error']}")
    p = result["endpoint_programming"]
    add, rem = p["endpoint_ready_to_routed"], p["endpoint_unready_to_rejected"]
    lines += [
        f"  endpoint programming ({p['changes']} changes, missed {p['missed_within_10s']}):",
        f"    ready -> routed    p50 / p99 / max {add['p50_ms']} / {add['p99_ms']} / "
        f"{add['max_ms']} ms   (target p99 < {TARGETS['endpoint_programming_p99_s'] * 1000:.0f}"
        " ms)",
        f"    unready -> rejected p50 / p99 / max {rem['p50_ms']} / {rem['p99_ms']} / "
        f"{rem['max_ms']} ms",
        "    proxy's own metrics during the test: " + _proxy_summary(
            p["proxy_metrics_during_test"])]
    s = result["rule_sync"]
    lines += [
        f"  rule sync {s['services']} x {s['endpoints_per_service']} ({s['script_kib']} KiB, "
        f"median of {s['runs']}): full {s['full_total_s']} s (generate {s['full_generate_s']} "
        f"+ nft {s['full_apply_s']}), partial {s['partial_total_s']} s (generate "
        f"{s['partial_generate_s']} + nft {s['partial_apply_s']})   (target < "
        f"{TARGETS['sync_1000x10_s']} s)",
        f"  {UPSTREAM_SLO}"]
    return "\n".join(lines)


NOTES = [
    "backend: bench/service_http.c serve (epoll, one thread, HTTP/1.1 keep-alive, 14-byte body) "
    "in a busybox pod; client: service_http load (epoll, one thread, closed loop: every "
    "connection has one request in flight) in a second pod on the same node, run by kubectl "
    "exec. Both C and static so that on 2 cores the path under test, not the tools, shows",
    "keepalive: requests on long-lived connections (NAT cost only per packet); close: a new "
    "TCP connection per request (connect included in the latency; NAT and conntrack set up "
    "per request), closed with RST so no TIME_WAIT piles up",
    "direct = pod IP:8080 (the limit); ClusterIP = the Service's VIP:80 DNATed by the node's "
    "nftables proxy to the same pod; Ingress = the node's address:18080 with a Host header, "
    "sampan.ingress (Python) in the node's network namespace proxying to the pod",
    "cpu cores over the measured window (sampled every 50 ms from /proc): busy = the whole "
    "machine (of 2), sirq = softirq (packet processing, charged to no process), then each "
    "process's utime+stime: load client, backend, ingress controller, node agent (runs the "
    "proxy), API server; rest = busy - sirq - those (controllers, scheduler, kubectl exec)",
    "cpu us/req = (client + backend + ingress + softirq cores) / req/s: the CPU the path "
    "costs per request, steadier than req/s when other work shares the 2 cores (softirq run "
    "in a process's context may also be in its stime, so this is an upper bound, alike for "
    "every path)",
    "endpoint programming: a selector-less Service with a hand-made EndpointSlice whose one "
    "endpoint (the backend pod, port 8081) is patched ready/unready; latency from just before "
    "the PATCH to the first connection a probe in the node's namespace (connect every 1 ms) "
    "gets through (or is rejected); API write, watch, proxy sync and nft apply included",
    "proxy's own histograms: kube-proxy-named metrics scraped from the agent before and after "
    "the endpoint test; network programming is measured by the proxy from the slice's "
    "last-change-trigger-time annotation (set by the benchmark to the patch time) to the end "
    "of the sync, bucket bounds only (0.25 s resolution)",
    "rule sync: sampan.proxy.bench.measure_sync in a scratch network namespace, after the "
    "cluster stopped; median of 3",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.service needs root (it runs real containers)", file=sys.stderr)
        return 2
    if shutil.which("gcc") is None:
        print("bench.service needs gcc (it builds bench/service_http.c)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sampan-bench-service-"))
    started = time.monotonic()
    try:
        result = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    print(report(result), flush=True)
    record = {"benchmark": "service",
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine.describe(), "result": result, "targets": TARGETS,
              "upstream": UPSTREAM_SLO, "notes": NOTES}
    out = Path(__file__).parent / "results" / f"service-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
