"""``python -m sampan.proxy --kubeconfig K --node N --node-ip IP``: the service proxy alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket

from sampan.cli.component import stop_on_signals, with_metrics
from sampan.proxy.run import run_proxy


def register(subparsers) -> argparse.ArgumentParser:
    """``sampan proxy``: the same options as ``python -m sampan.proxy``."""
    parser = subparsers.add_parser("proxy", help="run the service proxy (nftables or iptables)")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sampan.proxy", description=__doc__)
    add_arguments(parser)
    run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default=socket.gethostname(), help="this node's name")
    parser.add_argument("--node-ip", action="append", default=[], dest="node_ips",
                        help="an address that accepts NodePort traffic (repeatable)")
    parser.add_argument("--cluster-cidr", action="append", dest="cluster_cidrs")
    parser.add_argument("--service-cidr", action="append", dest="service_cidrs")
    parser.add_argument("--mode", choices=("auto", "nftables", "iptables"), default="auto",
                        help="rule backend; auto: nftables when `nft list tables` works, "
                             "else iptables")
    parser.add_argument("--table", help="nftables table (default sampan-proxy-<node>)")
    parser.add_argument("--iptables", default="iptables",
                        help="iptables binary in iptables mode (iptables, iptables-legacy, "
                             "iptables-nft); -restore/-save and ip6tables are derived from it")
    parser.add_argument("--chain-prefix",
                        help="iptables chain prefix (default SAMPAN-<hash of the node name>)")
    parser.add_argument("--min-sync-interval", type=float, default=0.05)
    parser.add_argument("--metrics-address", default="",
                        help="host:port to serve /metrics on (empty: none)")
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = {"min_sync_interval": args.min_sync_interval, "mode": args.mode,
               "iptables": [args.iptables]}
    if args.chain_prefix:
        options["chain_prefix"] = args.chain_prefix
    if args.cluster_cidrs:
        options["cluster_cidrs"] = args.cluster_cidrs
    if args.service_cidrs:
        options["service_cidrs"] = args.service_cidrs
    if args.table:
        options["table"] = args.table
    asyncio.run(_main(args, options))
    return 0


async def _main(args: argparse.Namespace, options: dict) -> None:
    await with_metrics(args.metrics_address, run_proxy(
        args.kubeconfig, stop_on_signals(), args.node, args.node_ips, **options))


if __name__ == "__main__":
    main()
