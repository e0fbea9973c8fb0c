"""Ingresses, Services, EndpointSlices and TLS Secrets → one immutable routing table.

Everything here is pure: the controller hands in what its caches hold and swaps the table it
gets back into the proxy. The semantics follow ``networking.k8s.io/v1`` and ingress-nginx:

- a request picks a *server* by its host: an exact host beats a wildcard (``*.example.com``
  matches exactly one more label), which beats the catch-all server of rules without a host;
- inside a server the longest matching path wins; at equal length ``Exact`` beats ``Prefix``
  (``ImplementationSpecific`` is a ``Prefix``); prefixes match whole path elements;
- rules for the same host from several Ingresses merge; on a clash the oldest Ingress wins;
- a server without a matching path uses its Ingress's ``spec.defaultBackend``, then the oldest
  ``spec.defaultBackend`` of all, then the built-in 404.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sampan.client.informer import object_key

Object = Mapping[str, Any]

CONTROLLER_NAME = "sampan.io/ingress"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SSL_REDIRECT_ANNOTATION = "nginx.ingress.kubernetes.io/ssl-redirect"
TLS_SECRET_TYPE = "kubernetes.io/tls"

Address = tuple[str, int]


class Lookup(Protocol):
    """``ns/name`` → object: a dict, or an informer's indexer."""

    def get(self, key: str, /) -> Any: ...


@dataclass(eq=False, slots=True)
class Upstream:
    """One service port's ready endpoints; ``error`` says why there are none, if known."""

    name: str  # ns/service:port
    ingress: str  # ns/name of the Ingress that routes here ("" for TCP services)
    endpoints: tuple[Address, ...] = ()
    error: str = ""
    next: int = 0  # round-robin cursor

    def pick(self) -> Address:
        endpoints = self.endpoints
        index = self.next % len(endpoints)
        self.next = index + 1
        return endpoints[index]


@dataclass(slots=True)
class Server:
    """The routes of one host."""

    exact: dict[str, Upstream] = field(default_factory=dict)
    prefixes: list[tuple[str, Upstream]] = field(default_factory=list)  # longest first
    default: Upstream | None = None
    tls: bool = False
    ssl_redirect: bool = False

    def match(self, path: str) -> Upstream | None:
        upstream = self.exact.get(path)
        if upstream is not None:
            return upstream
        for prefix, upstream in self.prefixes:
            if prefix_matches(prefix, path):
                return upstream
        return self.default


@dataclass(slots=True)
class RoutingTable:
    hosts: dict[str, Server] = field(default_factory=dict)
    wildcards: dict[str, Server] = field(default_factory=dict)  # "example.com" for *.example.com
    catch_all: Server = field(default_factory=Server)
    certificates: dict[str, str] = field(default_factory=dict)  # host pattern → secret key
    tcp: dict[int, Upstream] = field(default_factory=dict)

    def server(self, host: str) -> Server:
        server = self.hosts.get(host)
        if server is not None:
            return server
        _, dot, parent = host.partition(".")
        if dot:
            server = self.wildcards.get(parent)
            if server is not None:
                return server
        return self.catch_all

    def route(self, host: str, path: str) -> tuple[Server, Upstream | None]:
        server = self.server(host)
        return server, server.match(path)

    def certificate(self, host: str) -> str | None:
        """The secret key whose certificate serves ``host`` (SNI), exact names first."""
        secret = self.certificates.get(host)
        if secret is None:
            _, dot, parent = host.partition(".")
            if dot:
                secret = self.certificates.get("*." + parent)
        return secret


@dataclass(frozen=True)
class Problem:
    """Something wrong with one Ingress, worth a Warning event on it."""

    ingress: str  # ns/name
    reason: str
    message: str


# -- small pure helpers ---------------------------------------------------------------------------

