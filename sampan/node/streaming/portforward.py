"""Port forwarding into a pod, as the kubelet's streaming server serves it.

``handle_portforward`` answers the three ways a client may ask
(``pkg/kubelet/cri/streaming/portforward``, ``k8s.io/apiserver/pkg/util/proxy/streamtunnel.go``):

1. WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io`` — kubectl's default: the SPDY/3.1
   byte stream carried in binary WebSocket messages (the PortForwardWebsockets tunnel);
2. ``Upgrade: SPDY/3.1`` with ``X-Stream-Protocol-Version: portforward.k8s.io`` — older clients
   and kubectl's fallback;
3. WebSocket channels (``v4.channel.k8s.io``, ``v4.base64.channel.k8s.io`` or none) with
   ``?ports=`` — the official Python client: per port a data and an error channel, each opened
   by a frame carrying the port as two little-endian bytes.

Over SPDY the client opens a pair of streams per forwarded connection (headers ``streamType``
= error|data, ``port``, ``requestID``); once both arrived we connect to localhost:<port> inside
the pod's network namespace and copy in both directions, with half-close; failures are written
to the error stream like the kubelet does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import errno
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from sampan.node.streaming import spdy

log = logging.getLogger(__name__)

PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + PORT_FORWARD_PROTOCOL
V4_BINARY = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
HEADER_PROTOCOL_VERSION = "X-Stream-Protocol-Version"
HEADER_ACCEPTED_PROTOCOL_VERSIONS = "X-Accepted-Stream-Protocol-Versions"

STREAM_CREATION_TIMEOUT = 30.0  # kubelet's DefaultStreamCreationTimeout
CONNECT_TIMEOUT = 10.0
CHUNK = spdy.MAX_DATA
_CLONE_NEWNET = 0x40000000


class PortForwardError(Exception):
    """Connecting to the pod's port failed; the message is what the client is shown."""


# -- connecting inside the pod's network namespace ---------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _sockets_in(netns: Path | None) -> list[socket.socket]:
    """An IPv4 and (if the namespace has IPv6) an IPv6 TCP socket. Called in a throw-away
    thread that first joins ``netns``: a socket belongs to the namespace it was created in."""
    if netns is not None:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {netns}: {os.strerror(err)}")
        finally:
            os.close(fd)
    socks = []
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def _open_sockets(netns: Path | None) -> list[socket.socket]:
    if netns is None:
        return _sockets_in(None)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[socket.socket]] = loop.create_future()

    def deliver(socks: list[socket.socket] | None, exc: BaseException | None) -> None:
        if future.cancelled():
            for sock in socks or ():
                sock.close()
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(socks or [])

    def work() -> None:
        # A dedicated thread that ends right after: the namespace switch dies with it.
        try:
            socks = _sockets_in(netns)
        except BaseException as e:  # noqa: BLE001 - handed to the event loop
            loop.call_soon_threadsafe(deliver, None, e)
        else:
            loop.call_soon_threadsafe(deliver, socks, None)

    threading.Thread(target=work, name="portforward-netns", daemon=True).start()
    return await future


def _dial_error(family: int, port: int, exc: BaseException) -> str:
    """The error the way Go's net.Dial words it (what containerd's message embeds)."""
    network, host = ("tcp4", "127.0.0.1") if family == socket.AF_INET else ("tcp6", "[::1]")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        reason = "i/o timeout"
    elif isinstance(exc, OSError) and exc.errno:
        reason = "connect: " + os.strerror(exc.errno).lower()
    else:
        reason = str(exc)
    return f"dial {network} {host}:{port}: {reason}"


class PodTarget:
    """Where forwarded connections go: localhost inside the pod's network namespace."""

    def __init__(self, netns: Path | None, pod: dict[str, Any]):
        self.netns = netns
        uid = (pod.get("metadata") or {}).get("uid", "")
        # The CRI streaming server names the sandbox in its messages (its "uid" is empty).
        self.sandbox = netns.name if netns is not None else uid
        self.uid = ""

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            socks = await _open_sockets(self.netns)
        except OSError as e:
            raise PortForwardError(f"failed to enter network namespace of {self.sandbox}: {e}") from e
        loop = asyncio.get_running_loop()
        errors = {socket.AF_INET: "IPv4 is not available", socket.AF_INET6: "IPv6 is not available"}
        try:
            while socks:
                sock = socks.pop(0)
                host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
                except (OSError, asyncio.TimeoutError) as e:
                    errors[sock.family] = _dial_error(sock.family, port, e)
                    sock.close()
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return await asyncio.open_connection(sock=sock, limit=4 * CHUNK)
        finally:
            for sock in socks:
                sock.close()
        # containerd's wording, trailing space included
        raise PortForwardError(
            f'failed to connect to localhost:{port} inside namespace "{self.sandbox}", '
            f"IPv4: {errors[socket.AF_INET]} IPv6 {errors[socket.AF_INET6]} ")

    def error_message(self, port: int, err: object) -> str:
        return f"error forwarding port {port} to pod {self.sandbox}, uid {self.uid}: {err}"


