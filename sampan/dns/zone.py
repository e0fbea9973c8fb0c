"""Authoritative answers for the cluster domain and for the reverse names of cluster
addresses, built from a ClusterView. A name that exists without a record of the asked type
is NODATA (NOERROR, empty, the SOA in authority); a name that does not exist is NXDOMAIN."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from sampan.dns.cluster import (
    ClusterView,
    Object,
    Port,
    cluster_ips,
    is_external_name,
    is_headless,
    service_ports,
)
from sampan.dns.names import POD, InvalidName, Request, is_ipv6, normalize_ip, parse, undashed

IN = dns.rdataclass.IN
RdType = dns.rdatatype.RdataType
SCHEMA_VERSION = "1.1.0"
SCHEMA_VERSION_TTL = 28800
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


@dataclass
class Answer:
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    cname_target: dns.name.Name | None = None  # an ExternalName: the server chases it


@dataclass(frozen=True)
class Target:
    """One address behind a name, and the port a SRV record would carry (as CoreDNS's
    msg.Service): ``owner`` is the name SRV records point to."""

    owner: dns.name.Name
    ip: str
    port: Port | None = None


def _rrset(name: dns.name.Name, ttl: int,
           rdatas: Iterable[dns.rdata.Rdata]) -> dns.rrset.RRset | None:
    rdatas = list(rdatas)
    if not rdatas:
        return None
    rrset = dns.rrset.RRset(name, IN, rdatas[0].rdtype)
    for rdata in rdatas:
        rrset.add(rdata, ttl)
    return rrset


def address_rdata(ip: str) -> dns.rdata.Rdata:
    return AAAA(IN, RdType.AAAA, ip) if is_ipv6(ip) else A(IN, RdType.A, ip)


class Zone:
    def __init__(self, domain: str, view: ClusterView, *, ttl: int = 5,
                 nameserver_ips: Sequence[str] = ()):
        self.origin = dns.name.from_text(domain.strip(".") + ".")
        self.view = view
        self.ttl = max(0, min(ttl, 3600))
        self.nameserver = dns.name.from_text("ns.dns", self.origin)
        self.nameserver_ips = [ip for ip in map(normalize_ip, nameserver_ips)
                               if ip is not None and ip not in ("0.0.0.0", "::")]

    def contains(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.origin)

    # -- forward names ---------------------------------------------------------------------
    def answer(self, qname: dns.name.Name, qtype: int) -> Answer:
        labels = [label.decode("ascii", "replace").lower()
                  for label in qname.relativize(self.origin).labels]
        if labels == ["@"] or not labels:
            return self._apex(qname, qtype)
        if labels == ["dns-version"]:
            version = TXT(IN, RdType.TXT, [SCHEMA_VERSION])
            return self._records(qname, qtype, {RdType.TXT: [version]}, ttl=SCHEMA_VERSION_TTL)
        if labels[-1] == "dns" and len(labels) <= 2:
            if labels == ["dns"]:
                return self.nodata()
            if labels == ["ns", "dns"]:
                return self._records(qname, qtype, self._by_type(
                    address_rdata(ip) for ip in self.nameserver_ips))
        try:
            request = parse(labels)
        except InvalidName:
            return self.nxdomain()
        if not request.namespace:
            return self.nodata()  # svc.<domain>, pod.<domain>: empty non-terminals
        if not self.view.namespace_exists(request.namespace):
            return self.nxdomain()
        if not request.service:
            return self.nodata()
        if request.kind == POD:
            return self._pod(qname, qtype, request)
        return self._service(qname, qtype, request)

    def _apex(self, qname: dns.name.Name, qtype: int) -> Answer:
        if qtype == RdType.SOA:
            return Answer(answer=[self.soa()])
        if qtype == RdType.NS:
            glue = _rrset(self.nameserver, self.ttl,
                          (address_rdata(ip) for ip in self.nameserver_ips))
            ns = _rrset(qname, self.ttl, [NS(IN, RdType.NS, self.nameserver)])
            return Answer(answer=[ns], additional=[glue] if glue else [])
        return self.nodata()

    def _pod(self, qname: dns.name.Name, qtype: int, request: Request) -> Answer:
        # "pods insecure": the name is its address, checked only for form and namespace.
        ip = undashed(request.service)
        if ip is None:
            return self.nxdomain()
        return self._records(qname, qtype, self._by_type([address_rdata(ip)]))

    def _service(self, qname: dns.name.Name, qtype: int, request: Request) -> Answer:
        service = self.view.service(request.namespace, request.service)
        if service is None:
            return self.nxdomain()
        if is_external_name(service):
            return self._external_name(qname, qtype, request, service)
        targets = self._targets(service, request)
        if not targets:
            return self.nxdomain()
        rdatas = self._by_type(address_rdata(t.ip) for t in targets)
        additional: list[dns.rrset.RRset] = []
        if qtype == RdType.SRV:
            srv, additional = self._srv(targets)
            rdatas[RdType.SRV] = srv
        answer = self._records(qname, qtype, rdatas)
        if answer.answer:
            answer.additional = additional
        return answer

    def _targets(self, service: Object, request: Request) -> list[Target]:
        namespace, name = request.namespace, request.service
        service_name = dns.name.from_text(f"{name}.{namespace}.svc", self.origin)
        if is_headless(service) or request.endpoint:
            targets = []
            for endpoint in self.view.endpoints(namespace, name):
                if request.endpoint and endpoint.hostname != request.endpoint:
                    continue
                owner = dns.name.Name((endpoint.hostname.encode(),) + service_name.labels)
                ports = [p for p in endpoint.ports if _port_matches(p, request)]
                if request.port and not ports:
                    continue
                targets.extend(Target(owner, endpoint.ip, p) for p in ports or [None])
            return targets
        ports = [p for p in service_ports(service) if _port_matches(p, request)]
        return [Target(service_name, ip, port) for port in ports for ip in cluster_ips(service)]

    def _srv(self, targets: list[Target]) -> tuple[list[dns.rdata.Rdata], list[dns.rrset.RRset]]:
        records = {(t.owner, t.port.port) for t in targets
                   if t.port is not None and t.port.port > 0}
        weight = 100 // len(records) if records else 0
        srv = [SRV(IN, RdType.SRV, 0, weight, port, owner) for owner, port in sorted(records)]
        glue: dict[tuple[dns.name.Name, int], list[dns.rdata.Rdata]] = {}
        for t in targets:
            rdata = address_rdata(t.ip)
            rdatas = glue.setdefault((t.owner, rdata.rdtype), [])
            if rdata not in rdatas:
                rdatas.append(rdata)
        additional = [r for (owner, _), rdatas in sorted(glue.items())
                      if (r := _rrset(owner, self.ttl, rdatas)) is not None]
        return srv, additional

    def _external_name(self, qname: dns.name.Name, qtype: int, request: Request,
                       service: Object) -> Answer:
        if request.endpoint or request.port:
            return self.nxdomain()
        external = ((service.get("spec") or {}).get("externalName") or "").strip(".")
        if not external or normalize_ip(external) is not None:
            return self.nxdomain()
        target = dns.name.from_text(external + ".")
        cname = _rrset(qname, self.ttl, [CNAME(IN, RdType.CNAME, target)])
        return Answer(answer=[cname], cname_target=None if qtype == RdType.CNAME else target)

    # -- reverse names ---------------------------------------------------------------------
    def reverse(self, qname: dns.name.Name, qtype: int) -> Answer | None:
        """PTR answers for ClusterIPs and endpoint addresses; None when the address is not the
        cluster's (the query then goes upstream, as CoreDNS's ``fallthrough in-addr.arpa``)."""
        if qtype != RdType.PTR or not any(qname.is_subdomain(z) for z in REVERSE_ZONES):
            return None
        try:
            ip = normalize_ip(dns.reversename.to_address(qname))
        except (dns.exception.DNSException, ValueError):
            return None
        if ip is None:
            return None
        targets = [f"{s['metadata']['name']}.{s['metadata']['namespace']}.svc"
                   for s in self.view.services_with_cluster_ip(ip)][:1]
        if not targets:
            targets = [f"{host}.{service}.{namespace}.svc"
                       for host, namespace, service in self.view.endpoint_names(ip)]
        if not targets:
            return None
        ptr = _rrset(qname, self.ttl,
                     [PTR(IN, RdType.PTR, dns.name.from_text(t, self.origin)) for t in targets])
        return Answer(answer=[ptr])

    # -- building blocks -------------------------------------------------------------------
    def soa(self) -> dns.rrset.RRset:
        rdata = SOA(IN, RdType.SOA, self.nameserver, dns.name.from_text("hostmaster", self.origin),
                    self.view.modified & 0xFFFFFFFF, 7200, 1800, 86400, self.ttl)
        return _rrset(self.origin, self.ttl, [rdata])

    def nxdomain(self) -> Answer:
        return Answer(rcode=dns.rcode.NXDOMAIN, authority=[self.soa()])

    def nodata(self) -> Answer:
        return Answer(authority=[self.soa()])

    @staticmethod
    def _by_type(rdatas: Iterable[dns.rdata.Rdata]) -> dict[int, list[dns.rdata.Rdata]]:
        grouped: dict[int, list[dns.rdata.Rdata]] = {}
        for rdata in rdatas:
            known = grouped.setdefault(rdata.rdtype, [])
            if rdata not in known:
                known.append(rdata)
        return grouped

    def _records(self, qname: dns.name.Name, qtype: int, rdatas: dict[int, list[dns.rdata.Rdata]],
                 ttl: int | None = None) -> Answer:
        """The records of type ``qtype`` at a name that exists (ANY: the addresses)."""
        wanted = [RdType.A, RdType.AAAA] if qtype == RdType.ANY else [qtype]
        rrsets = [r for t in wanted
                  if (r := _rrset(qname, self.ttl if ttl is None else ttl, rdatas.get(t, ())))]
        return Answer(answer=rrsets) if rrsets else self.nodata()


def _port_matches(port: Port, request: Request) -> bool:
    return ((not request.port or port.name.lower() == request.port)
            and (not request.protocol or port.protocol.lower() == request.protocol))
