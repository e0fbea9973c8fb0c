"""nftables rules of the pod network: masquerade and hostPort DNAT.

Each table is rewritten whole in one ``nft -f -`` transaction ("add table; delete table; table
{...}"), so a change is atomic and the table always matches the state it was generated from.
Family ``inet`` carries IPv4 and IPv6 rules in one table.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MULTICAST_V4 = "224.0.0.0/4"
MULTICAST_V6 = "ff00::/8"


class NftError(Exception):
    pass


@dataclass(frozen=True)
class HostPort:
    """One hostPort mapping of a pod, resolved to the pod's address."""

    sandbox_id: str
    pod_ip: str
    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


def _family(ip: str) -> str:
    return "ip6" if ipaddress.ip_address(ip).version == 6 else "ip"


def _cidr_family(cidr: str) -> str:
    return "ip6" if ipaddress.ip_network(cidr, strict=False).version == 6 else "ip"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _replace_table(name: str, body: list[str]) -> str:
    lines = [f"add table inet {name}", f"delete table inet {name}", f"table inet {name} {{"]
    lines.extend(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


def delete_table_script(name: str) -> str:
    """Delete a table if it exists (adding it first makes the delete never fail)."""
    return f"add table inet {name}\ndelete table inet {name}\n"


def nat_script(table: str, pod_cidrs: Sequence[str], cluster_cidrs: Sequence[str],
               service_cidrs: Sequence[str]) -> str:
    """Masquerade traffic from this node's pods to anything outside the cluster, like the
    bridge plugin's ipMasq (pod→pod and pod→service traffic keeps the pod's address)."""
    rules = []
    for pod_cidr in pod_cidrs:
        fam = _cidr_family(pod_cidr)
        keep = [c for c in (*cluster_cidrs, *service_cidrs) if _cidr_family(c) == fam]
        keep.append(MULTICAST_V6 if fam == "ip6" else MULTICAST_V4)
        rules.append(f"\t\t{fam} saddr {pod_cidr} {fam} daddr != {{ {', '.join(keep)} }} "
                     f'masquerade comment "pod traffic leaving the cluster"')
    body = ["\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            *rules,
            "\t}"]
    return _replace_table(table, body)


def hostport_script(table: str, mappings: Iterable[HostPort]) -> str:
    """DNAT host ports to pods, like the CNI portmap plugin's nftables mode: traffic to a
    local address (from outside, or from the node itself through the output hook) is
    rewritten to the pod; hairpin and localhost-originated connections are masqueraded so the
    replies come back through the node."""
    mappings = sorted(mappings, key=lambda m: (m.host_port, m.protocol, m.host_ip, m.sandbox_id))
    dnat, masq, seen_ips = [], [], set()
    for m in mappings:
        fam = _family(m.pod_ip)
        proto = m.protocol.lower()
        match = f"meta nfproto {'ipv6' if fam == 'ip6' else 'ipv4'} "
        if m.host_ip:
            host = ipaddress.ip_address(m.host_ip)
            if host.version != ipaddress.ip_address(m.pod_ip).version:
                continue  # a hostIP of the other family, as portmap does
            if not host.is_unspecified:
                match = f"{fam} daddr {m.host_ip} "
        dnat.append(f"\t\t{match}{proto} dport {m.host_port} dnat {fam} to "
                    f'{_join(m.pod_ip, m.container_port)} comment "{m.sandbox_id}"')
        if (m.sandbox_id, m.pod_ip) not in seen_ips:
            seen_ips.add((m.sandbox_id, m.pod_ip))
            masq.append(f"\t\t{fam} saddr {m.pod_ip} {fam} daddr {m.pod_ip} masquerade "
                        f'comment "{m.sandbox_id}"')
            loopback = "::1" if fam == "ip6" else "127.0.0.0/8"
            masq.append(f"\t\t{fam} saddr {loopback} {fam} daddr {m.pod_ip} masquerade "
                        f'comment "{m.sandbox_id}"')
    body = ["\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            "\t\tfib daddr type local jump hostports",
            "\t}",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            "\t\tfib daddr type local jump hostports",
            "\t}",
            "\tchain hostports {", *dnat, "\t}",
            "\tchain masquerading {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            *masq,
            "\t}"]
    return _replace_table(table, body)


async def apply(script: str, nft: str = "nft") -> None:
    """Run a script through ``nft -f -`` (one atomic transaction)."""
    proc = await asyncio.create_subprocess_exec(
        nft, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(f"nft -f failed ({proc.returncode}): {(err or out).decode().strip()}")


async def table_exists(name: str, nft: str = "nft") -> bool:
    proc = await asyncio.create_subprocess_exec(
        nft, "list", "table", "inet", name, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0
