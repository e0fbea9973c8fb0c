"""Logs, exec, attach and cp through the real API server to the node agent's server, driven
by the real kubectl and the official Python client.

The agent server runs in this process with a stand-in runtime whose exec/attach run host
processes (in a temporary "container root" directory, with a pty for tty) — the runc runtime
is tested on its own; end-to-end tests with real containers live elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import termios
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.node.cri import ContainerStatus, CRIError, State
from sampan.node.logs import encode_line
from sampan.node.server import AgentServer
from tests.cluster import KUBECTL, free_port
from tests.integration.helpers import new_namespace, set_pod_status

TIMEOUT = 60.0


# -- a runtime made of host processes ------------------------------------------------------------
class HostStream:
    """cri.Stream over a host process: pipes, or a pty when tty."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int | None):
        self.proc = proc
        self.master = master

    @classmethod
    async def start(cls, cmd: list[str], cwd: Path, *, tty: bool, stdin: bool) -> "HostStream":
        if tty:
            master, slave = pty.openpty()
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=cwd, stdin=slave, stdout=slave,
                                                        stderr=slave, start_new_session=True)
            os.close(slave)
            os.set_blocking(master, False)
            return cls(proc, master)
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=cwd, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=1 << 20)
        return cls(proc, None)

    async def write_stdin(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)
        elif self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.master is not None:
            os.write(self.master, b"\x04")
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def read_stdout(self) -> bytes:
        if self.master is None:
            return await self.proc.stdout.read(65536)
        loop = asyncio.get_running_loop()
        while True:
            try:
                return os.read(self.master, 65536)
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(self.master, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.master)
            except OSError:  # EIO: the other side is gone
                return b""

    async def read_stderr(self) -> bytes:
        return b"" if self.master is not None else await self.proc.stderr.read(65536)

    async def resize(self, width: int, height: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        return await self.proc.wait()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.master is not None:
            os.close(self.master)
            self.master = None


class HostRuntime:
    def __init__(self, root: Path):
        self.root = root
        self.states: dict[str, State] = {}

    async def container_status(self, cid: str) -> ContainerStatus:
        if cid not in self.states:
            raise CRIError("NotFound", f"no container {cid}")
        return ContainerStatus(id=cid, sandbox_id="sb", name=cid, attempt=0, state=self.states[cid],
                               image_ref="busybox", image_id="sha256:0", created_at=time.time())

    async def exec(self, cid: str, cmd: list[str], *, tty: bool, stdin: bool) -> HostStream:
        return await HostStream.start(cmd, self.root, tty=tty, stdin=stdin)

    async def attach(self, cid: str, *, stdin: bool, tty: bool) -> HostStream:
        return await HostStream.start(["sh", "-c", "echo attached-1; sleep 0.2; echo attached-2"],
                                      self.root, tty=tty, stdin=stdin)

    async def exec_sync(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=self.root, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode, out


class Resolver:
    def __init__(self, logs: Path):
        self.logs = logs
        self.by_name: dict[tuple[str, str], dict[str, Any]] = {}

    def pods(self) -> list[dict[str, Any]]:
        return list(self.by_name.values())

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.by_name.get((namespace, name))

    def container_id(self, pod_uid: str, container: str, previous: bool = False) -> str | None:
        return None if previous else f"{pod_uid}-{container}"

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        path = self.logs / pod_uid / container / ("0.log" if previous else "1.log")
        return path if path.exists() else None

    def netns(self, pod_uid: str) -> Path | None:
        return None


@dataclass
class Node:
    client: Client
    kubeconfig: str
    namespace: str
    pod: str
    uid: str
    runtime: HostRuntime
    resolver: Resolver
    root: Path

    @property
    def cid(self) -> str:
        return f"{self.uid}-app"

    def log_file(self) -> Path:
        path = self.resolver.logs / self.uid / "app" / "1.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def kubectl(self, *args: str, stdin: bytes | None = None, timeout: float = TIMEOUT) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out, err


@pytest.fixture
async def node(server, tmp_path) -> AsyncIterator[Node]:
    kubeconfig = server.kubeconfig
    root = tmp_path / "rootfs"
    root.mkdir()
    runtime = HostRuntime(root)
    resolver = Resolver(tmp_path / "logs")
    agent = AgentServer(runtime, resolver, ca_file=server.data_dir / "pki" / "ca.crt",
                        cert_dir=tmp_path / "pki", address="127.0.0.1", port=0, node_name="streaming")
    await agent.start()
    node_name = f"nst-{uuid.uuid4().hex[:8]}"
    async with Client(load_kubeconfig(kubeconfig)) as client:
        await client.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}})
        node = await client.get("v1", "nodes", node_name)
        node["status"] = {"addresses": [{"type": "Hostname", "address": "does-not-resolve.invalid"},
                                        {"type": "InternalIP", "address": "127.0.0.1"}],
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": agent.port}}}
        await client.update("v1", "nodes", node, subresource="status")
        namespace = await new_namespace(client, "nst")
        await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                                           "spec": {"nodeName": node_name, "containers": [
                                               {"name": "app", "image": "busybox"}]}}, namespace=namespace)
        pod = await set_pod_status(client, namespace, "web", phase="Running")
        resolver.by_name[(namespace, "web")] = pod
        uid = pod["metadata"]["uid"]
        runtime.states[f"{uid}-app"] = State.RUNNING
        try:
            yield Node(client, kubeconfig, namespace, "web", uid, runtime, resolver, root)
        finally:
            await agent.close()
            with contextlib.suppress(ApiError):
                await client.delete("v1", "namespaces", namespace)
            with contextlib.suppress(ApiError):
                await client.delete("v1", "nodes", node_name)