def normalize_host(host: str) -> str:
    """A Host header or SNI name → lower-case name without port or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def prefix_matches(prefix: str, path: str) -> bool:
    """Element-wise prefix match; ``prefix`` is already stripped of its trailing ``/``."""
    if not prefix:
        return True
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        _, dot, parent = host.partition(".")
        return bool(dot) and parent == pattern[2:]
    return pattern == host


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _meta(obj: Object) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _age_key(obj: Object) -> tuple[str, str]:
    return (_meta(obj).get("creationTimestamp") or "", object_key(obj))  # type: ignore[arg-type]


# -- IngressClass selection ------------------------------------------------------------------------

def our_classes(classes: Iterable[Object], controller: str = CONTROLLER_NAME) -> list[Object]:
    return [c for c in classes if (c.get("spec") or {}).get("controller") == controller]


def is_default_class(ingress_class: Object) -> bool:
    return (_meta(ingress_class).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"


def serves(ingress: Object, classes: Iterable[Object], class_name: str) -> bool:
    """Whether an Ingress is ours: its ``ingressClassName`` names one of our classes, else its
    legacy annotation names our class, else it has no class and one of ours is the default."""
    mine = {_meta(c).get("name"): c for c in classes}
    wanted = (ingress.get("spec") or {}).get("ingressClassName")
    if wanted:
        return wanted in mine
    legacy = (_meta(ingress).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if legacy:
        return legacy == class_name or legacy in mine
    return any(is_default_class(c) for c in mine.values())


# -- backends -------------------------------------------------------------------------------------

SlicesFor = Callable[[str, str], list[Object]]


def ready_endpoints(slices: Iterable[Object], port_name: str) -> list[Address]:
    """Ready addresses with the slice port named ``port_name``, in a stable order."""
    found: set[Address] = set()
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in endpoint_slice.get("ports") or []
                 if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"
                 and p.get("port")]
        if not ports:
            continue
        number = int(ports[0]["port"])
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                found.add((address, number))
    return sorted(found)


def resolve_service(namespace: str, backend: Object, services: Lookup,
                    slices_for: SlicesFor, ingress: str) -> tuple[Upstream, str]:
    """An Ingress backend's upstream; the second value is an error worth an event, if any."""
    service = backend.get("service") or {}
    name = service.get("name") or ""
    port = service.get("port") or {}
    number, port_name = port.get("number"), port.get("name")
    label = f"{namespace}/{name}:{number if number is not None else port_name}"
    upstream = Upstream(label, ingress)
    svc = services.get(f"{namespace}/{name}")
    if svc is None:
        upstream.error = f"service {namespace}/{name} not found"
        return upstream, (f'Error obtaining Service "{namespace}/{name}": no object matching '
                          f'key "{namespace}/{name}" in local store')
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    if number is not None:
        matching = [p for p in ports if p.get("port") == number]
    else:
        matching = [p for p in ports if p.get("name") == port_name]
    if not matching:
        upstream.error = f"service {namespace}/{name} has no port {label.rpartition(':')[2]}"
        return upstream, f'Service "{namespace}/{name}" does not have any port ' \
                         f'{label.rpartition(":")[2]}'
    service_port = matching[0]
    if spec.get("type") == "ExternalName":
        target = service_port.get("targetPort") or service_port["port"]
        upstream.endpoints = ((spec.get("externalName") or "",
                               target if isinstance(target, int) else service_port["port"]),)
        return upstream, ""
    upstream.endpoints = tuple(ready_endpoints(slices_for(namespace, name),
                                               service_port.get("name") or ""))
    if not upstream.endpoints:
        upstream.error = f"service {namespace}/{name} has no ready endpoints"
    return upstream, ""


# -- the table -----------------------------------------------------------------------------------

def _ssl_redirect(ingress: Object, default: bool) -> bool:
    value = (_meta(ingress).get("annotations") or {}).get(SSL_REDIRECT_ANNOTATION)
    return default if value is None else value.lower() == "true"


def _secret_problem(secret: Object | None, key: str, load_error: str) -> str:
    """Why the TLS secret ``key`` cannot serve (one reason), or ""."""
    data = (secret or {}).get("data") or {}
    if secret is None:
        reason = f"local SSL certificate {key} was not found"
    elif not (data.get("tls.crt") and data.get("tls.key")):
        reason = "secret has no tls.crt or tls.key"
    else:
        reason = load_error
    return f'Error getting SSL certificate "{key}": {reason}' if reason else ""


