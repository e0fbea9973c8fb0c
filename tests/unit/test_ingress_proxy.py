"""The proxy's data plane against real aiohttp backends on loopback, with hand-made routing
tables: forwarding headers, keep-alive, streaming bodies both ways, WebSockets, retries,
local answers (404 / 503 / 308), TCP services and table swaps under open connections."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

NAME = web.AppKey("name", str)

from sampan.ingress.config import RoutingTable, Server, Upstream
from sampan.ingress.proxy import IngressProxy, Timeouts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.json_response({
        "name": request.app[NAME], "method": request.method, "path": request.path_qs,
        "host": request.headers.get("Host"), "body": body.decode(),
        "xff": request.headers.get("X-Forwarded-For"),
        "real_ip": request.headers.get("X-Real-IP"),
        "proto": request.headers.get("X-Forwarded-Proto"),
        "fwd_host": request.headers.get("X-Forwarded-Host"),
        "te": request.headers.get("Transfer-Encoding"),
        "peer": request.transport.get_extra_info("peername")[1]})


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(5):
        await response.write(f"part{i};".encode())
        await asyncio.sleep(0.01)
    await response.write_eof()
    return response


async def ws(request: web.Request) -> web.WebSocketResponse:
    socket_ = web.WebSocketResponse()
    await socket_.prepare(request)
    async for message in socket_:
        await socket_.send_str(f"echo:{message.data}")
    return socket_


@pytest.fixture
async def backends() -> AsyncIterator[list[tuple[str, int]]]:
    runners, addresses = [], []
    for name in ("b0", "b1"):
        app = web.Application()
        app[NAME] = name
        app.router.add_get("/stream", stream)
        app.router.add_get("/ws", ws)
        app.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        addresses.append(("127.0.0.1", port))
    yield addresses
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[IngressProxy, str]]:
    p = IngressProxy(https_port=8443)
    server = await p.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield p, f"http://127.0.0.1:{port}"
    await p.close()


def table(*routes: tuple[str, str, Upstream], tcp: dict[int, Upstream] | None = None,
          redirect_hosts: tuple[str, ...] = ()) -> RoutingTable:
    t = RoutingTable(tcp=tcp or {})
    for host, prefix, upstream in routes:
        server = t.hosts.setdefault(host, Server()) if host else t.catch_all
        server.prefixes.append((prefix, upstream))
        server.prefixes.sort(key=lambda item: len(item[0]), reverse=True)
    for host in redirect_hosts:
        t.hosts[host].tls = t.hosts[host].ssl_redirect = True
    return t


async def get_json(session: aiohttp.ClientSession, url: str, host: str,
                   headers: dict[str, str] | None = None) -> dict:
    async with session.get(url, headers={"Host": host, **(headers or {})}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_routes_with_forwarded_headers_and_round_robin(backends, proxy, caplog):
    p, url = proxy
    up = Upstream("ns/svc:80", "ns/ing", tuple(backends))
    p.table = table(("app.test", "", up))
    caplog.set_level(logging.INFO, logger="sampan.ingress.access")
    async with aiohttp.ClientSession() as s:
        first = await get_json(s, f"{url}/a?q=1", "app.test:8080",
                               headers={"X-Forwarded-For": "192.0.2.9"})
        second = await get_json(s, f"{url}/b", "app.test")
    assert first["path"] == "/a?q=1" and first["host"] == "app.test:8080"
    assert first["xff"] == "192.0.2.9, 127.0.0.1" and first["real_ip"] == "127.0.0.1"
    assert first["proto"] == "http" and first["fwd_host"] == "app.test:8080"
    assert {first["name"], second["name"]} == {"b0", "b1"}
    lines = [r.getMessage() for r in caplog.records if r.name == "sampan.ingress.access"]
    assert any('app.test "GET /a?q=1 HTTP/1.1" 200' in line and "ns/ing" in line
               for line in lines), lines


async def test_keep_alive_reuses_upstream_connections(backends, proxy):
    p, url = proxy
    p.table = table(("h", "", Upstream("ns/svc:80", "ns/ing", (backends[0],))))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        peers = {(await get_json(s, f"{url}/", "h"))["peer"] for _ in range(20)}
    assert len(peers) == 1  # one upstream connection served every request


async def test_request_bodies_stream_both_framings(backends, proxy):
    p, url = proxy
    p.table = table(("h", "", Upstream("ns/svc:80", "ns/ing", (backends[0],))))

    async def chunks():
        for i in range(3):
            yield f"chunk{i}-".encode()

    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/post", data=b"x" * 300_000, headers={"Host": "h"}) as r:
            assert (await r.json())["body"] == "x" * 300_000
        async with s.post(f"{url}/post", data=chunks(), headers={"Host": "h"}) as r:
            body = await r.json()
        assert body["body"] == "chunk0-chunk1-chunk2-" and body["te"] == "chunked"
        async with s.get(f"{url}/stream", headers={"Host": "h"}) as r:
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert await r.text() == "part0;part1;part2;part3;part4;"
        async with s.head(f"{url}/x", headers={"Host": "h"}) as r:
            assert r.status == 200
        assert (await get_json(s, f"{url}/after-head", "h"))["path"] == "/after-head"


async def test_websocket_upgrade(backends, proxy):
    p, url = proxy
    p.table = table(("h", "", Upstream("ns/svc:80", "ns/ing", (backends[0],))))
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{url}/ws", headers={"Host": "h"}) as socket_:
            for text in ("one", "two"):
                await socket_.send_str(text)
                assert (await socket_.receive()).data == f"echo:{text}"


async def test_connect_failure_retries_another_endpoint(backends, proxy):
    p, url = proxy
    dead = ("127.0.0.1", free_port())
    up = Upstream("ns/svc:80", "ns/ing", (dead, backends[1]))
    p.table = table(("h", "", up))
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            assert (await get_json(s, f"{url}/", "h"))["name"] == "b1"
        async with s.post(f"{url}/", data=b"body", headers={"Host": "h"}) as r:
            assert r.status == 200  # nothing was sent to the dead endpoint
    p.table = table(("h", "", Upstream("ns/svc:80", "ns/ing", (dead,))))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/", headers={"Host": "h"}) as r:
            assert r.status == 502


async def test_local_answers(backends, proxy):
    p, url = proxy
    p.table = table(("empty", "", Upstream("ns/none:80", "ns/ing")),
                    ("secure", "", Upstream("ns/svc:80", "ns/ing", (backends[0],))),
                    redirect_hosts=("secure",))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/", headers={"Host": "nobody"}) as r:
            assert r.status == 404 and "default backend" in await r.text()
        async with s.get(f"{url}/", headers={"Host": "empty"}) as r:
            assert r.status == 503
        async with s.get(f"{url}/p?x=1", headers={"Host": "secure"},
                         allow_redirects=False) as r:
            assert r.status == 308
            assert r.headers["Location"] == "https://secure:8443/p?x=1"


async def test_table_swap_keeps_open_connection(backends, proxy):
    p, url = proxy
    p.table = table(("h", "", Upstream("ns/a:80", "ns/ing", (backends[0],))))
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def request() -> bytes:
        writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return await reader.readexactly(length)

    assert b'"b0"' in await request()
    p.table = table(("h", "", Upstream("ns/a:80", "ns/ing", (backends[1],))))
    assert b'"b1"' in await request()  # same client connection, new table
    writer.close()


async def test_pipelined_requests_answer_in_order(backends, proxy):
    p, url = proxy
    p.table = table(("h", "", Upstream("ns/a:80", "ns/ing", (backends[0],))))
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: nope\r\n\r\n"
                 b"GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    assert data.index(b"/one") < data.index(b"default backend") < data.index(b"/three")
    writer.close()


async def test_tcp_service(proxy):
    p, _ = proxy

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = backend.sockets[0].getsockname()[:2]
    listen = free_port()
    p.table = table(tcp={listen: Upstream("ns/db:5432", "", (address,))})
    assert await p.set_tcp_services("127.0.0.1", {listen}) == {}
    reader, writer = await asyncio.open_connection("127.0.0.1", listen)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.read(), 5) == b"pong:ping"
    writer.close()
    await p.set_tcp_services("127.0.0.1", set())
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", listen)
    backend.close()
    await backend.wait_closed()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_access_log_line_and_metrics(backends, proxy, caplog):
    p, url = proxy
    p.table = table(("app.test", "", Upstream("ns/svc:80", "metrics/ing", (backends[0],))))
    caplog.set_level(logging.INFO, logger="sampan.ingress.access")
    ok = dict(namespace="metrics", ingress="ing", status="200")
    latency = dict(namespace="metrics", ingress="ing")
    before = (sample("sampan_ingress_requests_total", **ok),
              sample("sampan_ingress_upstream_latency_seconds_count", **latency),
              sample("sampan_ingress_requests_total", namespace="", ingress="", status="404"))
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            await get_json(s, f"{url}/m?x=%20", "App.Test.:80")
        async with s.get(f"{url}/", headers={"Host": "nobody"}) as r:
            assert r.status == 404
    assert sample("sampan_ingress_requests_total", **ok) == before[0] + 3
    assert sample("sampan_ingress_upstream_latency_seconds_count", **latency) == before[1] + 3
    assert sample("sampan_ingress_upstream_latency_seconds_bucket", le="+Inf", **latency) \
        == before[1] + 3
    assert sample("sampan_ingress_requests_total", namespace="", ingress="",
                  status="404") == before[2] + 1
    assert sample("sampan_ingress_requests_created", **ok) > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "sampan.ingress.access"]
    port = backends[0][1]
    proxied = [line for line in lines if "/m?x=%20" in line]
    assert len(proxied) == 3, lines
    assert re.fullmatch(r'127\.0\.0\.1 app\.test "GET /m\?x=%20 HTTP/1\.1" 200 \d+ '
                        rf'127\.0\.0\.1:{port} \d+\.\d{{3}} metrics/ing', proxied[0]), proxied[0]
    assert re.fullmatch(r'127\.0\.0\.1 nobody "GET / HTTP/1\.1" 404 22 - \d+\.\d{3} -',
                        lines[-1]), lines[-1]


def test_latency_buckets_hold_their_upper_bound():
    from sampan.ingress import metrics
    labels = dict(namespace="buckets", ingress="ing")
    for seconds in (0.0005, 0.0006, 10.0, 11.0):
        metrics.observe_upstream("buckets/ing", seconds)
    name = "sampan_ingress_upstream_latency_seconds"
    assert sample(f"{name}_bucket", le="0.0005", **labels) == 1
    assert sample(f"{name}_bucket", le="0.001", **labels) == 2
    assert sample(f"{name}_bucket", le="10.0", **labels) == 3
    assert sample(f"{name}_bucket", le="+Inf", **labels) == 4
    assert sample(f"{name}_sum", **labels) == pytest.approx(21.0011)


async def test_routing_follows_host_and_table_on_one_connection(backends, proxy):
    p, url = proxy
    p.table = table(("a", "", Upstream("ns/a:80", "ns/ing", (backends[0],))),
                    ("b", "", Upstream("ns/b:80", "ns/ing", (backends[1],))))
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def name(host_header: str) -> bytes:
        writer.write(f"GET /x HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        return body.split(b'"name": "')[1][:2] if head.startswith(b"HTTP/1.1 200") else head[9:12]

    assert [await name(h) for h in ("a", "a", "b", "A:80", "c")] == [b"b0", b"b0", b"b1", b"b0",
                                                                     b"404"]
    p.table = table(("a", "", Upstream("ns/a:80", "ns/ing", (backends[1],))))
    assert [await name(h) for h in ("a", "b")] == [b"b1", b"404"]
    writer.close()


async def test_idle_keep_alive_outlives_the_header_timeout(backends):
    p = IngressProxy(timeouts=Timeouts(client_header=0.2, keepalive=60))
    server = await p.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p.table = table(("h", "", Upstream("ns/a:80", "ns/ing", (backends[0],))))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"GET / HTTP/1.1\r\nHo")  # a head that never ends
        for _ in range(2):
            writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(1.5)  # past the header timeout and a sweep
        assert await asyncio.wait_for(slow_reader.read(), 10) == b""  # closed by the sweep
        writer.close()
        slow_writer.close()
    finally:
        await p.close()
