"""The proxy's nftables ruleset, generated as data from service ports and rendered to ``nft``
scripts: a whole-table replacement, or the difference between two rulesets.

The shape is kube-proxy's nftables mode (``pkg/proxy/nftables``), in one ``inet`` table:

- ``services`` (from the dstnat hooks of prerouting and output) looks the destination up in
  verdict maps: ``service-ips`` (cluster, external and load-balancer IPs) and
  ``service-nodeports`` (node addresses); each entry jumps to a per-port chain.
- ``service-…`` chains pick an endpoint with ``numgen random mod N vmap`` (after ClientIP
  affinity sets), ``endpoint-…`` chains DNAT to it; ``external-…`` chains apply
  externalTrafficPolicy; ``local-…`` chains hold a Local policy's endpoints.
- Services without usable endpoints are rejected (or dropped, for a Local policy with no local
  endpoint) by filter chains on input, forward and output, through ``no-endpoint-…`` maps.
- Traffic that must come back through this node (hairpin, from outside the cluster, external
  traffic with Cluster policy) gets a mark; ``masquerading`` on postrouting SNATs it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sampan.proxy.model import Categorized, Endpoint, ServicePort, categorize

MASQUERADE_MARK = "0x4000"
_UNSAFE = re.compile(r"[^A-Za-z0-9/_.-]")


@dataclass(frozen=True)
class NodeInfo:
    """What the ruleset needs to know about the node it runs on."""

    name: str
    node_ips: tuple[str, ...] = ()
    cluster_cidrs: tuple[str, ...] = ("10.42.0.0/16",)
    service_cidrs: tuple[str, ...] = ("10.43.0.0/16",)


@dataclass(frozen=True)
class Chain:
    rules: tuple[str, ...]
    hook: str = ""  # "type nat hook prerouting priority dstnat ; policy accept ;" for base chains


@dataclass(frozen=True)
class NftSet:
    """A set or verdict map. ``keep`` sets (ClientIP affinity) keep their elements across
    syncs: the kernel adds them, a sync never flushes them."""

    kind: str  # "set" or "map"
    spec: str
    elements: tuple[str, ...] = ()
    keep: bool = False


@dataclass
class Ruleset:
    table: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)

    def chain(self, name: str, *rules: str, hook: str = "") -> None:
        self.chains[name] = Chain(tuple(rules), hook)

    def add_rules(self, name: str, *rules: str) -> None:
        old = self.chains.get(name) or Chain(())
        self.chains[name] = Chain(old.rules + rules, old.hook)

    _pending: dict[str, tuple[list[str], set[str]]] = field(default_factory=dict, repr=False,
                                                          compare=False)

    def add_elements(self, name: str, *elements: str) -> None:
        """Add elements to a set or map; a key already there keeps its first value (two
        Services claiming one external address and port: the first one listed keeps it, where
        a second ``add element`` would fail the whole transaction). ``finish`` writes them."""
        if name not in self._pending:
            current = self.sets[name].elements
            self._pending[name] = (list(current), {_element_key(e) for e in current})
        listed, keys = self._pending[name]
        for element in elements:
            key = _element_key(element)
            if key not in keys:
                keys.add(key)
                listed.append(element)

    def finish(self) -> Ruleset:
        for name, (listed, _) in self._pending.items():
            old = self.sets[name]
            self.sets[name] = NftSet(old.kind, old.spec, tuple(listed), old.keep)
        self._pending.clear()
        return self


def _element_key(element: str) -> str:
    """The key of a set element or map entry (``key [comment "..."] : verdict``)."""
    return element.split(" : ", 1)[0].split(" comment ", 1)[0].strip()


# -- names ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 15)
def hash_name(text: str, length: int = 8) -> str:
    """``length`` base32 characters of the SHA-256 of ``text``: the hashed part of a chain or
    set name (both backends). Every sync names every chain again, hence the cache; base32
    turns each 5 bytes into 8 characters, so only the digest's first bytes are encoded."""
    digest = hashlib.sha256(text.encode()).digest()[:-(-length // 8) * 5]
    return base64.b32encode(digest).decode()[:length]


def _base(sp: ServicePort) -> str:
    base = f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}"
    return base + "/ipv6" if sp.family == 6 else base


def _name(kind: str, base: str) -> str:
    return _UNSAFE.sub(".", f"{kind}-{hash_name(kind + base)}-{base}")


def service_chain(sp: ServicePort) -> str:
    return _name("service", _base(sp))


def local_chain(sp: ServicePort) -> str:
    return _name("local", _base(sp))


def external_chain(sp: ServicePort) -> str:
    return _name("external", _base(sp))


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return _name("endpoint", f"{_base(sp)}__{ep.ip}/{ep.port}")


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    # The timeout is part of the hash: a set's timeout cannot change, a new one replaces it.
    base = f"{_base(sp)}__{ep.ip}/{ep.port}"
    return _UNSAFE.sub(".", f"affinity-{hash_name(f'{base}/{sp.session_affinity_seconds}')}-{base}")


# -- generation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    version: int

    @property
    def ip(self) -> str:
        return "ip" if self.version == 4 else "ip6"

    @property
    def addr(self) -> str:
        return "ipv4_addr" if self.version == 4 else "ipv6_addr"

    @property
    def nfproto(self) -> str:
        return "ipv4" if self.version == 4 else "ipv6"

    def name(self, base: str) -> str:
        return base if self.version == 4 else f"{base}-v6"


def ip_version(text: str) -> int:
    """4 or 6, for an address or a network."""
    return ipaddress.ip_network(text, strict=False).version


def families(node: NodeInfo, ports: Iterable[ServicePort]) -> list[int]:
    """The IP families to program: IPv4 always, IPv6 when the node or a service has it."""
    versions = {4} | {ip_version(c) for c in (*node.cluster_cidrs, *node.node_ips)}
    return sorted(versions | {sp.family for sp in ports})


@dataclass(frozen=True)
class Plan:
    """What one service port programs on this node, whatever the backend (the decisions of
    kube-proxy's syncProxyRules): which addresses lead where, which per-port chains exist."""

    has_endpoints: bool  # usable endpoints anywhere: otherwise every address is rejected
    has_internal: bool  # the cluster IP leads to endpoints (a Local policy needs local ones)
    has_external: bool  # node ports and external IPs lead to endpoints
    uses_external_chain: bool
    uses_cluster: bool  # the cluster-wide endpoint chain exists
    uses_local: bool  # the local endpoint chain exists
    endpoints: tuple[Endpoint, ...]  # the endpoints some chain dispatches to

    @property
    def drops(self) -> bool:
        """Without a usable address, drop (endpoints exist but none here, under a Local
        policy: as if the packet never arrived) rather than reject (no endpoints at all)."""
        return self.has_endpoints


def plan(sp: ServicePort, cat: Categorized) -> Plan:
    has_endpoints = cat.any_usable
    uses_external_chain = has_endpoints and sp.externally_accessible
    uses_cluster = bool(cat.cluster) and (sp.uses_cluster_endpoints or
                                         (uses_external_chain and sp.external_local))
    uses_local = bool(cat.local) and sp.uses_local_endpoints
    # Both sets are sorted; ``reachable`` is their sorted union.
    endpoints = (cat.reachable if uses_cluster and uses_local else
                 cat.cluster if uses_cluster else cat.local if uses_local else ())
    return Plan(
        has_endpoints=has_endpoints,
        has_internal=has_endpoints and (not sp.internal_local or bool(cat.local)),
        has_external=has_endpoints and (not sp.external_local or bool(cat.local)),
        uses_external_chain=uses_external_chain, uses_cluster=uses_cluster,
        uses_local=uses_local, endpoints=endpoints)


def _families(node: NodeInfo, ports: Sequence[ServicePort]) -> list[_Family]:
    return [_Family(v) for v in families(node, ports)]


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _add_base(rs: Ruleset, node: NodeInfo, families: Sequence[_Family]) -> None:
    for f in families:
        rs.sets[f.name("cluster-ips")] = NftSet(
            "set", f"type {f.addr} ; comment \"Active ClusterIPs\" ;")
        nodeport_ips = tuple(ip for ip in node.node_ips if ip_version(ip) == f.version)
        rs.sets[f.name("nodeport-ips")] = NftSet(
            "set", f"type {f.addr} ; comment \"IPs that accept NodePort traffic\" ;",
            nodeport_ips)
        service_key = f"{f.addr} . inet_proto . inet_service : verdict"
        nodeport_key = "inet_proto . inet_service : verdict"
        rs.sets[f.name("service-ips")] = NftSet("map", f"type {service_key} ;")
        rs.sets[f.name("service-nodeports")] = NftSet("map", f"type {nodeport_key} ;")
        rs.sets[f.name("no-endpoint-services")] = NftSet("map", f"type {service_key} ;")
        rs.sets[f.name("no-endpoint-nodeports")] = NftSet("map", f"type {nodeport_key} ;")

    rs.chain("nat-prerouting", "jump services",
             hook="type nat hook prerouting priority dstnat ; policy accept ;")
    rs.chain("nat-output", "jump services",
             hook="type nat hook output priority -100 ; policy accept ;")
    rs.chain("nat-postrouting", "jump masquerading",
             hook="type nat hook postrouting priority srcnat ; policy accept ;")
    rs.chain("filter-input", "ct state new jump nodeport-endpoints-check",
             "ct state new jump service-endpoints-check",
             hook="type filter hook input priority filter ; policy accept ;")
    rs.chain("filter-forward", "ct state new jump service-endpoints-check",
             "ct state new jump cluster-ips-check",
             hook="type filter hook forward priority filter ; policy accept ;")
    rs.chain("filter-output", "ct state new jump service-endpoints-check",
             "ct state new jump cluster-ips-check",
             hook="type filter hook output priority filter ; policy accept ;")
    rs.chain("mark-for-masquerade", f"meta mark set meta mark or {MASQUERADE_MARK}")
    rs.chain("masquerading", f"meta mark & {MASQUERADE_MARK} == 0 return",
             f"meta mark set meta mark xor {MASQUERADE_MARK}", "masquerade fully-random")
    rs.chain("reject-chain", "meta l4proto tcp reject with tcp reset", "reject")
    for name in ("services", "service-endpoints-check", "nodeport-endpoints-check",
                 "cluster-ips-check"):
        rs.chain(name)
    for f in families:
        nodeport_match = (f"{f.ip} daddr @{f.name('nodeport-ips')}" if node.node_ips
                          else f"meta nfproto {f.nfproto} fib daddr type local")
        rs.add_rules("services",
                     f"{f.ip} daddr . meta l4proto . th dport vmap @{f.name('service-ips')}",
                     f"{nodeport_match} meta l4proto . th dport vmap "
                     f"@{f.name('service-nodeports')}")
        rs.add_rules("service-endpoints-check",
                     f"{f.ip} daddr . meta l4proto . th dport vmap "
                     f"@{f.name('no-endpoint-services')}")
        rs.add_rules("nodeport-endpoints-check",
                     f"{nodeport_match} meta l4proto . th dport vmap "
                     f"@{f.name('no-endpoint-nodeports')}")
        rs.add_rules("cluster-ips-check",
                     f"{f.ip} daddr @{f.name('cluster-ips')} goto reject-chain "
                     "comment \"Reject traffic to invalid ports of ClusterIPs\"")
        cidrs = [c for c in node.service_cidrs if ip_version(c) == f.version]
        if cidrs:
            rs.add_rules("cluster-ips-check",
                         f"{f.ip} daddr {{ {', '.join(cidrs)} }} drop "
                         "comment \"Drop traffic to unallocated ClusterIPs\"")


def _not_cluster(f: _Family, node: NodeInfo) -> str:
    cidrs = [c for c in node.cluster_cidrs if ip_version(c) == f.version]
    return f"{f.ip} saddr != {{ {', '.join(cidrs)} }}" if cidrs else ""


def _is_cluster(f: _Family, node: NodeInfo) -> str:
    cidrs = [c for c in node.cluster_cidrs if ip_version(c) == f.version]
    return f"{f.ip} saddr {{ {', '.join(cidrs)} }}" if cidrs else ""


def _dispatch_rules(sp: ServicePort, f: _Family, endpoints: Sequence[Endpoint]) -> list[str]:
    """Affinity first (a client seen recently goes back to its endpoint), then an equal-odds
    random choice."""
    rules = []
    if sp.session_affinity_seconds:
        rules += [f"{f.ip} saddr @{affinity_set(sp, ep)} goto {endpoint_chain(sp, ep)}"
                  for ep in endpoints]
    choices = " , ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")
    return rules


