"""OpenAPI documents of the served API: ``/openapi/v2`` (Swagger 2.0) and ``/openapi/v3``.

Built in two steps, like upstream. First every served resource becomes the routes
k8s.io/apiserver's installer registers for it (method, path, operation name, parameters,
request and response kinds, ``x-kubernetes-action`` and ``x-kubernetes-group-version-kind``);
then a builder renders the routes as one Swagger 2.0 document (kube-openapi pkg/builder) or as
one OpenAPI 3.0 document per group version (pkg/builder3), with every schema the routes
reference, transitively. Built-in schemas come from ``sampan.api.schema`` (the normalised
structural form) converted back to each format's conventions; custom resources take theirs
from their CustomResourceDefinition, as apiextensions-apiserver's builder does.

kubectl reads the v3 documents: ``explain`` finds a resource's kind through the
``x-kubernetes-group-version-kind`` of its operations and then the schema carrying that kind;
``apply`` and ``create`` check the PATCH operation of a kind for the ``fieldValidation``
parameter (server-side validation) and for an ``application/strategic-merge-patch+json``
request body (client-side apply computes a strategic merge patch from the schema).

Documents are cached per ``registry.generation`` and serialized once with sorted keys, so
their hashes (the v3 ``?hash=`` and every ETag) are equal on every API server with the same
resources. Returned documents are shared: treat them as read-only.
"""

from __future__ import annotations

import base64
import hashlib
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import orjson

from sampan.api import schema as api_schema
from sampan.api.registry import Registry, Resource
from sampan.apiserver.discovery import Encoded, RegistryCache, encode, subresource

Schema = dict[str, Any]
GVK = tuple[str, str, str]

# What the API server answers with. Upstream also lists application/yaml and
# application/vnd.kubernetes.protobuf: add them here once the server negotiates them.
MEDIA_TYPES = ("application/json",)
STREAM_MEDIA_TYPES = ("application/json;stream=watch",)
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
# Custom resources take no strategic merge patch (their schemas carry no patch strategy).
CRD_PATCH_TYPES = tuple(t for t in PATCH_TYPES if "strategic" not in t)

_V2_REF = "#/definitions/"
_V3_REF = "#/components/schemas/"
_DEFS_REF = "#/$defs/"  # how sampan.api.schema writes references
_GVK_EXT = "x-kubernetes-group-version-kind"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_WATCH_EVENT = _META + "WatchEvent"
_PATCH = _META + "Patch"
_OBJECT_META = _META + "ObjectMeta"
_LIST_META = _META + "ListMeta"

_INFO = {"title": "Kubernetes", "version": f"v{api_schema.KUBERNETES_VERSION}"}
_SECURITY_SCHEME = {"BearerToken": {"description": "Bearer Token authentication",
                                    "in": "header", "name": "authorization", "type": "apiKey"}}
_SECURITY = [{"BearerToken": []}]


# --- parameters --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # "query" or "path"
    type: str  # "string", "integer" or "boolean"
    description: str
    required: bool = False


def _query(name: str, type_: str, description: str) -> Param:
    return Param(name, "query", type_, description)


_RESOURCE_VERSION_DOC = (
    "resourceVersion sets a constraint on what resource versions a request may be served "
    "from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions "
    "for details.\n\nDefaults to unset")
_DRY_RUN_DOC = (
    "When present, indicates that modifications should not be persisted. An invalid or "
    "unrecognized dryRun directive will result in an error response and no further processing "
    "of the request. Valid values are: - All: all dry run stages will be processed")
_FIELD_MANAGER_DOC = (
    "fieldManager is a name associated with the actor or entity that is making these changes. "
    "The value must be less than or 128 characters long, and only contain printable "
    "characters, as defined by https://golang.org/pkg/unicode/#IsPrint.")
_FIELD_VALIDATION_DOC = (
    "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This "
    "will ignore any unknown fields that are silently dropped from the object, and will ignore "
    "all but the last duplicate field that the decoder encounters. This is the default "
    "behavior prior to v1.23. - Warn: This will send a warning via the standard warning "
    "response header for each unknown field that is dropped from the object, and for each "
    "duplicate field that is encountered. The request will still succeed if there are no "
    "other errors, and will only persist the last of any duplicate fields. This is the default "
    "in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown "
    "fields would be dropped from the object, or if any duplicate fields are present. The "
    "error returned from the server will contain all unknown and duplicate fields encountered.")

PRETTY = _query("pretty", "string", (
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
    "indicates a browser or command-line HTTP tool (curl and wget)."))
NAMESPACE = Param("namespace", "path", "string",
                  "object name and auth scope, such as for teams and projects", required=True)
PROXY_PATH = Param("path", "path", "string", "path to the resource", required=True)

