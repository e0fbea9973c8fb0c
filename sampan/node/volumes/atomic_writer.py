"""Atomic updates of API-data volumes, like the kubelet's ``pkg/volume/util/atomic_writer.go``.

A volume directory looks like this::

    ..2026_11_24_10_00_00.123456789/   the current payload, written whole before it is used
    ..data -> ..2026_11_24_10_00_00.123456789
    key -> ..data/key                  one user-visible symlink per top-level name

An update writes a new timestamped directory, points a temporary ``..data_tmp`` symlink at it
and renames it over ``..data`` (rename is atomic), adds the user-visible links of new names,
removes the links of names that went away, and finally the old directory. A reader resolving
``..data`` sees either the old payload or the new one, never a mixture or a half-written file.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sampan.node.volumes.mount import remove_tree

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class FileProjection:
    data: bytes
    mode: int = 0o644
    uid: int | None = None          # owner (a projected service-account token's runAsUser)


Payload = Mapping[str, FileProjection]


class PayloadError(ValueError):
    pass


def validate_path(target: str) -> None:
    """``validatePath``: relative, no ``..`` element, not starting with ``..``, sane lengths."""
    if not target:
        raise PayloadError(f'invalid path: must not be empty: "{target}"')
    if target.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH_LENGTH:
        raise PayloadError("invalid path: must be less than or equal to "
                           f"{MAX_PATH_LENGTH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError("invalid path: filenames must be less than or equal to "
                               f"{MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {target}")


def clean_payload(payload: Payload) -> dict[str, FileProjection]:
    cleaned = {}
    for path, projection in payload.items():
        validate_path(path)
        cleaned[posixpath.normpath(path)] = projection
    return cleaned


def _top(path: str) -> str:
    return path.split("/", 1)[0]


def _read_tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Files below ``root``: relative path → (content, mode, uid)."""
    found: dict[str, tuple[bytes, int, int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            info = os.lstat(full)
            with open(full, "rb") as f:
                found[os.path.relpath(full, root)] = (f.read(), stat.S_IMODE(info.st_mode),
                                                      info.st_uid)
    return found


def _same(existing: Mapping[str, tuple[bytes, int, int]], payload: Payload,
          gid: int | None) -> bool:
    if existing.keys() != payload.keys():
        return False
    for path, projection in payload.items():
        data, mode, uid = existing[path]
        if data != projection.data or mode != _file_mode(projection.mode, gid):
            return False
        if projection.uid is not None and uid != projection.uid:
            return False
    return True


def _file_mode(mode: int, gid: int | None) -> int:
    # fsGroup: the group may read what the volume holds (SetVolumeOwnership's read-only mask).
    return mode | 0o440 if gid is not None else mode


class AtomicWriter:
    """Writes payloads into ``target_dir`` (which must exist). Blocking: run it off the loop."""

    def __init__(self, target_dir: Path, *, fs_group: int | None = None):
        self.target_dir = Path(target_dir)
        self.fs_group = fs_group

    def current_dir(self) -> Path | None:
        try:
            return self.target_dir / os.readlink(self.target_dir / DATA_DIR)
        except FileNotFoundError:
            return None

    def write(self, payload: Payload) -> bool:
        """Make the volume hold exactly ``payload``; False when it already did."""
        cleaned = clean_payload(payload)
        old_dir = self.current_dir()
        old_files: dict[str, tuple[bytes, int, int]] = {}
        if old_dir is not None and old_dir.is_dir():
            old_files = _read_tree(old_dir)
            if _same(old_files, cleaned, self.fs_group) and self._links_ok(cleaned):
                return False
        new_dir = self._write_timestamped(cleaned)
        tmp_link = self.target_dir / DATA_DIR_TMP
        try:
            os.unlink(tmp_link)
        except FileNotFoundError:
            pass
        os.symlink(new_dir.name, tmp_link)
        os.rename(tmp_link, self.target_dir / DATA_DIR)
        self._make_user_visible(cleaned)
        self._remove_user_visible({_top(p) for p in old_files} - {_top(p) for p in cleaned})
        if old_dir is not None and old_dir.name != new_dir.name:
            remove_tree(old_dir)
        self._remove_strays(new_dir.name)
        return True

    def _links_ok(self, payload: Payload) -> bool:
        return all(os.path.islink(self.target_dir / top) for top in {_top(p) for p in payload})

    def _write_timestamped(self, payload: Payload) -> Path:
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime())
        while True:
            ts_dir = self.target_dir / f"{stamp}.{secrets.randbelow(10 ** 9):09d}"
            try:
                ts_dir.mkdir(mode=0o700)
                break
            except FileExistsError:
                continue
        try:
            os.chmod(ts_dir, 0o755)
            gid = self.fs_group
            if gid is not None:
                os.chown(ts_dir, -1, gid)
            for path, projection in payload.items():
                full = ts_dir / path
                if not full.parent.exists():
                    full.parent.mkdir(mode=0o755, parents=True)
                    if gid is not None:
                        for parent in full.relative_to(ts_dir).parents:
                            if parent != Path("."):
                                os.chown(ts_dir / parent, -1, gid)
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
                try:
                    view = memoryview(projection.data)
                    while view:
                        view = view[os.write(fd, view):]
                    if projection.uid is not None or gid is not None:
                        os.fchown(fd, -1 if projection.uid is None else projection.uid,
                                  -1 if gid is None else gid)
                    os.fchmod(fd, _file_mode(projection.mode, gid))
                finally:
                    os.close(fd)
        except BaseException:
            remove_tree(ts_dir)
            raise
        return ts_dir

    def _make_user_visible(self, payload: Payload) -> None:
        for top in {_top(p) for p in payload}:
            visible = self.target_dir / top
            if not os.path.lexists(visible):
                os.symlink(posixpath.join(DATA_DIR, top), visible)

    def _remove_user_visible(self, tops: set[str]) -> None:
        for top in tops:
            visible = self.target_dir / top
            if os.path.islink(visible):
                os.unlink(visible)

    def _remove_strays(self, keep: str) -> None:
        """Timestamped directories an interrupted write left behind."""
        for entry in os.scandir(self.target_dir):
            if entry.name.startswith("..") and entry.name not in (DATA_DIR, keep) \
                    and entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
