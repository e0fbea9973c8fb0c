"""Start a real Sampan API server for tests: a subprocess on a free loopback port with its own
data directory, stopped (by its own PID only) when the test is done."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPAN = str(ROOT / ".venv" / "bin" / "sampan")
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    controllers: subprocess.Popen | None = None
    components: list[subprocess.Popen] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / "admin.kubeconfig")

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def token(self) -> str:
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        return config["users"][0]["user"]["token"]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        for component in self.components:
            stop_process(component, signal.SIGTERM, timeout)
        return stop_process(self.process, sig, timeout)

    def start_component(self, command: str, *args: str) -> subprocess.Popen:
        """``sampan COMMAND --kubeconfig K ARGS`` against this server, logging to
        ``DATA_DIR/COMMAND.log``; stopped with the server (or by ``stop_component``)."""
        with open(self.data_dir / f"{command}.log", "ab") as log:
            process = subprocess.Popen([SAMPAN, command, "--kubeconfig", self.kubeconfig, *args],
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.components.append(process)
        return process

    def stop_component(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
        code = stop_process(process, sig, 15)
        if process in self.components:
            self.components.remove(process)
        return code

    def component_logs(self, command: str) -> str:
        path = self.data_dir / f"{command}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_controllers(self, *args: str) -> subprocess.Popen:
        """``sampan controller-manager`` against this server (as a real cluster runs it)."""
        self.controllers = self.start_component(
            "controller-manager", "--service-account-private-key-file",
            str(self.data_dir / "pki" / "service-account.key"),
            "--root-ca-file", str(self.data_dir / "pki" / "ca.crt"), *args)
        return self.controllers

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_process(process: subprocess.Popen, sig: int, timeout: float) -> int:
    """Signal a process this test started (by its PID), wait, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def start_server(data_dir: Path, *, port: int | None = None, extra: list[str] = (),
                 timeout: float = 60, controllers: bool = False,
                 host: str = "127.0.0.1") -> Server:
    """``host``: the address the server listens on and advertises (a test-host bridge's
    address when node agents in network namespaces must reach it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / "server.log"
    cmd = [SAMPAN, "server", "--data-dir", str(data_dir), "--port", str(port),
           "--bind-address", host, "--advertise-address", host, *extra]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(data_dir, port, process, log_path, host=host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sampan server exited with {process.returncode}:\n{server.logs()[-4000:]}")
        if (data_dir / "admin.kubeconfig").exists():
            try:
                with urllib.request.urlopen(f"{server.url}/readyz", context=server.ssl_context(),
                                            timeout=2) as r:
                    if r.status == 200:
                        if controllers:
                            server.start_controllers()
                        return server
            except OSError:
                pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"sampan server not ready in {timeout}s:\n{server.logs()[-4000:]}")