LIST_OPTIONS = (
    _query("labelSelector", "string",
           "A selector to restrict the list of returned objects by their labels. Defaults to "
           "everything."),
    _query("fieldSelector", "string",
           "A selector to restrict the list of returned objects by their fields. Defaults to "
           "everything."),
    _query("watch", "boolean",
           "Watch for changes to the described resources and return them as a stream of add, "
           "update, and remove notifications. Specify resourceVersion."),
    _query("allowWatchBookmarks", "boolean",
           "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do "
           "not implement bookmarks may ignore this flag and bookmarks are sent at the server's "
           "discretion. Clients should not assume bookmarks are returned at any specific "
           "interval, nor may they assume the server will send any BOOKMARK event during a "
           "session. If this is not a watch, this field is ignored."),
    _query("resourceVersion", "string", _RESOURCE_VERSION_DOC),
    _query("resourceVersionMatch", "string",
           "resourceVersionMatch determines how resourceVersion is applied to list calls. It is "
           "highly recommended that resourceVersionMatch be set for list calls where "
           "resourceVersion is set See "
           "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for "
           "details.\n\nDefaults to unset"),
    _query("timeoutSeconds", "integer",
           "Timeout for the list/watch call. This limits the duration of the call, regardless "
           "of any activity or inactivity."),
    _query("limit", "integer",
           "limit is a maximum number of responses to return for a list call. If more items "
           "exist, the server will set the `continue` field on the list metadata to a value "
           "that can be used with the same initial query to retrieve the next set of results. "
           "Setting a limit may return fewer than the requested amount of items (up to zero "
           "items) in the event all requested objects are filtered out and clients should only "
           "use the presence of the continue field to determine whether more results are "
           "available. Servers may choose not to support the limit argument and will return "
           "all of the available results. If limit is specified and the continue field is "
           "empty, clients may assume that no more results are available. This field is not "
           "supported if watch is true.\n\nThe server guarantees that the objects returned "
           "when using continue will be identical to issuing a single list call without a "
           "limit - that is, no objects created, modified, or deleted after the first request "
           "is issued will be included in any subsequent continued requests. This is sometimes "
           "referred to as a consistent snapshot, and ensures that a client that is using "
           "limit to receive smaller chunks of a very large result can ensure they see all "
           "possible objects. If objects are updated during a chunked list the version of the "
           "object that was present at the time the first list result was calculated is "
           "returned."),
    _query("continue", "string",
           "The continue option should be set when retrieving more results from the server. "
           "Since this value is server defined, clients may only use the continue value from a "
           "previous query result with identical query parameters (except for the value of "
           "continue) and the server may reject a continue value it does not recognize. If the "
           "specified continue value is no longer valid whether due to expiration (generally "
           "five to fifteen minutes) or a configuration change on the server, the server will "
           "respond with a 410 ResourceExpired error together with a continue token. If the "
           "client needs a consistent list, it must restart their list without the continue "
           "field. Otherwise, the client may send another list request with the token received "
           "with the 410 error, the server will respond with a list starting from the next "
           "key, but from the latest snapshot, which is inconsistent from the previous list "
           "results - objects that are created, modified, or deleted after the first list "
           "request will be included in the response, as long as their keys are after the "
           "\"next key\".\n\nThis field is not supported when watch is true. Clients may start "
           "a watch from the last resourceVersion value returned by the server and not miss "
           "any modifications."),
    _query("sendInitialEvents", "boolean",
           "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the "
           "watch stream will begin with synthetic events to produce the current state of "
           "objects in the collection. Once all such events have been sent, a synthetic "
           "\"Bookmark\" event  will be sent. The bookmark will report the ResourceVersion (RV) "
           "corresponding to the set of objects, and be marked with "
           "`\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream "
           "will proceed as usual, sending watch events corresponding to changes (subsequent "
           "to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we "
           "require `resourceVersionMatch` option to also be set. The semantic of the watch "
           "request is as following: - `resourceVersionMatch` = NotOlderThan\n  is interpreted "
           "as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark "
           "event is send when the state is synced\n  to a `resourceVersion` at least as fresh "
           "as the one provided by the ListOptions.\n  If `resourceVersion` is unset, this is "
           "interpreted as \"consistent read\" and the\n  bookmark event is send when the state "
           "is synced at least to the moment\n  when request started being processed.\n- "
           "`resourceVersionMatch` set to any other value or unset\n  Invalid error is "
           "returned.\n\nDefaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` "
           "(for backward compatibility reasons) and to false otherwise."),
)
CREATE_OPTIONS = (
    _query("dryRun", "string", _DRY_RUN_DOC),
    _query("fieldManager", "string", _FIELD_MANAGER_DOC),
    _query("fieldValidation", "string", _FIELD_VALIDATION_DOC),
)
UPDATE_OPTIONS = CREATE_OPTIONS
PATCH_OPTIONS = (
    _query("dryRun", "string", _DRY_RUN_DOC),
    _query("force", "boolean",
           "Force is going to \"force\" Apply requests. It means user will re-acquire "
           "conflicting fields owned by other people. Force flag must be unset for non-apply "
           "patch requests."),
    _query("fieldManager", "string",
           _FIELD_MANAGER_DOC + " This field is required for apply requests "
           "(application/apply-patch) but optional for non-apply patch types (JsonPatch, "
           "MergePatch, StrategicMergePatch)."),
    _query("fieldValidation", "string", _FIELD_VALIDATION_DOC),
)
DELETE_OPTIONS = (
    _query("gracePeriodSeconds", "integer",
           "The duration in seconds before the object should be deleted. Value must be "
           "non-negative integer. The value zero indicates delete immediately. If this value "
           "is nil, the default grace period for the specified type will be used. Defaults to "
           "a per object value if not specified. zero means delete immediately."),
    _query("orphanDependents", "boolean",
           "Deprecated: please use the PropagationPolicy, this field will be deprecated in "
           "1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" "
           "finalizer will be added to/removed from the object's finalizers list. Either this "
           "field or PropagationPolicy may be set, but not both."),
    _query("propagationPolicy", "string",
           "Whether and how garbage collection will be performed. Either this field or "
           "OrphanDependents may be set, but not both. The default policy is decided by the "
           "existing finalizer set in the metadata.finalizers and the resource-specific "
           "default policy. Acceptable values are: 'Orphan' - orphan the dependents; "
           "'Background' - allow the garbage collector to delete the dependents in the "
           "background; 'Foreground' - a cascading policy that deletes all dependents in the "
           "foreground."),
    _query("dryRun", "string", _DRY_RUN_DOC),
    _query("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean",
           "if set to true, it will trigger an unsafe deletion of the resource in case the "
           "normal deletion flow fails with a corrupt object error. A resource is considered "
           "corrupt if it can not be retrieved from the underlying storage successfully "
           "because of a) its data can not be transformed e.g. decryption failure, or b) it "
           "fails to decode into an object. NOTE: unsafe deletion ignores finalizer "
           "constraints, skips precondition checks, and removes the object from the storage. "
           "WARNING: This may potentially break the cluster if the workload associated with "
           "the resource being unsafe-deleted relies on normal deletion flow. Use only if you "
           "REALLY know what you are doing. The default value is false, and the user must opt "
           "in to enable it"),
)
DELETECOLLECTION_OPTIONS = DELETE_OPTIONS + tuple(
    p for p in LIST_OPTIONS if p.name not in ("watch", "allowWatchBookmarks"))

_CONTAINER_STREAM_DOC = ("Container in which to execute the command. Defaults to only "
                         "container if there is only one container in the pod.")
