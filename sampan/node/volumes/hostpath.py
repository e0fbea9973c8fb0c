"""hostPath volumes: the type checks of upstream's ``pkg/volume/hostpath`` and the node's list
of host path prefixes pods may use (PodSecurityPolicy's ``allowedHostPaths`` semantics: a
prefix matches whole path elements, so ``/data`` allows ``/data/x`` but not ``/database``)."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence

DIRECTORY_OR_CREATE = "DirectoryOrCreate"
DIRECTORY = "Directory"
FILE_OR_CREATE = "FileOrCreate"
FILE = "File"
SOCKET = "Socket"
CHAR_DEVICE = "CharDevice"
BLOCK_DEVICE = "BlockDevice"
# Not an API value: a directory made world-writable, for local-path provisioned volumes.
SHARED_DIRECTORY_OR_CREATE = "DirectoryOrCreate777"


class HostPathError(ValueError):
    pass


def validate_no_backsteps(path: str) -> None:
    if ".." in path.split("/"):
        raise HostPathError(f"invalid HostPath `{path}`: must not contain '..'")


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def check_type(path: str, path_type: str | None) -> None:
    """``checkTypeInternal``: create what the ``…OrCreate`` types may create (0755 directories,
    0644 files), then require the path to be what the type says."""
    validate_no_backsteps(path)
    if not path_type:
        return
    mode = _mode(path)
    if path_type == SHARED_DIRECTORY_OR_CREATE:
        if mode is None:
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)
            return
        path_type = DIRECTORY
    if path_type == DIRECTORY_OR_CREATE and mode is None:
        old = os.umask(0o022)
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        finally:
            os.umask(old)
        return
    if path_type == FILE_OR_CREATE and mode is None:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        os.close(fd)
        return
    checks = {
        DIRECTORY_OR_CREATE: (stat.S_ISDIR, "a directory"),
        DIRECTORY: (stat.S_ISDIR, "a directory"),
        FILE_OR_CREATE: (stat.S_ISREG, "a file"),
        FILE: (stat.S_ISREG, "a file"),
        SOCKET: (stat.S_ISSOCK, "a socket file"),
        CHAR_DEVICE: (stat.S_ISCHR, "a character device"),
        BLOCK_DEVICE: (stat.S_ISBLK, "a block device"),
    }
    if path_type not in checks:
        raise HostPathError(f"{path_type} is an invalid volume type")
    test, what = checks[path_type]
    if mode is None or not test(mode):
        raise HostPathError(f"hostPath type check failed: {path} is not {what}")


def _under(path: str, prefix: str) -> bool:
    prefix = posixpath.normpath(prefix)
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def is_allowed(path: str, allowed: Sequence[str] | None) -> bool:
    """Whether ``path`` (and where its symlinks lead) lies under one of the ``allowed``
    prefixes; None allows everything."""
    if allowed is None:
        return True
    normal = posixpath.normpath(path)
    real = os.path.realpath(normal)
    return any(_under(normal, prefix) for prefix in allowed) and \
        any(_under(real, os.path.realpath(prefix)) for prefix in allowed)
