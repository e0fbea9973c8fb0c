"""The data plane: an HTTP/1.1 reverse proxy on raw asyncio protocols with ``httptools``.

Each client connection parses requests as they arrive and hands each to an upstream connection
from a per-endpoint keep-alive pool; responses stream back from the upstream parser's callbacks
straight into the client transport, so the common request costs no task and no future. Flow
control ties the two sides: a slow reader pauses the other side's reading.

The routing table is read once per request from ``IngressProxy.table``; the controller swaps
it whole, so a reload never touches open connections, and listeners stay open across reloads.
A connection keeps the server its last Host resolved to while the Host and the table stay the
same. Per request the proxy parses each head once, writes one buffer each way for small
messages, and counts and logs without locks or stack walks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import httptools

from sampan.ingress import metrics
from sampan.ingress.config import Address, RoutingTable, Server, Upstream, normalize_host

log = logging.getLogger(__name__)
access_log = logging.getLogger("sampan.ingress.access")

IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"x-forwarded-for", b"x-real-ip",
                        b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"))
RESPONSE_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"trailer", b"upgrade"))
ACCESS_FORMAT = '%s %s "%s %s HTTP/%s" %d %d %s %.3f %s'
MAX_TRIES = 3
BODY_BUFFER_LIMIT = 256 * 1024
COALESCE_LIMIT = 16 * 1024  # a response head and a body up to this size go out as one buffer
REASONS = {200: "OK", 308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found",
           502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Timeout"}


class Timeouts:
    def __init__(self, connect: float = 5.0, read: float = 60.0, client_header: float = 60.0,
                 keepalive: float = 75.0, upstream_keepalive: float = 60.0) -> None:
        self.connect, self.read, self.client_header = connect, read, client_header
        self.keepalive, self.upstream_keepalive = keepalive, upstream_keepalive


class IngressProxy:
    """Listeners, the upstream connection pool and the current routing table."""

    def __init__(self, *, https_port: int = 443, ssl_redirect_port: int | None = None,
                 timeouts: Timeouts | None = None, max_idle_per_endpoint: int = 320) -> None:
        self.table = RoutingTable()
        self.https_port = ssl_redirect_port if ssl_redirect_port is not None else https_port
        self.timeouts = timeouts or Timeouts()
        self.max_idle = max_idle_per_endpoint
        self.pools: dict[Address, list[_UpstreamConnection]] = {}
        self.clients: set[_ClientConnection] = set()
        self.upstreams: set[_UpstreamConnection] = set()
        self.servers: list[asyncio.Server] = []
        self._tcp_servers: dict[int, asyncio.Server] = {}
        self._tcp_host = "0.0.0.0"
        self._sweeper: asyncio.Task[None] | None = None

    # -- listeners ------------------------------------------------------------------------------
    async def listen(self, host: str, port: int, *, ssl: Any = None,
                     reuse_port: bool = False) -> asyncio.Server:
        """Listen on ``host:port``; ``reuse_port`` lets several processes share the port."""
        loop = asyncio.get_running_loop()
        scheme = b"https" if ssl is not None else b"http"
        server = await loop.create_server(lambda: _ClientConnection(self, scheme), host, port,
                                          ssl=ssl, reuse_address=True, reuse_port=reuse_port,
                                          backlog=1024)
        self.servers.append(server)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="ingress timeouts")
        return server

    async def set_tcp_services(self, host: str, ports: set[int]) -> dict[int, str]:
        """Open listeners for new TCP-service ports and close the ones no longer wanted (their
        open connections go on); errors by port."""
        self._tcp_host = host
        errors: dict[int, str] = {}
        loop = asyncio.get_running_loop()
        for port in sorted(set(self._tcp_servers) - ports):
            self._tcp_servers.pop(port).close()
        for port in sorted(ports - set(self._tcp_servers)):
            try:
                self._tcp_servers[port] = await loop.create_server(
                    lambda p=port: _TcpInbound(self, p), host, port, reuse_address=True)
            except OSError as e:
                errors[port] = str(e)
        return errors

    def tcp_ports(self) -> dict[int, int]:
        """Listening port → bound port (the same unless 0 was asked for)."""
        return {port: server.sockets[0].getsockname()[1]
                for port, server in self._tcp_servers.items() if server.sockets}

    async def close(self) -> None:
        for server in [*self.servers, *self._tcp_servers.values()]:
            server.close()
        self._tcp_servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for client in list(self.clients):
            client.transport.close()
        for upstream in list(self.upstreams):
            upstream.transport.close()
        self.pools.clear()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()

    # -- the pool ---------------------------------------------------------------------------
    def pooled(self, address: Address) -> _UpstreamConnection | None:
        pool = self.pools.get(address)
        while pool:
            conn = pool.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: _UpstreamConnection) -> None:
        pool = self.pools.setdefault(conn.address, [])
        if len(pool) < self.max_idle:
            conn.idle_since = time.monotonic()
            pool.append(conn)
        else:
            conn.transport.close()

    def forget(self, conn: _UpstreamConnection) -> None:
        self.upstreams.discard(conn)
        pool = self.pools.get(conn.address)
        if pool and conn in pool:
            pool.remove(conn)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            t = self.timeouts
            for client in list(self.clients):
                client.check_timeout(now, t)
            for conn in list(self.upstreams):
                conn.check_timeout(now, t)


class _Request:
    """One request: what was parsed, the head to send upstream, and how its answer went."""

    __slots__ = ("method", "url", "path", "host", "raw_host", "headers", "version", "keep_alive",
                 "upgrade", "chunked", "has_body", "head", "body", "body_size", "complete",
                 "sink", "started", "upstream", "server", "tries", "responded", "status", "sent",
                 "upstream_address", "early", "proxied")

    def __init__(self, method: bytes, url: bytes, version: str, keep_alive: bool,
                 upgrade: bool, started: float) -> None:
        self.method, self.url, self.version = method, url, version
        self.keep_alive, self.upgrade, self.started = keep_alive, upgrade, started
        self.host = ""
        self.body: list[bytes] = []
        self.body_size = 0
        self.complete = False
        self.sink: _UpstreamConnection | None = None
        self.upstream: Upstream | None = None
        self.server: Server | None = None
        self.tries = 0
        self.responded = False
        self.proxied = False  # the answer came from an upstream
        self.status = 0
        self.sent = 0
        self.upstream_address = "-"
        self.early: list[bytes] = []


class _ClientConnection(asyncio.Protocol):
    """One downstream connection: parses requests and answers them in order."""

    def __init__(self, proxy: IngressProxy, scheme: bytes) -> None:
        self.proxy = proxy
        self.scheme = scheme
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.remote = b""
        self.remote_text = ""
        self.port = b""
        self.forwarded_tail = b""  # X-Real-IP and X-Forwarded-Proto, the same on every request
        self.forwarded_port = b""
        self.queue: deque[_Request] = deque()
        self.active: _Request | None = None
        self.parsing: _Request | None = None
        self.upstream: _UpstreamConnection | None = None  # serving the active request
        self.upgraded = False
        self.closed = False
        self.last = time.monotonic()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading_paused = False
        # Routing of the last request: reused while its Host and the table stay the same.
        self._table: RoutingTable | None = None
        self._raw_host: bytes | None = None
        self._host = ""
        self._server: Server | None = None

    # -- transport callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote_text = peer[0] if peer else ""
        self.remote = self.remote_text.encode()
        sock = transport.get_extra_info("sockname")
        self.port = str(sock[1] if sock else "").encode()
        self.forwarded_tail = b"X-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\n" % (self.remote,
                                                                               self.scheme)
        self.forwarded_port = b"X-Forwarded-Port: %s\r\n\r\n" % self.port
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abandon()

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.upgraded:
            if self.parsing is not None:
                self.parsing.early.append(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = True
            rest = data[e.args[0]:]
            if rest and self.parsing is not None:
                self.parsing.early.append(rest)
        except httptools.HttpParserError:
            if self.active is None and not self.queue:
                self._local_response(None, 400, b"400 Bad Request\n", close=True)
            else:
                self.transport.close()

    def eof_received(self) -> bool:
        # Keep the connection half-open while a response is still on its way.
        return self.active is not None

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.closed:
            self.upstream.transport.resume_reading()

    def pause_reading(self) -> None:
        if not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method, url = parser.get_method(), self._url
        req = _Request(method, url, parser.get_http_version(), parser.should_keep_alive(),
                       parser.should_upgrade(), self.last)
        req.headers = self._headers
        self._url, self._headers = b"", []  # no head in progress: idle until the next one
        self._read_head(req)
        self.parsing = req
        if self.active is None:
            self._start(req)
        else:
            self.queue.append(req)

    def _read_head(self, req: _Request) -> None:
        """One pass over the headers: note what matters here and build the upstream's head."""
        method, url = req.method, req.url
        raw_host = forwarded_for = upgrade = b""
        chunked = has_body = False
        lines = [b"%s %s HTTP/1.1\r\n" % (method, url)]
        for name, value in req.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if lower == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                    has_body = True
                elif lower == b"x-forwarded-for":
                    forwarded_for = value
                elif lower == b"upgrade" and not upgrade:
                    upgrade = value
                continue
            if lower == b"host":
                raw_host = value
            elif lower == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            lines.append(b"%s: %s\r\n" % (name, value))
        path = url.partition(b"?")[0]
        if not path.startswith(b"/") and (path.startswith(b"http://")
                                          or path.startswith(b"https://")):  # absolute form
            authority, _, rest = path.partition(b"//")[2].partition(b"/")
            raw_host = raw_host or authority
            path = b"/" + rest
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if req.upgrade and upgrade:
            lines.append(b"Upgrade: %s\r\nConnection: Upgrade\r\n" % upgrade)
        lines.append(b"X-Forwarded-For: %s\r\n%sX-Forwarded-Host: %s\r\n%s" % (
            forwarded_for + b", " + self.remote if forwarded_for else self.remote,
            self.forwarded_tail, raw_host, self.forwarded_port))
        req.head = b"".join(lines)
        req.chunked, req.has_body, req.raw_host = chunked, has_body, raw_host
        req.path = path.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None:
            return
        sink = req.sink
        if sink is not None:
            sink.write_body(req, body)
        elif not req.responded:
            req.body.append(body)
            req.body_size += len(body)
            if req.body_size > BODY_BUFFER_LIMIT:
                self.pause_reading()

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is None:
            return
        req.complete = True
        if req.sink is not None:
            req.sink.end_body(req)
        if req.responded and req is self.active:
            self._advance()

    # -- requests ----------------------------------------------------------------------------
    def _start(self, req: _Request) -> None:
        self.active = req
        table = self.proxy.table
        if table is not self._table or req.raw_host != self._raw_host:
            self._table, self._raw_host = table, req.raw_host
            self._host = normalize_host(req.raw_host.decode("latin-1"))
            self._server = table.server(self._host)
        req.host = self._host
        req.server = server = self._server
        assert server is not None
        upstream = server.match(req.path)
        if server.ssl_redirect and self.scheme == b"http":
            self._redirect(req)
        elif upstream is None:
            self._local_response(req, 404, b"default backend - 404\n")
        elif not upstream.endpoints:
            req.upstream = upstream
            self._local_response(req, 503, b"503 Service Temporarily Unavailable\n")
        else:
            req.upstream = upstream
            self.dispatch(req)

    def dispatch(self, req: _Request) -> None:
        """Send ``req`` to the next endpoint: a pooled connection at once, else a new one."""
        upstream = req.upstream
        assert upstream is not None
        req.tries += 1
        address = upstream.pick()
        conn = self.proxy.pooled(address)
        if conn is not None:
            conn.send(self, req)
        else:
            asyncio.get_running_loop().create_task(self._connect(req, address))

    async def _connect(self, req: _Request, address: Address) -> None:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        while True:
            try:
                async with asyncio.timeout(proxy.timeouts.connect):
                    _, conn = await loop.create_connection(
                        lambda: _UpstreamConnection(proxy, address), address[0], address[1])
            except (OSError, TimeoutError) as e:
                log.debug("connect to %s:%s failed: %s", address[0], address[1], e)
                if self.closed:
                    return
                upstream = req.upstream
                assert upstream is not None
                if req.tries >= min(MAX_TRIES, len(upstream.endpoints)):
                    req.upstream_address = f"{address[0]}:{address[1]}"
                    status = 504 if isinstance(e, TimeoutError) else 502
                    self._local_response(req, status, f"{status} {REASONS[status]}\n".encode())
                    return
                req.tries += 1
                address = upstream.pick()
                pooled = proxy.pooled(address)
                if pooled is not None:
                    pooled.send(self, req)
                    return
                continue
            if self.closed:
                proxy.release(conn)
                return
            conn.send(self, req)
            return

    def retry(self, req: _Request) -> bool:
        """Another endpoint for a request whose connection failed before any response byte;
        only idempotent requests without a body are sent twice."""
        upstream = req.upstream
        if (self.closed or upstream is None or req.method not in IDEMPOTENT or req.has_body
                or req.tries >= MAX_TRIES + 1):
            return False
        self.upstream = None
        self.dispatch(req)
        return True

    def _redirect(self, req: _Request) -> None:
        host = req.raw_host.decode("latin-1").rpartition(":")[0] if req.raw_host.count(b":") == 1 \
            else req.raw_host.decode("latin-1")
        port = self.proxy.https_port
        authority = host if port == 443 else f"{host}:{port}"
        location = f"https://{authority}{req.url.decode('latin-1')}"
        self._local_response(req, 308, b"308 Permanent Redirect\n",
                             extra=f"Location: {location}\r\n".encode("latin-1"))

    def _local_response(self, req: _Request | None, status: int, body: bytes, *,
                        close: bool = False, extra: bytes = b"") -> None:
        if req is not None and not req.complete and req.has_body:
            req.keep_alive = False  # the rest of its body is not worth reading
        keep_alive = (req is not None and req.keep_alive and not close and not self.upgraded)
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                ).encode() + extra + (b"Connection: keep-alive\r\n\r\n" if keep_alive
                                       else b"Connection: close\r\n\r\n")
        if not self.closed:
            self.transport.write(head if req is not None and req.method == b"HEAD"
                                 else head + body)
        if req is None:
            self.transport.close()
            return
        req.status, req.sent = status, len(body)
        req.body.clear()
        self.finish(req, keep_alive)

    def finish(self, req: _Request, keep_alive: bool) -> None:
        """The response to ``req`` is written; log it and go on with the next request."""
        req.responded = True
        self.upstream = None
        self.proxy_log(req)
        if not keep_alive or not req.keep_alive:
            self.closed = True
            self.transport.close()
            return
        if req.complete:
            self._advance()

    def _advance(self) -> None:
        self.active = None
        self.resume_reading()
        if self.queue:
            self._start(self.queue.popleft())

    def proxy_log(self, req: _Request) -> None:
        """Count the request, and log it when the access log is on."""
        duration = time.monotonic() - req.started
        upstream = req.upstream
        ingress = upstream.ingress if upstream is not None else ""
        metrics.observe(ingress, req.status, duration)
        if req.proxied:
            metrics.observe_upstream(ingress, duration)
        if access_log.isEnabledFor(logging.INFO):
            # Logger.info would walk the stack for the caller on every request.
            access_log.handle(access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, ACCESS_FORMAT,
                (self.remote_text, req.host or "-", _text(req.method),
                 req.url.decode("latin-1"), req.version, req.status, req.sent,
                 req.upstream_address, duration, ingress or "-"), None, "proxy_log"))

    # -- upgrade ------------------------------------------------------------------------------
    def tunnel(self, upstream: _UpstreamConnection) -> None:
        """A 101 answer: from now on bytes flow untouched both ways."""
        req = self.active
        early = req.early if req is not None else []
        client_pipe, upstream_pipe = _Pipe(self.transport), _Pipe(upstream.transport)
        client_pipe.peer, upstream_pipe.peer = upstream_pipe, client_pipe
        self.proxy.clients.discard(self)
        self.proxy.upstreams.discard(upstream)
        self.closed = upstream.closed = True
        self.transport.set_protocol(client_pipe)
        upstream.transport.set_protocol(upstream_pipe)
        if early:
            upstream.transport.writelines(early)
        if self._reading_paused:
            self.transport.resume_reading()

    # -- timeouts -----------------------------------------------------------------------------
    def check_timeout(self, now: float, t: Timeouts) -> None:
        if self.active is None:
            limit = t.client_header if self._url or self._headers else t.keepalive
            if now - self.last > limit:
                self.transport.close()


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an endpoint, serving one request at a time."""

    def __init__(self, proxy: IngressProxy, address: Address) -> None:
        self.proxy = proxy
        self.address = address
        self.label = f"{address[0]}:{address[1]}"
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.client: _ClientConnection | None = None
        self.req: _Request | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.last = self.idle_since
        self.out: list[bytes] = []
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.received = False
        self.headers_done = False
        self.chunked_out = False
        self.until_close = False
        self.no_body = False
        self.informational = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.upstreams.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.forget(self)
        client, req = self.client, self.req
        if client is None or req is None:
            return
        self.client = self.req = None
        if self.headers_done and self.until_close:
            self._complete(client, req, keep_alive=True)
        elif not self.received:
            if not client.retry(req):
                client._local_response(req, 502, b"502 Bad Gateway\n")
        else:
            client.upstream = None
            client.transport.abort()

    def abandon(self) -> None:
        """The client went away mid-exchange: this connection's state is unknown."""
        self.client = self.req = None
        self.transport.close()

    # -- sending -----------------------------------------------------------------------------
    def send(self, client: _ClientConnection, req: _Request) -> None:
        self.client, self.req = client, req
        client.upstream = self
        self.received = self.headers_done = False
        self.last = time.monotonic()
        req.upstream_address = self.label
        if not req.complete:
            req.sink = self
            if not req.body:  # the common case: a request without a body yet
                self.transport.write(req.head)
                return
        out = [req.head]
        if req.body:
            out.extend(_chunk(b) for b in req.body) if req.chunked else out.extend(req.body)
            req.body = []
            req.body_size = 0
            client.resume_reading()
        if req.complete and req.chunked:
            out.append(b"0\r\n\r\n")
        self.transport.writelines(out)

    def write_body(self, req: _Request, body: bytes) -> None:
        if self.req is req and not self.closed:
            self.transport.write(_chunk(body) if req.chunked else body)

    def end_body(self, req: _Request) -> None:
        req.sink = None
        if self.req is req and req.chunked and not self.closed:
            self.transport.write(b"0\r\n\r\n")

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_reading()

    # -- receiving ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        client = self.client
        if client is None:  # bytes on an idle connection: it is not reusable
            self.transport.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[e.args[0]:]
            self._flush(client)
            if rest:
                client.transport.write(rest)
            client.tunnel(self)
            return
        except httptools.HttpParserError:
            self.client = self.req = None
            self._flush(client)
            self.transport.close()
            if self.headers_done:
                client.transport.abort()
            else:
                req = client.active
                if req is not None:
                    client._local_response(req, 502, b"502 Bad Gateway\n")
            return
        self._flush(client)

    def _flush(self, client: _ClientConnection) -> None:
        out = self.out
        if out:
            if not client.closed:
                # One buffer takes the transport's direct write; several take a queued writev.
                if len(out) == 1:
                    client.transport.write(out[0])
                elif len(out) == 2 and len(out[1]) <= COALESCE_LIMIT:
                    client.transport.write(out[0] + out[1])
                else:
                    client.transport.writelines(out)
            self.out = []

    def on_message_begin(self) -> None:
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req, client = self.req, self.client
        if req is None or client is None:
            return
        status = self.parser.get_status_code()
        self.informational = 100 <= status < 200 and status != 101
        out: list[bytes] = [b"HTTP/1.1 %d %s\r\n" % (status, self.reason)]
        length = chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in RESPONSE_HOP_BY_HOP:
                if lower == b"transfer-encoding":
                    chunked = True
                elif lower == b"upgrade" and status == 101:
                    out.append(b"Upgrade: %s\r\n" % value)
                continue
            if lower == b"content-length":
                length = True
            out.append(b"%s: %s\r\n" % (name, value))
        if self.informational:
            out.append(b"\r\n")
            self.out.append(b"".join(out))
            return
        self.headers_done = True
        req.status = status
        self.no_body = req.method == b"HEAD" or status in (204, 304) or status == 101
        self.chunked_out = False
        self.until_close = not self.no_body and not length and not chunked
        keep_alive = req.keep_alive and not client.upgraded
        if status == 101:
            out.append(b"Connection: Upgrade\r\n")
        elif not self.no_body and not length:
            if req.version == "1.1":
                self.chunked_out = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                keep_alive = req.keep_alive = False
        if status != 101:
            out.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        out.append(b"\r\n")
        self.out.append(b"".join(out))
        if req.method == b"HEAD":
            # llhttp cannot know a HEAD response has no body: end here, do not reuse.
            self.client = self.req = None
            self._flush(client)
            self.transport.close()
            self._complete(client, req, keep_alive=True)

    def on_body(self, body: bytes) -> None:
        req = self.req
        if req is None:
            return
        req.sent += len(body)
        self.out.append(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked_out else body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        client, req = self.client, self.req
        if client is None or req is None or req.status == 101:
            return
        if self.chunked_out:
            self.out.append(b"0\r\n\r\n")
        self._flush(client)
        self.client = self.req = None
        reusable = self.parser.should_keep_alive() and req.sink is None and req.complete
        if reusable:
            self.proxy.release(self)
        else:
            self.transport.close()
        self._complete(client, req, keep_alive=True)

    def _complete(self, client: _ClientConnection, req: _Request, keep_alive: bool) -> None:
        if self.chunked_out and self.until_close:
            client.transport.write(b"0\r\n\r\n")
        req.proxied = req.upstream is not None
        req.sink = None
        client.finish(req, keep_alive and not client.closed)

    # -- timeouts -----------------------------------------------------------------------------
    def check_timeout(self, now: float, t: Timeouts) -> None:
        client, req = self.client, self.req
        if client is None or req is None:
            if now - self.idle_since > t.upstream_keepalive:
                self.transport.close()
            return
        if now - self.last > t.read:
            self.client = self.req = None
            self.transport.close()
            if self.received:
                client.transport.abort()
            else:
                client._local_response(req, 504, b"504 Gateway Timeout\n")


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}


