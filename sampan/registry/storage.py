"""Filesystem storage of the registry, laid out like distribution's filesystem driver:

    ROOT/blobs/<alg>/<hex[:2]>/<hex>                              content (blobs and manifests)
    ROOT/repositories/<name>/_layers/<alg>/<hex>                  "this repo has this blob"
    ROOT/repositories/<name>/_manifests/revisions/<alg>/<hex>     media type of a manifest
    ROOT/repositories/<name>/_manifests/tags/<tag>                digest the tag points to
    ROOT/repositories/<name>/_manifests/referrers/<alg>/<hex>/<alg>-<hex>  referrer descriptor
    ROOT/uploads/<uuid>/{data,info.json}                          upload sessions
    ROOT/tmp/                                                     staging for atomic writes

Repository path components never start with ``_``, so the ``_`` directories cannot collide
with nested repository names. Every file is written to ``tmp/`` and renamed into place, so a
crash leaves either the old or the new content. The methods block (filesystem I/O): the HTTP
layer calls them off the event loop."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.registry.errors import RegistryError

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_MANIFESTS + INDEXES
MAX_MANIFEST_SIZE = 4 << 20  # distribution's default limit

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+")


# -- validation ------------------------------------------------------------------------------

def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name: {name!r}",
                            {"name": name})
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise RegistryError("TAG_INVALID", f"invalid tag: {tag!r}", {"tag": tag})
    return tag


def parse_digest(digest: str) -> tuple[str, str]:
    """``alg:hex`` → (alg, hex); DIGEST_INVALID for malformed or unsupported digests."""
    alg, sep, encoded = digest.partition(":")
    if not sep or alg not in ALGORITHMS:
        raise RegistryError("DIGEST_INVALID", f"invalid or unsupported digest: {digest!r}",
                            {"digest": digest})
    if len(encoded) != ALGORITHMS[alg] or not _HEX_RE.fullmatch(encoded):
        raise RegistryError("DIGEST_INVALID", f"invalid digest: {digest!r}", {"digest": digest})
    return alg, encoded


def is_digest(reference: str) -> bool:
    return ":" in reference


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def media_type(content_type: str | None) -> str:
    """A Content-Type header without parameters, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class Upload:
    uuid: str
    name: str
    size: int
    algorithm: str
    started: float


@dataclass
class GCResult:
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    uploads_deleted: int = 0


