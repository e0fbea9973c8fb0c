"""Requests/s through the ingress proxy against the same backend hit directly, on loopback.

``python -m sampan.ingress.bench`` starts a tiny keep-alive HTTP backend, the proxy with a
static routing table and an asyncio load client, each in its own process, and prints both
rates and their ratio, plus the proxy processes' CPU per request (utime + stime from
``/proc``). The backend answers from a raw protocol so that it is not the limit.
``--access-log FILE`` logs as ``sampan ingress`` does (INFO, one line per request) into FILE;
``--workers N`` runs N proxy processes on one port with ``SO_REUSEPORT``; ``--rounds`` repeats
the measurement and reports medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import socket
import statistics
import sys
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


async def _serve_proxy(port: int, backend_port: int, access_log: str, reuse_port: bool) -> None:
    from sampan.ingress.config import RoutingTable, Server, Upstream
    from sampan.ingress.proxy import IngressProxy

    if access_log:  # as ``sampan ingress`` configures it, into a file instead of stdout
        logging.basicConfig(filename=access_log, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    upstream = Upstream("bench/backend:80", "bench/backend", (("127.0.0.1", backend_port),))
    proxy = IngressProxy()
    proxy.table = RoutingTable(hosts={"bench.local": Server(prefixes=[("", upstream)])})
    await proxy.listen("127.0.0.1", port, reuse_port=reuse_port)
    await asyncio.Event().wait()


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (0 where ``/proc`` is not there)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


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
    out.put((counter[0], time.monotonic() - started))


def _measure(port: int, connections: int, seconds: float,
             watch: list[int]) -> tuple[float, float]:
    """Requests/s and the CPU µs per request of the ``watch`` processes."""
    queue: multiprocessing.Queue[tuple[int, float]] = multiprocessing.Queue()
    client = multiprocessing.Process(target=_run, args=(_load, port, connections, seconds, queue))
    cpu = _cpu_seconds(watch)
    client.start()
    requests, elapsed = queue.get(timeout=seconds + 60)
    cpu = _cpu_seconds(watch) - cpu
    client.join()
    return requests / elapsed, cpu / max(requests, 1) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampan.ingress.bench")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend", choices=("raw", "aiohttp"), default="raw",
                        help="raw: a protocol that only echoes a fixed answer (the proxy's "
                             "limit); aiohttp: a typical Python web app")
    parser.add_argument("--access-log", default="", metavar="FILE",
                        help="log every request at INFO into FILE (default: no access log)")
    parser.add_argument("--workers", type=int, default=1,
                        help="proxy processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    backend_port, proxy_port = _free_port(), _free_port()
    serve = _serve_backend if args.backend == "raw" else _serve_aiohttp_backend
    backend = multiprocessing.Process(target=_run, args=(serve, backend_port))
    proxies = [multiprocessing.Process(
        target=_run, args=(_serve_proxy, proxy_port, backend_port, args.access_log,
                           args.workers > 1)) for _ in range(args.workers)]
    backend.start()
    for proxy in proxies:
        proxy.start()
    print(f"proxy pids {' '.join(str(p.pid) for p in proxies)}", file=sys.stderr, flush=True)
    rounds: list[tuple[float, float, float]] = []
    try:
        time.sleep(1.0)
        pids = [p.pid for p in proxies if p.pid is not None]
        for _ in range(args.rounds):
            direct, _ = _measure(backend_port, args.connections, args.seconds, [])
            through, cpu_us = _measure(proxy_port, args.connections, args.seconds, pids)
            rounds.append((direct, through, cpu_us))
            if args.rounds > 1:
                print(f"  direct {direct:8.0f}  ingress {through:8.0f} ({through / direct:.0%})"
                      f"  proxy {cpu_us:5.1f} µs/req", file=sys.stderr, flush=True)
    finally:
        for process in (*proxies, backend):
            process.terminate()
            process.join()
    direct = statistics.median(r[0] for r in rounds)
    through = statistics.median(r[1] for r in rounds)
    ratio = statistics.median(r[1] / r[0] for r in rounds)
    cpu_us = statistics.median(r[2] for r in rounds)
    print(f"direct  {direct:10.0f} req/s")
    print(f"ingress {through:10.0f} req/s  ({ratio:.0%} of direct)")
    print(f"proxy   {cpu_us:10.1f} µs CPU per request")


if __name__ == "__main__":
    main()