def _text(method: bytes) -> str:
    text = _METHODS.get(method)
    return text if text is not None else method.decode("latin-1")


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(body), body)


class _Pipe(asyncio.Protocol):
    """One side of a byte tunnel (TCP services, upgraded HTTP connections)."""

    def __init__(self, transport: asyncio.Transport | None = None) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer: _Pipe | None = None
        self.eof = False
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof() \
                and not peer.eof:
            peer.transport.write_eof()
            return True
        if peer is not None and peer.transport is not None:
            peer.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _TcpInbound(_Pipe):
    """A connection to a TCP-service port: paired with one to the next endpoint."""

    def __init__(self, proxy: IngressProxy, port: int) -> None:
        super().__init__()
        self.proxy, self.port = proxy, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        upstream = self.proxy.table.tcp.get(self.port)
        loop = asyncio.get_running_loop()
        tries = min(MAX_TRIES, len(upstream.endpoints)) if upstream is not None else 0
        for _ in range(tries):
            assert upstream is not None
            address = upstream.pick()
            try:
                async with asyncio.timeout(self.proxy.timeouts.connect):
                    transport, pipe = await loop.create_connection(_Pipe, *address)
            except (OSError, TimeoutError) as e:
                log.debug("tcp service %d: connect to %s failed: %s", self.port, address, e)
                continue
            if self.transport.is_closing():
                transport.close()
                return
            pipe.peer, self.peer = self, pipe
            if self.pending:
                transport.writelines(self.pending)
                self.pending = []
            self.transport.resume_reading()
            if access_log.isEnabledFor(logging.INFO):
                peer = self.transport.get_extra_info("peername")
                access_log.info("%s tcp:%d %s:%d", peer[0] if peer else "-", self.port,
                                *address)
            return
        self.transport.close()
