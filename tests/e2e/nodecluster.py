"""A real cluster with real node agents for e2e tests: API server, controller manager and
scheduler as processes, and ``sampan agent`` on test hosts (network namespaces, see
tests/nodehost.py) running real containers with runc."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster import KUBECTL, Server, start_server
from tests.nodehost import AgentHost, HostNetwork

BUSYBOX = "busybox:1.35"


@dataclass
class NodeCluster:
    server: Server
    net: HostNetwork
    work: Path
    hosts: dict[str, AgentHost] = field(default_factory=dict)

    # -- kubectl ---------------------------------------------------------------------------------
    def kubectl_run(self, *args: str, input: str | None = None, check: bool = True,
                    timeout: float = 90) -> subprocess.CompletedProcess:
        result = subprocess.run([KUBECTL, "--kubeconfig", self.server.kubeconfig, *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def kubectl(self, *args: str, **kw) -> str:
        return self.kubectl_run(*args, **kw).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: str, ns: str) -> None:
        self.kubectl("apply", "-n", ns, "-f", "-", input=manifest)

    def namespace(self) -> str:
        name = f"node-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name

    # -- nodes ------------------------------------------------------------------------------------
    def add_node(self, name: str, *extra: str, wait: bool = True) -> AgentHost:
        host = self.net.add_host(name)
        data_dir = self.work / name
        seed_images(data_dir)
        # Agents join with the node token, as on a real cluster (RBAC group system:nodes).
        host.start(str(self.server.data_dir / "node.kubeconfig"), data_dir,
                   "--sync-frequency", "3", "--allowed-host-paths", "/tmp", *extra)
        self.hosts[name] = host
        if wait:
            self.wait_node_ready(name)
        return host

    def join_node(self, name: str, token: str, *extra: str, wait: bool = True) -> AgentHost:
        """A node that joins as another machine would: ``sampan agent --server URL --token
        TOKEN``, no kubeconfig and no CA file (it discovers and pins the CA)."""
        host = self.net.add_host(name)
        data_dir = self.work / name
        seed_images(data_dir)
        process = host.join(self.server.url, token, data_dir, "--sync-frequency", "3", *extra)
        self.hosts[name] = host
        if wait:
            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the agent of {name} exited with {process.returncode}:"
                                         f"\n{host.logs()[-3000:]}")
                r = self.kubectl_run("get", "node", name, "-o", "jsonpath={.status.conditions"
                                     "[?(@.type=='Ready')].status}", check=False)
                return r.stdout.strip() == "True"
            wait_for(ready, 90, f"node {name} Ready", lambda: host.logs()[-3000:])
        return host

    def join_token(self) -> str:
        """What ``sampan server`` prints to join a node: ``K10<sha256 of the CA>::node:<node
        token>`` (sampan.apiserver.pki.join_token), from the server's data directory."""
        from sampan.apiserver.pki import JOIN_TOKEN_PREFIX, ca_hash

        pki = self.server.data_dir / "pki"
        secret = (pki / "node.token").read_text().strip()
        return f"{JOIN_TOKEN_PREFIX}{ca_hash((pki / 'ca.crt').read_bytes())}::node:{secret}"

    def exec(self, ns: str, pod: str, *command: str,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """``kubectl exec`` in a pod's (first) container; the caller checks the result."""
        return self.kubectl_run("exec", "-n", ns, pod, "--", *command, check=False,
                                timeout=timeout)

    def wait_node_ready(self, name: str, timeout: float = 90) -> None:
        def ready() -> bool:
            r = self.kubectl_run("get", "node", name, "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                 check=False)
            return r.stdout.strip() == "True"
        wait_for(ready, timeout, f"node {name} Ready",
                 lambda: self.hosts[name].logs()[-3000:] if name in self.hosts else "")

    def wait_pod(self, ns: str, name: str, condition: str = "Ready", timeout: float = 90) -> dict:
        r = self.kubectl_run("wait", "-n", ns, f"pod/{name}", f"--for=condition={condition}",
                             f"--timeout={int(timeout)}s", timeout=timeout + 10, check=False)
        if r.returncode != 0:
            describe = self.kubectl_run("describe", "pod", "-n", ns, name, check=False).stdout
            logs = "\n".join(h.logs()[-3000:] for h in self.hosts.values())
            raise AssertionError(f"pod {ns}/{name} not {condition}: {r.stderr}\n{describe}\n"
                                 f"agent logs:\n{logs}")
        return self.json("get", "pod", "-n", ns, name)

    def pod_phase(self, ns: str, name: str) -> str:
        return self.kubectl("get", "pod", "-n", ns, name, "-o", "jsonpath={.status.phase}")

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()
        self.server.stop()
        self.net.destroy()


def seed_images(data_dir: Path) -> None:
    """The offline busybox image in the node's store (there is no registry to pull from)."""
    from sampan.node.images import ImageStore
    from sampan.node.images.build import build_busybox

    store = ImageStore(data_dir / "images")
    build_busybox(store, tags=["docker.io/library/busybox:latest", f"docker.io/library/{BUSYBOX}"])


def wait_for(check, timeout: float, what: str, details=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{details()}")


def start_node_cluster(work: Path, *controller_args: str) -> NodeCluster:
    net = HostNetwork().create()
    saved = os.environ.get("SAMPAN_METRIC_RESOLUTION")
    os.environ["SAMPAN_METRIC_RESOLUTION"] = "2"  # kubectl top without waiting 30 s
    try:
        server = start_server(work / "server", host=net.gateway)
        server.start_controllers("--local-path-dir", str(work / "storage"), *controller_args)
        server.start_component("scheduler", "--metrics-bind-address", "")
    except BaseException:
        net.destroy()
        raise
    finally:
        if saved is None:
            os.environ.pop("SAMPAN_METRIC_RESOLUTION", None)
        else:
            os.environ["SAMPAN_METRIC_RESOLUTION"] = saved
    return NodeCluster(server, net, work)


def in_host(host: AgentHost, *command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a host tool inside a test host's network namespace (e.g. busybox wget to a pod)."""
    return host.nsenter(*command, timeout=timeout)


def http_get(host: AgentHost, url: str, timeout: float = 5) -> str:
    """GET ``url`` from inside a test host's network namespace (host tools: Python)."""
    import sys

    code = ("import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())")
    r = host.nsenter(sys.executable, "-c", code, timeout=timeout + 10)
    if r.returncode != 0:
        raise AssertionError(f"GET {url} from {host.node_name} failed: {r.stderr[-2000:]}")
    return r.stdout


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