def _add_service_port(rs: Ruleset, sp: ServicePort, cat: Categorized, node: NodeInfo) -> None:
    f = _Family(sp.family)
    p = plan(sp, cat)
    proto = sp.protocol.lower()
    comment = f"comment {_quote(sp.key)}"
    cluster, local = service_chain(sp), local_chain(sp)
    external = external_chain(sp)
    internal_chain = local if sp.internal_local else cluster
    external_policy_chain = local if sp.external_local else cluster
    verdict = "drop" if p.drops else "goto reject-chain"

    service_ips, no_endpoints = f.name("service-ips"), f.name("no-endpoint-services")
    rs.add_elements(f.name("cluster-ips"), sp.cluster_ip)
    key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    if p.has_internal:
        rs.add_elements(service_ips, f"{key} : goto {internal_chain}")
    else:
        rs.add_elements(no_endpoints, f"{key} {comment} : {verdict}")
    for vip in (*sp.external_ips, *sp.load_balancer_ips):
        vkey = f"{vip} . {proto} . {sp.port}"
        if p.has_endpoints:
            rs.add_elements(service_ips, f"{vkey} : goto {external}")
        if not p.has_external:
            rs.add_elements(no_endpoints, f"{vkey} {comment} : {verdict}")
    if sp.node_port:
        nkey = f"{proto} . {sp.node_port}"
        if p.has_endpoints:
            rs.add_elements(f.name("service-nodeports"), f"{nkey} : goto {external}")
        if not p.has_external:
            rs.add_elements(f.name("no-endpoint-nodeports"), f"{nkey} {comment} : {verdict}")

    if p.uses_cluster:
        rs.chain(cluster, *_dispatch_rules(sp, f, cat.cluster))
    if p.uses_local:
        rs.chain(local, *_dispatch_rules(sp, f, cat.local))
    if p.has_internal:
        not_cluster = _not_cluster(f, node)
        if not_cluster:  # off-cluster clients of a VIP: replies must come back through us
            rs.chains[internal_chain] = Chain((
                f"{f.ip} daddr {sp.cluster_ip} {not_cluster} jump mark-for-masquerade",
                *rs.chains[internal_chain].rules))
    if p.uses_external_chain:
        rules = []
        if not sp.external_local:
            rules.append("jump mark-for-masquerade")
        else:
            # Pods and the node itself reach external addresses as if through the load
            # balancer: no traffic policy (and the node's own traffic is masqueraded).
            if _is_cluster(f, node) and p.uses_cluster:
                rules.append(f"{_is_cluster(f, node)} goto {cluster} "
                             "comment \"short-circuit pod traffic\"")
            rules.append("fib saddr type local jump mark-for-masquerade "
                         "comment \"masquerade local traffic\"")
            if p.uses_cluster:
                rules.append(f"fib saddr type local goto {cluster} "
                             "comment \"short-circuit local traffic\"")
        if p.has_external:
            rules.append(f"goto {external_policy_chain}")
        rs.chain(external, *rules)

    for ep in p.endpoints:
        rules = [f"{f.ip} saddr {ep.ip} jump mark-for-masquerade"]
        if sp.session_affinity_seconds:
            name = affinity_set(sp, ep)
            rs.sets[name] = NftSet("set", f"type {f.addr} ; flags dynamic,timeout ; "
                                          f"timeout {sp.session_affinity_seconds}s ;", keep=True)
            rules.append(f"update @{name} {{ {f.ip} saddr }}")
        rules.append(f"meta l4proto {proto} dnat {f.ip} to {ep}")
        rs.chain(endpoint_chain(sp, ep), *rules)


