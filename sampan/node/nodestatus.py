"""What a node reports about itself: capacity and allocatable from the machine, addresses,
nodeInfo, images, and the kubelet's conditions (``pkg/kubelet/nodestatus`` setters)."""

from __future__ import annotations

import copy
import os
import platform
import socket
import uuid
from pathlib import Path
from typing import Any

Object = dict[str, Any]

KUBELET_VERSION = "v1.37.0"
MAX_PODS = 110
EVICTION_MEMORY_AVAILABLE = 100 * 1024 * 1024  # evictionHard memory.available<100Mi
EVICTION_NODEFS_PERCENT = 10                   # evictionHard nodefs.available<10%
EVICTION_PID_PERCENT = 10
MAX_IMAGES = 50                                 # nodeStatusMaxImages

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x"}.get(platform.machine(), platform.machine())


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def capacity(data_dir: Path) -> dict[str, str]:
    mem = meminfo()
    fs = os.statvfs(data_dir)
    return {"cpu": str(cpu_count()), "memory": f"{mem.get('MemTotal', 0) // 1024}Ki",
            "pods": str(MAX_PODS), "ephemeral-storage": f"{fs.f_blocks * fs.f_frsize // 1024}Ki",
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def allocatable(data_dir: Path) -> dict[str, str]:
    """Capacity less the hard eviction thresholds (no system/kube reservations by default)."""
    mem = meminfo()
    fs = os.statvfs(data_dir)
    total_fs = fs.f_blocks * fs.f_frsize
    return {"cpu": str(cpu_count()),
            "memory": f"{max(0, mem.get('MemTotal', 0) - EVICTION_MEMORY_AVAILABLE) // 1024}Ki",
            "pods": str(MAX_PODS),
            "ephemeral-storage": str(total_fs * (100 - EVICTION_NODEFS_PERCENT) // 100),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def pressure(data_dir: Path) -> dict[str, bool]:
    mem = meminfo()
    fs = os.statvfs(data_dir)
    pid_max = int(_read("/proc/sys/kernel/pid_max") or 4194304)
    try:
        pids = sum(1 for p in os.listdir("/proc") if p.isdigit())
    except OSError:
        pids = 0
    return {
        "MemoryPressure": mem.get("MemAvailable", 1 << 40) < EVICTION_MEMORY_AVAILABLE,
        "DiskPressure": fs.f_bavail * 100 < fs.f_blocks * EVICTION_NODEFS_PERCENT,
        "PIDPressure": (pid_max - pids) * 100 < pid_max * EVICTION_PID_PERCENT,
    }


def node_info(runtime_version: str, node_name: str) -> Object:
    machine_id = _read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, node_name).hex
    system_uuid = _read("/sys/class/dmi/id/product_uuid") or str(
        uuid.uuid5(uuid.NAMESPACE_DNS, "system/" + node_name))
    # Several agents on one machine (multi-node tests) must not look like one node.
    if node_name:
        machine_id = uuid.uuid5(uuid.UUID(int=int(machine_id[:32].ljust(32, "0"), 16)),
                                node_name).hex
    return {
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": os_image(),
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": ARCH,
    }


_CONDITIONS = {
    # type: (ok status, ok reason, ok message, bad reason, bad message)
    "MemoryPressure": ("False", "KubeletHasSufficientMemory",
                       "kubelet has sufficient memory available", "KubeletHasInsufficientMemory",
                       "kubelet has insufficient memory available"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     "KubeletHasDiskPressure", "kubelet has disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                    "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
}


def conditions(now: str, previous: list[Object], pressures: dict[str, bool],
               ready: bool, not_ready_message: str) -> list[Object]:
    before = {c.get("type"): c for c in previous}
    out = []

    def add(type_: str, status: str, reason: str, message: str) -> None:
        old = before.get(type_)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append({"type": type_, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": since or now, "reason": reason, "message": message})

    for type_, (ok, ok_reason, ok_message, bad_reason, bad_message) in _CONDITIONS.items():
        if pressures.get(type_):
            add(type_, "True", bad_reason, bad_message)
        else:
            add(type_, ok, ok_reason, ok_message)
    if ready:
        add("Ready", "True", "KubeletReady", "kubelet is posting ready status")
    else:
        add("Ready", "False", "KubeletNotReady", not_ready_message)
    # Conditions the kubelet does not own (NetworkUnavailable ...) stay.
    ours = set(_CONDITIONS) | {"Ready"}
    out.extend(copy.deepcopy(c) for c in previous if c.get("type") not in ours)
    return out


def addresses(node_ip: str, node_name: str) -> list[Object]:
    return [{"type": "InternalIP", "address": node_ip},
            {"type": "Hostname", "address": node_name}]


def images(store_images: list[Any]) -> list[Object]:
    out = []
    for image in sorted(store_images, key=lambda i: -i.size)[:MAX_IMAGES]:
        names = list(image.repo_digests) + list(image.repo_tags)
        if names:
            out.append({"names": names, "sizeBytes": image.size})
    return out


def labels(node_name: str) -> dict[str, str]:
    return {"kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": ARCH, "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": ARCH}


def detect_node_ip() -> str:
    """The IPv4 address of the interface holding the default route, else of the first
    interface with one (not loopback), else 127.0.0.1. Read from /proc and SIOCGIFADDR, not
    netlink: this runs inside event loops (uvloop among them) that cannot host pyroute2's."""
    default_if = ""
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
                    default_if = fields[0]
                    break
    except OSError:
        pass
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    for name in ([default_if] if default_if else []) + names:
        ip = _interface_ipv4(name)
        if ip and not ip.startswith("127."):
            return ip
    return "127.0.0.1"


def _interface_ipv4(name: str) -> str:
    import fcntl
    import struct

    SIOCGIFADDR = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return ""
    return socket.inet_ntoa(packed[20:24])
