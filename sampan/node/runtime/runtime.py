"""RuncRuntime: a CRI-O-like container runtime over runc and conmon.

State lives on disk so that it survives the agent: ``DIR/sandboxes/<id>/meta.json`` and
``DIR/containers/<id>/meta.json`` (plus conmon's ``exit``/``oom`` files in the bundle, which is
conmon's persist dir) and runc's state under ``RUN/runc``. Status polls never call runc: a
container is running while its pid (checked against its start time) lives, and exited once
conmon wrote its exit file.

Like CRI-O without an infra container (pinns, drop_infra_ctr), a pod's IPC and UTS namespaces
are pinned (nsfs bind mounts in ``RUN/sandboxes/<id>/``, next to the network's pinned netns)
and containers join the pins: no pause process, except as the holder of the shared PID
namespace of a pod with shareProcessNamespace. A sandbox runs while its pins (and its pause,
when it has one) exist; after a reboot RUN is empty and the sandbox has exited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import secrets
import select
import shutil
import signal as signals
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sampan.node import cri, nspin
from sampan.node.cri import (
    ContainerConfig,
    ContainerStatus,
    CRIError,
    DNSConfig,
    PortMapping,
    Sandbox,
    SandboxConfig,
    State,
)
from sampan.node.runtime import cgroups, overlay, spec, streams
from sampan.node.runtime.conmon import Runc, RuncError, launch, runc_message

log = logging.getLogger(__name__)

EXEC_OUTPUT_LIMIT = 16 * 1024
EXIT_WAIT = 10.0
_EXEC_ERRORS = ('exec: "', "executable file not found", "no such file or directory",
                "permission denied", "exec format error")


def _pid_start(pid: int) -> int | None:
    """The process' start time (clock ticks since boot), None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


# (pid, start time) → a pidfd of that live process, or -1 once it is known to be gone. A
# relist asks about every pod's processes; polling a pidfd is one syscall where reading
# /proc/<pid>/stat is three and a parse, and a pidfd can never point to a reused pid.
_pidfds: dict[tuple[int, int], int] = {}
# never hold more than a quarter of the descriptors the process may open: past that, the
# remaining processes are checked through /proc
_MAX_PIDFDS = max(0, min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))


def _alive(pid: int | None, start: int | None) -> bool:
    if not pid or start is None:
        return False
    key = (pid, start)
    fd = _pidfds.get(key)
    if fd is None:
        if _pid_start(pid) != start:
            return False
        if len(_pidfds) >= _MAX_PIDFDS:
            return True
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return _pid_start(pid) == start
        if _pid_start(pid) != start:      # the pid was reused before we opened it
            os.close(fd)
            return False
        _pidfds[key] = fd
        return True
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(0):
        return True
    _pidfds[key] = -1          # exited: readable once it is a zombie, like _pid_start says
    os.close(fd)
    return False


def _forget_pid(pid: int | None, start: int | None) -> None:
    fd = _pidfds.pop((pid, start), None) if pid and start is not None else None
    if fd is not None and fd >= 0:
        os.close(fd)


def _dump(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data, default=str))
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _signal_number(sig: str | int) -> int:
    if isinstance(sig, int) or str(sig).isdigit():
        return int(sig)
    name = str(sig).upper()
    return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])