# -- logs ---------------------------------------------------------------------------------------
async def test_kubectl_logs(node: Node):
    now = time.time_ns()
    old = now - 3600 * 10**9
    lines = [encode_line(b"stdout", b"old %d" % i, nanos=old + i) for i in range(5)]
    lines += [encode_line(b"stderr" if i == 7 else b"stdout", b"new %d" % i, nanos=now + i) for i in range(5, 10)]
    node.log_file().write_bytes(b"".join(lines))

    rc, out, err = await node.kubectl("logs", node.pod)
    assert rc == 0, err
    assert out.decode().splitlines() == [f"old {i}" for i in range(5)] + [f"new {i}" for i in range(5, 10)]
    rc, out, _ = await node.kubectl("logs", node.pod, "--tail=3")
    assert out.decode().splitlines() == ["new 7", "new 8", "new 9"]
    rc, out, _ = await node.kubectl("logs", node.pod, "--since=10m", "-c", "app")
    assert out.decode().splitlines() == [f"new {i}" for i in range(5, 10)]
    rc, out, _ = await node.kubectl("logs", node.pod, "--tail=1", "--timestamps")
    stamp, _, text = out.decode().strip().partition(" ")
    assert text == "new 9" and stamp.endswith("Z") and stamp.startswith(time.strftime("%Y-", time.gmtime()))
    rc, out, _ = await node.kubectl("logs", node.pod, "--limit-bytes=5")
    assert out == b"old 0"

    rc, _, err = await node.kubectl("logs", node.pod, "--previous")
    assert rc != 0 and b'previous terminated container "app" in pod "web" not found' in err
    rc, _, err = await node.kubectl("logs", node.pod, "-c", "nope")
    assert rc != 0 and b"container nope is not valid for pod web" in err


async def test_kubectl_logs_follow_ends_with_the_container(node: Node):
    path = node.log_file()
    path.write_bytes(encode_line(b"stdout", b"before"))
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", node.kubeconfig, "-n", node.namespace, "logs", "-f", node.pod,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert first == b"before\n"
        with open(path, "ab") as f:
            f.write(encode_line(b"stdout", b"during"))
        second = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert second == b"during\n"
        with open(path, "ab") as f:
            f.write(encode_line(b"stdout", b"the end"))
        node.runtime.states[node.cid] = State.EXITED
        rest = await asyncio.wait_for(proc.stdout.read(), TIMEOUT)
        assert rest == b"the end\n"
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_log_errors_from_the_api_server(node: Node):
    await node.client.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
                                            "spec": {"containers": [{"name": "a", "image": "busybox"},
                                                                    {"name": "b", "image": "busybox"}]}},
                             namespace=node.namespace)
    with pytest.raises(ApiError) as e:
        await node.client.request("GET", f"/api/v1/namespaces/{node.namespace}/pods/two/log")
    assert e.value.code == 400
    assert "a container name must be specified for pod two, choose one of: [a b]" in str(e.value)
    with pytest.raises(ApiError) as e:
        await node.client.request("GET", f"/api/v1/namespaces/{node.namespace}/pods/web/log",
                                  params={"tailLines": "-1"})
    assert e.value.code == 422
    # nodes/proxy reaches the agent's own paths.
    rc, out, err = await node.kubectl("get", "--raw", f"/api/v1/nodes/{(await node.client.get('v1', 'pods', 'web', namespace=node.namespace))['spec']['nodeName']}/proxy/pods")
    assert rc == 0, err
    assert b'"PodList"' in out and b'"web"' in out


