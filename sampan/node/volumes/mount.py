"""Mount syscalls and the filesystem care volume teardown needs.

mount(2)/umount2(2) through libc (no subprocess per mount), the mount table of this process
(``/proc/self/mountinfo``) and a directory removal that never crosses into another filesystem,
so a bind mount left behind can never cost the data behind it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _fs(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str, target: str | os.PathLike[str], fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if _libc.mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    if _libc.umount2(_fs(target), flags | UMOUNT_NOFOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mount_tmpfs(target: str | os.PathLike[str], size: int | None = None) -> None:
    options = f"size={size}" if size else None
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)


def bind_mount(source: str, target: str | os.PathLike[str]) -> None:
    mount(source, target, None, MS_BIND)


def _unescape(field: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(under: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``under`` (deepest first), from this process's mount table."""
    base = os.path.realpath(under).rstrip("/")
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            for line in table:
                point = _unescape(line.split(" ", 5)[4])
                if point == base or point.startswith(base + "/"):
                    found.append(point)
    except FileNotFoundError:
        return []
    found.sort(key=lambda p: p.count("/"), reverse=True)
    return found


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    return os.path.realpath(path) in mount_points(path)


def unmount_all(under: str | os.PathLike[str]) -> None:
    """Unmount everything at or below ``under``, deepest first; a busy mount is detached."""
    for _ in range(8):  # stacked mounts on one point need one umount each
        points = mount_points(under)
        if not points:
            return
        for point in points:
            try:
                umount(point)
            except OSError as e:
                if e.errno in (errno.EINVAL, errno.ENOENT):
                    continue
                if e.errno == errno.EBUSY:
                    umount(point, MNT_DETACH)
                else:
                    raise


def remove_tree(path: str | os.PathLike[str]) -> None:
    """``rm -rf`` that stays on ``path``'s filesystem: a directory on another device (a mount
    that is still there) is left alone, and so is everything leading to it."""
    root = os.fspath(path)
    try:
        root_stat = os.lstat(root)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        os.unlink(root)
        return
    _remove_dir(root, root_stat.st_dev)


def _remove_dir(path: str, device: int) -> bool:
    """Remove ``path``'s contents and itself; False when something had to stay."""
    complete = True
    with os.scandir(path) as entries:
        children = list(entries)
    for entry in children:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            if info.st_dev != device:
                complete = False
                continue
            complete = _remove_dir(entry.path, device) and complete
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    if complete:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            complete = False
    return complete


def directory_usage(path: str | os.PathLike[str]) -> int:
    """Bytes in use below ``path`` (allocated blocks, like ``du``), staying on one device."""
    root = os.fspath(path)
    try:
        device = os.lstat(root).st_dev
    except FileNotFoundError:
        return 0
    total, stack, seen = 0, [root], set()
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if info.st_dev != device:
                        continue
                    if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                        if info.st_ino in seen:
                            continue
                        seen.add(info.st_ino)
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total


def ensure_dir(path: Path, mode: int) -> None:
    """mkdir -p with an exact mode on the last component (the umask does not apply)."""
    path.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)
