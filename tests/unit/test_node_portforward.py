"""handle_portforward over loopback (no network namespace: netns=None), one client per protocol:
SPDY upgrade, SPDY tunnelled through a WebSocket, and the v4 WebSocket channel protocols."""

from __future__ import annotations

import asyncio
import base64
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sampan.node.streaming import spdy
from sampan.node.streaming.portforward import PodTarget, PortForwardError, handle_portforward

POD = {"metadata": {"name": "p", "namespace": "default", "uid": "uid-1"}}


@pytest.fixture
async def echo_port():
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
async def server():
    async def portforward(request):
        return await handle_portforward(request, None, POD)

    app = web.Application()
    app.router.add_route("*", "/portForward/{ns}/{pod}", portforward)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


class SpdyClient:
    """A minimal client end of a port-forward SPDY connection over (read, write) callables."""

    def __init__(self, read, write):
        self.read, self.write = read, write
        self.encoder, self.parser = spdy.FrameEncoder(), spdy.FrameParser()
        self.pending: list[spdy.Frame] = []
        self.next_id = 1

    async def send(self, *frames):
        await self.write(b"".join(self.encoder.encode(f) for f in frames))

    async def frame(self) -> spdy.Frame:
        while not self.pending:
            data = await asyncio.wait_for(self.read(), 10)
            assert data, "connection closed"
            self.pending += [f for f in self.parser.feed(data) if not isinstance(f, spdy.WindowUpdate)]
        return self.pending.pop(0)

    async def open_pair(self, port: int, request_id: str | None = "0") -> tuple[int, int]:
        ids = []
        for stream_type in ("error", "data"):
            headers = {"streamtype": [stream_type], "port": [str(port)]}
            if request_id is not None:
                headers["requestid"] = [request_id]
            ids.append(self.next_id)
            await self.send(spdy.SynStream(self.next_id, headers))
            self.next_id += 2
        return ids[0], ids[1]

    async def collect(self, error_id: int, data_id: int) -> tuple[bytes, bytes]:
        """Read until both streams are finished; returns (data, error) bytes."""
        got = {error_id: bytearray(), data_id: bytearray()}
        done = set()
        while done != {error_id, data_id}:
            frame = await self.frame()
            if isinstance(frame, spdy.Data):
                got[frame.stream_id] += frame.data
                if frame.flags & spdy.FLAG_FIN:
                    done.add(frame.stream_id)
            elif isinstance(frame, spdy.RstStream):
                done.add(frame.stream_id)
            else:
                assert isinstance(frame, spdy.SynReply), frame
        return bytes(got[data_id]), bytes(got[error_id])


async def _echo_over(client: SpdyClient, port: int, payload: bytes, request_id="0"):
    error_id, data_id = await client.open_pair(port, request_id)
    await client.send(spdy.Data(error_id, b"", spdy.FLAG_FIN))  # kubectl never writes errors
    for i in range(0, len(payload), 30000):
        await client.send(spdy.Data(data_id, payload[i:i + 30000]))
    await client.send(spdy.Data(data_id, b"", spdy.FLAG_FIN))
    return await client.collect(error_id, data_id)


