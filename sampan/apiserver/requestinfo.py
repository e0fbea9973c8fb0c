"""Parse a request path into what it addresses, as upstream's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(slots=True)
class RequestInfo:
    path: str
    verb: str  # Kubernetes verb: get list watch create update patch delete deletecollection
    resource_request: bool = False
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()


_HTTP_TO_VERB = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
                 "GET": "get", "HEAD": "get"}


def parse(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    segments = [s for s in path.split("/") if s]
    verb = _HTTP_TO_VERB.get(method, method.lower())
    info = RequestInfo(path=path, verb=verb)
    if not segments or segments[0] not in ("api", "apis"):
        return info
    if segments[0] == "api":
        if len(segments) < 2:
            return info
        info.group, info.version, rest = "", segments[1], segments[2:]
    else:
        if len(segments) < 3:
            return info
        info.group, info.version, rest = segments[1], segments[2], segments[3:]
    if not rest:
        return info
    info.resource_request = True
    if rest[0] == "watch":  # deprecated /watch/ paths
        verb = "watch"
        rest = rest[1:]
    if rest and rest[0] == "namespaces":
        if len(rest) > 1:
            info.namespace = rest[1]
            if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    info.parts = tuple(rest)
    if rest:
        info.resource = rest[0]
    if len(rest) >= 2:
        info.name = rest[1]
    if len(rest) >= 3:
        info.subresource = rest[2]
    if info.resource == "namespaces" and info.name:
        info.namespace = info.name if not info.subresource or info.subresource in _NAMESPACE_SUBRESOURCES else info.namespace
    if info.resource == "namespaces" and len(rest) == 2 and not info.namespace:
        info.namespace = rest[1]
    if verb == "watch":
        info.verb = "watch"
    elif method in ("GET", "HEAD") and not info.name:
        info.verb = "watch" if query.get("watch") in ("true", "1") else "list"
    elif method == "DELETE" and not info.name:
        info.verb = "deletecollection"
    else:
        info.verb = verb
    return info
