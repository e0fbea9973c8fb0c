"""The API server's client of the node agents (kubelet API): where a node's agent listens, and
an upgrade-aware proxy for logs, exec, attach, port-forward and ``nodes/proxy``.

Like upstream without ``--kubelet-certificate-authority``, the agent's serving certificate is
not verified; the API server authenticates itself with its kubelet-client certificate. Plain
requests go through a pooled aiohttp session and are streamed back chunk by chunk (so
``kubectl logs -f`` streams); upgrade requests (WebSocket, SPDY) get their own TLS connection
to the agent, the request is replayed with its Upgrade headers, and once the agent answers
``101 Switching Protocols`` the raw bytes are relayed both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from sampan.api import errors
from sampan.api.errors import StatusError

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 10250
PREFERRED_ADDRESS_TYPES = ("InternalIP", "InternalDNS", "Hostname", "ExternalIP", "ExternalDNS")
CONNECT_TIMEOUT = 10.0
RELAY_CHUNK = 64 * 1024
MAX_ERROR_BODY = 64 * 1024

# Headers that describe one hop, or the client's credentials towards the API server: never
# forwarded to the agent (upstream's authentication filter drops Authorization too).
_HOP_HEADERS = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Authorization", "Host", "Content-Length",
    "Impersonate-User", "Impersonate-Group", "Impersonate-Uid", "Accept-Encoding"))


class KubeletClient:
    def __init__(self, api: "APIServer", cert: str | Path, key: str | Path, *,
                 preferred_address_types: tuple[str, ...] = PREFERRED_ADDRESS_TYPES):
        self.api = api
        self.cert, self.key = Path(cert), Path(key)
        self.preferred_address_types = preferred_address_types
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(cert), str(key))
        self.ssl = ctx
        # HTTP/1.1 only: an upgrade cannot happen over HTTP/2.
        ctx.set_alpn_protocols(["http/1.1"])
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=0, limit_per_host=64,
                                               keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                auto_decompress=False)
        return self._session

    # -- where ---------------------------------------------------------------------------------
    async def node_address(self, node: str | dict[str, Any]) -> tuple[str, int]:
        """(host, port) of the node's agent: the first address of the preferred types and the
        port it reports in status.daemonEndpoints.kubeletEndpoint."""
        if isinstance(node, str):
            resource = self.api.registry.get("", "v1", "nodes")
            assert resource is not None
            try:
                node = (await self.api.storage.get(resource, "", node)).obj
            except StatusError as e:
                if e.code == 404:
                    raise StatusError(404, "NotFound", f'nodes "{node}" not found',
                                      details={"name": node, "kind": "nodes"}) from None
                raise
        status = node.get("status") or {}
        name = node["metadata"]["name"]
        addresses = status.get("addresses") or []
        host = None
        for kind in self.preferred_address_types:
            host = next((a.get("address") for a in addresses
                         if a.get("type") == kind and a.get("address")), None)
            if host:
                break
        if not host:
            raise errors.bad_request(f'no preferred addresses found; known addresses: {addresses}') \
                if addresses else StatusError(503, "ServiceUnavailable",
                                              f'node "{name}" has no address to reach its agent')
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_PORT
        return host, int(port)

    async def request(self, node: str | dict[str, Any], method: str, path: str, *,
                      timeout: float = 30.0) -> bytes:
        """One plain request to a node's agent (e.g. ``GET /metrics/resource``); the body, or a
        StatusError for an error answer."""
        host, port = await self.node_address(node)
        try:
            async with self._client().request(method, f"https://{_hostport(host, port)}{path}",
                                              timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable(host, port, e) from None
        if not 200 <= response.status <= 206:
            raise _agent_error(response.status, body[:MAX_ERROR_BODY])
        return body

    # -- proxying ----------------------------------------------------------------------------
    async def proxy(self, request: web.Request, host: str, port: int, path: str,
                    query: list[tuple[str, str]] | None = None,
                    error_resource: tuple[str, str] | None = None) -> web.StreamResponse:
        """Forward ``request`` to ``https://host:port{path}?{query}`` (``query`` None: the
        request's own) and stream the answer back; upgrade requests are relayed raw.
        ``error_resource`` (resource, name): agent errors become a Status as upstream's
        response checker makes them (pods/log)."""
        if query is None:
            query = list(request.query.items())
        target = _target(path, query)
        if _is_upgrade(request):
            return await self._upgrade(request, host, port, target)
        return await self._forward(request, host, port, target, error_resource)

    async def _forward(self, request: web.Request, host: str, port: int, target: str,
                       error_resource: tuple[str, str] | None) -> web.StreamResponse:
        headers = _forwarded_headers(request)
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self._client().request(
                request.method, f"https://{_hostport(host, port)}{target}", headers=headers,
                data=body, allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable(host, port, e) from None
        async with upstream:
            if error_resource is not None and not 200 <= upstream.status <= 206:
                raise _agent_error(upstream.status, await upstream.content.read(MAX_ERROR_BODY))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_HEADERS and name.lower() not in ("date", "server"):
                    response.headers.add(name, value)
            await response.prepare(request)
            while True:
                chunk = await upstream.content.readany()
                if not chunk:
                    break
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _upgrade(self, request: web.Request, host: str, port: int,
                       target: str) -> web.StreamResponse:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.ssl, server_hostname=host,
                                        limit=RELAY_CHUNK * 4), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise _unreachable(host, port, e) from None
        try:
            writer.write(_request_head(request, host, port, target))
            await writer.drain()
            status, reason, headers, head_raw = await asyncio.wait_for(_read_head(reader), CONNECT_TIMEOUT)
            if status != 101:
                body = await _read_body(reader, headers)
                response = web.Response(status=status, reason=reason, body=body)
                for name, value in headers.items():
                    if name.lower() not in _HOP_HEADERS and name.lower() not in ("date", "server"):
                        response.headers.add(name, value)
                return response
            return await _relay(request, reader, writer, reason, headers)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# -- the raw relay -------------------------------------------------------------------------------
class _ClientSide:
    """Takes over the client's connection once it is upgraded: aiohttp hands the bytes it
    receives to a "payload parser", which here writes them to the agent."""

    def __init__(self, writer: asyncio.StreamWriter, client_transport: asyncio.Transport):
        self.writer = writer
        self.client_transport = client_transport
        self.done = asyncio.get_running_loop().create_future()
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if not self.writer.is_closing():
            self.writer.write(data)
            transport = self.writer.transport
            if transport.get_write_buffer_size() > RELAY_CHUNK * 4 and not self._paused:
                # The agent reads slower than the client sends: stop reading the client.
                self._paused = True
                self.client_transport.pause_reading()
                asyncio.get_running_loop().create_task(self._resume())
        return False, b""

    async def _resume(self) -> None:
        with contextlib.suppress(Exception):
            await self.writer.drain()
        self._paused = False
        with contextlib.suppress(Exception):
            self.client_transport.resume_reading()

    def feed_eof(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _relay(request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 reason: str, headers: CIMultiDict[str]) -> web.StreamResponse:
    response = web.StreamResponse(status=101, reason=reason or "Switching Protocols")
    for name, value in headers.items():
        if name.lower() not in ("date", "server", "content-length", "transfer-encoding"):
            response.headers.add(name, value)
    response.force_close()
    stream_writer = await response.prepare(request)
    assert stream_writer is not None
    stream_writer.send_headers()
    protocol, transport = request.protocol, request.transport
    assert transport is not None
    client = _ClientSide(writer, transport)
    protocol.set_parser(client)  # from now on the client's bytes go to the agent
    protocol.keep_alive(False)

    async def agent_to_client() -> None:
        while True:
            data = await reader.read(RELAY_CHUNK)
            if not data or transport.is_closing():
                return
            transport.write(data)
            await stream_writer.drain()

    pump = asyncio.create_task(agent_to_client())
    try:
        # Either half ending ends both, as upstream's upgrade-aware handler does.
        await asyncio.wait({pump, client.done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pump.cancel()
        with contextlib.suppress(BaseException):
            await pump
        transport.close()
    return response


# -- HTTP/1.1 on a raw connection ------------------------------------------------------------------
def _request_head(request: web.Request, host: str, port: int, target: str) -> bytes:
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {_hostport(host, port)}"]
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in ("connection", "upgrade") or lower not in _HOP_HEADERS:
            lines.append(f"{name}: {value}")
    for name, value in _forwarded_for(request).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, CIMultiDict[str], bytes]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise StatusError(502, "InternalError", f"the node agent answered {lines[0]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, raw


async def _read_body(reader: asyncio.StreamReader, headers: CIMultiDict[str]) -> bytes:
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while len(body) < MAX_ERROR_BODY:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return body
    length = headers.get("Content-Length")
    if length is not None:
        return await reader.readexactly(min(int(length), MAX_ERROR_BODY))
    return await reader.read(MAX_ERROR_BODY)


# -- helpers ----------------------------------------------------------------------------------------
def _is_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "")
    return "upgrade" in [t.strip().lower() for t in connection.split(",")] and bool(request.headers.get("Upgrade"))


def _target(path: str, query: list[tuple[str, str]]) -> str:
    from urllib.parse import quote, urlencode

    target = quote(path, safe="/:@!$&'()*+,;=-._~")
    return f"{target}?{urlencode(query)}" if query else target


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _forwarded_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _HOP_HEADERS:
            headers.add(name, value)
    headers.update(_forwarded_for(request))
    return headers


def _forwarded_for(request: web.Request) -> dict[str, str]:
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    return {"X-Forwarded-For": f"{prior}, {peer}" if prior else peer} if peer else {}


def _unreachable(host: str, port: int, e: BaseException) -> StatusError:
    return StatusError(502, "InternalError",
                       f"error dialing backend: dial tcp {_hostport(host, port)}: {e or type(e).__name__}")


def _agent_error(code: int, body: bytes) -> StatusError:
    """An agent's error as upstream's generic response checker turns it into a Status."""
    message = body.decode("utf-8", "replace").strip()
    try:
        obj = orjson.loads(body)
        if isinstance(obj, dict) and obj.get("kind") == "Status" and obj.get("message"):
            message = obj["message"]
    except orjson.JSONDecodeError:
        pass
    if code == 400:
        return errors.bad_request(message)
    if code == 500:
        return StatusError(500, "InternalError", f"Internal error occurred: {message}",
                           details={"causes": [{"message": message}]})
    if code == 404:
        return StatusError(404, "NotFound", message)
    if code in (401, 403):
        return StatusError(code, "Forbidden" if code == 403 else "Unauthorized", message)
    return StatusError(code if code >= 400 else 500, "InternalError", message)
