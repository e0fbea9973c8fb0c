"""Node, pod and container usage for the kubelet's ``/stats/summary`` and ``/metrics/resource``.

Numbers come from where cadvisor reads them: cgroups (v1: ``cpuacct.usage``,
``memory.usage_in_bytes``, ``memory.stat``; v2: ``cpu.stat``, ``memory.current``,
``memory.stat``) at the container (the runtime's cgroup path), pod
(``<cgroup-root>/kubepods[/<qos>]/pod<uid>``) and pods level; ``/proc/stat`` and
``/proc/meminfo`` for the node; ``/proc/<pid>/net/dev`` of the pod's pause or of one of its
running containers for a pod's network;
``statvfs`` and directory walks (cached, as they are the expensive part) for filesystems.

The working set is usage minus inactive file pages, as the kubelet's eviction manager and
metrics-server understand it. ``usageNanoCores`` is the rate between the last two samples of a
cgroup: a background sampler takes one every 10 s (cadvisor's housekeeping interval), and every
read refreshes it when the last one is older than a second.

Upstream: k8s.io/kubelet/pkg/apis/stats/v1alpha1/types.go (the summary), pkg/kubelet/server/
stats (the provider), pkg/kubelet/metrics/collectors/resource_metrics.go (/metrics/resource).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.node import cri

log = logging.getLogger(__name__)

Object = dict[str, Any]

HOUSEKEEPING_INTERVAL = 10.0
MIN_SAMPLE_AGE = 1.0          # a read takes a new sample when the last is older than this
DU_CACHE_SECONDS = 60.0       # directory walks are reused this long
_UNLIMITED = 1 << 62          # v1 reports "no limit" as a huge page-aligned number
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- cgroups ---------------------------------------------------------------------------------------


@dataclass
class CgroupSample:
    time: float
    cpu_ns: int                  # cumulative CPU time
    memory_usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    memory_limit: int = 0        # 0: no limit


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return 0
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                try:
                    out[key] = int(value)
                except ValueError:
                    pass
    except OSError:
        pass
    return out


class Cgroups:
    """Reads cgroup statistics under ``mount`` (``/sys/fs/cgroup``), v1 or v2."""

    def __init__(self, mount: Path = Path("/sys/fs/cgroup"), version: int | None = None):
        self.mount = Path(mount)
        self.version = version or (2 if (self.mount / "cgroup.controllers").exists() else 1)

    def _v1(self, controller: str, path: str) -> Path:
        return self.mount / controller / path.lstrip("/")

    def exists(self, path: str) -> bool:
        if self.version == 2:
            return (self.mount / path.lstrip("/")).is_dir()
        return self._v1("memory", path).is_dir() or self._v1("cpuacct", path).is_dir()

    def sample(self, path: str) -> CgroupSample | None:
        return self._sample_v2(path) if self.version == 2 else self._sample_v1(path)

    def _sample_v1(self, path: str) -> CgroupSample | None:
        now = time.time()
        cpu = _read_int(self._v1("cpuacct", path) / "cpuacct.usage")
        memory_dir = self._v1("memory", path)
        usage = _read_int(memory_dir / "memory.usage_in_bytes")
        if cpu is None and usage is None:
            return None
        stat = _read_keyed(memory_dir / "memory.stat")
        usage = usage or 0
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        limit = _read_int(memory_dir / "memory.limit_in_bytes") or 0
        return CgroupSample(now, cpu or 0, usage, max(usage - inactive, 0),
                            stat.get("total_rss", stat.get("rss", 0)),
                            stat.get("total_pgfault", stat.get("pgfault", 0)),
                            stat.get("total_pgmajfault", stat.get("pgmajfault", 0)),
                            0 if limit >= _UNLIMITED else limit)

    def _sample_v2(self, path: str) -> CgroupSample | None:
        now = time.time()
        directory = self.mount / path.lstrip("/")
        cpu_stat = _read_keyed(directory / "cpu.stat")
        usage = _read_int(directory / "memory.current")
        if not cpu_stat and usage is None:
            return None
        stat = _read_keyed(directory / "memory.stat")
        usage = usage or 0
        return CgroupSample(now, cpu_stat.get("usage_usec", 0) * 1000, usage,
                            max(usage - stat.get("inactive_file", 0), 0), stat.get("anon", 0),
                            stat.get("pgfault", 0), stat.get("pgmajfault", 0),
                            _read_int(directory / "memory.max") or 0)

    def pids(self, path: str) -> int | None:
        if self.version == 2:
            return _read_int(self.mount / path.lstrip("/") / "pids.current")
        return _read_int(self._v1("pids", path) / "pids.current")


# -- the node from /proc ---------------------------------------------------------------------------


class ProcFS:
    def __init__(self, root: Path = Path("/proc")):
        self.root = Path(root)

    def boot_time(self) -> float:
        for line in self._lines("stat"):
            if line.startswith("btime "):
                return float(line.split()[1])
        return 0.0

    def cpu_ns(self) -> int:
        for line in self._lines("stat"):
            if line.startswith("cpu "):
                fields = [int(v) for v in line.split()[1:]]
                # user nice system idle iowait irq softirq steal: busy = all but idle, iowait
                busy = sum(fields[:8]) - fields[3] - fields[4]
                return busy * 1_000_000_000 // _CLK_TCK
        return 0

    def memory(self) -> tuple[float, dict[str, int]]:
        info: dict[str, int] = {}
        for line in self._lines("meminfo"):
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                info[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
        return time.time(), info

    def net_dev(self, pid: int | str = "self") -> list[Object]:
        """Interfaces of the network namespace ``pid`` lives in (loopback left out)."""
        out = []
        for line in self._lines(f"{pid}/net/dev")[2:]:
            name, _, rest = line.partition(":")
            name = name.strip()
            values = rest.split()
            if name == "lo" or len(values) < 16:
                continue
            out.append({"name": name, "rxBytes": int(values[0]), "rxErrors": int(values[2]),
                        "txBytes": int(values[8]), "txErrors": int(values[10])})
        return out

    def rlimit(self) -> tuple[int, int]:
        maxpid = _read_int(self.root / "sys/kernel/pid_max") or 0
        threads = 0
        for line in self._lines("loadavg"):
            parts = line.split()
            if len(parts) >= 4 and "/" in parts[3]:
                threads = int(parts[3].split("/")[1])
        return maxpid, threads

    def _lines(self, name: str) -> list[str]:
        try:
            return (self.root / name).read_text().splitlines()
        except OSError:
            return []


# -- filesystems -----------------------------------------------------------------------------------


def _walk(path: Path) -> tuple[int, int]:
    """(bytes, inodes) used under ``path``, not crossing into other filesystems."""
    total = inodes = 0
    try:
        root_dev = os.lstat(path).st_dev
    except OSError:
        return 0, 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != root_dev:
                    continue
                inodes += 1
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total, inodes + 1


class DiskUsage:
    """Directory sizes, each walked at most once a minute."""

    def __init__(self, ttl: float = DU_CACHE_SECONDS):
        self.ttl = ttl
        self._cache: dict[str, tuple[float, int, int]] = {}

    def usage(self, path: Path) -> tuple[int, int]:
        key = str(path)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        used, inodes = _walk(path)
        self._cache[key] = (now, used, inodes)
        return used, inodes

    def forget_missing(self) -> None:
        for key in [k for k in self._cache if not os.path.exists(k)]:
            del self._cache[key]


def fs_stats(path: Path, now: float) -> Object | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {"time": _rfc3339(now), "availableBytes": st.f_bavail * st.f_frsize,
            "capacityBytes": st.f_blocks * st.f_frsize,
            "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "inodesFree": st.f_ffree, "inodes": st.f_files, "inodesUsed": st.f_files - st.f_ffree}


# -- the provider ----------------------------------------------------------------------------------


def qos_class(pod: Object) -> str:
    """status.qosClass, or computed as upstream's GetPodQOS (requests and limits of every
    container for cpu and memory)."""
    known = (pod.get("status") or {}).get("qosClass")
    if known:
        return known
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or ()) + list(spec.get("initContainers") or ())
    any_set = False
    guaranteed = True
    for c in containers:
        resources = c.get("resources") or {}
        req, lim = resources.get("requests") or {}, resources.get("limits") or {}
        for name in ("cpu", "memory"):
            r, l = req.get(name, lim.get(name)), lim.get(name)
            if r is not None or l is not None:
                any_set = True
            if l is None or _quantity(r) != _quantity(l):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _quantity(raw: Any) -> Any:
    from sampan.api.validation import QuantityError, parse_quantity

    try:
        return parse_quantity(raw).value
    except (QuantityError, AttributeError, TypeError):
        return raw


def pod_cgroup(cgroup_root: str, pod: Object) -> str:
    qos = qos_class(pod)
    uid = pod["metadata"]["uid"]
    base = f"{cgroup_root.rstrip('/')}/kubepods"
    if qos == "Guaranteed":
        return f"{base}/pod{uid}"
    return f"{base}/{qos.lower()}/pod{uid}"


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class StatsProvider:
    """``summary()`` and ``resource_metrics()`` of one node."""

    def __init__(self, runtime: cri.Runtime, resolver: Any, node_name: str, cgroup_root: str,
                 data_dir: Path, *, pods: Callable[[], list[Object]] | None = None,
                 cgroups: Cgroups | None = None, proc: ProcFS | None = None):
        self.runtime = runtime
        self.resolver = resolver
        self.node_name = node_name
        self.cgroup_root = "/" + cgroup_root.strip("/")
        self.data_dir = Path(data_dir)
        self.pods = pods or (lambda: [])
        self.cgroups = cgroups or Cgroups()
        self.proc = proc or ProcFS()
        self.du = DiskUsage()
        # path → (previous sample, last sample): usageNanoCores is their rate
        self._samples: dict[str, tuple[CgroupSample | None, CgroupSample]] = {}
        self._task: asyncio.Task | None = None

    # -- sampling ----------------------------------------------------------------------------
    def _cgroup(self, path: str) -> tuple[CgroupSample | None, CgroupSample | None]:
        """(previous, last) samples of a cgroup, taking a new one when the last is stale."""
        prev, last = self._samples.get(path, (None, None))
        if last is None or time.time() - last.time >= MIN_SAMPLE_AGE:
            new = self.cgroups.sample(path)
            if new is None:
                self._samples.pop(path, None)
                return None, None
            if last is not None and new.cpu_ns < last.cpu_ns:
                last = None  # a new cgroup by the same name
            prev, last = last, new
            self._samples[path] = (prev, last)
        return prev, last

    def _node_cpu(self) -> tuple[CgroupSample | None, CgroupSample]:
        prev, last = self._samples.get("node", (None, None))
        if last is None or time.time() - last.time >= MIN_SAMPLE_AGE:
            now, info = self.proc.memory()
            usage = info.get("MemTotal", 0) - info.get("MemFree", 0)
            new = CgroupSample(now, self.proc.cpu_ns(), usage,
                               max(usage - info.get("Inactive(file)", 0), 0),
                               info.get("AnonPages", 0), 0, 0, info.get("MemTotal", 0))
            prev, last = last, new
            self._samples["node"] = (prev, last)
        return prev, last

    async def start(self) -> None:
        """Sample every cgroup we report on every 10 s, so rates are ready when asked for."""
        self._task = asyncio.create_task(self._housekeeping(), name="stats-housekeeping")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self._collect(with_fs=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stats housekeeping failed")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    # -- collection --------------------------------------------------------------------------
    async def _collect(self, with_fs: bool) -> tuple[Object, list[Object]]:
        sandboxes = await self.runtime.list_sandboxes()
        containers = await self.runtime.list_containers()
        pods = {p["metadata"]["uid"]: p for p in self.pods()}
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._build, pods, sandboxes, containers, with_fs)

    def _build(self, pods: dict[str, Object], sandboxes: list[cri.Sandbox],
               containers: list[cri.ContainerStatus], with_fs: bool) -> tuple[Object, list[Object]]:
        now = time.time()
        running = {s.config.uid: s for s in sorted(sandboxes, key=lambda s: s.created_at)
                   if s.state == cri.State.RUNNING}
        by_sandbox: dict[str, list[cri.ContainerStatus]] = {}
        for c in containers:
            if c.state == cri.State.RUNNING:
                by_sandbox.setdefault(c.sandbox_id, []).append(c)
        node = self._node_stats(now, with_fs)
        out = []
        for uid, sandbox in running.items():
            pod = pods.get(uid)
            if pod is None:
                pod = {"metadata": {"uid": uid, "name": sandbox.config.name,
                                    "namespace": sandbox.config.namespace}}
            out.append(self._pod_stats(pod, sandbox, by_sandbox.get(sandbox.id, []), now, with_fs))
        return node, out

    def _cpu(self, prev: CgroupSample | None, last: CgroupSample) -> Object:
        cpu: Object = {"time": _rfc3339(last.time), "_ts": last.time,
                       "usageCoreNanoSeconds": last.cpu_ns}
        if prev is not None and last.time > prev.time:
            cpu["usageNanoCores"] = int((last.cpu_ns - prev.cpu_ns) / (last.time - prev.time))
        return cpu

    @staticmethod
    def _memory(last: CgroupSample, limit: int = 0) -> Object:
        memory: Object = {"time": _rfc3339(last.time), "_ts": last.time}
        limit = limit or last.memory_limit
        if limit:
            memory["availableBytes"] = max(limit - last.working_set, 0)
        memory.update({"usageBytes": last.memory_usage, "workingSetBytes": last.working_set,
                       "rssBytes": last.rss, "pageFaults": last.page_faults,
                       "majorPageFaults": last.major_page_faults})
        return memory

    def _node_stats(self, now: float, with_fs: bool) -> Object:
        prev, last = self._node_cpu()
        boot = self.proc.boot_time()
        node: Object = {"nodeName": self.node_name, "systemContainers": [],
                        "startTime": _rfc3339(boot), "cpu": self._cpu(prev, last),
                        "memory": self._memory(last)}
        kubepods = f"{self.cgroup_root}/kubepods"
        pods_prev, pods_last = self._cgroup(kubepods)
        if pods_last is not None:
            node["systemContainers"].append({
                "name": "pods", "startTime": _rfc3339(boot),
                "cpu": self._cpu(pods_prev, pods_last), "memory": self._memory(pods_last)})
        interfaces = self.proc.net_dev()
        if interfaces:
            node["network"] = _network(now, interfaces)
        if with_fs:
            fs = fs_stats(self.data_dir, now)
            if fs is not None:
                node["fs"] = fs
            images = self.data_dir / "images"
            image_fs = fs_stats(images if images.exists() else self.data_dir, now)
            if image_fs is not None:
                image_fs["usedBytes"], image_fs["inodesUsed"] = self.du.usage(images)
                node["runtime"] = {"imageFs": image_fs, "containerFs": dict(image_fs)}
            maxpid, procs = self.proc.rlimit()
            node["rlimit"] = {"time": _rfc3339(now), "maxpid": maxpid, "curproc": procs}
        return node

    def _pod_stats(self, pod: Object, sandbox: cri.Sandbox, containers: list[cri.ContainerStatus],
                   now: float, with_fs: bool) -> Object:
        meta = pod["metadata"]
        uid = meta["uid"]
        stats: Object = {"podRef": {"name": meta.get("name", ""),
                                    "namespace": meta.get("namespace", ""), "uid": uid},
                         "startTime": _rfc3339(sandbox.created_at), "containers": []}
        fs_total = 0
        for c in sorted(containers, key=lambda c: c.name):
            if c.labels.get("io.kubernetes.container.name") == "POD":
                continue
            started = c.started_at or c.created_at
            entry: Object = {"name": c.name, "startTime": _rfc3339(started), "_ts": started}
            path = self.runtime.cgroup_path(c.id)
            if path:
                prev, last = self._cgroup(path)
                if last is not None:
                    entry["cpu"] = self._cpu(prev, last)
                    entry["memory"] = self._memory(last)
            if with_fs:
                rootfs, logs = self._container_fs(c, pod, now)
                entry["rootfs"], entry["logs"] = rootfs, logs
                fs_total += rootfs.get("usedBytes", 0) + logs.get("usedBytes", 0)
            stats["containers"].append(entry)
        prev, last = self._cgroup(pod_cgroup(self.cgroup_root, pod))
        if last is not None:
            stats["cpu"] = self._cpu(prev, last)
            stats["memory"] = self._memory(last)
        # the pod's network namespace, seen through its pause process or (pods without one)
        # any of its running containers
        pid = sandbox.pid or next((c.pid for c in containers
                                   if c.pid and c.state is cri.State.RUNNING), None)
        if pid:
            interfaces = self.proc.net_dev(pid)
            if interfaces:
                stats["network"] = _network(now, interfaces)
        if with_fs:
            volumes = self._volumes(uid, now)
            if volumes:
                stats["volume"] = volumes
            fs_total += sum(v["usedBytes"] for v in volumes if v.get("_local"))
            for v in volumes:
                v.pop("_local", None)
            base = fs_stats(self.data_dir, now) or {}
            stats["ephemeral-storage"] = {**base, "usedBytes": fs_total}
            stats["ephemeral-storage"].pop("inodes", None)
        pids = self.cgroups.pids(pod_cgroup(self.cgroup_root, pod))
        if pids is not None:
            stats["process_stats"] = {"process_count": pids}
        return stats

    def _container_fs(self, c: cri.ContainerStatus, pod: Object, now: float) -> tuple[Object, Object]:
        base = fs_stats(self.data_dir, now) or {"time": _rfc3339(now)}
        upper = self.data_dir / "containers" / c.id / "upper"
        used, inodes = self.du.usage(upper)
        rootfs = {**base, "usedBytes": used, "inodesUsed": inodes}
        meta = pod["metadata"]
        log_dir = (self.data_dir / "logs" /
                   f"{meta.get('namespace', '')}_{meta.get('name', '')}_{meta['uid']}" / c.name)
        if c.log_path is not None:
            log_dir = Path(c.log_path).parent
        used, inodes = self.du.usage(log_dir)
        logs = {**base, "usedBytes": used, "inodesUsed": inodes}
        return rootfs, logs

    def _volumes(self, uid: str, now: float) -> list[Object]:
        out = []
        volumes = self.data_dir / "pods" / uid / "volumes"
        try:
            plugins = sorted(p for p in volumes.iterdir() if p.is_dir())
        except OSError:
            return out
        for plugin in plugins:
            for volume in sorted(plugin.iterdir()):
                base = fs_stats(volume, now)
                if base is None:
                    continue
                used, inodes = self.du.usage(volume)
                local = plugin.name == "kubernetes.io~empty-dir" and \
                    os.stat(volume).st_dev == os.stat(self.data_dir).st_dev
                out.append({**base, "usedBytes": used, "inodesUsed": inodes,
                            "name": volume.name, "_local": local})
        return out

    # -- the two documents -------------------------------------------------------------------
    async def summary(self) -> Object:
        """``/stats/summary``."""
        node, pods = await self._collect(with_fs=True)
        self.du.forget_missing()
        return _public({"node": node, "pods": pods})

    async def resource_metrics(self) -> str:
        """``/metrics/resource`` in the Prometheus text format, with sample timestamps."""
        try:
            node, pods = await self._collect(with_fs=False)
        except Exception:
            log.exception("collecting resource metrics failed")
            return _SCRAPE_ERROR_HELP + "resource_scrape_error 1\n"
        return render_resource_metrics(node, pods)


# -- /metrics/resource -------------------------------------------------------------------------------

_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
}
_SCRAPE_ERROR_HELP = ("# HELP resource_scrape_error [STABLE] 1 if there was an error while "
                      "getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\n")


def _public(value: Any) -> Any:
    """Without the private keys (``_ts``: precise sample times kept for /metrics/resource)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_resource_metrics(node: Object, pods: list[Object]) -> str:
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: dict[str, str], value: float, stamp: float | None) -> None:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{label_text}}}" if label_text else name
        suffix = f" {int(stamp * 1000)}" if stamp else ""
        samples[name].append(f"{series} {value!r}{suffix}")

    cpu, memory = node.get("cpu"), node.get("memory")
    if cpu:
        add("node_cpu_usage_seconds_total", {}, cpu["usageCoreNanoSeconds"] / 1e9, cpu["_ts"])
    if memory:
        add("node_memory_working_set_bytes", {}, float(memory["workingSetBytes"]), memory["_ts"])
    for pod in pods:
        ref = pod["podRef"]
        pod_labels = {"namespace": ref["namespace"], "pod": ref["name"]}
        for c in pod.get("containers") or ():
            labels = {**pod_labels, "container": c["name"]}
            if "cpu" in c and "memory" in c:
                add("container_cpu_usage_seconds_total", labels,
                    c["cpu"]["usageCoreNanoSeconds"] / 1e9, c["cpu"]["_ts"])
                add("container_memory_working_set_bytes", labels,
                    float(c["memory"]["workingSetBytes"]), c["memory"]["_ts"])
                add("container_start_time_seconds", labels, c["_ts"], c["_ts"])
        if "cpu" in pod:
            add("pod_cpu_usage_seconds_total", pod_labels,
                pod["cpu"]["usageCoreNanoSeconds"] / 1e9, pod["cpu"]["_ts"])
        if "memory" in pod:
            add("pod_memory_working_set_bytes", pod_labels,
                float(pod["memory"]["workingSetBytes"]), pod["memory"]["_ts"])
    lines = []
    for name, (kind, text) in _HELP.items():
        lines.append(f"# HELP {name} [STABLE] {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples[name])
    return "\n".join(lines) + "\n" + _SCRAPE_ERROR_HELP + "resource_scrape_error 0\n"


def _network(now: float, interfaces: list[Object]) -> Object:
    default = next((i for i in interfaces if i["name"] == "eth0"), interfaces[0])
    return {"time": _rfc3339(now), **default, "interfaces": interfaces}
