"""Pushing an image from the node's store to a registry (``sampan image push``), over the OCI
distribution API: ``HEAD`` each blob and skip the ones the registry has, upload the others
(``POST`` a session, then one ``PUT`` or ``PATCH`` chunks and a closing ``PUT``), ``PUT`` the
manifest last. Authentication is the pull client's (basic, or docker's bearer-token flow).

The store keeps layers unpacked, not their blobs, so a layer is exported again from its
directory as a canonical tar (paths sorted, owners and mtimes as on disk, overlay whiteouts
turned back into ``.wh.`` entries). For layers that were written that way (every ``sampan image
build`` layer) the tar is byte-identical, so the pushed image keeps its diffIDs and image id.
Where the original tar was laid out differently the exported layer has a new diffID; the
config is rewritten to match and the pushed image gets a new id (reported as such).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import os
import ssl
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import aiohttp
import aiohttp.payload
import orjson

from sampan.node.images import oci
from sampan.node.images.build import tar_info
from sampan.node.images.layer import WHITEOUT_OPAQUE, WHITEOUT_PREFIX, remove_tree
from sampan.node.images.reference import parse
from sampan.node.images.registry import (
    AuthError, Credentials, RegistryClient, RegistryError, error_detail, parse_challenge)

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 0                       # 0: monolithic uploads (one PUT per blob)
_READ = 1 << 20
_OVERLAY_XATTR = "trusted.overlay."
_XATTR_PREFIX = "SCHILY.xattr."
Progress = Callable[[str], None]


# -- exporting layers ----------------------------------------------------------------------------
class _HashingWriter:
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: BinaryIO | None):
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.count += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    headers = {}
    for name in sorted(names):
        if name.startswith(_OVERLAY_XATTR):
            continue
        with contextlib.suppress(OSError):
            value = os.getxattr(path, name, follow_symlinks=False)
            headers[_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return headers


def _walk(root: Path) -> list[str]:
    rels = []
    for dirpath, dirs, files in os.walk(root):
        base = os.path.relpath(dirpath, root)
        prefix = "" if base == "." else base + "/"
        rels.extend(prefix + d for d in dirs)
        rels.extend(prefix + f for f in files)
    return sorted(rels)


def _tar_names(root: Path) -> list[tuple[str, str]]:
    """(name in the tar, path in ``root``) sorted by tar name: overlay whiteouts (0/0 char
    devices) become ``.wh.<name>``, opaque directories get a ``.wh..wh..opq`` entry."""
    names = []
    for rel in _walk(root):
        st = os.lstat(root / rel)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            head, _, base = rel.rpartition("/")
            names.append(((head + "/" if head else "") + WHITEOUT_PREFIX + base, rel))
        else:
            names.append((rel, rel))
            if stat.S_ISDIR(st.st_mode) and _is_opaque(str(root / rel)):
                names.append((f"{rel}/{WHITEOUT_OPAQUE}", rel))
    return sorted(names)


def write_layer_tar(root: Path, out: BinaryIO) -> None:
    """Write the unpacked layer ``root`` to ``out`` as an OCI layer tar (blocking)."""
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, rel in _tar_names(root):
            path = str(root / rel)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            owner = {"mtime": int(st.st_mtime), "uid": st.st_uid, "gid": st.st_gid}
            if name != rel:                                 # a whiteout or opaque marker
                tf.addfile(tar_info(name, tarfile.REGTYPE, mode, **owner))
                continue
            data: BinaryIO | None = None
            if stat.S_ISDIR(st.st_mode):
                info = tar_info(rel, tarfile.DIRTYPE, mode, **owner)
            elif stat.S_ISLNK(st.st_mode):
                info = tar_info(rel, tarfile.SYMTYPE, mode, link=os.readlink(path), **owner)
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                info = tar_info(rel, tarfile.LNKTYPE, mode,
                                link=seen[(st.st_dev, st.st_ino)], **owner)
            elif stat.S_ISREG(st.st_mode):
                seen.setdefault((st.st_dev, st.st_ino), rel)
                info = tar_info(rel, tarfile.REGTYPE, mode, size=st.st_size, **owner)
                data = open(path, "rb")  # noqa: SIM115 - closed below
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info = tar_info(rel, kind, mode, **owner)
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info = tar_info(rel, tarfile.FIFOTYPE, mode, **owner)
            else:
                continue                                    # sockets
            info.pax_headers = _xattrs(path)
            try:
                tf.addfile(info, data)
            finally:
                if data is not None:
                    data.close()


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OVERLAY_XATTR + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


@dataclass(frozen=True)
class ExportedLayer:
    path: Path            # the gzip blob
    diff_id: str
    digest: str
    size: int             # of the blob


def export_layer(root: Path, dest: Path) -> ExportedLayer:
    """Tar and gzip the unpacked layer ``root`` into ``dest`` (blocking)."""
    with open(dest, "wb") as f:
        blob = _HashingWriter(f)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob,  # type: ignore[arg-type]
                           compresslevel=6, mtime=0) as gz:
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            write_layer_tar(root, plain)  # type: ignore[arg-type]
    return ExportedLayer(dest, plain.digest(), blob.digest(), blob.count)


# -- the registry client -------------------------------------------------------------------------
BodyFactory = Callable[[], Any]


class PushClient(RegistryClient):
    """The pull client, with the write half of the API; one repository's push scope."""

    async def _send(self, method: str, url: str, scope: str, *,
                    body: BodyFactory | None = None,
                    headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        assert self._session is not None, "use PushClient in 'async with'"
        for attempt in range(2):
            sent = dict(headers or {})
            if scope in self._authorization:
                sent["Authorization"] = self._authorization[scope]
            try:
                resp = await self._session.request(
                    method, url, headers=sent, data=body() if body is not None else None,
                    allow_redirects=method in ("GET", "HEAD"))
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                detail = str(e) or type(e).__name__
                raise RegistryError(f'failed to do request: {method.title()} "{url}": '
                                    f"{detail}") from e
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            if attempt:
                _, params = parse_challenge(challenge)
                reason = params.get("error") or "authorization failed"
                raise AuthError(f"push access denied: {reason} for {url}")
            await self._authorize(challenge, scope)
        raise AssertionError("unreachable")

    @staticmethod
    async def _failure(resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        detail = await error_detail(resp)
        msg = (f"{what}: unexpected status from {resp.method} request to {resp.url}: "
               f"{resp.status} {resp.reason}" + (f": {detail}" if detail else ""))
        return AuthError(msg) if resp.status == 403 else RegistryError(msg)

    def _url(self, location: str) -> str:
        return urljoin(self.base + "/", location)

    async def blob_exists(self, repo: str, digest: str) -> bool:
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        resp = await self._send("HEAD", url, _push_scope(repo))
        resp.release()
        if resp.status in (200, 404):
            return resp.status == 200
        raise await self._failure(resp, f"checking blob {digest}")

    async def upload_blob(self, repo: str, path: Path, digest: str, size: int, *,
                          chunk_size: int = DEFAULT_CHUNK) -> None:
        scope = _push_scope(repo)
        resp = await self._send("POST", f"{self.base}/v2/{repo}/blobs/uploads/", scope)
        if resp.status != 202 or "Location" not in resp.headers:
            raise await self._failure(resp, f"starting upload of {digest}")
        location = self._url(resp.headers["Location"])
        resp.release()
        if chunk_size > 0:
            location = await self._patch_chunks(location, scope, path, size, chunk_size, digest)
            body: BodyFactory | None = None
            length = 0
        else:
            def body():  # a fresh file each attempt: a 401 retry re-sends the whole blob
                return _FilePayload(path)
            length = size
        sep = "&" if "?" in location else "?"
        resp = await self._send("PUT", f"{location}{sep}digest={digest}", scope, body=body,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(length)})
        if resp.status != 201:
            raise await self._failure(resp, f"uploading {digest}")
        resp.release()

    async def _patch_chunks(self, location: str, scope: str, path: Path, size: int,
                            chunk_size: int, digest: str) -> str:
        offset = 0
        loop = asyncio.get_running_loop()
        with open(path, "rb") as f:
            while offset < size:
                chunk = await loop.run_in_executor(None, f.read, chunk_size)
                end = offset + len(chunk) - 1
                resp = await self._send("PATCH", location, scope, body=lambda c=chunk: c,
                                        headers={"Content-Type": "application/octet-stream",
                                                 "Content-Range": f"{offset}-{end}",
                                                 "Content-Length": str(len(chunk))})
                if resp.status != 202:
                    raise await self._failure(resp, f"uploading {digest} at {offset}")
                location = self._url(resp.headers.get("Location", location))
                resp.release()
                offset += len(chunk)
        return location

    async def put_manifest(self, repo: str, reference: str, body: bytes,
                           media_type: str = oci.OCI_MANIFEST) -> str:
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        resp = await self._send("PUT", url, _push_scope(repo), body=lambda: body,
                                headers={"Content-Type": media_type})
        if resp.status != 201:
            raise await self._failure(resp, f"putting manifest {reference}")
        resp.release()
        digest = oci.digest_of(body)
        got = resp.headers.get("Docker-Content-Digest", digest)
        if got != digest:
            raise RegistryError(f"manifest {reference}: registry answered digest {got}, "
                                f"expected {digest}")
        return digest


class _FilePayload(aiohttp.payload.BufferedReaderPayload):
    def __init__(self, path: Path):
        super().__init__(open(path, "rb"))  # noqa: SIM115 - the payload closes it


def _push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


# -- pushing -------------------------------------------------------------------------------------
@dataclass
class PushResult:
    reference: str
    digest: str                       # of the manifest pushed
    image_id: str                     # of the image pushed (its config digest)
    size: int                         # bytes of config and layer blobs
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rewritten: bool = False           # layers exported with new diffIDs: a new image id


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int
    path: Path


async def push_image(store, local_ref: str, dest_ref: str, *,
                     credentials: Credentials | None = None,
                     insecure: frozenset[str] | set[str] = frozenset(),
                     chunk_size: int = DEFAULT_CHUNK,
                     progress: Progress | None = None,
                     ssl_context: ssl.SSLContext | None = None) -> PushResult:
    """Push the image ``local_ref`` names in ``store`` (an ImageStore) to ``dest_ref``."""
    say = progress or (lambda _msg: None)
    image = store.resolve_prefix(local_ref)
    if image is None:
        raise RegistryError(f"no such image {local_ref!r} in the node's store")
    dest = parse(dest_ref)
    if dest.digest:
        raise RegistryError(f"{dest_ref}: push to a tag, not a digest")
    config_bytes = store.read_blob(image.id)
    _, diff_ids = oci.parse_config(config_bytes)
    workdir = store.new_ingest_path()
    workdir.mkdir(parents=True)
    loop = asyncio.get_running_loop()
    try:
        layers = []
        for i, diff_id in enumerate(diff_ids):
            say(f"exporting layer {i + 1}/{len(diff_ids)} {diff_id[7:19]}")
            layers.append(await loop.run_in_executor(None, export_layer,
                                                     store.layer_path(diff_id),
                                                     workdir / f"layer-{i}"))
        exported = [layer.diff_id for layer in layers]
        rewritten = exported != diff_ids
        if rewritten:
            config_bytes = _with_diff_ids(config_bytes, exported)
            log.warning("layers exported with new diffIDs: the pushed image gets a new id",
                        extra={"image": image.id, "pushed": oci.digest_of(config_bytes)})
        (workdir / "config").write_bytes(config_bytes)
        config = _Blob(oci.digest_of(config_bytes), len(config_bytes), workdir / "config")
        blobs = [_Blob(layer.digest, layer.size, layer.path) for layer in layers] + [config]
        manifest = orjson.dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": config.digest,
                       "size": config.size},
            "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": layer.digest,
                        "size": layer.size} for layer in layers],
        }, option=orjson.OPT_SORT_KEYS)
        result = PushResult(str(dest), "", config.digest, sum(b.size for b in blobs),
                            rewritten=rewritten)
        async with PushClient(dest.domain, insecure=insecure, credentials=credentials,
                              ssl_context=ssl_context) as client:
            for blob in blobs:
                if await client.blob_exists(dest.path, blob.digest):
                    say(f"{blob.digest[7:19]}: already exists")
                    result.skipped.append(blob.digest)
                    continue
                say(f"{blob.digest[7:19]}: pushing {blob.size} bytes")
                await client.upload_blob(dest.path, blob.path, blob.digest, blob.size,
                                         chunk_size=chunk_size)
                result.uploaded.append(blob.digest)
            result.digest = await client.put_manifest(dest.path, dest.tag, manifest)
        say(f"{dest.tag}: digest: {result.digest} size: {len(manifest)}")
        log.info("image pushed", extra={"image": image.id, "reference": str(dest),
                                        "digest": result.digest})
        return result
    finally:
        await loop.run_in_executor(None, remove_tree, workdir)


def _with_diff_ids(config_bytes: bytes, diff_ids: list[str]) -> bytes:
    doc = oci.load_json(config_bytes, "image config")
    doc["rootfs"] = {**(doc.get("rootfs") or {}), "type": "layers", "diff_ids": diff_ids}
    return orjson.dumps(doc)
