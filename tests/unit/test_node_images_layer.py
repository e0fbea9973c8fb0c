"""Layer unpacking: whiteouts, links, devices, metadata, compression, traversal refusal."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from sampan.node.images.layer import LayerError, clean_member_path, unpack_layer

MTIME = 1_000_000_000


def entry(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link="", uid=0, gid=0,
          dev=(0, 0), pax=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, link, uid, gid
    info.mtime, info.size = MTIME, len(data) if kind == tarfile.REGTYPE else 0
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = pax
    return info, data


def make_tar(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def unpack(tmp_path: Path, data: bytes, **kw):
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    return unpack_layer(blob, tmp_path / "layers", **kw)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_files_dirs_links_devices_and_metadata(tmp_path):
    tar = make_tar(
        entry("./", tarfile.DIRTYPE, mode=0o755),
        entry("etc/", tarfile.DIRTYPE, mode=0o750, uid=5, gid=6),
        entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", mode=0o600, uid=7, gid=8),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        entry("bin/alias", tarfile.LNKTYPE, link="bin/tool"),
        entry("bin/sh", tarfile.SYMTYPE, link="/bin/busybox"),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        entry("bin/ping", data=b"x", mode=0o755,
              pax={"SCHILY.xattr.user.test": "v\udcff", "SCHILY.xattr.trusted.overlay.x": "no"}),
    )
    layer = unpack(tmp_path, tar)
    root = layer.path
    assert layer.diff_id == sha(tar) == layer.digest
    assert root == tmp_path / "layers" / "sha256" / sha(tar).removeprefix("sha256:")
    st = os.stat(root / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 5, 6, MTIME)
    st = os.stat(root / "etc/passwd")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o600, 7, 8, MTIME)
    assert stat.S_IMODE(os.stat(root / "bin/tool").st_mode) == 0o4755
    assert os.stat(root / "bin/alias").st_ino == os.stat(root / "bin/tool").st_ino
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert os.lstat(root / "bin/sh").st_mtime == MTIME
    dev = os.stat(root / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert stat.S_ISFIFO(os.stat(root / "run/fifo").st_mode)
    assert os.getxattr(root / "bin/ping", "user.test") == b"v\xff"
    assert "trusted.overlay.x" not in os.listxattr(root / "bin/ping")
    assert stat.S_IMODE(os.stat(root / "run").st_mode) == 0o755      # implicit parent
    assert layer.size == len(b"root:x:0:0::/root:/bin/sh\n") + len(b"#!/bin/sh\n") + 1
    assert not list((tmp_path / "layers").glob(".tmp-*"))


def test_whiteouts_become_overlay_whiteouts(tmp_path):
    tar = make_tar(
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/.wh.motd", uid=3, gid=4),
        entry("var/lib/", tarfile.DIRTYPE, mode=0o755),
        entry("var/lib/.wh..wh..opq"),
        entry("var/lib/keep", data=b"k"),
        entry("opt/.wh..wh..opq"),
        entry("x/.wh..wh.plnk"),
    )
    root = unpack(tmp_path, tar).path
    wh = os.lstat(root / "etc/motd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert (wh.st_uid, wh.st_gid) == (3, 4)
    assert not (root / "etc/.wh.motd").exists()
    assert os.getxattr(root / "var/lib", "trusted.overlay.opaque") == b"y"
    assert (root / "var/lib/keep").read_bytes() == b"k"
    assert os.getxattr(root / "opt", "trusted.overlay.opaque") == b"y"
    assert not (root / "var/lib/.wh..wh..opq").exists()
    assert os.listdir(root / "x") == []


def test_later_entries_replace_earlier(tmp_path):
    tar = make_tar(
        entry("a", data=b"first"),
        entry("a", data=b"second"),
        entry("d/", tarfile.DIRTYPE, mode=0o755),
        entry("d/f", data=b"f"),
        entry("d", tarfile.SYMTYPE, link="elsewhere"),
    )
    root = unpack(tmp_path, tar).path
    assert (root / "a").read_bytes() == b"second"
    assert os.readlink(root / "d") == "elsewhere"


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.ZstdCompressor().compress,
                                      lambda b: b], ids=["gzip", "zstd", "plain"])
def test_compressions_and_digests(tmp_path, compress):
    tar = make_tar(entry("hello", data=b"world" * 1000))
    blob = compress(tar)
    layer = unpack(tmp_path, blob, diff_id=sha(tar), digest=sha(blob))
    assert (layer.diff_id, layer.digest) == (sha(tar), sha(blob))
    assert (layer.path / "hello").read_bytes() == b"world" * 1000


def test_diff_id_mismatch_leaves_nothing(tmp_path):
    tar = make_tar(entry("hello", data=b"x"))
    with pytest.raises(LayerError, match="mismatched diffID"):
        unpack(tmp_path, gzip.compress(tar), diff_id=sha(b"other"))
    assert os.listdir(tmp_path / "layers" / "sha256") == []
    assert not list((tmp_path / "layers").glob(".tmp-*"))


def test_compressed_digest_mismatch(tmp_path):
    tar = make_tar(entry("hello", data=b"x"))
    with pytest.raises(LayerError, match="digest mismatch"):
        unpack(tmp_path, tar, digest=sha(b"other"))


@pytest.mark.parametrize("entries", [
    [entry("../escape", data=b"x")],
    [entry("a/../../escape", data=b"x")],
    [entry("link", tarfile.SYMTYPE, link="/etc"), entry("link/passwd", data=b"x")],
    [entry("link", tarfile.SYMTYPE, link=".."), entry("link/escape", data=b"x")],
    [entry("hard", tarfile.LNKTYPE, link="../../etc/passwd")],
    [entry("hard", tarfile.LNKTYPE, link="missing")],
    [entry("d/", tarfile.SYMTYPE, link="/tmp"), entry("d/.wh.x")],
    [entry("etc", tarfile.SYMTYPE, link="/etc"), entry("h", tarfile.LNKTYPE, link="etc/passwd")],
], ids=["dotdot", "nested-dotdot", "through-abs-symlink", "through-rel-symlink",
        "hardlink-out", "hardlink-missing", "whiteout-through-symlink",
        "hardlink-through-symlink"])
def test_traversal_refused(tmp_path, entries):
    outside = tmp_path / "escape"
    with pytest.raises(LayerError):
        unpack(tmp_path, make_tar(*entries))
    assert not outside.exists()
    assert os.listdir(tmp_path / "layers" / "sha256") == []


def test_clean_member_path():
    assert clean_member_path("./etc/passwd") == "etc/passwd"
    assert clean_member_path("/etc/../etc/x") == "etc/x"
    assert clean_member_path("/../x") == "x"        # rooted: cannot climb above /
    assert clean_member_path("./") == ""
    with pytest.raises(LayerError):
        clean_member_path("../x")


def test_truncated_tar_is_an_error(tmp_path):
    tar = make_tar(entry("big", data=os.urandom(100_000)))
    with pytest.raises(LayerError):
        unpack(tmp_path, gzip.compress(tar)[:5000])
    with pytest.raises(LayerError):
        unpack(tmp_path, tar[:5000])                  # plain, cut inside a file
