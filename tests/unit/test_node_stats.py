"""Stats from a fake cgroup tree (v1 and v2 layouts) and a fake /proc in temporary dirs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sampan.apiserver.metrics_api import decode_batch
from sampan.node import cri
from sampan.node.stats import Cgroups, ProcFS, StatsProvider, pod_cgroup, qos_class

ROOT = "/sampan/n1"
UID = "1111-2222"
MI = 1024 * 1024


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class CgroupTree:
    """Writes counters the way the kernel shows them in either hierarchy."""

    def __init__(self, mount: Path, version: int):
        self.mount, self.version = mount, version

    def set(self, path: str, cpu_ns: int, usage: int, inactive: int, rss: int,
            limit: int | None = None) -> None:
        rel = path.lstrip("/")
        if self.version == 1:
            write(self.mount / "cpuacct" / rel / "cpuacct.usage", f"{cpu_ns}\n")
            mem = self.mount / "memory" / rel
            write(mem / "memory.usage_in_bytes", f"{usage}\n")
            write(mem / "memory.limit_in_bytes", f"{limit or 9223372036854771712}\n")
            write(mem / "memory.stat", f"cache 0\nrss {rss}\ntotal_rss {rss}\n"
                                       f"total_inactive_file {inactive}\ntotal_pgfault 7\n"
                                       "total_pgmajfault 1\n")
            write(self.mount / "pids" / rel / "pids.current", "3\n")
        else:
            d = self.mount / rel
            write(d / "cpu.stat", f"usage_usec {cpu_ns // 1000}\nuser_usec 1\nsystem_usec 1\n")
            write(d / "memory.current", f"{usage}\n")
            write(d / "memory.max", f"{limit}\n" if limit else "max\n")
            write(d / "memory.stat", f"anon {rss}\nfile 10\ninactive_file {inactive}\n"
                                     "pgfault 7\npgmajfault 1\n")
            write(d / "pids.current", "3\n")


def fake_proc(root: Path) -> ProcFS:
    write(root / "stat", "cpu  100 0 100 5000 10 0 0 0 0 0\ncpu0 100 0 100 5000 10 0 0 0 0 0\n"
                         "btime 1700000000\n")
    write(root / "meminfo", "MemTotal:       4096000 kB\nMemFree:        1024000 kB\n"
                            "MemAvailable:   2048000 kB\nInactive(file):  512000 kB\n"
                            "AnonPages:       256000 kB\n")
    header = ("Inter-|   Receive                                                |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
              " errs drop fifo colls carrier compressed\n")
    write(root / "self/net/dev", header +
          "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
          "  eth0: 5000 10 1 0 0 0 0 0 7000 12 2 0 0 0 0 0\n")
    write(root / "4242/net/dev", header +
          "  eth0: 300 3 0 0 0 0 0 0 400 4 0 0 0 0 0 0\n")
    write(root / "sys/kernel/pid_max", "4194304\n")
    write(root / "loadavg", "0.00 0.01 0.05 1/123 4567\n")
    return ProcFS(root)


class FakeRuntime:
    def __init__(self, data_dir: Path):
        config = cri.SandboxConfig(uid=UID, name="web", namespace="default")
        # no pause process: the pod's network is read through its running container
        self.sandbox = cri.Sandbox("sb1", config, cri.State.RUNNING, 1700000100.0,
                                   ips=["10.42.0.5"], pid=None)
        self.container = cri.ContainerStatus(
            "c1", "sb1", "app", 0, cri.State.RUNNING, "busybox", "sha256:x", 1700000100.0,
            started_at=1700000101.0, pid=4242,
            log_path=data_dir / "logs" / f"default_web_{UID}" / "app" / "0.log")

    async def list_sandboxes(self):
        return [self.sandbox]

    async def list_containers(self):
        return [self.container]

    def cgroup_path(self, container_id: str) -> str | None:
        return f"{ROOT}/kubepods/burstable/pod{UID}/{container_id}"


POD = {"metadata": {"name": "web", "namespace": "default", "uid": UID},
       "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}}}]}}


@pytest.fixture(params=[1, 2], ids=["cgroup-v1", "cgroup-v2"])
def setup(request, tmp_path):
    version = request.param
    mount = tmp_path / "cgroup"
    if version == 2:
        write(mount / "cgroup.controllers", "cpu memory pids\n")
    tree = CgroupTree(mount, version)
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "images" / "layer").write_bytes(b"x" * 8192)
    upper = data_dir / "containers" / "c1" / "upper"
    upper.mkdir(parents=True)
    (upper / "written").write_bytes(b"y" * 16384)
    logs = data_dir / "logs" / f"default_web_{UID}" / "app"
    logs.mkdir(parents=True)
    (logs / "0.log").write_bytes(b"z" * 4096)
    volume = data_dir / "pods" / UID / "volumes" / "kubernetes.io~empty-dir" / "cache"
    volume.mkdir(parents=True)
    (volume / "data").write_bytes(b"v" * 4096)
    runtime = FakeRuntime(data_dir)
    tree.set(f"{ROOT}/kubepods", 10_000_000_000, 300 * MI, 100 * MI, 150 * MI)
    tree.set(pod_cgroup(ROOT, POD), 5_000_000_000, 100 * MI, 20 * MI, 60 * MI)
    tree.set(runtime.cgroup_path("c1"), 4_000_000_000, 90 * MI, 10 * MI, 50 * MI, limit=128 * MI)
    provider = StatsProvider(runtime, None, "n1", ROOT, data_dir, pods=lambda: [POD],
                             cgroups=Cgroups(mount), proc=fake_proc(tmp_path / "proc"))
    assert provider.cgroups.version == version
    return provider, tree, runtime


async def test_summary_shape_and_values(setup):
    provider, tree, runtime = setup
    summary = await provider.summary()
    node = summary["node"]
    assert node["nodeName"] == "n1"
    assert node["startTime"] == "2023-11-14T22:13:20Z"
    assert node["cpu"]["usageCoreNanoSeconds"] == 200 * 1_000_000_000 // 100
    assert node["memory"]["workingSetBytes"] == (4096000 - 1024000 - 512000) * 1024
    assert node["network"]["name"] == "eth0" and node["network"]["rxBytes"] == 5000
    assert node["network"]["txErrors"] == 2
    assert node["fs"]["capacityBytes"] > 0
    assert node["runtime"]["imageFs"]["usedBytes"] >= 8192
    assert node["rlimit"] == {"time": node["rlimit"]["time"], "maxpid": 4194304, "curproc": 123}
    assert node["systemContainers"][0]["name"] == "pods"
    assert node["systemContainers"][0]["memory"]["workingSetBytes"] == 200 * MI

    [pod] = summary["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": UID}
    assert pod["cpu"]["usageCoreNanoSeconds"] == 5_000_000_000
    assert pod["memory"]["workingSetBytes"] == 80 * MI
    assert pod["network"]["rxBytes"] == 300 and pod["network"]["txBytes"] == 400
    [container] = pod["containers"]
    assert container["name"] == "app" and container["startTime"] == "2023-11-14T22:15:01Z"
    assert container["memory"]["workingSetBytes"] == 80 * MI
    assert container["memory"]["availableBytes"] == 48 * MI
    assert container["memory"]["rssBytes"] == 50 * MI
    assert container["memory"]["pageFaults"] == 7
    assert container["rootfs"]["usedBytes"] >= 16384
    assert container["logs"]["usedBytes"] >= 4096
    assert pod["volume"][0]["name"] == "cache" and pod["volume"][0]["usedBytes"] >= 4096
    assert pod["ephemeral-storage"]["usedBytes"] >= 16384 + 4096 + 4096
    assert pod["process_stats"] == {"process_count": 3}
    assert "usageNanoCores" not in container["cpu"]  # one sample: no rate yet
    assert not any(key.startswith("_") for key in container)


async def test_usage_nano_cores_from_two_samples(setup, monkeypatch):
    provider, tree, runtime = setup
    clock = [1_700_000_200.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    await provider.summary()
    clock[0] += 10
    path = runtime.cgroup_path("c1")
    tree.set(path, 4_000_000_000 + 5_000_000_000, 90 * MI, 10 * MI, 50 * MI)  # half a core
    summary = await provider.summary()
    cpu = summary["pods"][0]["containers"][0]["cpu"]
    assert cpu["usageNanoCores"] == 500_000_000
    # A read within a second reuses the samples.
    tree.set(path, 20_000_000_000, 90 * MI, 10 * MI, 50 * MI)
    again = await provider.summary()
    assert again["pods"][0]["containers"][0]["cpu"] == cpu


async def test_resource_metrics_feed_metrics_server(setup):
    provider, tree, runtime = setup
    text = await provider.resource_metrics()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"node_cpu_usage_seconds", "container_cpu_usage_seconds", "pod_memory_working_set_bytes",
            "resource_scrape_error"} <= set(families)
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    batch = decode_batch(text, 0)
    assert batch.node is not None and batch.node.memory == (4096000 - 1024000 - 512000) * 1024
    point = batch.pods[("default", "web")]["app"]
    assert point.cpu == 4_000_000_000 and point.memory == 80 * MI
    assert point.start == 1700000101.0
    assert point.timestamp > 1_000_000_000  # sample timestamps are present
    pod_sample = next(s for s in families["pod_cpu_usage_seconds"].samples)
    assert pod_sample.labels == {"namespace": "default", "pod": "web"}
    assert pod_sample.value == 5.0


def test_qos_and_pod_cgroup():
    assert qos_class({"spec": {"containers": [{"name": "a"}]}}) == "BestEffort"
    guaranteed = {"metadata": {"uid": "u"}, "spec": {"containers": [{"resources": {
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]}}
    assert qos_class(guaranteed) == "Guaranteed"
    assert pod_cgroup("/sampan/n1", guaranteed) == "/sampan/n1/kubepods/podu"
    assert pod_cgroup("/sampan/n1", {"metadata": {"uid": "u"}, "status": {"qosClass": "Burstable"}}) \
        == "/sampan/n1/kubepods/burstable/podu"


async def test_missing_cgroups_are_left_out(tmp_path):
    runtime = FakeRuntime(tmp_path)
    provider = StatsProvider(runtime, None, "n1", ROOT, tmp_path, pods=lambda: [POD],
                             cgroups=Cgroups(tmp_path / "nothing", version=1),
                             proc=fake_proc(tmp_path / "proc"))
    summary = await provider.summary()
    assert "cpu" not in summary["pods"][0] and "cpu" not in summary["pods"][0]["containers"][0]
    text = await provider.resource_metrics()
    assert "container_cpu_usage_seconds_total{" not in text
    assert "resource_scrape_error 0" in text


async def test_real_machine_smoke(tmp_path):
    """This machine's /proc and cgroups parse (whatever the hierarchy)."""
    provider = StatsProvider(FakeRuntime(tmp_path), None, "n1", ROOT, tmp_path)
    summary = await provider.summary()
    assert summary["node"]["cpu"]["usageCoreNanoSeconds"] > 0
    assert summary["node"]["memory"]["workingSetBytes"] > 0
    await provider.start()
    await provider.close()
