"""The WebSocket channel framing, and the agent server's protocol handling and authorization
with an in-memory stream (over real TLS on loopback)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import aiohttp
import orjson
import pytest

from sampan.apiserver.pki import ensure_pki, issue_certificate
from sampan.node.cri import ContainerStatus, State
from sampan.node.server import AgentServer
from sampan.node.streaming import channels


def test_binary_and_base64_framing():
    v5 = channels.negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert v5.name == channels.V5 and v5.close_signal and v5.json_status
    assert v5.encode(1, b"hi") == b"\x01hi"
    assert v5.decode(b"\x00data") == (0, b"data")
    assert v5.decode("\x00text") == (0, b"text")  # clients may send text frames
    assert v5.decode(b"") is None
    b64 = channels.negotiate(["v4.base64.channel.k8s.io"])
    assert b64.encode(2, b"\xff\x00") == "2" + base64.b64encode(b"\xff\x00").decode()
    assert b64.decode("0" + base64.b64encode(b"input").decode()) == (0, b"input")
    assert channels.negotiate([]).name == channels.V1
    assert channels.negotiate(["SPDY/3.1"]) is None
    assert not channels.negotiate(["v4.channel.k8s.io"]).close_signal


def test_status_messages():
    v4 = channels.protocol(channels.V4)
    assert orjson.loads(v4.status(0)) == {"metadata": {}, "status": "Success"}
    failure = orjson.loads(v4.status(3, "command terminated with non-zero exit code"))
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    v1 = channels.protocol(channels.V1)
    assert v1.status(0) == b"" and b"exit code 2" in v1.status(2)


def test_resize_decoder_handles_split_and_packed_objects():
    decoder = channels.ResizeDecoder()
    assert decoder.feed(b'{"Width":80,') == []
    assert decoder.feed(b'"Height":24}{"Width":100,"Height":30}  {"Wi') == [(80, 24), (100, 30)]
    assert decoder.feed(b'dth":1,"Height":2}') == [(1, 2)]


# -- the server ---------------------------------------------------------------------------------------
class MemoryStream:
    def __init__(self, tty: bool):
        self.tty = tty
        self.stdin = bytearray()
        self.stdin_closed = asyncio.Event()
        self.sizes: list[tuple[int, int]] = []
        self.out: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def write_stdin(self, data: bytes) -> None:
        self.stdin += data

    async def close_stdin(self) -> None:
        # Echo stdin back, then end: like `cat` would.
        await self.out.put(bytes(self.stdin))
        await self.out.put(b"")
        self.stdin_closed.set()

    async def read_stdout(self) -> bytes:
        return await self.out.get()

    async def read_stderr(self) -> bytes:
        await self.stdin_closed.wait()
        return b""

    async def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def wait(self) -> int:
        await self.stdin_closed.wait()
        return 7

    async def close(self) -> None:
        self.closed = True


class MemoryRuntime:
    def __init__(self):
        self.streams: list[MemoryStream] = []

    async def container_status(self, cid: str) -> ContainerStatus:
        return ContainerStatus(id=cid, sandbox_id="s", name="c", attempt=0, state=State.RUNNING,
                               image_ref="x", image_id="y", created_at=0)

    async def exec(self, cid, cmd, *, tty, stdin):
        stream = MemoryStream(tty)
        self.streams.append(stream)
        return stream


class OnePod:
    pod_obj = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
               "spec": {"containers": [{"name": "c"}]}, "status": {}}

    def pods(self):
        return [self.pod_obj]

    def pod(self, namespace, name):
        return self.pod_obj if (namespace, name) == ("ns", "p") else None

    def container_id(self, uid, container, previous=False):
        return None if previous else "cid"

    def log_path(self, uid, container, previous=False):
        return None

    def netns(self, uid):
        return None


@pytest.fixture
async def agent(tmp_path):
    pki = ensure_pki(tmp_path / "cluster")
    runtime = MemoryRuntime()
    server = AgentServer(runtime, OnePod(), ca_file=pki.ca_cert, cert_dir=tmp_path / "agent",
                         address="127.0.0.1", port=0)
    await server.start()
    try:
        yield server, runtime, pki
    finally:
        await server.close()


def client_ssl(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def test_exec_over_v5_and_base64(agent):
    server, runtime, pki = agent
    ctx = client_ssl(pki.kubelet_client_cert, pki.kubelet_client_key)
    url = f"https://127.0.0.1:{server.port}/exec/ns/p/c?command=cat&stdin=1&stdout=1&tty=1"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, ssl=ctx, protocols=("v5.channel.k8s.io",)) as ws:
            assert ws.protocol == "v5.channel.k8s.io"
            assert (await ws.receive_bytes()) == b"\x01"  # the "streams are ready" frame
            await ws.send_bytes(b"\x04" + b'{"Width":120,"Height":40}')
            await ws.send_bytes(b"\x00hello ")
            await ws.send_bytes(b"\x00world")
            await ws.send_bytes(bytes((255, 0)))  # v5: close stdin
            frames = [m.data async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
        assert frames[0] == b"\x01hello world"
        status = orjson.loads(frames[-1][1:])
        assert frames[-1][0] == channels.ERROR and status["details"]["causes"][0]["message"] == "7"
        assert runtime.streams[0].sizes == [(120, 40)]

        url = f"https://127.0.0.1:{server.port}/exec/ns/p/c?command=cat&stdin=1&stdout=1"
        async with session.ws_connect(url, ssl=ctx, protocols=("v4.base64.channel.k8s.io",)) as ws:
            assert (await ws.receive_str()) == "1"
            await ws.send_str("0" + base64.b64encode(b"abc").decode())
            await ws.close()  # without v5, stdin ends with the connection
        await asyncio.wait_for(runtime.streams[1].stdin_closed.wait(), 10)
        assert runtime.streams[1].closed


async def test_errors_are_statuses(agent):
    server, _, pki = agent
    ctx = client_ssl(pki.kubelet_client_cert, pki.kubelet_client_key)
    base = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/containerLogs/ns/p/c?previous=true", ssl=ctx) as r:
            body = await r.json()
            assert r.status == 400
            assert body["message"] == 'previous terminated container "c" in pod "p" not found'
        async with session.get(f"{base}/containerLogs/ns/nope/c", ssl=ctx) as r:
            assert r.status == 404 and (await r.json())["message"] == 'pod "nope" does not exist'
        async with session.get(f"{base}/containerLogs/ns/p/other", ssl=ctx) as r:
            assert r.status == 404 and "not found in pod" in (await r.json())["message"]
        async with session.get(f"{base}/exec/ns/p/c?command=ls&stdout=1", ssl=ctx) as r:
            assert r.status == 400  # not an upgrade
        async with session.get(f"{base}/pods", ssl=ctx) as r:
            assert (await r.json())["items"][0]["metadata"]["name"] == "p"
        async with session.get(f"{base}/stats/summary", ssl=ctx) as r:
            assert r.status == 404  # no stats provider given


async def test_only_the_api_server_identity_is_authorized(agent, tmp_path):
    server, _, pki = agent
    cert, key = issue_certificate(pki.ca_cert, pki.ca_key, "someone", org="developers",
                                  server=False, client=True)
    (tmp_path / "u.crt").write_bytes(cert)
    (tmp_path / "u.key").write_bytes(key)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{server.port}/pods",
                               ssl=client_ssl(tmp_path / "u.crt", tmp_path / "u.key")) as r:
            assert r.status == 403
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with session.get(f"https://127.0.0.1:{server.port}/pods", ssl=insecure) as r:
                await r.read()
