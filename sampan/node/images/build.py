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


GUESTBOOK_REF = "sampan.local/guestbook:v1"
GUESTBOOK_APP = Path(__file__).resolve().parents[3] / "deploy" / "guestbook" / "app"
_EXECUTABLE_SUFFIXES = (".sh", ".cgi")

# A file set: layer path → (tar type, mode, content or link target). Directories have None.
Entry = tuple[bytes, int, bytes | str | None]


@dataclass(frozen=True)
class BuiltImage:
    layers: tuple[bytes, ...]           # the uncompressed layer tars, lowest first
    config: bytes

    @property
    def layer(self) -> bytes:
        """The top layer (busybox's only one)."""
        return self.layers[-1]

    @property
    def diff_id(self) -> str:
        return oci.digest_of(self.layer)

    @property
    def diff_ids(self) -> list[str]:
        return [oci.digest_of(layer) for layer in self.layers]

    @property
    def id(self) -> str:
        return oci.digest_of(self.config)

    def manifest(self, compressed: bytes | list[bytes] | None = None) -> bytes:
        """The OCI manifest, of the plain layers or of ``compressed`` (gzip) ones."""
        if isinstance(compressed, bytes):
            compressed = [compressed]
        blobs, media_type = ((compressed, oci.OCI_LAYER_GZIP) if compressed is not None
                             else (list(self.layers), oci.OCI_LAYER))
        return _dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": self.id,
                       "size": len(self.config)},
            "layers": [{"mediaType": media_type, "digest": oci.digest_of(blob),
                        "size": len(blob)} for blob in blobs],
        })

    def gzipped_layer(self) -> bytes:
        return _gzip(self.layer)

    def gzipped_layers(self) -> list[bytes]:
        return [_gzip(layer) for layer in self.layers]


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _dumps(doc) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def tar_info(name: str, kind: bytes, mode: int, *, size: int = 0, link: str = "",
             mtime: int = EPOCH, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    """The one header shape Sampan writes into layers: builds, and exports of unpacked
    layers for ``sampan image push`` (push.py), so a build's layer exports byte-identically."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid = mtime, uid, gid
    info.uname = "root" if uid == 0 else ""
    info.gname = "root" if gid == 0 else ""
    return info


def layer_tar(files: dict[str, Entry]) -> bytes:
    """A layer tar of ``files``: sorted paths, root-owned, every mtime EPOCH."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(files):
            kind, mode, content = files[name]
            if kind == tarfile.SYMTYPE:
                tf.addfile(tar_info(name, kind, mode, link=str(content)))
            elif kind == tarfile.REGTYPE:
                data = content.encode() if isinstance(content, str) else content or b""
                tf.addfile(tar_info(name, kind, mode, size=len(data)), io.BytesIO(data))
            else:
                tf.addfile(tar_info(name, kind, mode))
    return buf.getvalue()


def _with_parents(files: dict[str, Entry]) -> dict[str, Entry]:
    """Every parent directory of ``files`` as an entry too (mode 0755 unless given)."""
    out = dict(files)
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.setdefault("/".join(parts[:i]), (tarfile.DIRTYPE, 0o755, None))
    return out


def busybox_files(busybox: Path = BUSYBOX) -> dict[str, Entry]:
    """busybox, a symlink per applet in /bin, /etc/passwd, /etc/group and the base dirs."""
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, check=True).stdout
    applets = sorted({a for a in listed.decode().split() if a and "/" not in a} - {"busybox"})
    files: dict[str, Entry] = {name: (tarfile.DIRTYPE, mode, None) for name, mode in _DIRS.items()}
    files["bin/busybox"] = (tarfile.REGTYPE, 0o755, busybox.read_bytes())
    files["etc/passwd"] = (tarfile.REGTYPE, 0o644, PASSWD)
    files["etc/group"] = (tarfile.REGTYPE, 0o644, GROUP)
    for applet in applets:
        files[f"bin/{applet}"] = (tarfile.SYMTYPE, 0o777, "busybox")
    return files


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    return layer_tar(busybox_files(busybox))


def _config(diff_ids: list[str], config: dict, history: list[str]) -> bytes:
    return _dumps({
        "architecture": oci.host_platform().architecture, "os": "linux", "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": h} for h in history],
    })


