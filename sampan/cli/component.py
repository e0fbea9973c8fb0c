"""What every long-running ``sampan`` component shares: addresses on its command line, a stop
event set by SIGINT/SIGTERM, and the /metrics + /healthz endpoint while it works."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable

Address = tuple[str, int]


def parse_address(text: str, default_port: int, default_host: str = "0.0.0.0") -> Address:
    """``host:port``, ``:port``, ``[v6]:port``, ``host`` or a bare IPv6 address → (host, port);
    a missing host is ``default_host``, a missing port ``default_port``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host or default_host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host or default_host, int(port or default_port)
    return text or default_host, default_port


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM or SIGINT sets (the running loop's handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def with_metrics(address: str, work: Awaitable[object]) -> int:
    """Await ``work`` while serving /metrics and /healthz on ``address`` ('' for none)."""
    from sampan.cli.metrics import serve_metrics

    runner = await serve_metrics(address)
    try:
        await work
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0
