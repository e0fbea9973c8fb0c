"""Unpacking image layers: a (gzip | zstd | plain) tar stream → a directory overlayfs can use.

OCI whiteouts become overlay whiteouts: ``.wh.<name>`` a 0/0 character device, ``.wh..wh..opq``
the ``trusted.overlay.opaque=y`` xattr on its directory. Paths that leave the layer, parents
that are not directories and hard links to outside the layer are refused. The diffID (the
sha256 of the uncompressed tar) and, when given, the compressed digest are checked while
reading, so a layer directory only ever appears (by an atomic rename) once it is verified.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XATTR_PREFIX = "SCHILY.xattr."


class LayerError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class UnpackedLayer:
    diff_id: str        # "sha256:..." of the uncompressed tar
    digest: str         # "sha256:..." of the blob as stored (compressed)
    size: int           # bytes of regular files
    path: Path


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    __slots__ = ("_f", "hash", "count")

    def __init__(self, f: BinaryIO):
        self._f = f
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n is not None and n >= 0 else _CHUNK)
        if data:
            self.hash.update(data)
            self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def compression_of(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return ""


def _decompressed(raw: BinaryIO, head: bytes):
    kind = compression_of(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


def unpack_layer(blob: Path | BinaryIO, layers_dir: Path, *, diff_id: str | None = None,
                 digest: str | None = None) -> UnpackedLayer:
    """Unpack ``blob`` (a file, or a readable binary stream) into
    ``layers_dir/sha256/<diffID hex>``. Blocking: run it in an executor."""
    root = layers_dir / "sha256"
    root.mkdir(parents=True, exist_ok=True)
    tmp = layers_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(mode=0o700)
    try:
        os.chmod(tmp, 0o755)             # the root's mode when the tar has no "./" entry
        if isinstance(blob, (str, Path)):
            with open(blob, "rb", buffering=_CHUNK) as f:
                raw, plain, size = _extract_stream(f, tmp)
        else:
            raw, plain, size = _extract_stream(blob, tmp)
        got_digest, got_diff = raw.digest(), plain.digest()
        if digest and got_digest != digest:
            raise LayerError(f"failed to extract layer: digest mismatch: expected {digest}, "
                             f"got {got_digest}")
        if diff_id and got_diff != diff_id:
            raise LayerError(f"failed to extract layer {got_digest}: mismatched diffID: "
                             f"expected {diff_id}, got {got_diff}")
        dest = root / got_diff.removeprefix("sha256:")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            remove_tree(tmp)             # someone else unpacked the same layer first
        return UnpackedLayer(got_diff, got_digest, size, dest)
    except BaseException:
        remove_tree(tmp)
        raise


def _extract_stream(f: BinaryIO, dest: Path) -> tuple[_HashingReader, _HashingReader, int]:
    if not hasattr(f, "peek"):
        f = io.BufferedReader(f, _CHUNK)  # type: ignore[arg-type]
    head = f.peek(4)[:4]  # type: ignore[attr-defined]
    raw = _HashingReader(f)
    plain = _HashingReader(_decompressed(raw, head))
    try:
        size = extract_tar(plain, dest)
        plain.drain()
        raw.drain()
    except (OSError, EOFError, tarfile.TarError, zstandard.ZstdError) as e:
        raise LayerError(f"failed to extract layer: {e}") from e
    return raw, plain, size


def remove_tree(path: Path) -> None:
    """rmtree that also copes with read-only directories inside (dirs of mode 0555)."""
    def fix(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except FileNotFoundError:
            pass
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=fix)


# -- tar extraction --------------------------------------------------------------------------
def clean_member_path(name: str) -> str:
    """The member's path relative to the layer root ("" for the root), refusing escapes
    the way docker's archive package does (``/../x`` is ``x``; ``../x`` is an error)."""
    cleaned = posixpath.normpath(name) if name else "."
    if cleaned == ".." or cleaned.startswith("../"):
        raise LayerError(f'path traversal: "{name}" is outside of the layer')
    cleaned = posixpath.normpath("/" + cleaned).lstrip("/")
    return cleaned


