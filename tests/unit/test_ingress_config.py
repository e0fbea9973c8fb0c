"""Ingress → routing table: hosts, wildcards, path types, precedence, merging, class
selection, backends and TCP services (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from sampan.ingress.config import (
    CONTROLLER_NAME,
    build_table,
    host_matches,
    load_balancer_status,
    normalize_host,
    our_classes,
    prefix_matches,
    serves,
)

NS = "web"


def service(name: str, ports: list[dict[str, Any]] | None = None,
            **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name},
            "spec": {"ports": ports or [{"name": "http", "port": 80}], **spec}}


def endpoint_slice(svc: str, ips: list[str], port: int = 8080, name: str = "http",
                   ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": f"{svc}-x",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def backend(svc: str, port: int | str = 80) -> dict[str, Any]:
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": svc, "port": ref}}


def path(p: str, svc: str, path_type: str = "Prefix") -> dict[str, Any]:
    return {"path": p, "pathType": path_type, "backend": backend(svc)}


def ingress(name: str, rules: list[dict[str, Any]], *, created: str = "2024-01-01T00:00:00Z",
            **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "creationTimestamp": created},
            "spec": {"rules": rules, **spec}}


def rule(host: str | None, *paths: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host is not None:
        r["host"] = host
    return r


SERVICES = {f"{NS}/{n}": service(n) for n in ("a", "b", "c", "d", "e")}
SLICES = {n: [endpoint_slice(n, [f"10.0.0.{i}"])] for i, n in enumerate("abcde", start=1)}


def table_for(*ingresses: dict[str, Any], services: dict[str, Any] | None = None,
              slices: dict[str, list[dict[str, Any]]] | None = None,
              secrets: dict[str, Any] | None = None, **kwargs: Any):
    slices = SLICES if slices is None else slices
    return build_table(ingresses, SERVICES if services is None else services,
                       lambda ns, name: slices.get(name, []) if ns == NS else [],
                       secrets or {}, **kwargs)


def routed(table, host: str, p: str) -> str | None:
    upstream = table.route(normalize_host(host), p)[1]
    return upstream.name.split("/")[1].split(":")[0] if upstream is not None else None


def test_prefix_matches_whole_elements():
    assert prefix_matches("/foo", "/foo")
    assert prefix_matches("/foo", "/foo/bar")
    assert prefix_matches("/foo", "/foo/")
    assert not prefix_matches("/foo", "/foobar")
    assert prefix_matches("", "/anything")


def test_wildcard_matches_exactly_one_label():
    assert host_matches("*.example.com", "foo.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("*.example.com", "a.b.example.com")


@pytest.mark.parametrize("raw,host", [("Example.COM:8080", "example.com"), ("a.b.", "a.b"),
                                      ("[::1]:80", "::1"), ("10.0.0.1", "10.0.0.1")])
def test_normalize_host(raw: str, host: str):
    assert normalize_host(raw) == host


def test_host_and_path_routing_with_precedence():
    table, problems = table_for(
        ingress("one", [rule("foo.example.com", path("/", "a"), path("/api", "b"),
                             path("/api/v2", "c"), path("/exact", "d", "Exact")),
                        rule("*.example.com", path("/", "e")),
                        rule(None, path("/", "b"))]))
    assert problems == []
    assert routed(table, "foo.example.com", "/") == "a"
    assert routed(table, "foo.example.com", "/api") == "b"
    assert routed(table, "foo.example.com", "/api/") == "b"
    assert routed(table, "foo.example.com", "/apix") == "a"
    assert routed(table, "foo.example.com", "/api/v2/x") == "c"
    assert routed(table, "FOO.example.com:80", "/exact") == "d"
    assert routed(table, "foo.example.com", "/exact/sub") == "a"  # Exact is not a prefix
    assert routed(table, "bar.example.com", "/x") == "e"
    assert routed(table, "a.bar.example.com", "/x") == "b"  # wildcard: one label only
    assert routed(table, "other.test", "/") == "b"


def test_exact_beats_prefix_of_the_same_path_and_trailing_slash():
    table, _ = table_for(ingress("one", [rule("h", path("/foo/", "a"),
                                              path("/foo", "b", "Exact"))]))
    assert routed(table, "h", "/foo") == "b"
    assert routed(table, "h", "/foo/x") == "a"
    assert routed(table, "h", "/foo/") == "a"


def test_implementation_specific_is_a_prefix():
    table, _ = table_for(ingress("one", [rule("h", path("/img", "a",
                                                        "ImplementationSpecific"))]))
    assert routed(table, "h", "/img/1.png") == "a"
    assert routed(table, "h", "/imgs") is None


def test_rules_merge_across_ingresses_oldest_wins_a_clash():
    newer = ingress("newer", [rule("h", path("/", "b"), path("/x", "c"))],
                    created="2024-02-01T00:00:00Z")
    older = ingress("older", [rule("h", path("/", "a"))], created="2024-01-01T00:00:00Z")
    table, _ = table_for(newer, older)
    assert routed(table, "h", "/") == "a"
    assert routed(table, "h", "/x/y") == "c"


def test_no_match_uses_default_backends_then_404():
    table, _ = table_for(ingress("one", [rule("h", path("/app", "a"))]))
    assert routed(table, "h", "/other") is None
    assert routed(table, "unknown", "/") is None
    with_default = ingress("two", [rule("h2", path("/app", "a"))], defaultBackend=backend("c"),
                           created="2024-03-01T00:00:00Z")
    table, _ = table_for(ingress("one", [rule("h", path("/app", "a"))]), with_default)
    assert routed(table, "h2", "/other") == "c"
    assert routed(table, "unknown", "/") == "c"
    only_default = {"metadata": {"namespace": NS, "name": "d"},
                    "spec": {"defaultBackend": backend("d")}}
    table, _ = table_for(only_default)
    assert routed(table, "anything", "/x") == "d"


def test_backend_by_port_name_and_endpoints():
    services = {f"{NS}/a": service("a", [{"name": "web", "port": 80},
                                         {"name": "admin", "port": 81}])}
    slices = {"a": [endpoint_slice("a", ["10.0.0.1", "10.0.0.2"], 8080, "web"),
                    endpoint_slice("a", ["10.0.0.9"], 9090, "admin"),
                    endpoint_slice("a", ["10.0.0.3"], 8080, "web", ready=False)]}
    table, problems = table_for(
        ingress("one", [rule("h", {"path": "/", "pathType": "Prefix",
                                   "backend": backend("a", "web")},
                             {"path": "/admin", "pathType": "Prefix",
                              "backend": backend("a", 81)})]),
        services=services, slices=slices)
    assert problems == []
    web = table.route("h", "/")[1]
    assert web.endpoints == (("10.0.0.1", 8080), ("10.0.0.2", 8080))
    assert [web.pick(), web.pick(), web.pick()] == [("10.0.0.1", 8080), ("10.0.0.2", 8080),
                                                    ("10.0.0.1", 8080)]
    assert table.route("h", "/admin")[1].endpoints == (("10.0.0.9", 9090),)


def test_missing_service_and_port_are_problems_with_empty_upstreams():
    table, problems = table_for(ingress("one", [rule("h", path("/", "nope"),
                                                     {"path": "/p", "pathType": "Prefix",
                                                      "backend": backend("a", 99)})]))
    assert [p.ingress for p in problems] == [f"{NS}/one", f"{NS}/one"]
    assert 'Error obtaining Service "web/nope"' in problems[0].message
    assert "does not have any port 99" in problems[1].message
    assert table.route("h", "/")[1].endpoints == ()
    assert table.route("h", "/p")[1].endpoints == ()


def test_tls_certificates_and_redirects():
    secret = {"metadata": {"namespace": NS, "name": "cert"}, "type": "kubernetes.io/tls",
              "data": {"tls.crt": "eA==", "tls.key": "eA=="}}
    tls_ing = ingress("tls", [rule("secure.example.com", path("/", "a")),
                              rule("x.wild.test", path("/", "b"))],
                      tls=[{"hosts": ["secure.example.com", "*.wild.test"],
                            "secretName": "cert"}])
    missing = ingress("missing", [rule("other.example.com", path("/", "c"))],
                      tls=[{"hosts": ["other.example.com"], "secretName": "absent"}])
    no_redirect = ingress("noredirect", [rule("plain.example.com", path("/", "d"))],
                          tls=[{"hosts": ["plain.example.com"], "secretName": "cert"}])
    no_redirect["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}
    table, problems = table_for(tls_ing, missing, no_redirect,
                                secrets={f"{NS}/cert": secret})
    assert table.certificate("secure.example.com") == f"{NS}/cert"
    assert table.certificate("y.wild.test") == f"{NS}/cert"
    assert table.certificate("other.example.com") is None
    assert table.certificate("nothing.test") is None
    assert [p.message for p in problems] == [
        'Error getting SSL certificate "web/absent": local SSL certificate web/absent was not '
        'found']
    assert table.server("secure.example.com").ssl_redirect
    assert table.server("x.wild.test").ssl_redirect
    assert table.server("other.example.com").ssl_redirect  # TLS host without its cert still
    assert not table.server("plain.example.com").ssl_redirect
    table, _ = table_for(tls_ing, secrets={f"{NS}/cert": secret}, ssl_redirect=False)
    assert not table.server("secure.example.com").ssl_redirect


def test_tcp_services():
    services = {f"{NS}/db": service("db", [{"name": "pg", "port": 5432}])}
    slices = {"db": [endpoint_slice("db", ["10.0.0.7"], 15432, "pg")]}
    table, _ = table_for(services=services, slices=slices,
                         tcp_services={"9000": f"{NS}/db:5432", "9001": f"{NS}/db:pg",
                                       "9002": f"{NS}/missing:1", "bad": "x", "9003": "nope"})
    assert sorted(table.tcp) == [9000, 9001, 9002]
    assert table.tcp[9000].endpoints == (("10.0.0.7", 15432),)
    assert table.tcp[9001].endpoints == (("10.0.0.7", 15432),)
    assert table.tcp[9002].endpoints == ()


def ingress_class(name: str, controller: str = CONTROLLER_NAME, default: bool = False):
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations},
            "spec": {"controller": controller}}


def test_class_selection():
    classes = our_classes([ingress_class("sampan"), ingress_class("nginx", "k8s.io/ingress-nginx",
                                                                  default=True)])
    assert [c["metadata"]["name"] for c in classes] == ["sampan"]

    def ing(class_name: str | None = None, annotation: str | None = None) -> dict[str, Any]:
        obj = ingress("x", [])
        if class_name:
            obj["spec"]["ingressClassName"] = class_name
        if annotation:
            obj["metadata"]["annotations"] = {"kubernetes.io/ingress.class": annotation}
        return obj

    assert serves(ing("sampan"), classes, "sampan")
    assert not serves(ing("nginx"), classes, "sampan")
    assert serves(ing(annotation="sampan"), classes, "sampan")
    assert not serves(ing(annotation="nginx"), classes, "sampan")
    assert not serves(ing(), classes, "sampan")  # our class is not the default
    default = our_classes([ingress_class("sampan", default=True)])
    assert serves(ing(), default, "sampan")
    assert not serves(ing("nginx"), default, "sampan")
    assert not serves(ing("sampan"), [], "sampan")  # the class object must exist


def test_load_balancer_status():
    assert load_balancer_status("192.0.2.1") == [{"ip": "192.0.2.1"}]
    assert load_balancer_status("lb.example.com") == [{"hostname": "lb.example.com"}]
    assert load_balancer_status("") == []


def test_each_tls_secret_problem_is_reported_once_with_its_reason():
    unloadable = {"metadata": {"namespace": NS, "name": "bad"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "eA==", "tls.key": "eA=="}}
    keyless = {"metadata": {"namespace": NS, "name": "keyless"}, "type": "kubernetes.io/tls",
               "data": {"tls.crt": "eA=="}}
    ing = ingress("tls", [rule("bad.test", path("/", "a")), rule("keyless.test", path("/", "a"))],
                  tls=[{"hosts": ["bad.test"], "secretName": "bad"},
                       {"hosts": ["keyless.test"], "secretName": "keyless"}])
    table, problems = table_for(
        ing, secrets={f"{NS}/bad": unloadable, f"{NS}/keyless": keyless},
        certificate_errors={f"{NS}/bad": "invalid certificate or key: x",
                            f"{NS}/keyless": "invalid certificate or key: y"})
    assert [p.message for p in problems] == [
        'Error getting SSL certificate "web/bad": invalid certificate or key: x',
        'Error getting SSL certificate "web/keyless": secret has no tls.crt or tls.key']
    assert table.certificate("bad.test") is None  # the default certificate serves it
    assert table.server("bad.test").ssl_redirect
