"""Run the cluster DNS server until told to stop (``sampan dns``, ``python -m sampan.dns``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from sampan.cli import component
from sampan.client import Client, load_config
from sampan.dns.forward import Address
from sampan.dns.server import DEFAULT_LISTEN, ClusterDNS


def parse_address(text: str, default_port: int = 53) -> Address:
    """``host``, ``host:port``, ``[v6]:port`` or a bare v6 address → (host, port)."""
    return component.parse_address(text, default_port)


async def run_dns(kubeconfig: str | os.PathLike[str] | None, stop: asyncio.Event, *,
                  listen: Sequence[Address] = tuple(DEFAULT_LISTEN),
                  domain: str = "cluster.local", upstreams: Sequence[Address] | None = None,
                  ttl: int = 5) -> None:
    config = load_config(kubeconfig)
    config.user_agent = "sampan-dns"
    async with Client(config) as client:
        async with ClusterDNS(client, domain=domain, listen=listen, upstreams=upstreams,
                              ttl=ttl):
            await stop.wait()
