"""The proxy's iptables backend, for hosts without nftables: kube-proxy's iptables mode
(``pkg/proxy/iptables``) driven by the same ServicePort/Categorized model as the nft backend.

Our chains carry a per-node prefix (``SAMPAN-<hash of the node name>``) so two proxies in one
network namespace never touch each other's rules. In the nat table:

- ``<p>-SERVICES`` (jumped to from PREROUTING and OUTPUT) matches cluster, external and
  load-balancer IPs and jumps to per-port chains; its last rules send node addresses (or any
  local address) to ``<p>-NODEPORTS``.
- ``<p>-SVC-…`` picks an endpoint with ``-m statistic --mode random --probability 1/n…`` (after
  ``-m recent`` checks for ClientIP affinity); ``<p>-SVL-…`` does the same over a Local
  policy's endpoints; ``<p>-EXT-…`` applies externalTrafficPolicy; ``<p>-SEP-…`` DNATs.
- ``<p>-MARK-MASQ`` marks traffic that must come back through this node (off-cluster clients,
  hairpin, external traffic with Cluster policy); ``<p>-POSTROUTING`` masquerades it.

In the filter table ``<p>-SERVICES`` (OUTPUT, FORWARD) rejects cluster IPs without endpoints,
invalid ports of cluster IPs (through ``<p>-REJECT``: a TCP reset, else ICMP port
unreachable) and drops unallocated addresses of the service CIDRs;
``<p>-EXTERNAL`` (INPUT, FORWARD, OUTPUT) rejects external IPs and node ports without
endpoints (drops them under a Local policy without local endpoints); ``<p>-FORWARD`` lets
service traffic through a FORWARD chain whose policy is DROP.

A sync feeds ``iptables-restore --noflush`` one script per IP family: only our chains are
declared (which flushes them), rewritten and, when no longer wanted, deleted; each table is
committed atomically. A full sync rewrites every chain; a partial one only the chains that
changed since the last sync, as upstream's minimized restores do.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sampan.proxy.kernel import run
from sampan.proxy.model import Categorized, Endpoint, ServicePort
from sampan.proxy.rules import MASQUERADE_MARK, NodeInfo, families, hash_name, ip_version, plan

log = logging.getLogger(__name__)

CHAIN_NAME_MAX = 28  # XT_EXTENSION_MAXNAMELEN - 1
PREFIX_MAX = 12  # leaves 11 hash characters in "<prefix>-SVC-<hash>"
TABLES = ("filter", "nat")  # filter first: upstream's order (a reject goes before a DNAT)
WAIT_SECONDS = "5"  # -w: wait for the xtables lock (legacy iptables) instead of failing

Tables = dict[str, dict[str, tuple[str, ...]]]  # table -> chain -> rules ("-m … -j …")


class IptablesError(Exception):
    pass


# -- names --------------------------------------------------------------------------------------
def default_chain_prefix(node_name: str) -> str:
    """``SAMPAN-`` and four characters of a hash of the node's name."""
    return f"SAMPAN-{hash_name(node_name, 4)}"


