"""The async REST client every Sampan component uses to talk to the API server.

One ``aiohttp.ClientSession`` (a keep-alive connection pool) per ``Client``. Resources are
addressed like client-go's dynamic client: (apiVersion, plural resource, namespace, name,
subresource). Objects are plain dicts in the Kubernetes JSON form. Failed requests raise
``ApiError`` carrying the server's ``metav1.Status``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from sampan.client.config import Config, load_config
from sampan.client.discovery import Discovery
from sampan.client.errors import ApiError, ResourceExpiredError, error_from_status, status_for

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_PATCH_ALIASES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH,
                  "apply": APPLY_PATCH}
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST_ACCEPT = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                        "application/json")

REQUEST_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_WATCH_SECONDS = 3600
WATCH_TIMEOUT_SLACK = 30.0
MAX_RETRIES = 5
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 5.0
_RETRY_AFTER_CODES = frozenset({429, 500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD"})

T = TypeVar("T")


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Preconditions:
    uid: str | None = None
    resource_version: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {}
        if self.uid:
            out["uid"] = self.uid
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        return out


def resource_path(api_version: str, resource: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """``/api/v1/namespaces/ns/pods/name/status`` and friends."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(resource)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def _query(**params: Any) -> dict[str, str]:
    """Query parameters without the unset ones, booleans spelled as the API server expects."""
    out = {}
    for key, value in params.items():
        if value is None or value is False or value == "":
            continue
        out[key] = "true" if value is True else str(value)
    return out


def _backoff(attempt: int) -> float:
    return min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** attempt) * random.uniform(0.5, 1.0)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds to wait before retrying, when the server asked for it (client-go's checkWait)."""
    if response.status not in _RETRY_AFTER_CODES:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_MAX_DELAY * 2)
    except ValueError:
        return 1.0


async def _error_from_response(response: aiohttp.ClientResponse) -> ApiError:
    body = await response.read()
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        text = body.decode(errors="replace").strip() or response.reason or ""
        status = status_for(response.status, text)
    status.setdefault("code", response.status)
    return error_from_status(status)