def _sandbox_config_to_dict(config: SandboxConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _sandbox_config_from_dict(d: dict[str, Any]) -> SandboxConfig:
    d = dict(d)
    d["dns"] = DNSConfig(**d.get("dns") or {})
    d["port_mappings"] = [PortMapping(**p) for p in d.get("port_mappings") or []]
    d["hosts_file"] = Path(d["hosts_file"]) if d.get("hosts_file") else None
    return SandboxConfig(**d)


@dataclass
class _Sandbox:
    id: str
    dir: Path
    meta: dict[str, Any]
    config: SandboxConfig
    paths: tuple[str | None, Path | None, Path] | None = None    # cached for _sandbox_view

    lost: bool = False      # its namespaces (RUN) did not survive: the machine rebooted

    @property
    def pid(self) -> int | None:
        return self.meta.get("pid")

    def alive(self) -> bool:
        if self.lost or self.meta.get("stopped"):
            return False
        if not self.meta.get("pause"):
            return True
        return _alive(self.meta.get("pid"), self.meta.get("pid_start"))

    def save(self) -> None:
        _dump(self.dir / "meta.json", self.meta)


@dataclass
class _Container:
    id: str
    dir: Path
    meta: dict[str, Any]
    process: dict[str, Any] | None = None   # config.json's process (exec template), cached
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _log_path: Path | None = None

    @property
    def log_path(self) -> Path | None:
        if self._log_path is None and self.meta.get("log_path"):
            self._log_path = Path(self.meta["log_path"])
        return self._log_path

    def save(self) -> None:
        _dump(self.dir / "meta.json", self.meta)


class RuncRuntime:
    """cri.Runtime over runc + conmon. See the module docstring for the on-disk layout."""

    def __init__(self, data_dir: Path, run_dir: Path, cgroup_root: str, network: cri.PodNetwork,
                 *, runc: str = "runc", conmon: str = "conmon",
                 pause_binary: str = "/usr/bin/catatonit"):
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.cgroup_root = "/" + cgroup_root.strip("/")
        self.network = network
        self.runc = Runc(shutil.which(runc) or runc, self.run_dir / "runc")
        self.conmon = shutil.which(conmon) or conmon
        self.pause_binary = pause_binary
        self.sandboxes_dir = self.data_dir / "sandboxes"
        self.containers_dir = self.data_dir / "containers"
        self.pause_rootfs = self.data_dir / "pause-rootfs"
        self.exits_dir = self.run_dir / "exits"
        self.sockets_dir = self.run_dir / "conmon"
        self.exec_dir = self.run_dir / "exec"
        self.pins_dir = self.run_dir / "sandboxes"
        self.limits = spec.HostLimits.current()
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._conmon_cgroup: list[Path] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._prepare_dirs)
        self._conmon_cgroup = await asyncio.to_thread(
            cgroups.prepare_leaf, f"{self.cgroup_root}/conmon")
        for d in self._scan(self.sandboxes_dir):
            meta = _load(d / "meta.json")
            if meta is None or not meta.get("complete"):
                await self._discard_sandbox(d, meta)
                continue
            sb = _Sandbox(d.name, d, meta, _sandbox_config_from_dict(meta["config"]))
            if not meta.get("stopped") and not await asyncio.to_thread(self._survived, sb):
                sb.lost = True                          # rebooted: nothing runs any more
                meta["pid"] = None
            self._sandboxes[sb.id] = sb
        for d in self._scan(self.containers_dir):
            meta = _load(d / "meta.json")
            if meta is None or not meta.get("complete"):
                await self._discard_container(d.name, d)
                continue
            c = _Container(d.name, d, meta)
            if not self.runc.state_exists(c.id):
                meta["gone"] = True
            self._containers[c.id] = c

    async def close(self) -> None:
        """Containers and their conmons keep running; nothing to stop."""

    def _survived(self, sb: _Sandbox) -> bool:
        """Whether the sandbox's namespace pins (and pause container) still exist."""
        if not (self.pins_dir / sb.id).is_dir():
            return False
        if not all(nspin.is_pinned(Path(p)) for p in self._pins(sb.meta).values()):
            return False
        return not sb.meta.get("pause") or self.runc.state_exists(sb.id)

    @staticmethod
    def _pins(meta: dict[str, Any]) -> dict[str, str]:
        return {kind: meta[kind] for kind in ("ipc", "uts") if meta.get(kind)}

    def _prepare_dirs(self) -> None:
        for d in (self.sandboxes_dir, self.containers_dir, self.exits_dir, self.sockets_dir,
                  self.exec_dir, self.runc.root, self.pins_dir):
            d.mkdir(parents=True, exist_ok=True)
        target = self.pause_rootfs / "pause"
        if not target.exists():
            self.pause_rootfs.mkdir(parents=True, exist_ok=True)
            tmp = self.pause_rootfs / ".pause.tmp"
            shutil.copy2(self.pause_binary, tmp)
            os.replace(tmp, target)

    @staticmethod
    def _scan(parent: Path) -> list[Path]:
        try:
            return [Path(e.path) for e in os.scandir(parent) if e.is_dir()]
        except FileNotFoundError:
            return []

    # -- sandboxes ------------------------------------------------------------------------
    async def run_sandbox(self, config: SandboxConfig) -> Sandbox:
        sid = secrets.token_hex(32)
        d = self.sandboxes_dir / sid
        parent = config.cgroup_parent or \
            f"{self.cgroup_root}/kubepods/besteffort/pod{config.uid}"
        meta: dict[str, Any] = {
            "id": sid, "config": _sandbox_config_to_dict(config), "created_at": time.time(),
            "cgroup_parent": parent, "netns": None, "ips": [], "pid": None, "complete": False,
            "pause": config.share_process_namespace and not config.host_pid,
            "ipc": None, "uts": None,
        }
        d.mkdir(parents=True)
        sb = _Sandbox(sid, d, meta, config)
        sb.save()
        try:
            await self._make_sandbox(sb)
        except BaseException as e:
            await self._discard_sandbox(d, meta)
            if isinstance(e, CRIError):
                raise
            if isinstance(e, Exception):
                raise CRIError("CreatePodSandboxError",
                               f"failed to create pod sandbox: {e}") from e
            raise
        meta["complete"] = True
        sb.save()
        self._sandboxes[sid] = sb
        return self._sandbox_view(sb)

    async def _make_sandbox(self, sb: _Sandbox) -> None:
        config, d, meta = sb.config, sb.dir, sb.meta
        netns: Path | None = None
        bundle = d / "pause"

        async def network() -> None:
            if netns is not None:
                status = await self.network.setup_pod(sb.id, netns, config.namespace,
                                                      config.name, config.port_mappings)
                meta["ips"] = list(status.ips)

        async def pause() -> None:
            # No monitor for the pause container: it has no output and nobody needs its exit
            # status (the sandbox is dead once its pid is), so one ``runc run`` does.
            pid = await self.runc.run_detached(sb.id, bundle)
            meta["pid"], meta["pid_start"] = pid, _pid_start(pid)

        async def make_netns() -> None:
            nonlocal netns
            if not config.host_network:
                netns = await self.network.create_netns(sb.id)
                meta["netns"] = str(netns)

        async def namespaces_and_processes() -> None:
            await _all(make_netns(), asyncio.to_thread(self._pin_namespaces, sb))
            sb.save()
            if config.sysctls:
                await asyncio.to_thread(self._write_sysctls, sb)
            if not meta["pause"]:
                await network()
                return
            ns = spec.Namespaces(network=str(netns) if netns else None, ipc=meta["ipc"],
                                 uts=meta["uts"], pid=None, private_pid=True)
            pause_spec = spec.pause_spec(config, self.pause_rootfs,
                                         f"{meta['cgroup_parent']}/{sb.id}", ns,
                                         ["/pause", "-P"], self.limits)
            await asyncio.to_thread(self._write_bundle, bundle, pause_spec)
            await _all(network(), pause())

        # the pod's files (resolv.conf, hostname, hosts, /dev/shm) are only needed by the
        # containers: they are written while the pause container starts
        await _all(asyncio.to_thread(self._write_pod_files, sb), namespaces_and_processes())
        if not config.host_network:
            hosts = d / "hosts"
            if config.hosts_file is None:
                await asyncio.to_thread(
                    hosts.write_text, spec.hosts_text(self._hostname(config), meta["ips"]))

    def _pin_namespaces(self, sb: _Sandbox) -> None:
        """The pod's own IPC and UTS namespaces (the latter named after the pod), pinned in
        RUN/sandboxes/<id>/ by a throw-away thread (blocking)."""
        config, meta = sb.config, sb.meta
        d = self.pins_dir / sb.id
        d.mkdir()
        pins: dict[str, Path] = {}
        if not config.host_ipc:
            pins["ipc"] = d / "ipc"
        if not config.host_network:
            pins["uts"] = d / "uts"
        if pins:
            nspin.create_pins(pins, hostname=self._hostname(config))
        for kind, path in pins.items():
            meta[kind] = str(path)

    def _write_sysctls(self, sb: _Sandbox) -> None:
        """The pod's sysctls, set inside its namespaces (what runc does for the pause
        container's spec) (blocking)."""
        pins = {kind: Path(p) for kind, p in self._pins(sb.meta).items()}
        if sb.meta.get("netns"):
            pins["net"] = Path(sb.meta["netns"])
        sysctls = sb.config.sysctls
        for key in sysctls:
            kind = _sysctl_namespace(key)     # never change the host's: runc refuses too
            if kind is None:
                raise CRIError("CreatePodSandboxError",
                               f"sysctl {key!r} is not in a separate kernel namespace")
            if kind not in pins:
                raise CRIError("CreatePodSandboxError",
                               f"sysctl {key!r} not allowed in host {kind} namespace")
        nspin.run_in_namespaces(pins, lambda: nspin.write_sysctls(sysctls))

    def _remove_pins(self, sid: str) -> None:
        d = self.pins_dir / sid
        for kind in ("ipc", "uts"):
            nspin.remove_pinned(d / kind)
        try:
            d.rmdir()
        except FileNotFoundError:
            pass

    @staticmethod
    def _hostname(config: SandboxConfig) -> str:
        return config.hostname or config.name

    def _write_pod_files(self, sb: _Sandbox) -> None:
        config, d = sb.config, sb.dir
        dns = config.dns
        if dns.servers or dns.searches or dns.options:
            text = spec.resolv_conf_text(dns.servers, dns.searches, dns.options)
        else:
            try:
                text = Path("/etc/resolv.conf").read_text()
            except OSError:
                text = ""
        (d / "resolv.conf").write_text(text)
        hostname = os.uname().nodename if config.host_network else self._hostname(config)
        (d / "hostname").write_text(hostname + "\n")
        if config.hosts_file is None:
            if config.host_network:
                shutil.copyfile("/etc/hosts", d / "hosts")
            else:
                (d / "hosts").write_text(spec.hosts_text(hostname, []))
        if not config.host_ipc:
            shm = d / "shm"
            shm.mkdir(exist_ok=True)
            flags = overlay.MS_NOSUID | overlay.MS_NODEV | overlay.MS_NOEXEC
            overlay.mount("shm", shm, "tmpfs", flags, f"mode=1777,size={spec.SHM_SIZE}")
            sb.meta["shm"] = str(shm)  # saved by run_sandbox; a crash before is covered by
            #                             _discard_sandbox unmounting <dir>/shm anyway

    @staticmethod
    def _write_bundle(bundle: Path, config: dict[str, Any]) -> None:
        bundle.mkdir(parents=True, exist_ok=True)
        (bundle / "config.json").write_bytes(orjson.dumps(config))

    def _pod_files(self, sb: _Sandbox) -> spec.PodFiles:
        hosts = sb.config.hosts_file or (sb.dir / "hosts")
        shm = sb.meta.get("shm")
        return spec.PodFiles(resolv_conf=sb.dir / "resolv.conf", hostname=sb.dir / "hostname",
                             hosts=Path(hosts),
                             shm=Path(shm) if shm else (Path("/dev/shm")
                                                        if sb.config.host_ipc else None))

    def _sandbox_view(self, sb: _Sandbox) -> Sandbox:
        running = sb.alive()
        if sb.paths is None or sb.paths[0] != sb.meta.get("netns"):
            netns = sb.meta.get("netns")
            sb.paths = (netns, Path(netns) if netns else None, sb.dir / "resolv.conf")
        return Sandbox(id=sb.id, config=sb.config,
                       state=State.RUNNING if running else State.EXITED,
                       created_at=sb.meta["created_at"], ips=list(sb.meta.get("ips") or []),
                       netns=sb.paths[1], pid=sb.pid if running else None,
                       resolv_conf=sb.paths[2])

    async def stop_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        members = [c for c in self._containers.values() if c.meta["sandbox_id"] == sandbox_id]
        await asyncio.gather(*(self._kill_and_wait(c) for c in members))
        if _alive(sb.meta.get("pid"), sb.meta.get("pid_start")):
            try:
                os.kill(sb.meta["pid"], signals.SIGKILL)
            except ProcessLookupError:
                pass
            await self._wait_gone(sb.meta["pid"], sb.meta.get("pid_start"), EXIT_WAIT)
        netns = sb.meta.get("netns")
        if not sb.config.host_network and not sb.meta.get("network_down"):
            await self.network.teardown_pod(sb.id, Path(netns) if netns else None)
            sb.meta["network_down"] = True
        await asyncio.to_thread(self._release_pod_mounts, sb.id, sb.meta)
        sb.meta["stopped"] = True
        sb.save()

    def _release_pod_mounts(self, sid: str, meta: dict[str, Any]) -> None:
        self._unmount_shm(meta)
        self._remove_pins(sid)

    @staticmethod
    def _unmount_shm(meta: dict[str, Any]) -> None:
        shm = meta.get("shm")
        if shm:
            while overlay.umount(shm, detach=True):
                pass

    async def remove_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        await self.stop_sandbox(sandbox_id)
        members = [c.id for c in self._containers.values()
                   if c.meta["sandbox_id"] == sandbox_id]
        for cid in members:
            await self.remove_container(cid)
        await self._discard_sandbox(sb.dir, sb.meta)
        self._sandboxes.pop(sandbox_id, None)

    async def _discard_sandbox(self, d: Path, meta: dict[str, Any] | None) -> None:
        """Remove whatever exists of a sandbox (also a half-made one)."""
        sid = d.name
        meta = meta or {}
        if self.runc.state_exists(sid):
            try:
                await self.runc.run("delete", "--force", sid)
            except RuncError as e:
                log.warning("runc delete %s: %s", sid, e)
        config = meta.get("config") or {}
        if not config.get("host_network") and not meta.get("network_down"):
            netns = meta.get("netns")
            try:
                await self.network.teardown_pod(sid, Path(netns) if netns else None)
            except Exception:  # noqa: BLE001 - keep removing the rest
                log.exception("teardown of sandbox %s network", sid)
        parent = meta.get("cgroup_parent")
        _forget_pid(meta.get("pid"), meta.get("pid_start"))

        def cleanup() -> None:
            self._remove_pins(sid)
            self._unmount_shm(meta)
            while overlay.umount(d / "shm", detach=True):   # mounted, not yet in meta.json
                pass
            if parent:
                cgroups.remove(f"{parent}/{sid}")
                if not any(s.meta.get("cgroup_parent") == parent and s.id != sid
                           for s in self._sandboxes.values()):
                    cgroups.remove(parent)
            self._forget_conmon_files(sid)
            shutil.rmtree(d, ignore_errors=True)

        await asyncio.to_thread(cleanup)

    def _forget_conmon_files(self, cid: str) -> None:
        for p in (self.exits_dir / cid, self.sockets_dir / cid):
            try:
                p.unlink()
            except OSError:
                pass

    async def list_sandboxes(self) -> list[Sandbox]:
        return [self._sandbox_view(sb) for sb in self._sandboxes.values()]

    # -- containers -----------------------------------------------------------------------
    async def create_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        sb = self._sandboxes.get(sandbox.id)
        if sb is None or not sb.alive():
            raise CRIError("CreateContainerError", f"pod sandbox {sandbox.id} is not running")
        cid = secrets.token_hex(32)
        d = self.containers_dir / cid
        cgroup = f"{sb.meta['cgroup_parent']}/{cid}"
        shared_pid = sb.config.share_process_namespace and not sb.config.host_pid
        meta: dict[str, Any] = {
            "id": cid, "sandbox_id": sb.id, "name": config.name, "attempt": config.attempt,
            "image_ref": config.image_ref, "image_id": config.image.id,
            "created_at": 0.0, "started_at": 0.0, "pid": None, "pid_start": None,
            "cgroup": cgroup, "shared_pid": shared_pid,
            "log_path": str(config.log_path) if config.log_path else None,
            "labels": config.labels, "annotations": config.annotations,
            "stop_signal": config.stop_signal, "complete": False,
        }
        c = _Container(cid, d, meta)
        bundle: asyncio.Future | None = None
        new_log = False
        try:
            if not config.image.layers:
                raise ValueError(f"image {config.image_ref} has no layers")
            d.mkdir(parents=True)
            if config.log_path:        # conmon opens the log before it waits
                config.log_path.parent.mkdir(parents=True, exist_ok=True)
                new_log = not config.log_path.exists()
            # conmon starts (and waits on its start pipe) while the bundle is written
            bundle = asyncio.ensure_future(asyncio.to_thread(self._make_bundle, c, sb, config))
            name = (f"k8s_{config.name}_{sb.config.name}_{sb.config.namespace}_"
                    f"{sb.config.uid}_{config.attempt}")
            try:
                pid = await launch(self.conmon, self.runc, cid=cid, name=name, bundle=d,
                                   exit_dir=self.exits_dir, socket_dir=self.sockets_dir,
                                   log_path=config.log_path, stdin=config.stdin,
                                   stdin_once=config.stdin_once, tty=config.tty,
                                   cgroup_procs=self._conmon_cgroup, ready=bundle)
                meta["pid"], meta["pid_start"] = pid, _pid_start(pid)
            except RuncError as e:
                if not any(s in e.message for s in _EXEC_ERRORS):
                    raise
                # runc 1.1 looks the entrypoint up at create time; like containerd (which
                # creates the task in StartContainer) this is a start failure.
                meta["start_error"] = e.message
        except BaseException as e:
            if bundle is not None and not bundle.done():
                await asyncio.wait([bundle])         # a thread cannot be cancelled
            if bundle is not None and not bundle.cancelled() and bundle.exception() \
                    and new_log:
                _remove_if_empty(config.log_path)    # nothing ran: leave no attempt behind
            await self._discard_container(cid, d)
            if isinstance(e, Exception):
                raise CRIError("CreateContainerError", str(e)) from e
            raise
        meta["created_at"] = time.time()
        meta["complete"] = True
        c.save()
        self._containers[cid] = c
        return cid

    def _make_bundle(self, c: _Container, sb: _Sandbox, config: ContainerConfig) -> None:
        d = c.dir
        rootfs, upper, work = d / "rootfs", d / "upper", d / "work"
        for p in (rootfs, upper, work):
            p.mkdir(parents=True)
        c.save()
        overlay.mount_overlay(config.image.layers, upper, work, rootfs)
        sec = config.security
        if sec.run_as_user is None:
            user = spec.resolve_user(str((config.image.config or {}).get("User") or ""), rootfs)
        else:
            user = spec.resolve_user(str(sec.run_as_user), rootfs)
        if sec.run_as_group is not None:
            user.gid = sec.run_as_group
        ns = spec.Namespaces(
            network=sb.meta.get("netns"), ipc=sb.meta.get("ipc"), uts=sb.meta.get("uts"),
            pid=f"/proc/{sb.meta['pid']}/ns/pid" if c.meta["shared_pid"] else None,
            private_pid=not sb.config.host_pid)
        oci = spec.container_spec(config, sb.config, rootfs, c.meta["cgroup"], ns,
                                  self._pod_files(sb), user, self.limits)
        (d / "config.json").write_bytes(orjson.dumps(oci))
        c.process = oci["process"]

    async def _discard_container(self, cid: str, d: Path) -> None:
        if self.runc.state_exists(cid):
            try:
                await self.runc.run("delete", "--force", cid)
            except RuncError as e:
                log.warning("runc delete %s: %s", cid, e)
        meta = _load(d / "meta.json") or {}
        _forget_pid(meta.get("pid"), meta.get("pid_start"))
        _forget_pid(meta.get("conmon_pid"), meta.get("conmon_start"))

        def cleanup() -> None:
            rootfs = d / "rootfs"
            while overlay.is_mountpoint(rootfs):
                overlay.umount(rootfs, detach=True)
            if meta.get("cgroup"):
                cgroups.remove(meta["cgroup"])
            self._forget_conmon_files(cid)
            shutil.rmtree(d, ignore_errors=True)

        await asyncio.to_thread(cleanup)

    def _container(self, cid: str) -> _Container:
        c = self._containers.get(cid)
        if c is None:
            raise CRIError("NotFound", f"container {cid} not found")
        return c

    async def start_container(self, container_id: str) -> None:
        c = self._container(container_id)
        async with c.lock:
            if c.meta.get("start_error"):
                self._finish(c, 128, "ContainerCannotRun", c.meta["start_error"], time.time())
                raise CRIError("RunContainerError", c.meta["start_error"])
            try:
                await self.runc.start(container_id, c.meta.get("pid"))
            except RuncError as e:
                self._finish(c, 128, "ContainerCannotRun", e.message, time.time())
                raise CRIError("RunContainerError", e.message) from e
            c.meta["started_at"] = time.time()
            c.save()

    def _finish(self, c: _Container, code: int, reason: str, message: str,
                finished_at: float) -> None:
        c.meta["final"] = {"exit_code": code, "reason": reason, "message": message,
                           "finished_at": finished_at}
        c.save()

    async def stop_container(self, container_id: str, timeout: float,
                             signal: str = "SIGTERM") -> None:
        c = self._container(container_id)
        if self._state(c) is State.EXITED:
            return
        if self._state(c) is State.CREATED:
            await self._kill_and_wait(c)
            return
        self._signal(c, _signal_number(signal or c.meta.get("stop_signal") or "SIGTERM"))
        if not await self._wait_exit(c, max(timeout, 0.0)):
            await self._kill_and_wait(c)

    def _signal(self, c: _Container, sig: int) -> None:
        pids = cgroups.procs(c.meta["cgroup"]) if c.meta.get("shared_pid") else []
        pid = c.meta.get("pid")
        if _alive(pid, c.meta.get("pid_start")):
            pids.append(pid)
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    async def _kill_and_wait(self, c: _Container) -> None:
        if self._state(c) is State.EXITED:
            return
        self._signal(c, signals.SIGKILL)
        await self._wait_exit(c, EXIT_WAIT)

    async def _wait_exit(self, c: _Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            if self._state(c) is State.EXITED:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @staticmethod
    async def _wait_gone(pid: int, start: int | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _alive(pid, start) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.get(container_id)
        if c is None:
            return
        async with c.lock:
            if self._state(c) is not State.EXITED:
                await self._kill_and_wait(c)
            await self._discard_container(container_id, c.dir)
            _forget_pid(c.meta.get("pid"), c.meta.get("pid_start"))
            _forget_pid(c.meta.get("conmon_pid"), c.meta.get("conmon_start"))
            self._containers.pop(container_id, None)

    # -- status ---------------------------------------------------------------------------
    def _state(self, c: _Container) -> State:
        return self._status(c).state

    def _status(self, c: _Container) -> ContainerStatus:
        m = c.meta
        final = m.get("final") or self._observe_exit(c)
        status = ContainerStatus(
            id=c.id, sandbox_id=m["sandbox_id"], name=m["name"], attempt=m["attempt"],
            state=State.CREATED, image_ref=m["image_ref"], image_id=m["image_id"],
            created_at=m["created_at"], started_at=m.get("started_at") or 0.0,
            log_path=c.log_path, labels=m.get("labels") or {},
            annotations=m.get("annotations") or {})
        if final:
            status.state = State.EXITED
            status.exit_code = final["exit_code"]
            status.reason = final["reason"]
            status.message = final["message"]
            status.finished_at = final["finished_at"]
            return status
        status.pid = m.get("pid")
        status.state = State.RUNNING if m.get("started_at") else State.CREATED
        return status

    def _observe_exit(self, c: _Container) -> dict[str, Any] | None:
        """Has the container exited? Reads conmon's exit file; records the final status."""
        m = c.meta
        if m.get("start_error"):
            return None
        if not m.get("gone") and _alive(m.get("pid"), m.get("pid_start")):
            return None              # conmon writes the exit file after the process is gone
        exit_file = c.dir / "exit"
        try:
            st = os.stat(exit_file)
            code = int(exit_file.read_text().strip() or "-1")
        except (OSError, ValueError):
            if not m.get("gone") and _alive(m.get("pid"), m.get("pid_start")):
                return None
            if not m.get("gone") and self._conmon_alive(c):
                return None          # the process is gone, conmon is writing the exit file
            if (c.dir / "exit").exists():
                return self._observe_exit(c)
            self._finish(c, 255, "Error",
                         "container exit status unknown: its monitor (conmon) is gone",
                         time.time())
            return m["final"]
        oom = (c.dir / "oom").exists() or cgroups.oom_kill_count(m["cgroup"]) > 0
        if oom:
            reason = "OOMKilled"
        else:
            reason = "Completed" if code == 0 else "Error"
        self._finish(c, code, reason, "", st.st_mtime)
        return m["final"]

    def _conmon_alive(self, c: _Container) -> bool:
        try:
            pid = int((c.dir / "conmon.pid").read_text())
        except (OSError, ValueError):
            return False
        if "conmon_start" not in c.meta:
            c.meta["conmon_pid"], c.meta["conmon_start"] = pid, _pid_start(pid)
        return _alive(pid, c.meta["conmon_start"])

    async def list_containers(self) -> list[ContainerStatus]:
        return [self._status(c) for c in list(self._containers.values())]

    async def container_status(self, container_id: str) -> ContainerStatus:
        return self._status(self._container(container_id))

    def cgroup_path(self, container_id: str) -> str | None:
        c = self._containers.get(container_id)
        return c.meta["cgroup"] if c else None

    # -- exec, attach, logs ---------------------------------------------------------------
    def _process_template(self, c: _Container) -> dict[str, Any]:
        if c.process is None:
            c.process = orjson.loads((c.dir / "config.json").read_bytes())["process"]
        return c.process

    def _exec_spec(self, c: _Container, cmd: list[str], tty: bool) -> Path:
        if self._state(c) is not State.RUNNING:
            raise CRIError("ExecError", f"container {c.id} is not running")
        process = dict(self._process_template(c), args=list(cmd), terminal=tty)
        path = self.exec_dir / f"{c.id[:12]}-{secrets.token_hex(8)}.json"
        path.write_bytes(orjson.dumps(process))
        return path

    async def exec_sync(self, container_id: str, cmd: list[str],
                        timeout: float) -> tuple[int, bytes]:
        c = self._container(container_id)
        spec_path = self._exec_spec(c, cmd, False)
        pid_file = spec_path.with_suffix(".pid")
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.runc.argv("exec", "--process", str(spec_path), "--pid-file",
                                str(pid_file), container_id),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            try:
                out = await asyncio.wait_for(_read_capped(proc.stdout, EXEC_OUTPUT_LIMIT),
                                             timeout if timeout > 0 else None)
                code = await proc.wait()
            except TimeoutError:
                streams.kill_pid_file(pid_file)
                proc.kill()
                await proc.wait()
                raise TimeoutError(
                    f"command {cmd!r} timed out after {timeout:g}s") from None
            if code == 255 and out.startswith(b'time="') and b"exec failed" in out:
                # runc could not start the command: report it like a shell would
                message = runc_message(out.decode(errors="replace"))
                return (127 if "not found" in message else 126), message.encode()
            return code, out
        finally:
            for p in (spec_path, pid_file):
                p.unlink(missing_ok=True)

    async def exec(self, container_id: str, cmd: list[str], *, tty: bool,
                   stdin: bool) -> cri.Stream:
        c = self._container(container_id)
        spec_path = self._exec_spec(c, cmd, tty)
        return await streams.start_exec(self.runc, container_id, spec_path, tty=tty,
                                        stdin=stdin)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> cri.Stream:
        c = self._container(container_id)
        if self._state(c) is State.EXITED:
            raise CRIError("AttachError", f"container {container_id} is not running")

        async def exit_code() -> int:
            await self._wait_exit(c, EXIT_WAIT)
            return self._status(c).exit_code

        return await streams.attach(c.dir, stdin=stdin, tty=tty, exit_code=exit_code)

    async def reopen_log(self, container_id: str) -> None:
        c = self._container(container_id)
        if self._state(c) is State.EXITED:
            return
        await asyncio.to_thread(streams.write_ctl, c.dir / "ctl", "2 0 0\n")


def _sysctl_namespace(key: str) -> str | None:
    """The namespace a sysctl belongs to (runc's list of namespaced sysctls)."""
    name = key.replace("/", ".")
    if name.startswith("net."):
        return "net"
    if name in ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced") \
            or name.startswith("fs.mqueue."):
        return "ipc"
    if name in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _remove_if_empty(path: Path) -> None:
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except OSError:
        pass


async def _all(*aws: Any) -> None:
    """Run concurrently, wait for all of them, then raise the first failure."""
    for r in await asyncio.gather(*aws, return_exceptions=True):
        if isinstance(r, BaseException):
            raise r


async def _read_capped(reader: asyncio.StreamReader | None, limit: int) -> bytes:
    if reader is None:
        return b""
    buf = bytearray()
    while chunk := await reader.read(65536):
        if len(buf) < limit:
            buf += chunk[: limit - len(buf)]
    return bytes(buf)
