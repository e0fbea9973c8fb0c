"""Name parsing and record building of the cluster DNS zone over fake informer caches."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.reversename
import pytest

from sampan.client import Indexer
from sampan.dns.cluster import ClusterView
from sampan.dns.names import InvalidName, Request, dashed, parse, undashed
from sampan.dns.zone import Zone

N = dns.name.from_text


def service(name: str, namespace: str = "ns", *, cluster_ip: str = "10.43.0.5",
            ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    ips = [cluster_ip] if cluster_ip != "None" else ["None"]
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": ips,
                     "ports": ports if ports is not None else
                     [{"name": "http", "protocol": "TCP", "port": 80}], **spec}}


def endpoint_slice(name: str, svc: str, endpoints: list[dict[str, Any]], *, namespace: str = "ns",
                   address_type: str = "IPv4",
                   ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else
            [{"name": "http", "protocol": "TCP", "port": 8080}]}


def ep(ip: str, *, ready: bool | None = True, hostname: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    return e


@pytest.fixture
def caches() -> tuple[Indexer, Indexer, Indexer]:
    services, slices, namespaces = Indexer(), Indexer(), Indexer()
    for ns in ("ns", "default"):
        namespaces.upsert({"metadata": {"name": ns}})
    services.upsert(service("web"))
    services.upsert(service("dual", cluster_ip="10.43.0.6"))
    services.get("ns/dual")["spec"]["clusterIPs"] = ["10.43.0.6", "fd00:43::6"]
    services.upsert(service("db", cluster_ip="None",
                            ports=[{"name": "pg", "protocol": "TCP", "port": 5432}]))
    services.upsert(service("empty", cluster_ip="None"))
    services.upsert(service("ext", cluster_ip="", type="ExternalName",
                            externalName="example.org", ports=[]))
    services.upsert(service("kubernetes", "default", cluster_ip="10.43.0.1",
                            ports=[{"name": "https", "protocol": "TCP", "port": 443}]))
    slices.upsert(endpoint_slice("db-1", "db", [
        ep("10.42.0.7", hostname="db-0"), ep("10.42.0.8", hostname="db-1"),
        ep("10.42.0.9", ready=False, hostname="db-2"), ep("10.42.0.10", ready=None)],
        ports=[{"name": "pg", "protocol": "TCP", "port": 5432}]))
    slices.upsert(endpoint_slice("db-2", "db", [ep("fd00:42::7")], address_type="IPv6",
                                 ports=[{"name": "pg", "protocol": "TCP", "port": 5432}]))
    slices.upsert(endpoint_slice("web-1", "web", [ep("10.42.1.3")]))
    return services, slices, namespaces


@pytest.fixture
def zone(caches) -> Zone:
    return Zone("cluster.local", ClusterView(*caches), ttl=5, nameserver_ips=["10.43.0.10"])


def addresses(answer) -> list[str]:
    return sorted(r.to_text() for rrset in answer.answer for r in rrset)


# -- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, expected", [
    ([], Request()),
    (["svc"], Request(kind="svc")),
    (["ns", "svc"], Request(kind="svc", namespace="ns")),
    (["web", "ns", "svc"], Request(kind="svc", namespace="ns", service="web")),
    (["db-0", "db", "ns", "svc"], Request("svc", "ns", "db", endpoint="db-0")),
    (["_http", "_tcp", "web", "ns", "svc"],
     Request("svc", "ns", "web", port="http", protocol="tcp")),
    (["1-2-3-4", "ns", "pod"], Request(kind="pod", namespace="ns", service="1-2-3-4")),
])
def test_parse(labels, expected):
    assert parse(labels) == expected


@pytest.mark.parametrize("labels", [
    ["foo"], ["web", "ns", "nodes"], ["x", "1-2-3-4", "ns", "pod"],
    ["http", "tcp", "web", "ns", "svc"],
    "kubernetes.default.svc.cluster.local.default.svc".split("."),
])
def test_parse_rejects(labels):
    with pytest.raises(InvalidName):
        parse(labels)


@pytest.mark.parametrize("ip, label", [("10.42.0.7", "10-42-0-7"), ("fd00::1", "fd00--1"),
                                       ("::1", "0--1"), ("fd00::", "fd00--0")])
def test_dashed_round_trip(ip, label):
    assert dashed(ip) == label
    assert undashed(label) == ip


def test_undashed_rejects_garbage():
    assert undashed("not-an-ip") is None
    assert undashed("999-1-1-1") is None


# -- services -----------------------------------------------------------------------------------
def test_cluster_ip_service(zone):
    answer = zone.answer(N("web.ns.svc.cluster.local."), T.A)
    assert answer.rcode == dns.rcode.NOERROR
    assert addresses(answer) == ["10.43.0.5"]
    assert answer.answer[0].ttl == 5
    assert answer.answer[0].name == N("web.ns.svc.cluster.local.")


def test_lookup_is_case_insensitive(zone):
    answer = zone.answer(N("WEB.Ns.SVC.cluster.LOCAL."), T.A)
    assert addresses(answer) == ["10.43.0.5"]


def test_nodata_for_a_type_the_name_lacks(zone):
    for qtype in (T.AAAA, T.TXT, T.MX):
        answer = zone.answer(N("web.ns.svc.cluster.local."), qtype)
        assert answer.rcode == dns.rcode.NOERROR and not answer.answer
        assert answer.authority[0].rdtype == T.SOA
        assert answer.authority[0].name == N("cluster.local.")


def test_dual_stack(zone):
    assert addresses(zone.answer(N("dual.ns.svc.cluster.local."), T.A)) == ["10.43.0.6"]
    assert addresses(zone.answer(N("dual.ns.svc.cluster.local."), T.AAAA)) == ["fd00:43::6"]


@pytest.mark.parametrize("name", [
    "nope.ns.svc.cluster.local.", "web.nonexistent.svc.cluster.local.", "foo.cluster.local.",
    "kubernetes.default.svc.cluster.local.default.svc.cluster.local.",
    "kubernetes.default.svc.cluster.local.svc.cluster.local.",
    "bogus.web.ns.svc.cluster.local.", "_grpc._tcp.web.ns.svc.cluster.local.",
    "_http._udp.web.ns.svc.cluster.local.",
])
def test_nxdomain(zone, name):
    answer = zone.answer(N(name), T.A)
    assert answer.rcode == dns.rcode.NXDOMAIN
    assert answer.authority[0].rdtype == T.SOA


@pytest.mark.parametrize("name", ["svc.cluster.local.", "pod.cluster.local.",
                                  "ns.svc.cluster.local.",
                                  "ns.pod.cluster.local."])
def test_empty_non_terminals_are_nodata(zone, name):
    answer = zone.answer(N(name), T.A)
    assert answer.rcode == dns.rcode.NOERROR and not answer.answer and answer.authority


def test_headless_answers_ready_endpoints(zone):
    answer = zone.answer(N("db.ns.svc.cluster.local."), T.A)
    assert addresses(answer) == ["10.42.0.10", "10.42.0.7", "10.42.0.8"]  # not db-2 (unready)
    assert addresses(zone.answer(N("db.ns.svc.cluster.local."), T.AAAA)) == ["fd00:42::7"]


def test_headless_without_ready_endpoints_is_nxdomain(zone):
    assert zone.answer(N("empty.ns.svc.cluster.local."), T.A).rcode == dns.rcode.NXDOMAIN


def test_endpoint_hostname_records(zone):
    assert addresses(zone.answer(N("db-0.db.ns.svc.cluster.local."), T.A)) == ["10.42.0.7"]
    assert addresses(zone.answer(N("10-42-0-10.db.ns.svc.cluster.local."), T.A)) == ["10.42.0.10"]
    v6 = zone.answer(N("fd00-42--7.db.ns.svc.cluster.local."), T.AAAA)
    assert addresses(v6) == ["fd00:42::7"]
    assert zone.answer(N("db-2.db.ns.svc.cluster.local."), T.A).rcode == dns.rcode.NXDOMAIN
    # endpoints of a ClusterIP service have names too (as CoreDNS)
    assert addresses(zone.answer(N("10-42-1-3.web.ns.svc.cluster.local."), T.A)) == ["10.42.1.3"]


def test_srv_cluster_ip_points_at_the_service_name(zone):
    answer = zone.answer(N("_http._tcp.web.ns.svc.cluster.local."), T.SRV)
    assert [r.to_text() for r in answer.answer[0]] == ["0 100 80 web.ns.svc.cluster.local."]
    assert [(a.name.to_text(), [r.to_text() for r in a]) for a in answer.additional] == \
        [("web.ns.svc.cluster.local.", ["10.43.0.5"])]


def test_srv_headless_one_per_endpoint(zone):
    answer = zone.answer(N("_pg._tcp.db.ns.svc.cluster.local."), T.SRV)
    targets = sorted(r.to_text() for r in answer.answer[0])
    assert targets == [
        "0 25 5432 10-42-0-10.db.ns.svc.cluster.local.", "0 25 5432 db-0.db.ns.svc.cluster.local.",
        "0 25 5432 db-1.db.ns.svc.cluster.local.", "0 25 5432 fd00-42--7.db.ns.svc.cluster.local."]
    glue = {a.name.to_text(): [r.to_text() for r in a] for a in answer.additional}
    assert glue["db-0.db.ns.svc.cluster.local."] == ["10.42.0.7"]
    assert glue["fd00-42--7.db.ns.svc.cluster.local."] == ["fd00:42::7"]


def test_srv_on_the_service_name_lists_every_port(zone):
    answer = zone.answer(N("kubernetes.default.svc.cluster.local."), T.SRV)
    assert [r.to_text() for r in answer.answer[0]] == [
        "0 100 443 kubernetes.default.svc.cluster.local."]


def test_external_name_is_a_cname(zone):
    answer = zone.answer(N("ext.ns.svc.cluster.local."), T.A)
    assert answer.answer[0].rdtype == T.CNAME
    assert answer.answer[0][0].target == N("example.org.")
    assert answer.cname_target == N("example.org.")
    assert zone.answer(N("ext.ns.svc.cluster.local."), T.CNAME).cname_target is None
    assert zone.answer(N("x.ext.ns.svc.cluster.local."), T.CNAME).rcode == dns.rcode.NXDOMAIN


def test_pod_records_insecure(zone):
    assert addresses(zone.answer(N("10-42-0-99.ns.pod.cluster.local."), T.A)) == ["10.42.0.99"]
    assert addresses(zone.answer(N("fd00--9.ns.pod.cluster.local."), T.AAAA)) == ["fd00::9"]
    answer = zone.answer(N("10-42-0-99.ns.pod.cluster.local."), T.AAAA)
    assert answer.rcode == dns.rcode.NOERROR and not answer.answer
    assert zone.answer(N("garbage.ns.pod.cluster.local."), T.A).rcode == dns.rcode.NXDOMAIN
    other_namespace = zone.answer(N("10-42-0-99.nonexistent.pod.cluster.local."), T.A)
    assert other_namespace.rcode == dns.rcode.NXDOMAIN


def test_apex_soa_ns_and_schema_version(zone):
    soa = zone.answer(N("cluster.local."), T.SOA).answer[0]
    assert soa[0].mname == N("ns.dns.cluster.local.") and soa[0].minimum == 5
    ns = zone.answer(N("cluster.local."), T.NS)
    assert ns.answer[0][0].target == N("ns.dns.cluster.local.")
    assert [r.to_text() for r in ns.additional[0]] == ["10.43.0.10"]
    txt = zone.answer(N("dns-version.cluster.local."), T.TXT).answer[0]
    assert txt[0].to_text() == '"1.1.0"' and txt.ttl == 28800
    assert addresses(zone.answer(N("ns.dns.cluster.local."), T.A)) == ["10.43.0.10"]


# -- reverse ------------------------------------------------------------------------------------
def test_ptr_for_cluster_ip(zone):
    answer = zone.reverse(N("5.0.43.10.in-addr.arpa."), T.PTR)
    assert [r.to_text() for r in answer.answer[0]] == ["web.ns.svc.cluster.local."]
    ptr6 = zone.reverse(dns.reversename.from_address("fd00:43::6"), T.PTR)
    assert [r.to_text() for r in ptr6.answer[0]] == ["dual.ns.svc.cluster.local."]


def test_ptr_for_endpoint(zone):
    answer = zone.reverse(N("7.0.42.10.in-addr.arpa."), T.PTR)
    assert [r.to_text() for r in answer.answer[0]] == ["db-0.db.ns.svc.cluster.local."]
    answer = zone.reverse(N("10.0.42.10.in-addr.arpa."), T.PTR)
    assert [r.to_text() for r in answer.answer[0]] == ["10-42-0-10.db.ns.svc.cluster.local."]


def test_ptr_for_unknown_addresses_falls_through(zone):
    assert zone.reverse(N("9.0.42.10.in-addr.arpa."), T.PTR) is None  # unready endpoint
    assert zone.reverse(N("1.1.1.1.in-addr.arpa."), T.PTR) is None
    assert zone.reverse(N("10.in-addr.arpa."), T.PTR) is None
    assert zone.reverse(N("5.0.43.10.in-addr.arpa."), T.A) is None


# -- updates ------------------------------------------------------------------------------------
def test_answers_follow_the_caches(caches, zone):
    services, slices, _ = caches
    services.upsert(service("web", cluster_ip="10.43.0.50"))
    assert addresses(zone.answer(N("web.ns.svc.cluster.local."), T.A)) == ["10.43.0.50"]
    assert zone.reverse(N("5.0.43.10.in-addr.arpa."), T.PTR) is None
    slices.remove("ns/db-1")
    assert addresses(zone.answer(N("db.ns.svc.cluster.local."), T.A)) == []
    services.remove("ns/web")
    assert zone.answer(N("web.ns.svc.cluster.local."), T.A).rcode == dns.rcode.NXDOMAIN
