"""Start real etcd members (Debian's etcd-server) on free loopback ports, for tests and benchmarks.

    with etcd_cluster(3) as cluster:              # or: cluster = start_etcd_cluster(3, workdir)
        store = EtcdStore(cluster.client_urls, prefix="/t/")
        cluster.kill(0)                            # SIGKILL one member
        cluster.start(0); cluster.wait_ready()     # back on the same data dir

Each member gets its own data dir under a fresh temporary directory; ``stop()`` kills every
process this module started, by PID, and removes that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 20.0


def free_ports(n: int) -> list[int]:
    """Ports the kernel just handed out (bound together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log_path: str
    process: subprocess.Popen[bytes] | None = None


@dataclass
class EtcdCluster:
    members: list[Member]
    workdir: str
    token: str = field(default_factory=lambda: f"sampan-test-{os.getpid()}-{time.monotonic_ns()}")

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, index: int) -> None:
        member = self.members[index]
        if member.process is not None and member.process.poll() is None:
            return
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        args = [
            ETCD,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={member.client_url}",
            f"--advertise-client-urls={member.client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--snapshot-count=10000",
        ]
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, indexes: list[int] | None = None, timeout: float = START_TIMEOUT) -> None:
        """Until every given member answers /health (which needs a leader)."""
        deadline = time.monotonic() + timeout
        for i in indexes if indexes is not None else range(len(self.members)):
            member = self.members[i]
            while not _healthy(member.client_url):
                if member.process is None or member.process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited; see {member.log_path}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {member.name} not healthy; see {member.log_path}")
                time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL the member's process (the PID this cluster started)."""
        process = self.members[index].process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self, index: int) -> None:
        self.kill(index)
        self.start(index)

    def stop(self) -> None:
        """Kill every member and remove the data."""
        for i in range(len(self.members)):
            self.kill(i)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=1.0) as response:
            return b'"true"' in response.read()
    except (urllib.error.URLError, OSError):
        return False


def start_etcd_cluster(size: int = 1, workdir: str | os.PathLike[str] | None = None) -> EtcdCluster:
    """``size`` healthy etcd members on loopback, with data under ``workdir`` (created if need
    be; default: the system temp dir). Call ``stop()`` when done."""
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="sampan-etcd-", dir=workdir)
    ports = free_ports(2 * size)
    members = [
        Member(
            name=f"m{i}",
            client_url=f"http://127.0.0.1:{ports[2 * i]}",
            peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
            data_dir=os.path.join(base, f"m{i}"),
            log_path=os.path.join(base, f"m{i}.log"),
        )
        for i in range(size)
    ]
    cluster = EtcdCluster(members, base)
    try:
        for i in range(size):
            cluster.start(i)
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def etcd_cluster(
    size: int = 1, *, workdir: str | os.PathLike[str] | None = None
) -> Iterator[EtcdCluster]:
    """``start_etcd_cluster`` as a context manager."""
    cluster = start_etcd_cluster(size, workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
