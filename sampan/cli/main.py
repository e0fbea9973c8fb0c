"""The ``sampan`` command.

    sampan server --data-dir DIR [--port 6443] [--store sqlite|etcd] [--etcd-endpoints URLS]
    sampan controller-manager --kubeconfig FILE [--controllers '*,-name'] [...]
    sampan scheduler --kubeconfig FILE
    sampan hollow-nodes --kubeconfig FILE --count N
    sampan up --data-dir DIR [--port 6443]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from sampan.cli import logs


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="where state, PKI and kubeconfig live")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port of the API server")
    p.add_argument("--bind-address", default="0.0.0.0", help="address the API server listens on")
    p.add_argument("--advertise-address", default="127.0.0.1",
                   help="address written into the kubeconfig and the serving certificate")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    p.add_argument("--etcd-endpoints", default="",
                   help="comma-separated etcd client URLs (with --store etcd)")
    p.add_argument("--etcd-prefix", default="", help="key prefix inside etcd")
    p.add_argument("--service-cidr", default="10.43.0.0/16")
    p.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sampan", description="Sampan: a container cloud")
    sub = p.add_subparsers(dest="command", required=True)
    _server_args(sub.add_parser("server", help="run the API server in the foreground"))
    up = sub.add_parser("up", help="run every component of a single-node cluster")
    _server_args(up)
    _controller_args(up)
    cm = sub.add_parser("controller-manager", help="run the controllers (with leader election)")
    cm.add_argument("--kubeconfig", required=True)
    cm.add_argument("--metrics-bind-address", default="127.0.0.1:10257",
                    help="host:port of /metrics and /healthz ('' for none)")
    _controller_args(cm)
    cm.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    sched = sub.add_parser("scheduler", help="run the scheduler (with leader election)")
    sched.add_argument("--kubeconfig", required=True)
    sched.add_argument("--metrics-bind-address", default="127.0.0.1:10259",
                       help="host:port of /metrics and /healthz ('' for none)")
    sched.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    hollow = sub.add_parser("hollow-nodes",
                            help="register N simulated nodes that run pods without containers")
    hollow.add_argument("--kubeconfig", required=True)
    hollow.add_argument("--count", type=int, required=True)
    hollow.add_argument("--prefix", default="hollow-node", help="node names are PREFIX-<i>")
    hollow.add_argument("--metrics-bind-address", default="",
                        help="host:port of /metrics and /healthz ('' for none)")
    hollow.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    return p


def _controller_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controllers", default="*",
                   help="controllers to run: '*' for all, 'name' to add, '-name' to leave out")
    p.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod addresses of all nodes (comma-separated for dual stack)")
    p.add_argument("--node-cidr-mask-size", type=int, default=24,
                   help="prefix length of each node's pod CIDR")
    p.add_argument("--node-monitor-grace-period", type=float, default=50.0,
                   help="seconds without a heartbeat before a node is marked unknown")
    p.add_argument("--service-account-private-key-file", default="",
                   help="key that signs legacy service account tokens")
    p.add_argument("--root-ca-file", default="", help="CA published to every namespace")
    p.add_argument("--local-path-dir", default="/var/lib/sampan/storage",
                   help="where the local-path provisioner puts volumes on nodes")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.setup(args.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    if args.command == "server":
        sys.exit(asyncio.run(run_cluster(args, components=("apiserver",))))
    if args.command == "up":
        sys.exit(asyncio.run(run_cluster(
            args, components=("apiserver", "controller-manager", "scheduler"))))
    if args.command == "controller-manager":
        sys.exit(asyncio.run(run_controllers(args)))
    if args.command == "scheduler":
        sys.exit(asyncio.run(run_scheduler(args)))
    if args.command == "hollow-nodes":
        sys.exit(asyncio.run(run_hollow_nodes(args)))


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def controller_options(args: argparse.Namespace):
    from sampan.controllers.manager import ControllerOptions

    return ControllerOptions(
        controllers=[c.strip() for c in args.controllers.split(",") if c.strip()],
        cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
        node_monitor_grace_period=args.node_monitor_grace_period,
        service_account_key=Path(args.service_account_private_key_file)
        if args.service_account_private_key_file else None,
        root_ca=Path(args.root_ca_file) if args.root_ca_file else None,
        local_path_dir=args.local_path_dir)


async def _with_metrics(address: str, work) -> int:
    from sampan.cli.metrics import serve_metrics

    runner = await serve_metrics(address)
    try:
        await work
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0


async def run_controllers(args: argparse.Namespace) -> int:
    from sampan.controllers.manager import run_controller_manager

    return await _with_metrics(args.metrics_bind_address, run_controller_manager(
        args.kubeconfig, _stop_on_signals(), options=controller_options(args)))


async def run_scheduler(args: argparse.Namespace) -> int:
    from sampan.scheduler import run_scheduler as run

    return await _with_metrics(args.metrics_bind_address, run(args.kubeconfig, _stop_on_signals()))


async def run_hollow_nodes(args: argparse.Namespace) -> int:
    from sampan.node.hollow import run_hollow_nodes as run

    return await _with_metrics(args.metrics_bind_address, run(
        args.kubeconfig, _stop_on_signals(), count=args.count, prefix=args.prefix))


async def run_cluster(args: argparse.Namespace, components: tuple[str, ...]) -> int:
    from sampan.apiserver.run import APIServerProcess

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoints = [e for e in args.etcd_endpoints.split(",") if e]
    if args.store == "etcd" and not endpoints:
        print("sampan: --store etcd needs --etcd-endpoints", file=sys.stderr)
        return 2
    server = APIServerProcess(data_dir, port=args.port, bind_address=args.bind_address,
                              advertise_address=args.advertise_address, store_kind=args.store,
                              etcd_endpoints=endpoints, etcd_prefix=args.etcd_prefix,
                              service_cidr=args.service_cidr)
    stop = _stop_on_signals()
    await server.start()
    tasks = []
    if "controller-manager" in components:
        from sampan.controllers.manager import run_controller_manager

        options = controller_options(args)
        options.service_account_key = options.service_account_key or server.pki.service_account_key
        options.root_ca = options.root_ca or server.pki.ca_cert
        tasks.append(asyncio.create_task(
            run_controller_manager(server.kubeconfig_path, stop, options=options),
            name="controller-manager"))
    if "scheduler" in components:
        from sampan.scheduler import run_scheduler as run

        tasks.append(asyncio.create_task(run(server.kubeconfig_path, stop), name="scheduler"))
    logging.getLogger("sampan").info("cluster ready", extra={
        "kubeconfig": str(server.kubeconfig_path), "server": server.url,
        "components": list(components)})
    print(f"sampan: API server at {server.url}; kubeconfig {server.kubeconfig_path}", flush=True)
    await stop.wait()
    if tasks:
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await server.stop()
    return 0


if __name__ == "__main__":
    main()
