"""The contract between the node agent and the parts that make pods real.

The agent (``agent.py``, ``podworkers.py``) drives these interfaces the way the kubelet drives
the Container Runtime Interface: a pod is a *sandbox* (shared network/IPC/UTS namespaces, held by
a pause process) and *containers* created in it; images come from an image service; the pod's
network is set up by a network plugin when the sandbox is made. Names and states follow CRI
(``k8s.io/cri-api``) so that the agent's logic reads like the kubelet's kuberuntime manager.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class CRIError(Exception):
    """A runtime operation failed. ``reason`` is what the kubelet would report
    (``RunContainerError``, ``CreateContainerError``, ``ErrImagePull`` ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class ImagePullError(CRIError):
    def __init__(self, message: str):
        super().__init__("ErrImagePull", message)


class ImageNotPresentError(CRIError):
    """imagePullPolicy Never and the image is not in the store."""

    def __init__(self, message: str):
        super().__init__("ErrImageNeverPull", message)


# -- images ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    id: str                          # "sha256:<config digest>" (what the kubelet shows as imageID's digest)
    repo_tags: tuple[str, ...]       # ("docker.io/library/busybox:latest",)
    repo_digests: tuple[str, ...]    # ("docker.io/library/busybox@sha256:...",) (manifest digests)
    size: int                        # bytes of the unpacked layers
    config: dict[str, Any]           # the OCI image config's "config" object: Env, Entrypoint, Cmd,
                                     # WorkingDir, User, ExposedPorts, Labels, StopSignal
    layers: tuple[Path, ...]         # unpacked layer directories, lowest first (overlay lowerdirs)


class ImageService(Protocol):
    def get(self, ref: str) -> Image | None:
        """The image a reference names, if present (a tag, name@digest or an image id)."""

    async def pull(self, ref: str, auths: list[dict[str, str]] = ()) -> Image:
        """Pull from its registry. ``auths``: docker config ``auths`` entries that match the
        registry (``{"username", "password"}`` or ``{"auth"}``), from imagePullSecrets.
        Raises ImagePullError."""

    def list(self) -> list[Image]: ...

    def remove(self, ref: str) -> None: ...


# -- network -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PortMapping:
    container_port: int
    host_port: int
    protocol: str = "TCP"            # TCP | UDP | SCTP
    host_ip: str = ""


@dataclass
class PodNetworkStatus:
    ips: list[str]                   # pod IPs, IPv4 first
    interface: str = "eth0"


class PodNetwork(Protocol):
    async def create_netns(self, sandbox_id: str) -> Path:
        """A new, pinned network namespace for a sandbox (a bind-mounted nsfs file)."""

    async def setup_pod(self, sandbox_id: str, netns: Path, namespace: str, name: str,
                        port_mappings: list[PortMapping]) -> PodNetworkStatus: ...

    async def teardown_pod(self, sandbox_id: str, netns: Path | None) -> None:
        """Release the address, remove the veth and host port rules, unpin and delete the
        namespace. Idempotent: safe on a half-made pod and after a reboot."""


# -- sandboxes and containers --------------------------------------------------------------------
class State(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass
class DNSConfig:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    uid: str                          # pod uid
    name: str
    namespace: str
    attempt: int = 0
    hostname: str = ""
    host_network: bool = False
    host_ipc: bool = False
    host_pid: bool = False
    share_process_namespace: bool = False
    cgroup_parent: str = ""           # e.g. "/sampan/kubepods/burstable/pod<uid>"
    dns: DNSConfig = field(default_factory=DNSConfig)
    hosts_file: Path | None = None    # the pod's /etc/hosts, written by the agent
    port_mappings: list[PortMapping] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Sandbox:
    id: str
    config: SandboxConfig
    state: State                     # RUNNING while its pause process lives, else EXITED
    created_at: float                # unix seconds
    ips: list[str] = field(default_factory=list)
    netns: Path | None = None        # None for hostNetwork
    pid: int | None = None           # the pause process
    resolv_conf: Path | None = None


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    readonly: bool = False
    propagation: str = "private"     # private | rslave | rshared (MountPropagation None/HostToContainer/Bidirectional)
    selinux_relabel: bool = False


@dataclass
class Resources:
    cpu_shares: int = 2              # cgroup v1 shares (v2 weight derived by runc), from requests.cpu
    cpu_quota: int = 0               # microseconds per period, 0 = unlimited, from limits.cpu
    cpu_period: int = 100_000
    memory_limit: int = 0            # bytes, 0 = unlimited
    pids_limit: int = 0
    oom_score_adj: int = 0
    hugepages: dict[str, int] = field(default_factory=dict)


@dataclass
class SecurityConfig:
    run_as_user: int | None = None   # None: the image's user
    run_as_group: int | None = None
    supplemental_groups: list[int] = field(default_factory=list)
    privileged: bool = False
    readonly_rootfs: bool = False
    no_new_privileges: bool = False  # allowPrivilegeEscalation: false
    capabilities_add: list[str] = field(default_factory=list)     # "NET_ADMIN" (no CAP_ prefix)
    capabilities_drop: list[str] = field(default_factory=list)    # may hold "ALL"
    masked_paths: list[str] | None = None                         # None: runtime defaults
    readonly_paths: list[str] | None = None
    seccomp_unconfined: bool = True
    apparmor_profile: str = ""


@dataclass
class ContainerConfig:
    name: str                        # the container's name in the pod spec
    attempt: int                     # restart count (0 for the first run)
    image: Image
    image_ref: str                   # what the pod spec says (spec.containers[].image)
    command: list[str]               # resolved argv: Entrypoint/Cmd merged with command/args
    env: list[str]                   # "KEY=value", already expanded
    working_dir: str = ""
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    log_path: Path | None = None     # CRI-format log file: <logs>/<ns>_<pod>_<uid>/<name>/<attempt>.log
    stop_signal: str = "SIGTERM"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: State
    image_ref: str
    image_id: str
    created_at: float                # unix seconds (0 = never)
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""                 # OOMKilled | Error | Completed | ContainerCannotRun
    message: str = ""
    pid: int | None = None
    log_path: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


class Stream(Protocol):
    """One attached or exec'd process as the streaming server sees it."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read_stdout(self) -> bytes:
        """Next chunk, b"" at end."""
    async def read_stderr(self) -> bytes:
        """Next chunk, b"" at end (always b"" with a tty)."""
    async def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int:
        """Exit code of an exec; for attach, when the container ends or the stream is closed."""
    async def close(self) -> None:
        """Stop streaming (kills an exec'd process that is still running)."""


class Runtime(Protocol):
    async def run_sandbox(self, config: SandboxConfig) -> Sandbox:
        """Create namespaces (network through PodNetwork unless hostNetwork), the pod cgroup,
        /etc/resolv.conf and /etc/hostname, and start the pause process."""

    async def stop_sandbox(self, sandbox_id: str) -> None:
        """Stop every container of the sandbox (SIGKILL), the pause process, tear down the
        network. Idempotent."""

    async def remove_sandbox(self, sandbox_id: str) -> None: ...

    async def list_sandboxes(self) -> list[Sandbox]: ...

    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        """Bundle (overlay rootfs, config.json) and conmon+runc create. Returns the id.
        Raises CRIError("CreateContainerError", ...)."""

    async def start_container(self, container_id: str) -> None:
        """Raises CRIError("RunContainerError", msg) e.g. when the executable is missing."""

    async def stop_container(self, container_id: str, timeout: float, signal: str = "SIGTERM") -> None:
        """Signal, wait up to ``timeout`` s, then SIGKILL; returns when it has exited."""

    async def remove_container(self, container_id: str) -> None:
        """Delete the runc container, unmount and remove its rootfs and bundle (keeps the log)."""

    async def list_containers(self) -> list[ContainerStatus]: ...

    async def container_status(self, container_id: str) -> ContainerStatus: ...

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        """Run ``cmd`` in the container, wait up to ``timeout`` s; (exit code, stdout+stderr).
        A timeout raises TimeoutError (the process is killed)."""

    async def exec(self, container_id: str, cmd: list[str], *, tty: bool, stdin: bool) -> Stream: ...

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> Stream: ...

    async def reopen_log(self, container_id: str) -> None:
        """Make the container's monitor reopen its log file (after rotation renamed it)."""

    def cgroup_path(self, container_id: str) -> str | None:
        """The container's cgroup path relative to the cgroup root (for stats)."""
