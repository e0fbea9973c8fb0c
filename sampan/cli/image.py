"""``sampan image``: the node's image store from the command line (like ``crictl images``,
``ctr images import`` and ``k3s`` airgap images).

    sampan image ls [--data-dir DIR]
    sampan image import FILE [--tag REF]
    sampan image rm REF...
    sampan image build busybox [--tag REF]...
    sampan image pull REF [--insecure] [--username U --password P]
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
    build.add_argument("what", choices=["busybox"])
    build.add_argument("--tag", action="append", help="name(s) for the image "
                       "(default docker.io/library/busybox:latest)")
    build.add_argument("--busybox", default="/bin/busybox", help="the static busybox binary")
    pull = sub.add_parser("pull", help="pull an image from a registry")
    pull.add_argument("ref")
    pull.add_argument("--insecure", action="store_true", help="use plain http for the registry")
    pull.add_argument("--username", default="")
    pull.add_argument("--password", default="")


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
    from sampan.node.images.build import build_busybox
    from sampan.node.cri import CRIError

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
            image = build_busybox(store, args.tag, Path(args.busybox))
            print(f"built {', '.join(image.repo_tags)} ({image.id})")
        elif cmd == "pull":
            auths = ([{"username": args.username, "password": args.password}]
                     if args.username else [])
            image = asyncio.run(_pull(store, args.ref, auths))
            print(f"Image is up to date for {image.id}")
        return 0
    except (ArchiveError, LayerError, ReferenceError, CRIError, OSError, ValueError) as e:
        print(f"sampan image {cmd}: {getattr(e, 'message', None) or e}", file=sys.stderr)
        return 1


def _insecure(args: argparse.Namespace) -> list[str]:
    if getattr(args, "insecure", False):
        from sampan.node.images.reference import parse

        return [parse(args.ref).domain]
    return []


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