class _Extractor:
    def __init__(self, root: Path):
        self.root = str(root)
        self.known_dirs: set[str] = {""}
        self.dir_times: list[tuple[str, int]] = []
        self.size = 0

    def full(self, rel: str) -> str:
        return self.root + "/" + rel if rel else self.root

    def ensure_parent(self, rel: str) -> None:
        parent = posixpath.dirname(rel)
        if parent in self.known_dirs:
            return
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self.known_dirs:
                continue
            path = self.full(sub)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise LayerError(f'path traversal: "{rel}": parent "{sub}" is not a directory')
            self.known_dirs.add(sub)

    def inside(self, rel: str) -> bool:
        """Whether every parent of ``rel`` is a real directory (no symlink to climb out by)."""
        parent = posixpath.dirname(rel)
        if parent in self.known_dirs:
            return True
        path = self.root
        for part in parent.split("/"):
            path += "/" + part
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return False
            except FileNotFoundError:
                return False
        return True

    def clear(self, rel: str, *, keep_dir: bool = False) -> None:
        path = self.full(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            remove_tree(Path(path))
            self.known_dirs = {d for d in self.known_dirs
                               if d != rel and not d.startswith(rel + "/")}
        else:
            os.unlink(path)

    def whiteout(self, rel: str, member: tarfile.TarInfo) -> bool:
        parent, base = posixpath.split(rel)
        if not base.startswith(WHITEOUT_PREFIX):
            return False
        if base == WHITEOUT_OPAQUE:
            target = self.full(parent)
            if parent:
                os.makedirs(target, 0o755, exist_ok=True)
                self.known_dirs.add(parent)
            os.setxattr(target, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            return True
        if base.startswith(WHITEOUT_META_PREFIX):
            return True                  # aufs metadata (.wh..wh.plnk and friends)
        name = base[len(WHITEOUT_PREFIX):]
        target_rel = posixpath.join(parent, name)
        self.clear(target_rel)
        path = self.full(target_rel)
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        os.lchown(path, member.uid, member.gid)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        return True

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = clean_member_path(member.name)
        if rel:
            self.ensure_parent(rel)
            if self.whiteout(rel, member):
                return
        path = self.full(rel)
        mode = member.mode & 0o7777
        if member.isdir():
            if rel:
                self.clear(rel, keep_dir=True)
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
                self.known_dirs.add(rel)
            self.dir_times.append((path, int(member.mtime)))
            os.lchown(path, member.uid, member.gid)
            os.chmod(path, mode)
        elif member.isreg():
            self.clear(rel)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            with open(fd, "wb", closefd=True) as out:
                src = tf.extractfile(member)
                if src is not None:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, mode)
            self.size += member.size
        elif member.issym():
            self.clear(rel)
            os.symlink(member.linkname, path)
            os.lchown(path, member.uid, member.gid)
        elif member.islnk():
            target_rel = clean_member_path(member.linkname)
            if not target_rel or not self.inside(target_rel):
                raise LayerError(f'invalid hardlink "{member.name}" -> "{member.linkname}"')
            self.clear(rel)
            try:
                os.link(self.full(target_rel), path, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(f'invalid hardlink "{member.name}" -> "{member.linkname}": '
                                 "target is not in the layer") from None
            return
        elif member.ischr() or member.isblk():
            self.clear(rel)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | mode, os.makedev(member.devmajor, member.devminor))
            os.lchown(path, member.uid, member.gid)
            os.chmod(path, mode)
        elif member.isfifo():
            self.clear(rel)
            os.mkfifo(path, mode)
            os.lchown(path, member.uid, member.gid)
            os.chmod(path, mode)
        else:
            return                       # unknown types are skipped, as docker does
        self.xattrs(path, member)
        if not member.isdir():
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    @staticmethod
    def xattrs(path: str, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PREFIX):
                continue
            name = key[len(_XATTR_PREFIX):]
            if name.startswith("trusted.overlay."):
                continue                 # never let a layer steer overlayfs
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False)

    def finish(self) -> None:
        for path, mtime in reversed(self.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def extract_tar(stream, dest: Path) -> int:
    """Extract an uncompressed tar stream into ``dest``; returns the bytes of regular files."""
    extractor = _Extractor(dest)
    with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tf:
        for member in tf:
            extractor.entry(tf, member)
    extractor.finish()
    return extractor.size