class Client:
    """An API server client over one pooled HTTP session. Use ``async with`` or ``close()``."""

    def __init__(self, config: Config, *, timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = 100):
        self.config = config
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.discovery = Discovery(self)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **kwargs: Any) -> Client:
        """A client for ``path``; without one, in-cluster config or the default kubeconfig."""
        return cls(load_config(path), **kwargs)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context() or False,
                                             limit=self._max_connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.config.user_agent})
        return self._session

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    # -- the one place requests are made ---------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = JSON, accept: str = JSON,
                      timeout: float | None = None) -> Any:
        """Send one request, retrying what is safe to retry; the decoded JSON answer."""
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.timeout,
                                               sock_connect=CONNECT_TIMEOUT)
        attempt = 0
        while True:
            try:
                async with self._http().request(
                        method, self.config.server + path, params=params, data=data,
                        headers=self._headers(accept, content_type if data is not None else None),
                        timeout=client_timeout,
                        server_hostname=self.config.tls_server_name) as response:
                    if response.status < 300:
                        raw = await response.read()
                        return orjson.loads(raw) if raw else {}
                    delay = _retry_after(response)
                    if delay is None or attempt >= MAX_RETRIES:
                        raise await _error_from_response(response)
            except aiohttp.ClientSSLError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                # A failed connect sent nothing, so any verb may go again; after that only
                # reads are safe to repeat.
                sent = not isinstance(e, aiohttp.ClientConnectorError)
                if (sent and method not in _IDEMPOTENT) or attempt >= MAX_RETRIES:
                    raise
                delay = _backoff(attempt)
                log.debug("retrying %s %s after %r", method, path, e)
            attempt += 1
            await asyncio.sleep(delay)

    # -- verbs ---------------------------------------------------------------------------------
    async def get(self, api_version: str, resource: str, name: str, *,
                  namespace: str | None = None, subresource: str | None = None,
                  metadata_only: bool = False, resource_version: str | None = None) -> dict[str, Any]:
        return await self.request(
            "GET", resource_path(api_version, resource, namespace, name, subresource),
            params=_query(resourceVersion=resource_version),
            accept=METADATA_ACCEPT if metadata_only else JSON)

    async def list(self, api_version: str, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_token: str | None = None,
                   resource_version: str | None = None, resource_version_match: str | None = None,
                   metadata_only: bool = False, timeout: float | None = None) -> dict[str, Any]:
        """One page of a list (all of it without ``limit``)."""
        params = _query(labelSelector=label_selector, fieldSelector=field_selector, limit=limit,
                        resourceVersion=resource_version,
                        resourceVersionMatch=resource_version_match)
        if continue_token:
            params["continue"] = continue_token
        return await self.request("GET", resource_path(api_version, resource, namespace),
                                  params=params, timeout=timeout,
                                  accept=METADATA_LIST_ACCEPT if metadata_only else JSON)

    async def list_all(self, api_version: str, resource: str, *, page_size: int = 500,
                       **kwargs: Any) -> dict[str, Any]:
        """A whole list, fetched page by page; the list's resourceVersion is the first page's."""
        first = await self.list(api_version, resource, limit=page_size, **kwargs)
        items = list(first.get("items") or [])
        token = (first.get("metadata") or {}).get("continue")
        while token:
            page = await self.list(api_version, resource, limit=page_size, continue_token=token,
                                   **{k: v for k, v in kwargs.items() if k != "resource_version"})
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
        first["items"] = items
        first.get("metadata", {}).pop("continue", None)
        return first

    async def create(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str | None = None, name: str | None = None,
                     subresource: str | None = None, field_manager: str | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        """POST; ``name`` addresses a subresource create (binding, eviction, token)."""
        namespace = namespace if namespace is not None else _meta(body).get("namespace")
        return await self.request(
            "POST", resource_path(api_version, resource, namespace, name, subresource),
            params=_query(fieldManager=field_manager, dryRun="All" if dry_run else None), body=body)

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str | None = None, subresource: str | None = None,
                     field_manager: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """PUT the object; its metadata.resourceVersion makes the write conditional."""
        meta = _meta(body)
        namespace = namespace if namespace is not None else meta.get("namespace")
        return await self.request(
            "PUT", resource_path(api_version, resource, namespace, meta["name"], subresource),
            params=_query(fieldManager=field_manager, dryRun="All" if dry_run else None), body=body)

    async def patch(self, api_version: str, resource: str, name: str, patch: Any, *,
                    namespace: str | None = None, subresource: str | None = None,
                    patch_type: str = MERGE_PATCH, field_manager: str | None = None,
                    force: bool | None = None, dry_run: bool = False) -> dict[str, Any]:
        """PATCH with ``patch_type`` (a content type, or merge / strategic / json / apply)."""
        content_type = _PATCH_ALIASES.get(patch_type, patch_type)
        return await self.request(
            "PATCH", resource_path(api_version, resource, namespace, name, subresource),
            params=_query(fieldManager=field_manager, force=force,
                          dryRun="All" if dry_run else None),
            body=patch, content_type=content_type)

    async def apply(self, api_version: str, resource: str, body: dict[str, Any], *,
                    field_manager: str, force: bool = False, namespace: str | None = None,
                    subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply of ``body`` (JSON is YAML) as ``field_manager``."""
        meta = _meta(body)
        namespace = namespace if namespace is not None else meta.get("namespace")
        return await self.patch(api_version, resource, meta["name"], body, namespace=namespace,
                                subresource=subresource, patch_type=APPLY_PATCH,
                                field_manager=field_manager, force=force, dry_run=dry_run)

    async def delete(self, api_version: str, resource: str, name: str, *,
                     namespace: str | None = None, propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: Preconditions | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        """DELETE; the answer is the object (when deletion waits) or a Status."""
        return await self.request(
            "DELETE", resource_path(api_version, resource, namespace, name),
            body=_delete_options(propagation_policy, grace_period_seconds, preconditions, dry_run))

    async def delete_collection(self, api_version: str, resource: str, *,
                                namespace: str | None = None, label_selector: str | None = None,
                                field_selector: str | None = None,
                                propagation_policy: str | None = None,
                                grace_period_seconds: int | None = None,
                                dry_run: bool = False) -> dict[str, Any]:
        return await self.request(
            "DELETE", resource_path(api_version, resource, namespace),
            params=_query(labelSelector=label_selector, fieldSelector=field_selector),
            body=_delete_options(propagation_policy, grace_period_seconds, None, dry_run),
            timeout=max(self.timeout, 60.0))

    def watch(self, api_version: str, resource: str, *, namespace: str | None = None,
              resource_version: str | None = None, timeout_seconds: int | None = None,
              allow_watch_bookmarks: bool = True, label_selector: str | None = None,
              field_selector: str | None = None, metadata_only: bool = False) -> Watch:
        """A stream of ``WatchEvent``; raises ``ResourceExpiredError`` on 410 ERROR events."""
        params = _query(watch=True, resourceVersion=resource_version,
                        timeoutSeconds=timeout_seconds, allowWatchBookmarks=allow_watch_bookmarks,
                        labelSelector=label_selector, fieldSelector=field_selector)
        total = (timeout_seconds or MAX_WATCH_SECONDS) + WATCH_TIMEOUT_SLACK
        return Watch(self, resource_path(api_version, resource, namespace), params,
                     METADATA_ACCEPT if metadata_only else JSON, total)

    async def _open_stream(self, path: str, params: dict[str, str], accept: str,
                           total: float) -> aiohttp.ClientResponse:
        response = await self._http().get(
            self.config.server + path, params=params, headers=self._headers(accept, None),
            timeout=aiohttp.ClientTimeout(total=total, sock_connect=CONNECT_TIMEOUT),
            server_hostname=self.config.tls_server_name)
        if response.status != 200:
            try:
                raise await _error_from_response(response)
            finally:
                response.release()
        return response


class Watch:
    """An open watch: ``async for event in watch`` (or ``async with watch``), then ``close()``.

    The stream ends when the server closes it (its timeout); an ERROR event raises."""

    def __init__(self, client: Client, path: str, params: dict[str, str], accept: str,
                 total_timeout: float):
        self._client = client
        self._path, self._params, self._accept, self._total = path, params, accept, total_timeout
        self._response: aiohttp.ClientResponse | None = None
        self._lines: AsyncIterator[bytes] | None = None
        self._closed = False

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._lines is None:
                self._response = await self._client._open_stream(
                    self._path, self._params, self._accept, self._total)
                self._lines = _json_lines(self._response.content)
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        return _decode_event(line)

    def close(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.close()
            self._response = None


def _decode_event(line: bytes) -> WatchEvent:
    event = orjson.loads(line)
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        raise error_from_status(obj if obj.get("kind") == "Status" else status_for(500, str(obj)))
    return WatchEvent(kind, obj)


async def _json_lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-delimited JSON of any line length (``readline`` stops at 128 KiB)."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1:]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("metadata") or {}


def _delete_options(propagation_policy: str | None, grace_period_seconds: int | None,
                    preconditions: Preconditions | None, dry_run: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation_policy:
        options["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    if preconditions is not None and preconditions.to_dict():
        options["preconditions"] = preconditions.to_dict()
    if dry_run:
        options["dryRun"] = ["All"]
    return options


async def retry_on_conflict(fn: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run ``fn`` (which reads fresh state and writes) again when the write conflicts,
    like client-go's ``retry.RetryOnConflict`` with its default backoff."""
    for attempt in range(attempts):
        try:
            return await fn()
        except ApiError as e:
            if not e.conflict or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * 2 ** attempt * random.uniform(1.0, 1.1))
    raise AssertionError("unreachable")


__all__ = ["APPLY_PATCH", "ApiError", "Client", "JSON_PATCH", "MERGE_PATCH", "Preconditions",
           "ResourceExpiredError", "STRATEGIC_MERGE_PATCH", "Watch", "WatchEvent",
           "resource_path", "retry_on_conflict"]
