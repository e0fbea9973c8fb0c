"""``python -m sampan.ingress --kubeconfig K --http-address :80 --https-address :443``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers

from sampan.cli.component import parse_address, stop_on_signals
from sampan.ingress.run import default_addresses, run_ingress


def register(subparsers) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    """``sampan ingress``: the same options as ``python -m sampan.ingress``."""
    parser = subparsers.add_parser("ingress", help="run the ingress controller")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampan.ingress",
                                     description="Sampan ingress controller")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args(argv)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    http, https = default_addresses()
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--http-address", default=f"{http[0]}:{http[1]}",
                        help="host:port for HTTP (default :80 as root, else :8080); "
                             "'' disables")
    parser.add_argument("--https-address", default=f"{https[0]}:{https[1]}",
                        help="host:port for HTTPS (default :443 as root, else :8443); "
                             "'' disables")
    parser.add_argument("--publish-address", default="",
                        help="IP or hostname written to the Ingresses' status")
    parser.add_argument("--tcp-services-configmap", default="",
                        help="NS/NAME of a ConfigMap mapping \"port\": \"ns/service:port\"")
    parser.add_argument("--ingress-class", default="sampan")
    parser.add_argument("--no-create-class", action="store_true",
                        help="do not create the IngressClass when it is missing")
    parser.add_argument("--no-ssl-redirect", action="store_true",
                        help="do not redirect HTTP to HTTPS for hosts with TLS")
    parser.add_argument("--metrics-address", default="",
                        help="host:port for /metrics and /healthz (default: none)")
    parser.add_argument("--access-log", default="-",
                        help="where access log lines go: '-' (stderr), a file, or 'off'")
    parser.add_argument("-v", "--verbose", action="store_true")


ACCESS_FLUSH_SECONDS = 1.0


def setup_access_log(where: str) -> logging.handlers.MemoryHandler | None:
    """Access lines are buffered and written in batches (at 512 lines or every second, as
    nginx's ``access_log ... buffer= flush=``): a flush per request line cost more than the
    proxying itself."""
    access = logging.getLogger("sampan.ingress.access")
    access.propagate = False
    if where == "off":
        access.disabled = True
        return None
    target = logging.StreamHandler() if where == "-" else logging.FileHandler(where)
    target.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    buffered = logging.handlers.MemoryHandler(512, flushLevel=logging.ERROR, target=target,
                                              flushOnClose=True)
    access.addHandler(buffered)
    access.setLevel(logging.INFO)
    return buffered


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.access_handler = setup_access_log(args.access_log)
    try:
        import uvloop
        uvloop.run(_run(args))
    except ImportError:
        asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from sampan.cli.metrics import serve_metrics
    from sampan.client import Client, load_config

    stop = stop_on_signals()
    loop = asyncio.get_running_loop()
    metrics = await serve_metrics(args.metrics_address)
    handler = getattr(args, "access_handler", None)
    flusher = None
    if handler is not None:
        def flush() -> None:
            nonlocal flusher
            handler.flush()
            flusher = loop.call_later(ACCESS_FLUSH_SECONDS, flush)
        flusher = loop.call_later(ACCESS_FLUSH_SECONDS, flush)
    config = load_config(args.kubeconfig)
    config.user_agent = "sampan-ingress"
    try:
        async with Client(config) as client:
            await run_ingress(
                client, stop,
                http_address=parse_address(args.http_address, 80) if args.http_address else None,
                https_address=(parse_address(args.https_address, 443)
                               if args.https_address else None),
                publish_address=args.publish_address, tcp_services=args.tcp_services_configmap,
                class_name=args.ingress_class, create_class=not args.no_create_class,
                ssl_redirect=not args.no_ssl_redirect)
    finally:
        if flusher is not None:
            flusher.cancel()
        if handler is not None:
            handler.flush()
        if metrics is not None:
            await metrics.cleanup()


if __name__ == "__main__":
    main()
