"""Pinned namespaces: bind-mounted nsfs files that keep a namespace alive without a process,
the way ``ip netns add`` and CRI-O's pinns make them.

A short-lived thread unshares its own namespaces (``unshare`` of network, IPC and UTS
namespaces affects only the calling thread), optionally prepares them (a hostname), and
bind-mounts ``/proc/self/task/<tid>/ns/<kind>`` onto each pin file; the thread then ends, so no
other thread of the agent ever changes namespace. Work inside pinned namespaces (netlink
sockets, sysctls) runs the same way, in a throw-away thread that entered them with ``setns``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
FLAGS = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)


def check(ret: int, what: str, path: object = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path) if path is not None else None)


def mount(source: str | None, target: Path, flags: int) -> int:
    return _libc.mount(source.encode() if source else None, str(target).encode(), b"none",
                       flags, None)


def umount_detach(target: Path) -> int:
    return _libc.umount2(str(target).encode(), MNT_DETACH)


def run_in_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in a fresh OS thread that is thrown away afterwards, so whatever namespace
    it switched to dies with it."""
    result: list = []

    def target() -> None:
        try:
            result.append((True, func()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            result.append((False, exc))

    thread = threading.Thread(target=target, name="sampan-ns", daemon=True)
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def create_pins(pins: Mapping[str, Path], *, hostname: str | None = None) -> None:
    """New namespaces of the kinds in ``pins`` ("net", "ipc", "uts"), each bind-mounted at its
    path, made together by one throw-away thread; ``hostname`` is set in a new UTS namespace.
    The pin files must not exist; on failure none is left behind (blocking)."""
    made: list[Path] = []
    try:
        for path in pins.values():
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
            made.append(path)

        def pin() -> None:
            flags = 0
            for kind in pins:
                flags |= FLAGS[kind]
            check(_libc.unshare(flags), "unshare", next(iter(pins.values())))
            if hostname is not None and "uts" in pins:
                name = hostname.encode()
                check(_libc.sethostname(name, len(name)), "sethostname", hostname)
            tid = threading.get_native_id()
            for kind, path in pins.items():
                check(mount(f"/proc/self/task/{tid}/ns/{kind}", path, MS_BIND),
                      "bind mount", path)

        run_in_thread(pin)
    except BaseException:
        for path in made:
            remove_pinned(path)
        raise


def remove_pinned(path: Path) -> None:
    """Unmount and delete a pin; nothing to do when it is already gone (blocking)."""
    if umount_detach(path) != 0:
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


def run_in_namespaces(pins: Mapping[str, Path], func: Callable[[], T]) -> T:
    """Run ``func`` in a throw-away thread that entered the namespaces pinned at ``pins``
    (kind → path)."""
    def enter_and_run() -> T:
        for kind, path in pins.items():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                check(_libc.setns(fd, FLAGS[kind]), "setns", path)
            finally:
                os.close(fd)
        return func()

    return run_in_thread(enter_and_run)


def write_sysctls(sysctls: Mapping[str, str]) -> None:
    """Set sysctls in the calling thread's namespaces ("net.ipv4.x" → /proc/sys/net/ipv4/x,
    the net, IPC and UTS ones resolve to the thread's own namespaces)."""
    for key, value in sysctls.items():
        name = key if "/" in key else key.replace(".", "/")
        with open("/proc/sys/" + name, "w") as f:
            f.write(str(value))
