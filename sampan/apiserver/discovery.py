"""Discovery documents: which groups, versions and resources the API server serves.

Clients learn the API from ``/api`` and ``/apis``. The legacy form is one request per level
(``/api`` → APIVersions, ``/apis`` → APIGroupList, ``/apis/<group>`` → APIGroup,
``/api/v1`` and ``/apis/<group>/<version>`` → APIResourceList); the aggregated form
(``apidiscovery.k8s.io/v2`` APIGroupDiscoveryList, asked for through the Accept header) answers
with everything at once, and is what kubectl and client-go try first.

Everything here is a pure function of the Registry and is cached per ``registry.generation``:
a request costs a dict lookup, a CustomResourceDefinition change (which bumps the generation)
rebuilds on the next request. Returned documents are shared: treat them as read-only.

Upstream: k8s.io/apiserver/pkg/endpoints/discovery (legacy and aggregated handlers),
pkg/endpoints/installer.go (APIResource entries, ConvertGroupVersionIntoToDiscovery) and the
apiextensions-apiserver discovery controller (custom resources).
"""

from __future__ import annotations

import base64
import hashlib
import weakref
from dataclasses import dataclass
from typing import Callable, Hashable, TypeVar

import orjson

from sampan.api.registry import Registry, Resource

T = TypeVar("T")

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_KIND = "APIGroupDiscoveryList"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


# --- subresources ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Subresource:
    """How upstream serves one subresource: its discovery verbs and the kind it answers with.

    ``kind`` empty means the parent's kind; ``{kind}`` in it is replaced by the parent's kind
    (``PodProxyOptions``). ``group`` is set where the subresource answers with another group's
    kind (``deployments/scale`` → ``autoscaling/v1 Scale``): upstream then names the group and
    version in discovery. ``connect_methods`` marks the streaming subresources (exec, attach,
    portforward, proxy), served as CONNECT operations for each of these HTTP methods.
    """

    verbs: tuple[str, ...]
    kind: str = ""
    group: str | None = None
    version: str = ""
    connect_methods: tuple[str, ...] = ()

    def kind_for(self, parent: Resource) -> str:
        return self.kind.format(kind=parent.kind) if self.kind else parent.kind

    def group_version_for(self, parent: Resource) -> tuple[str, str]:
        """The group and version of the kind this subresource reads and returns."""
        if self.group is None:
            return parent.group, parent.version
        return self.group, self.version


_READ_WRITE = ("get", "patch", "update")
_STREAM = ("create", "get")
_PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource(_READ_WRITE),
    "scale": Subresource(_READ_WRITE, "Scale", "autoscaling", "v1"),
    "ephemeralcontainers": Subresource(_READ_WRITE),
    "resize": Subresource(_READ_WRITE),
    "finalize": Subresource(("update",)),
    "binding": Subresource(("create",), "Binding"),
    "eviction": Subresource(("create",), "Eviction", "policy", "v1"),
    "token": Subresource(("create",), "TokenRequest", "authentication.k8s.io", "v1"),
    "log": Subresource(("get",)),
    "exec": Subresource(_STREAM, "PodExecOptions", connect_methods=("GET", "POST")),
    "attach": Subresource(_STREAM, "PodAttachOptions", connect_methods=("GET", "POST")),
    "portforward": Subresource(_STREAM, "PodPortForwardOptions", connect_methods=("GET", "POST")),
    "proxy": Subresource(("create", "delete", "get", "patch", "update"), "{kind}ProxyOptions",
                         connect_methods=_PROXY_METHODS),
}


def subresource(name: str) -> Subresource:
    """The serving rules of a subresource; unknown names are read-write like ``status``."""
    return SUBRESOURCES.get(name, SUBRESOURCES["status"])


