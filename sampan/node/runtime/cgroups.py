"""cgroupfs helpers: where a cgroup path lives on v1 and v2, its OOM kill counter, removal.

runc creates (and on ``runc delete`` removes) the containers' cgroups; the runtime only reads
counters and removes the pod-level directories runc leaves behind.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")


@functools.cache
def is_v2() -> bool:
    """Pure cgroup v2 (unified) host: /sys/fs/cgroup itself is cgroup2."""
    return (CGROUP_MOUNT / "cgroup.controllers").exists()


@functools.cache
def hierarchies() -> tuple[Path, ...]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the v2 unified tree)."""
    found: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype = post.split(" ", 1)[0]
            if fstype in ("cgroup", "cgroup2"):
                found.append(Path(pre.split(" ")[4]))
    return tuple(found)


def _memory_dir(path: str) -> Path:
    rel = path.lstrip("/")
    return CGROUP_MOUNT / rel if is_v2() else CGROUP_MOUNT / "memory" / rel


def oom_kill_count(path: str) -> int:
    """How many processes the kernel OOM-killed in the cgroup (0 when unknown or gone)."""
    d = _memory_dir(path)
    name = "memory.events" if is_v2() else "memory.oom_control"
    try:
        text = (d / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def procs(path: str) -> list[int]:
    """Pids in the cgroup (from the pids or memory controller; [] when it does not exist)."""
    rel = path.lstrip("/")
    base = CGROUP_MOUNT / rel if is_v2() else CGROUP_MOUNT / "pids" / rel
    try:
        return [int(p) for p in (base / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(path: str) -> None:
    """rmdir the cgroup (and its empty descendants) in every hierarchy. Busy dirs stay."""
    rel = path.strip("/")
    if not rel:
        return
    for root in hierarchies():
        _rmtree(root / rel)


def _rmtree(d: Path) -> None:
    try:
        children = [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for child in children:
        _rmtree(Path(child))
    try:
        os.rmdir(d)
    except OSError:
        pass


def exists(path: str) -> bool:
    rel = path.strip("/")
    return any((root / rel).is_dir() for root in hierarchies())


def prepare_leaf(path: str) -> list[Path]:
    """Create the cgroup in every hierarchy that can take processes without setup (not the
    v1 cpuset one, whose cpus/mems start empty); returns its cgroup.procs files."""
    rel = path.strip("/")
    files = []
    for root in hierarchies():
        if not is_v2() and root.name == "cpuset":
            continue
        d = root / rel
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        files.append(d / "cgroup.procs")
    return files
