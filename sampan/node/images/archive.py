"""Importing image tarballs: docker-archive (``docker save``: manifest.json + layer tars) and
oci-archive (an OCI image layout: oci-layout, index.json, blobs/) — as ``ctr images import``
and ``k3s`` airgap images do. Everything is checked against its digest or diffID."""

from __future__ import annotations

import logging
import posixpath
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from sampan.node import cri
from sampan.node.images import oci
from sampan.node.images.layer import unpack_layer
from sampan.node.images.reference import ReferenceError, normalize, parse

log = logging.getLogger(__name__)

_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class ArchiveError(Exception):
    pass


class _Tar:
    def __init__(self, tf: tarfile.TarFile):
        self.tf = tf
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tf.getmembers():
            self.members[_clean(m.name)] = m

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def open(self, name: str) -> BinaryIO:
        member = self.members.get(_clean(name))
        f = self.tf.extractfile(member) if member is not None else None
        if f is None:
            raise ArchiveError(f"archive has no file {name!r}")
        return f  # type: ignore[return-value]

    def read(self, name: str, limit: int = oci.MAX_CONFIG_BYTES) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name}: larger than {limit} bytes")
        return data

    def blob(self, digest: str, limit: int = oci.MAX_CONFIG_BYTES) -> bytes:
        data = self.read(_blob_path(digest), limit)
        got = oci.digest_of(data)
        if got != digest:
            raise ArchiveError(f"blob {digest}: digest mismatch, got {got}")
        return data


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _blob_path(digest: str) -> str:
    return "blobs/" + oci.check_digest(digest).replace(":", "/")


def import_archive(store, path: Path, tag: str | None = None) -> list[cri.Image]:
    """Import every image in the tarball; ``tag`` names the (single) image. Blocking."""
    if tag is not None:
        try:
            tag = normalize(tag)
        except ReferenceError as e:
            raise ArchiveError(f"invalid tag {tag!r}: {e}") from None
    try:
        with tarfile.open(path, "r:*") as tf:
            archive = _Tar(tf)
            if archive.has("manifest.json"):
                return _import_docker(store, archive, tag)
            if archive.has("index.json"):
                return _import_oci(store, archive, tag)
            raise ArchiveError(f"{path}: neither a docker-archive (manifest.json) nor an "
                               "oci-archive (index.json)")
    except (tarfile.TarError, oci.FormatError, OSError) as e:
        raise ArchiveError(f"{path}: {e}") from None


def _one_tag(tag: str | None, count: int) -> None:
    if tag is not None and count != 1:
        raise ArchiveError(f"--tag needs an archive with exactly one image, this one has {count}")


def _unpack(store, archive: _Tar, name: str, diff_id: str,
            digest: str | None = None) -> tuple[str, int]:
    if store.layer_path(diff_id).is_dir():
        return diff_id, store.layer_size(diff_id)
    with archive.open(name) as f:
        layer = unpack_layer(f, store.layers_dir, diff_id=diff_id, digest=digest)
    return layer.diff_id, layer.size


def _import_docker(store, archive: _Tar, tag: str | None) -> list[cri.Image]:
    try:
        entries = orjson.loads(archive.read("manifest.json"))
    except orjson.JSONDecodeError as e:
        raise ArchiveError(f"invalid manifest.json: {e}") from None
    if not isinstance(entries, list):
        raise ArchiveError("invalid manifest.json: not a list")
    _one_tag(tag, len(entries))
    images = []
    for entry in entries:
        config_bytes = archive.read(entry["Config"])
        layer_names = entry.get("Layers") or []
        _, diff_ids = oci.parse_config(config_bytes, len(layer_names))
        layers = [_unpack(store, archive, name, diff_id)
                  for name, diff_id in zip(layer_names, diff_ids)]
        tags = [tag] if tag else [_normalized(t) for t in entry.get("RepoTags") or ()]
        images.append(store.commit(config_bytes, layers, tags=[t for t in tags if t]))
    return images


def _import_oci(store, archive: _Tar, tag: str | None) -> list[cri.Image]:
    index = oci.load_json(archive.read("index.json", oci.MAX_MANIFEST_BYTES), "index.json")
    descriptors: list[dict[str, Any]] = index.get("manifests") or []
    _one_tag(tag, len(descriptors))
    images = []
    for d in descriptors:
        top = oci.Descriptor.parse(d)
        body = archive.blob(top.digest, oci.MAX_MANIFEST_BYTES)
        doc = oci.load_json(body, "manifest")
        if oci.manifest_kind(doc, top.media_type) == "index":
            chosen = oci.select_platform(doc, store.platform)
            body = archive.blob(chosen.digest, oci.MAX_MANIFEST_BYTES)
            doc = oci.load_json(body, "manifest")
        config_desc, layer_descs = oci.parse_manifest(doc)
        config_bytes = archive.blob(config_desc.digest)
        _, diff_ids = oci.parse_config(config_bytes, len(layer_descs))
        layers = [_unpack(store, archive, _blob_path(desc.digest), diff_id, desc.digest)
                  for desc, diff_id in zip(layer_descs, diff_ids)]
        name = tag or _oci_name(d.get("annotations") or {})
        images.append(store.commit(
            config_bytes, layers, tags=[name] if name else [],
            repo_digests=[f"{parse(name).repository}@{top.digest}"] if name else [],
            manifest_bytes=body))
    return images


def _oci_name(annotations: dict[str, str]) -> str:
    """A full image name from the layout's annotations; a bare tag ("latest") names nothing."""
    for key in _NAME_ANNOTATIONS:
        value = annotations.get(key, "")
        if value and ("/" in value or ":" in value):
            name = _normalized(value)
            if name:
                return name
    return ""


def _normalized(name: str) -> str:
    try:
        r = parse(name)
    except ReferenceError:
        log.warning("archive names an invalid image reference", extra={"name": name})
        return ""
    return r.tagged or ""
