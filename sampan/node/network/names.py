"""Stable names and hardware addresses derived from ids and IPs."""

from __future__ import annotations

import hashlib
import ipaddress
import re

VETH_PREFIX = "veth"
IFNAMSIZ = 15
_NFT_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def veth_name(sandbox_id: str) -> str:
    """Host side of a pod's veth: "veth" + 8 hex digits of a hash of the sandbox id."""
    return VETH_PREFIX + hashlib.sha256(sandbox_id.encode()).hexdigest()[:8]


def mac_for_ip(ip: str) -> str:
    """A locally administered MAC derived from an address (0a:58 + the last four bytes, as
    kubenet and the CNI bridge plugin did): stable for an IP, so a new pod reusing an address
    does not leave neighbours with a stale entry for long."""
    raw = ipaddress.ip_address(ip).packed[-4:]
    return "0a:58:" + ":".join(f"{b:02x}" for b in raw)


def nft_table_name(prefix: str, node_name: str) -> str:
    """An nftables table name for this node: ``sampan-nat-<node>`` (unsafe characters become
    ``_``; very long names are shortened with a hash so they stay unique)."""
    name = f"{prefix}-{_NFT_UNSAFE.sub('_', node_name)}"
    if len(name) > 200:
        digest = hashlib.sha256(node_name.encode()).hexdigest()[:12]
        name = f"{name[:180]}-{digest}"
    return name
