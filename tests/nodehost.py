"""Test hosts: node agents in network namespaces of their own, on one machine.

A ``HostNetwork`` is a bridge in the root namespace (``10.99.N.1/24``, the test-host range)
with one veth per host; each host is a network namespace with ``eth0`` = ``10.99.N.(i+2)``
and no default route, so nothing a host or its pods send can leave the machine. The API
server listens on all addresses and is reached from the hosts at ``10.99.N.1``.

``AgentHost.start`` runs ``sampan agent`` inside the host's namespace (``nsenter --net``; the
mount namespace stays the machine's, so mounts are visible to the test). ``cleanup`` makes
sure nothing is left: it kills only processes inside the agent's own cgroup tree, unmounts
what is under the agent's directories, removes the cgroups, the namespace and the veth.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class HostNetwork:
    def __init__(self, subnet: int | None = None):
        self.tag = secrets.token_hex(2)
        self.subnet = subnet if subnet is not None else 100 + int(self.tag, 16) % 150
        self.bridge = f"spb{self.tag}"
        self.gateway = f"10.99.{self.subnet}.1"
        self.hosts: list[AgentHost] = []
        self._added_unreachable = False

    def create(self) -> HostNetwork:
        # The test-host range never leaves the machine: only the bridge's /24 is reachable.
        routes = _ip("route", "show", "type", "unreachable", "10.99.0.0/16").stdout
        if "10.99.0.0/16" not in routes:
            _ip("route", "add", "unreachable", "10.99.0.0/16")
            self._added_unreachable = True
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> AgentHost:
        index = len(self.hosts)
        host = AgentHost(self, name, index)
        host.create()
        self.hosts.append(host)
        return host

    def destroy(self) -> None:
        for host in self.hosts:
            host.cleanup()
        _ip("link", "del", self.bridge, check=False)
        if self._added_unreachable:
            _ip("route", "del", "unreachable", "10.99.0.0/16", check=False)


class AgentHost:
    def __init__(self, net: HostNetwork, node_name: str, index: int):
        self.net = net
        self.node_name = node_name
        self.netns = f"spn{net.tag}{index}"
        self.veth = f"sph{net.tag}{index}"
        self.ip = f"10.99.{net.subnet}.{index + 2}"
        self.cgroup_root = f"/sampan-test-{net.tag}/{node_name}"
        self.run_dir = Path(f"/run/sampan-test-{net.tag}/{node_name}")
        self.data_dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self._relaunch: Callable[[], subprocess.Popen] | None = None
        self.log_path: Path | None = None

    def create(self) -> None:
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _ip("link", "set", self.veth, "master", self.net.bridge)
        _ip("link", "set", self.veth, "up")
        self.exec_ip("addr", "add", f"{self.ip}/24", "dev", "eth0")
        self.exec_ip("link", "set", "eth0", "up")
        self.exec_ip("link", "set", "lo", "up")

    def exec_ip(self, *args: str) -> None:
        _ip("-n", self.netns, *args)

    def nsenter(self, *command: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *command],
                              capture_output=True, text=True, **kw)

    def start(self, kubeconfig: str, data_dir: Path, *extra: str) -> subprocess.Popen:
        self.start_args = (kubeconfig, data_dir, *extra)
        self._relaunch = lambda: self.start(kubeconfig, data_dir, *extra)
        return self._launch(["--kubeconfig", kubeconfig], data_dir, extra)

    def join(self, server_url: str, token: str, data_dir: Path, *extra: str) -> subprocess.Popen:
        """``sampan agent --server URL --token TOKEN``: join as another machine would, with
        nothing but the join token (no kubeconfig, no CA file)."""
        self._relaunch = lambda: self.join(server_url, token, data_dir, *extra)
        return self._launch(["--server", server_url, "--token", token], data_dir, extra)

    def agent_command(self, auth: list[str], data_dir: Path, *extra: str) -> list[str]:
        """The ``sampan agent`` command line of this host (run it with ``nsenter``)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m",
                "sampan.cli.main", "agent", *auth, "--node-name", self.node_name,
                "--agent-data-dir", str(data_dir), "--run-dir", str(self.run_dir),
                "--node-ip", self.ip, "--cgroup-root", self.cgroup_root, *extra]

    def _launch(self, auth: list[str], data_dir: Path, extra: tuple[str, ...]) -> subprocess.Popen:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"{self.node_name}.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.agent_command(auth, data_dir, *extra),
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        return self.process

    def restart(self) -> subprocess.Popen:
        assert self._relaunch is not None, "restart() of an agent that never started"
        self.stop()
        return self._relaunch()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and \
            self.log_path.exists() else ""

    # -- what is left --------------------------------------------------------------------------
    def cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for hierarchy in _hierarchies():
            root = hierarchy / self.cgroup_root.lstrip("/")
            if root.exists():
                for procs in root.rglob("cgroup.procs"):
                    try:
                        pids.update(int(p) for p in procs.read_text().split())
                    except OSError:
                        pass
        return pids

    def mounts(self) -> list[str]:
        prefixes = [str(self.run_dir) + "/"] + ([str(self.data_dir) + "/"] if self.data_dir else [])
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [p for p in points if any(p.startswith(x) for x in prefixes)]

    def cgroups(self) -> list[Path]:
        out = []
        for hierarchy in _hierarchies():
            root = hierarchy / self.cgroup_root.lstrip("/")
            if root.exists():
                out.extend(p for p in root.rglob("*") if p.is_dir())
        return out

    def pod_netns(self) -> list[str]:
        d = self.run_dir / "netns"
        return sorted(os.listdir(d)) if d.exists() else []

    def veths(self) -> list[str]:
        out = self.nsenter("ip", "-o", "link", "show", "type", "veth").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line]

    def simulate_reboot(self) -> None:
        """What a machine restart does to a node: the agent and every container, pause and
        monitor process gone, nothing mounted, the tmpfs run directory empty."""
        self.stop(signal.SIGKILL)
        self._kill_cgroup_processes()
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _kill_cgroup_processes(self) -> None:
        """Only processes inside this agent's own cgroup tree: the ones it started."""
        for _ in range(5):
            pids = self.cgroup_pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Leave the machine as it was, whatever the agent left behind."""
        self.stop()
        self._kill_cgroup_processes()
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for hierarchy in _hierarchies():
            top = hierarchy / self.cgroup_root.lstrip("/").split("/")[0]
            if top.exists():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
                try:
                    top.rmdir()
                except OSError:
                    pass
        _ip("netns", "del", self.netns, check=False)
        _ip("link", "del", self.veth, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        try:
            self.run_dir.parent.rmdir()
        except OSError:
            pass


def _hierarchies() -> list[Path]:
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]  # cgroup v2
    out = []
    for entry in sorted(CGROUP_FS.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            out.append(entry)
    return out
