"""Subresources: ``status``, ``scale``, ``binding``, and a namespace's ``finalize``.

Streaming subresources (``log``, ``exec``, ``attach``, ``portforward`` of pods, and
``nodes/proxy``) are proxied to the node agent running the pod (``kubelet.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from sampan.api import errors
from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.api.selectors import from_label_selector_object
from sampan.apiserver.negotiation import Representation
from sampan.apiserver.requestinfo import RequestInfo
from sampan.apiserver.rest import Context, Entry, now_rfc3339
from sampan.apiserver.resources import json_response, read_body
from sampan.apiserver.serviceaccounts import token_request

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

SCALE_API_VERSION = "autoscaling/v1"


class Subresources:
    def __init__(self, api: "APIServer"):
        self.api = api

    async def handle(self, request: web.Request, info: RequestInfo, resource: Resource,
                     ctx: Context, rep: Representation) -> web.StreamResponse:
        sub, verb = info.subresource, info.verb
        handlers = self.api.resources
        if sub == "status":
            if verb == "get":
                return await handlers.get(request, info, resource, rep)
            if verb == "update":
                return await handlers.update(request, info, resource, ctx, rep, subresource="status")
            if verb == "patch":
                return await handlers.patch(request, info, resource, ctx, rep, subresource="status")
        elif sub == "scale":
            return await self.scale(request, info, resource, ctx, verb)
        elif sub == "binding" and verb == "create":
            return await self.binding(request, info, resource, ctx)
        elif sub == "finalize" and verb == "update" and resource.kind == "Namespace":
            return await self.finalize(request, info, resource, ctx, rep)
        elif sub in ("log", "exec", "attach", "portforward", "proxy"):
            return await self.streaming(request, info, resource, sub, ctx)
        elif sub == "token" and verb == "create" and resource.kind == "ServiceAccount":
            return await self.token(request, info)
        elif sub == "eviction" and verb == "create" and resource.kind == "Pod":
            return await self.eviction(request, info, resource, ctx)
        elif sub in ("eviction", "ephemeralcontainers", "resize", "token"):
            raise errors.method_not_supported(f"{resource.resource}/{sub}", verb)
        raise errors.method_not_supported(f"{resource.resource}/{sub}", verb)

    async def streaming(self, request: web.Request, info: RequestInfo, resource: Resource,
                        sub: str, ctx: Context) -> web.StreamResponse:
        """Streams are served by the node agent: pods/log, exec, attach, portforward and
        nodes/proxy are proxied to it (upgrades included) through the kubelet client."""
        kubelet = getattr(self.api, "kubelet", None)
        if resource.kind == "Node" and sub == "proxy":
            if kubelet is None:
                raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client")
            return await self._node_proxy(request, info, kubelet)
        if resource.kind != "Pod" or sub == "proxy":
            raise StatusError(503, "ServiceUnavailable",
                              f"the {sub} subresource of {resource.resource} is not served")
        pod = (await self.api.storage.get(resource, info.namespace, info.name)).obj
        if sub in ("exec", "attach", "portforward") and request.method == "GET":
            # A WebSocket upgrade is a GET: it must also be allowed to create (upstream's
            # AuthorizePodWebsocketUpgradeCreatePermission).
            self._authorize_create(request, info, ctx)
        q = request.query
        name, namespace = info.name, info.namespace
        node = (pod.get("spec") or {}).get("nodeName")
        if sub == "log":
            container = _stream_container(pod, q.get("container", ""))
            params = _log_params(q, name)
            if not node:
                return web.Response(body=b"", content_type="text/plain")
            path = f"/containerLogs/{namespace}/{name}/{container}"
            target = ("pods/log", name)
        else:
            params = []
            if sub == "portforward":
                path = f"/portForward/{namespace}/{name}"
                params = [("port", p) for p in q.getall("ports", [])]
            else:
                container = _stream_container(pod, q.get("container", ""))
                path = f"/{sub}/{namespace}/{name}/{container}"
                defaults = {"stdout": True, "stderr": True}
                for key, old_key in (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "")):
                    raw = q.get(key, q.get(old_key) if old_key else None)
                    if _query_bool(raw, key) if raw is not None else defaults.get(key, False):
                        params.append((key, "1"))
                if sub == "exec":
                    params += [("command", c) for c in q.getall("command", [])]
            if not node:
                raise errors.bad_request(f"pod {name} does not have a host assigned")
            target = None
        if kubelet is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client")
        host, port = await kubelet.node_address(node)
        return await kubelet.proxy(request, host, port, path, params, error_resource=target)

    def _authorize_create(self, request: web.Request, info: RequestInfo, ctx: Context) -> None:
        from sampan.apiserver.auth import ALLOW, Attributes
        from sampan.apiserver.server import _forbidden

        attrs = Attributes(ctx.user, "create", True, info.group, info.version, info.resource,
                           info.subresource, info.namespace, info.name, request.path)
        if self.api.authz.authorize(attrs)[0] != ALLOW:
            raise _forbidden(attrs)

    async def _node_proxy(self, request: web.Request, info: RequestInfo, kubelet) -> web.StreamResponse:
        """``/api/v1/nodes/{name}[:{port}]/proxy/{path}`` → the node agent's ``/{path}``."""
        raw_name = info.name
        name, _, port_text = raw_name.rpartition(":") if ":" in raw_name else (raw_name, "", "")
        if name.startswith(("https:", "http:")):
            name = name.split(":", 1)[1]
        prefix = f"/api/{info.version}/nodes/{raw_name}/proxy"
        rest = request.path[len(prefix):] if request.path.startswith(prefix) else "/"
        host, port = await kubelet.node_address(name)
        if port_text.isdigit():
            port = int(port_text)
        return await kubelet.proxy(request, host, port, rest or "/")

    # -- scale -------------------------------------------------------------------------------
    def _replicas_path(self, resource: Resource) -> tuple[str, str, str | None]:
        """(spec path, status path, label selector path) of the scaled resource."""
        if resource.crd is not None:
            from sampan.apiserver.pipeline import crd_version
            scale = ((crd_version(resource).get("subresources") or {}).get("scale") or {})
            return (scale.get("specReplicasPath", ".spec.replicas"),
                    scale.get("statusReplicasPath", ".status.replicas"),
                    scale.get("labelSelectorPath"))
        return ".spec.replicas", ".status.replicas", None

    def to_scale(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        spec_path, status_path, selector_path = self._replicas_path(resource)
        meta = obj["metadata"]
        status: dict[str, Any] = {"replicas": _get(obj, status_path) or 0}
        if selector_path:
            selector = _get(obj, selector_path)
            if selector:
                status["selector"] = selector
        else:
            selector = (obj.get("spec") or {}).get("selector")
            if isinstance(selector, dict) and resource.kind != "ReplicationController":
                status["selector"] = _selector_string(selector)
            elif isinstance(selector, dict):
                status["selector"] = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return {
            "kind": "Scale", "apiVersion": SCALE_API_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": _get(obj, spec_path) or 0},
            "status": status,
        }

    async def scale(self, request: web.Request, info: RequestInfo, resource: Resource,
                    ctx: Context, verb: str) -> web.Response:
        storage = self.api.storage
        if verb == "get":
            entry = await storage.get(resource, info.namespace, info.name,
                                      request.query.get("resourceVersion", ""))
            return json_response(self.to_scale(resource, self.api.resources.served(resource, entry)))
        if verb not in ("update", "patch"):
            raise errors.method_not_supported(f"{resource.resource}/scale", verb)
        body = await read_body(request)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        scale_resource = self.api.registry.get("autoscaling", "v1", "horizontalpodautoscalers")
        scale_kind = _SCALE_RESOURCE
        spec_path = self._replicas_path(resource)[0]
        handlers = self.api.resources

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            if current is None:
                raise errors.not_found_error(resource.resource, info.name, resource.group)
            obj = handlers.served(resource, current)
            scale = self.to_scale(resource, obj)
            if verb == "update":
                new_scale = self.api.codec.decode_object(body, content_type, scale_kind)
                rv = _dict(new_scale, "metadata").get("resourceVersion")
                if rv and rv != str(current.revision):
                    raise errors.conflict(resource.resource, info.name, resource.group)
            else:
                new_scale = self._patch_scale(scale, content_type, body, scale_resource)
            replicas = _dict(new_scale, "spec").get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid_error("Scale", info.name, [errors.invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
            if replicas == _get(obj, spec_path):
                return None
            new = orjson.loads(orjson.dumps(obj))
            _set(new, spec_path, replicas)
            from sampan.apiserver import conversion
            return handlers.updated_object(resource, current, conversion.to_storage(resource, new),
                                           handlers.manager(request, ctx), "scale", ctx)

        entry, _ = await storage.guaranteed_update(resource, info.namespace, info.name, ctx, mutate)
        assert entry is not None
        return json_response(self.to_scale(resource, handlers.served(resource, entry)))

    def _patch_scale(self, scale: dict[str, Any], content_type: str, body: bytes,
                     scale_resource: Resource | None) -> dict[str, Any]:
        from sampan.api import patch as patching

        schemas = self.api.schemata.schemas
        node = schemas.for_kind("autoscaling", "v1", "Scale") or {}
        if content_type == "application/apply-patch+yaml":
            applied = self.api.codec.decode_apply(body)
            merged = orjson.loads(orjson.dumps(scale))
            merged.setdefault("spec", {}).update(_dict(applied, "spec"))
            return merged
        return patching.apply_patch(scale, content_type, body, node, schemas, is_custom=False)

    # -- eviction ----------------------------------------------------------------------------
    async def eviction(self, request: web.Request, info: RequestInfo, resource: Resource,
                       ctx: Context) -> web.Response:
        """Delete a pod unless that would break its PodDisruptionBudget (upstream's
        ``pkg/registry/core/pod/storage/eviction.go``)."""
        body = orjson.loads(await read_body(request) or b"{}")
        if not isinstance(body, dict):
            raise errors.bad_request("the body of an Eviction must be an object")
        if (body.get("metadata") or {}).get("name") not in (None, info.name):
            raise errors.bad_request("name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        if not isinstance(options, dict):
            raise errors.bad_request("invalid deleteOptions")
        pod_entry = await self.api.storage.get_latest(resource, info.namespace, info.name)
        if pod_entry is None:
            raise errors.not_found_error("pods", info.name)
        pod = pod_entry.obj
        if not _eviction_ignores_budgets(pod):
            await self._charge_budget(pod, info.namespace, ctx)
        await self.api.resources.delete_one(resource, info.namespace, info.name, options, ctx)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)

    async def _charge_budget(self, pod: dict[str, Any], namespace: str, ctx: Context) -> None:
        pdbs = self.api.registry.get("policy", "v1", "poddisruptionbudgets")
        assert pdbs is not None
        labels = pod["metadata"].get("labels") or {}
        matching = []
        for entry in self.api.storage.cache(pdbs).objects.values():
            pdb = entry.obj
            if pdb["metadata"].get("namespace") != namespace:
                continue
            selector = from_label_selector_object((pdb.get("spec") or {}).get("selector"))
            if not selector.empty and selector.matches(labels):
                matching.append(pdb)
        if not matching:
            return
        if len(matching) > 1:
            raise StatusError(500, "InternalError", "This pod has more than one "
                              "PodDisruptionBudget, which the eviction subresource does not support.")
        pdb_name = matching[0]["metadata"]["name"]
        pod_name = pod["metadata"]["name"]
        ready = _pod_ready(pod)

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            if current is None:
                return None  # the budget went away: nothing to charge
            pdb = orjson.loads(current.raw)
            status = pdb.setdefault("status", {})
            spec = pdb.get("spec") or {}
            if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 0):
                raise _too_many_requests(f"The disruption budget {pdb_name} is still being "
                                         "processed by the server.")
            allowed = status.get("disruptionsAllowed", 0)
            if allowed < 0:
                raise errors.forbidden_error("pdb disruptions allowed is negative")
            healthy, desired = status.get("currentHealthy", 0), status.get("desiredHealthy", 0)
            if not ready and (spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
                              or healthy >= desired > 0):
                return None  # an unhealthy pod does not count against a satisfied budget
            disrupted = status.setdefault("disruptedPods", {})
            if len(disrupted) > 2000:
                raise errors.forbidden_error("DisruptedPods map too big - too many evictions "
                                             "not confirmed by PDB controller")
            if allowed == 0:
                raise _too_many_requests(f"The disruption budget {pdb_name} needs {desired} "
                                         f"healthy pods and has {healthy} currently")
            status["disruptionsAllowed"] = allowed - 1
            disrupted[pod_name] = now_rfc3339()
            return pdb

        await self.api.storage.guaranteed_update(pdbs, namespace, pdb_name, ctx, mutate)

    # -- token -------------------------------------------------------------------------------
    async def token(self, request: web.Request, info: RequestInfo) -> web.Response:
        if self.api.token_issuer is None:
            raise StatusError(503, "ServiceUnavailable",
                              "this API server has no service account signing key")
        body = orjson.loads(await read_body(request) or b"{}")
        if not isinstance(body, dict):
            raise errors.bad_request("the body of a TokenRequest must be an object")
        answer = token_request(self.api, self.api.token_issuer, info.namespace, info.name, body)
        return json_response(answer, 201)

    # -- binding -----------------------------------------------------------------------------
    async def binding(self, request: web.Request, info: RequestInfo, resource: Resource,
                      ctx: Context) -> web.Response:
        body = self.api.codec.decode_object(await read_body(request) or b"{}",
                                            request.headers.get("Content-Type", ""), _BINDING)
        return await self.bind(info.namespace, info.name, body, ctx)

    async def bind(self, namespace: str, name: str, body: dict[str, Any], ctx: Context) -> web.Response:
        """Assign a pod to a node, as ``pods/binding`` and the ``bindings`` resource do."""
        resource = self.api.registry.get("", "v1", "pods")
        assert resource is not None
        target = _dict(body, "target")
        node = target.get("name")
        if not isinstance(node, str) or not node:
            raise errors.invalid_error("Binding", name, [errors.required("target.name")])
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid_error("Binding", name, [errors.not_supported(
                "target.kind", target.get("kind"), ["Node"])])
        annotations = _dict(body, "metadata").get("annotations")
        if annotations is not None and not (isinstance(annotations, dict) and all(
                isinstance(v, str) for v in annotations.values())):
            raise errors.invalid_error("Binding", name, [errors.invalid(
                "metadata.annotations", annotations, "must be a map of strings")])
        info = RequestInfo(path="", verb="create", namespace=namespace, name=name)

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            if current is None:
                raise errors.not_found_error("pods", info.name)
            pod = orjson.loads(current.raw)
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods", info.name, "", f"pod {info.name} is being deleted, cannot be assigned to a host")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict("pods", info.name, "",
                                      f"pod {info.name} is already assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})
            status["conditions"] = conditions
            if annotations:
                pod["metadata"].setdefault("annotations", {}).update(annotations)
            return pod

        await self.api.storage.guaranteed_update(resource, info.namespace, info.name, ctx, mutate)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)

    # -- namespace finalize ------------------------------------------------------------------
    async def finalize(self, request: web.Request, info: RequestInfo, resource: Resource,
                       ctx: Context, rep: Representation) -> web.Response:
        body = self.api.codec.decode_object(await read_body(request),
                                            request.headers.get("Content-Type", ""), resource)
        finalizers = _dict(body, "spec").get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers):
            raise errors.invalid_error("Namespace", info.name, [errors.invalid(
                "spec.finalizers", finalizers, "must be a list of finalizer names")])

        def mutate(current: Entry | None) -> dict[str, Any] | None:
            if current is None:
                raise errors.not_found_error("namespaces", info.name)
            ns = orjson.loads(current.raw)
            if (ns.get("spec") or {}).get("finalizers", []) == finalizers:
                return None
            ns.setdefault("spec", {})["finalizers"] = finalizers
            return ns

        entry, _ = await self.api.storage.guaranteed_update(resource, "", info.name, ctx, mutate)
        assert entry is not None
        return self.api.resources.object_response(request, resource, entry, rep)


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def _eviction_ignores_budgets(pod: dict[str, Any]) -> bool:
    """Pods that are finished, not started or already going can always be evicted."""
    return bool(pod["metadata"].get("deletionTimestamp")) or \
        (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Pending", None)


def _too_many_requests(cause: str) -> StatusError:
    return StatusError(429, "TooManyRequests",
                       "Cannot evict pod as it would violate the pod's disruption budget.",
                       details={"causes": [{"reason": "DisruptionBudget", "message": cause}]})


_SCALE_RESOURCE = Resource("autoscaling", "v1", "scale", "Scale", True)
_BINDING = Resource("", "v1", "bindings", "Binding", True)


def _dict(obj: dict[str, Any], field: str) -> dict[str, Any]:
    """``obj[field]`` when it is an object (absent: empty); anything else is a bad request."""
    value = obj.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.bad_request(f'{field} must be an object, not {type(value).__name__}')
    return value


def _path(path: str) -> list[str]:
    return [p for p in path.strip(".").split(".") if p]


def _get(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in _path(path):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = _path(path)
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _selector_string(selector: dict[str, Any]) -> str:
    """metav1.LabelSelector → its string form, as ``status.selector`` of a Scale shows it."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), sorted(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(sorted(parts))


# -- streaming helpers ---------------------------------------------------------------------------
def _stream_container(pod: dict[str, Any], container: str) -> str:
    """The container a log/exec/attach request means, as upstream's validateContainer picks it."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    groups = [spec.get("initContainers") or [], spec.get("containers") or [],
              spec.get("ephemeralContainers") or []]
    if container:
        if not any(c.get("name") == container for group in groups for c in group):
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return container
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return containers[0]["name"]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    names = " ".join(c.get("name", "") for group in groups for c in group)
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{names}]")


