"""The ``sampan proxy`` entry point: a ServiceProxy for one node until told to stop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from sampan.client import Client, load_kubeconfig
from sampan.proxy.proxier import ServiceProxy


async def run_proxy(kubeconfig: str | os.PathLike[str], stop: asyncio.Event, node_name: str,
                    node_ips: Sequence[str], **options) -> None:
    """Run the service proxy of ``node_name`` until ``stop`` is set; ``options`` go to
    ServiceProxy (cluster_cidrs, service_cidrs, table, min_sync_interval, nft, mode,
    iptables, chain_prefix, ...)."""
    config = load_kubeconfig(kubeconfig)
    config.user_agent = "sampan-proxy"
    async with Client(config) as client:
        proxy = ServiceProxy(client, node_name, node_ips=node_ips, **options)
        await proxy.run(stop)