LOG_OPTIONS = (
    _query("container", "string",
           "The container for which to stream logs. Defaults to only container if there is one "
           "container in the pod."),
    _query("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
    _query("previous", "boolean",
           "Return previous terminated container logs. Defaults to false."),
    _query("sinceSeconds", "integer",
           "A relative time in seconds before the current time from which to show logs. If "
           "this value precedes the time a pod was started, only logs since the pod start will "
           "be returned. If this value is in the future, no logs will be returned. Only one of "
           "sinceSeconds or sinceTime may be specified."),
    _query("timestamps", "boolean",
           "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of "
           "log output. Defaults to false."),
    _query("tailLines", "integer",
           "If set, the number of lines from the end of the logs to show. If not specified, "
           "logs are shown from the creation of the container or sinceSeconds or sinceTime. "
           "Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or "
           "\"All\"."),
    _query("limitBytes", "integer",
           "If set, the number of bytes to read from the server before terminating the log "
           "output. This may not display a complete final line of logging, and may return "
           "slightly more or slightly less than the specified limit."),
    _query("insecureSkipTLSVerifyBackend", "boolean",
           "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the "
           "validity of the serving certificate of the backend it is connecting to.  This will "
           "make the HTTPS connection between the apiserver and the backend insecure. This "
           "means the apiserver cannot verify the log data it is receiving came from the real "
           "kubelet.  If the kubelet is configured to verify the apiserver's TLS credentials, "
           "it does not mean the connection to the real kubelet is vulnerable to a man in the "
           "middle attack (e.g. an attacker could not intercept the actual log data coming "
           "from the real kubelet)."),
    _query("stream", "string",
           "Specify which container log stream to return to the client. Acceptable values are "
           "\"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both "
           "stdout and stderr are returned interleaved. Note that when \"TailLines\" is "
           "specified, \"Stream\" can only be set to nil or \"All\"."),
)
EXEC_OPTIONS = (
    _query("stdin", "boolean",
           "Redirect the standard input stream of the pod for this call. Defaults to false."),
    _query("stdout", "boolean", "Redirect the standard output stream of the pod for this call."),
    _query("stderr", "boolean", "Redirect the standard error stream of the pod for this call."),
    _query("tty", "boolean",
           "TTY if true indicates that a tty will be allocated for the exec call. Defaults to "
           "false."),
    _query("container", "string", _CONTAINER_STREAM_DOC),
    _query("command", "string",
           "Command is the remote command to execute. argv array. Not executed within a shell."),
)
ATTACH_OPTIONS = (
    _query("stdin", "boolean",
           "Stdin if true, redirects the standard input stream of the pod for this call. "
           "Defaults to false."),
    _query("stdout", "boolean",
           "Stdout if true indicates that stdout is to be redirected for the attach call. "
           "Defaults to true."),
    _query("stderr", "boolean",
           "Stderr if true indicates that stderr is to be redirected for the attach call. "
           "Defaults to true."),
    _query("tty", "boolean",
           "TTY if true indicates that a tty will be allocated for the attach call. This is "
           "passed through the container runtime so the tty is allocated on the worker node by "
           "the container runtime. Defaults to false."),
    _query("container", "string",
           "The container in which to execute the command. Defaults to only container if there "
           "is only one container in the pod."),
)
PORTFORWARD_OPTIONS = (
    _query("ports", "integer", "List of ports to forward Required when using WebSockets"),
)
_PROXY_PATH_DOCS = {
    "Pod": "Path is the URL path to use for the current proxy request to pod.",
    "Node": "Path is the URL path to use for the current proxy request to node.",
    "Service": (
        "Path is the part of URLs that include service endpoints, suffixes, and parameters to "
        "use for the current proxy request to service. For example, the whole request URL is "
        "http://localhost/api/v1/namespaces/kube-system/services/elasticsearch-logging/"
        "_search?q=user:kimchy. Path is _search?q=user:kimchy."),
}


def _connect_options(sub_name: str, parent_kind: str) -> tuple[Param, ...]:
    if sub_name == "proxy":
        doc = _PROXY_PATH_DOCS.get(parent_kind, "Path is the URL path to use for the current "
                                   "proxy request.")
        return (_query("path", "string", doc),)
    return {"exec": EXEC_OPTIONS, "attach": ATTACH_OPTIONS,
            "portforward": PORTFORWARD_OPTIONS}.get(sub_name, ())


# Stores that answer DELETE with the deleted object rather than a Status.
_DELETE_RETURNS_OBJECT = {("", "pods"), ("", "services"), ("", "persistentvolumes"),
                          ("", "persistentvolumeclaims")}


# --- routes ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Response:
    code: int
    description: str
    schema: str | None  # a definition name; None for a plain string body


@dataclass(frozen=True, slots=True)
class Route:
    """One operation, as upstream's installer registers it with go-restful."""

    document: str  # the OpenAPI v3 document holding it: "api/v1", "apis/apps/v1", "apis", ...
    method: str  # lower case: "get", "put", ...
    path: str
    operation: str  # upstream's route operation, e.g. "readNamespacedPod" (see operation_id)
    description: str
    params: tuple[Param, ...]
    responses: tuple[Response, ...]
    produces: tuple[str, ...]
    consumes: tuple[str, ...] = ("*/*",)
    body: str | None = None  # definition name of the request body
    body_required: bool = True
    action: str | None = None  # x-kubernetes-action
    gvk: GVK | None = None  # x-kubernetes-group-version-kind

    @property
    def operation_id(self) -> str:
        return operation_id_and_tags(self.operation, self.path)[0]


_VERBS = ("get", "log", "read", "replace", "patch", "delete", "deletecollection", "watch",
          "connect", "proxy", "list", "create")


def operation_id_and_tags(operation: str, path: str) -> tuple[str, list[str]]:
    """Upstream's GetOperationIDAndTags: fold the group and version of ``path`` in after the
    verb, ``readNamespacedPod`` at ``/api/v1/...`` → ``readCoreV1NamespacedPod``."""
    # The shortest verb wins, as upstream's trie does: "deletecollectionX" → "delete" + ...
    verb = min((v for v in _VERBS if operation.startswith(v)), key=len, default="")
    rest = operation[len(verb):]
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        parts = ["apis", "core", *parts[1:]]
    tags = []
    if len(parts) >= 2 and parts[0] == "apis":
        group = parts[1].removesuffix(".k8s.io")
        verb += _valid_operation_id(group, bool(verb))
        tag = _valid_operation_id(group, False)
        if len(parts) > 2:
            verb += _valid_operation_id(parts[2], bool(verb))
            tag += "_" + _valid_operation_id(parts[2], False)
        tags.append(tag)
    elif parts[0]:
        tags.append(_valid_operation_id(parts[0], False))
    return verb + _valid_operation_id(rest, bool(verb)), tags


def _valid_operation_id(s: str, capitalize_first: bool) -> str:
    out, capitalize = [], capitalize_first
    for i, ch in enumerate(s):
        if ch.isalpha() or ch == "_" or (i and ch.isdigit()):
            out.append(ch.upper() if capitalize else ch)
            capitalize = False
        else:
            capitalize = True
    return "".join(out)


def _article(noun: str) -> str:
    """Upstream's GetArticleForNoun, padded with spaces."""
    if noun.endswith("s") and not noun.endswith("ss"):
        return " "
    return " an " if noun[0].lower() in "aeiou" else " a "


class _Kinds:
    """Definition names of kinds: built-in ones from the schemas, custom ones from CRDs."""

    def __init__(self, schemas: api_schema.Schemas, crds: dict[GVK, str]):
        self._schemas = schemas
        self._crds = crds

    def name(self, group: str, version: str, kind: str) -> str | None:
        return self._crds.get((group, version, kind)) or self._schemas.definition_name(
            group, version, kind)


def _group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _resource_routes(r: Resource, kinds: _Kinds) -> Iterator[Route]:
    definition = kinds.name(r.group, r.version, r.kind)
    if definition is None:
        return iter(())  # a kind without a schema: nothing to describe
    return _ResourceRoutes(r, kinds, definition).routes()


class _ResourceRoutes:
    """The routes of one resource and its subresources (upstream's registerResourceHandlers)."""

    def __init__(self, r: Resource, kinds: _Kinds, definition: str):
        self.r = r
        self.kinds = kinds
        self.object = definition
        self.gvk: GVK = (r.group, r.version, r.kind)
        self.crd = r.crd is not None
        self.document = _group_version_path(r.group, r.version)
        self.prefix = "/" + self.document
        self.scope = f"namespaces/{{namespace}}/{r.resource}" if r.namespaced else r.resource
        self.namespaced = "Namespaced" if r.namespaced else ""

    def routes(self) -> Iterator[Route]:
        yield from self._collection()
        yield from self._item()
        for name in sorted(self.r.subresources):
            yield from self._subresource(name)

    # paths and shared parameters

    def _path_params(self, item: bool, kind: str) -> tuple[Param, ...]:
        params = (NAMESPACE,) if self.r.namespaced else ()
        if item:
            params += (Param("name", "path", "string", f"name of the {kind}", required=True),)
        return params

    def _route(self, method: str, path: str, operation: str, description: str,
               params: Iterable[Param], responses: Iterable[Response], **kw: Any) -> Route:
        kw.setdefault("produces", MEDIA_TYPES)
        kw.setdefault("gvk", self.gvk)
        if self.crd and method != "patch":
            kw.setdefault("consumes", ("application/json", "application/yaml"))
        return Route(self.document, method, path, operation, description, tuple(params),
                     tuple(responses), **kw)

    # collection: list, create, deletecollection, watch list

    def _collection(self) -> Iterator[Route]:
        r, kind, ns = self.r, self.r.kind, self.namespaced
        params = self._path_params(False, kind) + (PRETTY,)
        path = f"{self.prefix}/{self.scope}"
        if "list" in r.verbs:
            yield from self._lists(path, f"list{ns}{kind}", params)
        if "create" in r.verbs:
            yield self._create(path, f"create{ns}{kind}", f"create{_article(kind)}{kind}",
                               params, self.object, self.gvk)
        if "deletecollection" in r.verbs:
            yield self._route(
                "delete", path, f"deletecollection{ns}{kind}", f"delete collection of {kind}",
                params + DELETECOLLECTION_OPTIONS, [Response(200, "OK", _STATUS)],
                body=_DELETE_OPTIONS, body_required=False, action="deletecollection")
        if "list" in r.verbs and "watch" in r.verbs:
            yield from self._watch_lists(f"{self.prefix}/watch/{self.scope}",
                                         f"watch{ns}{kind}List", params)

    def _lists(self, path: str, operation: str, params: tuple[Param, ...]) -> Iterator[Route]:
        kind = self.r.kind
        what = "list or watch" if "watch" in self.r.verbs else "list"
        list_kind = self.kinds.name(self.r.group, self.r.version, self.r.list_kind)
        if list_kind is None:
            return
        description = f"{what} objects of kind {kind}"
        responses = [Response(200, "OK", list_kind)]
        produces = MEDIA_TYPES + STREAM_MEDIA_TYPES
        yield self._route("get", path, operation, description, params + LIST_OPTIONS, responses,
                          produces=produces, action="list")
        if self.r.namespaced:
            yield self._route("get", f"{self.prefix}/{self.r.resource}",
                              f"list{kind}ForAllNamespaces", description,
                              (PRETTY,) + LIST_OPTIONS, responses, produces=produces,
                              action="list")

    def _watch_lists(self, path: str, operation: str,
                     params: tuple[Param, ...]) -> Iterator[Route]:
        kind = self.r.kind
        description = (f"watch individual changes to a list of {kind}. deprecated: use the "
                       "'watch' parameter with a list operation instead.")
        responses = [Response(200, "OK", _WATCH_EVENT)]
        produces = MEDIA_TYPES + STREAM_MEDIA_TYPES
        yield self._route("get", path, operation, description, params + LIST_OPTIONS,
                          responses, produces=produces, action="watchlist")
        if self.r.namespaced:
            yield self._route("get", f"{self.prefix}/watch/{self.r.resource}",
                              f"watch{kind}ListForAllNamespaces", description,
                              (PRETTY,) + LIST_OPTIONS, responses, produces=produces,
                              action="watchlist")

    def _create(self, path: str, operation: str, description: str, params: tuple[Param, ...],
                definition: str, gvk: GVK) -> Route:
        responses = [Response(200, "OK", definition), Response(201, "Created", definition),
                     Response(202, "Accepted", definition)]
        return self._route("post", path, operation, description, params + CREATE_OPTIONS,
                           responses, body=definition, action="post", gvk=gvk)

    # item: read, replace, patch, delete, watch

    def _item(self) -> Iterator[Route]:
        r, kind, ns = self.r, self.r.kind, self.namespaced
        path = f"{self.prefix}/{self.scope}/{{name}}"
        params = self._path_params(True, kind) + (PRETTY,)
        yield from self._read_write(path, f"{ns}{kind}", "the specified " + kind, params,
                                    self.object, self.gvk, r.verbs)
        if "delete" in r.verbs:
            returned = self.object if (r.group, r.resource) in _DELETE_RETURNS_OBJECT else _STATUS
            yield self._route(
                "delete", path, f"delete{ns}{kind}", f"delete{_article(kind)}{kind}",
                params + DELETE_OPTIONS,
                [Response(200, "OK", returned), Response(202, "Accepted", returned)],
                body=_DELETE_OPTIONS, body_required=False, action="delete")
        if "watch" in r.verbs:
            yield self._route(
                "get", f"{self.prefix}/watch/{self.scope}/{{name}}", f"watch{ns}{kind}",
                f"watch changes to an object of kind {kind}. deprecated: use the 'watch' "
                "parameter with a list operation instead, filtered to a single item with the "
                "'fieldSelector' parameter.",
                params + LIST_OPTIONS, [Response(200, "OK", _WATCH_EVENT)],
                produces=MEDIA_TYPES + STREAM_MEDIA_TYPES, action="watch")

    def _read_write(self, path: str, name: str, target: str, params: tuple[Param, ...],
                    definition: str, gvk: GVK, verbs: Iterable[str]) -> Iterator[Route]:
        """get → read, update → replace, patch → patch of ``target`` (an object or one of its
        subresources)."""
        ok, created = Response(200, "OK", definition), Response(201, "Created", definition)
        if "get" in verbs:
            yield self._route("get", path, "read" + name, "read " + target, params, [ok],
                              action="get", gvk=gvk)
        if "update" in verbs:
            yield self._route("put", path, "replace" + name, "replace " + target,
                              params + UPDATE_OPTIONS, [ok, created], body=definition,
                              action="put", gvk=gvk)
        if "patch" in verbs:
            patch_types = CRD_PATCH_TYPES if self.crd else PATCH_TYPES
            yield self._route("patch", path, "patch" + name, "partially update " + target,
                              params + PATCH_OPTIONS, [ok, created], body=_PATCH,
                              consumes=patch_types, action="patch", gvk=gvk)

    # subresources

    def _subresource(self, name: str) -> Iterator[Route]:
        r, sub = self.r, subresource(name)
        kind = sub.kind_for(r)
        group, version = sub.group_version_for(r)
        gvk: GVK = (group, version, kind)
        path = f"{self.prefix}/{self.scope}/{{name}}/{name}"
        params = self._path_params(True, kind)
        operation = f"{self.namespaced}{r.kind}{name.capitalize()}"
        if sub.connect_methods:
            yield from self._connect(path, operation, name, params, gvk, sub.connect_methods)
        elif name == "log":
            yield self._route(
                "get", path, "read" + operation, f"read log of the specified {r.kind}",
                params + (PRETTY,) + LOG_OPTIONS, [Response(200, "OK", None)],
                produces=("text/plain",) + MEDIA_TYPES, action="get", gvk=gvk)
        else:
            definition = self.kinds.name(group, version, kind)
            if definition is None:
                return
            params += (PRETTY,)
            if "create" in sub.verbs:
                yield self._create(path, "create" + operation,
                                   f"create {name} of{_article(r.kind)}{r.kind}", params,
                                   definition, gvk)
            yield from self._read_write(path, operation, f"{name} of the specified {r.kind}",
                                        params, definition, gvk, sub.verbs)

    def _connect(self, path: str, operation: str, name: str, params: tuple[Param, ...],
                 gvk: GVK, methods: tuple[str, ...]) -> Iterator[Route]:
        options = _connect_options(name, self.r.kind)
        variants = [(path, params, "")]
        if name == "proxy":
            variants.append((path + "/{path}", params + (PROXY_PATH,), "WithPath"))
        for route_path, route_params, suffix in variants:
            for method in methods:
                yield self._route(
                    method.lower(), route_path,
                    f"connect{method.capitalize()}{operation}{suffix}",
                    f"connect {method} requests to {name} of {self.r.kind}",
                    route_params + options, [Response(200, "OK", None)],
                    produces=("*/*",), action="connect", gvk=gvk)


def _discovery_routes(registry: Registry) -> Iterator[Route]:
    """The discovery endpoints themselves, as upstream documents them."""
    def get(document: str, path: str, operation: str, description: str,
            definition: str) -> Route:
        return Route(document, "get", path, operation, description, (),
                     (Response(200, "OK", definition),), MEDIA_TYPES, MEDIA_TYPES)

    yield get("api", "/api/", "getAPIVersions", "get available API versions",
              _META + "APIVersions")
    yield get("apis", "/apis/", "getAPIVersions", "get available API versions",
              _META + "APIGroupList")
    yield get("version", "/version/", "getCodeVersion", "get the code version",
              "io.k8s.apimachinery.pkg.version.Info")
    for group, versions in registry.group_versions().items():
        if group:
            yield get(f"apis/{group}", f"/apis/{group}/", "getAPIGroup",
                      "get information of a group", _META + "APIGroup")
        for version in versions:
            document = _group_version_path(group, version)
            yield get(document, f"/{document}/", "getAPIResources", "get available resources",
                      _META + "APIResourceList")


# --- schema conversion -------------------------------------------------------------------------

_INT_OR_STRING = api_schema.INT_OR_STRING
_QUANTITY = api_schema.QUANTITY
_INT_OR_STRING_DOC = (
    "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
    "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
    "to have, for example, a JSON field that can accept a name or number.")
_API_VERSION_PROPERTY = {
    "description": "APIVersion defines the versioned schema of this representation of an "
                   "object. Servers should convert recognized schemas to the latest internal "
                   "value, and may reject unrecognized values. More info: https://git.k8s.io/"
                   "community/contributors/devel/sig-architecture/api-conventions.md#resources",
    "type": "string",
}
_KIND_PROPERTY = {
    "description": "Kind is a string value representing the REST resource this object "
                   "represents. Servers may infer this from the endpoint the client submits "
                   "requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/"
                   "community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
    "type": "string",
}
_OBJECT_META_DOC = ("Standard object's metadata. More info: https://git.k8s.io/community/"
                    "contributors/devel/sig-architecture/api-conventions.md#metadata")
_LIST_META_DOC = ("Standard list metadata. More info: https://git.k8s.io/community/"
                  "contributors/devel/sig-architecture/api-conventions.md#metadata")

# Keys whose values are schemas, or maps or lists of schemas; everything else is copied.
_SCHEMA_MAPS = ("properties", "patternProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")


def _convert(node: Schema, ref_prefix: str, wrap_refs: bool, drop: tuple[str, ...]) -> Schema:
    """A normalised schema node in v2 (``wrap_refs`` False) or v3 form: references re-rooted,
    ``drop`` keys removed and, for v3, a ``$ref`` with siblings wrapped in ``allOf`` as
    kube-openapi's builder3 does (a v3 ``$ref`` may have no siblings)."""
    out: Schema = {}
    for key, value in node.items():
        if key in drop:
            continue
        if key == "$ref":
            value = ref_prefix + value.removeprefix(_DEFS_REF)
        elif key in _SCHEMA_MAPS:
            value = {k: _convert(v, ref_prefix, wrap_refs, drop) for k, v in value.items()}
        elif key in _SCHEMA_LISTS:
            value = [_convert(v, ref_prefix, wrap_refs, drop) for v in value]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            value = _convert(value, ref_prefix, wrap_refs, drop)
        out[key] = value
    if wrap_refs and "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _refs(node: Any, found: set[str]) -> set[str]:
    """Every definition name a converted schema (or any document part) refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rpartition("/")[2])
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


class _BuiltinDefinitions:
    """Built-in definitions converted to v2 and v3 form, once per definition and format."""

    def __init__(self, schemas: api_schema.Schemas):
        self._schemas = schemas
        self._converted: dict[tuple[str, bool], Schema] = {}
        self._refs: dict[str, frozenset[str]] = {}

    def get(self, name: str, v2: bool) -> Schema | None:
        key = (name, v2)
        if key not in self._converted:
            source = self._schemas.definitions.get(name)
            if source is None:
                return None
            self._converted[key] = self._convert(name, source, v2)
        return self._converted[key]

    def refs(self, name: str) -> frozenset[str]:
        if name not in self._refs:
            self._refs[name] = frozenset(_refs(self.get(name, True) or {}, set()))
        return self._refs[name]

    def _convert(self, name: str, source: Schema, v2: bool) -> Schema:
        if name == _INT_OR_STRING:
            if v2:
                return {"description": _INT_OR_STRING_DOC, "format": "int-or-string",
                        "type": "string"}
            return {"description": _INT_OR_STRING_DOC, "format": "int-or-string",
                    "oneOf": [{"type": "integer"}, {"type": "string"}]}
        if name == _QUANTITY:
            if v2:
                return {"description": source["description"], "type": "string"}
            return {"description": source["description"],
                    "oneOf": [{"type": "string"}, {"type": "number"}]}
        # nullable and the free-form marker are sampan.api.schema's normalisation, not upstream's
        out = _convert(source, _V2_REF if v2 else _V3_REF, not v2, ("nullable",))
        out.pop("x-kubernetes-preserve-unknown-fields", None)
        for field in ("apiVersion", "kind"):  # kubernetes-validate pins these with an enum
            prop = out.get("properties", {}).get(field)
            if prop and "enum" in prop:
                out["properties"][field] = {k: v for k, v in prop.items() if k != "enum"}
        return out


_builtin_cache: weakref.WeakKeyDictionary[api_schema.Schemas, _BuiltinDefinitions] = (
    weakref.WeakKeyDictionary())


def _builtins(schemas: api_schema.Schemas) -> _BuiltinDefinitions:
    found = _builtin_cache.get(schemas)
    if found is None:
        found = _builtin_cache[schemas] = _BuiltinDefinitions(schemas)
    return found


# --- custom resource schemas (apiextensions-apiserver's openapi builder) -----------------------

def crd_model_name(group: str, version: str, kind: str) -> str:
    """``stable.example.com``/v1 CronTab → ``com.example.stable.v1.CronTab``."""
    return f"{'.'.join(reversed(group.split('.')))}.{version}.{kind}"


def _crd_version(crd: dict, version: str) -> dict:
    for v in crd.get("spec", {}).get("versions", ()):
        if v.get("name") == version:
            return v
    return {}


def _crd_list_kind(r: Resource) -> str:
    return (r.crd or {}).get("spec", {}).get("names", {}).get("listKind") or r.list_kind


def _crd_definitions(r: Resource, v2: bool) -> dict[str, Schema]:
    """The object and list definitions of one served version of a custom resource."""
    crd = r.crd or {}
    list_kind = _crd_list_kind(r)
    plural = crd.get("spec", {}).get("names", {}).get("plural") or r.resource
    source = (_crd_version(crd, r.version).get("schema") or {}).get("openAPIV3Schema")
    preserve = crd.get("spec", {}).get("preserveUnknownFields", False)
    name = crd_model_name(r.group, r.version, r.kind)
    return {
        name: _crd_object(r, source, preserve, v2),
        crd_model_name(r.group, r.version, list_kind): _crd_list(r, name, list_kind, plural, v2),
    }


def _crd_object(r: Resource, source: Schema | None, preserve: bool, v2: bool) -> Schema:
    gvk = [{"group": r.group, "kind": r.kind, "version": r.version}]
    if source is None or (v2 and (preserve or source.get("x-kubernetes-preserve-unknown-fields"))):
        # kubectl's v2 validation would reject unknown fields next to declared ones
        return {"type": "object", _GVK_EXT: gvk}
    out = _crd_node_v2(source) if v2 else _crd_node_v3(source)
    properties = dict(out.get("properties", {}))
    properties["apiVersion"] = dict(_API_VERSION_PROPERTY)
    properties["kind"] = dict(_KIND_PROPERTY)
    properties["metadata"] = _ref_property(_OBJECT_META, _OBJECT_META_DOC, v2)
    return {**out, "properties": properties, _GVK_EXT: gvk}


def _crd_list(r: Resource, item: str, list_kind: str, plural: str, v2: bool) -> Schema:
    return {
        "description": f"{list_kind} is a list of {r.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": dict(_API_VERSION_PROPERTY),
            "kind": dict(_KIND_PROPERTY),
            "items": {
                "description": f"List of {plural}. More info: https://git.k8s.io/community/"
                               "contributors/devel/sig-architecture/api-conventions.md",
                "type": "array",
                "items": {"$ref": (_V2_REF if v2 else _V3_REF) + item},
            },
            "metadata": _ref_property(_LIST_META, _LIST_META_DOC, v2),
        },
        _GVK_EXT: [{"group": r.group, "kind": list_kind, "version": r.version}],
    }


def _ref_property(definition: str, description: str, v2: bool) -> Schema:
    if v2:
        return {"$ref": _V2_REF + definition, "description": description}
    return {"allOf": [{"$ref": _V3_REF + definition}], "description": description}


def _crd_children(node: Schema, convert: Callable[[Schema], Schema]) -> Schema:
    """``node`` with ``convert`` applied to each of its subschemas."""
    out = dict(node)
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: convert(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = convert(node[key])
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [convert(v) for v in node[key]]
    return out


def _crd_node_v3(node: Schema) -> Schema:
    """A CRD schema node as upstream publishes it in v3: unfolded (int-or-string gets its
    ``anyOf``, embedded resources their apiVersion/kind/metadata)."""
    out = _crd_children(node, _crd_node_v3)
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "allOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-embedded-resource"):
        _add_embedded_properties(out, v2=False)
    return out


def _crd_node_v2(node: Schema) -> Schema:
    """A CRD schema node made fit for v2 clients (upstream's ToStructuralOpenAPIV2 and
    PruneDefaults): no junctors or defaults, and no type where kubectl's v2 reader would
    misjudge nullable or free-form values."""
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    drop_children = preserve or bool(node.get("nullable"))
    pruned = {k: v for k, v in node.items()
              if k not in ("allOf", "anyOf", "oneOf", "not", "default", "nullable")
              and not (drop_children and k in ("properties", "items"))}
    out = _crd_children(pruned, _crd_node_v2)
    if node.get("nullable"):
        out.pop("type", None)
    if out.get("type") == "array" and "items" not in out:
        out.pop("type")
    if preserve and out.get("type") == "object":
        out.pop("type")
    out = _drop_nullable_required(node, out)
    if out.get("x-kubernetes-embedded-resource") and not preserve:
        _add_embedded_properties(out, v2=True)
    return out


def _drop_nullable_required(source: Schema, out: Schema) -> Schema:
    required = out.get("required")
    if not required:
        return out
    extra = source.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("nullable"):
        return {k: v for k, v in out.items() if k != "required"}
    props = source.get("properties") or {}
    kept = [f for f in required if not (props.get(f) or {}).get("nullable")]
    return {**out, "required": kept} if kept else {k: v for k, v in out.items()
                                                   if k != "required"}


def _add_embedded_properties(node: Schema, v2: bool) -> None:
    properties = dict(node.get("properties", {}))
    properties["apiVersion"] = {**_API_VERSION_PROPERTY, "description": (
        "apiVersion defines the versioned schema of this representation of an object. More "
        "info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
        "api-conventions.md#resources")}
    properties["kind"] = {**_KIND_PROPERTY, "description": (
        "kind is a string value representing the type of this object. In CamelCase. More "
        "info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
        "api-conventions.md#types-kinds")}
    properties["metadata"] = _ref_property(_OBJECT_META, _OBJECT_META_DOC, v2)
    node["properties"] = properties
    required = list(node.get("required", ()))
    node["required"] = required + [f for f in ("kind", "apiVersion") if f not in required]


# --- the catalog: routes and definitions of one registry generation ----------------------------

class _Catalog:
    """The routes and definitions of one registry generation, shared by both builders."""

    def __init__(self, registry: Registry, schemas: api_schema.Schemas):
        self.builtins = _builtins(schemas)
        custom = [r for r in registry.all() if r.crd is not None]
        self.crd_definitions = {
            v2: {name: schema for r in custom for name, schema in _crd_definitions(r, v2).items()}
            for v2 in (True, False)}
        crd_kinds = {(r.group, r.version, kind): crd_model_name(r.group, r.version, kind)
                     for r in custom for kind in (r.kind, _crd_list_kind(r))}
        kinds = _Kinds(schemas, crd_kinds)
        served = sorted(registry.all(), key=lambda r: (r.group, r.version, r.resource))
        self.routes = [*_discovery_routes(registry),
                       *(route for r in served for route in _resource_routes(r, kinds))]
        self.documents = frozenset(route.document for route in self.routes)

    def definition(self, name: str, v2: bool) -> Schema | None:
        custom = self.crd_definitions[v2].get(name)
        return custom if custom is not None else self.builtins.get(name, v2)

    def definitions(self, routes: list[Route], v2: bool) -> dict[str, Schema]:
        """Every definition the routes reference, transitively."""
        pending = [n for route in routes for n in _route_schemas(route)]
        found: dict[str, Schema] = {}
        while pending:
            name = pending.pop()
            if name in found:
                continue
            definition = self.definition(name, v2)
            if definition is None:
                continue
            found[name] = definition
            if name in self.crd_definitions[v2]:
                pending.extend(_refs(definition, set()))
            else:
                pending.extend(self.builtins.refs(name))
        return found


def _route_schemas(route: Route) -> Iterator[str]:
    if route.body:
        yield route.body
    for response in route.responses:
        if response.schema:
            yield response.schema


def _by_path(routes: Iterable[Route]) -> dict[str, list[Route]]:
    paths: dict[str, list[Route]] = {}
    for route in routes:
        paths.setdefault(route.path, []).append(route)
    return paths


def _common_params(routes: list[Route]) -> list[Param]:
    """Parameters every operation of a path takes: kube-openapi lifts them to the path."""
    counts: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], Param] = {}
    for route in routes:
        for p in route.params:
            counts[(p.name, p.location)] = counts.get((p.name, p.location), 0) + 1
            last[(p.name, p.location)] = p
    return [last[k] for k in sorted(counts) if counts[k] == len(routes)]


def _gvk_extension(gvk: GVK) -> dict:
    return {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}


def _extensions(route: Route) -> dict:
    out = {}
    if route.action:
        out["x-kubernetes-action"] = route.action
    if route.gvk:
        out[_GVK_EXT] = _gvk_extension(route.gvk)
    return out


def _sorted_params(params: Iterable[Param], common: list[Param]) -> list[Param]:
    shared = {(p.name, p.location) for p in common}
    return sorted((p for p in params if (p.name, p.location) not in shared),
                  key=lambda p: (p.name, p.location))


# --- Swagger 2.0 -------------------------------------------------------------------------------

def _v2_param(p: Param) -> Schema:
    out = {"description": p.description, "in": p.location, "name": p.name, "type": p.type,
           "uniqueItems": True}
    if p.required:
        out["required"] = True
    return out


def _v2_schema(definition: str | None) -> Schema:
    return {"$ref": _V2_REF + definition} if definition else {"type": "string"}


def _v2_operation(route: Route, common: list[Param]) -> Schema:
    operation_id, tags = operation_id_and_tags(route.operation, route.path)
    params = [_v2_param(p) for p in _sorted_params(route.params, common)]
    if route.body:
        body = {"in": "body", "name": "body", "schema": _v2_schema(route.body)}
        if route.body_required:
            body["required"] = True
        params = sorted(params + [body], key=lambda p: (p["name"], p["in"]))
    responses: dict[str, Schema] = {
        str(r.code): {"description": r.description, "schema": _v2_schema(r.schema)}
        for r in route.responses}
    responses["401"] = {"description": "Unauthorized"}
    op = {"consumes": list(route.consumes), "description": route.description,
          "operationId": operation_id, "produces": list(route.produces),
          "responses": responses, "schemes": ["https"], "tags": tags}
    if params:
        op["parameters"] = params
    return {**op, **_extensions(route)}


def _v2_paths(routes: list[Route]) -> dict[str, Schema]:
    paths = {}
    for path, path_routes in _by_path(routes).items():
        common = _common_params(path_routes)
        item: Schema = {route.method: _v2_operation(route, common) for route in path_routes}
        if common:
            item["parameters"] = [_v2_param(p) for p in common]
        paths[path] = item
    return paths


def _share_parameters(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Move parameters into the document's ``parameters`` and refer to them, as kube-openapi's
    deduplicateParameters does. Kept inline like upstream: ``name`` (its description names the
    kind), ``dryRun`` and ``fieldValidation`` (older kubectl looked for them inline) and bodies
    of a resource's own kind."""
    shared: dict[bytes, str] = {}
    parameters: dict[str, Schema] = {}

    def ref(p: Schema) -> Schema:
        if p["name"] in ("name", "dryRun", "fieldValidation") and p["in"] != "body":
            return p
        if p["in"] == "body" and not p["schema"].get("$ref", "").startswith(
                _V2_REF + "io.k8s.apimachinery"):
            return p
        key = orjson.dumps(p, option=orjson.OPT_SORT_KEYS)
        if key not in shared:
            digest = hashlib.sha256(key).digest()[:6]
            name = f"{p['name'] or 'param'}-{base64.urlsafe_b64encode(digest).decode()}"
            shared[key] = name
            parameters[name] = p
        return {"$ref": "#/parameters/" + shared[key]}

    for item in paths.values():
        for key, value in item.items():
            if key == "parameters":
                item[key] = [ref(p) for p in value]
            elif "parameters" in value:
                value["parameters"] = [ref(p) for p in value["parameters"]]
    return parameters


def _build_v2(catalog: _Catalog) -> Schema:
    paths = _v2_paths(catalog.routes)
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "paths": paths,
        "definitions": catalog.definitions(catalog.routes, v2=True),
        "parameters": _share_parameters(paths),
        "securityDefinitions": _SECURITY_SCHEME,
        "security": _SECURITY,
    }