async def _raw_upgrade(srv: TestServer, headers: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(f"POST /portForward/default/p HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head.decode()


async def test_spdy_upgrade_forwards_and_reports_errors(server, echo_port, closed_port):
    reader, writer, head = await _raw_upgrade(server, (
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: portforward.k8s.io\r\n"))
    assert head.startswith("HTTP/1.1 101 ")
    assert "Upgrade: SPDY/3.1" in head and "X-Stream-Protocol-Version: portforward.k8s.io" in head

    async def write(data):
        writer.write(data)
        await writer.drain()

    client = SpdyClient(lambda: reader.read(65536), write)
    payload = bytes(range(256)) * 1000
    assert await _echo_over(client, echo_port, payload) == (payload, b"")
    # an old client without requestID: streams pair up by id (error n, data n+2)
    assert await _echo_over(client, echo_port, b"old", request_id=None) == (b"old", b"")
    data, error = await _echo_over(client, closed_port, b"", request_id="2")
    assert data == b""
    assert error.decode() == (
        f"error forwarding port {closed_port} to pod uid-1, uid : failed to connect to "
        f'localhost:{closed_port} inside namespace "uid-1", '
        f"IPv4: dial tcp4 127.0.0.1:{closed_port}: connect: connection refused "
        f"IPv6 dial tcp6 [::1]:{closed_port}: connect: connection refused ")
    await client.send(spdy.Ping(1))
    assert await client.frame() == spdy.Ping(1)
    # a stream without a valid port header is refused
    await client.send(spdy.SynStream(client.next_id, {"streamtype": ["data"], "port": ["x"]}))
    assert await client.frame() == spdy.RstStream(client.next_id, spdy.CANCEL)
    writer.close()


@pytest.mark.parametrize("headers, status, text", [
    ("Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n", 400,
     "unable to upgrade: X-Stream-Protocol-Version is required"),
    ("Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.k8s.io\r\n", 403,
     "unable to upgrade: unable to negotiate protocol"),
    ("X-Stream-Protocol-Version: portforward.k8s.io\r\n", 400,
     "unable to upgrade: missing upgrade headers in request"),
])
async def test_spdy_handshake_errors(server, headers, status, text):
    async with aiohttp.ClientSession() as http:
        raw = dict(line.split(": ", 1) for line in headers.strip().split("\r\n"))
        async with http.post(server.make_url("/portForward/default/p"), headers=raw) as resp:
            assert resp.status == status
            assert text in await resp.text()
            if status == 403:
                assert resp.headers["X-Accepted-Stream-Protocol-Versions"] == "portforward.k8s.io"


async def test_spdy_tunnelled_through_websocket(server, echo_port):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.make_url("/portForward/default/p"),
                                   protocols=["SPDY/3.1+portforward.k8s.io"]) as ws:
            assert ws.protocol == "SPDY/3.1+portforward.k8s.io"

            async def read():
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                assert len(msg.data) <= 32 * 1024  # client-go's tunnelling read limit
                return msg.data

            client = SpdyClient(read, ws.send_bytes)
            payloads = [bytes([i]) * 200_000 for i in range(3)]
            results = []
            for i, payload in enumerate(payloads):
                results.append(await _echo_over(client, echo_port, payload, request_id=str(i)))
            assert results == [(p, b"") for p in payloads]


async def _v4(server, protocol, ports):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.make_url(f"/portForward/default/p?ports={ports}"),
                               protocols=[protocol] if protocol else [])
    return http, ws


def _decode(msg, b64):
    if b64:
        return ord(msg.data[0]) - ord("0"), base64.b64decode(msg.data[1:])
    return msg.data[0], msg.data[1:]


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", None])
async def test_websocket_channels(server, echo_port, closed_port, protocol):
    b64 = protocol == "v4.base64.channel.k8s.io"
    http, ws = await _v4(server, protocol, f"{echo_port},{closed_port}")
    try:
        assert ws.protocol == protocol
        first = [_decode(await ws.receive(), b64) for _ in range(4)]
        assert first == [(0, echo_port.to_bytes(2, "little")), (1, echo_port.to_bytes(2, "little")),
                         (2, closed_port.to_bytes(2, "little")),
                         (3, closed_port.to_bytes(2, "little"))]
        payload = b"0123456789" * 20000
        for i in range(0, len(payload), 50000):
            chunk = payload[i:i + 50000]
            if b64:
                await ws.send_str("0" + base64.b64encode(chunk).decode())
            else:
                await ws.send_bytes(b"\x00" + chunk)
        echoed, errors = bytearray(), []
        while len(echoed) < len(payload) or not errors:
            channel, data = _decode(await asyncio.wait_for(ws.receive(), 10), b64)
            if channel == 0:
                echoed += data
            else:
                assert channel == 3
                errors.append(data.decode())
        assert bytes(echoed) == payload
        assert errors == [f"error forwarding port {closed_port} to pod uid-1, uid : failed to "
                          f'connect to localhost:{closed_port} inside namespace "uid-1", IPv4: '
                          f"dial tcp4 127.0.0.1:{closed_port}: connect: connection refused IPv6 "
                          f"dial tcp6 [::1]:{closed_port}: connect: connection refused "]
    finally:
        await ws.close()
        await http.close()


async def test_websocket_channels_close_when_every_port_is_done(server, closed_port):
    http, ws = await _v4(server, "v4.channel.k8s.io", str(closed_port))
    try:
        kinds = [(await asyncio.wait_for(ws.receive(), 10)).type for _ in range(4)]
        assert kinds[:3] == [aiohttp.WSMsgType.BINARY] * 3  # two port frames, one error
        assert kinds[3] == aiohttp.WSMsgType.CLOSE
    finally:
        await ws.close()
        await http.close()


@pytest.mark.parametrize("query, message", [
    ("", 'query parameter "port" is required'),
    ("?port=", 'query parameter "port" cannot be empty'),
    ("?port=http", 'unable to parse "http" as a port'),
    ("?port=0", 'port "0" must be > 0'),
])
async def test_websocket_channels_bad_ports(server, query, message):
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(b"k" * 16).decode(),
               "Sec-WebSocket-Protocol": "v4.channel.k8s.io"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(f"/portForward/default/p{query}"),
                            headers=headers) as resp:
            assert resp.status == 400
            assert message in await resp.text()


async def test_unsupported_websocket_protocol(server):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as failure:
            await http.ws_connect(server.make_url("/portForward/default/p?port=1"),
                                  protocols=["v1.channel.k8s.io"])
        assert failure.value.status == 400


async def test_target_without_netns_connects_on_localhost(echo_port, closed_port):
    target = PodTarget(None, POD)
    reader, writer = await target.connect(echo_port)
    writer.write(b"hi")
    assert await reader.readexactly(2) == b"hi"
    writer.close()
    with pytest.raises(PortForwardError, match="connection refused"):
        await target.connect(closed_port)


async def _spdy_client(srv: TestServer) -> tuple[SpdyClient, asyncio.StreamWriter]:
    reader, writer, head = await _raw_upgrade(srv, (
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: portforward.k8s.io\r\n"))
    assert head.startswith("HTTP/1.1 101 ")

    async def write(data):
        writer.write(data)
        await writer.drain()

    return SpdyClient(lambda: reader.read(65536), write), writer


async def test_incomplete_stream_pair_times_out(server, echo_port, monkeypatch):
    from sampan.node.streaming import portforward
    monkeypatch.setattr(portforward, "STREAM_CREATION_TIMEOUT", 0.05)
    client, writer = await _spdy_client(server)
    await client.send(spdy.SynStream(1, {"streamtype": ["error"], "port": [str(echo_port)],
                                         "requestid": ["0"]}))
    assert await client.frame() == spdy.SynReply(1)
    message = bytearray()
    while not isinstance(frame := await client.frame(), spdy.Data) or not frame.flags & spdy.FLAG_FIN:
        message += frame.data
    assert message.decode().endswith("request=0) timed out waiting for streams")
    writer.close()


async def test_duplicate_stream_type_is_reported(server, echo_port):
    client, writer = await _spdy_client(server)
    headers = {"streamtype": ["error"], "port": [str(echo_port)], "requestid": ["7"]}
    await client.send(spdy.SynStream(1, headers), spdy.SynStream(3, headers))
    assert await client.frame() == spdy.SynReply(1)
    assert await client.frame() == spdy.SynReply(3)
    frame = await client.frame()
    assert frame.stream_id == 1
    assert frame.data == b"error processing stream for request 7: error stream already assigned"
    writer.close()
