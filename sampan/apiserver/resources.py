"""HTTP handlers for resource requests: the Kubernetes REST verbs on any registered resource.

The order of work for a write follows upstream's handlers: decode → field validation →
defaulting → admission (mutating) → strategy → validation → field ownership → store.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Callable

import orjson
import yaml
from aiohttp import web

from sampan.api import errors
from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.apiserver import conversion, ipalloc, strategy
from sampan.api import protobuf
from sampan.apiserver.negotiation import (
    JSON,
    METADATA,
    PROTOBUF,
    TABLE,
    YAML,
    Representation,
    negotiate,
)
from sampan.apiserver.requestinfo import RequestInfo
from sampan.apiserver.rest import (
    EVENT_TTL,
    Context,
    Entry,
    generate_name,
    now_rfc3339,
    parse_resource_version,
    rfc3339_after,
)
from sampan.apiserver.watchcache import TooOldError
from sampan.store.base import ConflictError, KeyNotFoundError

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
JSON_CT = "application/json"
BOOKMARK_INTERVAL = 60.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = JSON_CT) -> web.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type=None,
                        headers={"Content-Type": content_type, **(headers or {})})


def protobuf_response(obj: dict[str, Any], status: int = 200,
                      headers: dict[str, str] | None = None) -> web.Response:
    """Protobuf when the client accepts nothing else; JSON for kinds protobuf cannot carry."""
    try:
        body = protobuf.encode(obj)
    except ValueError:
        return json_response(obj, status, headers)
    return web.Response(body=body, status=status,
                        headers={"Content-Type": protobuf.MEDIA_TYPE, **(headers or {})})


def status_response(err: StatusError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(err.status(), err.code, headers)



class _CreateInstead(Exception):
    """Raised inside a compare-and-swap loop when an update or apply finds no object and must
    create one: creation needs (asynchronous) admission, which runs outside the loop."""

    def __init__(self, obj: dict[str, Any]):
        super().__init__("create instead of update")
        self.obj = obj

class ResourceHandlers:
    def __init__(self, api: "APIServer"):
        self.api = api

    # -- entry -------------------------------------------------------------------------------
    async def handle(self, request: web.Request, info: RequestInfo, ctx: Context) -> web.StreamResponse:
        resource = self.api.registry.get(info.group, info.version, info.resource)
        if resource is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource",
                              details={"causes": [{"reason": "UnexpectedServerResponse",
                                                   "message": "404 page not found"}]})
        if info.subresource and info.subresource not in resource.subresources:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if resource.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if not resource.namespaced and info.namespace and resource.kind != "Namespace":
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        verb = info.verb
        if verb not in resource.verbs and not info.subresource:
            raise errors.method_not_supported(resource.resource, verb)
        rep = negotiate(request.headers.get("Accept"))
        if rep is None:
            raise StatusError(406, "NotAcceptable",
                              "only the following media types are accepted: application/json, "
                              "application/yaml")
        if info.subresource:
            return await self.api.subresources.handle(request, info, resource, ctx, rep)
        if verb == "get":
            return await self.get(request, info, resource, rep)
        if verb == "list":
            return await self.list(request, info, resource, rep)
        if verb == "watch":
            return await self.watch(request, info, resource, rep)
        if verb == "create":
            if resource.resource == "bindings" and resource.group == "":
                body = self.api.codec.decode_object(await read_body(request),
                                                    request.headers.get("Content-Type", ""), resource)
                name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
                if not isinstance(name, str) or not name:
                    raise errors.invalid_error("Binding", "", [errors.required("metadata.name")])
                return await self.api.subresources.bind(info.namespace, name, body, ctx)
            if resource.virtual:
                return await self.api.reviews.create(request, info, resource, ctx)
            return await self.create(request, info, resource, ctx, rep)
        if verb == "update":
            return await self.update(request, info, resource, ctx, rep)
        if verb == "patch":
            return await self.patch(request, info, resource, ctx, rep)
        if verb == "delete":
            return await self.delete(request, info, resource, ctx, rep)
        if verb == "deletecollection":
            return await self.delete_collection(request, info, resource, ctx, rep)
        raise errors.method_not_supported(resource.resource, verb)

    # -- representation ----------------------------------------------------------------------
    def served(self, resource: Resource, entry: Entry) -> dict[str, Any]:
        """The object as the requested group/version serves it (a fresh, decoded copy)."""
        if conversion.needs_conversion(resource):
            return conversion.from_storage(resource, entry.obj)
        return entry.obj

    def served_raw(self, resource: Resource, entry: Entry) -> bytes:
        """The served object's JSON: the cached bytes unless a conversion is needed, so that
        gets, lists and watch events of the common case decode nothing."""
        if conversion.needs_conversion(resource):
            return orjson.dumps(self.served(resource, entry))
        return entry.raw

    def object_response(self, request: web.Request, resource: Resource, entry: Entry,
                        rep: Representation, status: int = 200, ctx: Context | None = None) -> web.Response:
        headers = _warning_headers(ctx)
        if rep.form == JSON:
            return json_response(self.served_raw(resource, entry), status, headers)
        obj = self.served(resource, entry)
        if rep.form == TABLE:
            include = request.query.get("includeObject", "Metadata")
            body = self.api.tables.table(resource, [obj], include_object=include)
            body["apiVersion"] = f"meta.k8s.io/{rep.version}"
            return json_response(body, status, headers)
        if rep.form == METADATA:
            return json_response(_partial(obj, rep.version), status, headers)
        if rep.form == YAML:
            return web.Response(text=yaml.safe_dump(obj, sort_keys=False), status=status,
                                content_type="application/yaml", headers=headers)
        return protobuf_response(obj, status, headers)

    def list_response(self, request: web.Request, resource: Resource, entries: list[Entry],
                      list_meta: dict[str, Any], rep: Representation) -> web.Response:
        if rep.form == TABLE:
            include = request.query.get("includeObject", "Metadata")
            objects = [self.served(resource, e) for e in entries]
            body = self.api.tables.table(resource, objects, include_object=include,
                                         list_metadata=list_meta)
            body["apiVersion"] = f"meta.k8s.io/{rep.version}"
            return json_response(body)
        if rep.form == METADATA:
            body = {"kind": "PartialObjectMetadataList", "apiVersion": f"meta.k8s.io/{rep.version}",
                    "metadata": list_meta,
                    "items": [_partial(self.served(resource, e), rep.version) for e in entries]}
            return json_response(body)
        head = orjson.dumps({"kind": resource.list_kind, "apiVersion": resource.api_version,
                             "metadata": list_meta})
        items = b",".join(self.served_raw(resource, e) for e in entries)
        raw = head[:-1] + b',"items":[' + items + b"]}"
        if rep.form == YAML:
            return web.Response(text=yaml.safe_dump(orjson.loads(raw), sort_keys=False),
                                content_type="application/yaml")
        if rep.form == PROTOBUF:
            return protobuf_response(orjson.loads(raw))
        return json_response(raw)

    # -- reads -------------------------------------------------------------------------------
    async def get(self, request: web.Request, info: RequestInfo, resource: Resource,
                  rep: Representation) -> web.Response:
        rv = request.query.get("resourceVersion", "")
        entry = await self.api.storage.get(resource, info.namespace, info.name, rv)
        return self.object_response(request, resource, entry, rep)

    def _filter(self, request: web.Request, resource: Resource) -> Callable[[Entry], bool] | None:
        label_text = request.query.get("labelSelector", "")
        field_text = request.query.get("fieldSelector", "")
        label_sel = self.api.selectors.parse_label_selector(label_text) if label_text else None
        field_sel = (self.api.selectors.parse_field_selector(field_text, resource)
                     if field_text else None)
        if label_sel is not None and label_sel.empty:
            label_sel = None
        if field_sel is not None and field_sel.empty:
            field_sel = None
        if label_sel is None and field_sel is None:
            return None
        served = self.served

        def accept(entry: Entry) -> bool:
            if label_sel is not None and not label_sel.matches(entry.labels):
                return False
            return field_sel is None or field_sel.matches(served(resource, entry))

        return accept

    async def list(self, request: web.Request, info: RequestInfo, resource: Resource,
                   rep: Representation) -> web.Response:
        q = request.query
        limit = max(_int_param(q, "limit", 0), 0)  # upstream pages only for a positive limit
        match = q.get("resourceVersionMatch", "")
        rv = q.get("resourceVersion", "")
        if match and match not in ("NotOlderThan", "Exact"):
            raise errors.bad_request(f'resourceVersionMatch "{match}" is not supported')
        if match and not rv:
            raise errors.invalid_error("ListOptions", "", [errors.forbidden(
                "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")], "meta.k8s.io")
        if match == "Exact" and rv == "0":
            raise errors.invalid_error("ListOptions", "", [errors.forbidden(
                "resourceVersionMatch", "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")], "meta.k8s.io")
        result = await self.api.storage.list(
            resource, info.namespace, accept=self._filter(request, resource), limit=limit,
            continue_token=q.get("continue", ""), resource_version=rv, match=match)
        meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        return self.list_response(request, resource, result.entries, meta, rep)

    async def watch(self, request: web.Request, info: RequestInfo, resource: Resource,
                    rep: Representation) -> web.StreamResponse:
        q = request.query
        rv = q.get("resourceVersion", "")
        timeout = _int_param(q, "timeoutSeconds", 0) or random.uniform(1800, 3600)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        send_initial = q.get("sendInitialEvents") in ("true", "1")
        match = q.get("resourceVersionMatch", "")
        if send_initial and (not bookmarks or match != "NotOlderThan"):
            raise errors.invalid_error("ListOptions", "", [errors.forbidden(
                "sendInitialEvents", "sendInitialEvents is forbidden for watch unless "
                "allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan")], "meta.k8s.io")
        accept = self._filter(request, resource)
        storage = self.api.storage
        cache = storage.cache(resource)
        initial: list[Entry] = []
        prefix = resource.prefix(info.namespace)
        if info.name:  # /watch/.../name or fieldSelector metadata.name
            name = info.name
            base = accept
            accept = (lambda e: e.name == name and (base is None or base(e)))
        if rv in ("", "0") or send_initial:
            if rv == "" or send_initial:
                if rv == "":
                    await self.api.mux.wait_fresh()
                else:
                    await storage._fresh(rv, match)
            watcher, initial = cache.watch_with_initial(info.namespace, accept, prefix)
        else:
            revision = parse_resource_version(rv)
            if not await self.api.mux.wait_for(revision, timeout=3.0):
                raise errors.timeout(f"Too large resource version: {revision}, current: {self.api.mux.revision}")
            try:
                watcher = cache.watch(revision, info.namespace, accept)
            except TooOldError as e:
                return await self._expired_stream(request, str(e))
        content_type = protobuf.WATCH_MEDIA_TYPE if rep.form == PROTOBUF else JSON_CT
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        first_table = [True]
        try:
            await response.prepare(request)
            for entry in initial:
                await response.write(self._event_line("ADDED", resource, entry, rep, first_table, request))
            if send_initial:
                await response.write(self._bookmark(resource, watcher.revision, rep, initial_end=True))
            await self._stream(request, response, resource, watcher, rep, timeout, bookmarks, first_table)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cache.stop(watcher)
        return response

    async def _stream(self, request, response, resource, watcher, rep, timeout, bookmarks,
                      first_table) -> None:
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        last_revision = watcher.revision
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline, next_bookmark if bookmarks else deadline) - now
            try:
                item = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                if bookmarks and time.monotonic() >= next_bookmark:
                    rev = max(last_revision, self.api.storage.cache(resource).revision)
                    await response.write(self._bookmark(resource, rev, rep))
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                continue
            if item is None:
                return
            kind, entry = item
            last_revision = entry.revision
            chunks = [self._event_line(kind, resource, entry, rep, first_table, request)]
            while not watcher.queue.empty() and len(chunks) < 256:
                nxt = watcher.queue.get_nowait()
                if nxt is None:
                    await response.write(b"".join(chunks))
                    return
                last_revision = nxt[1].revision
                chunks.append(self._event_line(nxt[0], resource, nxt[1], rep, first_table, request))
            await response.write(b"".join(chunks))

    def _event_line(self, kind: str, resource: Resource, entry: Entry, rep: Representation,
                    first_table: list[bool], request: web.Request) -> bytes:
        if rep.form == TABLE:
            obj = self.served(resource, entry)
            include = request.query.get("includeObject", "Metadata")
            table = self.api.tables.table(resource, [obj], include_object=include,
                                          no_headers=not first_table[0])
            table["apiVersion"] = f"meta.k8s.io/{rep.version}"
            first_table[0] = False
            return orjson.dumps({"type": kind, "object": table}) + b"\n"
        if rep.form == METADATA:
            return orjson.dumps({"type": kind, "object": _partial(self.served(resource, entry), rep.version)}) + b"\n"
        if rep.form == PROTOBUF:
            return protobuf.encode_watch_event(kind, self.served(resource, entry))
        raw = self.served_raw(resource, entry)
        return b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"

    def _bookmark(self, resource: Resource, revision: int, rep: Representation,
                  initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        if rep.form == METADATA:
            obj = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{rep.version}", "metadata": meta}
        else:
            obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
        if rep.form == PROTOBUF:
            try:
                return protobuf.encode_watch_event("BOOKMARK", obj)
            except ValueError:
                pass
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    async def _expired_stream(self, request: web.Request, message: str) -> web.StreamResponse:
        """Upstream answers a watch from a too-old version with 200 and one ERROR event."""
        response = web.StreamResponse(headers={"Content-Type": JSON_CT})
        response.enable_chunked_encoding()
        await response.prepare(request)
        status = errors.gone(message).status()
        await response.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
        await response.write_eof()
        return response

    # -- writes: shared steps ----------------------------------------------------------------
    async def read_object(self, request: web.Request, resource: Resource, info: RequestInfo,
                          ctx: Context) -> dict[str, Any]:
        """Decode the body, check its type against the URL, apply field validation."""
        body = await read_body(request)
        obj, duplicates = self.api.codec.decode(body, request.headers.get("Content-Type", JSON_CT),
                                                resource)
        if not isinstance(obj, dict):
            raise errors.bad_request("Object 'Kind' is missing in '" + body[:64].decode(errors="replace") + "'")
        self.check_type(obj, resource)
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request(f"{resource.kind} in version \"{resource.version}\" cannot be "
                                     "handled as a " + resource.kind + ": metadata must be an object")
        options = "UpdateOptions" if request.method == "PUT" else "CreateOptions"
        ctx.warnings.extend(self.api.codec.field_validation(obj, resource, duplicates,
                                                            ctx.field_validation, options))
        return obj

    def check_type(self, obj: dict[str, Any], resource: Resource) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != resource.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected "
                                     f"kind ({resource.kind})")
        if api_version and api_version != resource.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({resource.api_version})")
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind

    def check_namespace(self, obj: dict[str, Any], resource: Resource, info: RequestInfo) -> None:
        meta = obj["metadata"]
        if resource.namespaced:
            ns = meta.get("namespace")
            if ns and ns != info.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the "
                                         "namespace sent on the request")
            meta["namespace"] = info.namespace
        else:
            meta.pop("namespace", None)

    def prepare_create(self, resource: Resource, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """Defaults, server-set metadata and the strategy; ``obj`` in the served version."""
        obj = conversion.to_storage(resource, obj)
        self.api.defaults.apply(obj, resource)
        meta = obj["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "resourceVersion", "selfLink"):
            meta.pop(f, None)
        meta["uid"] = self.api.new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        strategy.prepare_for_create(resource, obj)
        return obj

    def validate(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        field_errors = self.api.validator.validate(obj, resource, old)
        if field_errors:
            name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
            raise errors.invalid_error(resource.kind, name, field_errors, resource.group)

    def manager(self, request: web.Request, ctx: Context) -> str:
        return ctx.field_manager or self.api.fields.default_manager(request.headers.get("User-Agent", ""))

    # -- create ------------------------------------------------------------------------------
    async def create(self, request: web.Request, info: RequestInfo, resource: Resource,
                     ctx: Context, rep: Representation) -> web.Response:
        obj = await self.read_object(request, resource, info, ctx)
        self.check_namespace(obj, resource, info)
        meta = obj["metadata"]
        if not meta.get("name") and not meta.get("generateName"):
            raise errors.invalid_error(resource.kind, "", [errors.required(
                "metadata.name", "name or generateName is required")], resource.group)
        generated = not meta.get("name")
        if generated:
            meta["name"] = generate_name(meta["generateName"])
        obj = self.prepare_create(resource, obj, ctx)
        entry = await self.admit_and_create(resource, obj, ctx, self.manager(request, ctx),
                                            generated_name=generated)
        await self.api.after_write(resource, entry, None)
        return self.object_response(request, resource, entry, rep, 201, ctx)

    # -- update ------------------------------------------------------------------------------
    async def update(self, request: web.Request, info: RequestInfo, resource: Resource,
                     ctx: Context, rep: Representation, subresource: str = "") -> web.Response:
        obj = await self.read_object(request, resource, info, ctx)
        self.check_namespace(obj, resource, info)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != info.name:
            raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                     % (meta["name"], info.name))
        meta["name"] = info.name
        rv = meta.get("resourceVersion") or ""
        pinned = parse_resource_version(rv) if rv else 0
        manager = self.manager(request, ctx)
        created = False

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            nonlocal created
            new = _copy(obj)
            if current is None:
                if subresource or not strategy.allow_create_on_update(resource) or pinned:
                    raise errors.not_found_error(resource.resource, info.name, resource.group)
                raise _CreateInstead(self.prepare_create(resource, new, ctx))
            return self.updated_object(resource, current, conversion.to_storage(resource, new),
                                       manager, subresource, ctx)

        try:
            entry = await self._guaranteed(resource, info, ctx, mutate, pinned)
        except _CreateInstead as create:
            created = True
            entry = await self.admit_and_create(resource, create.obj, ctx, manager)
        await self.api.after_write(resource, entry, None)
        return self.object_response(request, resource, entry, rep, 201 if created else 200, ctx)

    async def admit_and_create(self, resource: Resource, obj: dict[str, Any], ctx: Context,
                               manager: str, *, track: bool = True,
                               generated_name: bool = False) -> Entry:
        """The tail of every create (POST, create-on-PUT, server-side apply): admission,
        validation, ownership, storage."""
        with ipalloc.transaction() as allocations:  # a failed create keeps no IP or port
            await self.api.admission.admit(resource, obj, None, ctx, "CREATE")
            self.validate(resource, obj, None)
            await self.api.admission.validate(resource, obj, None, ctx, "CREATE")
            if track:
                self.api.fields.track(resource, None, obj, manager, "")
            ttl = EVENT_TTL if resource.resource == "events" else 0
            entry = await self.api.storage.create(resource, obj, ctx, ttl=ttl,
                                                  generated_name=generated_name)
            allocations.committed(entry.revision)
            return entry

    def updated_object(self, resource: Resource, current: Entry, new: dict[str, Any],
                       manager: str, subresource: str, ctx: Context,
                       track: bool = True) -> dict[str, Any] | None:
        """The shared tail of update and patch: strategy, validation, ownership, no-op check."""
        old = current.obj
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if f in old_meta:
                if f == "uid" and meta.get("uid") and meta["uid"] != old_meta["uid"]:
                    raise errors.conflict(resource.resource, old_meta["name"], resource.group,
                                          "Precondition failed: UID in precondition: "
                                          f"{meta['uid']}, UID in object meta: {old_meta['uid']}")
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)
        meta["name"], meta["resourceVersion"] = old_meta["name"], old_meta["resourceVersion"]
        if resource.namespaced:
            meta["namespace"] = old_meta.get("namespace")
        if old_meta.get("deletionTimestamp") and set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or []):
            raise errors.invalid_error(resource.kind, old_meta["name"], [errors.forbidden(
                "metadata.finalizers", "no new finalizers can be added if the object is being deleted")], resource.group)
        self.api.defaults.apply(new, resource)
        if subresource == "status":
            new = strategy.prepare_for_status_update(new, old)
        else:
            strategy.prepare_for_update(resource, new, old)
            self.api.admission.admit_update(self.api.schemata.storage_resource(resource), new, old)
        self.validate(resource, new, old)
        if track:
            self.api.fields.track(resource, old, new, manager, subresource)
        if _same(new, old):
            return None
        return new

    async def _guaranteed(self, resource: Resource, info: RequestInfo, ctx: Context,
                          mutate, pinned: int = 0) -> Entry:
        with ipalloc.transaction() as allocations:  # a failed update keeps no new IP or port
            entry, _created = await self.api.storage.guaranteed_update(
                resource, info.namespace, info.name, ctx, mutate, pinned_revision=pinned)
            if entry is not None:
                allocations.committed(entry.revision)
        if entry is None:
            raise errors.not_found_error(resource.resource, info.name, resource.group)
        return entry

    # -- patch -------------------------------------------------------------------------------
    async def patch(self, request: web.Request, info: RequestInfo, resource: Resource,
                    ctx: Context, rep: Representation, subresource: str = "") -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        body = await read_body(request)
        is_apply = content_type == "application/apply-patch+yaml"
        if is_apply and not ctx.field_manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not is_apply and ctx.force:
            raise errors.bad_request("force is only allowed for apply patches")
        manager = self.manager(request, ctx)
        created = False

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            nonlocal created
            if is_apply:
                applied = self.api.codec.decode_apply(body)
                self.check_type(applied, resource)
                applied.setdefault("metadata", {})
                applied_meta = applied["metadata"]
                if applied_meta.get("name") and applied_meta["name"] != info.name:
                    raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                             % (applied_meta["name"], info.name))
                if resource.namespaced:
                    if applied_meta.get("namespace") and applied_meta["namespace"] != info.namespace:
                        raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
                ctx.warnings.extend(self.api.codec.field_validation(applied, resource, [],
                                                                    ctx.field_validation, "PatchOptions"))
                if current is None:
                    if subresource:
                        raise errors.not_found_error(resource.resource, info.name, resource.group)
                    created = True
                    live = None
                else:
                    live = self.served(resource, current)
                new = self.api.fields.apply(resource, live, applied, manager, ctx.force, subresource)
                new.setdefault("metadata", {})["name"] = info.name
                if created:
                    self.check_namespace(new, resource, info)
                    raise _CreateInstead(self.prepare_create(resource, new, ctx))
                return self.updated_object(resource, current, conversion.to_storage(resource, new),
                                           manager, subresource, ctx, track=False)
            if current is None:
                raise errors.not_found_error(resource.resource, info.name, resource.group)
            live = self.served(resource, current)  # a fresh copy already
            patched = self.api.patcher.apply_patch(resource, live, content_type, body)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            self.check_type(patched, resource)
            patched.setdefault("metadata", {})
            ctx.warnings.extend(self.api.codec.field_validation(patched, resource, [],
                                                                ctx.field_validation, "PatchOptions"))
            pinned_rv = (patched["metadata"].get("resourceVersion") or "")
            if pinned_rv and pinned_rv != str(current.revision):
                raise errors.conflict(resource.resource, info.name, resource.group)
            return self.updated_object(resource, current, conversion.to_storage(resource, patched),
                                       manager, subresource, ctx)

        try:
            entry = await self._guaranteed(resource, info, ctx, mutate)
        except _CreateInstead as create:
            entry = await self.admit_and_create(resource, create.obj, ctx, manager, track=False)
        await self.api.after_write(resource, entry, None)
        return self.object_response(request, resource, entry, rep, 201 if created else 200, ctx)

    # -- delete ------------------------------------------------------------------------------
    async def delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            body = await read_body(request)
            if body.strip():
                try:
                    options = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise errors.bad_request(f"invalid DeleteOptions: {e}") from None
                if not isinstance(options, dict):
                    raise errors.bad_request("invalid DeleteOptions")
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = _int_param(q, "gracePeriodSeconds", 0)
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = q["orphanDependents"] in ("true", "1")
        policy = options.get("propagationPolicy")
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid_error("DeleteOptions", "", [errors.not_supported(
                "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])], "meta.k8s.io")
        if policy is not None and options.get("orphanDependents") is not None:
            raise errors.invalid_error("DeleteOptions", "", [errors.invalid(
                "propagationPolicy", policy, "orphanDependents and deletionPropagation cannot be both set")], "meta.k8s.io")
        pre = options.get("preconditions")
        if pre is not None and not (isinstance(pre, dict) and all(
                isinstance(pre.get(f), (str, type(None))) for f in ("uid", "resourceVersion"))):
            raise errors.bad_request("invalid DeleteOptions: preconditions must hold uid and "
                                     "resourceVersion strings")
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
            raise errors.invalid_error("DeleteOptions", "", [errors.invalid(
                "gracePeriodSeconds", grace, "must be greater than or equal to 0")], "meta.k8s.io")
        return options

    async def delete(self, request: web.Request, info: RequestInfo, resource: Resource,
                     ctx: Context, rep: Representation) -> web.Response:
        options = await self.delete_options(request)
        entry, deleted = await self.delete_one(resource, info.namespace, info.name, options, ctx)
        meta = entry.obj["metadata"]
        if deleted and resource.kind not in ("Pod", "Namespace") and not meta.get("finalizers"):
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": info.name, "kind": resource.resource,
                                  "uid": meta.get("uid", "")}}
            if resource.group:
                status["details"]["group"] = resource.group
            return json_response(status, headers=_warning_headers(ctx))
        return self.object_response(request, resource, entry, rep, 200, ctx)

    async def delete_one(self, resource: Resource, namespace: str, name: str,
                         options: dict[str, Any], ctx: Context) -> tuple[Entry, bool]:
        """Delete now, or start a graceful / finalized deletion. Returns (entry, deleted)."""
        if resource.kind == "Namespace" and name in ("default", "kube-system", "kube-public"):
            raise StatusError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                              details={"name": name, "kind": "namespaces"})
        storage = self.api.storage
        for _ in range(16):
            current = await storage.get_latest(resource, namespace, name)
            if current is None:
                raise errors.not_found_error(resource.resource, name, resource.group)
            _check_preconditions(resource, current, options)
            current_obj = current.obj
            new = _deletion_update(resource, current_obj, options)
            try:
                if new is None:
                    await self.api.admission.validate_delete(resource, current_obj, ctx)
                    gone = await storage.remove(resource, current, ctx)
                    await self.api.after_write(resource, gone, current)
                    return gone, True
                if new is current_obj:
                    return current, False
                entry = await storage.write(resource, current, new, ctx)
                await self.api.after_write(resource, entry, current)
                return entry, False
            except (ConflictError, KeyNotFoundError):
                continue
        raise errors.conflict(resource.resource, name, resource.group, "too many conflicting updates")

    async def delete_collection(self, request: web.Request, info: RequestInfo, resource: Resource,
                                ctx: Context, rep: Representation) -> web.Response:
        options = await self.delete_options(request)
        result = await self.api.storage.list(resource, info.namespace,
                                             accept=self._filter(request, resource))
        deleted: list[Entry] = []
        for entry in result.entries:
            try:
                gone, _ = await self.delete_one(resource, entry.namespace, entry.name, options, ctx)
                deleted.append(gone)
            except StatusError as e:
                if e.code != 404:
                    raise
        meta = {"resourceVersion": str(self.api.mux.revision)}
        return self.list_response(request, resource, deleted, meta, rep)


def _check_preconditions(resource: Resource, current: Entry, options: dict[str, Any]) -> None:
    pre = options.get("preconditions") or {}
    meta = current.obj["metadata"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise errors.conflict(resource.resource, meta["name"], resource.group,
                              f"Precondition failed: UID in precondition: {pre['uid']}, "
                              f"UID in object meta: {meta.get('uid')}")
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise errors.conflict(resource.resource, meta["name"], resource.group,
                              f"Precondition failed: ResourceVersion in precondition: "
                              f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                              f"{meta.get('resourceVersion')}")


def _deletion_update(resource: Resource, obj: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """The object to write for a deletion that must wait (graceful termination, finalizers),
    ``obj`` itself when nothing changes, or None to delete now."""
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    policy = options.get("propagationPolicy")
    if policy is None and options.get("orphanDependents") is not None:
        policy = "Orphan" if options["orphanDependents"] else "Background"
    if policy == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers = [f for f in finalizers if f != "orphan"] + ["foregroundDeletion"]
    elif policy == "Orphan" and "orphan" not in finalizers:
        finalizers = [f for f in finalizers if f != "foregroundDeletion"] + ["orphan"]
    elif policy == "Background":
        finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
    grace = _grace_period(resource, obj, options)
    spec_finalizers = resource.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")
    if not finalizers and not grace and not spec_finalizers:
        return None
    if meta.get("deletionTimestamp"):
        new = _copy(obj)
        changed = False
        if finalizers != (meta.get("finalizers") or []):
            new["metadata"]["finalizers"] = finalizers
            changed = True
        old_grace = meta.get("deletionGracePeriodSeconds")
        if grace is not None and old_grace is not None and grace < old_grace:
            if grace == 0 and not finalizers:
                return None
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            new["metadata"]["deletionTimestamp"] = rfc3339_after(grace)
            changed = True
        return new if changed else obj
    new = _copy(obj)
    new_meta = new["metadata"]
    if finalizers:
        new_meta["finalizers"] = finalizers
    new_meta["deletionTimestamp"] = rfc3339_after(grace or 0)
    new_meta["deletionGracePeriodSeconds"] = grace or 0
    if resource.kind == "Namespace":
        new.setdefault("status", {})["phase"] = "Terminating"
    return new


def _grace_period(resource: Resource, obj: dict[str, Any], options: dict[str, Any]) -> int:
    """Pods bound to a node terminate gracefully; everything else goes at once."""
    if resource.kind != "Pod":
        return 0
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return int(grace)


def _partial(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata", {})}


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(obj))


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Equal apart from managedFields timestamps (upstream skips such no-op writes)."""
    if new == old:
        return True
    nm, om = new.get("metadata", {}), old.get("metadata", {})
    if nm.get("managedFields") == om.get("managedFields"):
        return False
    a = {k: v for k, v in new.items() if k != "metadata"}
    b = {k: v for k, v in old.items() if k != "metadata"}
    if a != b:
        return False
    strip = lambda m: {k: v for k, v in m.items() if k != "managedFields"}
    if strip(nm) != strip(om):
        return False
    return _fields_only_time_differs(nm.get("managedFields") or [], om.get("managedFields") or [])


def _fields_only_time_differs(a: list[dict], b: list[dict]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if {k: v for k, v in x.items() if k != "time"} != {k: v for k, v in y.items() if k != "time"}:
            return False
    return True


def _int_param(q, name: str, default: int) -> int:
    value = q.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{value}"') from None


def _warning_text(text: str) -> str:
    """A warning as an RFC 7234 quoted string: quotes and backslashes escaped, control
    characters (which a field name sent by a client may hold) written as \\xNN."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _warning_headers(ctx: Context | None) -> dict[str, str] | None:
    if ctx is None or not ctx.warnings:
        return None
    return {"Warning": ", ".join(f'299 - "{_warning_text(w)}"' for w in ctx.warnings[:50])}


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)