def build_ruleset(ports: Iterable[ServicePort], node: NodeInfo, table: str) -> Ruleset:
    """The complete ruleset for ``ports`` on ``node`` (pure)."""
    return build_categorized(((sp, categorize(sp, node.name)) for sp in ports), node, table)


def build_categorized(ports: Iterable[tuple[ServicePort, Categorized]], node: NodeInfo,
                      table: str) -> Ruleset:
    """``build_ruleset`` for ports already categorized for ``node`` (the proxier has them)."""
    ports = list(ports)
    rs = Ruleset(table)
    _add_base(rs, node, _families(node, [sp for sp, _ in ports]))
    for sp, cat in ports:
        _add_service_port(rs, sp, cat, node)
    return rs.finish()


# -- rendering ------------------------------------------------------------------------------
def _chain_decl(t: str, name: str, chain: Chain) -> str:
    return f"add chain {t} {name} {{ {chain.hook} }}" if chain.hook else f"add chain {t} {name}"


def _set_decl(t: str, name: str, s: NftSet) -> str:
    return f"add {s.kind} {t} {name} {{ {s.spec} }}"


def _elements(t: str, name: str, s: NftSet) -> list[str]:
    return [f"add element {t} {name} {{ {', '.join(s.elements)} }}"] if s.elements else []


