"""OCI runtime spec (config.json) for pause and workload containers, like CRI-O/containerd."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.node.cri import ContainerConfig, SandboxConfig

OCI_VERSION = "1.0.2-dev"

DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)

ALL_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)

DEFAULT_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

NOFILE = 1048576
SHM_SIZE = 64 * 1024 * 1024
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROPAGATION = {"private": "rprivate", "rslave": "rslave", "rshared": "rshared"}


@dataclass(frozen=True)
class HostLimits:
    """What this process may hand to containers: without CAP_SYS_RESOURCE (e.g. when the
    agent itself runs in a container) rlimits cannot exceed ours and oom_score_adj cannot go
    below ours; capabilities outside our bounding set cannot be granted."""

    capabilities: frozenset[str]
    nofile: int
    min_oom_score_adj: int

    @classmethod
    def current(cls) -> HostLimits:
        bounding = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
        caps = frozenset(n for i, n in enumerate(ALL_CAPABILITIES) if bounding >> i & 1)
        if "SYS_RESOURCE" in caps:
            return cls(caps, NOFILE, -1000)

        with open("/proc/self/oom_score_adj") as f:
            own = int(f.read())
        return cls(caps, min(NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1]), own)

    def oom_score_adj(self, value: int) -> int:
        return max(value, self.min_oom_score_adj)


UNLIMITED = HostLimits(frozenset(ALL_CAPABILITIES), NOFILE, -1000)


@dataclass
class PodFiles:
    """Per-sandbox files bind-mounted into every container."""

    resolv_conf: Path
    hostname: Path
    hosts: Path
    shm: Path | None            # the pod's shared /dev/shm (None: a private tmpfs)


@dataclass
class Namespaces:
    """Where a container's shared namespaces come from (None: the host's)."""

    network: str | None
    ipc: str | None
    uts: str | None
    pid: str | None              # None with "private_pid": a new one
    private_pid: bool = True


def _caps(names: list[str] | tuple[str, ...]) -> list[str]:
    return [n if n.startswith("CAP_") else f"CAP_{n}" for n in names]


def capabilities(add: list[str], drop: list[str], privileged: bool,
                 limits: HostLimits = UNLIMITED) -> list[str]:
    return _caps([c for c in _capabilities(add, drop, privileged) if c in limits.capabilities])


def _capabilities(add: list[str], drop: list[str], privileged: bool) -> list[str]:
    """CRI semantics: defaults, minus drop ("ALL" drops every default), plus add ("ALL" adds
    every capability, then drop still applies to named ones)."""
    if privileged:
        return list(ALL_CAPABILITIES)
    strip = {c.upper().removeprefix("CAP_") for c in drop}
    plus = [c.upper().removeprefix("CAP_") for c in add]
    if "ALL" in plus:
        return [c for c in ALL_CAPABILITIES if c not in strip]
    caps = [] if "ALL" in strip else [c for c in DEFAULT_CAPABILITIES if c not in strip]
    caps += [c for c in plus if c not in caps]
    return caps


def base_mounts(*, private_netns: bool, readonly_sys: bool = True) -> list[dict[str, Any]]:
    sys_mount: dict[str, Any] = (
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro" if readonly_sys else "rw"]}
        if private_netns else
        {"destination": "/sys", "type": "bind", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro" if readonly_sys else "rw"]})
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        sys_mount,
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro" if readonly_sys else "rw"]},
    ]


def _namespaces(ns: Namespaces, *, mount: bool = True) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"type": "mount"}] if mount else []
    for kind, path in (("network", ns.network), ("ipc", ns.ipc), ("uts", ns.uts)):
        if path is not None:
            out.append({"type": kind, "path": path} if path else {"type": kind})
    if ns.pid:
        out.append({"type": "pid", "path": ns.pid})
    elif ns.private_pid:
        out.append({"type": "pid"})
    return out


def pause_spec(config: SandboxConfig, rootfs: Path, cgroups_path: str, ns: Namespaces,
               pause_args: list[str], limits: HostLimits = UNLIMITED) -> dict[str, Any]:
    """The pause container: the holder of a pod's shared PID namespace. It joins the pod's
    pinned namespaces, whose hostname and sysctls are set already."""
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": pause_args,
            "env": [DEFAULT_PATH], "cwd": "/",
            "capabilities": {k: capabilities([], [], False, limits)
                             for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True, "oomScoreAdj": limits.oom_score_adj(-998),
        },
        "root": {"path": str(rootfs), "readonly": True},
        "mounts": base_mounts(private_netns=ns.network is not None)[:2],
        "linux": {
            "namespaces": _namespaces(ns),
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}],
                          "cpu": {"shares": 2}},
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    if ns.uts == "":
        spec["hostname"] = config.hostname or config.name
    return spec


def merge_env(image_env: list[str], env: list[str], hostname: str) -> list[str]:
    merged: dict[str, str] = {}
    for item in [*image_env, f"HOSTNAME={hostname}", *env]:
        key, _, _ = item.partition("=")
        merged[key] = item
    if "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH, **merged}
    return list(merged.values())


@dataclass
class User:
    uid: int
    gid: int
    additional_gids: list[int]


def resolve_user(spec_user: str, rootfs: Path) -> User:
    """The image's ``User`` ("name", "uid", "uid:gid", "name:group") against the rootfs'
    /etc/passwd and /etc/group, as docker/CRI-O resolve it."""
    user, _, group = (spec_user or "").partition(":")
    passwd = _read_db(rootfs / "etc/passwd")
    groups = _read_db(rootfs / "etc/group")
    uid, gid, name = 0, 0, "root"
    if user:
        if user.isdigit():
            uid = int(user)
            entry = next((e for e in passwd if len(e) > 3 and e[2] == user), None)
        else:
            entry = next((e for e in passwd if e[0] == user), None)
            if entry is None:
                raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
            uid = int(entry[2])
        if entry is not None and len(entry) > 3:
            gid, name = int(entry[3]), entry[0]
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in groups if e[0] == group), None)
            if g is None:
                raise ValueError(f"unable to find group {group}: no matching entries in group file")
            gid = int(g[2])
    extra = [int(e[2]) for e in groups
             if len(e) > 3 and name in e[3].split(",") and e[2].isdigit() and int(e[2]) != gid]
    return User(uid, gid, extra)


def _read_db(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def container_spec(config: ContainerConfig, sandbox_config: SandboxConfig, rootfs: Path,
                   cgroups_path: str, ns: Namespaces, files: PodFiles, user: User,
                   limits: HostLimits = UNLIMITED) -> dict[str, Any]:
    sec = config.security
    image_cfg = config.image.config or {}
    args = list(config.command) or [*(image_cfg.get("Entrypoint") or []),
                                    *(image_cfg.get("Cmd") or [])]
    hostname = files.hostname.read_text().strip() if files.hostname.exists() else ""
    caps = capabilities(sec.capabilities_add, sec.capabilities_drop, sec.privileged, limits)
    gids = sorted(set(user.additional_gids) | set(sec.supplemental_groups))
    process: dict[str, Any] = {
        "terminal": config.tty,
        "user": {"uid": user.uid, "gid": user.gid, **({"additionalGids": gids} if gids else {})},
        "args": args,
        "env": merge_env(list(image_cfg.get("Env") or []), config.env, hostname),
        "cwd": config.working_dir or image_cfg.get("WorkingDir") or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": limits.nofile, "soft": limits.nofile}],
        "noNewPrivileges": sec.no_new_privileges,
        "oomScoreAdj": limits.oom_score_adj(config.resources.oom_score_adj),
    }
    if sec.apparmor_profile and sec.apparmor_profile not in ("unconfined", "runtime/default"):
        process["apparmorProfile"] = sec.apparmor_profile
    mounts = base_mounts(private_netns=ns.network is not None,
                         readonly_sys=not sec.privileged)
    targets = {m.container_path.rstrip("/") for m in config.mounts}
    if files.shm is not None:
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": str(files.shm),
                       "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]})
    else:
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777",
                                   f"size={SHM_SIZE}"]})
    for dest, src in (("/etc/hostname", files.hostname), ("/etc/resolv.conf", files.resolv_conf),
                      ("/etc/hosts", files.hosts)):
        if dest not in targets:
            opts = ["rbind", "rprivate"] + (["ro"] if sec.readonly_rootfs else [])
            mounts.append({"destination": dest, "type": "bind", "source": str(src),
                           "options": opts})
    for m in config.mounts:
        opts = ["rbind", PROPAGATION.get(m.propagation, "rprivate")]
        if m.readonly:
            opts.append("ro")
        mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path,
                       "options": opts})
    res = config.resources
    resources: dict[str, Any] = {
        "devices": [{"allow": sec.privileged, "access": "rwm"}],
        "cpu": {"shares": max(res.cpu_shares, 2)},
    }
    if res.cpu_quota > 0:
        resources["cpu"].update(quota=res.cpu_quota, period=res.cpu_period or 100_000)
    if res.memory_limit > 0:
        resources["memory"] = {"limit": res.memory_limit, "swap": res.memory_limit}
    if res.pids_limit > 0:
        resources["pids"] = {"limit": res.pids_limit}
    linux: dict[str, Any] = {
        "namespaces": _namespaces(ns),
        "cgroupsPath": cgroups_path,
        "resources": resources,
    }
    propagations = {m.propagation for m in config.mounts}
    if "rshared" in propagations:
        linux["rootfsPropagation"] = "rshared"       # Bidirectional needs a shared rootfs
    elif "rslave" in propagations:
        linux["rootfsPropagation"] = "rslave"
    if not sec.privileged:
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS if sec.masked_paths is None
                                    else sec.masked_paths)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS if sec.readonly_paths is None
                                      else sec.readonly_paths)
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": sec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
        "annotations": {"io.kubernetes.container.name": config.name,
                        "io.kubernetes.pod.name": sandbox_config.name,
                        "io.kubernetes.pod.namespace": sandbox_config.namespace,
                        "io.kubernetes.pod.uid": sandbox_config.uid},
    }


def resolv_conf_text(servers: list[str], searches: list[str], options: list[str]) -> str:
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_text(hostname: str, ips: list[str]) -> str:
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    lines += [f"{ip}\t{hostname}" for ip in ips]
    return "\n".join(lines) + "\n"
