"""The API server: HTTPS, authentication, authorization, and the routing of every request to
discovery, OpenAPI, health, metrics or the resource handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sampan.api import errors, schema
from sampan.api import selectors as selectors_module
from sampan.api.errors import StatusError
from sampan.api.registry import Registry, Resource
from sampan.apiserver import discovery, openapi, tables
from sampan.apiserver.serviceaccounts import ServiceAccountAuthenticator, TokenIssuer
from sampan.apiserver.admission import SYSTEM_PRIORITY_CLASSES, Admission
from sampan.apiserver.auth import (
    ANONYMOUS,
    ALLOW,
    MASTERS,
    Attributes,
    AuthenticatorChain,
    AuthorizerChain,
    MastersAuthorizer,
    StaticTokens,
    UserInfo,
    forbidden_message,
)
from sampan.apiserver.crd import CRDController
from sampan.apiserver.ipalloc import ClusterIPAllocator, NodePortAllocator
from sampan.apiserver.metrics_api import GROUP as METRICS_GROUP, MetricsAPI  # metrics.k8s.io
from sampan.apiserver.pipeline import Codec, Defaulter, Fields, Patcher, Schemata, Validator
from sampan.apiserver.requestinfo import RequestInfo, parse
from sampan.apiserver.resources import ResourceHandlers, json_response, status_response
from sampan.apiserver.rest import Context, ObjectStorage
from sampan.apiserver.rbac import RBACAuthorizer, default_objects
from sampan.apiserver.reviews import Reviews
from sampan.apiserver.subresources import Subresources
from sampan.apiserver.watchcache import Mux
from sampan.store.base import ConflictError
from sampan.store.base import Store, StoreUnavailableError

log = logging.getLogger(__name__)

GIT_VERSION = "v1.37.0-sampan"
UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz", "/version")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request_total", "API requests by verb, resource and code",
                                ["verb", "group", "resource", "code"], registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "API request latency",
                                 ["verb", "resource"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.watchers = Gauge("apiserver_registered_watchers", "Open watches", ["resource"],
                              registry=self.registry)
        self.objects = Gauge("apiserver_storage_objects", "Objects in the watch cache", ["resource"],
                             registry=self.registry)


class APIServer:
    def __init__(self, store: Store, *, pki_dir: Path | None = None, admin_token: str = "",
                 service_account_key: Path | None = None,
                 service_cidr: str = "10.43.0.0/16", advertise_address: str = "127.0.0.1",
                 port: int = 6443):
        self.store = store
        self.registry = Registry()
        self.schemata = Schemata(schema.builtin(), self.registry)
        self.mux = Mux(store, lambda: sorted({r.storage_prefix for r in self.registry.all()
                                               if not r.virtual}))
        self.storage = ObjectStorage(store, self.mux)
        self.codec = Codec(self.schemata)
        self.defaults = Defaulter(self.schemata)
        self.validator = Validator(self.schemata)
        self.patcher = Patcher(self.schemata)
        self.fields = Fields(self.schemata)
        self.selectors = selectors_module
        self.tables = tables
        self.resources = ResourceHandlers(self)
        self.subresources = Subresources(self)
        self.reviews = Reviews(self)
        self.admission = Admission(self, service_cidr)
        self.crds = CRDController(self)
        self.tokens = StaticTokens()
        self.token_issuer = TokenIssuer(service_account_key) if service_account_key else None
        self.authn = AuthenticatorChain(self.tokens)
        if self.token_issuer is not None:
            self.authn.authenticators.append(ServiceAccountAuthenticator(self, self.token_issuer))
        self.rbac = RBACAuthorizer(self)
        self.authz = AuthorizerChain(MastersAuthorizer(), self.rbac)
        self.system_user = UserInfo("system:apiserver", groups=(MASTERS,))
        services = self.registry.get("", "v1", "services")
        assert services is not None
        cache_revision = lambda: self.storage.cache(services).revision  # noqa: E731
        self.allocator = ClusterIPAllocator(service_cidr, lambda: self._service_ips(services),
                                            cache_revision)
        self.node_ports = NodePortAllocator(30000, 32767, lambda: self._node_ports(services),
                                            cache_revision)
        self.metrics = Metrics()
        self.cluster_info: str | None = None  # kubeconfig text for kube-public/cluster-info
        self.kubelet = None  # the KubeletClient (apiserver/kubelet.py) once run.py gives it one
        self._uids = UIDPool()
        self.advertise_address = advertise_address
        self.port = port
        self.ready = False
        self.started_at = time.time()
        if admin_token:
            self.tokens.add(admin_token, UserInfo("admin", groups=(MASTERS, "system:authenticated")))
        self.metrics_api = MetricsAPI(self)  # metrics.k8s.io: node and pod usage (kubectl top, HPA)

    def _service_ips(self, services: Resource):
        for entry in self.storage.cache(services).objects.values():
            for ip in (entry.obj.get("spec") or {}).get("clusterIPs") or []:
                yield ip

    def _node_ports(self, services: Resource):
        for entry in self.storage.cache(services).objects.values():
            spec = entry.obj.get("spec") or {}
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    yield port["nodePort"]
            if spec.get("healthCheckNodePort"):
                yield spec["healthCheckNodePort"]

    def new_uid(self) -> str:
        return self._uids.next()

    async def after_write(self, resource: Resource, entry, prev) -> None:
        """Hook for work that must follow a write in this server (none by default)."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.start()
        await self.mux.start()
        await self.crds.start()
        await self._bootstrap()
        await self.metrics_api.start()  # metrics.k8s.io scraper
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.metrics_api.close()  # metrics.k8s.io scraper
        await self.crds.close()
        await self.mux.close()
        await self.store.close()

    async def _bootstrap(self) -> None:
        """The namespaces and the ``kubernetes`` Service every cluster starts with."""
        ns = self.registry.get("", "v1", "namespaces")
        svc = self.registry.get("", "v1", "services")
        assert ns is not None and svc is not None
        ctx = Context(user=self.system_user)
        for name in SYSTEM_NAMESPACES:
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}
            await self._create_if_missing(ns, obj, ctx)
        kubernetes = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.allocator.kubernetes_ip,
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": self.port}]},
        }
        await self._create_if_missing(svc, kubernetes, ctx)
        for resource, obj in self._kubernetes_endpoints():
            await self._create_if_missing(resource, obj, ctx)
        if await self.storage.get_latest(svc, "kube-system", "kube-dns") is None:
            taken = self.allocator.check(self.allocator.dns_ip)
            if taken:  # a cluster from before the DNS: some Service holds the address
                log.warning("not creating kube-system/kube-dns: %s", taken)
            else:
                await self._create_if_missing(svc, self._cluster_dns_service(), ctx)
        priority_classes = self.registry.get("scheduling.k8s.io", "v1", "priorityclasses")
        assert priority_classes is not None
        for name, value in SYSTEM_PRIORITY_CLASSES.items():
            await self._create_if_missing(priority_classes, {
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value,
                "description": "Used for system critical pods that must not be moved from "
                               "their current node." if name == "system-node-critical" else
                               "Used for system critical pods that must run in the cluster, "
                               "but can be moved to another node if necessary.",
            }, ctx)
        for resource_name, obj in default_objects():
            resource = self.registry.get("rbac.authorization.k8s.io", "v1", resource_name)
            assert resource is not None
            await self._reconcile(resource, obj, ctx,
                                  ("rules",) if "rules" in obj else ("roleRef", "subjects"))
        await self._publish_cluster_info(ctx)

    def _cluster_dns_service(self) -> dict[str, Any]:
        """``kube-system/kube-dns``, the Service pods' resolv.conf names (the well-known tenth
        address of the service range). It has no selector: every node agent serves DNS on its
        pod gateway and publishes that in an EndpointSlice of its own; the internal traffic
        policy Local keeps each node's pods on their own node's server (NodeLocal DNS)."""
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                    "kubernetes.io/name": "SampanDNS"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.allocator.dns_ip,
                     "internalTrafficPolicy": "Local",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                                "targetPort": 53}]},
        }

    async def _reconcile(self, resource: Resource, obj: dict[str, Any], ctx: Context,
                         fields: tuple[str, ...]) -> None:
        """Create a bootstrap object, or bring ``fields`` up to date unless it is annotated
        ``rbac.authorization.kubernetes.io/autoupdate: "false"`` (upstream's RBAC bootstrap
        reconciliation: a newer server adds the permissions it needs)."""
        meta = obj["metadata"]
        current = await self.storage.get_latest(resource, meta.get("namespace", ""), meta["name"])
        if current is None:
            await self._create_if_missing(resource, obj, ctx)
            return
        existing = current.obj
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        if annotations.get("rbac.authorization.kubernetes.io/autoupdate") == "false":
            return
        if all(existing.get(f) == obj.get(f) for f in fields):
            return
        updated = {**existing, **{f: obj[f] for f in fields}}
        try:
            await self.storage.write(resource, current, updated, ctx)
        except ConflictError:
            pass  # another server reconciled it first

    async def _publish_cluster_info(self, ctx: Context) -> None:
        """``kube-public/cluster-info``: the server URL and CA in a kubeconfig, readable without
        credentials (kubeadm's discovery). A joining node checks the CA against the hash in
        its join token before it trusts anything else."""
        if self.cluster_info is None:
            return
        configmaps = self.registry.get("", "v1", "configmaps")
        roles = self.registry.get("rbac.authorization.k8s.io", "v1", "roles")
        bindings = self.registry.get("rbac.authorization.k8s.io", "v1", "rolebindings")
        assert configmaps is not None and roles is not None and bindings is not None
        await self._reconcile(configmaps, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": self.cluster_info}}, ctx, ("data",))
        await self._create_if_missing(roles, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo",
                         "namespace": "kube-public"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                       "resourceNames": ["cluster-info"], "verbs": ["get"]}]}, ctx)
        await self._create_if_missing(bindings, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo",
                         "namespace": "kube-public"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "kubeadm:bootstrap-signer-clusterinfo"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "system:anonymous"}]}, ctx)

    def _kubernetes_endpoints(self) -> list[tuple[Resource, dict[str, Any]]]:
        """Where the ``kubernetes`` Service leads: this API server, as upstream's endpoint
        reconciler publishes it (an Endpoints object and its EndpointSlice)."""
        endpoints = self.registry.get("", "v1", "endpoints")
        slices = self.registry.get("discovery.k8s.io", "v1", "endpointslices")
        assert endpoints is not None and slices is not None
        address, port = self.advertise_address, self.port
        family = "IPv6" if ":" in address else "IPv4"
        return [
            (endpoints, {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": "kubernetes", "namespace": "default",
                                      "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                         "subsets": [{"addresses": [{"ip": address}],
                                      "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
            (slices, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "kubernetes", "namespace": "default",
                                   "labels": {"kubernetes.io/service-name": "kubernetes"}},
                      "addressType": family,
                      "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                      "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        ]

    async def _create_if_missing(self, resource: Resource, obj: dict[str, Any], ctx: Context) -> None:
        meta = obj["metadata"]
        if await self.storage.get_latest(resource, meta.get("namespace", ""), meta["name"]):
            return
        obj = self.resources.prepare_create(resource, obj, ctx)
        self.fields.track(resource, None, obj, "kube-apiserver", "")
        try:
            await self.storage.create(resource, obj, ctx)
        except StatusError as e:
            if e.code != 409:
                raise

    # -- HTTP --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[_status_errors],
                              handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path
        info = parse(request.method, path, request.query)
        code = 500
        try:
            response = await self._serve(request, info)
            code = response.status
            return response
        except StatusError as e:
            code = e.code
            return status_response(e)
        except StoreUnavailableError as e:
            # The store could not say whether or not the write happened (an etcd leader
            # change): the client retries, as it does for any 503.
            code = 503
            return status_response(errors.service_unavailable(f"storage is unavailable: {e}"),
                                   {"Retry-After": "1"})
        except asyncio.CancelledError:
            code = 499
            raise
        except Exception as e:  # a bug must not take the server down or leak a trace
            log.exception("internal error serving %s %s", request.method, path)
            err = errors.internal_error(str(e) or type(e).__name__)
            return status_response(err)
        finally:
            if info.verb != "watch":
                elapsed = time.perf_counter() - started
                self.metrics.latency.labels(info.verb, info.resource).observe(elapsed)
            self.metrics.requests.labels(info.verb, info.group, info.resource, str(code)).inc()

    async def _serve(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        path = request.path
        if path in UNAUTHENTICATED_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return self._health(path)
        authorization = request.headers.get("Authorization")
        if authorization:
            user = self.authn.authenticate_header(authorization)
            if user is None:  # credentials given but not valid
                raise errors.unauthorized()
        else:
            # No credentials: the anonymous user, left to RBAC (upstream's --anonymous-auth
            # default); it may read /version, the health checks and kube-public/cluster-info.
            user = ANONYMOUS
        if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers:
            user = self._impersonate(request, user)
        attrs = Attributes(user, info.verb if info.resource_request else request.method.lower(),
                           info.resource_request, info.group, info.version, info.resource,
                           info.subresource, info.namespace, info.name, path)
        decision, _ = self.authz.authorize(attrs)
        if decision != ALLOW:
            raise _forbidden(attrs)
        if info.resource_request:
            q = request.query
            ctx = Context(user=user, dry_run=_dry_run(q), field_manager=q.get("fieldManager", ""),
                          field_validation=_field_validation(q, request.method), force=q.get("force") in ("true", "1"),
                          user_agent=request.headers.get("User-Agent", ""))
            if info.group == METRICS_GROUP:  # metrics.k8s.io, computed from kubelet scrapes
                return await self.metrics_api.handle(request, info, ctx)
            return await self.resources.handle(request, info, ctx)
        return await self._nonresource(request, path)

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """Act as another user when the requester may impersonate them (``kubectl --as``)."""
        name = request.headers.get("Impersonate-User", "")
        groups = tuple(request.headers.getall("Impersonate-Group", []))
        if not name:
            raise errors.bad_request("requested impersonation of groups without a user")
        checks = [("users", name, "")] + [("groups", g, "") for g in groups]
        if name.startswith("system:serviceaccount:"):
            _, _, rest = name.partition("system:serviceaccount:")
            namespace, _, sa = rest.partition(":")
            checks[0] = ("serviceaccounts", sa, namespace)
        for resource, value, namespace in checks:
            attrs = Attributes(user, "impersonate", True, "", "v1", resource, "", namespace, value)
            if self.authz.authorize(attrs)[0] != ALLOW:
                raise StatusError(403, "Forbidden",
                                  f'{resource} "{value}" is forbidden: User "{user.name}" cannot '
                                  f'impersonate resource "{resource}" in API group "" at the '
                                  f"cluster scope", details={"name": value, "kind": resource})
        if "system:authenticated" not in groups:
            groups += ("system:authenticated",)
        return UserInfo(name, request.headers.get("Impersonate-Uid", ""), groups)

    def _health(self, path: str) -> web.Response:
        if path == "/version":
            return json_response(version_info())
        if path.startswith("/readyz") and not self.ready:
            return web.Response(text="[-]poststarthook/sampan-ready failed: not ready\nreadyz check failed",
                                status=500)
        return web.Response(text="ok")

    async def _nonresource(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_supported(path, request.method)
        accept = request.headers.get("Accept", "")
        registry = self.registry
        if path in ("/api", "/apis"):
            aggregated = discovery.negotiate_discovery(accept)
            if aggregated:
                encoded = discovery.encode_aggregated_discovery(registry, path == "/api", aggregated)
                return _cached(request, encoded, aggregated)
            if path == "/api":
                return json_response(discovery.api_versions(f"{self.advertise_address}:{self.port}"))
            return json_response(discovery.api_group_list(registry))
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api" and len(parts) == 2:
            body = discovery.api_resource_list(registry, "", parts[1])
            if body is not None:
                return json_response(body)
        if parts[0] == "apis" and len(parts) == 2:
            body = discovery.api_group(registry, parts[1])
            if body is not None:
                return json_response(body)
        if parts[0] == "apis" and len(parts) == 3:
            body = discovery.api_resource_list(registry, parts[1], parts[2])
            if body is not None:
                return json_response(body)
        if path.startswith("/openapi/"):
            return self._openapi(request, path, accept)
        if path == "/metrics":
            self._update_gauges()
            return web.Response(body=generate_latest(self.metrics.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})
        raise StatusError(404, "NotFound", "the server could not find the requested resource")

    def _openapi(self, request: web.Request, path: str, accept: str) -> web.StreamResponse:
        schemas = self.schemata.schemas
        if not _accepts_json(accept):
            raise StatusError(406, "NotAcceptable", "only application/json is served for OpenAPI")
        if path == "/openapi/v2":
            return _cached(request, openapi.encode_openapi_v2(self.registry, schemas), JSON)
        if path == "/openapi/v3":
            return _cached(request, openapi.encode_openapi_v3_index(self.registry, schemas), JSON)
        gv_path = path[len("/openapi/v3/"):]
        encoded = openapi.encode_openapi_v3(self.registry, schemas, gv_path) if gv_path else None
        if encoded is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        wanted = request.query.get("hash")
        if wanted and wanted != encoded.hash:
            raise web.HTTPMovedPermanently(f"{path}?hash={encoded.hash}")
        headers = {"Cache-Control": "public, immutable"} if wanted else None
        return _cached(request, encoded, JSON, headers)

    def _update_gauges(self) -> None:
        for prefix, cache in self.mux.caches.items():
            name = prefix[len("/registry/"):].strip("/").replace("/", ".")
            self.metrics.objects.labels(name).set(len(cache.objects))
            self.metrics.watchers.labels(name).set(len(cache._watchers))


JSON = "application/json"


def _forbidden(attrs: Attributes) -> StatusError:
    """403 in upstream's words: ``pods "x" is forbidden: User "bob" cannot get resource ...``."""
    reason = forbidden_message(attrs)
    if not attrs.resource_request:
        return StatusError(403, "Forbidden", f"forbidden: {reason}", details={})
    group_resource = attrs.resource + (f".{attrs.group}" if attrs.group else "")
    named = f'{group_resource} "{attrs.name}"' if attrs.name else group_resource
    details: dict[str, Any] = {"kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    return StatusError(403, "Forbidden", f"{named} is forbidden: {reason}", details=details)


@web.middleware
async def _status_errors(request: web.Request, handler) -> web.StreamResponse:
    """What the router itself refuses (a path it cannot match) is still a metav1.Status."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status, "BadRequest")
        message = ("the server could not find the requested resource" if e.status == 404
                   else e.reason)
        return status_response(StatusError(e.status, reason, message))


class UIDPool:
    """Random (version 4) UUIDs from one ``urandom`` read per 256 of them: the system call is
    the expensive part of ``uuid.uuid4()`` on some virtual machines."""

    BATCH = 256

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def next(self) -> str:
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = os.urandom(16 * self.BATCH), 0
        raw = self._buffer[self._offset:self._offset + 16]
        self._offset += 16
        return str(uuid.UUID(bytes=raw, version=4))


def _accepts_json(accept: str) -> bool:
    if not accept:
        return True
    return any(part.split(";")[0].strip() in ("application/json", "*/*", "application/*")
               for part in accept.split(","))


def _cached(request: web.Request, encoded, content_type: str,
            headers: dict[str, str] | None = None) -> web.Response:
    """A document serialized once, with its ETag; 304 when the client already has it."""
    etag = encoded.etag
    all_headers = {"ETag": etag, "Vary": "Accept", "Content-Type": content_type, **(headers or {})}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=all_headers)
    return web.Response(body=encoded.body, headers=all_headers)


def version_info() -> dict[str, str]:
    import platform

    return {"major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
            "minCompatibilityMajor": "1", "minCompatibilityMinor": "36",
            "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-11-24T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
            "platform": f"linux/{platform.machine()}"}


def _dry_run(q) -> bool:
    values = q.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'unsupported dry run value "{v}"; only "All" is supported')
    return bool(values)


_OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}


def _field_validation(q, method: str) -> str:
    from sampan.api.decode import field_validation_directive

    return field_validation_directive(q.get("fieldValidation"), _OPTIONS_KIND.get(method, "CreateOptions"))


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