def busybox_image(busybox: Path = BUSYBOX) -> BuiltImage:
    layer = busybox_layer(busybox)
    config = _config([oci.digest_of(layer)], {"Env": [PATH_ENV], "Cmd": ["sh"]},
                     ["sampan image build busybox"])
    return BuiltImage((layer,), config)


def app_files(app_dir: Path, prefix: str = "app") -> dict[str, Entry]:
    """The files under ``app_dir`` as layer entries under ``prefix``; scripts (``*.sh``,
    ``*.cgi`` and anything in a ``cgi-bin``) executable, the rest 0644, whatever the checkout's
    modes and times are."""
    files: dict[str, Entry] = {}
    for path in sorted(p for p in app_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(app_dir).as_posix()
        if "__pycache__" in rel or rel.endswith("~"):
            continue
        executable = "cgi-bin/" in f"/{rel}" or rel.endswith(_EXECUTABLE_SUFFIXES)
        files[f"{prefix}/{rel}"] = (tarfile.REGTYPE, 0o755 if executable else 0o644,
                                    path.read_bytes())
    return _with_parents(files)


def guestbook_image(app_dir: Path = GUESTBOOK_APP, busybox: Path = BUSYBOX) -> BuiltImage:
    """The guestbook sample application: busybox's layer, and a layer with the app in /app
    (busybox httpd serving a page and CGI scripts; see deploy/guestbook)."""
    if not (app_dir / "frontend.sh").is_file():
        raise FileNotFoundError(f"{app_dir}: not the guestbook app (no frontend.sh)")
    base = busybox_layer(busybox)
    app = layer_tar(app_files(app_dir))
    config = _config([oci.digest_of(base), oci.digest_of(app)], {
        "Env": [PATH_ENV], "Cmd": ["/app/frontend.sh"], "WorkingDir": "/app",
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "guestbook",
                   "org.opencontainers.image.source": "deploy/guestbook"},
    }, ["sampan image build busybox", "sampan image build guestbook"])
    return BuiltImage((base, app), config)


def store_image(store, image: BuiltImage, tags: list[str]) -> cri.Image:
    """Unpack ``image``'s layers into ``store`` (those not there yet) and record it (blocking)."""
    layers = []
    for layer in image.layers:
        diff_id = oci.digest_of(layer)
        if store.layer_path(diff_id).is_dir():
            size = store.layer_size(diff_id)
        else:
            size = unpack_layer(io.BytesIO(layer), store.layers_dir, diff_id=diff_id).size
        layers.append((diff_id, size))
    return store.commit(image.config, layers, tags=[normalize(t) for t in tags],
                        manifest_bytes=image.manifest())


def build_busybox(store, tags: list[str] | None = None, busybox: Path = BUSYBOX) -> cri.Image:
    """Build busybox into ``store`` (blocking) tagged ``tags`` (default busybox:latest)."""
    return store_image(store, busybox_image(busybox), tags or [BUSYBOX_REF])


def build_guestbook(store, tags: list[str] | None = None, *, app_dir: Path = GUESTBOOK_APP,
                    busybox: Path = BUSYBOX) -> cri.Image:
    """Build the guestbook image into ``store`` (blocking), tagged sampan.local/guestbook:v1."""
    return store_image(store, guestbook_image(app_dir, busybox), tags or [GUESTBOOK_REF])


def write_oci_layout(dest: Path, image: BuiltImage, ref_name: str = "", *,
                     gzip_layer: bool = True) -> str:
    """Write ``image`` as an OCI image layout directory (what ``skopeo copy oci:DIR ...``
    reads). Returns the manifest digest."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers = image.gzipped_layers() if gzip_layer else list(image.layers)
    manifest = image.manifest(layers if gzip_layer else None)
    for data in (image.config, manifest, *layers):
        (blobs / oci.digest_of(data).removeprefix("sha256:")).write_bytes(data)
    (dest / "oci-layout").write_bytes(_dumps({"imageLayoutVersion": "1.0.0"}))
    entry = {"mediaType": oci.OCI_MANIFEST, "digest": oci.digest_of(manifest),
             "size": len(manifest)}
    if ref_name:
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (dest / "index.json").write_bytes(_dumps({"schemaVersion": 2, "manifests": [entry]}))
    return entry["digest"]
