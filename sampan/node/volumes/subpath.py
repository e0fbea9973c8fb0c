"""``subPath`` mounts that cannot escape their volume (upstream's ``pkg/volume/util/subpath``).

A container may replace any directory of a shared volume by a symlink pointing anywhere on the
host. So the subpath is resolved once, checked to lie inside the volume, then opened element by
element with ``O_NOFOLLOW`` (a symlink swapped in meanwhile makes the open fail), and the open
file itself is bind-mounted (via ``/proc/self/fd/N``) at
``<pod dir>/volume-subpaths/<volume>/<container>/<mount index>``; that bind mount is what the
container gets, so nothing is looked up by name again.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sampan.node.volumes.mount import bind_mount, is_mount_point, umount

SUBPATHS_DIR = "volume-subpaths"
_OPEN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class SubPathError(Exception):
    pass


def within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def validate(subpath: str) -> None:
    if subpath.startswith("/"):
        raise SubPathError(f"error SubPath `{subpath}` must not be an absolute path")
    if ".." in subpath.split("/"):
        raise SubPathError(f"unable to provision SubPath `{subpath}`: must not contain '..'")


def _elements(subpath: str) -> list[str]:
    return [part for part in subpath.split("/") if part not in ("", ".")]


def safe_make_dir(volume_path: str, subpath: str, mode: int) -> None:
    """Create the missing directories of ``subpath`` below the volume, never through a symlink
    that leads out of it."""
    base = os.path.realpath(volume_path)
    parts = _elements(subpath)
    existing = 0
    while existing < len(parts) and os.path.lexists(os.path.join(base, *parts[:existing + 1])):
        existing += 1
    if existing == len(parts):
        return
    resolved = os.path.realpath(os.path.join(base, *parts[:existing]))
    if not within(resolved, base):
        raise SubPathError(f"path {resolved} is outside of allowed base {base}")
    fd = os.open(resolved, _OPEN_FLAGS | os.O_DIRECTORY)
    try:
        for part in parts[existing:]:
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            os.chmod(f"/proc/self/fd/{fd}", mode)  # mkdir's mode went through the umask
    finally:
        os.close(fd)


def _safe_open(base: str, path: str) -> int:
    """Open ``path`` (already free of symlinks) below ``base`` one element at a time."""
    fd = os.open(base, _OPEN_FLAGS | os.O_DIRECTORY)
    try:
        for part in _elements(os.path.relpath(path, base)):
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise SubPathError(f"{path} is not a directory path")
            try:
                child = os.open(part, _OPEN_FLAGS, dir_fd=fd)
            except OSError as e:
                raise SubPathError(f"cannot open {path}: {e.strerror}") from None
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise SubPathError(f"{path} changed into a symlink")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def bind_subpath(volume_path: str, subpath: str, pod_dir: Path, volume_name: str,
                 container_name: str, index: int) -> str:
    """The host path to mount for ``subpath`` of a volume (a bind mount of it)."""
    base = os.path.realpath(volume_path)
    path = os.path.realpath(os.path.join(base, *_elements(subpath)))
    if not within(path, base):
        raise SubPathError(f'subpath "{path}" not within volume path "{base}"')
    fd = _safe_open(base, path)
    try:
        source_stat = os.fstat(fd)
        target = pod_dir / SUBPATHS_DIR / volume_name / container_name / str(index)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        if is_mount_point(target):
            if _same_file(os.stat(target), source_stat):
                return str(target)
            umount(target)
        is_dir = stat.S_ISDIR(source_stat.st_mode)
        if os.path.lexists(target) and os.path.isdir(target) != is_dir:
            if os.path.isdir(target) and not os.path.islink(target):
                os.rmdir(target)
            else:
                os.unlink(target)
        if is_dir:
            target.mkdir(exist_ok=True, mode=0o750)
        elif not target.exists():
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o640))
        try:
            bind_mount(f"/proc/self/fd/{fd}", target)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise SubPathError(f"{path} disappeared") from None
            raise
        return str(target)
    finally:
        os.close(fd)
