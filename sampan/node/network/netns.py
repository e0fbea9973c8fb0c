"""Pinned network namespaces, the way ``ip netns add`` makes them.

The pinning itself (a throw-away thread that unshares its network namespace and bind-mounts
it onto the pin file) is sampan.node.nspin's, shared with the runtime's IPC and UTS pins.
Netlink sockets for a pod namespace are made the same way: a netlink socket stays bound to the
namespace it was created in.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sampan.node.nspin import (
    MS_BIND,
    MS_REC,
    MS_SHARED,
    check,
    create_pins,
    is_pinned,
    mount,
    remove_pinned,
    run_in_namespaces,
    run_in_thread,
    umount_detach,
)

NETLINK_ROUTE = 0

T = TypeVar("T")

__all__ = ["create_pinned", "ensure_shared_dir", "is_pinned", "netlink_socket",
           "remove_pinned", "remove_shared_dir", "run_in_netns", "run_in_thread"]


def ensure_shared_dir(directory: Path) -> None:
    """Make ``directory`` a shared mount point (a bind mount onto itself if it is not a mount
    point yet), like iproute2 does for /run/netns: pins made here propagate to peer mount
    namespaces and their unmounts follow."""
    directory.mkdir(parents=True, exist_ok=True)
    if mount(None, directory, MS_SHARED | MS_REC) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        check(-1, "make-shared", directory)
    check(mount(str(directory), directory, MS_BIND | MS_REC), "bind mount", directory)
    check(mount(None, directory, MS_SHARED | MS_REC), "make-shared", directory)


def create_pinned(path: Path) -> Path:
    """A new network namespace bind-mounted at ``path`` (blocking)."""
    ensure_shared_dir(path.parent)
    create_pins({"net": path})
    return path


def run_in_netns(path: Path, func: Callable[[], T]) -> T:
    """Run ``func`` in a throw-away thread that entered the namespace pinned at ``path``."""
    return run_in_namespaces({"net": path}, func)


def netlink_socket(path: Path, rcvbuf: int = 1 << 20) -> socket.socket:
    """An rtnetlink socket that lives in the namespace pinned at ``path``."""
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    return run_in_netns(path, make)


def _is_mount_point(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def remove_shared_dir(directory: Path) -> None:
    """Undo ensure_shared_dir: unmount the directory's self bind mount and remove it if
    empty (blocking)."""
    for _ in range(8):
        if not _is_mount_point(directory):
            break
        if umount_detach(directory) != 0:
            break
    try:
        directory.rmdir()
    except OSError:
        pass