def _query_bool(value: str | None, field: str) -> bool:
    if value in (None, ""):
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise errors.bad_request(f'{field}: invalid boolean value "{value}"')


def _query_int(q, field: str, name: str) -> int | None:
    raw = q.get(field)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.invalid_error("PodLogOptions", name, [errors.invalid(field, raw, "must be an integer")]) from None


def _log_params(q, name: str) -> list[tuple[str, str]]:
    """pods/log query → the node agent's /containerLogs query (upstream's LogLocation)."""
    params: list[tuple[str, str]] = []
    for flag in ("follow", "previous", "timestamps"):
        if _query_bool(q.get(flag), flag):
            params.append((flag, "true"))
    problems = []
    since_seconds = _query_int(q, "sinceSeconds", name)
    tail_lines = _query_int(q, "tailLines", name)
    limit_bytes = _query_int(q, "limitBytes", name)
    since_time = q.get("sinceTime") or None
    if since_seconds is not None and since_seconds < 1:
        problems.append(errors.invalid("sinceSeconds", since_seconds, "must be greater than 0"))
    if tail_lines is not None and tail_lines < 0:
        problems.append(errors.invalid("tailLines", tail_lines, "must be greater than or equal to 0"))
    if limit_bytes is not None and limit_bytes < 1:
        problems.append(errors.invalid("limitBytes", limit_bytes, "must be greater than 0"))
    if since_seconds is not None and since_time is not None:
        problems.append(errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    if since_time is not None:
        import datetime

        try:
            datetime.datetime.fromisoformat(since_time.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            problems.append(errors.invalid("sinceTime", since_time, "must be an RFC3339 time"))
    stream = q.get("stream")
    if stream not in (None, "", "All", "Stdout", "Stderr"):
        problems.append(errors.not_supported("stream", stream, ["All", "Stderr", "Stdout"]))
    if problems:
        raise errors.invalid_error("PodLogOptions", name, problems)
    for key, value in (("sinceSeconds", since_seconds), ("sinceTime", since_time),
                       ("tailLines", tail_lines), ("limitBytes", limit_bytes)):
        if value is not None:
            params.append((key, str(value)))
    if stream and stream != "All":
        params.append(("stream", stream))
    return params
