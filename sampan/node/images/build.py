"""Images made offline: ``busybox`` from the host's static busybox (Debian's busybox-static).

The result is reproducible: sorted entries, fixed owners and mtimes, so building twice on one
machine gives the same layer diffID, config digest (image id) and manifest digest.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import orjson

from sampan.node import cri
from sampan.node.images import oci
from sampan.node.images.layer import unpack_layer
from sampan.node.images.reference import normalize

BUSYBOX = Path("/bin/busybox")
BUSYBOX_REF = "docker.io/library/busybox:latest"
EPOCH = 946684800                       # 2000-01-01T00:00:00Z: every mtime in the layer
CREATED = "2000-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
www-data:x:33:
users:x:100:
nobody:x:65534:
"""
_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755,
         "root": 0o700, "sys": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
         "usr/sbin": 0o755, "var": 0o755, "var/www": 0o755}


@dataclass(frozen=True)
class BuiltImage:
    layer: bytes                        # the uncompressed layer tar
    config: bytes
    diff_id: str

    def manifest(self, compressed_layer: bytes | None = None) -> bytes:
        layer = compressed_layer if compressed_layer is not None else self.layer
        media_type = oci.OCI_LAYER_GZIP if compressed_layer is not None else oci.OCI_LAYER
        return _dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.digest_of(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": media_type, "digest": oci.digest_of(layer),
                        "size": len(layer)}],
        })

    def gzipped_layer(self) -> bytes:
        return gzip.compress(self.layer, compresslevel=6, mtime=0)


def _dumps(doc) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "root", "root"
    return info


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    """A tar of busybox, a symlink per applet in /bin, /etc/passwd and /etc/group."""
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, check=True).stdout
    applets = sorted({a for a in listed.decode().split() if a and "/" not in a} - {"busybox"})
    binary = busybox.read_bytes()
    files: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for name, mode in _DIRS.items():
        files[name] = (_info(name, tarfile.DIRTYPE, mode), None)
    files["bin/busybox"] = (_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary)
    for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
        data = text.encode()
        files[name] = (_info(name, tarfile.REGTYPE, 0o644, len(data)), data)
    for applet in applets:
        name = f"bin/{applet}"
        files[name] = (_info(name, tarfile.SYMTYPE, 0o777, link="busybox"), None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(files):
            info, data = files[name]
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_image(busybox: Path = BUSYBOX) -> BuiltImage:
    layer = busybox_layer(busybox)
    diff_id = oci.digest_of(layer)
    config = _dumps({
        "architecture": oci.host_platform().architecture, "os": "linux", "created": CREATED,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "sampan image build busybox"}],
    })
    return BuiltImage(layer, config, diff_id)


def build_busybox(store, tags: list[str] | None = None, busybox: Path = BUSYBOX) -> cri.Image:
    """Build busybox into ``store`` (blocking) tagged ``tags`` (default busybox:latest)."""
    image = busybox_image(busybox)
    if store.layer_path(image.diff_id).is_dir():
        size = store.layer_size(image.diff_id)
    else:
        size = unpack_layer(io.BytesIO(image.layer), store.layers_dir, diff_id=image.diff_id).size
    return store.commit(image.config, [(image.diff_id, size)],
                        tags=[normalize(t) for t in (tags or [BUSYBOX_REF])],
                        manifest_bytes=image.manifest())


def write_oci_layout(dest: Path, image: BuiltImage, ref_name: str = "", *,
                     gzip_layer: bool = True) -> str:
    """Write ``image`` as an OCI image layout directory (what ``skopeo copy oci:DIR ...``
    reads). Returns the manifest digest."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer = image.gzipped_layer() if gzip_layer else None
    manifest = image.manifest(layer)
    for data in (image.config, manifest, layer if layer is not None else image.layer):
        (blobs / oci.digest_of(data).removeprefix("sha256:")).write_bytes(data)
    (dest / "oci-layout").write_bytes(_dumps({"imageLayoutVersion": "1.0.0"}))
    entry = {"mediaType": oci.OCI_MANIFEST, "digest": oci.digest_of(manifest),
             "size": len(manifest)}
    if ref_name:
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (dest / "index.json").write_bytes(_dumps({"schemaVersion": 2, "manifests": [entry]}))
    return entry["digest"]