@dataclass(frozen=True)
class ChainNames:
    """Every chain name of one proxy, all starting with ``prefix`` + ``-``."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or len(self.prefix) > PREFIX_MAX or any(
                c.isspace() or c in "\"'!" for c in self.prefix):
            raise ValueError(f"chain prefix {self.prefix!r}: 1-{PREFIX_MAX} characters, "
                             "no spaces or quotes")

    @property
    def services(self) -> str:
        return f"{self.prefix}-SERVICES"

    @property
    def nodeports(self) -> str:
        return f"{self.prefix}-NODEPORTS"

    @property
    def postrouting(self) -> str:
        return f"{self.prefix}-POSTROUTING"

    @property
    def mark_masq(self) -> str:
        return f"{self.prefix}-MARK-MASQ"

    @property
    def off_cluster(self) -> str:
        return f"{self.prefix}-OFF-CLUSTER"

    @property
    def external(self) -> str:
        return f"{self.prefix}-EXTERNAL"

    @property
    def forward(self) -> str:
        return f"{self.prefix}-FORWARD"

    @property
    def reject(self) -> str:
        return f"{self.prefix}-REJECT"

    def _hashed(self, kind: str, text: str) -> str:
        head = f"{self.prefix}-{kind}-"
        return head + hash_name(text, CHAIN_NAME_MAX - len(head))

    @staticmethod
    def _port_text(sp: ServicePort) -> str:
        return f"{sp.key}/{sp.protocol}/ipv{sp.family}"

    def service(self, sp: ServicePort) -> str:
        return self._hashed("SVC", self._port_text(sp))

    def local(self, sp: ServicePort) -> str:
        return self._hashed("SVL", self._port_text(sp))

    def external_of(self, sp: ServicePort) -> str:
        return self._hashed("EXT", self._port_text(sp))

    def endpoint(self, sp: ServicePort, ep: Endpoint) -> str:
        # The affinity timeout is part of the name, as it is of the nft affinity set's.
        return self._hashed("SEP", f"{self._port_text(sp)}/{ep}/{sp.session_affinity_seconds}")

    def owns(self, chain: str) -> bool:
        return chain.startswith(self.prefix + "-")


# -- generation ---------------------------------------------------------------------------------
def _comment(text: str) -> str:
    return f'-m comment --comment "{text.replace(chr(34), chr(39))}"'


def _proto(sp: ServicePort) -> str:
    proto = sp.protocol.lower()
    return f"-p {proto} -m {proto}"


def _host(ip: str) -> str:
    return f"{ip}/{32 if ':' not in ip else 128}"


def _reject(sp: ServicePort) -> str:
    return "-j REJECT --reject-with tcp-reset" if sp.protocol == "TCP" else "-j REJECT"


@dataclass
class _Builder:
    names: ChainNames
    node: NodeInfo
    family: int
    nat: dict[str, list[str]] = field(default_factory=dict)
    filter: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cluster_cidrs(self) -> list[str]:
        return [c for c in self.node.cluster_cidrs if ip_version(c) == self.family]

    @property
    def nodeport_matches(self) -> list[str]:
        """How a destination is recognised as "this node": its configured addresses, else
        any local address."""
        if self.node.node_ips:
            return [f"-d {_host(ip)}" for ip in self.node.node_ips
                    if ip_version(ip) == self.family]
        return ["-m addrtype --dst-type LOCAL"]

    def base(self) -> None:
        n = self.names
        self.nat[n.services] = []
        self.nat[n.nodeports] = []
        self.nat[n.mark_masq] = [f"-j MARK --or-mark {MASQUERADE_MARK}"]
        self.nat[n.postrouting] = [
            f"-m mark ! --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j RETURN",
            f"-j MARK --xor-mark {MASQUERADE_MARK}",
            f"{_comment('sampan service traffic requiring SNAT')} -j MASQUERADE --random-fully"]
        if len(self.cluster_cidrs) > 1:  # "! -s" takes one network; more need a chain
            self.nat[n.off_cluster] = [*(f"-s {c} -j RETURN" for c in self.cluster_cidrs),
                                       f"-j {n.mark_masq}"]
        self.filter[n.services] = []
        self.filter[n.external] = []
        self.filter[n.reject] = ["-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT"]
        self.filter[n.forward] = [
            f"{_comment('sampan forwarding rules')} -m mark --mark "
            f"{MASQUERADE_MARK}/{MASQUERADE_MARK} -j ACCEPT",
            f"{_comment('sampan forwarding conntrack rule')} -m conntrack "
            "--ctstate RELATED,ESTABLISHED -j ACCEPT"]

    def finish(self, cluster_ips: Iterable[str]) -> None:
        n = self.names
        for match in self.nodeport_matches:
            self.nat[n.services].append(
                f"{_comment('sampan service nodeports; must be the last rules here')} "
                f"{match} -j {n.nodeports}")
        for ip in sorted(set(cluster_ips), key=lambda a: ipaddress.ip_address(a).packed):
            self.filter[n.services].append(
                f"-d {_host(ip)} {_comment('invalid port of a ClusterIP')} -j {n.reject}")
        for cidr in self.node.service_cidrs:
            if ip_version(cidr) == self.family:
                self.filter[n.services].append(
                    f"-d {cidr} {_comment('unallocated ClusterIP')} -j DROP")

    def mark_off_cluster(self, sp: ServicePort, chain: str) -> None:
        """Off-cluster clients of the cluster IP are masqueraded so replies come back here."""
        cidrs = self.cluster_cidrs
        if not cidrs:
            return
        head = f"-d {_host(sp.cluster_ip)} {_proto(sp)} --dport {sp.port}"
        if len(cidrs) == 1:
            rule = f"! -s {cidrs[0]} {head} {_comment(sp.key + ' cluster IP')} " \
                   f"-j {self.names.mark_masq}"
        else:
            rule = f"{head} {_comment(sp.key + ' cluster IP')} -j {self.names.off_cluster}"
        self.nat[chain].insert(0, rule)

    def dispatch(self, sp: ServicePort, chain: str, endpoints: Sequence[Endpoint]) -> None:
        """Affinity first (a client seen recently goes back to its endpoint), then an equal-odds
        random choice: endpoint i of n with probability 1/(n-i) of what is left."""
        rules = []
        if sp.session_affinity_seconds:
            for ep in endpoints:
                sep = self.names.endpoint(sp, ep)
                rules.append(f"{_comment(f'{sp.key} -> {ep}')} -m recent --name {sep} "
                             f"--rcheck --seconds {sp.session_affinity_seconds} --reap -j {sep}")
        for i, ep in enumerate(endpoints):
            left = len(endpoints) - i
            odds = f" -m statistic --mode random --probability {1 / left:.10f}" if left > 1 else ""
            rules.append(f"{_comment(f'{sp.key} -> {ep}')}{odds} -j {self.names.endpoint(sp, ep)}")
        self.nat[chain] = rules

    def endpoint(self, sp: ServicePort, ep: Endpoint) -> None:
        sep = self.names.endpoint(sp, ep)
        recent = f" -m recent --name {sep} --set" if sp.session_affinity_seconds else ""
        self.nat[sep] = [
            f"-s {_host(ep.ip)} {_comment(sp.key)} -j {self.names.mark_masq}",
            f"{_proto(sp)} {_comment(sp.key)}{recent} -j DNAT --to-destination {ep}"]

    def service_port(self, sp: ServicePort, cat: Categorized) -> None:
        n, p = self.names, plan(sp, cat)
        svc, svl, ext = n.service(sp), n.local(sp), n.external_of(sp)
        internal_chain = svl if sp.internal_local else svc
        verdict = "-j DROP" if p.drops else _reject(sp)
        match = f"{_proto(sp)} --dport {sp.port}"
        no_endpoints = _comment(sp.key + " has no usable endpoints")

        cluster_ip = f"-d {_host(sp.cluster_ip)} {match}"
        if p.has_internal:
            self.nat[n.services].append(
                f"{cluster_ip} {_comment(sp.key + ' cluster IP')} -j {internal_chain}")
        else:
            self.filter[n.services].append(f"{cluster_ip} {no_endpoints} {verdict}")
        for vip in (*sp.external_ips, *sp.load_balancer_ips):
            target = f"-d {_host(vip)} {match}"
            if p.has_endpoints:
                self.nat[n.services].append(
                    f"{target} {_comment(sp.key + ' external IP')} -j {ext}")
            if not p.has_external:
                self.filter[n.external].append(f"{target} {no_endpoints} {verdict}")
        if sp.node_port:
            node_port = f"{_proto(sp)} --dport {sp.node_port}"
            if p.has_endpoints:
                self.nat[n.nodeports].append(f"{node_port} {_comment(sp.key)} -j {ext}")
            if not p.has_external:
                self.filter[n.external] += [f"{dest} {node_port} {no_endpoints} {verdict}"
                                            for dest in self.nodeport_matches]

        if p.uses_cluster:
            self.dispatch(sp, svc, cat.cluster)
        if p.uses_local:
            self.dispatch(sp, svl, cat.local)
        if p.has_internal:
            self.mark_off_cluster(sp, internal_chain)
        if p.uses_external_chain:
            self.nat[ext] = self._external_rules(sp, p.uses_cluster, p.has_external,
                                                 svl if sp.external_local else svc)
        for ep in p.endpoints:
            self.endpoint(sp, ep)

    def _external_rules(self, sp: ServicePort, uses_cluster: bool, has_external: bool,
                        policy_chain: str) -> list[str]:
        n, svc = self.names, self.names.service(sp)
        what = f"{sp.key} external destinations"
        rules = []
        if not sp.external_local:
            rules.append(f"{_comment('masquerade traffic for ' + what)} -j {n.mark_masq}")
        else:
            # Pods and the node itself reach external addresses as if through the load
            # balancer: no traffic policy (and the node's own traffic is masqueraded).
            if self.cluster_cidrs and uses_cluster:
                rules.append(f"-s {','.join(self.cluster_cidrs)} "
                             f"{_comment('pod traffic for ' + what)} -j {svc}")
            rules.append(f"{_comment('masquerade LOCAL traffic for ' + what)} "
                         f"-m addrtype --src-type LOCAL -j {n.mark_masq}")
            if uses_cluster:
                rules.append(f"{_comment('route LOCAL traffic for ' + what)} "
                             f"-m addrtype --src-type LOCAL -j {svc}")
        if has_external:
            rules.append(f"-j {policy_chain}")
        return rules


def build_tables(ports: Iterable[tuple[ServicePort, Categorized]], node: NodeInfo,
                 names: ChainNames, family: int) -> Tables:
    """Every chain of ``family`` for the categorized ``ports`` (pure)."""
    b = _Builder(names, node, family)
    b.base()
    cluster_ips = []
    for sp, cat in ports:
        if sp.family == family:
            b.service_port(sp, cat)
            cluster_ips.append(sp.cluster_ip)
    b.finish(cluster_ips)
    return {"filter": {c: tuple(r) for c, r in b.filter.items()},
            "nat": {c: tuple(r) for c, r in b.nat.items()}}


@dataclass(frozen=True)
class Jump:
    """A rule in a built-in chain that enters one of ours."""

    table: str
    chain: str
    rule: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.rule[-1]


def jumps(names: ChainNames) -> list[Jump]:
    """Upstream's hooks: nat PREROUTING/OUTPUT → SERVICES, POSTROUTING → POSTROUTING; filter
    for new connections INPUT → EXTERNAL, FORWARD → FORWARD/SERVICES/EXTERNAL, OUTPUT →
    SERVICES/EXTERNAL."""
    def comment(text: str) -> tuple[str, ...]:
        return ("-m", "comment", "--comment", text)

    new = ("-m", "conntrack", "--ctstate", "NEW")
    portals = (*comment("sampan service portals"), "-j", names.services)
    external = (*new, *comment("sampan externally-visible service portals"),
                "-j", names.external)
    services = (*new, *comment("sampan service portals"), "-j", names.services)
    return [
        Jump("nat", "PREROUTING", portals),
        Jump("nat", "OUTPUT", portals),
        Jump("nat", "POSTROUTING", (*comment("sampan postrouting rules"),
                                    "-j", names.postrouting)),
        Jump("filter", "INPUT", external),
        Jump("filter", "FORWARD", (*comment("sampan forwarding rules"), "-j", names.forward)),
        Jump("filter", "FORWARD", services),
        Jump("filter", "FORWARD", external),
        Jump("filter", "OUTPUT", services),
        Jump("filter", "OUTPUT", external),
    ]


# -- rendering ---------------------------------------------------------------------------------
def render_restore(new: Tables, old: Tables | None = None,
                   stale: Mapping[str, Iterable[str]] | None = None) -> str:
    """An ``iptables-restore --noflush`` script: chains of ``new`` that differ from ``old``
    (all of them without ``old``) declared and rewritten, ``stale`` chains (and chains of
    ``old`` no longer in ``new``) flushed and deleted. Other chains are left alone."""
    lines = []
    for table in TABLES:
        chains = new.get(table, {})
        previous = (old or {}).get(table)
        changed = [c for c, rules in chains.items()
                   if previous is None or previous.get(c) != rules]
        gone = set((stale or {}).get(table, ())) | set(previous or {})
        gone = sorted(gone - set(chains))
        if not changed and not gone:
            continue
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in (*changed, *gone)]
        for chain in changed:
            lines += [f"-A {chain} {rule}" for rule in chains[chain]]
        lines += [f"-X {c}" for c in gone]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""


def chains_in_save(text: str, names: ChainNames) -> set[str]:
    """Our chains among the ``:CHAIN`` declarations of ``iptables-save`` output."""
    found = set()
    for line in text.splitlines():
        if line.startswith(":"):
            chain = line[1:].split(" ", 1)[0]
            if names.owns(chain):
                found.add(chain)
    return found


def jumps_in_save(text: str, names: ChainNames) -> set[tuple[str, str]]:
    """(chain, our chain) of every rule of ``iptables-save`` output in a chain not ours that
    jumps to one of ours."""
    found = set()
    for line in text.splitlines():
        if line.startswith("-A "):
            words = line.split()
            target = words[-1]
            if words[-2] == "-j" and names.owns(target) and not names.owns(words[1]):
                found.add((words[1], target))
    return found


# -- the kernel ---------------------------------------------------------------------------------
def family_command(iptables: Sequence[str], family: int, tool: str = "") -> list[str]:
    """``[..., "iptables-legacy"]`` → ``[..., "ip6tables-legacy-restore"]`` for family 6 and
    tool "restore": the last word names the binary, what comes before it (``nsenter …``)
    stays."""
    *head, binary = iptables
    directory, name = os.path.split(binary)
    if family == 6 and name.startswith("iptables"):
        name = "ip6" + name[2:]
    if tool:
        name = f"{name}-{tool}"
    return [*head, os.path.join(directory, name) if directory else name]


async def _run(command: Sequence[str], stdin: bytes | None = None) -> tuple[int, str]:
    code, out = await run(command, stdin)
    return code, out.decode(errors="replace")


class IptablesBackend:
    """Applies the rules of one node with ``iptables-restore`` (and ``ip6tables-restore``).

    ``iptables`` is the command whose last word names the binary (``"iptables"``,
    ``"iptables-legacy"``, ``"iptables-nft"``); the ``-restore``/``-save`` and ``ip6tables``
    variants are derived from it. A prefix (``nsenter --net=…``) applies it elsewhere.
    """

    def __init__(self, node: NodeInfo, *, chain_prefix: str | None = None,
                 iptables: Sequence[str] = ("iptables",)):
        self.node = node
        self.names = ChainNames(chain_prefix or default_chain_prefix(node.name))
        self.iptables = tuple(iptables)
        self.applied: dict[int, Tables] | None = None  # what the kernel holds, when known

    def forget(self) -> None:
        """The kernel's state is unknown (a failed sync): the next sync is a full one."""
        self.applied = None

    def desired(self, ports: Sequence[tuple[ServicePort, Categorized]]) -> dict[int, Tables]:
        return {f: build_tables(ports, self.node, self.names, f)
                for f in families(self.node, (sp for sp, _ in ports))}

    async def sync(self, ports: Iterable[tuple[ServicePort, Categorized]], *,
                   full: bool = False) -> dict[int, Tables]:
        """Program ``ports``: a full restore (first sync, ``full``, after a failure) that also
        installs the jumps from the built-in chains, or only the chains that changed."""
        ports = list(ports)
        previous, self.applied = self.applied, None
        wanted = self.desired(ports)
        for family in set(previous or {}) - set(wanted):  # a family stays once programmed
            wanted[family] = build_tables((), self.node, self.names, family)
        for family, tables in sorted(wanted.items()):
            if full or previous is None or family not in previous:
                await self._full_restore(family, tables)
            else:
                await self._restore(family, render_restore(tables, previous.get(family)))
        self.applied = wanted
        return wanted

    async def _full_restore(self, family: int, tables: Tables) -> None:
        """Rewrite every chain, delete our chains that are not wanted, then put back the jumps
        that are missing: one ``-save`` per table tells both (instead of a ``-N`` and ``-C``
        probe per chain and jump). The restore creates the chains the jumps lead to."""
        saved = await self._save(family)
        stale = {table: chains_in_save(text, self.names) for table, text in saved.items()}
        await self._restore(family, render_restore(tables, None, stale))
        present = {table: jumps_in_save(text, self.names) for table, text in saved.items()}
        missing = [j for j in jumps(self.names) if (j.chain, j.target) not in present[j.table]]
        iptables = [*family_command(self.iptables, family), "-w", WAIT_SECONDS]
        for jump in reversed(missing):  # inserted at the top: keep their order
            code, out = await _run([*iptables, "-t", jump.table, "-I", jump.chain, "1",
                                    *jump.rule])
            if code != 0:
                raise IptablesError(f"{' '.join(iptables)} -I {jump.chain} failed: "
                                    f"{out.strip()[:500]}")

    async def delete(self) -> None:
        """Remove the jumps and every chain with our prefix, in both families (an IPv6
        failure is only logged when IPv6 was never programmed here)."""
        programmed = set(self.applied or {4: {}})
        self.applied = None
        for family in (4, 6):
            try:
                await self._delete_family(family)
            except (IptablesError, FileNotFoundError) as e:
                if family in programmed:
                    raise
                log.debug("removing IPv%d rules: %s", family, e)

    async def _delete_family(self, family: int) -> None:
        iptables = family_command(self.iptables, family)
        for jump in jumps(self.names):
            while True:  # every copy (an older run may have left more than one)
                code, _ = await _run([*iptables, "-w", WAIT_SECONDS, "-t", jump.table, "-D",
                                      jump.chain, *jump.rule])
                if code != 0:
                    break
        saved = await self._save(family)
        script = render_restore({}, None, {t: chains_in_save(text, self.names)
                                           for t, text in saved.items()})
        if script:
            await self._restore(family, script)

    async def _save(self, family: int) -> dict[str, str]:
        """``iptables-save`` of each of our tables."""
        save = family_command(self.iptables, family, "save")
        saved = {}
        for table in TABLES:
            code, out = await _run([*save, "-t", table])
            if code != 0:
                raise IptablesError(f"{' '.join(save)} -t {table} failed: {out.strip()[:500]}")
            saved[table] = out
        return saved

    async def _restore(self, family: int, script: str) -> None:
        if not script:
            return
        restore = family_command(self.iptables, family, "restore")
        code, out = await _run([*restore, "-w", WAIT_SECONDS, "--noflush"], script.encode())
        if code != 0:
            raise IptablesError(f"{' '.join(restore)} failed ({code}): {out.strip()[:2000]}")


async def detect_mode(nft: Sequence[str] = ("nft",)) -> str:
    """"nftables" when ``nft list tables`` works here, else "iptables"."""
    try:
        code, _ = await _run([*nft, "list", "tables"])
    except (FileNotFoundError, PermissionError):
        return "iptables"
    return "nftables" if code == 0 else "iptables"
