"""Run the ingress controller until told to stop (``sampan ingress``, ``sampan up``)."""

from __future__ import annotations

import asyncio
import logging
import os

from sampan.cli.component import Address
from sampan.client import Client
from sampan.ingress.config import CONTROLLER_NAME
from sampan.ingress.controller import IngressController
from sampan.ingress.proxy import IngressProxy

log = logging.getLogger(__name__)



def default_addresses() -> tuple[Address, Address]:
    """80 and 443 for root; unprivileged users get 8080 and 8443."""
    if os.geteuid() == 0:
        return ("0.0.0.0", 80), ("0.0.0.0", 443)
    return ("0.0.0.0", 8080), ("0.0.0.0", 8443)


async def run_ingress(client: Client, stop: asyncio.Event, *,
                      http_address: Address | None = ("0.0.0.0", 80),
                      https_address: Address | None = ("0.0.0.0", 443),
                      publish_address: str = "", tcp_services: str = "",
                      class_name: str = "sampan", create_class: bool = True,
                      controller_name: str = CONTROLLER_NAME,
                      ssl_redirect: bool = True,
                      ready: asyncio.Event | None = None) -> None:
    """Serve Ingresses of ``class_name`` on the given listeners (``None`` disables one) until
    ``stop`` is set; ``ready`` is set once listening with a synced routing table."""
    https_port = https_address[1] if https_address is not None else 443
    proxy = IngressProxy(https_port=https_port)
    tcp_host = (http_address or https_address or ("0.0.0.0", 0))[0]
    controller = IngressController(client, proxy, class_name=class_name,
                                   controller_name=controller_name,
                                   create_class=create_class, publish_address=publish_address,
                                   tcp_services=tcp_services, tcp_host=tcp_host,
                                   ssl_redirect=ssl_redirect)
    try:
        if http_address is not None:
            await proxy.listen(*http_address)
            log.info("ingress listening on http://%s:%d", *http_address)
        if https_address is not None:
            context = controller.certificates.listener_context(
                lambda host: proxy.table.certificate(host))
            await proxy.listen(*https_address, ssl=context)
            log.info("ingress listening on https://%s:%d", *https_address)
        await controller.start()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await controller.stop()
        await proxy.close()
