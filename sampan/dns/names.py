"""The shapes of names inside the cluster domain, after the Kubernetes DNS specification and
CoreDNS's kubernetes plugin (``parseRequest``):

- ``<service>.<ns>.svc``
- ``<endpoint>.<service>.<ns>.svc`` (an endpoint's hostname, or its dashed IP)
- ``_<port>._<proto>.<service>.<ns>.svc``
- ``<dashed-ip>.<ns>.pod``

Labels are given relative to the cluster domain, leftmost first, already lower-cased.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

SVC = "svc"
POD = "pod"


class InvalidName(ValueError):
    """A name in the cluster domain that no record can have (answered NXDOMAIN)."""


@dataclass(frozen=True)
class Request:
    """What a query name asks for; empty fields were not part of the name."""

    kind: str = ""  # SVC or POD; empty for the zone apex
    namespace: str = ""
    service: str = ""  # for POD, the dashed pod IP
    endpoint: str = ""
    port: str = ""
    protocol: str = ""


def parse(labels: Sequence[str]) -> Request:
    if not labels:
        return Request()
    *rest, kind = labels
    if kind not in (SVC, POD):
        raise InvalidName(".".join(labels))
    fields: dict[str, str] = {"kind": kind}
    for field in ("namespace", "service"):
        if not rest:
            return Request(**fields)
        fields[field] = rest.pop()
    if kind == POD and rest:
        raise InvalidName(".".join(labels))
    if len(rest) == 1:
        fields["endpoint"] = rest[0]
    elif len(rest) == 2:
        port, protocol = rest
        if not (port.startswith("_") and protocol.startswith("_")):
            raise InvalidName(".".join(labels))
        fields["port"], fields["protocol"] = port[1:], protocol[1:]
    elif rest:
        raise InvalidName(".".join(labels))  # too long: e.g. a search-path expansion
    return Request(**fields)


def dashed(ip: str) -> str:
    """An IP as one DNS label: ``10.42.0.7`` → ``10-42-0-7``, ``fd00::1`` → ``fd00--1``."""
    if "." in ip and ":" not in ip:
        return ip.replace(".", "-")
    label = ipaddress.IPv6Address(ip).compressed.replace(":", "-")
    if label.startswith("-"):
        label = "0" + label
    if label.endswith("-"):
        label += "0"
    return label


def undashed(label: str) -> str | None:
    """The IP a dashed label stands for, or None when it is not one."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def normalize_ip(ip: str) -> str | None:
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return None


def is_ipv6(ip: str) -> bool:
    return ":" in ip