# The verb order apiextensions-apiserver lists custom resources with (not sorted, unlike
# built-in resources).
_CRD_VERB_ORDER = ("delete", "deletecollection", "get", "list", "patch", "create", "update",
                   "watch")


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """Upstream's StorageVersionHash: clients compare it to notice storage migrations."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


# --- caching -----------------------------------------------------------------------------------

class RegistryCache:
    """Values derived from a Registry, kept until its generation moves on."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[Registry, tuple[int, dict]] = (
            weakref.WeakKeyDictionary())

    def get(self, registry: Registry, key: Hashable, build: Callable[[], T]) -> T:
        entry = self._entries.get(registry)
        if entry is None or entry[0] != registry.generation:
            entry = (registry.generation, {})
            self._entries[registry] = entry
        values = entry[1]
        if key not in values:
            values[key] = build()
        return values[key]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A document serialized once: the bytes to send and the hash that names them."""

    body: bytes
    hash: str  # upper-case hex SHA-512 of body, as upstream's discovery and OpenAPI ETags

    @property
    def etag(self) -> str:
        return f'"{self.hash}"'


def encode(document: dict, sort_keys: bool = False) -> Encoded:
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    return Encoded(body, hashlib.sha512(body).hexdigest().upper())


_cache = RegistryCache()


def _served(registry: Registry) -> dict[tuple[str, str], list[Resource]]:
    """(group, version) → its resources sorted by name, in discovery order (preferred first)."""
    def build() -> dict[tuple[str, str], list[Resource]]:
        by_gv: dict[tuple[str, str], list[Resource]] = {}
        for r in sorted(registry.all(), key=lambda r: r.resource):
            by_gv.setdefault((r.group, r.version), []).append(r)
        return {(g, v): by_gv[(g, v)]
                for g, versions in _group_versions(registry).items() for v in versions}
    return _cache.get(registry, "served", build)


def _group_versions(registry: Registry) -> dict[str, list[str]]:
    return _cache.get(registry, "group-versions", registry.group_versions)


# --- legacy discovery --------------------------------------------------------------------------

def api_versions(server_address: str) -> dict:
    """``/api``: the legacy core group's versions (upstream strips apiVersion here)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address},
        ],
    }


def api_group_list(registry: Registry) -> dict:
    """``/apis``: every named group with its versions, preferred version first."""
    def build() -> dict:
        groups = [_group_entry(group, versions)
                  for group, versions in _group_versions(registry).items() if group]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    return _cache.get(registry, "groups", build)


