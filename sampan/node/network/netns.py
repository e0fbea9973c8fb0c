"""Pinned network namespaces, the way ``ip netns add`` makes them.

A namespace is created by a short-lived thread that unshares its own network namespace
(``unshare(CLONE_NEWNET)`` affects only the calling thread) and bind-mounts
``/proc/thread-self/ns/net`` onto the pin file; the thread then ends, so no other thread of the
agent ever changes namespace. Netlink sockets for a pod namespace are made the same way: a
netlink socket stays bound to the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _check(ret: int, what: str, path: object = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path) if path is not None else None)


def _mount(source: str | None, target: Path, flags: int) -> int:
    return _libc.mount(source.encode() if source else None, str(target).encode(), b"none",
                       flags, None)


def ensure_shared_dir(directory: Path) -> None:
    """Make ``directory`` a shared mount point (a bind mount onto itself if it is not a mount
    point yet), like iproute2 does for /run/netns: pins made here propagate to peer mount
    namespaces and their unmounts follow."""
    directory.mkdir(parents=True, exist_ok=True)
    if _mount(None, directory, MS_SHARED | MS_REC) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, "make-shared", directory)
    _check(_mount(str(directory), directory, MS_BIND | MS_REC), "bind mount", directory)
    _check(_mount(None, directory, MS_SHARED | MS_REC), "make-shared", directory)


def run_in_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in a fresh OS thread that is thrown away afterwards, so whatever namespace
    it switched to dies with it."""
    result: list = []

    def target() -> None:
        try:
            result.append((True, func()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            result.append((False, exc))

    thread = threading.Thread(target=target, name="sampan-netns", daemon=True)
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def create_pinned(path: Path) -> Path:
    """A new network namespace bind-mounted at ``path`` (blocking)."""
    ensure_shared_dir(path.parent)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def pin() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare", path)
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        _check(_mount(source, path, MS_BIND), "bind mount", path)

    try:
        run_in_thread(pin)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def remove_pinned(path: Path) -> None:
    """Unmount and delete a pin; nothing to do when it is already gone (blocking)."""
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount: {os.strerror(err)}", str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def is_pinned(path: Path) -> bool:
    """Whether ``path`` is a live namespace pin (an nsfs bind mount, not a leftover file)."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False


def run_in_netns(path: Path, func: Callable[[], T]) -> T:
    """Run ``func`` in a throw-away thread that entered the namespace pinned at ``path``."""
    def enter_and_run() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns", path)
        finally:
            os.close(fd)
        return func()

    return run_in_thread(enter_and_run)


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
        if _libc.umount2(str(directory).encode(), MNT_DETACH) != 0:
            break
    try:
        directory.rmdir()
    except OSError:
        pass
