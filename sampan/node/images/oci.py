"""OCI and docker v2 manifest formats: media types, digests, platform selection."""

from __future__ import annotations

import hashlib
import platform as _platform
import re
from dataclasses import dataclass
from typing import Any

import orjson

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "i686": "386", "i386": "386"}


class FormatError(ValueError):
    pass


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: Any) -> str:
    """Only well-formed sha256 digests are accepted: they become file names in the store."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise FormatError(f"unsupported or invalid digest {digest!r}")
    return digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, d: Any) -> Descriptor:
        if not isinstance(d, dict):
            raise FormatError("descriptor is not an object")
        size = d.get("size", -1)
        if not isinstance(size, int):
            raise FormatError("descriptor size is not an integer")
        return cls(str(d.get("mediaType", "")), check_digest(d.get("digest")), size,
                   tuple(d.get("urls") or ()))


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8", "arm64": "v8"}.get(machine, "")
    return Platform("linux", arch, variant)


def load_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise FormatError(f"invalid {what}: {e}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"invalid {what}: not a JSON object")
    return doc


def manifest_kind(doc: dict[str, Any], content_type: str = "") -> str:
    """"index" or "manifest"; schema 1 and unknown formats are refused."""
    media_type = doc.get("mediaType") or content_type.split(";")[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise FormatError("schema 1 manifests are not supported (Docker Image manifest "
                          "version 2, schema 1 is deprecated)")
    if media_type in INDEX_TYPES or (not media_type and "manifests" in doc):
        return "index"
    if media_type in MANIFEST_TYPES or (not media_type and "layers" in doc):
        return "manifest"
    raise FormatError(f"unsupported manifest media type {media_type!r}")


def select_platform(index: dict[str, Any], want: Platform) -> Descriptor:
    """The best manifest for ``want`` in an index, as containerd's platform matcher picks it."""
    best: tuple[int, Descriptor] | None = None
    for entry in index.get("manifests") or ():
        p = entry.get("platform") or {}
        if p.get("os", "") != want.os or p.get("architecture", "") != want.architecture:
            continue
        variant = p.get("variant", "")
        score = 2 if variant == want.variant else 1 if not variant or not want.variant else 0
        if score and (best is None or score > best[0]):
            best = (score, Descriptor.parse(entry))
    if best is None:
        raise FormatError("no match for platform in manifest: not found")
    return best[1]


def parse_manifest(doc: dict[str, Any]) -> tuple[Descriptor, list[Descriptor]]:
    config = Descriptor.parse(doc.get("config"))
    layers = [Descriptor.parse(layer) for layer in doc.get("layers") or ()]
    for layer in layers:
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise FormatError(f"unsupported layer media type {layer.media_type!r}")
    return config, layers


def parse_config(body: bytes, layer_count: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(the config's ``config`` object, the layers' diffIDs)."""
    doc = load_json(body, "image config")
    rootfs = doc.get("rootfs") or {}
    diff_ids = [check_digest(d) for d in rootfs.get("diff_ids") or ()]
    if layer_count is not None and len(diff_ids) != layer_count:
        raise FormatError(f"mismatched image rootfs and manifest layers: {len(diff_ids)} "
                          f"diffIDs for {layer_count} layers")
    return doc.get("config") or {}, diff_ids
