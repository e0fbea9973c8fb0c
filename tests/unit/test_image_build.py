"""Offline image builds are reproducible, and an unpacked build layer exports (for ``sampan
image push``) byte-identically, so a pushed image keeps its id."""

from __future__ import annotations

import io
import tarfile

from sampan.node.images import oci
from sampan.node.images.build import (
    GUESTBOOK_APP, busybox_image, guestbook_image, layer_tar, tar_info)
from sampan.node.images.layer import unpack_layer
from sampan.node.images.push import export_layer, write_layer_tar


def _export(layer: bytes, tmp_path) -> bytes:
    unpacked = unpack_layer(io.BytesIO(layer), tmp_path / "layers")
    out = io.BytesIO()
    write_layer_tar(unpacked.path, out)
    return out.getvalue()


def test_guestbook_is_reproducible_and_on_top_of_busybox():
    first, second = guestbook_image(), guestbook_image()
    assert first.config == second.config and first.layers == second.layers
    assert first.layers[0] == busybox_image().layer
    config = oci.load_json(first.config, "config")
    assert config["rootfs"]["diff_ids"] == first.diff_ids
    assert config["config"]["Cmd"] == ["/app/frontend.sh"]
    with tarfile.open(fileobj=io.BytesIO(first.layers[1])) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["app/backend/cgi-bin/entries"].mode == 0o755
    assert members["app/www/index.html"].mode == 0o644
    assert {m.mtime for m in members.values()} == {946684800}
    assert len(members) == sum(1 for _ in GUESTBOOK_APP.rglob("*")) + 1     # + "app"


def test_build_layers_export_identically(tmp_path):
    image = guestbook_image()
    for i, layer in enumerate(image.layers):
        assert _export(layer, tmp_path / str(i)) == layer


def test_whiteouts_hardlinks_and_xattrs_round_trip(tmp_path):
    files = {"d": (tarfile.DIRTYPE, 0o755, None), "d/a": (tarfile.REGTYPE, 0o600, b"a"),
             "d/.wh.gone": (tarfile.REGTYPE, 0o000, b""),
             "o": (tarfile.DIRTYPE, 0o700, None), "o/.wh..wh..opq": (tarfile.REGTYPE, 0o700, b""),
             "o/new": (tarfile.REGTYPE, 0o644, b"new"), "s": (tarfile.SYMTYPE, 0o777, "d/a")}
    layer = layer_tar(files)
    assert _export(layer, tmp_path / "plain") == layer
    # a hard link and an xattr: written in the order an export writes them
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(tar_info("a", tarfile.REGTYPE, 0o644, size=1), io.BytesIO(b"x"))
        tf.addfile(tar_info("b", tarfile.LNKTYPE, 0o644, link="a"))
        info = tar_info("c", tarfile.REGTYPE, 0o644)
        info.pax_headers = {"SCHILY.xattr.user.note": "hi"}
        tf.addfile(info, io.BytesIO())
    assert _export(buf.getvalue(), tmp_path / "links") == buf.getvalue()


def test_export_layer_gzips_and_names_digests(tmp_path):
    layer = busybox_image().layer
    unpacked = unpack_layer(io.BytesIO(layer), tmp_path / "layers")
    exported = export_layer(unpacked.path, tmp_path / "blob")
    assert exported.diff_id == oci.digest_of(layer)
    blob = (tmp_path / "blob").read_bytes()
    assert exported.digest == oci.digest_of(blob) and exported.size == len(blob)
    again = export_layer(unpacked.path, tmp_path / "blob2")
    assert again.digest == exported.digest
