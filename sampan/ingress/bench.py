"""Requests/s through the ingress proxy against the same backend hit directly, on loopback.

``python -m sampan.ingress.bench`` starts a tiny keep-alive HTTP backend, the proxy with a
static routing table and an asyncio load client, each in its own process, and prints both
rates and their ratio. The backend answers from a raw protocol so that it is not the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
            b"hello, world\n")


class _Backend(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")  # GETs without bodies only
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(RESPONSE * count)  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(coro_fn: Any, *args: Any) -> None:
    try:
        import uvloop
        uvloop.run(coro_fn(*args))
    except ImportError:
        asyncio.run(coro_fn(*args))


async def _serve_backend(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Backend, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def _serve_aiohttp_backend(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello, world\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


async def _serve_proxy(port: int, backend_port: int) -> None:
    from sampan.ingress.config import RoutingTable, Server, Upstream
    from sampan.ingress.proxy import IngressProxy

    upstream = Upstream("bench/backend:80", "bench/backend", (("127.0.0.1", backend_port),))
    proxy = IngressProxy()
    proxy.table = RoutingTable(hosts={"bench.local": Server(prefixes=[("", upstream)])})
    await proxy.listen("127.0.0.1", port)
    await asyncio.Event().wait()


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[None], deadline: float,
                 counter: list[int]) -> None:
        self.request, self.done, self.deadline, self.counter = request, done, deadline, counter
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        # Responses are the fixed RESPONSE (directly or through the proxy, which adds a
        # Connection header): count complete ones by their body.
        self.pending += data
        n = self.pending.count(b"hello, world\n")
        if not n:
            return
        self.pending = self.pending[self.pending.rfind(b"hello, world\n") + 13:]
        self.counter[0] += n
        if time.monotonic() < self.deadline:
            self.transport.write(self.request)  # type: ignore[attr-defined]
        else:
            self.transport.close()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, connections: int, seconds: float, out: Any) -> None:
    loop = asyncio.get_running_loop()
    request = b"GET /hello HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench\r\n\r\n"
    counter = [0]
    deadline = time.monotonic() + seconds
    futures = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda d=done: _Client(request, d, deadline, counter),
                                     "127.0.0.1", port)
        futures.append(done)
    started = time.monotonic()
    await asyncio.gather(*futures)
    out.put(counter[0] / (time.monotonic() - started))


def _measure(port: int, connections: int, seconds: float) -> float:
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    client = multiprocessing.Process(target=_run, args=(_load, port, connections, seconds, queue))
    client.start()
    rate = queue.get(timeout=seconds + 60)
    client.join()
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampan.ingress.bench")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend", choices=("raw", "aiohttp"), default="raw",
                        help="raw: a protocol that only echoes a fixed answer (the proxy's "
                             "limit); aiohttp: a typical Python web app")
    args = parser.parse_args(argv)
    backend_port, proxy_port = _free_port(), _free_port()
    serve = _serve_backend if args.backend == "raw" else _serve_aiohttp_backend
    backend = multiprocessing.Process(target=_run, args=(serve, backend_port))
    proxy = multiprocessing.Process(target=_run, args=(_serve_proxy, proxy_port, backend_port))
    backend.start()
    proxy.start()
    try:
        time.sleep(1.0)
        direct = _measure(backend_port, args.connections, args.seconds)
        through = _measure(proxy_port, args.connections, args.seconds)
    finally:
        for process in (proxy, backend):
            process.terminate()
            process.join()
    print(f"direct  {direct:10.0f} req/s")
    print(f"ingress {through:10.0f} req/s  ({through / direct:.0%} of direct)")


if __name__ == "__main__":
    main()