# -- helpers ---------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _descriptor(obj: Any, where: str) -> tuple[str, int, dict[str, Any]]:
    if not isinstance(obj, dict):
        raise RegistryError("MANIFEST_INVALID", f"{where}: descriptor must be an object")
    digest, size = obj.get("digest"), obj.get("size")
    if not isinstance(digest, str):
        raise RegistryError("MANIFEST_INVALID", f"{where}: descriptor digest is required")
    try:
        parse_digest(digest)
    except RegistryError:
        raise RegistryError("MANIFEST_INVALID", f"{where}: invalid digest {digest!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError("MANIFEST_INVALID", f"{where}: descriptor size is required")
    if not isinstance(obj.get("mediaType", ""), str):
        raise RegistryError("MANIFEST_INVALID", f"{where}: mediaType must be a string")
    return digest, size, obj


def _decode_manifest(body: bytes, content_type: str | None) -> tuple[str, dict[str, Any]]:
    """Parse and type a pushed manifest the way distribution does: the Content-Type names the
    schema; a generic or missing one falls back to the document's mediaType, then its shape."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RegistryError("MANIFEST_INVALID", f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError("MANIFEST_INVALID", "manifest must be a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise RegistryError("MANIFEST_INVALID", "mediaType must be a string")
    ct = media_type(content_type)
    if ct in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError("MANIFEST_INVALID", "schema1 manifests are not supported")
    if ct in ("", "application/json", "application/octet-stream"):
        ct = declared or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    if ct not in MANIFEST_TYPES:
        raise RegistryError("MANIFEST_INVALID", f"unrecognized manifest content type {ct!r}")
    if declared and declared != ct:
        raise RegistryError("MANIFEST_INVALID",
                            f"mediaType {declared!r} does not match Content-Type {ct!r}")
    if doc.get("schemaVersion") != 2:
        raise RegistryError("MANIFEST_INVALID", "schemaVersion must be 2")
    return ct, doc


def referenced_blobs(media: str, doc: dict[str, Any]) -> list[str]:
    """Digests of the blobs (not manifests) a manifest needs: config and layers."""
    if media not in IMAGE_MANIFESTS:
        return []
    digests = [doc["config"]["digest"]] if isinstance(doc.get("config"), dict) else []
    for layer in doc.get("layers") or []:
        if isinstance(layer, dict) and not layer.get("urls") and "digest" in layer:
            digests.append(layer["digest"])
    return digests


class _Hashing:
    """An open upload's data file with the running hash of what it holds."""

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self.hasher = hashlib.new(algorithm)
        self.size = 0


# -- storage ---------------------------------------------------------------------------------

class Storage:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        for sub in ("blobs", "repositories", "uploads", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Commit, link and manifest writes take this lock; garbage collection holds it
        # for its whole mark and sweep, so nothing becomes referenced mid-sweep.
        self._lock = threading.RLock()
        self._hashing: dict[str, _Hashing] = {}
        self._hashing_lock = threading.Lock()

    # -- paths -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        alg, hexd = parse_digest(digest)
        return self.root / "blobs" / alg / hexd[:2] / hexd

    def _repo(self, name: str) -> Path:
        return self.root / "repositories" / validate_name(name)

    def _layer_link(self, name: str, digest: str) -> Path:
        alg, hexd = parse_digest(digest)
        return self._repo(name) / "_layers" / alg / hexd

    def _revision(self, name: str, digest: str) -> Path:
        alg, hexd = parse_digest(digest)
        return self._repo(name) / "_manifests" / "revisions" / alg / hexd

    def _tag(self, name: str, tag: str) -> Path:
        return self._repo(name) / "_manifests" / "tags" / validate_tag(tag)

    def _referrers(self, name: str, subject: str) -> Path:
        alg, hexd = parse_digest(subject)
        return self._repo(name) / "_manifests" / "referrers" / alg / hexd

    def _upload_dir(self, upload_id: str) -> Path:
        try:
            canonical = str(uuidlib.UUID(upload_id))
        except ValueError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"unknown upload {upload_id!r}") from None
        return self.root / "uploads" / canonical

    # -- atomic writes -----------------------------------------------------------------------
    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{uuidlib.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def _store_blob(self, data: bytes, digest: str) -> None:
        path = self.blob_path(digest)
        if path.exists():
            os.utime(path)
        else:
            self._write(path, data)

    # -- repositories ------------------------------------------------------------------------
    def repository_exists(self, name: str) -> bool:
        return self._repo(name).is_dir()

    def _require_repository(self, name: str) -> None:
        if not self.repository_exists(name):
            raise RegistryError("NAME_UNKNOWN", f"repository name not known to registry: {name}",
                                {"name": name})

    def catalog(self) -> list[str]:
        """Every repository's name, sorted."""
        base = self.root / "repositories"
        names: list[str] = []

        def walk(path: Path, prefix: str) -> None:
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except FileNotFoundError:
                return
            if any(e.name in ("_manifests", "_layers") for e in entries):
                names.append(prefix)
            for e in entries:
                if e.is_dir() and not e.name.startswith("_"):
                    walk(Path(e.path), f"{prefix}/{e.name}" if prefix else e.name)

        walk(base, "")
        return sorted(n for n in names if n)

    # -- blobs -------------------------------------------------------------------------------
    def stat_blob(self, name: str, digest: str) -> tuple[Path, int]:
        """The content path and size of a blob the repository holds (as a layer or a
        manifest); BLOB_UNKNOWN otherwise."""
        parse_digest(digest)
        if self._layer_link(name, digest).exists() or self._revision(name, digest).exists():
            path = self.blob_path(digest)
            try:
                return path, path.stat().st_size
            except FileNotFoundError:
                pass
        raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}",
                            {"digest": digest})

    def has_blob(self, name: str, digest: str) -> bool:
        try:
            self.stat_blob(name, digest)
            return True
        except RegistryError:
            return False

    def link_blob(self, name: str, digest: str) -> None:
        """Make a blob that exists in the registry part of ``name`` (a cross-repo mount)."""
        with self._lock:
            path = self.blob_path(digest)
            if not path.exists():
                raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}",
                                    {"digest": digest})
            os.utime(path)
            link = self._layer_link(name, digest)
            if not link.exists():
                self._write(link, b"")

    def delete_blob(self, name: str, digest: str) -> None:
        """Unlink a blob from the repository; garbage collection frees the content."""
        self._require_repository(name)
        link = self._layer_link(name, digest)
        with self._lock:
            try:
                link.unlink()
            except FileNotFoundError:
                raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}",
                                    {"digest": digest}) from None

    # -- uploads -----------------------------------------------------------------------------
    def start_upload(self, name: str, algorithm: str = "sha256") -> Upload:
        validate_name(name)
        if algorithm not in ALGORITHMS:
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm!r}")
        upload_id = str(uuidlib.uuid4())
        directory = self.root / "uploads" / upload_id
        directory.mkdir(parents=True)
        started = time.time()
        (directory / "data").touch()
        self._write(directory / "info.json", json.dumps(
            {"name": name, "algorithm": algorithm, "started": started}).encode())
        return Upload(upload_id, name, 0, algorithm, started)

    def get_upload(self, name: str, upload_id: str) -> Upload:
        directory = self._upload_dir(upload_id)
        try:
            info = json.loads((directory / "info.json").read_bytes())
            size = (directory / "data").stat().st_size
        except (FileNotFoundError, ValueError):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"unknown upload {upload_id!r}") from None
        if info.get("name") != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"unknown upload {upload_id!r}")
        return Upload(directory.name, name, size, info.get("algorithm", "sha256"),
                      info.get("started", 0.0))

    def _hash_state(self, upload: Upload, data: Path, algorithm: str) -> _Hashing:
        """The running hash of an upload; recomputed from the data file when it is not in
        memory (another process, a restart, a failed chunk) or hashes another algorithm."""
        with self._hashing_lock:
            state = self._hashing.get(upload.uuid)
        if state is None or state.size != upload.size or state.algorithm != algorithm:
            state = _Hashing(algorithm)
            with open(data, "rb") as f:
                while chunk := f.read(1 << 20):
                    state.hasher.update(chunk)
                    state.size += len(chunk)
        return state

    def open_upload(self, name: str, upload_id: str) -> UploadWriter:
        """A writer appending to an upload session. The caller must not run two writers on
        one session at once (the HTTP layer serialises them)."""
        upload = self.get_upload(name, upload_id)
        return UploadWriter(self, upload)

    def cancel_upload(self, name: str, upload_id: str) -> None:
        self.get_upload(name, upload_id)
        self._drop_upload(upload_id)

    def _drop_upload(self, upload_id: str) -> None:
        with self._hashing_lock:
            self._hashing.pop(upload_id, None)
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)

    def commit_upload(self, name: str, upload_id: str, digest: str) -> int:
        """Finish an upload: verify its content against ``digest``, move it into the blob
        store and link it into the repository. A mismatch cancels the session (nothing is
        stored) and raises DIGEST_INVALID. Returns the blob's size."""
        upload = self.get_upload(name, upload_id)
        try:
            alg, _ = parse_digest(digest)
        except RegistryError:
            self._drop_upload(upload.uuid)
            raise
        directory = self._upload_dir(upload_id)
        data = directory / "data"
        state = self._hash_state(upload, data, alg)
        actual = f"{alg}:{state.hasher.hexdigest()}"
        if actual != digest:
            self._drop_upload(upload.uuid)
            raise RegistryError("DIGEST_INVALID",
                                f"provided digest {digest} did not match uploaded content "
                                f"{actual}", {"digest": digest})
        with self._lock:
            path = self.blob_path(digest)
            if path.exists():
                os.utime(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(data, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(data, path)
                _fsync_dir(path.parent)
            link = self._layer_link(name, digest)
            if not link.exists():
                self._write(link, b"")
        self._drop_upload(upload.uuid)
        return state.size

    def purge_uploads(self, older_than: float) -> int:
        """Remove upload sessions started more than ``older_than`` seconds ago."""
        cutoff = time.time() - older_than
        removed = 0
        for directory in (self.root / "uploads").iterdir():
            try:
                started = json.loads((directory / "info.json").read_bytes()).get("started", 0)
            except (OSError, ValueError):
                started = directory.stat().st_mtime
            if started < cutoff:
                self._drop_upload(directory.name)
                removed += 1
        return removed

    # -- manifests ---------------------------------------------------------------------------
    def resolve(self, name: str, reference: str) -> str:
        """The digest a tag or digest reference names in the repository."""
        self._require_repository(name)
        if is_digest(reference):
            parse_digest(reference)
            if self._revision(name, reference).exists():
                return reference
        else:
            try:
                return self._tag(name, reference).read_text().strip()
            except FileNotFoundError:
                pass
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {reference}",
                            {"name": name, "reference": reference})

    def get_manifest(self, name: str, reference: str) -> Manifest:
        digest = self.resolve(name, reference)
        try:
            media = self._revision(name, digest).read_text().strip()
            body = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {reference}",
                                {"name": name, "reference": reference}) from None
        return Manifest(digest, media, body)

    def put_manifest(self, name: str, reference: str, body: bytes, content_type: str | None,
                     tags: tuple[str, ...] = ()) -> Manifest:
        """Store a manifest exactly as pushed, tagged with ``reference`` (when it is a tag)
        and ``tags``. Every blob and child manifest it names must already be in the
        repository (MANIFEST_BLOB_UNKNOWN otherwise); a ``subject`` need not be."""
        validate_name(name)
        if len(body) > MAX_MANIFEST_SIZE:
            raise RegistryError("MANIFEST_INVALID", "manifest too large", status=413)
        if is_digest(reference):
            alg, _ = parse_digest(reference)
            digest = digest_of(body, alg)
            if digest != reference:
                raise RegistryError("DIGEST_INVALID",
                                    f"manifest digest {digest} does not match {reference}",
                                    {"digest": reference})
        else:
            validate_tag(reference)
            digest = digest_of(body)
            tags = (reference, *tags)
        for tag in tags:
            validate_tag(tag)
        media, doc = _decode_manifest(body, content_type)
        subject = self._validate_references(name, media, doc)
        with self._lock:
            self._check_present(name, media, doc)
            self._store_blob(body, digest)
            self._write(self._revision(name, digest), media.encode())
            if subject:
                self._write(self._referrers(name, subject) / digest.replace(":", "-"),
                            json.dumps(self._referrer_descriptor(media, doc, digest,
                                                                 len(body))).encode())
            for tag in dict.fromkeys(tags):
                self._write(self._tag(name, tag), digest.encode())
        return Manifest(digest, media, body)

    @staticmethod
    def _validate_references(name: str, media: str, doc: dict[str, Any]) -> str | None:
        if media in IMAGE_MANIFESTS:
            _descriptor(doc.get("config"), "config")
            layers = doc.get("layers", [])
            if not isinstance(layers, list):
                raise RegistryError("MANIFEST_INVALID", "layers must be a list")
            for i, layer in enumerate(layers):
                _descriptor(layer, f"layers[{i}]")
        else:
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise RegistryError("MANIFEST_INVALID", "manifests must be a list")
            for i, child in enumerate(children):
                _descriptor(child, f"manifests[{i}]")
        if doc.get("subject") is None:
            return None
        digest, _, _ = _descriptor(doc["subject"], "subject")
        return digest

    def _check_present(self, name: str, media: str, doc: dict[str, Any]) -> None:
        missing: list[RegistryError] = []
        if media in IMAGE_MANIFESTS:
            for digest in referenced_blobs(media, doc):
                if not self.has_blob(name, digest):
                    missing.append(RegistryError(
                        "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {digest}",
                        {"digest": digest}))
        else:
            for child in doc["manifests"]:
                if not self._revision(name, child["digest"]).exists():
                    missing.append(RegistryError(
                        "MANIFEST_BLOB_UNKNOWN", f"manifest unknown to registry: "
                        f"{child['digest']}", {"digest": child["digest"]}))
        if missing:
            first, *rest = missing
            first.more = rest
            raise first

    @staticmethod
    def _referrer_descriptor(media: str, doc: dict[str, Any], digest: str,
                             size: int) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": media, "size": size, "digest": digest}
        artifact = doc.get("artifactType")
        if not artifact and media in IMAGE_MANIFESTS:
            artifact = (doc.get("config") or {}).get("mediaType")
        if artifact:
            desc["artifactType"] = artifact
        if doc.get("annotations"):
            desc["annotations"] = doc["annotations"]
        return desc

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest with every tag that points to it."""
        digest = self.resolve(name, reference)
        with self._lock:
            if not is_digest(reference):
                self._tag(name, reference).unlink(missing_ok=True)
                return
            for tag, tagged in self._tag_items(name):
                if tagged == digest:
                    self._tag(name, tag).unlink(missing_ok=True)
            subject = self._subject_of(digest)
            if subject:
                (self._referrers(name, subject) / digest.replace(":", "-")).unlink(
                    missing_ok=True)
            self._revision(name, digest).unlink(missing_ok=True)

    def _subject_of(self, digest: str) -> str | None:
        try:
            doc = json.loads(self.blob_path(digest).read_bytes())
            subject = doc.get("subject") or {}
            return subject.get("digest") if isinstance(subject, dict) else None
        except (OSError, ValueError, AttributeError):
            return None

    def _tag_items(self, name: str) -> Iterator[tuple[str, str]]:
        tags = self._repo(name) / "_manifests" / "tags"
        try:
            entries = list(os.scandir(tags))
        except FileNotFoundError:
            return
        for e in entries:
            try:
                yield e.name, Path(e.path).read_text().strip()
            except FileNotFoundError:
                continue

    def tags(self, name: str) -> list[str]:
        """The repository's tags in ASCII order (NAME_UNKNOWN for no repository)."""
        self._require_repository(name)
        return sorted(tag for tag, _ in self._tag_items(name))

    def referrers(self, name: str, subject: str,
                  artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``."""
        validate_name(name)
        directory = self._referrers(name, subject)
        found = []
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        for e in entries:
            try:
                desc = json.loads(Path(e.path).read_bytes())
            except (OSError, ValueError):
                continue
            if not self._revision(name, desc["digest"]).exists():
                continue
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                found.append(desc)
        return found

    # -- garbage collection ------------------------------------------------------------------
    def _repositories(self) -> list[str]:
        return self.catalog()

    def _revisions(self, name: str) -> Iterator[tuple[str, str]]:
        base = self._repo(name) / "_manifests" / "revisions"
        for alg in ALGORITHMS:
            try:
                entries = list(os.scandir(base / alg))
            except FileNotFoundError:
                continue
            for e in entries:
                try:
                    yield f"{alg}:{e.name}", Path(e.path).read_text().strip()
                except FileNotFoundError:
                    continue

    def _blobs(self) -> Iterator[tuple[str, Path]]:
        for alg in ALGORITHMS:
            base = self.root / "blobs" / alg
            if not base.is_dir():
                continue
            for prefix in os.scandir(base):
                for e in os.scandir(prefix.path):
                    yield f"{alg}:{e.name}", Path(e.path)

    def garbage_collect(self, *, grace_seconds: float = 3600.0, dry_run: bool = False,
                        upload_max_age: float = 24 * 3600.0) -> GCResult:
        """Mark every blob a manifest of any repository uses (the manifest itself, its config
        and layers), then delete the others older than ``grace_seconds`` (younger ones may
        belong to a push still in flight) and the repository links to them. Upload sessions
        older than ``upload_max_age`` go too."""
        result = GCResult()
        with self._lock:
            marked: set[str] = set()
            repositories = self._repositories()
            for name in repositories:
                for digest, media in self._revisions(name):
                    marked.add(digest)
                    try:
                        doc = json.loads(self.blob_path(digest).read_bytes())
                    except (OSError, ValueError):
                        continue
                    marked.update(referenced_blobs(media, doc))
            cutoff = time.time() - grace_seconds
            for digest, path in list(self._blobs()):
                if digest in marked:
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if st.st_mtime > cutoff:
                    continue
                result.blobs_deleted.append(digest)
                result.bytes_freed += st.st_size
                if not dry_run:
                    path.unlink(missing_ok=True)
            if not dry_run:
                swept = set(result.blobs_deleted)
                for name in repositories:
                    for digest in swept:
                        self._layer_link(name, digest).unlink(missing_ok=True)
        if not dry_run:
            result.uploads_deleted = self.purge_uploads(upload_max_age)
        log.info("registry garbage collection", extra={
            "blobs": len(result.blobs_deleted), "bytes": result.bytes_freed,
            "dry_run": dry_run})
        return result


class UploadWriter:
    """Appends chunks to an upload session and hashes them as they land. ``abort()`` puts
    the session back as it was before this writer started."""

    def __init__(self, storage: Storage, upload: Upload):
        self.storage = storage
        self.upload = upload
        self.start = upload.size
        directory = storage._upload_dir(upload.uuid)
        self._data = directory / "data"
        self._state = storage._hash_state(upload, self._data, upload.algorithm)
        self._file = open(self._data, "r+b")
        self._file.seek(self.start)

    @property
    def size(self) -> int:
        return self._state.size

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._file.write(chunk)
        self._state.hasher.update(chunk)
        self._state.size += len(chunk)

    def finish(self) -> Upload:
        self._file.flush()
        self._file.close()
        with self.storage._hashing_lock:
            self.storage._hashing[self.upload.uuid] = self._state
        return Upload(self.upload.uuid, self.upload.name, self._state.size,
                      self.upload.algorithm, self.upload.started)

    def abort(self) -> None:
        try:
            self._file.truncate(self.start)
        finally:
            self._file.close()
            with self.storage._hashing_lock:
                self.storage._hashing.pop(self.upload.uuid, None)
