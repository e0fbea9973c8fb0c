"""``sampan registry``: run the OCI image registry.

    sampan registry --data-dir DIR [--listen 127.0.0.1:5000] [--tls-cert F --tls-key F]
                    [--kubeconfig K [--anonymous-pull] [--realm URL]]
    sampan registry --data-dir DIR --garbage-collect [--dry-run] [--grace-seconds S]

With ``--kubeconfig`` clients authenticate with a Kubernetes bearer token as the password
(checked by a TokenReview); without it the registry is open. Also runnable as
``python -m sampan.cli.registry``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from sampan.cli import logs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="where blobs, manifests and uploads live")
    p.add_argument("--listen", default="127.0.0.1:5000", help="host:port to serve on")
    p.add_argument("--tls-cert", default="", help="serving certificate (PEM); with --tls-key")
    p.add_argument("--tls-key", default="", help="key of the serving certificate (PEM)")
    p.add_argument("--kubeconfig", default="",
                   help="require auth: passwords are Kubernetes tokens checked by TokenReview")
    p.add_argument("--anonymous-pull", action="store_true",
                   help="with --kubeconfig: let anyone pull")
    p.add_argument("--realm", default="",
                   help="token endpoint URL named in challenges (default: <this server>/v2/token)")
    p.add_argument("--garbage-collect", action="store_true",
                   help="delete blobs no manifest references, then exit")
    p.add_argument("--dry-run", action="store_true", help="with --garbage-collect: only report")
    p.add_argument("--grace-seconds", type=float, default=3600.0,
                   help="with --garbage-collect: spare blobs younger than this")
    p.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``registry`` to the ``sampan`` command; ``args.func(args)`` runs it."""
    p = subparsers.add_parser("registry", help="run the OCI image registry")
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def _split_listen(listen: str) -> tuple[str, int]:
    from sampan.cli.component import parse_address

    try:
        return parse_address(listen, 0)
    except ValueError:
        raise SystemExit(f"sampan registry: --listen must be host:port, not {listen!r}") from None


async def serve(args: argparse.Namespace) -> int:
    from sampan.client import Client
    from sampan.registry import Registry, Storage, kubernetes_token_authenticator

    storage = Storage(Path(args.data_dir))
    host, port = _split_listen(args.listen)
    client = Client.from_kubeconfig(args.kubeconfig) if args.kubeconfig else None
    options = {}
    if client is not None:
        options = {"authenticator": kubernetes_token_authenticator(client),
                   "anonymous_pull": args.anonymous_pull, "realm": args.realm or None}
    registry = Registry(storage, host=host, port=port, tls_cert=args.tls_cert or None,
                        tls_key=args.tls_key or None, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await registry.start()
        await stop.wait()
    finally:
        await registry.stop()
        if client is not None:
            await client.close()
    return 0


def garbage_collect(args: argparse.Namespace) -> int:
    from sampan.registry import Storage

    result = Storage(Path(args.data_dir)).garbage_collect(
        grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(result.blobs_deleted)} blobs ({result.bytes_freed} bytes), "
          f"{result.uploads_deleted} stale uploads")
    return 0


def run(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    if args.garbage_collect:
        return garbage_collect(args)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("sampan registry: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="sampan registry", description="the OCI image registry")
    add_arguments(p)
    sys.exit(run(p.parse_args(argv)))


if __name__ == "__main__":
    main()
