"""The downward API: the values a ``fieldRef`` or ``resourceFieldRef`` names, for environment
variables and for downwardAPI / projected volumes.

Follows upstream's ``pkg/fieldpath`` (metadata fields, labels and annotations formatted as
sorted ``key="value"`` lines, ``['key']`` subscripts), the kubelet's
``podFieldSelectorRuntimeValue`` (the status and spec fields only environment variables may
read) and ``pkg/api/v1/resource`` (``limits.cpu`` and friends with a divisor, rounded up, the
node's allocatable standing in for a missing limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sampan.api.validation import QuantityError, is_qualified_name, parse_quantity

Object = Mapping[str, Any]

# Limits that fall back to node allocatable when missing or zero (MergeContainerResourceLimits).
ALLOCATABLE_DEFAULTED = ("cpu", "memory", "ephemeral-storage")
_HUGEPAGES_PREFIX = "hugepages-"


class FieldPathError(ValueError):
    """A field or resource the downward API cannot resolve (the message is upstream's)."""


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string: double quotes, backslash escapes, printable Unicode kept."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable() and code > 0x7F:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_map(values: Mapping[str, str] | None) -> str:
    """``fieldpath.FormatMap``: ``key="value"`` lines in key order, no trailing newline."""
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values or {}))


def split_subscript(field_path: str) -> tuple[str, str, bool]:
    """``metadata.labels['app']`` → (``metadata.labels``, ``app``, True)."""
    if not field_path.endswith("']"):
        return field_path, "", False
    head, sep, subscript = field_path[:-2].partition("['")
    if not sep or not head:
        return field_path, "", False
    return head, subscript, True


def extract_field_path(obj: Object, field_path: str) -> str:
    """``fieldpath.ExtractFieldPathAsString``: the metadata fields a downwardAPI volume reads."""
    metadata = obj.get("metadata") or {}
    path, subscript, subscripted = split_subscript(field_path)
    if subscripted:
        if path not in ("metadata.annotations", "metadata.labels"):
            raise FieldPathError(f'fieldPath "{field_path}" does not support subscript')
        key = subscript.lower() if path == "metadata.annotations" else subscript
        errors = is_qualified_name(key)
        if errors:
            raise FieldPathError(f"invalid key subscript in {field_path}: {';'.join(errors)}")
        return (metadata.get(path.split(".", 1)[1]) or {}).get(subscript, "")
    if field_path == "metadata.annotations":
        return format_map(metadata.get("annotations"))
    if field_path == "metadata.labels":
        return format_map(metadata.get("labels"))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return metadata.get(field_path.split(".", 1)[1]) or ""
    raise FieldPathError(f"unsupported fieldPath: {field_path}")


def pod_field_value(pod: Object, field_path: str, *, pod_ips: Sequence[str] = (),
                    host_ips: Sequence[str] = ()) -> str:
    """The kubelet's ``podFieldSelectorRuntimeValue``: what an env ``fieldRef`` resolves to."""
    spec = pod.get("spec") or {}
    if field_path == "spec.nodeName":
        return spec.get("nodeName") or ""
    if field_path == "spec.serviceAccountName":
        return spec.get("serviceAccountName") or ""
    if field_path == "status.hostIP":
        if not host_ips:
            raise FieldPathError("failed to get host IPs: the node has no address yet")
        return host_ips[0]
    if field_path == "status.hostIPs":
        return ",".join(host_ips)
    if field_path == "status.podIP":
        return pod_ips[0] if pod_ips else ""
    if field_path == "status.podIPs":
        return ",".join(pod_ips)
    if field_path == "spec.terminationGracePeriodSeconds":
        grace = spec.get("terminationGracePeriodSeconds")
        return "30" if grace is None else str(int(grace))
    return extract_field_path(pod, field_path)


def find_container(pod: Object, name: str) -> Object:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") == name:
            return container
    raise FieldPathError(f"container {name} not found")


def merge_allocatable_limits(container: Object,
                             allocatable: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the container's limits with node allocatable filling missing or zero ones."""
    limits = dict(((container.get("resources") or {}).get("limits")) or {})
    for name in ALLOCATABLE_DEFAULTED:
        if _is_zero(limits.get(name)) and allocatable and name in allocatable:
            limits[name] = allocatable[name]
    return limits


def container_resource_value(selector: Object, pod: Object, container: Object | None = None, *,
                             allocatable: Mapping[str, Any] | None = None) -> str:
    """A ``resourceFieldRef``: the named container's (or ``container``'s) limit or request of a
    resource, divided by the divisor and rounded up."""
    name = selector.get("containerName")
    if name or container is None:
        container = find_container(pod, name or "")
    resource = selector.get("resource") or ""
    divisor = _quantity(selector.get("divisor"))
    if divisor == 0:
        divisor = Decimal(1)
    kind, _, resource_name = resource.partition(".")
    if kind == "limits":
        values = merge_allocatable_limits(container, allocatable)
    elif kind == "requests":
        values = ((container.get("resources") or {}).get("requests")) or {}
    else:
        values = None
    if values is None or not (resource_name in ALLOCATABLE_DEFAULTED
                              or resource_name.startswith(_HUGEPAGES_PREFIX)):
        raise FieldPathError(f"unsupported container resource : {resource}")
    amount = _quantity(values.get(resource_name))
    if resource_name == "cpu":
        # MilliValue() on both sides, each rounded up to a whole milli-unit.
        value, div = _ceil(amount * 1000), _ceil(divisor * 1000)
    else:
        value, div = _ceil(amount), _ceil(divisor)
    if div == 0:
        raise FieldPathError(f"invalid divisor for {resource}")
    return str(-(-value // div))


def _quantity(raw: Any) -> Decimal:
    if raw in (None, ""):
        return Decimal(0)
    try:
        return parse_quantity(raw).value
    except QuantityError as e:
        raise FieldPathError(f"invalid quantity {raw!r}: {e}") from None


def _is_zero(raw: Any) -> bool:
    try:
        return _quantity(raw) == 0
    except FieldPathError:
        return False


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))
