"""The small HTTP endpoint each non-API-server component serves, as kube-scheduler and
kube-controller-manager do on their secure ports: ``/healthz`` and Prometheus ``/metrics``
(the process's default registry: work queues, scheduler, hollow nodes)."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(address: str) -> web.AppRunner | None:
    """Serve on ``host:port``; an empty address serves nothing. A port already in use (another
    component on the same machine) is logged, not fatal: metrics are not worth a crash."""
    if not address:
        return None
    from sampan.cli.component import parse_address

    host, port = parse_address(address, 0, "127.0.0.1")
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/livez", _healthz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        log.warning("not serving metrics on %s: %s", address, e)
        await runner.cleanup()
        return None
    log.info("serving /metrics and /healthz", extra={"address": address})
    return runner