# --- OpenAPI 3.0 -------------------------------------------------------------------------------

def _v3_param(p: Param) -> Schema:
    out = {"description": p.description, "in": p.location, "name": p.name,
           "schema": {"type": p.type, "uniqueItems": True}}
    if p.required:
        out["required"] = True
    return out


def _v3_schema(definition: str | None) -> Schema:
    return {"$ref": _V3_REF + definition} if definition else {"type": "string"}


def _v3_content(media_types: Iterable[str], definition: str | None) -> Schema:
    return {media_type: {"schema": _v3_schema(definition)} for media_type in media_types}


def _v3_operation(route: Route, common: list[Param]) -> Schema:
    operation_id, tags = operation_id_and_tags(route.operation, route.path)
    responses: dict[str, Schema] = {
        str(r.code): {"content": _v3_content(route.produces, r.schema),
                      "description": r.description}
        for r in route.responses}
    responses["401"] = {"description": "Unauthorized"}
    op: Schema = {"description": route.description, "operationId": operation_id,
                  "responses": responses, "tags": tags}
    params = [_v3_param(p) for p in _sorted_params(route.params, common)]
    if params:
        op["parameters"] = params
    if route.body:
        body: Schema = {"content": _v3_content(route.consumes, route.body)}
        if route.body_required:
            body["required"] = True
        op["requestBody"] = body
    return {**op, **_extensions(route)}