def api_group(registry: Registry, group: str) -> dict | None:
    """``/apis/<group>``, or None when the group is not served."""
    versions = _group_versions(registry).get(group) if group else None
    if not versions:  # unknown names are not cached: clients could send any number of them
        return None
    return _cache.get(registry, ("group", group), lambda: {
        "kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)})


def _group_entry(group: str, versions: list[str]) -> dict:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_resource_list(registry: Registry, group: str, version: str) -> dict | None:
    """``/api/v1`` or ``/apis/<group>/<version>``, or None when not served."""
    resources = _served(registry).get((group, version))
    if not resources:
        return None

    def build() -> dict:
        doc: dict = {"kind": "APIResourceList"}
        if group:  # the core group's list has no apiVersion upstream
            doc["apiVersion"] = "v1"
        doc["groupVersion"] = f"{group}/{version}" if group else version
        doc["resources"] = [entry for r in resources for entry in _resource_entries(r)]
        return doc
    return _cache.get(registry, ("resources", group, version), build)


def _resource_entries(r: Resource) -> list[dict]:
    entry: dict = {
        "name": r.resource,
        "singularName": _singular(r),
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": _verbs(r),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    hash_ = _storage_hash(r)
    if hash_:
        entry["storageVersionHash"] = hash_
    return [entry] + [_subresource_entry(r, name) for name in sorted(r.subresources)]


def _subresource_entry(r: Resource, name: str) -> dict:
    sub = subresource(name)
    entry: dict = {"name": f"{r.resource}/{name}", "singularName": "", "namespaced": r.namespaced}
    if sub.group is not None:
        entry["group"], entry["version"] = sub.group, sub.version
    entry["kind"] = sub.kind_for(r)
    entry["verbs"] = list(sub.verbs)
    return entry


def _singular(r: Resource) -> str:
    if r.crd:
        return r.crd.get("spec", {}).get("names", {}).get("singular") or r.singular
    return r.singular


def _verbs(r: Resource) -> list[str]:
    if r.crd:
        return [v for v in _CRD_VERB_ORDER if v in r.verbs]
    return sorted(r.verbs)


def _storage_hash(r: Resource) -> str:
    if r.virtual:
        return ""
    if r.crd:
        stored = [v["name"] for v in r.crd.get("spec", {}).get("versions", ()) if v.get("storage")]
        return storage_version_hash(r.group, stored[0] if stored else r.version, r.kind)
    group = r.group if r.storage_group is None else r.storage_group
    return storage_version_hash(group, r.storage_version or r.version, r.kind)


# --- aggregated discovery ----------------------------------------------------------------------

def aggregated_discovery(registry: Registry, legacy: bool, version: str = "v2") -> dict:
    """The APIGroupDiscoveryList of ``/api`` (``legacy``: the core group only) or ``/apis``
    (every named group). ``version`` is the apidiscovery.k8s.io version the client negotiated;
    v2beta1 has the same shape."""
    def build() -> dict:
        items = [_group_discovery(registry, group, versions)
                 for group, versions in _group_versions(registry).items()
                 if (group == "") == legacy]
        return {
            "kind": AGGREGATED_KIND,
            "apiVersion": f"{AGGREGATED_GROUP}/{version}",
            "metadata": {},
            "items": items,
        }
    return _cache.get(registry, ("aggregated", legacy, version), build)


def encode_aggregated_discovery(registry: Registry, legacy: bool, content_type: str) -> Encoded:
    """The aggregated document serialized for ``content_type`` (from ``negotiate_discovery``),
    with the hash to send as its ETag."""
    version = _media_type_params(content_type).get("v")
    version = version if version in AGGREGATED_VERSIONS else "v2"
    return _cache.get(registry, ("aggregated-bytes", legacy, version),
                      lambda: encode(aggregated_discovery(registry, legacy, version)))


def _group_discovery(registry: Registry, group: str, versions: list[str]) -> dict:
    served = _served(registry)
    return {
        "metadata": {"name": group} if group else {},
        "versions": [
            {
                "version": v,
                "resources": [_resource_discovery(r) for r in served[(group, v)]],
                "freshness": "Current",
            }
            for v in versions
        ],
    }


def _resource_discovery(r: Resource) -> dict:
    entry: dict = {
        "resource": r.resource,
        "responseKind": _response_kind(r, r.kind),
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": _singular(r),
        "verbs": _verbs(r),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    if r.subresources:
        entry["subresources"] = [_subresource_discovery(r, name) for name in sorted(r.subresources)]
    return entry


def _subresource_discovery(r: Resource, name: str) -> dict:
    sub = subresource(name)
    if sub.group is not None:
        kind = {"group": sub.group, "version": sub.version, "kind": sub.kind_for(r)}
    else:
        kind = _response_kind(r, sub.kind_for(r))
    return {"subresource": name, "responseKind": kind, "verbs": list(sub.verbs)}


def _response_kind(r: Resource, kind: str) -> dict:
    # Built-in resources leave group and version empty (their APIResource entries do);
    # the CRD discovery controller names them.
    if r.crd:
        return {"group": r.group, "version": r.version, "kind": kind}
    return {"group": "", "version": "", "kind": kind}


# --- content negotiation -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Clause:
    type: str
    subtype: str
    params: dict[str, str]
    q: float


def negotiate_discovery(accept_header: str) -> str | None:
    """The Content-Type to answer ``/api`` or ``/apis`` with when the client prefers the
    aggregated form (``apidiscovery.k8s.io`` v2 or v2beta1 APIGroupDiscoveryList), else None
    for the legacy document.

    Clauses are tried in the client's order of preference (quality, then specificity, as
    upstream's goautoneg does); the first one we can serve decides.
    """
    for clause in _parse_accept(accept_header):
        if clause.q <= 0:
            continue
        if clause.type not in ("application", "*") or clause.subtype not in ("json", "*"):
            continue  # protobuf, CBOR, ...: not served
        if "as" not in clause.params:
            return None  # plain JSON: the legacy document
        if _is_aggregated(clause):
            version = clause.params["v"]
            return (f"application/json;g={AGGREGATED_GROUP};v={version};"
                    f"as={AGGREGATED_KIND}")
    return None


def _is_aggregated(clause: _Clause) -> bool:
    p = clause.params
    return (clause.type == "application" and clause.subtype == "json"
            and p.get("g") == AGGREGATED_GROUP and p.get("v") in AGGREGATED_VERSIONS
            and p.get("as") == AGGREGATED_KIND)


def _parse_accept(header: str) -> list[_Clause]:
    clauses = []
    for raw in header.split(","):
        media_type, _, _ = raw.partition(";")
        type_, _, subtype = media_type.strip().lower().partition("/")
        if not type_:
            continue
        params = _media_type_params(raw)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        clauses.append(_Clause(type_, subtype or "*", params, q))
    clauses.sort(key=lambda c: (-c.q, c.type == "*", c.subtype == "*", -len(c.params)))
    return clauses


def _media_type_params(media_type: str) -> dict[str, str]:
    params = {}
    for part in media_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = value.strip().strip('"')
    return params