def _read_error(exc: OSError) -> str:
    return f"read: {os.strerror(exc.errno).lower()}" if exc.errno else str(exc)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


# -- entry point -------------------------------------------------------------------------------


def _websocket_protocols(request: web.Request) -> list[str]:
    return [p.strip() for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",") if p.strip()]


def _is_websocket(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "websocket"


async def handle_portforward(request: web.Request, netns: Path | None,
                             pod: dict[str, Any]) -> web.StreamResponse:
    """Serve GET/POST /portForward/{ns}/{pod}. ``netns`` is the pod's network namespace file
    (None: hostNetwork pod, connect on the agent's own localhost)."""
    target = PodTarget(netns, pod)
    if _is_websocket(request):
        offered = _websocket_protocols(request)
        if TUNNEL_PROTOCOL in offered:
            return await _serve_tunnel(request, target)
        return await _serve_channels(request, target, offered)
    return await _serve_spdy_upgrade(request, target)


# -- SPDY (upgrade or tunnelled through a WebSocket) -------------------------------------------


class _Pair:
    __slots__ = ("request_id", "data", "error", "timer")

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.data: spdy.Stream | None = None
        self.error: spdy.Stream | None = None
        self.timer: asyncio.TimerHandle | None = None


class _SpdyPortForwarder:
    """kubelet's httpStreamHandler: pair up streams by requestID and forward each pair."""

    def __init__(self, target: PodTarget, write: Callable[[bytes], Awaitable[None]]):
        self.target = target
        self.session = spdy.Session(write, self._on_stream)
        self._pairs: dict[str, _Pair] = {}
        self._tasks: set[asyncio.Task] = set()

    async def run(self, read: Callable[[], Awaitable[bytes]]) -> None:
        try:
            await self.session.serve(read)
        finally:
            for pair in self._pairs.values():
                if pair.timer is not None:
                    pair.timer.cancel()
            self._pairs.clear()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_stream(self, stream: spdy.Stream) -> bool:
        port = stream.header("port")
        stream_type = stream.header("streamType")
        if not port.isdigit() or not 0 < int(port) < 65536:
            log.info("port-forward: rejecting stream %d with port header %r", stream.id, port)
            return False
        if stream_type not in ("data", "error"):
            log.info("port-forward: rejecting stream %d of type %r", stream.id, stream_type)
            return False
        request_id = stream.header("requestID")
        if not request_id:  # old clients: pair consecutive odd stream ids (error first)
            request_id = str(stream.id if stream_type == "error" else stream.id - 2)
        pair = self._pairs.get(request_id)
        if pair is None:
            pair = self._pairs[request_id] = _Pair(request_id)
            pair.timer = asyncio.get_running_loop().call_later(
                STREAM_CREATION_TIMEOUT, self._creation_timed_out, pair)
        if getattr(pair, stream_type) is not None:
            message = f"error processing stream for request {request_id}: {stream_type} stream already assigned"
            log.info("port-forward: %s", message)
            if pair.error is not None:
                self._spawn(_write_quietly(pair.error, message, close=False))
            return True
        setattr(pair, stream_type, stream)
        if pair.data is not None and pair.error is not None:
            del self._pairs[request_id]
            if pair.timer is not None:
                pair.timer.cancel()
            self._spawn(self._forward(pair.data, pair.error, int(port)))
        return True

    def _creation_timed_out(self, pair: _Pair) -> None:
        if self._pairs.pop(pair.request_id, None) is None:
            return
        message = f"(conn={id(self.session):#x}, request={pair.request_id}) timed out waiting for streams"
        log.info("port-forward: %s", message)
        for stream in (pair.error, pair.data):
            if stream is not None:
                self._spawn(_write_quietly(stream, message if stream is pair.error else None))

    async def _forward(self, data: spdy.Stream, error: spdy.Stream, port: int) -> None:
        writer = None
        try:
            # nothing may flow on a stream before its SYN_REPLY (spdystream drops it)
            await data.replied.wait()
            await error.replied.wait()
            try:
                reader, writer = await self.target.connect(port)
            except PortForwardError as e:
                message = self.target.error_message(port, e)
                log.info("port-forward: %s", message)
                await error.write(message.encode())
                return
            upload = asyncio.create_task(_stream_to_socket(data, writer))
            try:
                failure = await _socket_to_stream(reader, data)
                await data.close()
                if failure is not None:
                    await error.write(self.target.error_message(port, _read_error(failure)).encode())
                await error.close()
                await upload
            finally:
                upload.cancel()
        except spdy.StreamClosedError:
            pass
        finally:
            data.discard()
            if writer is not None:
                if data.reset or self.session.closed:
                    writer.transport.abort()
                await _close_writer(writer)
            for stream in (data, error):
                with contextlib.suppress(spdy.StreamClosedError):
                    await stream.close()


async def _write_quietly(stream: spdy.Stream, message: str | None, close: bool = True) -> None:
    with contextlib.suppress(spdy.StreamClosedError):
        await stream.replied.wait()
        if message:
            await stream.write(message.encode())
        if close:
            await stream.close()


async def _stream_to_socket(stream: spdy.Stream, writer: asyncio.StreamWriter) -> None:
    """Client → pod until the client half-closes, then half-close towards the pod."""
    try:
        while chunk := await stream.read():
            writer.write(chunk)
            await writer.drain()
        if stream.reset:
            writer.transport.abort()
        elif writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except OSError:
        stream.discard()  # the pod side is gone: what the client still sends goes nowhere


async def _socket_to_stream(reader: asyncio.StreamReader, stream: spdy.Stream) -> OSError | None:
    """Pod → client until the pod closes; returns the socket error if it did not end cleanly."""
    try:
        while chunk := await reader.read(CHUNK):
            await stream.write(chunk)
    except OSError as e:
        return e
    return None


async def _serve_spdy_upgrade(request: web.Request, target: PodTarget) -> web.StreamResponse:
    clients = [p.strip() for value in request.headers.getall(HEADER_PROTOCOL_VERSION, [])
               for p in value.split(",") if p.strip()]
    if not clients:
        return web.Response(status=400, text=f"unable to upgrade: {HEADER_PROTOCOL_VERSION} is required")
    if PORT_FORWARD_PROTOCOL not in clients:
        return web.Response(
            status=403, headers={HEADER_ACCEPTED_PROTOCOL_VERSIONS: PORT_FORWARD_PROTOCOL},
            text=f"unable to upgrade: unable to negotiate protocol: client supports {clients}, "
                 f"server accepts [{PORT_FORWARD_PROTOCOL}]")
    connection = request.headers.get("Connection", "").lower()
    upgrade = request.headers.get("Upgrade", "").lower()
    if "upgrade" not in connection or "spdy/3.1" not in upgrade:
        return web.Response(status=400, text="unable to upgrade: missing upgrade headers in request")
    transport, protocol = request.transport, request.protocol
    if transport is None:
        raise web.HTTPServiceUnavailable(text="connection closed")

    # From the 101 on, the connection is ours: take its bytes before aiohttp parses them as HTTP.
    reader = asyncio.StreamReader(limit=1 << 20)
    reader.set_transport(transport)
    protocol.set_parser(_RawFeed(reader))
    protocol.keep_alive(False)
    response = web.StreamResponse(status=101, headers={
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", HEADER_PROTOCOL_VERSION: PORT_FORWARD_PROTOCOL})
    response.force_close()
    await response.prepare(request)

    async def write(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        await protocol._drain_helper()

    async def read() -> bytes:
        try:
            return await reader.read(1 << 16)
        except (ConnectionError, asyncio.IncompleteReadError):
            return b""

    forwarder = _SpdyPortForwarder(target, write)
    try:
        await forwarder.run(read)
    finally:
        await forwarder.session.close()
        transport.close()
    return response


class _RawFeed:
    """aiohttp payload-parser shim handing the upgraded connection's bytes to a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def _serve_tunnel(request: web.Request, target: PodTarget) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=[TUNNEL_PROTOCOL], compress=False,
                               max_msg_size=spdy.MAX_LENGTH + 8)
    await ws.prepare(request)

    async def read() -> bytes:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return msg.data
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return b""
            else:
                log.info("port-forward tunnel: unexpected %s message, closing", msg.type.name)
                return b""

    forwarder = _SpdyPortForwarder(target, ws.send_bytes)
    try:
        await forwarder.run(read)
    finally:
        await forwarder.session.close()
        await ws.close()
    return ws


# -- WebSocket channels (v4.channel.k8s.io) ----------------------------------------------------


def _parse_ports(request: web.Request) -> list[int]:
    # the kubelet reads "port" (the API server rewrites PodPortForwardOptions' "ports")
    values = request.query.getall("port", []) + request.query.getall("ports", [])
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for item in value.split(","):
            if not item.isdigit() or int(item) > 65535:
                raise ValueError(f'unable to parse "{value}" as a port')
            if int(item) < 1:
                raise ValueError(f'port "{value}" must be > 0')
            ports.append(int(item))
    return ports


class _ChannelPort:
    __slots__ = ("index", "port", "inbox", "connected")

    def __init__(self, index: int, port: int):
        self.index = index
        self.port = port
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=32)
        self.connected = True  # until a connection attempt failed or ended

    def disconnect(self) -> None:
        """Drop what the client sent and will send (unblocking a receiver waiting for room)."""
        self.connected = False
        while not self.inbox.empty():
            self.inbox.get_nowait()

    @property
    def data_channel(self) -> int:
        return 2 * self.index

    @property
    def error_channel(self) -> int:
        return 2 * self.index + 1


async def _serve_channels(request: web.Request, target: PodTarget,
                          offered: list[str]) -> web.StreamResponse:
    # The kubelet accepts "", v4 binary and v4 base64 (pkg/kubelet/cri/streaming/portforward/websocket.go).
    supported = [V4_BINARY, V4_BASE64]
    if offered and not set(offered) & set(supported):
        return web.Response(status=400, text=f"requested protocol(s) are not supported: {offered}; "
                                             f"supports {supported}")
    try:
        ports = [_ChannelPort(i, p) for i, p in enumerate(_parse_ports(request))]
    except ValueError as e:
        return web.Response(status=400, text=str(e))
    ws = web.WebSocketResponse(protocols=supported, compress=False, max_msg_size=16 << 20)
    await ws.prepare(request)
    b64 = ws.ws_protocol == V4_BASE64
    send_lock = asyncio.Lock()

    async def send(channel: int, payload: bytes) -> None:
        async with send_lock:  # one message at a time from the per-port tasks
            if b64:
                await ws.send_str(chr(ord("0") + channel) + base64.b64encode(payload).decode())
            else:
                await ws.send_bytes(bytes((channel,)) + payload)

    async def forward(p: _ChannelPort) -> None:
        try:
            reader, writer = await target.connect(p.port)
        except PortForwardError as e:
            p.disconnect()
            message = target.error_message(p.port, e)
            log.info("port-forward: %s", message)
            await send(p.error_channel, message.encode())
            return
        upload = asyncio.create_task(_queue_to_socket(p, writer))
        try:
            while chunk := await reader.read(CHUNK):
                await send(p.data_channel, chunk)
        except OSError as e:
            await send(p.error_channel, target.error_message(p.port, _read_error(e)).encode())
        finally:
            p.disconnect()
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upload
            await _close_writer(writer)

    async def receive() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                payload = msg.data
            elif msg.type == WSMsgType.TEXT and b64 and msg.data:
                payload = bytes((ord(msg.data[0]) - ord("0"),)) + base64.b64decode(msg.data[1:])
            else:
                continue
            if not payload:
                continue
            channel, index = payload[0], payload[0] // 2
            if index >= len(ports) or channel % 2 or len(payload) == 1:
                continue  # unknown channel, the error channel or an empty write
            p = ports[index]
            if p.connected:
                await p.inbox.put(payload[1:])

    try:
        for p in ports:
            port_bytes = p.port.to_bytes(2, "little")
            await send(p.data_channel, port_bytes)
            await send(p.error_channel, port_bytes)
        forwards = asyncio.gather(*(forward(p) for p in ports))
        receiver = asyncio.create_task(receive())
        await asyncio.wait([forwards, receiver], return_when=asyncio.FIRST_COMPLETED)
        for task in (forwards, receiver):
            task.cancel()
        await asyncio.gather(forwards, receiver, return_exceptions=True)
    except ConnectionError:
        pass
    finally:
        await ws.close()
    return ws


async def _queue_to_socket(p: _ChannelPort, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            writer.write(await p.inbox.get())
            await writer.drain()
    except OSError as e:
        p.disconnect()
        if e.errno not in (errno.EPIPE, errno.ECONNRESET):
            log.info("port-forward: writing to pod: %s", e)
