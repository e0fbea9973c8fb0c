"""``python -m sampan.dns --kubeconfig K --listen 127.0.0.1:5353``"""

from __future__ import annotations

import argparse
import asyncio
import logging

from sampan.cli.component import stop_on_signals, with_metrics
from sampan.dns.run import parse_address, run_dns


def register(subparsers) -> argparse.ArgumentParser:
    """``sampan dns``: the same options as ``python -m sampan.dns``."""
    parser = subparsers.add_parser("dns", help="run the cluster DNS")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampan.dns", description="Sampan cluster DNS")
    add_arguments(parser)
    run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--listen", action="append", default=None,
                        help="address to serve UDP and TCP on (repeatable; default 10.43.0.10:53)")
    parser.add_argument("--domain", default="cluster.local")
    parser.add_argument("--upstream", action="append", default=None,
                        help="resolver for other names (repeatable; default: /etc/resolv.conf)")
    parser.add_argument("--ttl", type=int, default=5)
    parser.add_argument("--metrics-address", default="",
                        help="host:port for /metrics and /healthz (default: none)")
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listen = [parse_address(a) for a in args.listen or ["10.43.0.10:53"]]
    upstreams = [parse_address(a) for a in args.upstream] if args.upstream else None
    asyncio.run(_run(args, listen, upstreams))
    return 0


async def _run(args: argparse.Namespace, listen, upstreams) -> None:
    await with_metrics(args.metrics_address, run_dns(
        args.kubeconfig, stop_on_signals(), listen=listen, domain=args.domain,
        upstreams=upstreams, ttl=args.ttl))


if __name__ == "__main__":
    main()
