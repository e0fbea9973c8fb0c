"""The ``sampan`` command.

    sampan server --data-dir DIR [--port 6443] [--store sqlite|etcd] [--etcd-endpoints URLS]
    sampan controller-manager --kubeconfig FILE
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
    _server_args(sub.add_parser("up", help="run every component of a single-node cluster"))
    cm = sub.add_parser("controller-manager", help="run the controllers (with leader election)")
    cm.add_argument("--kubeconfig", required=True)
    cm.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    return p


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
        sys.exit(asyncio.run(run_cluster(args, components=("apiserver", "controller-manager"))))
    if args.command == "controller-manager":
        sys.exit(asyncio.run(run_controllers(args.kubeconfig)))


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_controllers(kubeconfig: str) -> int:
    from sampan.controllers.manager import run_controller_manager

    await run_controller_manager(kubeconfig, _stop_on_signals())
    return 0


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

        tasks.append(asyncio.create_task(
            run_controller_manager(server.kubeconfig_path, stop), name="controller-manager"))
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
