"""``sampan image``: the node's image store from the command line (like ``crictl images``,
``ctr images import`` and ``k3s`` airgap images).

    sampan image ls [--data-dir DIR]
    sampan image import FILE [--tag REF]
    sampan image rm REF...
    sampan image build busybox|guestbook [--tag REF]...
    sampan image pull REF [--insecure] [--username U --password P]
    sampan image push LOCAL_REF DEST_REF [--creds USER:PASSWORD] [--insecure]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = "/var/lib/sampan/agent"


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``image`` to the ``sampan`` command; dispatch with ``run(args)``."""
    p = subparsers.add_parser("image", help="manage the node's images")
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help="the agent's data directory (images live in DIR/images)")
    p.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "warning"))
    p.set_defaults(image_run=run)
    sub = p.add_subparsers(dest="image_command", required=True)
    sub.add_parser("ls", aliases=["list"], help="list images")
    imp = sub.add_parser("import", help="import a docker-archive or oci-archive tarball")
    imp.add_argument("file")
    imp.add_argument("--tag", help="name the imported image (archives with one image)")
    rm = sub.add_parser("rm", aliases=["rmi"], help="remove images (by reference or id)")
    rm.add_argument("refs", nargs="+", metavar="REF")
    build = sub.add_parser("build", help="build an image offline")
    build.add_argument("what", choices=["busybox", "guestbook"])
    build.add_argument("--tag", action="append", help="name(s) for the image (default "
                       "docker.io/library/busybox:latest, sampan.local/guestbook:v1)")
    build.add_argument("--busybox", default="/bin/busybox", help="the static busybox binary")
    build.add_argument("--app-dir", default="", help="guestbook: the app's files "
                       "(default deploy/guestbook/app)")
    pull = sub.add_parser("pull", help="pull an image from a registry")
    pull.add_argument("ref")
    pull.add_argument("--insecure", action="store_true", help="use plain http for the registry")
    pull.add_argument("--username", default="")
    pull.add_argument("--password", default="")
    push = sub.add_parser("push", help="push an image from the store to a registry")
    push.add_argument("ref", metavar="LOCAL_REF", help="the image in the store (name or id)")
    push.add_argument("dest", metavar="DEST_REF", help="where to push it (registry/repo:tag)")
    push.add_argument("--creds", default="", metavar="USER:PASSWORD",
                      help="registry credentials (a Kubernetes token as the password for "
                      "Sampan's registry)")
    push.add_argument("--insecure", action="store_true", help="use plain http for the registry")
    push.add_argument("--ca-file", default="",
                      help="also trust this CA for the registry (e.g. DATA_DIR/pki/ca.crt of "
                           "sampan up, whose registry has a cluster-CA certificate)")
    push.add_argument("--chunk-size", type=int, default=0,
                      help="upload blobs in chunks of this many bytes (default: one request)")


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, four significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def _rows(images) -> list[tuple[str, str, str, str]]:
    rows = []
    for image in images:
        short_id = image.id.removeprefix("sha256:")[:13]
        size = human_size(image.size)
        names = [(t.rpartition(":")[0], t.rpartition(":")[2]) for t in image.repo_tags]
        if not names:
            names = [(d.partition("@")[0], "<none>") for d in image.repo_digests[:1]] or [
                ("<none>", "<none>")]
        rows.extend((repo, tag, short_id, size) for repo, tag in names)
    return rows


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def run(args: argparse.Namespace) -> int:
    from sampan.node.images import ArchiveError, ImageStore, LayerError, ReferenceError
    from sampan.node.cri import CRIError
    from sampan.node.images.build import build_busybox, build_guestbook
    from sampan.node.images.registry import RegistryError

    root = Path(args.data_dir) / "images"
    cmd = args.image_command
    try:
        store = ImageStore(root, insecure_registries=_insecure(args))
        if cmd in ("ls", "list"):
            print(_table(_rows(store.list()), ("REPOSITORY", "TAG", "IMAGE ID", "SIZE")))
        elif cmd == "import":
            images = asyncio.run(store.import_archive(Path(args.file), args.tag))
            for image in images:
                print(f"imported {', '.join(image.repo_tags) or '<untagged>'} ({image.id})")
        elif cmd in ("rm", "rmi"):
            status = 0
            for ref in args.refs:
                image = store.resolve_prefix(ref)
                if image is None:
                    print(f"sampan image rm: no such image {ref!r}", file=sys.stderr)
                    status = 1
                    continue
                store.remove(image.id)
                print(f"Deleted: {', '.join(image.repo_tags) or image.id}")
            store.prune_layers()
            return status
        elif cmd == "build":
            if args.what == "guestbook":
                options = {"app_dir": Path(args.app_dir)} if args.app_dir else {}
                image = build_guestbook(store, args.tag, busybox=Path(args.busybox), **options)
            else:
                image = build_busybox(store, args.tag, Path(args.busybox))
            print(f"built {', '.join(image.repo_tags)} ({image.id}, {human_size(image.size)})")
        elif cmd == "push":
            result = asyncio.run(_push(store, args))
            print(f"pushed {result.reference}@{result.digest} (image {result.image_id}, "
                  f"{len(result.uploaded)} blobs uploaded, {len(result.skipped)} already there)")
        elif cmd == "pull":
            auths = ([{"username": args.username, "password": args.password}]
                     if args.username else [])
            image = asyncio.run(_pull(store, args.ref, auths))
            print(f"Image is up to date for {image.id}")
        return 0
    except (ArchiveError, LayerError, ReferenceError, CRIError, RegistryError, OSError,
            ValueError) as e:
        print(f"sampan image {cmd}: {getattr(e, 'message', None) or e}", file=sys.stderr)
        return 1


def _insecure(args: argparse.Namespace) -> list[str]:
    if getattr(args, "insecure", False):
        from sampan.node.images.reference import parse

        return [parse(args.dest if args.image_command == "push" else args.ref).domain]
    return []


async def _push(store, args: argparse.Namespace):
    from sampan.node.images.push import push_image
    from sampan.node.images.reference import parse
    from sampan.node.images.registry import Credentials

    credentials = None
    if args.creds:
        user, sep, password = args.creds.partition(":")
        if not sep:
            raise ValueError("--creds must be USER:PASSWORD")
        credentials = Credentials(user, password)
    insecure = frozenset({parse(args.dest).domain}) if args.insecure else frozenset()
    context = None
    if args.ca_file:
        import ssl

        context = ssl.create_default_context()
        context.load_verify_locations(cafile=args.ca_file)
    return await push_image(store, args.ref, args.dest, credentials=credentials,
                            insecure=insecure, chunk_size=args.chunk_size,
                            progress=lambda line: print(line, file=sys.stderr),
                            ssl_context=context)


async def _pull(store, ref: str, auths):
    try:
        return await store.pull(ref, auths)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    from sampan.cli import logs

    p = argparse.ArgumentParser(prog="sampan image", description="manage the node's images")
    _arguments(p)
    args = p.parse_args(argv)
    logs.setup(args.log_level)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
