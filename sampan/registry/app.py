"""The registry's HTTP API: the OCI Distribution Spec v1.1 (push, pull, content discovery,
content management, referrers) on aiohttp, over a filesystem ``Storage``.

Repository names contain slashes, so ``/v2/{path}`` is one route and ``_route`` splits the
path the way distribution's router does. Blob bodies stream to disk in ~1 MiB pieces, hashed
as they land; filesystem work runs off the event loop."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from sampan.registry import storage as st
from sampan.registry.auth import (
    CATALOG_ACCESS,
    Access,
    Authenticator,
    Authorizer,
    TokenAuth,
    load_or_create_key,
    repository,
)
from sampan.registry.errors import RegistryError
from sampan.registry.storage import Storage

log = logging.getLogger(__name__)

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_FLUSH = 1 << 20

REQUESTS = Counter("sampan_registry_http_requests_total",
                   "Registry HTTP requests by method, operation and status code.",
                   ["method", "operation", "code"])
BYTES_RECEIVED = Counter("sampan_registry_blob_bytes_received_total",
                         "Blob bytes written by uploads.")
BYTES_SENT = Counter("sampan_registry_blob_bytes_sent_total",
                     "Blob bytes served (full size of each blob GET).")

_PATH = re.compile(
    r"(?P<name>.+?)/(?:"
    r"manifests/(?P<reference>[^/]+)"
    r"|blobs/uploads(?:/(?P<upload>[^/]*))?"
    r"|blobs/(?P<digest>[^/]+)"
    r"|(?P<tags>tags/list)"
    r"|referrers/(?P<subject>[^/]+))")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")

STORAGE_KEY = web.AppKey("registry_storage", Storage)
AUTH_KEY = web.AppKey("registry_auth", object)
OPERATION = web.RequestKey("registry_operation", str)


async def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


def _error_response(error: RegistryError) -> web.Response:
    headers = {**API_VERSION, **error.headers}
    return web.Response(status=error.status, body=orjson.dumps(error.body()),
                        content_type="application/json", headers=headers)


def _range(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


def _next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def _page(items: list[str], query: Any, path: str) -> tuple[list[str], dict[str, str]]:
    """Apply ``n``/``last`` pagination to a sorted list (tags, catalog)."""
    last = query.get("last")
    if last:
        items = [i for i in items if i > last]
    raw = query.get("n")
    if raw is None or raw == "":
        return items, {}
    try:
        n = int(raw)
        if n < 0:
            raise ValueError
    except ValueError:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid n: {raw!r}",
                            {"n": raw}) from None
    if n == 0:
        return [], {}
    page = items[:n]
    headers = {"Link": _next_link(path, n, page[-1])} if len(items) > n else {}
    return page, headers


class _Handlers:
    """The spec's endpoints over one Storage, with optional token auth."""

    def __init__(self, storage: Storage, auth: TokenAuth | None):
        self.storage = storage
        self.auth = auth
        self._upload_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = \
            weakref.WeakValueDictionary()

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("path", "")
        method = request.method
        try:
            if path in ("", "/"):
                request[OPERATION] = "base"
                await self._check(request, [])
                return web.json_response({}, headers=API_VERSION)
            if path == "token" and self.auth is not None:
                request[OPERATION] = "token"
                return await self.auth.token_handler(request)
            if path == "_catalog":
                request[OPERATION] = "catalog"
                self._allow(method, ("GET",))
                await self._check(request, [CATALOG_ACCESS])
                return await self.catalog(request)
            match = _PATH.fullmatch(path)
            if match is None:
                raise RegistryError("UNSUPPORTED", f"no such endpoint: /v2/{path}",
                                    status=404)
            name = st.validate_name(match["name"])
            request[OPERATION], response = await self._route(request, name, match)
            return response
        except RegistryError as e:
            return _error_response(e)

    async def _route(self, request: web.Request, name: str,
                     match: re.Match[str]) -> tuple[str, web.StreamResponse]:
        method = request.method
        if match["reference"] is not None:
            self._allow(method, ("GET", "HEAD", "PUT", "DELETE"))
            await self._check(request, [self._access(name, method)])
            ref = match["reference"]
            if method in ("GET", "HEAD"):
                return "manifest_get", await self.get_manifest(request, name, ref)
            if method == "PUT":
                return "manifest_put", await self.put_manifest(request, name, ref)
            return "manifest_delete", await self.delete_manifest(name, ref)
        if match["tags"] is not None:
            self._allow(method, ("GET",))
            await self._check(request, [repository(name, "pull")])
            return "tags", await self.tags(request, name)
        if match["subject"] is not None:
            self._allow(method, ("GET",))
            await self._check(request, [repository(name, "pull")])
            return "referrers", await self.referrers(request, name, match["subject"])
        if match["digest"] is not None:
            self._allow(method, ("GET", "HEAD", "DELETE"))
            await self._check(request, [self._access(name, method)])
            if method == "DELETE":
                return "blob_delete", await self.delete_blob(name, match["digest"])
            return "blob_get", await self.get_blob(request, name, match["digest"])
        upload = match["upload"] or ""
        if not upload:
            self._allow(method, ("POST",))
            await self._check(request, [repository(name, "pull", "push")])
            return "upload_start", await self.start_upload(request, name)
        self._allow(method, ("GET", "PATCH", "PUT", "DELETE"))
        await self._check(request, [repository(name, "pull", "push")])
        if method == "GET":
            return "upload_status", await self.upload_status(name, upload)
        if method == "PATCH":
            return "upload_patch", await self.patch_upload(request, name, upload)
        if method == "PUT":
            return "upload_put", await self.finish_upload(request, name, upload)
        return "upload_cancel", await self.cancel_upload(name, upload)

    @staticmethod
    def _allow(method: str, methods: tuple[str, ...]) -> None:
        if method not in methods:
            raise RegistryError("UNSUPPORTED", f"method {method} not allowed", status=405,
                                headers={"Allow": ", ".join(methods)})

    @staticmethod
    def _access(name: str, method: str) -> Access:
        if method in ("GET", "HEAD"):
            return repository(name, "pull")
        if method == "DELETE":
            return repository(name, "delete")
        return repository(name, "pull", "push")

    async def _check(self, request: web.Request, required: list[Access]) -> None:
        if self.auth is not None:
            await self.auth.check(request, required)

    # -- manifests ---------------------------------------------------------------------------
    async def get_manifest(self, request: web.Request, name: str,
                           reference: str) -> web.Response:
        manifest: st.Manifest = await _run(self.storage.get_manifest, name, reference)
        accept = {st.media_type(part) for value in request.headers.getall("Accept", [])
                  for part in value.split(",")}
        accept.discard("")
        if (accept and manifest.media_type in (st.OCI_MANIFEST, st.OCI_INDEX)
                and manifest.media_type not in accept and not accept & {"*/*", "application/*"}):
            # distribution's answer to a client that cannot read OCI manifests
            raise RegistryError("MANIFEST_UNKNOWN",
                                f"{manifest.media_type} found, but the Accept header does "
                                "not support it", {"name": name, "reference": reference})
        headers = {**API_VERSION, "Docker-Content-Digest": manifest.digest,
                   "ETag": f'"{manifest.digest}"', "Content-Type": manifest.media_type}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(manifest.body))
            return web.Response(headers=headers)
        return web.Response(body=manifest.body, headers=headers)

    async def put_manifest(self, request: web.Request, name: str,
                           reference: str) -> web.Response:
        body = await _read_limited(request, st.MAX_MANIFEST_SIZE)
        tags = tuple(request.query.getall("tag", [])) if st.is_digest(reference) else ()
        manifest: st.Manifest = await _run(self.storage.put_manifest, name, reference, body,
                                           request.headers.get("Content-Type"), tags)
        headers = {**API_VERSION, "Location": f"/v2/{name}/manifests/{manifest.digest}",
                   "Docker-Content-Digest": manifest.digest}
        subject = _subject(body)
        if subject:
            headers["OCI-Subject"] = subject
        response = web.Response(status=201, headers=headers)
        for tag in dict.fromkeys(tags):
            response.headers.add("OCI-Tag", tag)
        return response

    async def delete_manifest(self, name: str, reference: str) -> web.Response:
        await _run(self.storage.delete_manifest, name, reference)
        return web.Response(status=202, headers=API_VERSION)

    # -- blobs -------------------------------------------------------------------------------
    async def get_blob(self, request: web.Request, name: str,
                       digest: str) -> web.StreamResponse:
        path, size = await _run(self.storage.stat_blob, name, digest)
        headers = {**API_VERSION, "Docker-Content-Digest": digest,
                   "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(size)
            headers["Accept-Ranges"] = "bytes"
            return web.Response(headers=headers)
        BYTES_SENT.inc(size)
        return web.FileResponse(path, headers=headers)

    async def delete_blob(self, name: str, digest: str) -> web.Response:
        await _run(self.storage.delete_blob, name, digest)
        return web.Response(status=202, headers=API_VERSION)

    # -- uploads -----------------------------------------------------------------------------
    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._upload_locks.get(upload_id)
        if lock is None:
            lock = self._upload_locks[upload_id] = asyncio.Lock()
        return lock

    @staticmethod
    def _upload_headers(name: str, upload: st.Upload) -> dict[str, str]:
        return {**API_VERSION, "Location": f"/v2/{name}/blobs/uploads/{upload.uuid}",
                "Range": _range(upload.size), "Docker-Upload-UUID": upload.uuid}

    @staticmethod
    def _blob_created(name: str, digest: str) -> web.Response:
        return web.Response(status=201, headers={
            **API_VERSION, "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest})

    async def start_upload(self, request: web.Request, name: str) -> web.Response:
        query = request.query
        mount, source = query.get("mount"), query.get("from")
        if mount and source:
            st.parse_digest(mount)
            if await self._mountable(request, source, mount):
                await _run(self.storage.link_blob, name, mount)
                return self._blob_created(name, mount)
        digest = query.get("digest")
        algorithm = query.get("digest-algorithm") or (
            digest.partition(":")[0] if digest else "sha256")
        if digest:
            st.parse_digest(digest)
        upload: st.Upload = await _run(self.storage.start_upload, name, algorithm)
        if digest:
            async with self._lock(upload.uuid):
                try:
                    await self._append(request, name, upload.uuid, request.content_length)
                except BaseException:
                    await _run(self.storage.cancel_upload, name, upload.uuid)
                    raise
                await _run(self.storage.commit_upload, name, upload.uuid, digest)
            return self._blob_created(name, digest)
        return web.Response(status=202, headers=self._upload_headers(name, upload))

    async def _mountable(self, request: web.Request, source: str, digest: str) -> bool:
        try:
            st.validate_name(source)
        except RegistryError:
            return False
        if self.auth is not None and not await self.auth.may(request,
                                                             repository(source, "pull")):
            return False
        return await _run(self.storage.has_blob, source, digest)

    async def upload_status(self, name: str, upload_id: str) -> web.Response:
        upload = await _run(self.storage.get_upload, name, upload_id)
        return web.Response(status=204, headers=self._upload_headers(name, upload))

    async def cancel_upload(self, name: str, upload_id: str) -> web.Response:
        async with self._lock(upload_id):
            await _run(self.storage.cancel_upload, name, upload_id)
        return web.Response(status=204, headers=API_VERSION)

    async def patch_upload(self, request: web.Request, name: str,
                           upload_id: str) -> web.Response:
        async with self._lock(upload_id):
            upload = await self._append_checked(request, name, upload_id)
        return web.Response(status=202, headers=self._upload_headers(name, upload))

    async def finish_upload(self, request: web.Request, name: str,
                            upload_id: str) -> web.Response:
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "digest parameter is required")
        async with self._lock(upload_id):
            await self._append_checked(request, name, upload_id)
            await _run(self.storage.commit_upload, name, upload_id, digest)
        return self._blob_created(name, digest)

    async def _append_checked(self, request: web.Request, name: str,
                              upload_id: str) -> st.Upload:
        """Append the request body to the session, honouring a Content-Range: a chunk that
        does not start where the session ends is refused with 416."""
        upload: st.Upload = await _run(self.storage.get_upload, name, upload_id)
        expected = request.content_length
        content_range = request.headers.get("Content-Range")
        if content_range:
            m = _CONTENT_RANGE.fullmatch(content_range.strip())
            if m is None or int(m[2]) < int(m[1]) or int(m[1]) != upload.size:
                raise RegistryError("RANGE_INVALID", f"invalid content range {content_range!r}"
                                    f"; the upload holds {upload.size} bytes", status=416,
                                    headers=self._upload_headers(name, upload))
            length = int(m[2]) - int(m[1]) + 1
            if expected is not None and expected != length:
                raise RegistryError("SIZE_INVALID", f"Content-Length {expected} does not match"
                                    f" Content-Range {content_range}")
            expected = length
        return await self._append(request, name, upload_id, expected)

    async def _append(self, request: web.Request, name: str, upload_id: str,
                      expected: int | None) -> st.Upload:
        writer: st.UploadWriter = await _run(self.storage.open_upload, name, upload_id)
        received = 0
        try:
            buffer = bytearray()
            async for chunk in request.content.iter_any():
                buffer += chunk
                if len(buffer) >= _FLUSH:
                    await _run(writer.write, bytes(buffer))
                    received += len(buffer)
                    buffer.clear()
            if buffer:
                await _run(writer.write, bytes(buffer))
                received += len(buffer)
            if expected is not None and received != expected:
                raise RegistryError("SIZE_INVALID", f"received {received} bytes, expected "
                                    f"{expected}")
        except BaseException:
            await _run(writer.abort)
            raise
        BYTES_RECEIVED.inc(received)
        return await _run(writer.finish)

    # -- discovery ---------------------------------------------------------------------------
    async def tags(self, request: web.Request, name: str) -> web.Response:
        tags = await _run(self.storage.tags, name)
        page, headers = _page(tags, request.query, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": page}, headers={**API_VERSION,
                                                                        **headers})

    async def catalog(self, request: web.Request) -> web.Response:
        names = await _run(self.storage.catalog)
        page, headers = _page(names, request.query, "/v2/_catalog")
        return web.json_response({"repositories": page}, headers={**API_VERSION, **headers})

    async def referrers(self, request: web.Request, name: str, subject: str) -> web.Response:
        st.parse_digest(subject)
        artifact_type = request.query.get("artifactType")
        found = await _run(self.storage.referrers, name, subject, artifact_type)
        headers = {**API_VERSION, "Content-Type": st.OCI_INDEX}
        if artifact_type is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": st.OCI_INDEX, "manifests": found}
        return web.Response(body=orjson.dumps(body), headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body; 413 as soon as it exceeds ``limit``."""
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise RegistryError("MANIFEST_INVALID", "manifest too large", status=413)
    return bytes(body)


def _subject(body: bytes) -> str | None:
    try:
        subject = orjson.loads(body).get("subject")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return subject.get("digest") if isinstance(subject, dict) else None


@web.middleware
async def _metrics_middleware(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                              ) -> web.StreamResponse:
    started = time.monotonic()
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        status = response.status if response is not None else 500
        operation = request.get(OPERATION) or request.match_info.route.name or "other"
        REQUESTS.labels(request.method, operation, str(status)).inc()
        log.debug("registry request", extra={
            "method": request.method, "path": request.path, "status": status,
            "seconds": round(time.monotonic() - started, 4)})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={
        "Content-Type": CONTENT_TYPE_LATEST})


def make_app(storage: Storage, *, authenticator: Authenticator | None = None,
             realm: str | None = None, authorizer: Authorizer | None = None,
             anonymous_pull: bool = False, service: str = "sampan-registry",
             token_ttl: int = 300) -> web.Application:
    """The registry as an aiohttp application. With an ``authenticator`` every ``/v2``
    request needs credentials (Basic or a token from ``/v2/token``), except pulls when
    ``anonymous_pull``; ``realm`` overrides the token URL the challenge names."""
    auth = None
    if authenticator is not None:
        key = load_or_create_key(storage.root / "auth" / "token.key")
        auth = TokenAuth(authenticator, key=key, authorizer=authorizer, service=service,
                         realm=realm, anonymous_pull=anonymous_pull, token_ttl=token_ttl)
    handlers = _Handlers(storage, auth)
    app = web.Application(middlewares=[_metrics_middleware])
    app[STORAGE_KEY] = storage
    app[AUTH_KEY] = auth
    app.router.add_route("*", "/v2", handlers.dispatch, name="v2_base")
    app.router.add_route("*", "/v2/{path:.*}", handlers.dispatch, name="v2")
    app.router.add_get("/metrics", _metrics, name="metrics")
    return app


class Registry:
    """Runs the registry app on ``host:port`` (port 0: any free port), with TLS when given a
    certificate and key."""

    def __init__(self, storage: Storage | str | Path, *, host: str = "127.0.0.1",
                 port: int = 5000, tls_cert: str | None = None, tls_key: str | None = None,
                 upload_max_age: float = 24 * 3600.0, **app_options: Any):
        self.storage = storage if isinstance(storage, Storage) else Storage(storage)
        self.host = host
        self.port = port
        self.upload_max_age = upload_max_age
        self._janitor: asyncio.Task[None] | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if tls_cert and tls_key:
            self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl_context.load_cert_chain(tls_cert, tls_key)
        self.app = make_app(self.storage, **app_options)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._janitor = asyncio.create_task(self._purge_uploads())
        log.info("registry listening", extra={"url": self.url})

    async def _purge_uploads(self) -> None:
        """Abandoned upload sessions go after ``upload_max_age`` (checked hourly), as the
        spec asks ("the server SHOULD eventually timeout unfinished uploads")."""
        while True:
            try:
                removed = await _run(self.storage.purge_uploads, self.upload_max_age)
                if removed:
                    log.info("purged stale uploads", extra={"count": removed})
            except OSError as e:
                log.warning("purging stale uploads failed: %s", e)
            await asyncio.sleep(min(3600.0, max(self.upload_max_age / 2, 1.0)))

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            try:
                await self._janitor
            except asyncio.CancelledError:
                pass
            self._janitor = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Registry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
