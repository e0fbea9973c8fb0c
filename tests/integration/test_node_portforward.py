"""Port forwarding into a real network namespace, driven by real clients: kubectl 1.37 (its
default SPDY-over-WebSocket tunnel and the plain SPDY/3.1 upgrade) and the official Python
client's WebSocket channel protocol.

A small aiohttp app stands in for the API server: it answers the discovery and pod GETs kubectl
makes first and routes .../pods/{name}/portforward to ``handle_portforward``. The "pod" is a
network namespace made for the test with a TCP echo server listening on 127.0.0.1:8080 in it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp import web

from sampan.node.streaming.portforward import handle_portforward
from tests.integration.helpers import eventually

KUBECTL = Path(sys.prefix) / "bin" / "kubectl"
ECHO_PORT = 8080
CLOSED_PORT = 8081
MIB = 1024 * 1024

ECHO_SERVER = """
import socket, socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128
server = Server(("127.0.0.1", int(sys.argv[1])), Echo)
print("ready", flush=True)
server.serve_forever()
"""


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": "echo", "image": "busybox",
                                     "ports": [{"containerPort": ECHO_PORT}]}]},
            "status": {"phase": "Running"}}


@pytest.fixture
def netns():
    """A network namespace with lo up and an echo server on 127.0.0.1:8080."""
    name = f"sampan-pf-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    echo = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        echo = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", ECHO_SERVER,
                                 str(ECHO_PORT)], stdout=subprocess.PIPE, text=True)
        assert echo.stdout.readline().strip() == "ready"
        yield name
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
async def apiserver(netns, tmp_path):
    """The stand-in API server; yields (kubeconfig path, base URL, protocols negotiated)."""
    pods = {"echo": _pod("echo")}
    seen: list[str] = []

    async def api(request):
        return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                  "serverAddressByClientCIDRs": []})

    async def apis(request):
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def api_v1(request):
        return web.json_response({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": True,
             "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]})

    async def get_pod(request):
        pod = pods.get(request.match_info["name"])
        if pod is None:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404}, status=404)
        return web.json_response(pod)

    async def portforward(request):
        response = await handle_portforward(request, Path("/run/netns") / netns,
                                            pods[request.match_info["name"]])
        # what was negotiated: the WebSocket subprotocol, else the Upgrade
        seen.append(response.headers.get("Sec-WebSocket-Protocol")
                    or response.headers.get("Upgrade", "none"))
        return response

    app = web.Application()
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", api_v1)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", get_pod)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}/portforward", portforward)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{url}"}}}}]
users: [{{name: u, user: {{token: test}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: default}}}}]
current-context: c
""")
    yield kubeconfig, url, seen
    await runner.cleanup()


class Kubectl:
    """`kubectl port-forward pod/echo :REMOTE` in the background; killed by PID at the end."""

    def __init__(self, kubeconfig: Path, remote: int, websockets: bool):
        self.kubeconfig, self.remote, self.websockets = kubeconfig, remote, websockets
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = b""

    async def __aenter__(self) -> int:
        env = dict(os.environ, KUBECTL_PORT_FORWARD_WEBSOCKETS=str(self.websockets).lower())
        self.proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--kubeconfig", str(self.kubeconfig), "port-forward", "pod/echo",
            f":{self.remote}", "--address", "127.0.0.1", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        match = re.match(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert match, line + await self.proc.stderr.read()
        return int(match.group(1))

    async def __aexit__(self, *exc) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        self.stderr = await self.proc.stderr.read()
        await self.proc.wait()


async def _echo(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()  # half-close: the echo server answers everything, then closes

    sender = asyncio.create_task(send())
    received = await asyncio.wait_for(reader.read(), 60)
    await sender
    writer.close()
    return received


def _established(netns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Htn", "state", "established",
                          f"( sport = :{ECHO_PORT} )"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
async def test_kubectl_port_forward(apiserver, netns, websockets):
    kubeconfig, _, seen = apiserver
    payloads = [os.urandom(MIB) for _ in range(4)] + [b"ping\n", b"x" * 70_000] * 4
    async with Kubectl(kubeconfig, ECHO_PORT, websockets) as local:
        results = await asyncio.gather(*(_echo(local, p) for p in payloads))
        assert [len(r) for r in results] == [len(p) for p in payloads]
        assert results == payloads
        # one more after the burst: the connection is reusable
        assert await _echo(local, b"again") == b"again"
        # a connection left open is torn down pod-side when kubectl goes away
        _, idle = await asyncio.open_connection("127.0.0.1", local)
        idle.write(b"hold")
        await idle.drain()

        async def pod_side_open() -> bool:
            return len(_established(netns)) == 1
        await eventually(pod_side_open, what="pod-side connection")

    async def finished() -> bool:
        return bool(seen) and not _established(netns)
    await eventually(finished, what="handler done and pod-side connections closed")
    idle.close()
    assert seen == (["SPDY/3.1+portforward.k8s.io"] if websockets else ["SPDY/3.1"])


async def test_kubectl_connection_refused(apiserver, netns):
    kubeconfig, _, _ = apiserver
    kubectl = Kubectl(kubeconfig, CLOSED_PORT, websockets=True)
    async with kubectl as local:
        assert await _echo(local, b"hello") == b""
        await asyncio.wait_for(kubectl.proc.wait(), 30)  # kubectl gives up on an error
    stderr = kubectl.stderr.decode()
    # kubectl 1.37 logs it structured: "An error occurred forwarding" err="<error stream>"
    assert "An error occurred forwarding" in stderr, stderr
    assert f"error forwarding port {CLOSED_PORT} to pod {netns}, uid : failed to connect to " \
           f"localhost:{CLOSED_PORT} inside namespace" in stderr, stderr
    assert f"IPv4: dial tcp4 127.0.0.1:{CLOSED_PORT}: connect: connection refused" in stderr
    assert f"remotePort={CLOSED_PORT}" in stderr and f"localPort={local}" in stderr


def _python_client(url: str) -> tuple[bytes, bytes | None, str | None]:
    from kubernetes import client
    from kubernetes.stream import portforward

    configuration = client.Configuration(host=url)
    with client.ApiClient(configuration) as api_client:
        api = client.CoreV1Api(api_client)
        pf = portforward(api.connect_get_namespaced_pod_portforward, "echo", "default",
                         ports=f"{ECHO_PORT},{CLOSED_PORT}")
        sock = pf.socket(ECHO_PORT)
        sock.settimeout(30)
        payload = os.urandom(MIB)
        sock.sendall(payload)
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        refused = pf.socket(CLOSED_PORT)
        refused.settimeout(30)
        eof = refused.recv(10)  # the error closes the port's socket
        error = pf.error(CLOSED_PORT)
        sock.close()
        pf.close()
        return bytes(received) == payload, eof, error


async def test_python_client_port_forward(apiserver, netns):
    _, url, seen = apiserver
    echoed, eof, error = await asyncio.to_thread(_python_client, url)
    assert echoed
    assert eof == b""
    assert error is not None and f"failed to connect to localhost:{CLOSED_PORT} inside " \
                                  f'namespace "{netns}"' in error, error

    async def finished() -> bool:
        return bool(seen) and not _established(netns)
    await eventually(finished, what="handler done and pod-side connections closed")
    assert seen == ["v4.channel.k8s.io"]