def _rules(t: str, name: str, chain: Chain) -> list[str]:
    return [f"add rule {t} {name} {rule}" for rule in chain.rules]


def render_full(rs: Ruleset) -> str:
    """A script that replaces the whole table (creating it if missing) in one transaction."""
    t = f"inet {rs.table}"
    lines = [f"add table {t}", f"delete table {t}",
             f"add table {t} {{ comment \"sampan service proxy\" ; }}"]
    lines += [_set_decl(t, n, s) for n, s in rs.sets.items()]
    lines += [_chain_decl(t, n, c) for n, c in rs.chains.items()]
    for name, chain in rs.chains.items():
        lines += _rules(t, name, chain)
    for name, s in rs.sets.items():
        lines += _elements(t, name, s)
    return "\n".join(lines) + "\n"


def render_update(old: Ruleset, new: Ruleset) -> str:
    """A script that turns the table ``old`` describes into ``new``, touching only the chains
    that changed; every non-affinity set and map is refilled. Affinity sets keep their
    elements. One transaction: readers see the old rules or the new ones."""
    t = f"inet {new.table}"
    lines = [f"add table {t}"]
    lines += [_set_decl(t, n, s) for n, s in new.sets.items() if n not in old.sets]
    refill = [n for n, s in new.sets.items() if not s.keep]
    lines += [f"flush {new.sets[n].kind} {t} {n}" for n in refill if n in old.sets]
    changed = [n for n, c in new.chains.items() if old.chains.get(n) != c]
    for name in changed:
        lines.append(_chain_decl(t, name, new.chains[name]))
        if name in old.chains:
            lines.append(f"flush chain {t} {name}")
    gone = [n for n in old.chains if n not in new.chains]
    lines += [f"flush chain {t} {n}" for n in gone]
    lines += [f"delete chain {t} {n}" for n in gone]
    lines += [f"delete {s.kind} {t} {n}" for n, s in old.sets.items() if n not in new.sets]
    for name in changed:
        lines += _rules(t, name, new.chains[name])
    for name in refill:
        lines += _elements(t, name, new.sets[name])
    return "\n".join(lines) + "\n"


def delete_table_script(table: str) -> str:
    return f"add table inet {table}\ndelete table inet {table}\n"