def _build_v3(catalog: _Catalog, document: str) -> Schema:
    routes = [route for route in catalog.routes if route.document == document]
    paths = {}
    for path, path_routes in _by_path(routes).items():
        common = _common_params(path_routes)
        item: Schema = {route.method: _v3_operation(route, common) for route in path_routes}
        if common:
            item["parameters"] = [_v3_param(p) for p in common]
        paths[path] = item
    return {
        "openapi": "3.0.0",
        "info": dict(_INFO),
        "paths": paths,
        "components": {
            "schemas": catalog.definitions(routes, v2=False),
            "securitySchemes": _SECURITY_SCHEME,
        },
        "security": _SECURITY,
    }


# --- public API --------------------------------------------------------------------------------

_cache = RegistryCache()


def _catalog(registry: Registry, schemas: api_schema.Schemas) -> _Catalog:
    return _cache.get(registry, ("catalog", schemas), lambda: _Catalog(registry, schemas))


def routes(registry: Registry, schemas: api_schema.Schemas | None = None) -> list[Route]:
    """Every documented operation (for handlers and tests that want the route table)."""
    return _catalog(registry, schemas or api_schema.builtin()).routes


def openapi_v2(registry: Registry, schemas: api_schema.Schemas) -> dict:
    """``/openapi/v2``: the Swagger 2.0 document of everything served."""
    return _cache.get(registry, ("v2", schemas), lambda: _build_v2(_catalog(registry, schemas)))


