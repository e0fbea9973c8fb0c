"""The node's content-addressed image store.

    ROOT/index.json                 repo tags and repo digests → image id, per image its layers
    ROOT/blobs/sha256/<hex>         manifests and image configs, verified
    ROOT/layers/sha256/<hex>/       unpacked layers keyed by diffID (overlay lowerdirs)
    ROOT/ingest/                    downloads in progress

Compressed layers are not kept once unpacked: a pull that finds a layer's diffID already
unpacked skips the download. The index is a JSON file written atomically under an flock, and
re-read when another process (``sampan image import`` while the agent runs) changed it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import logging
import os
import stat
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from sampan.node import cri
from sampan.node.images import oci
from sampan.node.images.layer import LayerError, remove_tree, unpack_layer
from sampan.node.images.reference import Reference, ReferenceError, is_image_id, parse
from sampan.node.images.registry import (
    AuthError, RegistryClient, RegistryError, credentials_from)

log = logging.getLogger(__name__)

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_STALE_TMP = 3600.0


class ImageStore:
    """cri.ImageService over a directory; see the module docstring for the layout."""

    def __init__(self, root: Path, *, insecure_registries: Iterable[str] = (),
                 platform: oci.Platform | None = None, max_concurrent_downloads: int = 3,
                 ca_files: Iterable[Path] = ()):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.ingest_dir = self.root / "ingest"
        for d in (self.blobs_dir, self.layers_dir / "sha256", self.ingest_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.insecure_registries = frozenset(insecure_registries)
        # Registries are verified against the system's CAs plus these (the cluster CA, which
        # signs the control plane's registry).
        self.ca_files = [Path(f) for f in ca_files]
        self._ssl: ssl.SSLContext | None = None
        self.platform = platform or oci.host_platform()
        self._index_path = self.root / "index.json"
        self._lock_path = self.root / ".lock"
        self._thread_lock = threading.RLock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, dict[str, Any]] = {}
        self._layer_sizes: dict[str, int] = {}
        self._by_tag: dict[str, str] = {}
        self._by_digest: dict[str, str] = {}
        self._images: dict[str, cri.Image] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._pulls: dict[str, asyncio.Task] = {}
        self._layer_pulls: dict[str, asyncio.Task] = {}
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self._refresh()
        self._clean_stale()

    # -- reading -------------------------------------------------------------------------------
    def get(self, ref: str) -> cri.Image | None:
        with self._thread_lock:
            self._refresh()
            image_id = self._resolve(ref)
            return self._image(image_id) if image_id else None

    def list(self) -> list[cri.Image]:
        with self._thread_lock:
            self._refresh()
            return sorted((self._image(i) for i in self._records),
                          key=lambda im: (im.repo_tags[:1] or ("~",), im.id))

    def layer_path(self, diff_id: str) -> Path:
        return self.layers_dir / "sha256" / oci.check_digest(diff_id).removeprefix("sha256:")

    def created_at(self, image_id: str) -> float:
        """When the image landed in this store (the GC's "first detected")."""
        with self._thread_lock:
            self._refresh()
            rec = self._records.get(image_id)
            return rec["created"] if rec else 0.0

    def resolve_prefix(self, ref: str) -> cri.Image | None:
        """``get`` that also takes a unique image id prefix (as crictl does)."""
        image = self.get(ref)
        if image is not None:
            return image
        prefix = ref.removeprefix("sha256:")
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        with self._thread_lock:
            matches = [i for i in self._records if i.removeprefix("sha256:").startswith(prefix)]
        return self.get(matches[0]) if len(matches) == 1 else None

    def _resolve(self, ref: str) -> str | None:
        image_id = is_image_id(ref)
        if image_id:
            return image_id if image_id in self._records else None
        try:
            r = parse(ref)
        except ReferenceError:
            return None
        if r.digest:
            return self._by_digest.get(r.digested)
        return self._by_tag.get(r.tagged)

    def _image(self, image_id: str) -> cri.Image:
        image = self._images.get(image_id)
        if image is None:
            rec = self._records[image_id]
            image = cri.Image(
                id=image_id, repo_tags=tuple(rec["repoTags"]),
                repo_digests=tuple(rec["repoDigests"]), size=rec["size"],
                config=self._config(image_id),
                layers=tuple(self.layer_path(d) for d in rec["layers"]))
            self._images[image_id] = image
        return image

    def _config(self, image_id: str) -> dict[str, Any]:
        config = self._configs.get(image_id)
        if config is None:
            try:
                config, _ = oci.parse_config(self.read_blob(image_id))
            except (OSError, oci.FormatError) as e:
                log.warning("image config unreadable", extra={"image": image_id, "error": str(e)})
                config = {}
            self._configs[image_id] = config
        return config

    def read_blob(self, digest: str) -> bytes:
        return (self.blobs_dir / oci.check_digest(digest).removeprefix("sha256:")).read_bytes()

    # -- the index -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        try:
            st = os.stat(self._index_path)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp and (stamp is not None or not self._records):
            return
        doc = orjson.loads(self._index_path.read_bytes()) if stamp else {}
        self._records = doc.get("images", {})
        self._layer_sizes = doc.get("layers", {})
        self._stamp = stamp
        self._reindex()

    def _reindex(self) -> None:
        self._by_tag = {t: i for i, rec in self._records.items() for t in rec["repoTags"]}
        self._by_digest = {d: i for i, rec in self._records.items() for d in rec["repoDigests"]}
        self._images.clear()
        self._configs = {i: c for i, c in self._configs.items() if i in self._records}

    def _save(self) -> None:
        data = orjson.dumps({"version": 1, "images": self._records, "layers": self._layer_sizes},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        _atomic_write(self._index_path, data)
        st = os.stat(self._index_path)
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._reindex()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Read-modify-write of the index, exclusive across threads and processes."""
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._refresh()
                try:
                    yield
                except BaseException:
                    self._stamp = None           # drop half-made changes: re-read the file
                    self._records.clear()
                    raise
                self._save()
            finally:
                os.close(fd)

    # -- writing ---------------------------------------------------------------------------------
    def write_blob(self, data: bytes, digest: str | None = None) -> str:
        got = oci.digest_of(data)
        if digest is not None and digest != got:
            raise oci.FormatError(f"digest mismatch: expected {digest}, got {got}")
        path = self.blobs_dir / got.removeprefix("sha256:")
        if not path.exists():
            _atomic_write(path, data)
        return got

    def commit(self, config_bytes: bytes, layers: Sequence[tuple[str, int]], *,
               tags: Iterable[str] = (), repo_digests: Iterable[str] = (),
               manifest_bytes: bytes | None = None) -> cri.Image:
        """Record an image whose layers are unpacked: (diffID, size) lowest first. Tags and
        repo digests move here from any image that had them (that one stays, untagged)."""
        _, diff_ids = oci.parse_config(config_bytes, len(layers))
        if [d for d, _ in layers] != diff_ids:
            raise oci.FormatError("layers do not match the image config's rootfs.diff_ids")
        for diff_id, _ in layers:
            if not self.layer_path(diff_id).is_dir():
                raise LayerError(f"layer {diff_id} is not unpacked")
        image_id = self.write_blob(config_bytes)
        manifest = self.write_blob(manifest_bytes) if manifest_bytes is not None else ""
        tags, repo_digests = builtins.list(tags), builtins.list(repo_digests)
        with self._locked():
            for diff_id, size in layers:
                self._layer_sizes[diff_id] = size
            rec = self._records.setdefault(image_id, {
                "repoTags": [], "repoDigests": [], "layers": diff_ids,
                "size": sum(size for _, size in layers), "created": time.time(),
                "manifest": manifest})
            for key, names, index in (("repoTags", tags, self._by_tag),
                                      ("repoDigests", repo_digests, self._by_digest)):
                for name in names:
                    previous = index.get(name)
                    if previous and previous != image_id:
                        self._records[previous][key].remove(name)
                    if name not in rec[key]:
                        rec[key].append(name)
                rec[key].sort()
        log.info("image stored", extra={"image": image_id, "tags": tags})
        return self.get(image_id)  # type: ignore[return-value]

    def tag(self, ref: str, new: str) -> cri.Image:
        image = self.get(ref)
        if image is None:
            raise KeyError(ref)
        with self._locked():
            for rec_id, rec in self._records.items():
                if new in rec["repoTags"] and rec_id != image.id:
                    rec["repoTags"].remove(new)
            tags = self._records[image.id]["repoTags"]
            if new not in tags:
                tags.append(new)
                tags.sort()
        return self.get(image.id)  # type: ignore[return-value]

    def remove(self, ref: str) -> None:
        """Remove the image ``ref`` names, with all its tags (CRI RemoveImage). Layers stay until
        ``prune_layers`` (a running container may still have them mounted). Absent: no-op."""
        with self._locked():
            image_id = self._resolve(ref)
            if image_id is None:
                return
            rec = self._records.pop(image_id)
            still = {r.get("manifest") for r in self._records.values()} | set(self._records)
            for digest in (image_id, rec.get("manifest")):
                if digest and digest not in still:
                    (self.blobs_dir / digest.removeprefix("sha256:")).unlink(missing_ok=True)
        log.info("image removed", extra={"image": image_id, "tags": rec["repoTags"]})

    def prune_layers(self, *, grace: float = 600.0) -> int:
        """Delete unpacked layers no image references and no mounted overlay uses; layers that
        appeared less than ``grace`` seconds ago are kept (a pull or import may be about to
        record them). Returns the bytes freed. Blocking."""
        with self._thread_lock:
            self._refresh()
            referenced = {d for rec in self._records.values() for d in rec["layers"]}
        mounted = _overlay_options()
        freed = 0
        now = time.time()
        root = self.layers_dir / "sha256"
        for entry in os.scandir(root):
            diff_id = "sha256:" + entry.name
            if diff_id in referenced or entry.name in mounted:
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_ctime < grace:
                    continue
            except FileNotFoundError:
                continue
            freed += self._layer_sizes.get(diff_id, 0)
            remove_tree(Path(entry.path))
            log.info("layer removed", extra={"layer": diff_id})
        if any(not (root / d.removeprefix("sha256:")).exists() for d in self._layer_sizes):
            with self._locked():
                for diff_id in builtins.list(self._layer_sizes):
                    if not (root / diff_id.removeprefix("sha256:")).exists():
                        del self._layer_sizes[diff_id]
        return freed

    def _clean_stale(self) -> None:
        now = time.time()
        for d in (self.ingest_dir, self.layers_dir):
            for entry in os.scandir(d):
                if entry.name.startswith((".tmp-", "dl-")) or d is self.ingest_dir:
                    with contextlib.suppress(FileNotFoundError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TMP:
                            remove_tree(Path(entry.path))

    def new_ingest_path(self) -> Path:
        return self.ingest_dir / f"dl-{uuid.uuid4().hex}"

    # -- pulling ---------------------------------------------------------------------------------
    async def ensure(self, ref: str, policy: str = "",
                     auths: Sequence[dict[str, str]] = ()) -> cri.Image:
        """The kubelet's EnsureImageExists: honour imagePullPolicy (defaulted like the API
        server: Always for ``:latest`` or no tag, else IfNotPresent)."""
        if is_image_id(ref):
            image = self.get(ref)
            if image is not None:
                return image
        try:
            r = parse(ref)
        except ReferenceError as e:
            raise cri.CRIError("InvalidImageName",
                               f'Failed to apply default image tag "{ref}": couldn\'t parse '
                               f'image name "{ref}": {e}') from None
        if not policy:
            policy = "Always" if r.tag == "latest" and not r.digest else "IfNotPresent"
        if policy not in PULL_POLICIES:
            raise ValueError(f"unknown imagePullPolicy {policy!r}")
        present = self.get(str(r))
        if policy == "Never":
            if present is None:
                raise cri.ImageNotPresentError(
                    f'Container image "{ref}" is not present with pull policy of Never')
            return present
        if policy == "IfNotPresent" and present is not None:
            return present
        return await self.pull(ref, auths)

    async def pull(self, ref: str, auths: Sequence[dict[str, str]] = ()) -> cri.Image:
        """Pull from the registry; concurrent pulls of one reference share one download."""
        try:
            r = parse(ref)
        except ReferenceError as e:
            raise cri.ImagePullError(f'failed to pull and unpack image "{ref}": {e}') from None
        key = str(r)
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.ensure_future(self._pull(r, builtins.list(auths)))
            self._pulls[key] = task
            task.add_done_callback(lambda _t: self._pulls.pop(key, None))
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = builtins.list(self._pulls.values()) + builtins.list(self._layer_pulls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pull(self, r: Reference, auths: builtins.list[dict[str, str]]) -> cri.Image:
        failed = f'failed to pull and unpack image "{r}"'
        last: Exception | None = None
        try:
            for entry in auths or [None]:
                try:
                    return await self._pull_with(r, credentials_from(entry))
                except _Resolve as e:
                    if not e.auth:
                        raise
                    last = e
                except AuthError as e:
                    last = e
            assert last is not None
            raise last
        except _Resolve as e:
            raise cri.ImagePullError(f'{failed}: failed to resolve reference "{r}": {e}') from None
        except (RegistryError, LayerError, oci.FormatError, OSError) as e:
            raise cri.ImagePullError(f"{failed}: {e}") from None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.ca_files:
            return None
        if self._ssl is None:
            context = ssl.create_default_context()
            for ca in self.ca_files:
                context.load_verify_locations(cafile=str(ca))
            self._ssl = context
        return self._ssl

    async def _pull_with(self, r: Reference, creds) -> cri.Image:
        started = time.monotonic()
        async with RegistryClient(r.domain, insecure=self.insecure_registries,
                                  credentials=creds, ssl_context=self.ssl_context()) as client:
            try:
                body, ctype, top_digest = await client.get_manifest(
                    r.path, r.digest or r.tag, str(r))
            except RegistryError as e:
                raise _Resolve(str(e), auth=isinstance(e, AuthError)) from None
            doc = oci.load_json(body, "manifest")
            if oci.manifest_kind(doc, ctype) == "index":
                chosen = oci.select_platform(doc, self.platform)
                body, ctype, _ = await client.get_manifest(r.path, chosen.digest, str(r))
                doc = oci.load_json(body, "manifest")
                if oci.manifest_kind(doc, ctype) != "manifest":
                    raise oci.FormatError("nested image indexes are not supported")
            config_desc, layer_descs = oci.parse_manifest(doc)
            if self._has_config(config_desc.digest):
                config_bytes = self.read_blob(config_desc.digest)
            else:
                config_bytes = await client.get_blob(r.path, config_desc)
            _, diff_ids = oci.parse_config(config_bytes, len(layer_descs))
            layers = await asyncio.gather(*(
                self._ensure_layer(client, r.path, desc, diff_id)
                for desc, diff_id in zip(layer_descs, diff_ids)))
        image = await asyncio.get_running_loop().run_in_executor(None, lambda: self.commit(
            config_bytes, layers, tags=[r.tagged] if not r.digest else [],
            repo_digests=[f"{r.repository}@{top_digest}"], manifest_bytes=body))
        log.info("image pulled", extra={"image": str(r), "id": image.id,
                                        "seconds": round(time.monotonic() - started, 3)})
        return image

    def _has_config(self, digest: str) -> bool:
        return (self.blobs_dir / digest.removeprefix("sha256:")).is_file()

    async def _ensure_layer(self, client: RegistryClient, repo: str, desc: oci.Descriptor,
                            diff_id: str) -> tuple[str, int]:
        if self.layer_path(diff_id).is_dir():
            return diff_id, await self._layer_size(diff_id)
        task = self._layer_pulls.get(diff_id)
        if task is None:
            task = asyncio.ensure_future(self._fetch_layer(client, repo, desc, diff_id))
            self._layer_pulls[diff_id] = task
            task.add_done_callback(lambda _t: self._layer_pulls.pop(diff_id, None))
        return await asyncio.shield(task)

    async def _fetch_layer(self, client: RegistryClient, repo: str, desc: oci.Descriptor,
                           diff_id: str) -> tuple[str, int]:
        path = self.new_ingest_path()
        loop = asyncio.get_running_loop()
        try:
            async with self._downloads:
                await client.download_blob(repo, desc, path)
            layer = await loop.run_in_executor(
                None, lambda: unpack_layer(path, self.layers_dir, diff_id=diff_id))
            return layer.diff_id, layer.size
        finally:
            path.unlink(missing_ok=True)

    async def _layer_size(self, diff_id: str) -> int:
        with self._thread_lock:
            self._refresh()
            size = self._layer_sizes.get(diff_id)
        if size is None:
            size = await asyncio.get_running_loop().run_in_executor(
                None, tree_size, self.layer_path(diff_id))
        return size

    def layer_size(self, diff_id: str) -> int:
        """Blocking: may walk the layer when its size was never recorded."""
        with self._thread_lock:
            self._refresh()
            size = self._layer_sizes.get(diff_id)
        return tree_size(self.layer_path(diff_id)) if size is None else size

    # -- archives and builds ---------------------------------------------------------------------
    async def import_archive(self, path: Path, tag: str | None = None) -> builtins.list[cri.Image]:
        """Import a docker-archive or oci-archive tarball (see ``archive.py``)."""
        from sampan.node.images.archive import import_archive

        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: import_archive(self, Path(path), tag))


class _Resolve(RegistryError):
    """The reference could not be resolved to a manifest."""

    def __init__(self, message: str, *, auth: bool = False):
        super().__init__(message)
        self.auth = auth


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def _overlay_options() -> str:
    """Mount options of every overlay mount (they name the lowerdirs in use)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return "\n".join(line for line in f if " - overlay " in line)
    except OSError:
        return ""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