# -- exec, attach, cp -----------------------------------------------------------------------------
async def test_kubectl_exec_exit_code_and_stdin(node: Node):
    rc, out, err = await node.kubectl("exec", node.pod, "--", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert rc == 3, err
    assert out == b"hi\n" and b"oops" in err
    rc, out, err = await node.kubectl("exec", node.pod, "-c", "app", "--", "true")
    assert (rc, out) == (0, b""), err
    payload = os.urandom(300_000)
    rc, out, err = await node.kubectl("exec", "-i", node.pod, "--", "sh", "-c", "wc -c", stdin=payload)
    assert rc == 0, err
    assert out.strip() == b"300000"
    rc, _, err = await node.kubectl("exec", node.pod, "-c", "missing", "--", "true")
    assert rc != 0 and b"container missing is not valid for pod web" in err


async def test_kubectl_exec_tty_resizes(node: Node):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    script = ('for i in $(seq 100); do s=$(stty size); [ "$s" = "33 111" ] && break; sleep 0.1; done; '
              'tty >/dev/null && echo "tty:$s"')
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", node.kubeconfig, "-n", node.namespace, "exec", "-it", node.pod,
        "--", "sh", "-c", script, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while b"tty:" not in output or not output.rstrip().endswith(b"111"):
            assert loop.time() < deadline, output
            try:
                chunk = await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 4096), 5)
            except (OSError, asyncio.TimeoutError):
                break
            if not chunk:
                break
            output += chunk
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
    assert b"tty:33 111" in output


async def test_kubectl_attach(node: Node):
    rc, out, err = await node.kubectl("attach", node.pod, "-c", "app")
    assert rc == 0, err
    assert b"attached-1" in out and b"attached-2" in out


async def test_kubectl_cp_both_ways(node: Node, tmp_path):
    (node.root / "data").mkdir()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    rc, out, err = await node.kubectl("cp", str(blob), f"{node.pod}:data/blob.bin", "-c", "app")
    assert rc == 0, err
    assert (node.root / "data" / "blob.bin").read_bytes() == blob.read_bytes()
    back = tmp_path / "back.bin"
    rc, out, err = await node.kubectl("cp", f"{node.pod}:data/blob.bin", str(back), "-c", "app")
    assert rc == 0, err
    assert back.read_bytes() == blob.read_bytes()


async def test_python_client_exec(node: Node, api_client):
    from kubernetes import client as k8s
    from kubernetes.stream import stream, ws_client

    def run_v5() -> tuple[str, int]:
        api = k8s.CoreV1Api(api_client)
        resp = stream(api.connect_get_namespaced_pod_exec, node.pod, node.namespace,
                      command=["sh", "-c", "read x; echo got-$x; exit 4"], stdin=True, stdout=True,
                      stderr=True, tty=False, _preload_content=False)
        resp.write_stdin("hello\n")
        resp.run_forever(timeout=TIMEOUT)
        return resp.read_stdout(), resp.returncode

    out, code = await asyncio.to_thread(run_v5)
    assert (out, code) == ("got-hello\n", 4)

    def run_v4() -> tuple[str, int, str]:
        host = api_client.configuration.host
        url = (f"{host}/api/v1/namespaces/{node.namespace}/pods/{node.pod}/exec"
               "?command=sh&command=-c&command=echo+v4-ok&stdout=True&stderr=True")
        configuration = api_client.configuration
        headers = {"sec-websocket-protocol": "v4.channel.k8s.io",
                   "authorization": configuration.auth_settings()["BearerToken"]["value"]}
        ws = ws_client.WSClient(configuration, ws_client.get_websocket_url(url), headers, capture_all=True)
        ws.run_forever(timeout=TIMEOUT)
        return ws.read_stdout(), ws.returncode, ws.subprotocol

    out, code, proto = await asyncio.to_thread(run_v4)
    assert (out, code, proto) == ("v4-ok\n", 0, "v4.channel.k8s.io")


# -- port forwarding through the upgrade-aware proxy ----------------------------------------------
@pytest.mark.parametrize("websockets", ["true", "false"])  # WebSocket tunnel, then a raw SPDY upgrade
async def test_kubectl_port_forward_through_the_proxy(node: Node, websockets):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    remote = target.sockets[0].getsockname()[1]
    local = free_port()
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", node.kubeconfig, "-n", node.namespace, "port-forward",
        f"pod/{node.pod}", f"{local}:{remote}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets})
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert b"Forwarding from" in line, line
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        payload = os.urandom(200_000)
        writer.write(payload)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT)
        assert echoed == payload
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()
        target.close()
        await target.wait_closed()
