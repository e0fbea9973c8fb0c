"""Overlay rootfs mounts (mount(2) via libc: no process per mount).

The mount data is limited to a page, so long lowerdir lists are passed as ``/proc/self/fd/N``
paths of O_PATH descriptors instead of full paths.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MNT_DETACH = 2
PAGE = os.sysconf("SC_PAGESIZE")


def mount(source: str, target: str | Path, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def umount(target: str | Path, *, detach: bool = False) -> bool:
    """Unmount; False when nothing was mounted there."""
    if _libc.umount2(str(target).encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return False
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    return True


def mount_overlay(layers: list[Path] | tuple[Path, ...], upper: Path, work: Path,
                  target: Path) -> None:
    """Mount ``layers`` (lowest first) with ``upper``/``work`` on ``target``."""
    top_first = [str(p) for p in reversed(layers)]
    data = f"lowerdir={':'.join(top_first)},upperdir={upper},workdir={work}"
    if len(data) < PAGE - 1:
        mount("overlay", target, "overlay", 0, data)
        return
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in top_first]
    try:
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        mount("overlay", target, "overlay", 0,
              f"lowerdir={lower},upperdir={upper},workdir={work}")
    finally:
        for fd in fds:
            os.close(fd)


def is_mountpoint(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False