def build_table(ingresses: Iterable[Object], services: Lookup,
                slices_for: SlicesFor, secrets: Lookup, *,
                certificate_errors: Mapping[str, str] | None = None,
                tcp_services: Mapping[str, str] | None = None,
                ssl_redirect: bool = True) -> tuple[RoutingTable, list[Problem]]:
    """The routing table for the Ingresses we serve (oldest first wins clashes), and what is
    wrong with them; ``certificate_errors`` says which secrets' certificates do not load."""
    table = RoutingTable()
    problems: list[Problem] = []
    load_errors = certificate_errors or {}
    upstreams: dict[tuple[str, str, Any, Any], Upstream] = {}
    global_default: Upstream | None = None

    def server_for(host: str) -> Server:
        if not host:
            return table.catch_all
        if host.startswith("*."):
            return table.wildcards.setdefault(host[2:], Server())
        return table.hosts.setdefault(host, Server())

    for ingress in sorted(ingresses, key=_age_key):
        ing_key = object_key(ingress)  # type: ignore[arg-type]
        namespace = _meta(ingress).get("namespace") or ""
        spec = ingress.get("spec") or {}

        def backend(ref: Object) -> Upstream | None:
            service = ref.get("service")
            if not service:
                return None  # a resource backend: not something a proxy can reach
            port = service.get("port") or {}
            cache_key = (ing_key, service.get("name") or "", port.get("number"),
                         port.get("name"))
            upstream = upstreams.get(cache_key)
            if upstream is None:
                upstream, error = resolve_service(namespace, ref, services, slices_for, ing_key)
                upstreams[cache_key] = upstream
                if error:
                    problems.append(Problem(ing_key, "Sync", error))
            return upstream

        default = backend(spec["defaultBackend"]) if spec.get("defaultBackend") else None
        if default is not None and global_default is None:
            global_default = default
        redirect = _ssl_redirect(ingress, ssl_redirect)
        tls_hosts: set[str] = set()
        rule_hosts = [normalize_host(r.get("host") or "") for r in spec.get("rules") or []]
        for tls in spec.get("tls") or []:
            secret_name = tls.get("secretName") or ""
            hosts = [normalize_host(h) for h in tls.get("hosts") or []] or \
                [h for h in rule_hosts if h]
            tls_hosts.update(hosts)
            if not secret_name:
                continue
            secret_key = f"{namespace}/{secret_name}"
            problem = _secret_problem(secrets.get(secret_key), secret_key,
                                      load_errors.get(secret_key, ""))
            if problem:
                problems.append(Problem(ing_key, "Sync", problem))
                continue
            for host in hosts:
                table.certificates.setdefault(host, secret_key)

        for rule, host in zip(spec.get("rules") or [], rule_hosts):
            server = server_for(host)
            if host and any(host_matches(t, host) for t in tls_hosts):
                if not server.tls:
                    server.tls, server.ssl_redirect = True, redirect
            if default is not None and server.default is None:
                server.default = default
            for http_path in (rule.get("http") or {}).get("paths") or []:
                upstream = backend(http_path.get("backend") or {})
                if upstream is None:
                    continue
                path = http_path.get("path") or "/"
                if http_path.get("pathType") == "Exact":
                    server.exact.setdefault(path, upstream)
                else:
                    server.prefixes.append((path.rstrip("/"), upstream))

    for server in [table.catch_all, *table.hosts.values(), *table.wildcards.values()]:
        first: dict[str, Upstream] = {}  # a prefix routed twice: the older Ingress's
        for prefix, upstream in server.prefixes:
            first.setdefault(prefix, upstream)
        server.prefixes = sorted(first.items(), key=lambda item: len(item[0]), reverse=True)
        if server.default is None:
            server.default = global_default
    table.tcp = tcp_upstreams(tcp_services or {}, services, slices_for)
    return table, problems


def tcp_upstreams(data: Mapping[str, str], services: Lookup,
                  slices_for: SlicesFor) -> dict[int, Upstream]:
    """ingress-nginx's ``tcp-services`` ConfigMap: ``"<port>": "<ns>/<service>:<port>"``
    (later ``:PROXY`` fields are accepted and ignored)."""
    result: dict[int, Upstream] = {}
    for listen, target in data.items():
        try:
            listen_port = int(listen)
            ref, _, rest = target.partition(":")
            namespace, _, name = ref.partition("/")
            port_text = rest.partition(":")[0]
        except ValueError:
            continue
        if not (0 < listen_port < 65536) or not namespace or not name or not port_text:
            continue
        port: dict[str, Any] = ({"number": int(port_text)} if port_text.isdigit()
                                else {"name": port_text})
        upstream, _ = resolve_service(namespace, {"service": {"name": name, "port": port}},
                                      services, slices_for, "")
        result[listen_port] = upstream
    return result


def load_balancer_status(publish_address: str) -> list[dict[str, str]]:
    if not publish_address:
        return []
    return [{"ip": publish_address} if is_ip(publish_address) else {"hostname": publish_address}]