def encode_openapi_v2(registry: Registry, schemas: api_schema.Schemas) -> Encoded:
    """``/openapi/v2`` serialized (application/json), with the hash to send as its ETag."""
    return _cache.get(registry, ("v2-bytes", schemas),
                      lambda: encode(openapi_v2(registry, schemas), sort_keys=True))


def openapi_v3_group_version(registry: Registry, schemas: api_schema.Schemas,
                             gv_path: str) -> dict | None:
    """``/openapi/v3/<gv_path>`` (``api/v1``, ``apis/apps/v1``, ``apis/apps``, ``api``,
    ``apis``, ``version``), or None when nothing is served there."""
    gv_path = gv_path.strip("/")
    catalog = _catalog(registry, schemas)
    if gv_path not in catalog.documents:  # unknown paths are not cached: they are unbounded
        return None
    return _cache.get(registry, ("v3", schemas, gv_path), lambda: _build_v3(catalog, gv_path))


def encode_openapi_v3(registry: Registry, schemas: api_schema.Schemas,
                      gv_path: str) -> Encoded | None:
    """One v3 document serialized (application/json). Its ``hash`` is the ``?hash=`` of its
    ``serverRelativeURL``: upstream answers a request with another hash with a 301 to the
    current URL, and a matching one with ``Cache-Control: public, immutable``."""
    gv_path = gv_path.strip("/")
    document = openapi_v3_group_version(registry, schemas, gv_path)
    if document is None:
        return None
    return _cache.get(registry, ("v3-bytes", schemas, gv_path),
                      lambda: encode(document, sort_keys=True))


def openapi_v3_hash(registry: Registry, schemas: api_schema.Schemas, gv_path: str) -> str | None:
    encoded = encode_openapi_v3(registry, schemas, gv_path)
    return encoded.hash if encoded else None


def openapi_v3_index(registry: Registry, schemas: api_schema.Schemas | None = None) -> dict:
    """``/openapi/v3``: every document with the URL (carrying its content hash) to fetch it."""
    schemas = schemas or api_schema.builtin()

    def build() -> dict:
        paths = {}
        for document in sorted(_catalog(registry, schemas).documents):
            hash_ = openapi_v3_hash(registry, schemas, document)
            paths[document] = {"serverRelativeURL": f"/openapi/v3/{document}?hash={hash_}"}
        return {"paths": paths}
    return _cache.get(registry, ("v3-index", schemas), build)


def encode_openapi_v3_index(registry: Registry,
                            schemas: api_schema.Schemas | None = None) -> Encoded:
    schemas = schemas or api_schema.builtin()
    return _cache.get(registry, ("v3-index-bytes", schemas),
                      lambda: encode(openapi_v3_index(registry, schemas), sort_keys=True))
