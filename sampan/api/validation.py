"""Validation of objects before they are stored, with upstream's rules and upstream's messages.

``validate`` checks a built-in object in three layers:

1. the schema — every value has the type the upstream OpenAPI definition gives it, and the
   fields its ``required`` lists name are present (upstream's typed decoder rejects a wrongly
   typed value outright; here it is a ``FieldValueTypeInvalid`` cause, and the rest of the
   object is not looked at);
2. object metadata — name, generateName, namespace, labels, annotations, finalizers,
   ownerReferences, managedFields, and on update the immutable fields;
3. the kind's own rules, ported from ``pkg/apis/<group>/validation`` — Pod and pod templates,
   workloads, Service, ConfigMap/Secret, Namespace, CustomResourceDefinition and the rest.

``validate_custom`` checks a custom resource against its CustomResourceDefinition's
``openAPIV3Schema`` the way the apiextensions apiserver does (kube-openapi's messages).

Paths and texts follow upstream so that kubectl prints what users know: ``field.Path`` writes
``spec.containers[0].image`` and map keys as ``data[key]``; where upstream prints a Go value with
``%#v`` or ``String()`` the value here is an ``errors.GoValue`` carrying the same text.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any

import orjson

from sampan.api import errors as E
from sampan.api.decode import go_json_error
from sampan.api.errors import FieldError, GoValue
from sampan.api.registry import Resource
from sampan.api.schema import Schemas, node_type

Errors = list[FieldError]

# ============================================================================================
# Formats (k8s.io/apimachinery/pkg/util/validation, .../api/validate/content)
# ============================================================================================

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_PERCENT_FMT = "[0-9]+%"
_HTTP_HEADER_FMT = "[-A-Za-z0-9]+"
_WILDCARD_FMT = "\\*\\." + _DNS1123_SUBDOMAIN_FMT

_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_CONFIG_KEY = re.compile(_CONFIG_KEY_FMT)
_PERCENT = re.compile(_PERCENT_FMT)
_HTTP_HEADER = re.compile(_HTTP_HEADER_FMT)
_WILDCARD = re.compile(_WILDCARD_FMT)
_PORT_NAME_CHARS = re.compile("[-a-z0-9]+")
_HAS_LETTER = re.compile("[a-z]")

_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric character")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character")
_QUALIFIED_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                  "and end with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character")
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                 "subdomain, which must consist of lower case alphanumeric characters, '-' or "
                 "'.' and end with an alphanumeric character")

NEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} bytes"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_dns1123_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value.encode()) > 63 else []
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value.encode()) > 253 else []
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error(_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value.encode()) > 63 else []
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(regex_error(_DNS1035_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value.encode()) > 253 else []
    if not _WILDCARD.fullmatch(value):
        errs.append(regex_error(_WILDCARD_MSG, _WILDCARD_FMT, "*.example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label key: ``[prefix/]name``."""
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a valid label key " + regex_error(_QUALIFIED_MSG, _QUALIFIED_NAME_FMT, "MyName",
                                                   "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part " + regex_error(_QUALIFIED_MSG, _QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value.encode()) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value.encode()) > 253 else []
    if not _CONFIG_KEY.fullmatch(value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, "
                                "'-', '_' or '.'", _CONFIG_KEY_FMT, "key.name", "KEY_NAME",
                                "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_env_var_name(value: str) -> list[str]:
    """RelaxedEnvironmentVariableValidation (GA): any printable ASCII but '='."""
    errs = ["environment variable name must be non-empty"] if not value else []
    if any(not (" " <= ch <= "~") or ch == "=" for ch in value):
        errs.append("a valid environment variable name must consist only of printable ASCII "
                    "characters other than '='")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    return [] if isinstance(port, int) and 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    errs = [max_len_error(15)] if len(port) > 15 else []
    if not _PORT_NAME_CHARS.fullmatch(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(value: str) -> list[str]:
    if _PERCENT.fullmatch(value):
        return []
    return [regex_error("a valid percent string must be a numeric string followed by an ending "
                        "'%'", _PERCENT_FMT, "1%", "93%")]


def is_path_segment_name(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def is_valid_ip(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
        return []
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]


def is_valid_cidr(value: str) -> list[str]:
    try:
        ipaddress.ip_network(value, strict=False)
        if "/" in value:
            return []
    except ValueError:
        pass
    return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


# Name validators: (name, prefix) → messages, like apimachinery's ValidateNameFunc. A prefix is
# a generateName, whose trailing dash the generated suffix will follow.
NameFn = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str, prefix: bool) -> str:
    return name[:-1] + "a" if prefix and len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name, prefix))


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name, prefix))


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name, prefix))


def name_is_path_segment(name: str, prefix: bool = False) -> list[str]:
    if prefix:
        return [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    return is_path_segment_name(name)


# ============================================================================================
# Quantities (k8s.io/apimachinery/pkg/api/resource)
# ============================================================================================

QUANTITY_FORMAT_ERROR = ("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_QUANTITY = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(.*)", re.DOTALL)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}
_EXPONENT = re.compile(r"[eE][+-]?\d+")


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    format: str  # "DecimalSI", "BinarySI" or "DecimalExponent"

    def __str__(self) -> str:
        return canonical_quantity(self.value, self.format)


class QuantityError(ValueError):
    pass


def parse_quantity(raw: Any) -> Quantity:
    """Parse a quantity as ``resource.ParseQuantity`` does; JSON numbers are accepted too."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise QuantityError(QUANTITY_FORMAT_ERROR)
    text = raw if isinstance(raw, str) else (str(raw) if isinstance(raw, int) else repr(raw))
    if not text:
        raise QuantityError(QUANTITY_FORMAT_ERROR)
    m = _QUANTITY.fullmatch(text)
    sign, whole, frac, suffix = m.group(1), m.group(2), m.group(3) or "", m.group(4)
    number = Decimal(f"{sign}{whole or '0'}.{frac or '0'}")
    if suffix in _BINARY:
        return Quantity(number * (1024 ** _BINARY[suffix]), "BinarySI")
    if suffix in _DECIMAL:
        return Quantity(number.scaleb(_DECIMAL[suffix]), "DecimalSI")
    if _EXPONENT.fullmatch(suffix):
        return Quantity(number.scaleb(int(suffix[1:])), "DecimalExponent")
    if re.fullmatch(r"[eEinumkKMGTP]*[-+]?\d*", suffix):
        raise QuantityError("unable to parse quantity's suffix")
    raise QuantityError(QUANTITY_FORMAT_ERROR)


def canonical_quantity(value: Decimal, fmt: str) -> str:
    """``Quantity.String()``: the shortest integer mantissa with a suffix of the same family."""
    if value == 0:
        return "0"
    if fmt == "BinarySI" and (-1024 < value < 1024 or value != value.to_integral_value()):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        mantissa, power = int(value), 0
        while mantissa % 1024 == 0 and power < 6:
            mantissa //= 1024
            power += 1
        return f"{mantissa}{_BINARY_SUFFIX.get(power, '')}"
    sign, digits, exponent = value.normalize().as_tuple()
    mantissa = int("".join(map(str, digits)))
    shift = exponent % 3
    mantissa, exponent = mantissa * 10 ** shift, exponent - shift
    number = f"-{mantissa}" if sign else str(mantissa)
    if fmt == "DecimalSI" and exponent in _DECIMAL_SUFFIX:
        return number + _DECIMAL_SUFFIX[exponent]
    return number if exponent == 0 else f"{number}e{exponent}"


def round_up_milli(raw: Any) -> str | None:
    """``SetDefaults_ResourceList``: values finer than a milli-unit round up to one; returns the
    canonical form of a quantity, or None for one that does not parse."""
    try:
        q = parse_quantity(raw)
        value = q.value
        if value != value.quantize(Decimal("0.001"), rounding=ROUND_UP):
            value = value.quantize(Decimal("0.001"), rounding=ROUND_UP)
        return canonical_quantity(value, q.format)
    except (QuantityError, InvalidOperation):
        return None  # unparseable, or too large for any milli-precision form


# ============================================================================================
# Go renderings of bad values
# ============================================================================================


def _go_quote(s: str) -> str:
    return orjson.dumps(s).decode()


def go_string_map(m: dict | None) -> GoValue:
    """``%#v`` of a ``map[string]string``."""
    if m is None:
        return GoValue("map[string]string(nil)")
    items = ", ".join(f"{_go_quote(k)}:{_go_quote(str(v))}" for k, v in sorted(m.items()))
    return GoValue("map[string]string{" + items + "}")


def go_string_slice(items: list | None) -> GoValue:
    if items is None:
        return GoValue("[]string(nil)")
    return GoValue("[]string{" + ", ".join(_go_quote(str(s)) for s in items) + "}")


def go_label_selector(sel: dict | None) -> GoValue:
    """``(*metav1.LabelSelector).String()``, the protobuf-generated form."""
    if sel is None:
        return GoValue("nil")
    labels = "".join(f"{k}: {v}," for k, v in sorted((sel.get("matchLabels") or {}).items()))
    exprs = "".join(
        f"LabelSelectorRequirement{{Key:{e.get('key', '')},Operator:{e.get('operator', '')},"
        f"Values:[{' '.join(e.get('values') or [])}],}},"
        for e in sel.get("matchExpressions") or [])
    return GoValue("&LabelSelector{MatchLabels:map[string]string{" + labels + "},"
                   "MatchExpressions:[]LabelSelectorRequirement{" + exprs + "},}")


def go_int_or_string(value: Any) -> GoValue:
    """``IntOrString.String()``: the number or the text, unquoted."""
    return GoValue(str(value))


def _go_interface_map(m: dict) -> GoValue:
    def one(v: Any) -> str:
        if isinstance(v, str):
            return _go_quote(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "interface {}(nil)"
        if isinstance(v, int):
            return f"{v}"
        return str(v)
    items = ", ".join(f"{_go_quote(k)}:{one(v)}" for k, v in sorted(m.items()))
    return GoValue("map[string]interface {}{" + items + "}")


# ============================================================================================
# Small readers: Go zero values for absent or null fields
# ============================================================================================


def _s(d: dict, key: str) -> str:
    v = d.get(key)
    return v if isinstance(v, str) else ""


def _m(d: dict, key: str) -> dict:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _l(d: dict, key: str) -> list:
    v = d.get(key)
    return v if isinstance(v, list) else []


def _dicts(d: dict, key: str) -> Iterable[tuple[int, dict]]:
    for i, item in enumerate(_l(d, key)):
        yield i, item if isinstance(item, dict) else {}


def _i(d: dict, key: str, default: int = 0) -> int:
    v = d.get(key)
    if isinstance(v, bool) or v is None:
        return default
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if isinstance(v, int) else default


def _has(d: dict, key: str) -> bool:
    return d.get(key) is not None


def _invalid_each(path: str, value: Any, messages: list[str]) -> Errors:
    return [E.invalid(path, value, m) for m in messages]


def nonnegative(value: Any, path: str) -> Errors:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return [E.invalid(path, value, NEGATIVE)]
    return []


def immutable(new: Any, old: Any, path: str, shown: Any = None) -> Errors:
    if _semantic(new) == _semantic(old):
        return []
    return [E.invalid(path, new if shown is None else shown, IMMUTABLE)]


def _semantic(value: Any) -> Any:
    """Upstream compares typed values, where an absent field, null and the zero value are one."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", 0, False, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value] or None
    if value in ("", 0, False, {}, []):
        return None
    return value


# ============================================================================================
# 1. Schema: types and required fields
# ============================================================================================

_INT32 = (-(2 ** 31), 2 ** 31 - 1)
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def json_type(value: Any) -> str:
    """go-openapi's name for a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(path: str, expected: str, value: Any) -> FieldError:
    actual = json_type(value)
    return FieldError(E.TYPE_INVALID, path,
                      f'{path} in body must be of type {expected}: "{actual}"', actual)


# Fields the OpenAPI ``required`` lists name (they lack ``omitempty``) but upstream accepts
# absent: their zero value is valid, or the hand-written rules report them at another path.
_ABSENCE_ALLOWED: dict[str, frozenset[str]] = {
    "io.k8s.api.core.v1.Sysctl": frozenset({"value"}),
    "io.k8s.api.core.v1.HTTPHeader": frozenset({"name", "value"}),  # name: at ".httpHeaders"
    "io.k8s.api.core.v1.SleepAction": frozenset({"seconds"}),  # zero sleeps are allowed
    "io.k8s.api.core.v1.ISCSIVolumeSource": frozenset({"lun"}),  # LUN 0 is valid
    "io.k8s.api.core.v1.ISCSIPersistentVolumeSource": frozenset({"lun"}),
    "io.k8s.api.core.v1.ScaleIOVolumeSource": frozenset({"secretRef"}),
    "io.k8s.api.core.v1.ScaleIOPersistentVolumeSource": frozenset({"secretRef"}),
    "io.k8s.api.core.v1.PreferredSchedulingTerm": frozenset({"preference"}),  # empty term
    "io.k8s.api.core.v1.DownwardAPIVolumeFile": frozenset({"path"}),  # at ".downwardAPI.path"
    "io.k8s.api.core.v1.ServiceAccountTokenProjection": frozenset({"path"}),  # ".projected.path"
    "io.k8s.api.core.v1.Taint": frozenset({"key", "effect"}),  # at "metadata.taints[i]"
    "io.k8s.api.core.v1.LimitRangeSpec": frozenset({"limits"}),
    "io.k8s.api.core.v1.Event": frozenset({"involvedObject"}),
    "io.k8s.api.batch.v1.PodFailurePolicy": frozenset({"rules"}),
    # without a pathType upstream stops there; with one, "resource or service backend is required"
    "io.k8s.api.networking.v1.HTTPIngressPath": frozenset({"backend"}),
}

_required_cache: dict[int, tuple[dict, tuple[str, ...]]] = {}


def _enforced_required(node: dict, schemas: Schemas) -> tuple[str, ...]:
    """The fields of ``node``'s ``required`` list whose absence upstream rejects: not booleans
    (absent is ``false``, a valid value) nor the fields of ``_ABSENCE_ALLOWED``."""
    cached = _required_cache.get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    allowed: frozenset[str] = frozenset()
    for name, fields in _ABSENCE_ALLOWED.items():
        if schemas.definitions.get(name) is node:
            allowed = fields
    props = node.get("properties") or {}
    fields = tuple(f for f in node.get("required", ())
                   if f not in allowed and node_type(schemas.resolve(props.get(f))) != "boolean")
    _required_cache[id(node)] = (node, fields)
    return fields


# Schema node (by identity) -> (node, resolved node, type): the walk's hot lookup, cached. The
# node is kept in the entry so that its id cannot be reused while it is cached.
_node_info: dict[int, tuple[dict, dict, str | None]] = {}


class _TypeChecker:
    """Walks a built-in object along its schema. Upstream decodes into Go structs, so a null is
    the zero value (allowed everywhere) and ``required`` is only advisory; the required fields
    whose absence upstream's hand-written rules reject too are still reported outside
    ``status`` (duplicates with the kind rules are dropped by ``validate``)."""

    def __init__(self, schemas: Schemas):
        self.schemas = schemas
        self.errors: Errors = []

    def check(self, value: Any, node: dict | None, path: str, required: bool) -> None:
        if value is None or node is None:
            return
        info = _node_info.get(id(node))
        if info is None or info[0] is not node:
            resolved = self.schemas.resolve(node)
            info = _node_info[id(node)] = (node, resolved, node_type(resolved))
        _, n, t = info
        if t is None:
            return
        if t == "object":
            self._object(value, n, path, required)
        elif t == "array":
            if not isinstance(value, list):
                self.errors.append(_type_error(path, "array", value))
                return
            items = n.get("items")
            if isinstance(items, dict):
                for i, item in enumerate(value):
                    self.check(item, items, f"{path}[{i}]", required)
        else:
            self._scalar(value, n, t, path)

    def _object(self, value: Any, node: dict, path: str, required: bool) -> None:
        if not isinstance(value, dict):
            self.errors.append(_type_error(path, "object", value))
            return
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if required and props and "required" in node:
            for name in _enforced_required(node, self.schemas):
                if value.get(name) is None:
                    self.errors.append(E.required(_child(path, name)))
        for key, child in value.items():
            sub = props.get(key) if props else None
            if sub is None:
                if isinstance(extra, dict):
                    sub = extra
                else:
                    continue
            self.check(child, sub, _child(path, key),
                       required and not (path == "" and key == "status"))

    def _scalar(self, value: Any, node: dict, t: str, path: str) -> None:
        if t == "string":
            if not isinstance(value, str):
                self.errors.append(_type_error(path, "string", value))
            elif node.get("format") == "byte":
                self._base64(value, path)
        elif t == "integer":
            if json_type(value) != "integer":
                self.errors.append(_type_error(path, "integer", value))
                return
            lo, hi = _INT32 if node.get("format") == "int32" else _INT64
            if not lo <= value <= hi:
                self.errors.append(E.invalid(path, value, f"must be between {lo} and {hi}"))
        elif t == "number":
            if json_type(value) not in ("integer", "number"):
                self.errors.append(_type_error(path, "number", value))
        elif t == "boolean":
            if not isinstance(value, bool):
                self.errors.append(_type_error(path, "boolean", value))
        elif t == "int-or-string":
            if json_type(value) not in ("integer", "string"):
                self.errors.append(_type_error(path, "integer,string", value))
        elif t == "quantity":
            if json_type(value) not in ("integer", "number", "string"):
                self.errors.append(_type_error(path, "string", value))
                return
            try:
                parse_quantity(value)
            except QuantityError as err:
                self.errors.append(E.invalid(path, value, str(err)))

    def _base64(self, value: str, path: str) -> None:
        at = _base64_error_at(value)
        if at is not None:
            # the value may be a secret: leave it out, as upstream's decode error does
            self.errors.append(FieldError(E.INVALID, path,
                                          f"illegal base64 data at input byte {at}"))


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64_error_at(value: str) -> int | None:
    try:
        base64.b64decode(value, validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    body = value.rstrip("=")
    for i, ch in enumerate(body):
        if ch not in _B64_ALPHABET:
            return i
    return max(0, len(value) - len(value) % 4) if len(value) % 4 else len(body)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_types(obj: dict, node: dict | None, schemas: Schemas, *,
                required: bool = True) -> Errors:
    """Type errors and missing required fields of a built-in object against its definition."""
    checker = _TypeChecker(schemas)
    checker.check(obj, node, "", required)
    return checker.errors


# ============================================================================================
# 2. Object metadata (apimachinery/pkg/api/validation/objectmeta.go + core's wrapper)
# ============================================================================================

TOTAL_ANNOTATION_SIZE = 256 * 1024
_STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})
_BANNED_OWNERS = frozenset({("", "v1", "Event")})


def validate_labels(labels: Any, path: str) -> Errors:
    errs: Errors = []
    if not isinstance(labels, dict):
        return errs
    for key, value in labels.items():
        errs += _invalid_each(path, key, is_qualified_name(key))
        if isinstance(value, str):
            errs += _invalid_each(path, value, is_label_value(value))
    return errs


def validate_annotations(annotations: Any, path: str) -> Errors:
    errs: Errors = []
    if not isinstance(annotations, dict):
        return errs
    total = 0
    for key, value in annotations.items():
        errs += _invalid_each(path, key, is_qualified_name(key.lower()))
        total += len(key.encode()) + len(value.encode() if isinstance(value, str) else b"")
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(E.too_long_bytes(path, TOTAL_ANNOTATION_SIZE))
    return errs


def _owner_references(refs: list, path: str) -> Errors:
    errs: Errors = []
    first_controller = ""
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        api_version = _s(ref, "apiVersion")
        group, _, version = api_version.rpartition("/")
        if not version:
            errs.append(E.invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        for field in ("kind", "name", "uid"):
            if not _s(ref, field):
                errs.append(E.invalid(f"{path}.{field}", _s(ref, field), "must not be empty"))
        if (group, version, _s(ref, "kind")) in _BANNED_OWNERS:
            errs.append(E.invalid(path, ref, f"{group}/{version}, Kind={_s(ref, 'kind')} is "
                                            "disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{_s(ref, 'kind')}/{_s(ref, 'name')}"
            if first_controller:
                errs.append(E.invalid(path, refs, "Only one reference can have Controller set to "
                                                  f'true. Found "true" in references for '
                                                  f"{first_controller} and {current}"))
            else:
                first_controller = current
    return errs


def _finalizers(finalizers: list, path: str, kube_names: bool) -> Errors:
    errs: Errors = []
    for finalizer in finalizers:
        if isinstance(finalizer, str):
            errs += _invalid_each(path, finalizer, is_qualified_name(finalizer))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(E.invalid(path, go_string_slice(finalizers),
                              "finalizer orphan and foregroundDeletion cannot be both set"))
    if kube_names:
        for i, finalizer in enumerate(finalizers):
            errs += _kube_finalizer_name(finalizer, f"{path}[{i}]")
    return errs


def _kube_finalizer_name(name: Any, path: str) -> Errors:
    if isinstance(name, str) and "/" not in name and name not in _STANDARD_FINALIZERS:
        return [E.invalid(path, name, "name is neither a standard finalizer name nor is it "
                                      "fully qualified")]
    return []


def _managed_fields(entries: list, path: str) -> Errors:
    errs: Errors = []
    for i, entry in _dicts({"m": entries}, "m"):
        p = f"{path}[{i}]"
        if _s(entry, "operation") not in ("Apply", "Update"):
            errs.append(E.invalid(f"{p}.operation", _s(entry, "operation"),
                                  "must be `Apply` or `Update`"))
        if _s(entry, "fieldsType") not in ("", "FieldsV1"):
            errs.append(E.invalid(f"{p}.fieldsType", _s(entry, "fieldsType"), "must be `FieldsV1`"))
        manager = _s(entry, "manager")
        if len(manager) > 128:
            errs.append(E.too_long_bytes(f"{p}.manager", 128))
    return errs


def _meta_common(meta: dict, path: str, kube_finalizers: bool) -> Errors:
    errs = nonnegative(meta.get("generation"), f"{path}.generation")
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += _owner_references(_l(meta, "ownerReferences"), f"{path}.ownerReferences")
    errs += _finalizers(_l(meta, "finalizers"), f"{path}.finalizers", kube_finalizers)
    errs += _managed_fields(_l(meta, "managedFields"), f"{path}.managedFields")
    return errs


def validate_object_meta(meta: dict, namespaced: bool, name_fn: NameFn, path: str = "metadata",
                         *, kube_finalizers: bool = True) -> Errors:
    """``ValidateObjectMeta`` for a create."""
    errs: Errors = []
    generate_name = _s(meta, "generateName")
    if generate_name:
        errs += _invalid_each(f"{path}.generateName", generate_name, name_fn(generate_name, True))
    name = _s(meta, "name")
    if not name:
        errs.append(E.required(f"{path}.name", "name or generateName is required"))
    else:
        errs += _invalid_each(f"{path}.name", name, name_fn(name, False))
    namespace = _s(meta, "namespace")
    if namespaced:
        if not namespace:
            errs.append(E.required(f"{path}.namespace"))
        else:
            errs += _invalid_each(f"{path}.namespace", namespace, name_is_dns_label(namespace))
    elif namespace:
        errs.append(E.forbidden(f"{path}.namespace", "not allowed on this type"))
    return errs + _meta_common(meta, path, kube_finalizers)


def validate_object_meta_update(new: dict, old: dict, path: str = "metadata", *,
                                kube_finalizers: bool = True) -> Errors:
    """``ValidateObjectMetaUpdate``. The resourceVersion precondition is the server's."""
    errs: Errors = []
    if _has(old, "deletionTimestamp"):
        added = sorted(set(_l(new, "finalizers")) - set(_l(old, "finalizers")))
        if added:
            shown = "[]string{" + ", ".join(_go_quote(f) for f in added) + "}"
            errs.append(E.forbidden(f"{path}.finalizers", "no new finalizers can be added if the "
                                                          f"object is being deleted, found new "
                                                          f"finalizers {shown}"))
    if _i(new, "generation") < _i(old, "generation"):
        errs.append(E.invalid(f"{path}.generation", _i(new, "generation"),
                              "must not be decremented"))
    for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
        if new.get(field) != old.get(field) and (new.get(field) or old.get(field)):
            errs.append(E.invalid(f"{path}.{field}", new.get(field), IMMUTABLE))
    return errs + _meta_common(new, path, kube_finalizers)


# ============================================================================================
# Label selectors (apimachinery/pkg/apis/meta/v1/validation)
# ============================================================================================

_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: Any, path: str, *, allow_invalid_values: bool = False) -> Errors:
    if not isinstance(sel, dict):
        return []
    errs = validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in _dicts(sel, "matchExpressions"):
        errs += _selector_requirement(expr, f"{path}.matchExpressions[{i}]", allow_invalid_values)
    return errs


def _selector_requirement(expr: dict, path: str, allow_invalid_values: bool) -> Errors:
    errs: Errors = []
    op, values = _s(expr, "operator"), _l(expr, "values")
    if op in ("In", "NotIn"):
        if not values:
            errs.append(E.required(f"{path}.values", "must be specified when `operator` is 'In' "
                                                     "or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(E.forbidden(f"{path}.values", "may not be specified when `operator` is "
                                                      "'Exists' or 'DoesNotExist'"))
    else:
        errs.append(E.invalid(f"{path}.operator", op, "not a valid selector operator"))
    errs += _invalid_each(f"{path}.key", _s(expr, "key"), is_qualified_name(_s(expr, "key")))
    if not allow_invalid_values:
        for j, value in enumerate(values):
            if isinstance(value, str):
                errs += _invalid_each(f"{path}.values[{j}]", value, is_label_value(value))
    return errs


def selector_parses(sel: dict) -> bool:
    """``metav1.LabelSelectorAsSelector`` succeeds."""
    for key, value in _m(sel, "matchLabels").items():
        if is_qualified_name(key) or not isinstance(value, str) or is_label_value(value):
            return False
    for _, expr in _dicts(sel, "matchExpressions"):
        op, values = _s(expr, "operator"), _l(expr, "values")
        if op not in _SELECTOR_OPS or is_qualified_name(_s(expr, "key")):
            return False
        if (op in ("In", "NotIn") and not values) or (op in ("Exists", "DoesNotExist") and values):
            return False
        if any(not isinstance(v, str) or is_label_value(v) for v in values):
            return False
    return True


def selector_is_empty(sel: dict) -> bool:
    return not _m(sel, "matchLabels") and not _l(sel, "matchExpressions")


def selector_matches(sel: dict | None, labels: dict) -> bool:
    """A nil selector selects nothing; an empty one everything."""
    if sel is None:
        return False
    for key, value in _m(sel, "matchLabels").items():
        if labels.get(key) != value:
            return False
    for _, expr in _dicts(sel, "matchExpressions"):
        key, op, values = _s(expr, "key"), _s(expr, "operator"), _l(expr, "values")
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _template_matches_selector(sel: Any, template: dict, path: str) -> Errors:
    """The RS/Deployment/StatefulSet/Job rule: a non-empty, parseable selector must select the
    template's labels (a missing selector selects nothing, so it never matches)."""
    labels = _m(_m(template, "metadata"), "labels")
    if sel is not None and not isinstance(sel, dict):
        return []
    if sel is not None and (not selector_parses(sel) or selector_is_empty(sel)):
        return []
    if selector_matches(sel, labels):
        return []
    raw = _m(template, "metadata").get("labels")
    return [E.invalid(f"{path}.metadata.labels",
                      go_string_map(raw if isinstance(raw, dict) else None),
                      "`selector` does not match template `labels`")]


# ============================================================================================
# 3a. Pods (pkg/apis/core/validation: ValidatePodSpec and friends)
# ============================================================================================

FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_RESTART_POLICIES = ["Always", "OnFailure", "Never"]
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
_HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                    "FileOrCreate", "Socket"]
_MOUNT_PROPAGATIONS = ["Bidirectional", "HostToContainer", "None"]
_TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_MAX_UID = 4294967295
_MAX_INT32 = 2 ** 31 - 1
_ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                    "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                    "status.podIPs"]
_VOLUME_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name",
                       "metadata.namespace", "metadata.uid"]
_DOWNWARD_API_V1_FIELDS = frozenset({
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
    "metadata.uid", "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName",
    "spec.schedulerName", "status.phase", "status.hostIP", "status.hostIPs", "status.podIP",
    "status.podIPs"})
_RESOURCE_FIELD_PATHS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory",
                         "requests.cpu", "requests.ephemeral-storage", "requests.memory"]
_UPDATABLE_POD_FIELDS = ", ".join([
    "`spec.containers[*].image`", "`spec.initContainers[*].image`", "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
]).replace(", ", ",")
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True, slots=True)
class PodOptions:
    resource_is_pod: bool = False
    pod_name: str = ""


def _file_mode(value: Any, path: str) -> Errors:
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 0o777:
        return [E.invalid(path, value, FILE_MODE_ERROR)]
    return []


def _no_backsteps(target: str, path: str) -> Errors:
    if ".." in target.replace("\\", "/").split("/"):
        return [E.invalid(path, target, "must not contain '..'")]
    return []


def _local_descending_path(target: str, path: str) -> Errors:
    errs = [E.invalid(path, target, "must be a relative path")] if target.startswith("/") else []
    return errs + _no_backsteps(target, path)


def _local_non_reserved_path(target: str, path: str) -> Errors:
    errs = _local_descending_path(target, path)
    if target.startswith("..") and not target.startswith("../"):
        errs.append(E.invalid(path, target, "must not start with '..'"))
    return errs


def _key_to_path(item: dict, path: str) -> Errors:
    errs: Errors = []
    if not _s(item, "key"):
        errs.append(E.required(f"{path}.key"))
    if not _s(item, "path"):
        errs.append(E.required(f"{path}.path"))
    errs += _local_non_reserved_path(_s(item, "path"), f"{path}.path")
    return errs + _file_mode(item.get("mode"), f"{path}.mode")


def _items(source: dict, path: str) -> Errors:
    errs: Errors = []
    for i, item in _dicts(source, "items"):
        errs += _key_to_path(item, f"{path}.items[{i}]")
    return errs


# --- volume sources -------------------------------------------------------------------------


def _vol_empty_dir(src: dict, path: str, _: str) -> Errors:
    limit = src.get("sizeLimit")
    if limit is not None:
        try:
            if parse_quantity(limit).value < 0:
                return [E.forbidden(f"{path}.sizeLimit", "SizeLimit field must be a valid "
                                                         "resource quantity")]
        except QuantityError:
            pass
    return []


def _vol_host_path(src: dict, path: str, _: str) -> Errors:
    host_path = _s(src, "path")
    if not host_path:
        return [E.required(f"{path}.path")]
    errs = _no_backsteps(host_path, f"{path}.path")
    kind = src.get("type")
    if kind is not None and kind not in _HOST_PATH_TYPES:
        errs.append(E.not_supported(f"{path}.type", kind, _HOST_PATH_TYPES))
    return errs


def _vol_secret(src: dict, path: str, _: str) -> Errors:
    errs = [E.required(f"{path}.secretName")] if not _s(src, "secretName") else []
    return errs + _file_mode(src.get("defaultMode"), f"{path}.defaultMode") + _items(src, path)


def _vol_config_map(src: dict, path: str, _: str) -> Errors:
    errs = [E.required(f"{path}.name")] if not _s(src, "name") else []
    return errs + _file_mode(src.get("defaultMode"), f"{path}.defaultMode") + _items(src, path)


def _vol_pvc(src: dict, path: str, _: str) -> Errors:
    return [E.required(f"{path}.claimName")] if not _s(src, "claimName") else []


def _vol_nfs(src: dict, path: str, _: str) -> Errors:
    errs = [E.required(f"{path}.server")] if not _s(src, "server") else []
    if not _s(src, "path"):
        errs.append(E.required(f"{path}.path"))
    if not _s(src, "path").startswith("/"):
        errs.append(E.invalid(f"{path}.path", _s(src, "path"), "must be an absolute path"))
    return errs


def _vol_git_repo(src: dict, path: str, _: str) -> Errors:
    errs = [E.required(f"{path}.repository")] if not _s(src, "repository") else []
    return errs + _local_descending_path(_s(src, "directory"), f"{path}.directory")


def _vol_iscsi(src: dict, path: str, _: str) -> Errors:
    errs: Errors = []
    if not _s(src, "targetPortal"):
        errs.append(E.required(f"{path}.targetPortal"))
    if not _s(src, "iqn"):
        errs.append(E.required(f"{path}.iqn"))
    lun = _i(src, "lun")
    if not 0 <= lun <= 255:
        errs.append(E.invalid(f"{path}.lun", lun, inclusive_range_error(0, 255)))
    return errs


def csi_driver_name(driver: str, path: str) -> Errors:
    errs: Errors = []
    if not driver:
        errs.append(E.required(path))
    if len(driver) > 63:
        errs.append(E.too_long_bytes(path, 63))
    return errs + _invalid_each(path, driver, is_dns1123_subdomain(driver.lower()))


def _vol_csi(src: dict, path: str, _: str) -> Errors:
    errs = csi_driver_name(_s(src, "driver"), f"{path}.driver")
    ref = src.get("nodePublishSecretRef")
    if isinstance(ref, dict):
        if not _s(ref, "name"):
            errs.append(E.required(f"{path}.nodePublishSecretRef.name"))
        else:
            errs += _invalid_each(f"{path}.name", _s(ref, "name"),
                                  name_is_dns_subdomain(_s(ref, "name")))
    return errs


def _vol_downward_api(src: dict, path: str, _: str) -> Errors:
    errs = _file_mode(src.get("defaultMode"), f"{path}.defaultMode")
    for _, item in _dicts(src, "items"):
        errs += _downward_api_file(item, path)
    return errs


def _downward_api_file(item: dict, path: str) -> Errors:
    # upstream validates every file at the volume's path, without the item index
    errs = [E.required(f"{path}.path")] if not _s(item, "path") else []
    errs += _local_non_reserved_path(_s(item, "path"), f"{path}.path")
    field_ref, resource_ref = item.get("fieldRef"), item.get("resourceFieldRef")
    if isinstance(field_ref, dict):
        errs += _object_field_selector(field_ref, _VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if resource_ref is not None:
            errs.append(E.invalid(path, "resource", "fieldRef and resourceFieldRef can not be "
                                                    "specified simultaneously"))
    elif isinstance(resource_ref, dict):
        errs += _resource_field_selector(resource_ref, f"{path}.resourceFieldRef", volume=True)
    else:
        errs.append(E.required(path, "one of fieldRef and resourceFieldRef is required"))
    return errs + _file_mode(item.get("mode"), f"{path}.mode")


def _vol_projected(src: dict, path: str, pod: str) -> Errors:
    errs = _file_mode(src.get("defaultMode"), f"{path}.defaultMode")
    seen: set[str] = set()
    for i, source in _dicts(src, "sources"):
        sp = f"{path}.sources[{i}]"
        kinds = [k for k in ("secret", "configMap", "downwardAPI", "serviceAccountToken",
                             "clusterTrustBundle", "podCertificate") if _has(source, k)]
        for kind in ("secret", "configMap"):
            ref = _m(source, kind)
            if kind in kinds:
                if not _s(ref, "name"):
                    errs.append(E.required(f"{sp}.{kind}.name"))
                for j, item in _dicts(ref, "items"):
                    errs += _key_to_path(item, f"{sp}.{kind}.items[{j}]")
                    errs += _unique_projection(_s(item, "path"), seen, path, _s(ref, "name"))
        if "downwardAPI" in kinds:
            for _, item in _dicts(_m(source, "downwardAPI"), "items"):
                errs += _downward_api_file(item, f"{sp}.downwardAPI")
                errs += _unique_projection(_s(item, "path"), seen, path, _s(item, "path"))
        if "serviceAccountToken" in kinds:
            errs += _sa_token_projection(_m(source, "serviceAccountToken"), sp, path)
        if len(kinds) > 1:
            errs.append(E.forbidden(sp, "may not specify more than 1 volume type per source"))
    return errs


def _unique_projection(target: str, seen: set[str], path: str, shown: str) -> Errors:
    if not target:
        return []
    if target in seen:
        return [E.invalid(path, shown, "conflicting duplicate paths")]
    seen.add(target)
    return []


def _sa_token_projection(token: dict, source_path: str, path: str) -> Errors:
    errs: Errors = []
    tp = f"{source_path}.serviceAccountToken"
    expiration = _i(token, "expirationSeconds", 3600)
    if expiration < 600:
        errs.append(E.invalid(f"{tp}.expirationSeconds", expiration,
                              "may not specify a duration less than 10 minutes"))
    if expiration > 1 << 32:
        errs.append(E.invalid(f"{tp}.expirationSeconds", expiration,
                              "may not specify a duration larger than 2^32 seconds"))
    if not _s(token, "path"):
        errs.append(E.required(f"{path}.path"))
    else:
        errs += _local_non_reserved_path(_s(token, "path"), f"{path}.path")
    return errs


def _vol_ephemeral(src: dict, path: str, pod: str) -> Errors:
    template = src.get("volumeClaimTemplate")
    if not isinstance(template, dict):
        return [E.required(f"{path}.volumeClaimTemplate")]
    tp = f"{path}.volumeClaimTemplate"
    meta = _m(template, "metadata")
    errs = validate_annotations(meta.get("annotations"), f"{tp}.metadata.annotations")
    errs += validate_labels(meta.get("labels"), f"{tp}.metadata.labels")
    for key in meta:
        if key not in ("labels", "annotations") and meta[key] not in (None, "", {}, []):
            errs.append(E.forbidden(f"{tp}.metadata.{key}", "cannot be set"))
    return errs + pvc_spec(_m(template, "spec"), f"{tp}.spec")


def _vol_image(src: dict, path: str, pod: str) -> Errors:
    errs = [E.required(f"{path}.reference")] if pod and not _s(src, "reference") else []
    policy = _s(src, "pullPolicy")
    if policy and policy not in _PULL_POLICIES:
        errs.append(E.not_supported(f"{path}.pullPolicy", policy, _PULL_POLICIES))
    return errs


def _vol_required(*fields: str) -> Callable[[dict, str, str], Errors]:
    def check(src: dict, path: str, _: str) -> Errors:
        return [E.required(f"{path}.{f}") for f in fields if not src.get(f)]
    return check


# Each volume source and its rules, in upstream's order (which decides the source a
# "more than 1 volume type" error blames). A rule gets the source, its path and the pod's name
# (empty for a pod template).
_VOLUME_SOURCES: tuple[tuple[str, Callable[[dict, str, str], Errors]], ...] = (
    ("hostPath", _vol_host_path), ("gitRepo", _vol_git_repo),
    ("gcePersistentDisk", _vol_required("pdName")),
    ("awsElasticBlockStore", _vol_required("volumeID")), ("secret", _vol_secret),
    ("nfs", _vol_nfs), ("iscsi", _vol_iscsi), ("glusterfs", _vol_required("endpoints", "path")),
    ("flocker", lambda s, p, _: []), ("persistentVolumeClaim", _vol_pvc),
    ("rbd", _vol_required("monitors", "image")), ("cinder", _vol_required("volumeID")),
    ("cephfs", _vol_required("monitors")), ("quobyte", _vol_required("registry", "volume")),
    ("downwardAPI", _vol_downward_api), ("fc", lambda s, p, _: []),
    ("flexVolume", _vol_required("driver")), ("configMap", _vol_config_map),
    ("azureFile", _vol_required("secretName", "shareName")),
    ("vsphereVolume", _vol_required("volumePath")),
    ("photonPersistentDisk", _vol_required("pdID")),
    ("portworxVolume", _vol_required("volumeID")),
    ("azureDisk", _vol_required("diskName", "diskURI")),
    ("storageos", _vol_required("volumeName")), ("projected", _vol_projected),
    ("scaleIO", _vol_required("gateway", "system", "volumeName")), ("csi", _vol_csi),
    ("ephemeral", _vol_ephemeral), ("image", _vol_image),
)


def _volume_source(volume: dict, path: str, opts: PodOptions) -> Errors:
    errs: Errors = []
    count = 0
    if isinstance(volume.get("emptyDir"), dict):
        count = 1
        errs += _vol_empty_dir(volume["emptyDir"], f"{path}.emptyDir", "")
    for name, check in _VOLUME_SOURCES:
        src = volume.get(name)
        if not isinstance(src, dict):
            continue
        if count:
            errs.append(E.forbidden(f"{path}.{name}", "may not specify more than 1 volume type"))
            continue
        count += 1
        errs += check(src, f"{path}.{name}", opts.pod_name if opts.resource_is_pod else "")
    if not count:
        errs.append(E.required(path, "must specify a volume type"))
    return errs


def validate_volumes(volumes: list, path: str, opts: PodOptions) -> tuple[dict[str, dict], Errors]:
    """``ValidateVolumes``: the volumes by name (the valid ones) and the errors."""
    errs: Errors = []
    by_name: dict[str, dict] = {}
    for i, volume in _dicts({"v": volumes}, "v"):
        vp = f"{path}[{i}]"
        own = _volume_source(volume, vp, opts)
        name = _s(volume, "name")
        if not name:
            own.append(E.required(f"{vp}.name"))
        else:
            own += _invalid_each(f"{vp}.name", name, is_dns1123_label(name))
        if name in by_name:
            own.append(E.duplicate(f"{vp}.name", name))
        if own:
            errs += own
        else:
            by_name[name] = volume
    return by_name, errs


# --- env -----------------------------------------------------------------------------------


def _object_field_selector(ref: dict, allowed: list[str], path: str) -> Errors:
    if not _s(ref, "apiVersion"):
        return [E.required(f"{path}.apiVersion")]
    field_path = _s(ref, "fieldPath")
    if not field_path:
        return [E.required(f"{path}.fieldPath")]
    base, subscript = _split_subscript(field_path)
    if _s(ref, "apiVersion") != "v1":
        return [E.invalid(f"{path}.fieldPath", field_path, "error converting fieldPath: "
                          f"unsupported pod version: {_s(ref, 'apiVersion')}")]
    if base not in _DOWNWARD_API_V1_FIELDS:
        return [E.invalid(f"{path}.fieldPath", field_path, "error converting fieldPath: field "
                          f"label not supported: {field_path}")]
    if subscript is not None:
        if base == "metadata.annotations":
            return _invalid_each(path, subscript.lower(), is_qualified_name(subscript.lower()))
        if base == "metadata.labels":
            return _invalid_each(path, subscript, is_qualified_name(subscript))
        return [E.invalid(path, base, "does not support subscript")]
    if base not in allowed:
        return [E.not_supported(f"{path}.fieldPath", base, allowed)]
    return []


def _split_subscript(field_path: str) -> tuple[str, str | None]:
    if field_path.endswith("']") and "['" in field_path:
        base, _, rest = field_path.partition("['")
        return base, rest[:-2]
    return field_path, None


def _resource_field_selector(ref: dict, path: str, *, volume: bool) -> Errors:
    resource = _s(ref, "resource")
    if volume and not _s(ref, "containerName"):
        return [E.required(f"{path}.containerName")]
    if not resource:
        return [E.required(f"{path}.resource")]
    if resource not in _RESOURCE_FIELD_PATHS and not resource.startswith(
            ("requests.hugepages-", "limits.hugepages-")):
        return [E.not_supported(f"{path}.resource", resource, _RESOURCE_FIELD_PATHS)]
    return []


def _key_selector(ref: dict, path: str) -> Errors:
    errs = _invalid_each(f"{path}.name", _s(ref, "name"), name_is_dns_subdomain(_s(ref, "name")))
    key = _s(ref, "key")
    if not key:
        return errs + [E.required(f"{path}.key")]
    return errs + _invalid_each(f"{path}.key", key, is_config_map_key(key))


def validate_env(env: list, path: str) -> Errors:
    errs: Errors = []
    for i, var in _dicts({"e": env}, "e"):
        vp = f"{path}[{i}]"
        name = _s(var, "name")
        if not name:
            errs.append(E.required(f"{vp}.name"))
        else:
            errs += _invalid_each(f"{vp}.name", name, is_env_var_name(name))
        errs += _env_value_from(var, f"{vp}.valueFrom")
    return errs


def _env_value_from(var: dict, path: str) -> Errors:
    source = var.get("valueFrom")
    if not isinstance(source, dict):
        return []
    errs: Errors = []
    count = 0
    checks = (("fieldRef", lambda r, p: _object_field_selector(r, _ENV_FIELD_PATHS, p)),
              ("resourceFieldRef", lambda r, p: _resource_field_selector(r, p, volume=False)),
              ("configMapKeyRef", _key_selector), ("secretKeyRef", _key_selector),
              ("fileKeyRef", lambda r, p: []))
    for name, check in checks:
        if isinstance(source.get(name), dict):
            count += 1
            errs += check(source[name], f"{path}.{name}")
    if count == 0:
        errs.append(E.invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                        "`configMapKeyRef` or `secretKeyRef`"))
    elif _s(var, "value"):
        errs.append(E.invalid(path, "", "may not be specified when `value` is not empty"))
    elif count > 1:
        errs.append(E.invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def validate_env_from(sources: list, path: str) -> Errors:
    errs: Errors = []
    for i, source in _dicts({"e": sources}, "e"):
        sp = f"{path}[{i}]"
        prefix = _s(source, "prefix")
        if prefix:
            errs += _invalid_each(f"{sp}.prefix", prefix, is_env_var_name(prefix))
        count = 0
        for ref_name in ("configMapRef", "secretRef"):
            ref = source.get(ref_name)
            if isinstance(ref, dict):
                count += 1
                name = _s(ref, "name")
                if not name:
                    errs.append(E.required(f"{sp}.{ref_name}.name"))
                else:
                    errs += _invalid_each(f"{sp}.{ref_name}.name", name,
                                          name_is_dns_subdomain(name, True))
        if count == 0:
            errs.append(E.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            errs.append(E.invalid(path, "", "may not have more than one field specified at a time"))
    return errs


# --- ports, probes, handlers ---------------------------------------------------------------


def validate_container_ports(ports: list, path: str) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, port in _dicts({"p": ports}, "p"):
        pp = f"{path}[{i}]"
        name = _s(port, "name")
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += _invalid_each(f"{pp}.name", name, msgs)
            elif name in names:
                errs.append(E.duplicate(f"{pp}.name", name))
            else:
                names.add(name)
        container_port = _i(port, "containerPort")
        if container_port == 0:
            errs.append(E.required(f"{pp}.containerPort"))
        else:
            errs += _invalid_each(f"{pp}.containerPort", container_port,
                                  is_valid_port_num(container_port))
        host_port = _i(port, "hostPort")
        if host_port:
            errs += _invalid_each(f"{pp}.hostPort", host_port, is_valid_port_num(host_port))
        errs += _protocol(_s(port, "protocol"), f"{pp}.protocol")
    return errs


def _protocol(protocol: str, path: str) -> Errors:
    if not protocol:
        return [E.required(path)]
    if protocol not in _PROTOCOLS:
        return [E.not_supported(path, protocol, _PROTOCOLS)]
    return []


def port_num_or_name(port: Any, path: str) -> Errors:
    if isinstance(port, int) and not isinstance(port, bool):
        return _invalid_each(path, port, is_valid_port_num(port))
    if isinstance(port, str):
        return _invalid_each(path, port, is_valid_port_name(port))
    return _invalid_each(path, 0, is_valid_port_num(0))


def _handler(handler: dict, grace: Any, path: str, kinds: tuple[str, ...]) -> Errors:
    errs: Errors = []
    count = 0
    for kind in kinds:
        action = handler.get(kind)
        if not isinstance(action, dict):
            continue
        if count:
            errs.append(E.forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        errs += _ACTIONS[kind](action, f"{path}.{kind}", grace)
    if not count:
        errs.append(E.required(path, "must specify a handler type"))
    return errs


def _exec_action(action: dict, path: str, _: Any) -> Errors:
    return [] if _l(action, "command") else [E.required(f"{path}.command")]


def _http_get_action(action: dict, path: str, _: Any) -> Errors:
    errs = [] if _s(action, "path") else [E.required(f"{path}.path")]
    errs += port_num_or_name(action.get("port"), f"{path}.port")
    scheme = _s(action, "scheme")
    if scheme not in ("HTTP", "HTTPS"):
        errs.append(E.not_supported(f"{path}.scheme", scheme, ["HTTP", "HTTPS"]))
    for _, header in _dicts(action, "httpHeaders"):
        name = _s(header, "name")
        if not _HTTP_HEADER.fullmatch(name):
            errs.append(E.invalid(f"{path}.httpHeaders", name, regex_error(
                "a valid HTTP header must consist of alphanumeric characters or '-'",
                _HTTP_HEADER_FMT, "X-Header-Name")))
    return errs


def _tcp_action(action: dict, path: str, _: Any) -> Errors:
    return port_num_or_name(action.get("port"), f"{path}.port")


def _grpc_action(action: dict, path: str, _: Any) -> Errors:
    port = _i(action, "port")
    return _invalid_each(f"{path}.port", port, is_valid_port_num(port))


def _sleep_action(action: dict, path: str, grace: Any) -> Errors:
    seconds = _i(action, "seconds")
    if isinstance(grace, int) and not 0 <= seconds <= grace:
        return [E.invalid(path, seconds, "must be non-negative and less than "
                                         f"terminationGracePeriodSeconds ({grace})")]
    return []


_ACTIONS: dict[str, Callable[[dict, str, Any], Errors]] = {
    "exec": _exec_action, "httpGet": _http_get_action, "tcpSocket": _tcp_action,
    "grpc": _grpc_action, "sleep": _sleep_action,
}
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def _probe(probe: Any, grace: Any, path: str, kind: str) -> Errors:
    if not isinstance(probe, dict):
        return []
    errs = _handler(probe, grace, path, _PROBE_HANDLERS)
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                  "failureThreshold"):
        errs += nonnegative(probe.get(field), f"{path}.{field}")
    tgps = probe.get("terminationGracePeriodSeconds")
    if isinstance(tgps, int) and tgps <= 0:
        errs.append(E.invalid(f"{path}.terminationGracePeriodSeconds", tgps,
                              "must be greater than 0"))
    if kind in ("liveness", "startup") and _i(probe, "successThreshold", 1) != 1:
        errs.append(E.invalid(f"{path}.successThreshold", probe.get("successThreshold"),
                              "must be 1"))
    if kind == "readiness" and tgps is not None:
        errs.append(E.invalid(f"{path}.terminationGracePeriodSeconds", tgps,
                              "must not be set for readinessProbes"))
    return errs


def _lifecycle(lifecycle: dict, grace: Any, path: str) -> Errors:
    errs: Errors = []
    for hook in ("postStart", "preStop"):
        if isinstance(lifecycle.get(hook), dict):
            errs += _handler(lifecycle[hook], grace, f"{path}.{hook}", _LIFECYCLE_HANDLERS)
    return errs


# --- resources -------------------------------------------------------------------------------

_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_STANDARD_RESOURCES = frozenset({
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.storage", "services.nodeports",
    "services.loadbalancers"})


_INTEGER_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"})


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not _is_hugepages(name)


def resource_name(name: str, path: str) -> Errors:
    errs = _invalid_each(path, name, is_qualified_name(name))
    if errs:
        return errs
    if "/" not in name and name not in _STANDARD_RESOURCES and not _is_hugepages(name):
        return [E.invalid(path, name, "must be a standard resource type or fully qualified")]
    return []


def _container_resource_name(name: str, path: str) -> Errors:
    errs = resource_name(name, path)
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
            return errs + [E.invalid(path, name, "must be a standard resource for containers")]
    elif not _is_native(name):
        if name.startswith("requests.") or is_qualified_name("requests." + name):
            return errs + [E.invalid(path, name, "doesn't follow extended resource name standard")]
    return errs


def resource_quantity(name: str, raw: Any, path: str) -> tuple[Quantity | None, Errors]:
    """``ValidateResourceQuantityValue`` on a value the schema check found to be a quantity."""
    try:
        q = parse_quantity(raw)
    except QuantityError as err:
        return None, [E.invalid(path, raw, str(err))]
    errs: Errors = []
    if q.value < 0:
        errs.append(E.invalid(path, str(q), NEGATIVE))
    integer = name in _INTEGER_RESOURCES or not _is_native(name)
    if integer and q.value != q.value.to_integral_value():
        errs.append(E.invalid(path, GoValue(str(q)), "must be an integer"))
    return q, errs


def validate_resource_requirements(res: dict, path: str) -> Errors:
    errs: Errors = []
    limits, requests = _m(res, "limits"), _m(res, "requests")
    parsed_limits: dict[str, Quantity] = {}
    for name, raw in limits.items():
        lp = f"{path}.limits[{name}]"
        errs += _container_resource_name(name, lp)
        q, q_errs = resource_quantity(name, raw, lp)
        errs += q_errs
        if q is not None:
            parsed_limits[name] = q
    for name, raw in requests.items():
        rp = f"{path}.requests[{name}]"
        errs += _container_resource_name(name, rp)
        q, q_errs = resource_quantity(name, raw, rp)
        errs += q_errs
        limit = parsed_limits.get(name)
        if q is not None and limit is not None:
            if q.value != limit.value and not _overcommit_allowed(name):
                errs.append(E.invalid(f"{path}.requests", str(q),
                                      f"must be equal to {name} limit of {limit}"))
            elif q.value > limit.value:
                errs.append(E.invalid(f"{path}.requests", str(q),
                                      f"must be less than or equal to {name} limit of {limit}"))
        elif name not in limits and not _overcommit_allowed(name):
            errs.append(E.required(f"{path}.limits", "Limit must be set for non overcommitable "
                                                     "resources"))
    names = set(limits) | set(requests)
    if names & {n for n in names if _is_hugepages(n)} and not names & {"cpu", "memory"}:
        errs.append(E.forbidden(path, "HugePages require cpu or memory"))
    return errs


# --- security contexts -----------------------------------------------------------------------


def _id_range(value: Any, path: str) -> Errors:
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= _MAX_UID:
        return [E.invalid(path, value, inclusive_range_error(0, _MAX_UID))]
    return []


def _seccomp_profile(profile: Any, path: str) -> Errors:
    if not isinstance(profile, dict):
        return []
    kind = _s(profile, "type")
    errs: Errors = []
    if not kind:
        errs.append(E.required(f"{path}.type", "type is required when seccompProfile is set"))
    elif kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
        errs.append(E.not_supported(f"{path}.type", kind,
                                    ["Localhost", "RuntimeDefault", "Unconfined"]))
    local = profile.get("localhostProfile")
    if kind == "Localhost":
        if local is None:
            errs.append(E.required(f"{path}.localhostProfile",
                                   "must be set when seccomp type is Localhost"))
        else:
            errs += _local_descending_path(str(local), f"{path}.localhostProfile")
    elif local is not None:
        errs.append(E.invalid(f"{path}.localhostProfile", profile, "can only be set when seccomp "
                                                                   "type is Localhost"))
    return errs


def _apparmor_profile(profile: Any, path: str) -> Errors:
    if not isinstance(profile, dict):
        return []
    kind, local = _s(profile, "type"), profile.get("localhostProfile")
    if kind == "Localhost":
        if not isinstance(local, str) or not local.strip():
            return [E.required(f"{path}.localhostProfile",
                               "must be set when AppArmor type is Localhost")]
        if local != local.strip():
            return [E.invalid(f"{path}.localhostProfile", local,
                              "must not be padded with whitespace")]
        return []
    if kind in ("RuntimeDefault", "Unconfined"):
        if local is not None:
            return [E.invalid(f"{path}.localhostProfile", local, "can only be set when AppArmor "
                                                                 "type is Localhost")]
        return []
    if not kind:
        return [E.required(f"{path}.type", "type is required when appArmorProfile is set")]
    return [E.not_supported(f"{path}.type", kind, ["Localhost", "RuntimeDefault", "Unconfined"])]


def _container_security_context(sc: Any, path: str, host_users: bool) -> Errors:
    if not isinstance(sc, dict):
        return []
    errs = _id_range(sc.get("runAsUser"), f"{path}.runAsUser")
    errs += _id_range(sc.get("runAsGroup"), f"{path}.runAsGroup")
    proc_mount = sc.get("procMount")
    if proc_mount is not None:
        if proc_mount not in ("Default", "Unmasked"):
            errs.append(E.not_supported(f"{path}.procMount", proc_mount, ["Default", "Unmasked"]))
        if host_users and proc_mount == "Unmasked":
            errs.append(E.invalid(f"{path}.procMount", proc_mount, "`hostUsers` must be false to "
                                                                   "use `Unmasked`"))
    errs += _seccomp_profile(sc.get("seccompProfile"), f"{path}.seccompProfile")
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            errs.append(E.invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                            "`privileged` to true"))
        if "CAP_SYS_ADMIN" in _l(_m(sc, "capabilities"), "add"):
            errs.append(E.invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                            "`capabilities.Add` CAP_SYS_ADMIN"))
    return errs + _apparmor_profile(sc.get("appArmorProfile"), f"{path}.appArmorProfile")


_SYSCTL = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")


def _pod_security_context(spec: dict, path: str) -> Errors:
    sc = spec.get("securityContext")
    if not isinstance(sc, dict):
        return []
    errs = _id_range(sc.get("fsGroup"), f"{path}.fsGroup")
    errs += _id_range(sc.get("runAsUser"), f"{path}.runAsUser")
    errs += _id_range(sc.get("runAsGroup"), f"{path}.runAsGroup")
    for i, gid in enumerate(_l(sc, "supplementalGroups")):
        errs += _id_range(gid, f"{path}.supplementalGroups[{i}]")
    if sc.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        errs.append(E.invalid(f"{path}.shareProcessNamespace", True,
                              "ShareProcessNamespace and HostPID cannot both be enabled"))
    seen: set[str] = set()
    for i, sysctl in _dicts(sc, "sysctls"):
        name = _s(sysctl, "name")
        np = f"{path}.sysctls[{i}].name"
        if not name:
            errs.append(E.required(np))
        elif len(name) > 253 or not _SYSCTL.fullmatch(name):
            errs.append(E.invalid(np, name, f"must have at most 253 characters and match regex "
                                            f"^{_SYSCTL.pattern}$"))
        elif name in seen:
            errs.append(E.duplicate(np, name))
        seen.add(name)
    for field, allowed in (("fsGroupChangePolicy", ["Always", "OnRootMismatch"]),
                           ("supplementalGroupsPolicy", ["Merge", "Strict"]),
                           ("seLinuxChangePolicy", ["MountOption", "Recursive"])):
        value = sc.get(field)
        if value is not None and value not in allowed:
            errs.append(E.not_supported(f"{path}.{field}", value, allowed))
    errs += _seccomp_profile(sc.get("seccompProfile"), f"{path}.seccompProfile")
    return errs + _apparmor_profile(sc.get("appArmorProfile"), f"{path}.appArmorProfile")


# --- containers ------------------------------------------------------------------------------


def _volume_mounts(container: dict, volumes: dict[str, dict], path: str) -> Errors:
    errs: Errors = []
    mount_points: set[str] = set()
    devices = {_s(d, "name"): _s(d, "devicePath") for _, d in _dicts(container, "volumeDevices")}
    privileged = _m(container, "securityContext").get("privileged") is True
    for i, mount in _dicts(container, "volumeMounts"):
        mp = f"{path}[{i}]"
        name, mount_path = _s(mount, "name"), _s(mount, "mountPath")
        if not name:
            errs.append(E.required(f"{mp}.name"))
        if name not in volumes:
            errs.append(E.not_found(f"{mp}.name", name))
        if not mount_path:
            errs.append(E.required(f"{mp}.mountPath"))
        if mount_path in mount_points:
            errs.append(E.invalid(f"{mp}.mountPath", mount_path, "must be unique"))
        mount_points.add(mount_path)
        if name in devices:
            errs.append(E.invalid(f"{mp}.name", name, "must not already exist in volumeDevices"))
        if mount_path and mount_path in devices.values():
            errs.append(E.invalid(f"{mp}.mountPath", mount_path, "must not already exist as a "
                                                                 "path in volumeDevices"))
        sub_path, sub_expr = _s(mount, "subPath"), _s(mount, "subPathExpr")
        if sub_path:
            errs += _local_descending_path(sub_path, f"{path}.subPath")
        if sub_expr:
            if sub_path:
                errs.append(E.invalid(f"{mp}.subPathExpr", sub_expr,
                                      "subPathExpr and subPath are mutually exclusive"))
            errs += _local_descending_path(sub_expr, f"{path}.subPathExpr")
        errs += _mount_propagation(mount.get("mountPropagation"), privileged,
                                   f"{path}.mountPropagation")
        errs += _recursive_read_only(mount, f"{path}.recursiveReadOnly")
    return errs


def _mount_propagation(mode: Any, privileged: bool, path: str) -> Errors:
    if mode is None:
        return []
    errs = [] if mode in _MOUNT_PROPAGATIONS else [E.not_supported(path, mode, _MOUNT_PROPAGATIONS)]
    if mode == "Bidirectional" and not privileged:
        errs.append(E.forbidden(path, "Bidirectional mount propagation is available only to "
                                      "privileged containers"))
    return errs


def _recursive_read_only(mount: dict, path: str) -> Errors:
    mode = mount.get("recursiveReadOnly")
    if mode is None or mode == "Disabled":
        return []
    if mode not in ("Enabled", "IfPossible"):
        return [E.not_supported(path, mode, ["Disabled", "Enabled", "IfPossible"])]
    errs: Errors = []
    if mount.get("readOnly") is not True:
        errs.append(E.forbidden(path, "may only be specified when readOnly is true"))
    if mount.get("mountPropagation") not in (None, "None"):
        errs.append(E.forbidden(path, "may only be specified when mountPropagation is None or not "
                                      "specified"))
    return errs


def _container_common(c: dict, volumes: dict[str, dict], path: str, host_users: bool) -> Errors:
    errs: Errors = []
    name = _s(c, "name")
    if not name:
        errs.append(E.required(f"{path}.name"))
    else:
        errs += _invalid_each(f"{path}.name", name, is_dns1123_label(name))
    if not _s(c, "image"):
        errs.append(E.required(f"{path}.image"))
    policy = _s(c, "terminationMessagePolicy")
    if not policy:
        errs.append(E.required(f"{path}.terminationMessagePolicy"))
    elif policy not in _TERMINATION_MESSAGE_POLICIES:
        errs.append(E.not_supported(f"{path}.terminationMessagePolicy", policy,
                                    _TERMINATION_MESSAGE_POLICIES))
    errs += validate_container_ports(_l(c, "ports"), f"{path}.ports")
    errs += validate_env(_l(c, "env"), f"{path}.env")
    errs += validate_env_from(_l(c, "envFrom"), f"{path}.envFrom")
    errs += _volume_mounts(c, volumes, f"{path}.volumeMounts")
    pull = _s(c, "imagePullPolicy")
    if not pull:
        errs.append(E.required(f"{path}.imagePullPolicy"))
    elif pull not in _PULL_POLICIES:
        errs.append(E.not_supported(f"{path}.imagePullPolicy", pull, _PULL_POLICIES))
    errs += validate_resource_requirements(_m(c, "resources"), f"{path}.resources")
    errs += _resize_policy(c, f"{path}.resizePolicy")
    return errs + _container_security_context(c.get("securityContext"), f"{path}.securityContext",
                                              host_users)


_CONTAINER_RESTART_POLICIES = ["Always", "Never", "OnFailure"]
_RESTART_RULE_ACTIONS = ["Restart", "RestartAllContainers"]
_EXIT_CODE_OPERATORS = ["In", "NotIn"]


def _container_restart(c: dict, path: str) -> Errors:
    """A container's own ``restartPolicy`` and ``restartPolicyRules`` (ContainerRestartRules,
    on by default since 1.35). Rules need the container's policy; each rule restarts on
    the exit codes it lists."""
    policy, rules = c.get("restartPolicy"), _l(c, "restartPolicyRules")
    errs: Errors = []
    if policy is None:
        if rules:
            errs.append(E.required(f"{path}.restartPolicy",
                                   "must specify restartPolicy when restart rules are used"))
    elif policy not in _CONTAINER_RESTART_POLICIES:
        errs.append(E.not_supported(f"{path}.restartPolicy", policy, _CONTAINER_RESTART_POLICIES))
    rules_path = f"{path}.restartPolicyRules"
    if len(rules) > 20:
        errs.append(E.too_many(rules_path, len(rules), 20))
    for i, rule in _dicts(c, "restartPolicyRules"):
        rp = f"{rules_path}[{i}]"
        errs += _one_of(rule.get("action"), f"{rp}.action", _RESTART_RULE_ACTIONS)
        exit_codes = rule.get("exitCodes")
        if not isinstance(exit_codes, dict):
            errs.append(E.required(f"{rp}.exitCodes", "must be specified"))
            continue
        errs += _one_of(exit_codes.get("operator"), f"{rp}.exitCodes.operator",
                        _EXIT_CODE_OPERATORS)
        values = _l(exit_codes, "values")
        if len(values) > 255:
            errs.append(E.too_many(f"{rp}.exitCodes.values", len(values), 255))
    return errs


def _one_of(value: Any, path: str, supported: list[str]) -> Errors:
    """Upstream's enum switch: empty is Required, anything else unknown NotSupported."""
    if not value:
        return [E.required(path)]
    return [] if value in supported else [E.not_supported(path, value, supported)]


_RESIZE_RESOURCES = ["cpu", "memory"]
_RESIZE_POLICIES = ["NotRequired", "RestartContainer"]


def _resize_policy(c: dict, path: str) -> Errors:
    """``validateResizePolicy``: one entry per resource, errors reported at the list itself."""
    errs: Errors = []
    seen: set[str] = set()
    for i, entry in _dicts(c, "resizePolicy"):
        resource, policy = _s(entry, "resourceName"), _s(entry, "restartPolicy")
        if resource in seen:
            errs.append(E.duplicate(f"{path}[{i}]", resource))
        seen.add(resource)
        for value, supported in ((resource, _RESIZE_RESOURCES), (policy, _RESIZE_POLICIES)):
            if not value:
                errs.append(E.required(path))
            elif value not in supported:
                errs.append(E.not_supported(path, value, supported))
    return errs


def _containers(spec: dict, volumes: dict[str, dict], path: str, host_users: bool) -> Errors:
    containers = _l(spec, "containers")
    if not containers:
        return [E.required(path)]
    errs: Errors = []
    grace = spec.get("terminationGracePeriodSeconds")
    names: set[str] = set()
    for i, c in _dicts(spec, "containers"):
        cp = f"{path}[{i}]"
        errs += _container_common(c, volumes, cp, host_users)
        if _s(c, "name") in names:
            errs.append(E.duplicate(f"{cp}.name", _s(c, "name")))
        names.add(_s(c, "name"))
        if isinstance(c.get("lifecycle"), dict):
            errs += _lifecycle(c["lifecycle"], grace, f"{cp}.lifecycle")
        errs += _probe(c.get("livenessProbe"), grace, f"{cp}.livenessProbe", "liveness")
        errs += _probe(c.get("readinessProbe"), grace, f"{cp}.readinessProbe", "readiness")
        errs += _probe(c.get("startupProbe"), grace, f"{cp}.startupProbe", "startup")
        errs += _container_restart(c, cp)
    return errs + _host_port_conflicts(containers, path)


def _init_containers(spec: dict, volumes: dict[str, dict], path: str, host_users: bool) -> Errors:
    errs: Errors = []
    grace = spec.get("terminationGracePeriodSeconds")
    names = {_s(c, "name") for _, c in _dicts(spec, "containers")}
    for i, c in _dicts(spec, "initContainers"):
        cp = f"{path}[{i}]"
        errs += _container_common(c, volumes, cp, host_users)
        restart = c.get("restartPolicy")
        errs += _container_restart(c, cp)
        name = _s(c, "name")
        if name in names:
            errs.append(E.duplicate(f"{cp}.name", name))
        elif name:
            names.add(name)
        errs += _host_port_conflicts([c], path)
        if restart == "Always":
            if isinstance(c.get("lifecycle"), dict):
                errs += _lifecycle(c["lifecycle"], grace, f"{cp}.lifecycle")
            errs += _probe(c.get("livenessProbe"), grace, f"{cp}.livenessProbe", "liveness")
            errs += _probe(c.get("readinessProbe"), grace, f"{cp}.readinessProbe", "readiness")
            errs += _probe(c.get("startupProbe"), grace, f"{cp}.startupProbe", "startup")
        else:
            for field in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(field) is not None:
                    errs.append(E.forbidden(f"{cp}.{field}", "may not be set for init containers "
                                                             "without restartPolicy=Always"))
    return errs


def _host_port_conflicts(containers: list, path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        if not isinstance(c, dict):
            continue
        for pi, port in _dicts(c, "ports"):
            host_port = _i(port, "hostPort")
            if not host_port:
                continue
            key = f"{_s(port, 'protocol')}/{_s(port, 'hostIP')}/{host_port}"
            if key in seen:
                errs.append(E.duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


# --- scheduling ------------------------------------------------------------------------------


def _node_selector_requirement(req: dict, path: str, allow_invalid_values: bool) -> Errors:
    errs: Errors = []
    op, values = _s(req, "operator"), _l(req, "values")
    if op in ("In", "NotIn"):
        if not values:
            errs.append(E.required(f"{path}.values", "must be specified when `operator` is 'In' or "
                                                     "'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(E.forbidden(f"{path}.values", "may not be specified when `operator` is "
                                                      "'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(E.required(f"{path}.values", "must be specified single value when "
                                                     "`operator` is 'Lt' or 'Gt'"))
    else:
        errs.append(E.invalid(f"{path}.operator", op, "not a valid selector operator"))
    errs += _invalid_each(f"{path}.key", _s(req, "key"), is_qualified_name(_s(req, "key")))
    if not allow_invalid_values:
        for j, value in enumerate(values):
            if isinstance(value, str):
                errs += _invalid_each(f"{path}.values[{j}]", value, is_label_value(value))
    return errs


def _node_field_requirement(req: dict, path: str) -> Errors:
    errs: Errors = []
    if _s(req, "operator") in ("In", "NotIn"):
        if len(_l(req, "values")) != 1:
            errs.append(E.required(f"{path}.values", "must be only one value when `operator` is "
                                                     "'In' or 'NotIn' for node field selector"))
    else:
        errs.append(E.invalid(f"{path}.operator", _s(req, "operator"),
                              "not a valid selector operator"))
    if _s(req, "key") != "metadata.name":
        errs.append(E.invalid(f"{path}.key", _s(req, "key"), "not a valid field selector key"))
    else:
        for j, value in enumerate(_l(req, "values")):
            if isinstance(value, str):
                errs += _invalid_each(f"{path}.values[{j}]", value, name_is_dns_subdomain(value))
    return errs


def node_selector_term(term: dict, path: str, allow_invalid_values: bool) -> Errors:
    errs: Errors = []
    for j, req in _dicts(term, "matchExpressions"):
        errs += _node_selector_requirement(req, f"{path}.matchExpressions[{j}]",
                                           allow_invalid_values)
    for j, req in _dicts(term, "matchFields"):
        errs += _node_field_requirement(req, f"{path}.matchFields[{j}]")
    return errs


def node_selector(selector: dict, path: str, allow_invalid_values: bool = False) -> Errors:
    terms = _l(selector, "nodeSelectorTerms")
    if not terms:
        return [E.required(f"{path}.nodeSelectorTerms",
                           "must have at least one node selector term")]
    errs: Errors = []
    for i, term in _dicts(selector, "nodeSelectorTerms"):
        errs += node_selector_term(term, f"{path}.nodeSelectorTerms[{i}]", allow_invalid_values)
    return errs


def _weight(term: dict, path: str) -> Errors:
    weight = _i(term, "weight")
    return [] if 1 <= weight <= 100 else [E.invalid(f"{path}.weight", weight,
                                                    "must be in the range 1-100")]


def _pod_affinity_term(term: dict, path: str) -> Errors:
    errs = validate_label_selector(term.get("labelSelector"), f"{path}.labelSelector")
    errs += validate_label_selector(term.get("namespaceSelector"), f"{path}.namespaceSelector")
    for name in _l(term, "namespaces"):
        if isinstance(name, str):
            # upstream reports these at ".namespace", not ".namespaces[i]"
            errs += _invalid_each(f"{path}.namespace", name, name_is_dns_label(name))
    for key_field in ("matchLabelKeys", "mismatchLabelKeys"):
        keys = _l(term, key_field)
        if keys and term.get("labelSelector") is None:
            errs.append(E.forbidden(f"{path}.{key_field}",
                                    "must not be specified when labelSelector "
                                    "is not set"))
        for i, key in enumerate(keys):
            if isinstance(key, str):
                errs += _invalid_each(f"{path}.{key_field}[{i}]", key, is_qualified_name(key))
    topology_key = _s(term, "topologyKey")
    if not topology_key:
        errs.append(E.required(f"{path}.topologyKey", "can not be empty"))
    return errs + _invalid_each(f"{path}.topologyKey", topology_key,
                                is_qualified_name(topology_key))


def _affinity(affinity: Any, path: str) -> Errors:
    if not isinstance(affinity, dict):
        return []
    errs: Errors = []
    node = affinity.get("nodeAffinity")
    if isinstance(node, dict):
        np = f"{path}.nodeAffinity"
        required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(required, dict):
            errs += node_selector(required, f"{np}.requiredDuringSchedulingIgnoredDuringExecution")
        for i, term in _dicts(node, "preferredDuringSchedulingIgnoredDuringExecution"):
            tp = f"{np}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            errs += _weight(term, tp)
            errs += node_selector_term(_m(term, "preference"), f"{tp}.preference", True)
    for kind in ("podAffinity", "podAntiAffinity"):
        pod = affinity.get(kind)
        if not isinstance(pod, dict):
            continue
        pp = f"{path}.{kind}"
        for i, term in _dicts(pod, "requiredDuringSchedulingIgnoredDuringExecution"):
            errs += _pod_affinity_term(term,
                                       f"{pp}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
        for i, term in _dicts(pod, "preferredDuringSchedulingIgnoredDuringExecution"):
            tp = f"{pp}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            errs += _weight(term, tp)
            errs += _pod_affinity_term(_m(term, "podAffinityTerm"), f"{tp}.podAffinityTerm")
    return errs


def validate_tolerations(tolerations: list, path: str) -> Errors:
    errs: Errors = []
    for i, t in _dicts({"t": tolerations}, "t"):
        tp = f"{path}[{i}]"
        key, op, value, effect = _s(t, "key"), _s(t, "operator"), _s(t, "value"), _s(t, "effect")
        if key:
            errs += _invalid_each(f"{tp}.key", key, is_qualified_name(key))
        if not key and op != "Exists":
            errs.append(E.invalid(f"{tp}.operator", op,
                                  "operator must be Exists when `key` is empty, "
                                  'which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(E.invalid(f"{tp}.effect", effect, "effect must be 'NoExecute' when "
                                                          "`tolerationSeconds` is set"))
        if op in ("Equal", ""):
            msgs = is_label_value(value)
            if msgs:
                errs.append(E.invalid(f"{tp}.operator", value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(E.invalid(f"{tp}.operator", value,
                                      "value must be empty when `operator` "
                                      "is 'Exists'"))
        else:
            errs.append(E.not_supported(f"{tp}.operator", op, ["Equal", "Exists"]))
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(E.not_supported(f"{tp}.effect", effect, _TAINT_EFFECTS))
    return errs


def _topology_spread(spec: dict, path: str) -> Errors:
    errs: Errors = []
    constraints = [c for _, c in _dicts(spec, "topologySpreadConstraints")]
    for i, c in enumerate(constraints):
        cp = f"{path}[{i}]"
        skew = _i(c, "maxSkew")
        if skew <= 0:
            errs.append(E.invalid(f"{cp}.maxSkew", skew, "must be greater than zero"))
        if not _s(c, "topologyKey"):
            errs.append(E.required(f"{cp}.topologyKey", "can not be empty"))
        action = _s(c, "whenUnsatisfiable")
        if action not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.append(E.not_supported(f"{cp}.whenUnsatisfiable", action,
                                        ["DoNotSchedule", "ScheduleAnyway"]))
        for other in constraints[i + 1:]:
            if (_s(other, "topologyKey"), _s(other, "whenUnsatisfiable")) == (_s(c, "topologyKey"),
                                                                              action):
                errs.append(E.duplicate(f"{cp}.{{topologyKey, whenUnsatisfiable}}",
                                        f"{{{_s(c, 'topologyKey')}, {action}}}"))
                break
        min_domains = c.get("minDomains")
        if min_domains is not None:
            if _i(c, "minDomains") <= 0:
                errs.append(E.invalid(f"{cp}.minDomains", min_domains, "must be greater than zero"))
            if action != "DoNotSchedule":
                errs.append(E.invalid(f"{cp}.minDomains", min_domains, "can only use minDomains if "
                                      f"whenUnsatisfiable=DoNotSchedule, not {action}"))
        for field in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            policy = c.get(field)
            if policy is not None and policy not in ("Honor", "Ignore"):
                errs.append(E.not_supported(f"{cp}.{field}", policy, ["Honor", "Ignore"]))
        errs += validate_label_selector(c.get("labelSelector"), f"{cp}.labelSelector")
    return errs


def _dns_config(spec: dict, path: str) -> Errors:
    config = spec.get("dnsConfig")
    if _s(spec, "dnsPolicy") == "None":
        if not isinstance(config, dict):
            return [E.required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not _l(config, "nameservers"):
            return [E.required(f"{path}.nameservers", "must provide at least one DNS nameserver "
                                                      "when `dnsPolicy` is None")]
    if not isinstance(config, dict):
        return []
    errs: Errors = []
    nameservers = _l(config, "nameservers")
    if len(nameservers) > 3:
        errs.append(E.invalid(f"{path}.nameservers", go_string_slice(nameservers),
                              "must not have more than 3 nameservers"))
    for i, ns in enumerate(nameservers):
        errs += _invalid_each(f"{path}.nameservers[{i}]", ns, is_valid_ip(str(ns)))
    searches = _l(config, "searches")
    if len(searches) > 32:
        errs.append(E.invalid(f"{path}.searches", go_string_slice(searches),
                              "must not have more than 32 search paths"))
    if len(" ".join(map(str, searches))) > 2048:
        errs.append(E.invalid(f"{path}.searches", go_string_slice(searches), "must not have more "
                              "than 2048 characters (including spaces) in the search list"))
    for i, search in enumerate(searches):
        if isinstance(search, str) and search != ".":
            trimmed = search.removesuffix(".")
            errs += _invalid_each(f"{path}.searches[{i}]", trimmed,
                                  is_dns1123_subdomain(trimmed.replace("_", "a")))
    for i, option in _dicts(config, "options"):
        if not _s(option, "name"):
            errs.append(E.required(f"{path}.options[{i}]", "must not be empty"))
    return errs


# --- the pod spec ----------------------------------------------------------------------------


def validate_pod_spec(spec: dict, path: str, opts: PodOptions = PodOptions()) -> Errors:
    """``ValidatePodSpec``: the spec of a Pod or of a pod template."""
    errs: Errors = []
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(E.required(f"{path}.terminationGracePeriodSeconds"))
    host_users = _m(spec, "securityContext").get("hostUsers") is not False
    volumes, volume_errs = validate_volumes(_l(spec, "volumes"), f"{path}.volumes", opts)
    errs += volume_errs
    errs += _containers(spec, volumes, f"{path}.containers", host_users)
    errs += _init_containers(spec, volumes, f"{path}.initContainers", host_users)
    errs += _ephemeral_container_names(spec, f"{path}.ephemeralContainers")
    errs += _host_network_ports(spec, path, opts)
    restart = _s(spec, "restartPolicy")
    if not restart:
        errs.append(E.required(f"{path}.restartPolicy"))
    elif restart not in _RESTART_POLICIES:
        errs.append(E.not_supported(f"{path}.restartPolicy", restart, _RESTART_POLICIES))
    dns = _s(spec, "dnsPolicy")
    if not dns:
        errs.append(E.required(f"{path}.dnsPolicy"))
    elif dns not in _DNS_POLICIES:
        errs.append(E.not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += _pod_security_context(spec, f"{path}.securityContext")
    for i, secret in _dicts(spec, "imagePullSecrets"):
        if {k for k, v in secret.items() if v is not None} - {"name"}:
            errs.append(E.invalid(f"{path}.imagePullSecrets[{i}]", secret, "only name may be set"))
    errs += _affinity(spec.get("affinity"), f"{path}.affinity")
    errs += _dns_config(spec, f"{path}.dnsConfig")
    for i, gate in _dicts(spec, "readinessGates"):
        condition = _s(gate, "conditionType")
        errs += _invalid_each(f"{path}.readinessGates[{i}].conditionType", condition,
                              is_qualified_name(condition))
    errs += _scheduling_gates(spec, f"{path}.schedulingGates")
    errs += _topology_spread(spec, f"{path}.topologySpreadConstraints")
    errs += _pod_spec_names(spec, path)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= _MAX_INT32:
        errs.append(E.invalid(f"{path}.activeDeadlineSeconds", deadline,
                              inclusive_range_error(1, _MAX_INT32)))
    errs += validate_tolerations(_l(spec, "tolerations"), f"{path}.tolerations")
    for i, alias in _dicts(spec, "hostAliases"):
        ap = f"{path}.hostAliases[{i}]"
        errs += _invalid_each(f"{ap}.ip", _s(alias, "ip"), is_valid_ip(_s(alias, "ip")))
        for j, hostname in enumerate(_l(alias, "hostnames")):
            errs += _invalid_each(f"{ap}.hostnames[{j}]", hostname,
                                  is_dns1123_subdomain(str(hostname)))
    preemption = spec.get("preemptionPolicy")
    if preemption is not None:
        errs += _preemption_policy(preemption, f"{path}.preemptionPolicy")
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        errs += validate_resource_requirements({"limits": overhead}, f"{path}.overhead")
    if isinstance(spec.get("resources"), dict):
        errs += _pod_resources(spec, path)
    return errs + _pod_os(spec, path)


_POD_LEVEL_RESOURCES = ["cpu", "memory"]


def _pod_resources(spec: dict, path: str) -> Errors:
    """Pod-level ``spec.resources`` (PodLevelResources): cpu, memory and hugepages only, no
    claims, requests within limits, and consistent with what the containers ask for."""
    res, rp = spec["resources"], f"{path}.resources"
    errs: Errors = []
    if _l(res, "claims"):
        errs.append(E.forbidden(f"{rp}.claims", "claims cannot be set for Resources at pod-level"))
    parsed: dict[str, dict[str, Quantity]] = {"limits": {}, "requests": {}}
    for side in ("limits", "requests"):
        for name, raw in _m(res, side).items():
            kp = f"{rp}.{side}[{name}]"
            if not is_pod_level_resource(name):
                errs.append(E.not_supported(kp, name, _POD_LEVEL_RESOURCES))
                continue
            q, q_errs = resource_quantity(name, raw, kp)
            errs += q_errs
            if q is not None:
                parsed[side][name] = q
    limits, requests = parsed["limits"], parsed["requests"]
    for name, q in requests.items():
        limit = limits.get(name)
        if limit is not None and q.value > limit.value:
            errs.append(E.invalid(f"{rp}.requests[{name}]", str(q),
                                  f"must be less than or equal to {name} limit of {limit}"))
    for name, total in aggregate_container_requests(spec).items():
        pod_request = requests.get(name)
        if pod_request is not None and pod_request.value and total.value > pod_request.value:
            errs.append(E.invalid(f"{rp}.requests[{name}]", str(pod_request),
                                  f"must be greater than or equal to aggregate container requests "
                                  f"of {total}"))
    for i, c in _dicts(spec, "containers"):
        for name, raw in _m(_m(c, "resources"), "limits").items():
            limit = limits.get(name)
            q = _quantity_or_none(raw)
            if limit is not None and q is not None and q.value > limit.value:
                errs.append(E.invalid(f"{path}.containers[{i}].resources.limits[{name}]", str(q),
                                      f"must be less than or equal to pod limits of {limit}"))
    return errs


def is_pod_level_resource(name: str) -> bool:
    return name in _POD_LEVEL_RESOURCES or _is_hugepages(name)


def _quantity_or_none(raw: Any) -> Quantity | None:
    try:
        return parse_quantity(raw)
    except QuantityError:
        return None


def aggregate_container_requests(spec: dict) -> dict[str, Quantity]:
    """What the containers request together (component-helpers' ``PodRequests``): regular
    containers and sidecars add up; each init container needs its own request plus the sidecars
    started before it, and the pod needs the largest of those."""
    def requests_of(c: dict) -> dict[str, Decimal]:
        out = {}
        for name, raw in _m(_m(c, "resources"), "requests").items():
            q = _quantity_or_none(raw)
            if q is not None:
                out[name] = q.value
        return out

    def add(into: dict[str, Decimal], more: dict[str, Decimal]) -> None:
        for name, value in more.items():
            into[name] = into.get(name, Decimal(0)) + value

    total: dict[str, Decimal] = {}
    for _, c in _dicts(spec, "containers"):
        add(total, requests_of(c))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for _, c in _dicts(spec, "initContainers"):
        own = requests_of(c)
        if c.get("restartPolicy") == "Always":
            add(total, own)
            add(sidecars, own)
            need = dict(sidecars)
        else:
            need = dict(own)
            add(need, sidecars)
        for name, value in need.items():
            init_peak[name] = max(init_peak.get(name, Decimal(0)), value)
    for name, value in init_peak.items():
        total[name] = max(total.get(name, Decimal(0)), value)
    formats = {name: "BinarySI" if name == "memory" or _is_hugepages(name) else "DecimalSI"
               for name in total}
    return {name: Quantity(value, formats[name]) for name, value in total.items()}


def _ephemeral_container_names(spec: dict, path: str) -> Errors:
    errs: Errors = []
    names = {_s(c, "name")
             for key in ("containers", "initContainers") for _, c in _dicts(spec, key)}
    for i, c in _dicts(spec, "ephemeralContainers"):
        name = _s(c, "name")
        if not name:
            errs.append(E.required(f"{path}[{i}].name"))
        elif name in names:
            errs.append(E.duplicate(f"{path}[{i}].name", name))
        names.add(name)
        target = _s(c, "targetContainerName")
        if target and target not in names:
            errs.append(E.not_found(f"{path}[{i}].targetContainerName", target))
    return errs


def _host_network_ports(spec: dict, path: str, opts: PodOptions) -> Errors:
    if spec.get("hostNetwork") is not True:
        return []
    errs: Errors = []
    for i, c in _dicts(spec, "containers"):
        for j, port in _dicts(c, "ports"):
            host, container = _i(port, "hostPort"), _i(port, "containerPort")
            if (opts.resource_is_pod or host != 0) and host != container:
                errs.append(E.invalid(f"{path}.containers[{i}].ports[{j}].hostPort", host,
                                      "must match `containerPort` when `hostNetwork` is true"))
    return errs


def _scheduling_gates(spec: dict, path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, gate in _dicts(spec, "schedulingGates"):
        name = _s(gate, "name")
        errs += _invalid_each(f"{path}[{i}]", name, is_qualified_name(name))
        if name in seen:
            errs.append(E.duplicate(f"{path}[{i}]", name))
        seen.add(name)
    return errs


def _pod_spec_names(spec: dict, path: str) -> Errors:
    errs: Errors = []
    for field, check in (("serviceAccountName", name_is_dns_subdomain),
                         ("nodeName", name_is_dns_subdomain), ("hostname", is_dns1123_label),
                         ("subdomain", is_dns1123_label),
                         ("priorityClassName", name_is_dns_subdomain)):
        value = _s(spec, field)
        if value:
            errs += _invalid_each(f"{path}.{field}", value, check(value))
    runtime_class = spec.get("runtimeClassName")
    if isinstance(runtime_class, str):
        errs += _invalid_each(f"{path}.runtimeClassName", runtime_class,
                              name_is_dns_subdomain(runtime_class))
    return errs


def _preemption_policy(policy: Any, path: str) -> Errors:
    if policy == "":
        return [E.required(path)]
    if policy not in ("PreemptLowerPriority", "Never"):
        return [E.not_supported(path, policy, ["PreemptLowerPriority", "Never"])]
    return []


def _pod_os(spec: dict, spec_path: str) -> Errors:
    os_ = spec.get("os")
    if not isinstance(os_, dict):
        return []
    path = f"{spec_path}.os"
    name = _s(os_, "name")
    if not name:
        return [E.required(f"{path}.name", "cannot be empty")]
    if name not in ("linux", "windows"):
        return [E.not_supported(path, name, ["linux", "windows"])]
    if name == "linux" and _m(spec, "securityContext").get("windowsOptions") is not None:
        return [E.forbidden(f"{spec_path}.securityContext.windowsOptions",
                            "windows options cannot be set for a linux pod")]
    return []


def _pod_specific_annotations(meta: dict, spec: dict, path: str) -> Errors:
    annotations = _m(meta, "annotations")
    errs: Errors = []
    if MIRROR_POD_ANNOTATION in annotations and not _s(spec, "nodeName"):
        errs.append(E.invalid(f"{path}[{MIRROR_POD_ANNOTATION}]",
                              annotations[MIRROR_POD_ANNOTATION],
                              "must set spec.nodeName if mirror pod annotation is set"))
    cost = annotations.get(POD_DELETION_COST)
    if cost is not None and not _is_int32_text(cost):
        errs.append(E.invalid(f"{path}[{POD_DELETION_COST}]", cost, "must be a 32bit integer"))
    return errs


def _is_int32_text(text: Any) -> bool:
    return (isinstance(text, str) and re.fullmatch(r"[+-]?\d+", text) is not None
            and -(2 ** 31) <= int(text) <= _MAX_INT32)


def validate_pod_template_spec(template: dict, path: str) -> Errors:
    """``ValidatePodTemplateSpec``: note upstream reports the template's labels at
    ``<path>.labels``, not ``<path>.metadata.labels``."""
    meta = _m(template, "metadata")
    spec = _m(template, "spec")
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += _pod_specific_annotations(meta, spec, f"{path}.annotations")
    errs += validate_pod_spec(spec, f"{path}.spec")
    if _l(spec, "ephemeralContainers"):
        errs.append(E.forbidden(f"{path}.spec.ephemeralContainers",
                                "ephemeral containers not allowed in pod template"))
    return errs


def validate_pod(pod: dict, old: dict | None) -> Errors:
    meta, spec = _m(pod, "metadata"), _m(pod, "spec")
    errs = _pod_specific_annotations(meta, spec, "metadata.annotations")
    errs += validate_pod_spec(spec, "spec", PodOptions(True, _s(meta, "name")))
    if not _s(spec, "serviceAccountName"):
        for vi, volume in _dicts(spec, "volumes"):
            for si, source in _dicts(_m(volume, "projected"), "sources"):
                if source.get("serviceAccountToken") is not None:
                    errs.append(E.forbidden(f"spec.volumes[{vi}].projected.sources[{si}]."
                                            "serviceAccountToken", "must not be specified when "
                                                                   "serviceAccountName is not set"))
    for key in ("containers", "initContainers"):
        for i, c in _dicts(spec, key):
            image = _s(c, "image")
            if image != image.strip():
                errs.append(E.invalid(f"spec.{key}[{i}].image", image,
                                      "must not have leading or trailing whitespace"))
    if old is None:
        if _l(spec, "ephemeralContainers"):
            errs.append(E.forbidden("spec.ephemeralContainers", "cannot be set on create"))
        if _s(spec, "nodeName") and _l(spec, "schedulingGates"):
            errs.append(E.forbidden("spec.nodeName", "cannot be set until all schedulingGates have "
                                                     "been cleared"))
        return errs
    return errs + _pod_update(spec, _m(old, "spec"))


def _pod_update(spec: dict, old: dict) -> Errors:
    errs: Errors = []
    for key in ("containers", "initContainers"):
        new_list, old_list = _l(spec, key), _l(old, key)
        if len(new_list) != len(old_list):
            return errs + [E.forbidden(f"spec.{key}",
                                       "pod updates may not add or remove containers")]
        for i, c in _dicts(spec, key):
            if not _s(c, "image"):
                errs.append(E.required(f"spec.{key}[{i}].image"))
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    if deadline is not None:
        if not 0 <= deadline <= _MAX_INT32:
            return errs + [E.invalid("spec.activeDeadlineSeconds", deadline,
                                     inclusive_range_error(0, _MAX_INT32))]
        if old_deadline is not None and old_deadline < deadline:
            return errs + [E.invalid("spec.activeDeadlineSeconds", deadline,
                                     "must be less than or equal to previous value")]
    elif old_deadline is not None:
        errs.append(E.invalid("spec.activeDeadlineSeconds", None,
                              "must not update from a positive integer to nil value"))
    errs += _only_added_tolerations(_l(spec, "tolerations"), _l(old, "tolerations"))
    errs += _only_deleted_gates(spec, old)
    munged = _munge_pod_spec(spec, old)
    if _semantic(munged) != _semantic(old):
        diff = _spec_diff(old, munged, "")
        errs.append(E.forbidden("spec", "pod updates may not change fields other than "
                                        f"{_UPDATABLE_POD_FIELDS}\n{diff}"))
    return errs


def _munge_pod_spec(spec: dict, old: dict) -> dict:
    munged = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c, old_c in zip(_l(munged, key), _l(old, key)):
            if isinstance(c, dict) and isinstance(old_c, dict):
                c["image"] = old_c.get("image")
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged[key] = old.get(key)
    old_grace = old.get("terminationGracePeriodSeconds")
    if (isinstance(old_grace, int) and old_grace < 0
            and munged.get("terminationGracePeriodSeconds") == 1):
        munged["terminationGracePeriodSeconds"] = old_grace
    if _l(old, "schedulingGates"):
        new_selector, old_selector = _m(munged, "nodeSelector"), _m(old, "nodeSelector")
        if all(new_selector.get(k) == v for k, v in old_selector.items()):
            munged["nodeSelector"] = old.get("nodeSelector")
    return munged


def _spec_diff(old: Any, new: Any, path: str) -> str:
    """A readable stand-in for the go-cmp diff upstream appends: the fields that differ."""
    lines: list[str] = []

    def walk(a: Any, b: Any, p: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k), b.get(k), f"{p}.{k}" if p else k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{p}[{i}]")
        elif _semantic(a) != _semantic(b):
            lines.append(f"  - {p}: {_json_text(a)}")
            lines.append(f"  + {p}: {_json_text(b)}")

    walk(old, new, path)
    return "\n".join(lines)


def _only_added_tolerations(new: list, old: list) -> Errors:
    for toleration in old:
        if not isinstance(toleration, dict):
            continue
        if not any(isinstance(t, dict) and _semantic({**toleration, "tolerationSeconds": t.get(
                "tolerationSeconds")}) == _semantic(t) for t in new):
            return [E.forbidden("spec.tolerations",
                                "existing toleration can not be modified except "
                                "its tolerationSeconds")]
    return validate_tolerations(new, "spec.tolerations")


def _only_deleted_gates(spec: dict, old: dict) -> Errors:
    old_names = {_s(g, "name") for _, g in _dicts(old, "schedulingGates")}
    return [E.forbidden(f"spec.schedulingGates[{i}].name", "only deletion is allowed, but found "
                                                          f"new scheduling gate '{_s(g, 'name')}'")
            for i, g in _dicts(spec, "schedulingGates") if _s(g, "name") not in old_names]


# ============================================================================================
# 3b. Workloads (pkg/apis/apps/validation, pkg/apis/batch/validation, core RC/PodTemplate)
# ============================================================================================


def _int_or_percent(value: Any, path: str) -> Errors:
    if isinstance(value, str):
        return [E.invalid(path, go_int_or_string(value), m) for m in is_valid_percent(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return nonnegative(value, path)
    return []


def _percent_value(value: Any) -> int | None:
    if isinstance(value, str) and not is_valid_percent(value):
        return int(value[:-1])
    return None


def _int_or_percent_value(value: Any) -> int:
    percent = _percent_value(value)
    if percent is not None:
        return percent
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _not_more_than_100_percent(value: Any, path: str) -> Errors:
    percent = _percent_value(value)
    if percent is not None and percent > 100:
        return [E.invalid(path, go_int_or_string(value), "must not be greater than 100%")]
    return []


def _workload_selector(spec: dict, path: str, what: str) -> Errors:
    """The selector rules Deployment, ReplicaSet and StatefulSet share."""
    sel = spec.get("selector")
    if sel is None:
        return [E.required(f"{path}.selector")]
    if not isinstance(sel, dict):
        return []
    errs = validate_label_selector(sel, f"{path}.selector")
    if selector_is_empty(sel):
        errs.append(E.invalid(f"{path}.selector", go_label_selector(sel),
                              f"empty selector is invalid for {what}"))
    return errs


def _replica_set_template(spec: dict, path: str, owner: str) -> Errors:
    """``ValidatePodTemplateSpecForReplicaSet``."""
    sel = spec.get("selector")
    if isinstance(sel, dict) and not selector_parses(sel):
        return [E.invalid(f"{path}.selector", go_label_selector(sel), "invalid label selector")]
    template = _m(spec, "template")  # a struct upstream: absent is its zero value
    tp = f"{path}.template"
    errs = _template_matches_selector(sel, template, tp)
    errs += validate_pod_template_spec(template, tp)
    errs += _always_restart(template, tp, owner)
    return errs


def _always_restart(template: dict, path: str, owner: str) -> Errors:
    errs: Errors = []
    spec = _m(template, "spec")
    restart = _s(spec, "restartPolicy")
    if restart != "Always":
        errs.append(E.not_supported(f"{path}.spec.restartPolicy", restart, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(E.forbidden(f"{path}.spec.activeDeadlineSeconds",
                                f"activeDeadlineSeconds in {owner} is not Supported"))
    return errs


def _deployment_strategy(strategy: dict, path: str) -> Errors:
    kind, rolling = _s(strategy, "type"), strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [E.forbidden(f"{path}.rollingUpdate", "may not be specified when strategy "
                                                         "`type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        if not isinstance(rolling, dict):
            return [E.required(f"{path}.rollingUpdate",
                               "this should be defaulted and never be nil")]
        rp = f"{path}.rollingUpdate"
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = _int_or_percent(unavailable, f"{rp}.maxUnavailable")
        errs += _int_or_percent(surge, f"{rp}.maxSurge")
        if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
            errs.append(E.invalid(f"{rp}.maxUnavailable", go_int_or_string(unavailable or 0),
                                  "may not be 0 when `maxSurge` is 0"))
        return errs + _not_more_than_100_percent(unavailable, f"{rp}.maxUnavailable")
    shown = strategy if rolling is not None else GoValue(
        f'apps.DeploymentStrategy{{Type:{_go_quote(kind)}, '
        f'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}')
    return [E.not_supported(path, shown, ["Recreate", "RollingUpdate"])]


def validate_deployment(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _workload_selector(spec, "spec", "deployment")
    errs += _replica_set_template(spec, "spec", "ReplicaSet")
    errs += _deployment_strategy(_m(spec, "strategy"), "spec.strategy")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int):
        errs += nonnegative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= _i(spec, "minReadySeconds"):
            errs.append(E.invalid("spec.progressDeadlineSeconds", deadline,
                                  "must be greater than minReadySeconds"))
    if old is not None:
        errs += _selector_immutable(spec, _m(old, "spec"))
    return errs


def _selector_immutable(spec: dict, old_spec: dict) -> Errors:
    new, prior = spec.get("selector"), old_spec.get("selector")
    if _semantic(new) == _semantic(prior):
        return []
    return [E.invalid("spec.selector", go_label_selector(new if isinstance(new, dict) else None),
                      IMMUTABLE)]


def validate_replica_set(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = nonnegative(spec.get("replicas"), "spec.replicas")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _workload_selector(spec, "spec", "deployment")  # sic: upstream's ReplicaSet text
    errs += _replica_set_template(spec, "spec", "ReplicaSet")
    if old is not None:
        errs += _selector_immutable(spec, _m(old, "spec"))
    return errs


def validate_daemon_set(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    sel = spec.get("selector")
    template = _m(spec, "template")
    errs = validate_label_selector(sel, "spec.selector")
    if sel is None or (isinstance(sel, dict) and selector_parses(sel)):
        if not selector_matches(sel, _m(_m(template, "metadata"), "labels")):
            raw = _m(template, "metadata").get("labels")
            errs.append(E.invalid("spec.template.metadata.labels",
                                  go_string_map(raw if isinstance(raw, dict) else None),
                                  "`selector` does not match template `labels`"))
    if isinstance(sel, dict) and selector_is_empty(sel):
        errs.append(E.invalid("spec.selector", go_label_selector(sel),
                              "empty selector is invalid for daemonset"))
    errs += validate_pod_template_spec(template, "spec.template")
    errs += _always_restart(template, "spec.template", "DaemonSet")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _daemon_set_strategy(_m(spec, "updateStrategy"), "spec.updateStrategy")
    errs += nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    if old is not None:
        errs += _selector_immutable(spec, _m(old, "spec"))
    return errs


def _daemon_set_strategy(strategy: dict, path: str) -> Errors:
    kind, rolling = _s(strategy, "type"), strategy.get("rollingUpdate")
    if kind == "OnDelete":
        return []
    if kind == "RollingUpdate":
        if not isinstance(rolling, dict):
            return [E.required(f"{path}.rollingUpdate")]
        rp = f"{path}.rollingUpdate"
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = _int_or_percent(unavailable, f"{rp}.maxUnavailable")
        errs += _int_or_percent(surge, f"{rp}.maxSurge")
        errs += _not_more_than_100_percent(unavailable, f"{rp}.maxUnavailable")
        errs += _not_more_than_100_percent(surge, f"{rp}.maxSurge")
        has_unavailable = _int_or_percent_value(unavailable) != 0
        has_surge = _int_or_percent_value(surge) != 0
        if has_unavailable and has_surge:
            errs.append(E.invalid(f"{rp}.maxSurge", go_int_or_string(surge),
                                  "may not be set when maxUnavailable is non-zero"))
        elif not has_unavailable and not has_surge:
            errs.append(E.required(f"{rp}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
        return errs
    shown = strategy if rolling is not None else GoValue(
        f'apps.DaemonSetUpdateStrategy{{Type:{_go_quote(kind)}, '
        f'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}')
    return [E.not_supported(path, shown, ["RollingUpdate", "OnDelete"])]


def validate_stateful_set(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    policy = _s(spec, "podManagementPolicy")
    if not policy:
        errs.append(E.required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(E.invalid("spec.podManagementPolicy", policy,
                              "must be 'OrderedReady' or 'Parallel'"))
    errs += _stateful_set_strategy(_m(spec, "updateStrategy"), "spec.updateStrategy")
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, dict):
        for field in ("whenDeleted", "whenScaled"):
            value = _s(retention, field)
            if value not in ("Retain", "Delete"):
                errs.append(E.not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{field}",
                                            value, ["Retain", "Delete"]))
    errs += nonnegative(spec.get("replicas"), "spec.replicas")
    errs += nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if isinstance(spec.get("ordinals"), dict):
        errs += nonnegative(spec["ordinals"].get("start"), "spec.ordinals.start")
    errs += _workload_selector(spec, "spec", "statefulset")
    sel = spec.get("selector")
    template = _m(spec, "template")
    if isinstance(sel, dict) and not selector_parses(sel):
        errs.append(E.invalid("spec.selector", go_label_selector(sel), ""))
    else:
        # upstream checks only the template's metadata here, not its pod spec
        errs += _template_matches_selector(sel, template, "spec.template")
        meta = _m(template, "metadata")
        errs += validate_labels(meta.get("labels"), "spec.template.labels")
        errs += validate_annotations(meta.get("annotations"), "spec.template.annotations")
        errs += _pod_specific_annotations(meta, _m(template, "spec"), "spec.template.annotations")
    errs += _always_restart(template, "spec.template", "StatefulSet")
    if old is not None:
        errs += _stateful_set_update(spec, _m(old, "spec"))
    return errs


def _stateful_set_strategy(strategy: dict, path: str) -> Errors:
    kind, rolling = _s(strategy, "type"), strategy.get("rollingUpdate")
    if not kind:
        return [E.required(path)]
    if kind == "OnDelete":
        if rolling is not None:
            return [E.invalid(f"{path}.rollingUpdate", rolling,
                              "only allowed for updateStrategy 'RollingUpdate'")]
        return []
    if kind == "RollingUpdate":
        if not isinstance(rolling, dict):
            return []
        rp = f"{path}.rollingUpdate"
        errs = nonnegative(rolling.get("partition"), f"{rp}.partition")
        unavailable = rolling.get("maxUnavailable")
        if unavailable is not None:
            errs += _int_or_percent(unavailable, f"{rp}.maxUnavailable")
            if _int_or_percent_value(unavailable) == 0:
                errs.append(E.invalid(f"{rp}.maxUnavailable", go_int_or_string(unavailable),
                                      "cannot be 0"))
            errs += _not_more_than_100_percent(unavailable, f"{rp}.maxUnavailable")
        return errs
    shown = strategy if rolling is not None else GoValue(
        f'apps.StatefulSetUpdateStrategy{{Type:{_go_quote(kind)}, RollingUpdate:'
        f'(*apps.RollingUpdateStatefulSetStrategy)(nil)}}')
    return [E.invalid(path, shown, "must be 'RollingUpdate' or 'OnDelete'")]


_STATEFUL_SET_MUTABLE = ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                         "persistentVolumeClaimRetentionPolicy")


def _stateful_set_update(spec: dict, old: dict) -> Errors:
    strip = lambda s: {k: v for k, v in s.items() if k not in _STATEFUL_SET_MUTABLE}
    if _semantic(strip(spec)) != _semantic(strip(old)):
        return [E.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                    "'ordinals', 'template', 'updateStrategy', "
                                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                                    "are forbidden")]
    return []


def validate_controller_revision(obj: dict, old: dict | None) -> Errors:
    errs = [E.required("data", "data is mandatory")] if obj.get("data") is None else []
    errs += nonnegative(obj.get("revision"), "revision")
    if old is not None:
        errs += immutable(obj.get("data"), old.get("data"), "data")
    return errs


def validate_replication_controller(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = _m(spec, "selector")
    if not selector:
        errs.append(E.required("spec.selector"))
    errs += nonnegative(spec.get("replicas"), "spec.replicas")
    template = spec.get("template")
    if not isinstance(template, dict):
        return errs + [E.required("spec.template")]
    labels = _m(_m(template, "metadata"), "labels")
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        raw = _m(template, "metadata").get("labels")
        errs.append(E.invalid("spec.template.metadata.labels",
                              go_string_map(raw if isinstance(raw, dict) else None),
                              "`selector` does not match template `labels`"))
    errs += validate_pod_template_spec(template, "spec.template")
    return errs + _always_restart(template, "spec.template", "ReplicationController")


def validate_pod_template(obj: dict, old: dict | None) -> Errors:
    return validate_pod_template_spec(_m(obj, "template"), "template")


# --- Job and CronJob -------------------------------------------------------------------------

LEGACY_JOB_LABELS = ("controller-uid", "job-name")
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


def _job_spec(spec: dict, path: str) -> Errors:
    """``validateJobSpec``: what Jobs and CronJob job templates share."""
    errs: Errors = []
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                  "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += nonnegative(spec.get(field), f"{path}.{field}")
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errs.append(E.not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(E.required(f"{path}.completions", "when completion mode is Indexed"))
    if spec.get("backoffLimitPerIndex") is not None and mode != "Indexed":
        errs.append(E.forbidden(f"{path}.backoffLimitPerIndex", "requires indexed completion mode"))
    replacement = spec.get("podReplacementPolicy")
    # with a podFailurePolicy, terminating pods must not be replaced early
    allowed = (["Failed"] if spec.get("podFailurePolicy") is not None
               else ["Failed", "TerminatingOrFailed"])
    if replacement is not None and replacement not in allowed:
        errs.append(E.not_supported(f"{path}.podReplacementPolicy", replacement, allowed))
    template = _m(spec, "template")
    errs += validate_pod_template_spec(template, f"{path}.template")
    restart = _s(_m(template, "spec"), "restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errs.append(E.not_supported(f"{path}.template.spec.restartPolicy", restart,
                                    ["OnFailure", "Never"]))
    if isinstance(spec.get("podFailurePolicy"), dict):
        errs += _pod_failure_policy(spec, f"{path}.podFailurePolicy")
        if restart != "Never":
            errs.append(E.invalid(f"{path}.template.spec.restartPolicy", restart,
                                  'only "Never" is supported when podFailurePolicy is specified'))
    if isinstance(spec.get("successPolicy"), dict):
        errs += _success_policy(spec, f"{path}.successPolicy")
    return errs


_PFP_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
_PFP_OPERATORS = ["In", "NotIn"]
_PFP_STATUSES = ["False", "True", "Unknown"]


def _pfp_enum(value: str, path: str, supported: list[str]) -> Errors:
    """Upstream's PodFailurePolicy enums: empty is Required with the valid values listed."""
    if not value:
        return [E.required(path, "valid values: [" + " ".join(f'"{v}"' for v in supported) + "]")]
    return [] if value in supported else [E.not_supported(path, value, supported)]


def _pod_failure_policy(spec: dict, path: str) -> Errors:
    """``validatePodFailurePolicy``: up to 20 rules, each with one kind of requirement."""
    template_spec = _m(_m(spec, "template"), "spec")
    containers = {_s(c, "name") for key in ("containers", "initContainers")
                  for _, c in _dicts(template_spec, key)}
    rules = _l(spec["podFailurePolicy"], "rules")
    errs = [E.too_many(f"{path}.rules", len(rules), 20)] if len(rules) > 20 else []
    for i, rule in _dicts(spec["podFailurePolicy"], "rules"):
        rp = f"{path}.rules[{i}]"
        action = _s(rule, "action")
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errs.append(E.invalid(f"{rp}.action", action,
                                  "requires the backoffLimitPerIndex to be set"))
        elif action != "FailIndex":
            errs += _pfp_enum(action, f"{rp}.action", _PFP_ACTIONS)
        on_exit, on_conditions = rule.get("onExitCodes"), _l(rule, "onPodConditions")
        if isinstance(on_exit, dict):
            errs += _pfp_exit_codes(on_exit, f"{rp}.onExitCodes", containers)
        for j, pattern in _dicts(rule, "onPodConditions"):
            pp = f"{rp}.onPodConditions[{j}]"
            errs += _invalid_each(f"{pp}.type", _s(pattern, "type"),
                                  is_qualified_name(_s(pattern, "type")))
            errs += _pfp_enum(_s(pattern, "status"), f"{pp}.status", _PFP_STATUSES)
        if isinstance(on_exit, dict) and on_conditions:
            errs.append(FieldError(E.INVALID, rp, "specifying both OnExitCodes and "
                                                  "OnPodConditions is not supported"))
        elif not isinstance(on_exit, dict) and not on_conditions:
            errs.append(FieldError(E.INVALID, rp, "specifying one of OnExitCodes and "
                                                  "OnPodConditions is required"))
    return errs


def _pfp_exit_codes(req: dict, path: str, containers: set[str]) -> Errors:
    operator = _s(req, "operator")
    errs = _pfp_enum(operator, f"{path}.operator", _PFP_OPERATORS)
    name = req.get("containerName")
    if isinstance(name, str) and name not in containers:
        errs.append(E.invalid(f"{path}.containerName", name, "must be one of the container or "
                              "initContainer names in the pod template"))
    values = [v for v in _l(req, "values") if isinstance(v, int)]
    if not values:
        shown = GoValue("[]int32{}" if isinstance(req.get("values"), list) else "[]int32(nil)")
        errs.append(E.invalid(f"{path}.values", shown, "at least one value is required"))
    elif len(values) > 255:
        errs.append(E.too_many(f"{path}.values", len(values), 255))
    for j, value in enumerate(values):
        vp = f"{path}.values[{j}]"
        if operator == "In" and value == 0:
            errs.append(E.invalid(vp, value, "must not be 0 for the In operator"))
        if j and values[j - 1] == value:
            errs.append(E.duplicate(vp, value))
        if j and values[j - 1] > value:
            errs.append(E.invalid(vp, value, "must be ordered"))
    return errs


def _success_policy(spec: dict, path: str) -> Errors:
    """``validateSuccessPolicy``: Indexed Jobs only; each rule counts or lists indexes."""
    policy = spec["successPolicy"]
    errs: Errors = []
    if not _l(policy, "rules"):
        errs.append(E.required(f"{path}.rules", "at least one rules must be specified when the "
                                                "successPolicy is specified"))
    if spec.get("completionMode") != "Indexed":
        errs.append(E.invalid(path, policy, "requires indexed completion mode"))
    completions = _i(spec, "completions")
    for i, rule in _dicts(policy, "rules"):
        rp = f"{path}.rules[{i}]"
        count, indexes = rule.get("succeededCount"), rule.get("succeededIndexes")
        if count is None and indexes is None:
            errs.append(E.required(rp, "at least one of succeededCount or succeededIndexes must be "
                                       "specified"))
        total = 0
        if isinstance(indexes, str):
            if len(indexes) > 64 * 1024:
                errs.append(E.too_long_max_length(f"{rp}.succeededIndexes", 64 * 1024))
            total, problem = _count_indexes(indexes, completions)
            if problem:
                errs.append(E.invalid(f"{rp}.succeededIndexes", indexes,
                                      f"error parsing succeededIndexes: {problem}"))
        if isinstance(count, int):
            cp = f"{rp}.succeededCount"
            if count < 0:
                errs.append(E.invalid(cp, count, "must be greater than or equal to 0"))
            if count > completions:
                errs.append(E.invalid(cp, count, f"must be less than or equal to {completions} "
                                                 "(the number of specified completions)"))
            if isinstance(indexes, str) and count > total:
                errs.append(E.invalid(cp, count,
                                      f"must be less than or equal to {total} (the number "
                                      "of indexes in the specified succeededIndexes field)"))
    return errs


def _count_indexes(indexes: str, completions: int) -> tuple[int, str]:
    """``validateIndexesFormat``: how many indexes "1,3-5" names, or why it is malformed."""
    if not indexes:
        return 0, ""
    last: int | None = None
    total = 0
    for interval in indexes.split(","):
        limits = interval.split("-")
        if len(limits) > 2:
            return 0, (f"the fragment {_go_quote(interval)} violates the requirement that an index "
                       "interval can have at most two parts separated by '-'")
        bounds: list[int] = []
        for limit in limits:
            if not re.fullmatch(r"[+-]?[0-9]+", limit):
                return 0, f"cannot convert string to integer for index: {_go_quote(limit)}"
            value = int(limit)
            if value >= completions:
                return 0, f"too large index: {_go_quote(limit)}"
            if last is not None and last >= value:
                return 0, f"non-increasing order, previous: {last}, current: {value}"
            last = value
            bounds.append(value)
        total += 1 if len(bounds) == 1 else bounds[1] - bounds[0] + 1
    return total, ""


def _generated_selector(job: dict) -> Errors:
    """The server generates a Job's selector and template labels from its uid unless
    ``manualSelector`` is set; the result must be what it generated."""
    spec, meta = _m(job, "spec"), _m(job, "metadata")
    sel = spec.get("selector")
    if spec.get("manualSelector") is True or not isinstance(sel, dict):
        return []
    uid, name = _s(meta, "uid"), _s(meta, "name")
    errs = [E.required("metadata.uid")] if not uid else []
    template_meta = _m(_m(spec, "template"), "metadata")
    labels = _m(template_meta, "labels")
    expected = {LEGACY_JOB_LABELS[0]: uid, LEGACY_JOB_LABELS[1]: name,
                JOB_LABELS[0]: uid, JOB_LABELS[1]: name}
    for key in (*LEGACY_JOB_LABELS, *JOB_LABELS):
        lp = f"spec.template.metadata.labels[{key}]"
        if key not in labels:
            errs.append(E.required(lp, f"must be '{expected[key]}'"))
        elif labels[key] != expected[key]:
            errs.append(E.invalid(lp, go_string_map(labels), f"must be '{expected[key]}'"))
    if selector_parses(sel) and not selector_matches(sel, expected):
        errs.append(E.invalid("spec.selector", go_label_selector(sel),
                              "`selector` not auto-generated"))
    return errs


def validate_job(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = _generated_selector(obj)
    errs += _job_spec(spec, "spec")
    sel = spec.get("selector")
    if sel is None:
        errs.append(E.required("spec.selector"))
    else:
        errs += validate_label_selector(sel, "spec.selector")
    if isinstance(sel, dict) and selector_parses(sel):
        errs += _template_matches_selector(sel, _m(spec, "template"), "spec.template")
    if old is not None:
        old_spec = _m(old, "spec")
        for field in ("completions", "selector", "template", "completionMode", "podFailurePolicy",
                      "backoffLimitPerIndex", "managedBy"):
            if field == "completions" and _elastic_indexed(spec, old_spec):
                continue
            shown = go_label_selector(spec.get(field)) if field == "selector" else spec.get(field)
            errs += immutable(spec.get(field), old_spec.get(field), f"spec.{field}", shown)
    return errs


def _elastic_indexed(spec: dict, old: dict) -> bool:
    """An Indexed Job may change completions together with parallelism, kept equal."""
    return (spec.get("completionMode") == "Indexed"
            and old.get("completions") == old.get("parallelism")
            and spec.get("completions") == spec.get("parallelism"))


def validate_cron_job(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    name = _s(_m(obj, "metadata"), "name")
    errs: Errors = []
    if len(name) > 52:
        # the controller appends an 11-character suffix and Job names are labels (63 bytes)
        errs.append(E.invalid("metadata.name", name, "must be no more than 52 characters"))
    schedule = _s(spec, "schedule")
    if not schedule:
        errs.append(E.required("spec.schedule"))
    else:
        problem = cron_schedule_error(schedule)
        if problem:
            errs.append(E.invalid("spec.schedule", schedule, problem))
        old_schedule = _s(_m(old or {}, "spec"), "schedule")
        if "TZ" in schedule and "TZ" not in old_schedule:
            errs.append(E.invalid("spec.schedule", schedule,
                                  "cannot use TZ or CRON_TZ in schedule, "
                                  "use timeZone field instead"))
        elif "TZ" in schedule and spec.get("timeZone") is not None:
            errs.append(E.invalid("spec.schedule", schedule,
                                  "cannot use both timeZone field and TZ "
                                  "or CRON_TZ in schedule"))
    errs += _time_zone(spec.get("timeZone"), "spec.timeZone")
    errs += nonnegative(spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds")
    policy = _s(spec, "concurrencyPolicy")
    if not policy:
        errs.append(E.required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(E.not_supported("spec.concurrencyPolicy", policy,
                                    ["Allow", "Forbid", "Replace"]))
    for field in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += nonnegative(spec.get(field), f"spec.{field}")
    return errs + _job_template(_m(spec, "jobTemplate"), "spec.jobTemplate")


def _job_template(template: dict, path: str) -> Errors:
    meta, spec = _m(template, "metadata"), _m(template, "spec")
    errs = validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    errs += _job_spec(spec, f"{path}.spec")
    if spec.get("selector") is not None:
        errs.append(E.invalid(f"{path}.spec.selector", go_label_selector(spec.get("selector")),
                              "`selector` will be auto-generated"))
    if spec.get("manualSelector") is True:
        errs.append(E.not_supported(f"{path}.spec.manualSelector", True, ["nil", "false"]))
    return errs


def _time_zone(tz: Any, path: str) -> Errors:
    if tz is None:
        return []
    if not isinstance(tz, str) or tz in ("", "Local") or tz.startswith("/") or ".." in tz:
        return [E.invalid(path, tz, f"unknown time zone {tz}")]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [E.invalid(path, tz, f"unknown time zone {tz}")]
    return []


# robfig/cron v3's standard parser: five fields, names for months and weekdays, descriptors.
_CRON_FIELDS = ((0, 59, None), (0, 23, None), (1, 31, None),
                (1, 12, {m: i + 1 for i, m in enumerate(
                    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
                (0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}))
_CRON_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily",
                               "@midnight", "@hourly"})
_GO_DURATION = re.compile(r"([0-9]*(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+")


def cron_schedule_error(spec: str) -> str:
    """The error ``cron.ParseStandard`` gives for ``spec``, or "" if it parses."""
    if not spec:
        return "empty spec string"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = head.split("=", 1)[1]
        if _time_zone(zone, ""):
            return f"provided bad location {zone}: unknown time zone {zone}"
        spec = spec.strip()
    if spec.startswith("@"):
        if spec in _CRON_DESCRIPTORS:
            return ""
        if spec.startswith("@every "):
            duration = spec[len("@every "):]
            if _GO_DURATION.fullmatch(duration) and duration not in ("", "."):
                return ""
            return f'failed to parse duration {spec}: time: invalid duration "{duration}"'
        return f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for text, bounds in zip(fields, _CRON_FIELDS):
        for expr in text.split(","):
            problem = _cron_range_error(expr, *bounds)
            if problem:
                return problem
    return ""


def _cron_range_error(expr: str, lo: int, hi: int, names: dict[str, int] | None) -> str:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if low_and_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start_or_error = _cron_int(low_and_high[0], names)
        if isinstance(start_or_error, str):
            return start_or_error
        start = end = start_or_error
        if len(low_and_high) == 2:
            end_or_error = _cron_int(low_and_high[1], names)
            if isinstance(end_or_error, str):
                return end_or_error
            end = end_or_error
        elif len(low_and_high) > 2:
            return f"too many hyphens: {expr}"
    step = 1
    if len(range_and_step) == 2:
        step_or_error = _cron_int(range_and_step[1], None)
        if isinstance(step_or_error, str):
            return step_or_error
        step = step_or_error
        if len(low_and_high) == 1:
            end = hi
    elif len(range_and_step) > 2:
        return f"too many slashes: {expr}"
    if start < lo:
        return f"beginning of range ({start}) below minimum ({lo}): {expr}"
    if end > hi:
        return f"end of range ({end}) above maximum ({hi}): {expr}"
    if start > end:
        return f"beginning of range ({start}) beyond end of range ({end}): {expr}"
    if step == 0:
        return f"step of range should be a positive number: {expr}"
    return ""


def _cron_int(text: str, names: dict[str, int] | None) -> int | str:
    if names and text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        return f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
    value = int(text)
    if value < 0:
        return f"negative number ({value}) not allowed: {text}"
    return value


# ============================================================================================
# 3c. Services, endpoints, config (pkg/apis/core/validation)
# ============================================================================================

_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
NODE_PORT_RANGE = (30000, 32767)


def _is_headless(spec: dict) -> bool:
    ips = _l(spec, "clusterIPs")
    return len(ips) == 1 and ips[0] == "None"


def _externally_accessible(spec: dict) -> bool:
    kind = _s(spec, "type")
    return (kind in ("LoadBalancer", "NodePort")
            or (kind == "ClusterIP" and bool(_l(spec, "externalIPs"))))


def _service_port(port: dict, require_name: bool, names: set[str], path: str) -> Errors:
    errs: Errors = []
    name = _s(port, "name")
    if require_name and not name:
        errs.append(E.required(f"{path}.name"))
    elif name:
        errs += _invalid_each(f"{path}.name", name, is_dns1123_label(name))
        if name in names:
            errs.append(E.duplicate(f"{path}.name", name))
        names.add(name)
    number = _i(port, "port")
    errs += _invalid_each(f"{path}.port", number, is_valid_port_num(number))
    errs += _protocol(_s(port, "protocol"), f"{path}.protocol")
    errs += port_num_or_name(port.get("targetPort", 0), f"{path}.targetPort")
    app_protocol = port.get("appProtocol")
    if isinstance(app_protocol, str):
        errs += _invalid_each(f"{path}.appProtocol", app_protocol, is_qualified_name(app_protocol))
    node_port = _i(port, "nodePort")
    if node_port:
        lo, hi = NODE_PORT_RANGE
        if not lo <= node_port <= hi:
            # upstream's allocator gives this, after validation
            errs.append(E.invalid(f"{path}.nodePort", node_port,
                                  "provided port is not in the valid "
                                  f"range. The range of valid ports is {lo}-{hi}"))
    return errs


def _non_special_ip(ip: str, path: str) -> Errors:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return [E.invalid(path, ip, "must be a valid IP address")]
    errs: Errors = []
    if address.is_unspecified:
        errs.append(E.invalid(path, ip, f"may not be unspecified ({ip})"))
    if address.is_loopback:
        errs.append(E.invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if address.is_link_local and not address.is_multicast:
        errs.append(E.invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, "
                                        "fe80::/10)"))
    if address in ipaddress.ip_network("224.0.0.0/24") or (
            address.version == 6 and address in ipaddress.ip_network("ff02::/16")):
        errs.append(E.invalid(path, ip, "may not be in the link-local multicast range "
                                        "(224.0.0.0/24, ff02::/10)"))
    return errs


def _service_port_key(port: dict) -> GoValue:
    return GoValue(f'core.ServicePort{{Name:"", Protocol:{_go_quote(_s(port, "protocol"))}, '
                   f'AppProtocol:(*string)(nil), Port:{_i(port, "port")}, '
                   'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def validate_service(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    kind = _s(spec, "type")
    headless = _is_headless(spec)
    ports = [p for _, p in _dicts(spec, "ports")]
    errs: Errors = []
    if not ports and not headless and kind != "ExternalName":
        errs.append(E.required("spec.ports"))
    errs += _service_type_rules(spec, kind, headless)
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if spec.get("selector") is not None:
        errs += validate_labels(spec.get("selector"), "spec.selector")
    errs += _session_affinity(spec)
    errs += _cluster_ips(spec, kind, headless)
    for i, ip in enumerate(_l(spec, "externalIPs")):
        msgs = is_valid_ip(str(ip))
        ip_path = f"spec.externalIPs[{i}]"
        errs += _invalid_each(ip_path, ip, msgs) or _non_special_ip(str(ip), ip_path)
    if not kind:
        errs.append(E.required("spec.type"))
    elif kind not in _SERVICE_TYPES:
        errs.append(E.not_supported("spec.type", kind, _SERVICE_TYPES))
    errs += _service_port_collisions(ports, kind)
    errs += _load_balancer_fields(spec, kind)
    errs += _traffic_policies(spec, kind)
    if old is not None:
        errs += _service_update(spec, _m(old, "spec"))
    return errs


def _service_type_rules(spec: dict, kind: str, headless: bool) -> Errors:
    if kind in ("LoadBalancer", "NodePort") and headless:
        return [E.invalid("spec.clusterIPs[0]", "None",
                          f"may not be set to 'None' for {kind} services")]
    if kind != "ExternalName":
        return []
    errs = [E.forbidden(f"spec.{f}", "may not be set for ExternalName services")
            for f in ("clusterIPs", "ipFamilies") if _l(spec, f)]
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(E.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    cname = _s(spec, "externalName")
    cname = cname.removesuffix(".")
    if cname:
        errs += _invalid_each("spec.externalName", cname, is_dns1123_subdomain(cname))
    else:
        errs.append(E.required("spec.externalName"))
    return errs


def _session_affinity(spec: dict) -> Errors:
    affinity = _s(spec, "sessionAffinity")
    if not affinity:
        return [E.required("spec.sessionAffinity")]
    if affinity not in ("ClientIP", "None"):
        return [E.not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"])]
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        if config is not None:
            return [E.forbidden("spec.sessionAffinityConfig",
                                "must not be set when session affinity "
                                "is None")]
        return []
    why = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [E.required("spec.sessionAffinityConfig", why)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return [E.required("spec.sessionAffinityConfig.clientIP", why)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [E.required("spec.sessionAffinityConfig.clientIP.timeoutSeconds", why)]
    if not isinstance(timeout, int) or not 0 < timeout <= 86400:
        return [E.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                          "must be greater than 0 and less than 86400")]
    return []


def _cluster_ips(spec: dict, kind: str, headless: bool) -> Errors:
    """``ValidateServiceClusterIPsRelatedFields``."""
    if kind == "ExternalName":
        return []
    errs: Errors = []
    cluster_ip, ips = _s(spec, "clusterIP"), _l(spec, "clusterIPs")
    if cluster_ip:
        if not ips:
            errs.append(E.required("spec.clusterIPs"))
        elif ips[0] != cluster_ip:
            errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                                  "first value must match `clusterIP`"))
    elif ips:
        errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                              "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(_l(spec, "ipFamilies")):
        if family not in ("IPv4", "IPv6"):
            errs.append(E.not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(E.duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(E.not_supported("spec.ipFamilyPolicy", policy,
                                    ["PreferDualStack", "RequireDualStack", "SingleStack"]))
    invalid_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                invalid_ips = True
                errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                                      "'None' must be the first and only value"))
            continue
        msgs = is_valid_ip(str(ip))
        invalid_ips = invalid_ips or bool(msgs)
        errs += _invalid_each(f"spec.clusterIPs[{i}]", ip, msgs)
    if len(ips) > 2:
        errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                              "may only hold up to 2 values"))
    if invalid_ips:
        return errs
    if len(ips) > 1 and len({ipaddress.ip_address(ip).version for ip in ips}) != len(ips):
        errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                              "may specify no more than one IP for each IP family"))
    families = _l(spec, "ipFamilies")
    if not headless:
        for i, (ip, family) in enumerate(zip(ips, families)):
            v6 = ipaddress.ip_address(ip).version == 6
            if family in ("IPv4", "IPv6") and v6 != (family == "IPv6"):
                errs.append(E.invalid(f"spec.clusterIPs[{i}]", ip, f"expected an {family} value "
                                      f"as indicated by `ipFamilies[{i}]`"))
    return errs


def _service_port_collisions(ports: list[dict], kind: str) -> Errors:
    errs: Errors = []
    node_ports: set[tuple[str, int]] = set()
    service_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        node_port = _i(port, "nodePort")
        if kind == "ClusterIP" and node_port:
            errs.append(E.forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is "
                                                                 "'ClusterIP'"))
        if node_port:
            key = (_s(port, "protocol"), node_port)
            if key in node_ports:
                errs.append(E.duplicate(f"spec.ports[{i}].nodePort", node_port))
            node_ports.add(key)
    for i, port in enumerate(ports):
        key = (_s(port, "protocol"), _i(port, "port"))
        if key in service_ports:
            errs.append(E.duplicate(f"spec.ports[{i}]", _service_port_key(port)))
        service_ports.add(key)
    return errs


def _load_balancer_fields(spec: dict, kind: str) -> Errors:
    errs: Errors = []
    ranges = _l(spec, "loadBalancerSourceRanges")
    if ranges:
        if kind != "LoadBalancer":
            errs.append(E.forbidden("spec.LoadBalancerSourceRanges",
                                    "may only be used when `type` is 'LoadBalancer'"))
        for i, cidr in enumerate(ranges):
            value = str(cidr).strip()
            errs += _invalid_each(f"spec.LoadBalancerSourceRanges[{i}]", value,
                                  is_valid_cidr(value))
    allocate = spec.get("allocateLoadBalancerNodePorts")
    if allocate is not None and kind != "LoadBalancer":
        errs.append(E.forbidden("spec.allocateLoadBalancerNodePorts",
                                "may only be used when `type` is 'LoadBalancer'"))
    if kind == "LoadBalancer" and allocate is None:
        errs.append(E.required("allocateLoadBalancerNodePorts"))  # sic: upstream's path
    lb_class = spec.get("loadBalancerClass")
    if lb_class is not None:
        if kind == "LoadBalancer":
            errs += _invalid_each("spec.loadBalancerClass", lb_class,
                                  is_qualified_name(str(lb_class)))
        else:
            errs.append(E.forbidden("spec.loadBalancerClass",
                                    "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _traffic_policies(spec: dict, kind: str) -> Errors:
    errs: Errors = []
    external = _s(spec, "externalTrafficPolicy")
    if not _externally_accessible(spec):
        if external:
            errs.append(E.invalid("spec.externalTrafficPolicy", external,
                                  "may only be set for externally-accessible services"))
    elif not external:
        errs.append(E.required("spec.externalTrafficPolicy"))
    elif external not in ("Cluster", "Local"):
        errs.append(E.not_supported("spec.externalTrafficPolicy", external, ["Cluster", "Local"]))
    health = _i(spec, "healthCheckNodePort")
    if not (kind == "LoadBalancer" and external == "Local"):
        if health:
            errs.append(E.invalid("spec.healthCheckNodePort", health, "may only be set when `type` "
                                  "is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif not health:
        errs.append(E.required("spec.healthCheckNodePort"))
    else:
        errs += _invalid_each("spec.healthCheckNodePort", health, is_valid_port_num(health))
    internal = spec.get("internalTrafficPolicy")
    if internal is None:
        if kind in ("NodePort", "LoadBalancer", "ClusterIP"):
            errs.append(E.required("spec.internalTrafficPolicy"))
    elif internal not in ("Cluster", "Local"):
        errs.append(E.not_supported("spec.internalTrafficPolicy", internal, ["Cluster", "Local"]))
    distribution = spec.get("trafficDistribution")
    allowed = ["PreferClose", "PreferSameNode", "PreferSameZone"]
    if distribution is not None and distribution not in allowed:
        errs.append(E.not_supported("spec.trafficDistribution", distribution, allowed))
    return errs


def _service_update(spec: dict, old: dict) -> Errors:
    errs: Errors = []
    if "ExternalName" in (_s(spec, "type"), _s(old, "type")):
        return errs
    if not (_is_headless(spec) and _is_headless(old)):
        errs += _cluster_ip_changes(_l(spec, "clusterIPs"), _l(old, "clusterIPs"), spec)
    if _is_headless(spec) == _is_headless(old) and not _is_headless(spec):
        new_f, old_f = _l(spec, "ipFamilies"), _l(old, "ipFamilies")
        if len(new_f) == len(old_f) and new_f != old_f:
            errs.append(E.invalid("spec.ipFamilies[0]", go_string_slice(new_f),
                                  "may not change once set"))
        elif old_f and new_f and new_f[0] != old_f[0]:
            errs.append(E.invalid("spec.ipFamilies[0]", go_string_slice(_l(spec, "clusterIPs")),
                                  "may not change once set"))
    if _s(spec, "type") == "LoadBalancer" == _s(old, "type"):
        if spec.get("loadBalancerClass") != old.get("loadBalancerClass"):
            errs.append(E.invalid("spec.loadBalancerClass", spec.get("loadBalancerClass"),
                                  "may not change once set"))
        if (_s(spec, "externalTrafficPolicy") == "Local" == _s(old, "externalTrafficPolicy")
                and _i(spec, "healthCheckNodePort") != _i(old, "healthCheckNodePort")):
            errs.append(E.forbidden("spec.healthCheckNodePort", IMMUTABLE))
    return errs


def _cluster_ip_changes(new: list, old: list, spec: dict) -> Errors:
    shown = go_string_slice(new)
    if len(new) == len(old):
        return [E.invalid(f"spec.clusterIPs[{i}]", shown, "may not change once set")
                for i, ip in enumerate(old) if ip != new[i]]
    if len(old) > len(new):
        errs: Errors = []
        if not new:
            errs.append(E.invalid("spec.clusterIPs[0]", shown,
                                  "primary clusterIP can not be unset"))
        elif old[0] != new[0]:
            errs.append(E.invalid("spec.clusterIPs[0]", shown, "may not change once set"))
        if len(new) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(E.invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                  "must be set to "
                                  "'SingleStack' when releasing the secondary clusterIP"))
        return errs
    if old and new[0] != old[0]:
        return [E.invalid("spec.clusterIPs[0]", shown, "may not change once set")]
    return []


def validate_endpoints(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    for i, subset in _dicts(obj, "subsets"):
        sp = f"subsets[{i}]"
        if not _l(subset, "addresses") and not _l(subset, "notReadyAddresses"):
            errs.append(E.required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for field in ("addresses", "notReadyAddresses"):
            for j, address in _dicts(subset, field):
                ap = f"{sp}.{field}[{j}]"
                ip = _s(address, "ip")
                errs += _invalid_each(f"{ap}.ip", ip, is_valid_ip(ip))
                if _s(address, "hostname"):
                    errs += _invalid_each(f"{ap}.hostname", _s(address, "hostname"),
                                          is_dns1123_label(_s(address, "hostname")))
                if isinstance(address.get("nodeName"), str):
                    errs += _invalid_each(f"{ap}.nodeName", address["nodeName"],
                                          name_is_dns_subdomain(address["nodeName"]))
                errs += _non_special_ip(ip, f"{ap}.ip")
        ports = _l(subset, "ports")
        for j, port in _dicts(subset, "ports"):
            pp = f"{sp}.ports[{j}]"
            name = _s(port, "name")
            if len(ports) > 1 and not name:
                errs.append(E.required(f"{pp}.name"))
            elif name:
                errs += _invalid_each(f"{pp}.name", name, is_dns1123_label(name))
            errs += _invalid_each(f"{pp}.port", _i(port, "port"),
                                  is_valid_port_num(_i(port, "port")))
            errs += _protocol(_s(port, "protocol"), f"{pp}.protocol")
    return errs


MAX_CONFIG_SIZE = 1024 * 1024


def validate_config_map(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    data, binary = _m(obj, "data"), _m(obj, "binaryData")
    total = 0
    for key, value in data.items():
        errs += _invalid_each(f"data[{key}]", key, is_config_map_key(key))
        if key in binary:
            errs.append(E.invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len(value.encode()) if isinstance(value, str) else 0
    for key, value in binary.items():
        errs += _invalid_each(f"binaryData[{key}]", key, is_config_map_key(key))
        total += _decoded_size(value)
    if total > MAX_CONFIG_SIZE:
        errs.append(E.too_long_bytes("", MAX_CONFIG_SIZE))
    if old is not None:
        errs = _immutable_data(obj, old, ("data", "binaryData")) + errs
    return errs


def _decoded_size(value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return len(value) * 3 // 4 - value[-2:].count("=")


def _immutable_data(obj: dict, old: dict, fields: tuple[str, ...]) -> Errors:
    if old.get("immutable") is not True:
        return []
    errs: Errors = []
    if obj.get("immutable") is not True:
        errs.append(E.forbidden("immutable", "field is immutable when `immutable` is set"))
    for field in fields:
        if (obj.get(field) or {}) != (old.get(field) or {}):
            errs.append(E.forbidden(field, "field is immutable when `immutable` is set"))
    return errs


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    if old is not None:
        errs += immutable(obj.get("type"), old.get("type"), "type")
        errs += _immutable_data(obj, old, ("data",))
    data = _m(obj, "data")
    total = 0
    for key, value in data.items():
        errs += _invalid_each(f"data[{key}]", key, is_config_map_key(key))
        total += _decoded_size(value)
    if total > MAX_CONFIG_SIZE:
        errs.append(E.too_long_bytes("data", MAX_CONFIG_SIZE))
    return errs + _secret_type_rules(obj, data)


def _secret_type_rules(obj: dict, data: dict) -> Errors:
    kind = _s(obj, "type")
    if kind == "kubernetes.io/service-account-token":
        name = _m(_m(obj, "metadata"), "annotations").get("kubernetes.io/service-account.name")
        if not name:
            return [E.required("metadata.annotations[kubernetes.io/service-account.name]")]
        return []
    if kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            return [E.required("data[username]"), E.required("data[password]")]
        return []
    errs: Errors = []
    for key in _SECRET_REQUIRED_KEYS.get(kind, ()):
        if key not in data or (kind == "kubernetes.io/ssh-auth" and not data[key]):
            errs.append(E.required(f"data[{key}]"))
        elif kind in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
            problem = _json_object_error(data[key])
            if problem:
                errs.append(E.invalid(f"data[{key}]", "<secret contents redacted>", problem))
    return errs


def _json_object_error(encoded: Any) -> str:
    """Why a base64 secret value is not a JSON object, in encoding/json's words, or ""."""
    try:
        text = base64.b64decode(encoded).decode()
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        return go_json_error(err)
    except (ValueError, binascii.Error):
        return "invalid character in input"
    if not isinstance(parsed, dict):
        return (f"json: cannot unmarshal {json_type(parsed)} into Go value of type "
                "map[string]interface {}")
    return ""


def validate_namespace(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    for finalizer in _l(_m(obj, "spec"), "finalizers"):
        if isinstance(finalizer, str):
            errs += _invalid_each("spec.finalizers", finalizer, is_qualified_name(finalizer))
            errs += _kube_finalizer_name(finalizer, "spec.finalizers")
    return errs


def validate_service_account(obj: dict, old: dict | None) -> Errors:
    return []


def _taint_key(taint: dict) -> GoValue:
    key, value, effect = (_go_quote(_s(taint, f)) for f in ("key", "value", "effect"))
    return GoValue(f"core.Taint{{Key:{key}, Value:{value}, Effect:{effect}, "
                   "TimeAdded:(*v1.Time)(nil)}")


def validate_taints(taints: list, path: str) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, taint in _dicts({"t": taints}, "t"):
        tp = f"{path}[{i}]"
        errs += _invalid_each(f"{tp}.key", _s(taint, "key"), is_qualified_name(_s(taint, "key")))
        msgs = is_label_value(_s(taint, "value"))
        if msgs:
            errs.append(E.invalid(f"{tp}.value", _s(taint, "value"), ";".join(msgs)))
        effect = _s(taint, "effect")
        if not effect:
            errs.append(E.required(f"{tp}.effect"))
        elif effect not in _TAINT_EFFECTS:
            errs.append(E.not_supported(f"{tp}.effect", effect, _TAINT_EFFECTS))
        key = (_s(taint, "key"), effect)
        if key in seen:
            errs.append(FieldError(E.DUPLICATE, tp, "taints must be unique by key and effect pair",
                                   _taint_key(taint)))
            continue
        seen.add(key)
    return errs


def validate_node(obj: dict, old: dict | None) -> Errors:
    spec, status = _m(obj, "spec"), _m(obj, "status")
    errs = validate_taints(_l(spec, "taints"), "metadata.taints")  # sic: upstream's path
    for field in ("capacity", "allocatable"):
        for name, raw in _m(status, field).items():
            errs += resource_quantity(name, raw, f"status.{field}.{name}")[1]
    cidrs = _l(spec, "podCIDRs")
    for i, cidr in enumerate(cidrs):
        errs += _invalid_each(f"spec.podCIDRs[{i}]", cidr, is_valid_cidr(str(cidr)))
    if len(cidrs) > 1 and not errs:
        versions = {ipaddress.ip_network(str(c), strict=False).version for c in cidrs}
        if len(versions) != len(cidrs):
            errs.append(E.invalid("spec.podCIDRs", go_string_slice(cidrs),
                                  "may specify no more than one CIDR for each IP family"))
    if old is not None:
        old_spec = _m(old, "spec")
        if _l(old_spec, "podCIDRs") and _l(old_spec, "podCIDRs") != cidrs:
            errs.append(E.forbidden("spec.podCIDRs", 'node updates may not change podCIDR except '
                                                     'from "" to valid'))
        if _s(old_spec, "providerID") and _s(old_spec, "providerID") != _s(spec, "providerID"):
            errs.append(E.forbidden("spec.providerID", 'node updates may not change providerID '
                                                       'except from "" to valid'))
        if spec.get("externalID") != old_spec.get("externalID"):
            errs.append(E.forbidden("spec.externalID", "may not be updated"))
    return errs


# ============================================================================================
# 3d. Storage, quota and limits (core), storage.k8s.io, scheduling.k8s.io
# ============================================================================================

_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_VOLUME_MODES = ["Block", "Filesystem"]


def _access_modes(modes: list, path: str, required_detail: str) -> Errors:
    errs = [E.required(path, required_detail)] if not modes else []
    for mode in modes:
        if mode not in _ACCESS_MODES:
            errs.append(E.not_supported(path, mode, _ACCESS_MODES))
    if "ReadWriteOncePod" in modes and any(m in _ACCESS_MODES and m != "ReadWriteOncePod"
                                           for m in modes):
        errs.append(E.forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _positive_quantity(raw: Any, path: str) -> Errors:
    try:
        q = parse_quantity(raw)
    except QuantityError as err:
        return [E.invalid(path, raw, str(err))]
    return [E.invalid(path, str(q), "must be greater than zero")] if q.value <= 0 else []


def pvc_spec(spec: dict, path: str) -> Errors:
    errs = _access_modes(_l(spec, "accessModes"), f"{path}.accessModes",
                         "at least 1 access mode is required")
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec.get("selector"), f"{path}.selector")
    storage = _m(_m(spec, "resources"), "requests").get("storage")
    if storage is None:
        errs.append(E.required(f"{path}.resources[storage]"))
    else:
        errs += _positive_quantity(storage, f"{path}.resources[storage]")
    class_name = spec.get("storageClassName")
    if isinstance(class_name, str) and class_name:
        errs += _invalid_each(f"{path}.storageClassName", class_name,
                              name_is_dns_subdomain(class_name))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in _VOLUME_MODES:
        errs.append(E.not_supported(f"{path}.volumeMode", mode, _VOLUME_MODES))
    for field in ("dataSource", "dataSourceRef"):
        source = spec.get(field)
        if isinstance(source, dict):
            errs += _data_source(source, f"{path}.{field}")
    return errs


def _data_source(source: dict, path: str) -> Errors:
    errs = [E.required(f"{path}.{f}") for f in ("name", "kind") if not _s(source, f)]
    group = _s(source, "apiGroup")
    if not group and _s(source, "kind") != "PersistentVolumeClaim":
        errs.append(E.invalid(path, _s(source, "kind"), "must be 'PersistentVolumeClaim' when "
                                                        "referencing the default apiGroup"))
    if group:
        errs += _invalid_each(f"{path}.apiGroup", group, is_dns1123_subdomain(group))
    return errs


def validate_pvc(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = pvc_spec(spec, "spec")
    if old is None:
        return errs
    old_spec = _m(old, "spec")
    new_cmp, old_cmp = dict(spec), dict(old_spec)
    if not _s(old_spec, "volumeName"):
        old_cmp["volumeName"] = spec.get("volumeName")
    bound = _s(_m(obj, "status"), "phase") == "Bound"
    if bound:
        new_cmp["resources"] = {**_m(spec, "resources"), "requests": {
            **_m(_m(spec, "resources"), "requests"),
            "storage": _m(_m(old_spec, "resources"), "requests").get("storage")}}
        new_cmp["volumeAttributesClassName"] = old_spec.get("volumeAttributesClassName")
    if _semantic(new_cmp) != _semantic(old_cmp):
        errs.append(E.forbidden("spec",
                                "spec is immutable after creation except resources.requests "
                                "and volumeAttributesClassName for bound claims\n"
                                        + _spec_diff(old_cmp, new_cmp, "")))
    errs += _pvc_shrink(spec, old_spec, _m(old, "status"))
    return errs + immutable(spec.get("volumeMode"), old_spec.get("volumeMode"), "volumeMode")


def _pvc_shrink(spec: dict, old_spec: dict, old_status: dict) -> Errors:
    try:
        new_size = parse_quantity(_m(_m(spec, "resources"), "requests").get("storage")).value
        old_size = parse_quantity(_m(_m(old_spec, "resources"), "requests").get("storage")).value
    except QuantityError:
        return []
    if new_size >= old_size:
        return []
    try:
        status_size = parse_quantity(_m(old_status, "capacity").get("storage", 0)).value
    except QuantityError:
        status_size = Decimal(0)
    if new_size <= status_size:
        return [E.forbidden("spec.resources.requests.storage", "field can not be less than "
                                                               "status.capacity")]
    return []


_PV_SOURCES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker",
               "nfs", "rbd", "quobyte", "cephfs", "iscsi", "cinder", "fc", "flexVolume",
               "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk",
               "scaleIO", "local", "storageos", "csi")


def validate_pv(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = _access_modes(_l(spec, "accessModes"), "spec.accessModes", "")
    capacity = _m(spec, "capacity")
    if not capacity:
        errs.append(E.required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        errs.append(E.not_supported("spec.capacity", capacity, ["storage"]))
    for name, raw in capacity.items():
        errs += _positive_quantity(raw, f"spec.capacity[{name}]")
    policy = _s(spec, "persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        errs.append(E.not_supported("spec.persistentVolumeReclaimPolicy", policy,
                                    ["Delete", "Recycle", "Retain"]))
    errs += _pv_source(spec)
    class_name = _s(spec, "storageClassName")
    if class_name:
        errs += _invalid_each("spec.storageClassName", class_name,
                              name_is_dns_subdomain(class_name))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in _VOLUME_MODES:
        errs.append(E.not_supported("spec.volumeMode", mode, _VOLUME_MODES))
    if old is not None:
        old_spec = _m(old, "spec")
        if any(_semantic(spec.get(k)) != _semantic(old_spec.get(k)) for k in _PV_SOURCES):
            errs.append(E.forbidden("spec.persistentvolumesource",
                                    "spec.persistentvolumesource is immutable after creation"))
        errs += immutable(spec.get("volumeMode"), old_spec.get("volumeMode"), "volumeMode")
    return errs


def _pv_source(spec: dict) -> Errors:
    errs: Errors = []
    count = 0
    for name in _PV_SOURCES:
        source = spec.get(name)
        if not isinstance(source, dict):
            continue
        if count and name != "flexVolume":
            errs.append(E.forbidden(f"spec.{name}", "may not specify more than 1 volume type"))
            continue
        count += 1
        if name == "hostPath":
            errs += _vol_host_path(source, "spec.hostPath", "")
        elif name == "nfs":
            errs += _vol_nfs(source, "spec.nfs", "")
        elif name == "local":
            if not _s(source, "path"):
                errs.append(E.required("spec.local.path"))
            else:
                errs += _no_backsteps(_s(source, "path"), "spec.local.path")
            affinity = spec.get("nodeAffinity")
            if not isinstance(affinity, dict):
                errs.append(E.required("spec.nodeAffinity", "Local volume requires node affinity"))
        elif name == "csi":
            errs += csi_driver_name(_s(source, "driver"), "spec.csi.driver")
            if not _s(source, "volumeHandle"):
                errs.append(E.required("spec.csi.volumeHandle"))
    affinity = spec.get("nodeAffinity")
    if isinstance(affinity, dict):
        required = affinity.get("required")
        if isinstance(required, dict):
            errs += node_selector(required, "spec.nodeAffinity.required")
        else:
            errs.append(E.required("spec.nodeAffinity.required",
                                   "must specify required node constraints"))
    if not count:
        errs.append(E.required("spec", "must specify a volume type"))
    return errs


_LIMIT_TYPES = frozenset({"Pod", "Container", "PersistentVolumeClaim"})


def validate_limit_range(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, limit in _dicts(_m(obj, "spec"), "limits"):
        lp = f"spec.limits[{i}]"
        kind = _s(limit, "type")
        type_errs = _invalid_each(f"{lp}.type", kind, is_qualified_name(kind))
        if not type_errs and "/" not in kind and kind not in _LIMIT_TYPES:
            type_errs.append(E.invalid(f"{lp}.type", kind,
                                       "must be a standard limit type or fully qualified"))
        errs += type_errs
        if kind in seen:
            errs.append(E.duplicate(f"{lp}.type", kind))
        seen.add(kind)
        errs += _limit_range_item(limit, kind, lp)
    return errs


def _limit_range_item(limit: dict, kind: str, path: str) -> Errors:
    errs: Errors = []
    values: dict[str, dict[str, Quantity]] = {}
    fields = ["max", "min", "maxLimitRequestRatio"]
    if kind == "Pod":
        for field in ("default", "defaultRequest"):
            if _m(limit, field):
                errs.append(E.forbidden(f"{path}.{field}",
                                        "may not be specified when `type` is 'Pod'"))
    else:
        fields += ["default", "defaultRequest"]
    for field in fields:
        values[field] = {}
        for name, raw in _m(limit, field).items():
            fp = f"{path}.{field}[{name}]"
            name_rule = _container_resource_name if kind in ("Pod", "Container") else resource_name
            errs += name_rule(name, fp)
            try:
                values[field][name] = parse_quantity(raw)
            except QuantityError as err:
                errs.append(E.invalid(fp, raw, str(err)))
    if kind == "PersistentVolumeClaim" and not ("storage" in values["min"]
                                                or "storage" in values["max"]):
        errs.append(E.required(f"{path}.limits",
                               "either minimum or maximum storage value is required, "
                               "but neither was provided"))
    return errs + _limit_range_order(values, path)


def _limit_range_order(values: dict[str, dict[str, Quantity]], path: str) -> Errors:
    errs: Errors = []
    names = set().union(*(v.keys() for v in values.values()))
    for k in sorted(names):
        lo, hi = values["min"].get(k), values["max"].get(k)
        default, request = values.get("default", {}).get(k), values.get("defaultRequest", {}).get(k)
        ratio = values["maxLimitRequestRatio"].get(k)
        if lo and hi and lo.value > hi.value:
            errs.append(E.invalid(f"{path}.min[{k}]", GoValue(str(lo)),
                                  f"min value {lo} is greater "
                                  f"than max value {hi}"))
        if request and lo and lo.value > request.value:
            errs.append(E.invalid(f"{path}.defaultRequest[{k}]", GoValue(str(request)),
                                  f"min value {lo} is greater than default request value "
                                  f"{request}"))
        if request and hi and request.value > hi.value:
            errs.append(E.invalid(f"{path}.defaultRequest[{k}]", GoValue(str(request)),
                                  f"default request value {request} is greater than max value "
                                  f"{hi}"))
        if request and default and request.value > default.value:
            errs.append(E.invalid(f"{path}.defaultRequest[{k}]", GoValue(str(request)),
                                  f"default request value {request} is greater than default limit "
                                  f"value {default}"))
        if default and lo and lo.value > default.value:
            errs.append(E.invalid(f"{path}.default[{k}]", GoValue(str(lo)),
                                  f"min value {lo} is greater than default value {default}"))
        if default and hi and default.value > hi.value:
            errs.append(E.invalid(f"{path}.default[{k}]", GoValue(str(hi)),
                                  f"default value {default} is greater than max value {hi}"))
        if ratio and ratio.value < 1:
            errs.append(E.invalid(f"{path}.maxLimitRequestRatio[{k}]", GoValue(str(ratio)),
                                  f"ratio {ratio} is less than 1"))
    return errs


_QUOTA_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "cpu", "memory", "ephemeral-storage", "requests.cpu",
    "requests.memory", "requests.storage", "requests.ephemeral-storage", "limits.cpu",
    "limits.memory", "limits.ephemeral-storage", "services.nodeports", "services.loadbalancers"})
_QUOTA_SCOPES = frozenset({"Terminating", "NotTerminating", "BestEffort", "NotBestEffort",
                           "PriorityClass", "CrossNamespacePodAffinity", "VolumeAttributesClass"})


def _quota_resource_name(name: str, path: str) -> Errors:
    errs = resource_name(name, path)
    if "/" not in name and name not in _QUOTA_RESOURCES and not name.startswith(
            ("hugepages-", "requests.hugepages-")):
        errs.append(E.invalid(path, name, "must be a standard resource for quota"))
    return errs


def validate_resource_quota(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    for section in ("spec", "status"):
        for field in (("hard",) if section == "spec" else ("hard", "used")):
            for name, raw in _m(_m(obj, section), field).items():
                fp = f"{section}.{field}[{name}]"
                errs += _quota_resource_name(name, fp)
                errs += resource_quantity(name, raw, fp)[1]
    scopes = _l(spec, "scopes")
    for scope in scopes:
        if scope not in _QUOTA_SCOPES:
            errs.append(E.invalid("spec.scopes", scopes, "unsupported scope"))
    for pair in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
        if all(s in scopes for s in pair):
            errs.append(E.invalid("spec.scopes", scopes, "conflicting scopes"))
    if old is not None and set(scopes) != set(_l(_m(old, "spec"), "scopes")):
        errs.append(E.invalid("spec.scopes", scopes, IMMUTABLE))
    return errs


def validate_storage_class(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    provisioner = _s(obj, "provisioner")
    if not provisioner:
        errs.append(E.required("provisioner"))
    else:
        errs += _invalid_each("provisioner", provisioner.lower(),
                              is_qualified_name(provisioner.lower()))
    params = _m(obj, "parameters")
    if len(params) > 512:
        errs.append(E.invalid("parameters", "Provisioner Parameters exceeded max allowed",
                              "must have at most 512 parameters"))
    elif sum(len(k) + len(str(v)) for k, v in params.items()) > 256 * 1024:
        errs.append(E.too_long_bytes("parameters", 256 * 1024))
    policy = obj.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        errs.append(E.not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        errs.append(E.required("volumeBindingMode"))
    elif mode not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(E.not_supported("volumeBindingMode", mode,
                                    ["Immediate", "WaitForFirstConsumer"]))
    if old is None:
        return errs
    if (obj.get("parameters") or {}) != (old.get("parameters") or {}):
        errs.append(E.forbidden("parameters", "updates to parameters are forbidden."))
    if provisioner != _s(old, "provisioner"):
        errs.append(E.forbidden("provisioner", "updates to provisioner are forbidden."))
    if obj.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.append(E.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
    return errs + immutable(mode, old.get("volumeBindingMode"), "volumeBindingMode")


_SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000,
                            "system-cluster-critical": 2000000000}
HIGHEST_USER_PRIORITY = 1000000000


def validate_priority_class(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    name, value = _s(_m(obj, "metadata"), "name"), _i(obj, "value")
    if name.startswith("system-"):
        problem = ""
        if name not in _SYSTEM_PRIORITY_CLASSES:
            problem = f"{name} is not a known system priority class"
        elif value != _SYSTEM_PRIORITY_CLASSES[name]:
            problem = f"value of {name} PriorityClass must be {_SYSTEM_PRIORITY_CLASSES[name]}"
        elif obj.get("globalDefault") is True:
            problem = f"globalDefault of {name} PriorityClass must be false"
        if problem:
            errs.append(E.forbidden("metadata.name",
                                    "priority class names with 'system-' prefix are "
                                    f"reserved for system use only. error: {problem}"))
    elif value > HIGHEST_USER_PRIORITY:
        errs.append(E.forbidden("value", "maximum allowed value of a user defined priority is "
                                         f"{HIGHEST_USER_PRIORITY}"))
    if obj.get("preemptionPolicy") is not None:
        errs += _preemption_policy(obj.get("preemptionPolicy"), "preemptionPolicy")
    if old is not None:
        if value != _i(old, "value"):
            errs.append(E.forbidden("value", "may not be changed in an update."))
        errs += immutable(obj.get("preemptionPolicy"), old.get("preemptionPolicy"),
                          "preemptionPolicy")
    return errs


# ============================================================================================
# 3e. networking.k8s.io, discovery.k8s.io, coordination.k8s.io
# ============================================================================================

_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def validate_ingress(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    rules = spec.get("rules")
    errs: Errors = []
    if not rules and spec.get("defaultBackend") is None:
        shown = GoValue("[]networking.IngressRule(nil)" if rules is None
                        else "[]networking.IngressRule{}")
        errs.append(E.invalid("spec", shown,
                              "either `defaultBackend` or `rules` must be specified"))
    if isinstance(spec.get("defaultBackend"), dict):
        errs += _ingress_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in _dicts(spec, "rules"):
        errs += _ingress_rule(rule, f"spec.rules[{i}]")
    for i, tls in _dicts(spec, "tls"):
        for j, host in enumerate(_l(tls, "hosts")):
            host = str(host)
            check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            errs += _invalid_each(f"spec.tls[{i}].hosts[{j}]", host, check(host))
        secret = _s(tls, "secretName")
        if secret:
            errs += _invalid_each(f"spec.tls[{i}].secretName", secret,
                                  name_is_dns_subdomain(secret))
    class_name = spec.get("ingressClassName")
    if isinstance(class_name, str):
        errs += _invalid_each("spec.ingressClassName", class_name,
                              name_is_dns_subdomain(class_name))
    return errs


def _ingress_rule(rule: dict, path: str) -> Errors:
    errs: Errors = []
    host = _s(rule, "host")
    if host:
        if not is_valid_ip(host):
            errs.append(E.invalid(f"{path}.host", host, "must be a DNS name, not an IP address"))
        check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
        errs += _invalid_each(f"{path}.host", host, check(host))
    http = rule.get("http")
    if isinstance(http, dict):
        if not _l(http, "paths"):
            errs.append(E.required(f"{path}.http.paths"))
        for j, ingress_path in _dicts(http, "paths"):
            errs += _ingress_path(ingress_path, f"{path}.http.paths[{j}]")
    return errs


def _ingress_path(entry: dict, path: str) -> Errors:
    kind = entry.get("pathType")
    if kind is None:
        return [E.required(f"{path}.pathType", "pathType must be specified")]
    url = _s(entry, "path")
    errs: Errors = []
    if kind in ("Exact", "Prefix"):
        if not url.startswith("/"):
            errs.append(E.invalid(f"{path}.path", url, "must be an absolute path"))
        for sequence in ("//", "/./", "/../", "%2f", "%2F"):
            if sequence in url:
                errs.append(E.invalid(f"{path}.path", url, f"must not contain '{sequence}'"))
        for suffix in ("/..", "/."):
            if url.endswith(suffix):
                errs.append(E.invalid(f"{path}.path", url, f"cannot end with '{suffix}'"))
    elif kind == "ImplementationSpecific":
        if url and not url.startswith("/"):
            errs.append(E.invalid(f"{path}.path", url, "must be an absolute path"))
    else:
        errs.append(E.not_supported(f"{path}.pathType", kind, _PATH_TYPES))
    return errs + _ingress_backend(_m(entry, "backend"), f"{path}.backend")


def _ingress_backend(backend: dict, path: str) -> Errors:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [E.invalid(path, "", "cannot set both resource and service backends")]
    if isinstance(resource, dict):
        return _typed_local_reference(resource, f"{path}.resource")
    if not isinstance(service, dict):
        return [E.invalid(path, "", "resource or service backend is required")]
    errs: Errors = []
    name = _s(service, "name")
    if not name:
        errs.append(E.required(f"{path}.service.name"))
    else:
        errs += _invalid_each(f"{path}.service.name", name, name_is_dns1035_label(name))
    port = _m(service, "port")
    port_name, number = _s(port, "name"), _i(port, "number")
    if port_name and number:
        errs.append(E.invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs += _invalid_each(f"{path}.service.port.name", port_name, is_valid_port_name(port_name))
    elif number:
        errs += _invalid_each(f"{path}.service.port.number", number, is_valid_port_num(number))
    else:
        errs.append(E.required(path, "port name or number is required"))
    return errs


def _typed_local_reference(ref: dict, path: str) -> Errors:
    errs: Errors = []
    group = ref.get("apiGroup")
    if isinstance(group, str):
        errs += _invalid_each(f"{path}.apiGroup", group, is_dns1123_subdomain(group))
    for field in ("kind", "name"):
        value = _s(ref, field)
        if not value:
            errs.append(E.required(f"{path}.{field}", f"{field} is required"))
        else:
            errs += _invalid_each(f"{path}.{field}", value, is_path_segment_name(value))
    return errs


def validate_ingress_class(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    controller = _s(spec, "controller")
    errs: Errors = []
    if len(controller) > 250:
        errs.append(E.too_long_bytes("spec.controller", 250))
    errs += _domain_prefixed_path(controller, "spec.controller")
    params = spec.get("parameters")
    if isinstance(params, dict):
        errs += _typed_local_reference(params, "spec.parameters")
        scope = params.get("scope")
        if scope is not None and scope not in ("Cluster", "Namespace"):
            errs.append(E.not_supported("spec.parameters.scope", scope, ["Cluster", "Namespace"]))
        if scope == "Namespace" and not params.get("namespace"):
            errs.append(E.required("spec.parameters.namespace", "`parameters.scope` is set to "
                                                                "'Namespace'"))
        if scope == "Cluster" and params.get("namespace") is not None:
            errs.append(E.forbidden("spec.parameters.namespace", "`parameters.scope` is set to "
                                                                 "'Cluster'"))
    if old is not None:
        errs += immutable(controller, _s(_m(old, "spec"), "controller"), "spec.controller")
    return errs


_HTTP_PATH = re.compile(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")


def _domain_prefixed_path(value: str, path: str) -> Errors:
    if not value:
        return [E.required(path)]
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [E.invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = _invalid_each(path, host, is_dns1123_subdomain(host))
    if not _HTTP_PATH.fullmatch(rest):
        errs.append(E.invalid(path, rest, regex_error("Invalid path", _HTTP_PATH.pattern)))
    return errs


def validate_network_policy(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs = validate_label_selector(_m(spec, "podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in _dicts(spec, direction):
            rp = f"spec.{direction}[{i}]"
            for j, port in _dicts(rule, "ports"):
                errs += _network_policy_port(port, f"{rp}.ports[{j}]")
            for j, peer in _dicts(rule, peers):
                errs += _network_policy_peer(peer, f"{rp}.{peers}[{j}]")
    types = _l(spec, "policyTypes")
    if len(types) > 2:
        listed = ", ".join(_go_quote(str(t)) for t in types)
        shown = GoValue("[]networking.PolicyType{" + listed + "}")
        return errs + [E.invalid("spec.policyTypes", shown,
                                 "may not specify more than two policyTypes")]
    for i, kind in enumerate(types):
        if kind not in ("Ingress", "Egress"):
            errs.append(E.not_supported(f"spec.policyTypes[{i}]", kind, ["Ingress", "Egress"]))
    return errs


def _network_policy_port(port: dict, path: str) -> Errors:
    errs: Errors = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
        errs.append(E.not_supported(f"{path}.protocol", protocol, ["TCP", "UDP", "SCTP"]))
    number, end = port.get("port"), port.get("endPort")
    if isinstance(number, int) and not isinstance(number, bool):
        errs += _invalid_each(f"{path}.port", number, is_valid_port_num(number))
        if isinstance(end, int):
            if end < number:
                errs.append(E.invalid(f"{path}.endPort", number,
                                      "must be greater than or equal to `port`"))
            errs += _invalid_each(f"{path}.endPort", end, is_valid_port_num(end))
    elif isinstance(number, str):
        if end is not None:
            errs.append(E.invalid(f"{path}.endPort", end,
                                  "may not be specified when `port` is non-numeric"))
        errs += _invalid_each(f"{path}.port", number, is_valid_port_name(number))
    elif end is not None:
        errs.append(E.invalid(f"{path}.endPort", end,
                              "may not be specified when `port` is not specified"))
    return errs


def _network_policy_peer(peer: dict, path: str) -> Errors:
    errs: Errors = []
    count = 0
    for field in ("podSelector", "namespaceSelector"):
        if isinstance(peer.get(field), dict):
            count += 1
            errs += validate_label_selector(peer[field], f"{path}.{field}")
    block = peer.get("ipBlock")
    if isinstance(block, dict):
        count += 1
        errs += _ip_block(block, f"{path}.ipBlock")
    if count == 0:
        errs.append(E.required(path, "must specify a peer"))
    elif count > 1 and isinstance(block, dict):
        errs.append(E.forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def _ip_block(block: dict, path: str) -> Errors:
    cidr = _s(block, "cidr")
    if not cidr:
        return [E.required(f"{path}.cidr")]
    errs = _invalid_each(f"{path}.cidr", cidr, is_valid_cidr(cidr))
    if errs:
        return errs
    network = ipaddress.ip_network(cidr, strict=False)
    for i, text in enumerate(_l(block, "except")):
        ep = f"{path}.except[{i}]"
        msgs = is_valid_cidr(str(text))
        if msgs:
            errs += _invalid_each(ep, text, msgs)
            continue
        inner = ipaddress.ip_network(str(text), strict=False)
        if (inner.version != network.version or inner.network_address not in network
                or network.prefixlen >= inner.prefixlen):
            errs.append(E.invalid(ep, text, "must be a strict subset of `cidr`"))
    return errs


def validate_endpoint_slice(obj: dict, old: dict | None) -> Errors:
    errs: Errors = []
    kind = _s(obj, "addressType")
    if not kind:
        errs.append(E.required("addressType"))
    elif kind not in ("FQDN", "IPv4", "IPv6"):
        errs.append(E.not_supported("addressType", kind, ["FQDN", "IPv4", "IPv6"]))
    endpoints = _l(obj, "endpoints")
    if len(endpoints) > 1000:
        errs.append(E.too_many("endpoints", len(endpoints), 1000))
    for i, endpoint in _dicts(obj, "endpoints"):
        errs += _slice_endpoint(endpoint, kind, f"endpoints[{i}]")
    names: set[str] = set()
    for i, port in _dicts(obj, "ports"):
        pp = f"ports[{i}]"
        name = _s(port, "name")
        if name:
            errs += _invalid_each(f"{pp}.name", name, is_dns1123_label(name))
        if name in names:
            errs.append(E.duplicate(f"{pp}.name", name))
        names.add(name)
        if port.get("protocol") is None:
            errs.append(E.required(f"{pp}.protocol"))
        elif port["protocol"] not in _PROTOCOLS:
            errs.append(E.not_supported(f"{pp}.protocol", port["protocol"], _PROTOCOLS))
        if isinstance(port.get("appProtocol"), str):
            errs += _invalid_each(f"{pp}.appProtocol", port["appProtocol"],
                                  is_qualified_name(port["appProtocol"]))
    if old is not None:
        errs += immutable(kind, _s(old, "addressType"), "addressType")
    return errs


def _slice_endpoint(endpoint: dict, kind: str, path: str) -> Errors:
    errs: Errors = []
    addresses = _l(endpoint, "addresses")
    if not addresses:
        errs.append(E.required(f"{path}.addresses", "must contain at least 1 address"))
    elif len(addresses) > 100:
        errs.append(E.too_many(f"{path}.addresses", len(addresses), 100))
    for i, address in enumerate(addresses):
        ap, text = f"{path}.addresses[{i}]", str(address)
        if kind in ("IPv4", "IPv6"):
            version = 4 if kind == "IPv4" else 6
            try:
                ok = ipaddress.ip_address(text).version == version
            except ValueError:
                ok = False
            if not ok:
                errs.append(E.invalid(ap, text, f"must be a valid {kind} address"))
            else:
                errs += _non_special_ip(text, ap)
        elif kind == "FQDN":
            errs += _fqdn(text.rstrip("."), ap)
    if isinstance(endpoint.get("nodeName"), str):
        errs += _invalid_each(f"{path}.nodeName", endpoint["nodeName"],
                              name_is_dns_subdomain(endpoint["nodeName"]))
    if isinstance(endpoint.get("hostname"), str):
        errs += _invalid_each(f"{path}.hostname", endpoint["hostname"],
                              is_dns1123_label(endpoint["hostname"]))
    return errs + validate_labels(endpoint.get("deprecatedTopology"), f"{path}.deprecatedTopology")


def _fqdn(name: str, path: str) -> Errors:
    if not name:
        return [E.required(path)]
    msgs = is_dns1123_subdomain(name)
    if msgs:
        return [E.invalid(path, name, ",".join(msgs))]
    if len(name.split(".")) < 2:
        return [E.invalid(path, name,
                          "should be a domain with at least two segments separated by dots")]
    return []


def validate_lease(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        errs.append(E.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        errs.append(E.invalid("spec.leaseTransitions", transitions,
                              "must be greater than or equal to 0"))
    if _s(spec, "preferredHolder") and not _s(spec, "strategy"):
        errs.append(E.forbidden("spec.preferredHolder",
                                "may only be specified if `strategy` is defined"))
    return errs


# ============================================================================================
# 3f. rbac.authorization.k8s.io, policy, autoscaling, events
# ============================================================================================

RBAC_GROUP = "rbac.authorization.k8s.io"


def _policy_rules(obj: dict, namespaced: bool) -> Errors:
    errs: Errors = []
    for i, rule in _dicts(obj, "rules"):
        rp = f"rules[{i}]"
        if not _l(rule, "verbs"):
            errs.append(E.required(f"{rp}.verbs", "verbs must contain at least one value"))
        urls = _l(rule, "nonResourceURLs")
        if urls:
            if namespaced:
                errs.append(E.invalid(f"{rp}.nonResourceURLs", go_string_slice(urls),
                                      "namespaced rules cannot apply to non-resource URLs"))
            if _l(rule, "apiGroups") or _l(rule, "resources") or _l(rule, "resourceNames"):
                errs.append(E.invalid(f"{rp}.nonResourceURLs", go_string_slice(urls),
                                      "rules cannot apply to both regular resources and "
                                      "non-resource URLs"))
            continue
        if not _l(rule, "apiGroups"):
            errs.append(E.required(f"{rp}.apiGroups",
                                   "resource rules must supply at least one api group"))
        if not _l(rule, "resources"):
            errs.append(E.required(f"{rp}.resources",
                                   "resource rules must supply at least one resource"))
    return errs


def validate_role(obj: dict, old: dict | None) -> Errors:
    return _policy_rules(obj, True)


def validate_cluster_role(obj: dict, old: dict | None) -> Errors:
    errs = _policy_rules(obj, False)
    aggregation = obj.get("aggregationRule")
    if isinstance(aggregation, dict):
        selectors = _l(aggregation, "clusterRoleSelectors")
        if not selectors:
            errs.append(E.required("aggregationRule.clusterRoleSelectors", "at least one "
                                   "clusterRoleSelector required if aggregationRule is non-nil"))
        for i, sel in enumerate(selectors):
            errs += validate_label_selector(sel, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _role_binding(obj: dict, old: dict | None, namespaced: bool) -> Errors:
    ref = _m(obj, "roleRef")
    errs: Errors = []
    if _s(ref, "apiGroup") != RBAC_GROUP:
        errs.append(E.not_supported("roleRef.apiGroup", _s(ref, "apiGroup"), [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if _s(ref, "kind") not in kinds:
        errs.append(E.not_supported("roleRef.kind", _s(ref, "kind"), kinds))
    if not _s(ref, "name"):
        errs.append(E.required("roleRef.name"))
    else:
        errs += _invalid_each("roleRef.name", _s(ref, "name"),
                              is_path_segment_name(_s(ref, "name")))
    for i, subject in _dicts(obj, "subjects"):
        errs += _subject(subject, namespaced, f"subjects[{i}]")
    if old is not None:
        old_ref = _m(old, "roleRef")
        if any(_s(ref, f) != _s(old_ref, f) for f in ("apiGroup", "kind", "name")):
            group, kind, name = (_go_quote(_s(ref, f)) for f in ("apiGroup", "kind", "name"))
            shown = GoValue(f"rbac.RoleRef{{APIGroup:{group}, Kind:{kind}, Name:{name}}}")
            errs.append(E.invalid("roleRef", shown, "cannot change roleRef"))
    return errs


def _subject(subject: dict, namespaced: bool, path: str) -> Errors:
    errs: Errors = []
    name, kind, group = _s(subject, "name"), _s(subject, "kind"), _s(subject, "apiGroup")
    if not name:
        errs.append(E.required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += _invalid_each(f"{path}.name", name, name_is_dns_subdomain(name))
        if group:
            errs.append(E.not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not _s(subject, "namespace"):
            errs.append(E.required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            errs.append(E.not_supported(f"{path}.apiGroup", group, [RBAC_GROUP]))
    else:
        errs.append(E.not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return errs


def validate_role_binding(obj: dict, old: dict | None) -> Errors:
    return _role_binding(obj, old, True)


def validate_cluster_role_binding(obj: dict, old: dict | None) -> Errors:
    return _role_binding(obj, old, False)


def validate_pdb(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        errs.append(E.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for field, value in (("minAvailable", min_available), ("maxUnavailable", max_unavailable)):
        if value is not None:
            errs += _int_or_percent(value, f"spec.{field}")
            errs += _not_more_than_100_percent(value, f"spec.{field}")
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.append(E.not_supported("spec.unhealthyPodEvictionPolicy", policy,
                                    ["AlwaysAllow", "IfHealthyBudget"]))
    return errs


_METRIC_TYPES = ["Object", "Pods", "Resource", "External", "ContainerResource"]


def validate_hpa(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    min_replicas, max_replicas = spec.get("minReplicas"), _i(spec, "maxReplicas")
    if isinstance(min_replicas, int) and min_replicas < 1:
        errs.append(E.invalid("spec.minReplicas", min_replicas,
                              "must be greater than or equal to 1"))
    if max_replicas < 1:
        errs.append(E.invalid("spec.maxReplicas", max_replicas, "must be greater than 0"))
    if isinstance(min_replicas, int) and max_replicas < min_replicas:
        errs.append(E.invalid("spec.maxReplicas", max_replicas,
                              "must be greater than or equal to `minReplicas`"))
    ref = _m(spec, "scaleTargetRef")
    for field in ("kind", "name"):
        if not _s(ref, field):
            errs.append(E.required(f"spec.scaleTargetRef.{field}"))
        else:
            errs += _invalid_each(f"spec.scaleTargetRef.{field}", _s(ref, field),
                                  is_path_segment_name(_s(ref, field)))
    cpu = spec.get("targetCPUUtilizationPercentage")  # autoscaling/v1
    if isinstance(cpu, int) and cpu < 1:
        errs.append(E.invalid("spec.targetCPUUtilizationPercentage", cpu, "must be greater than 0"))
    for i, metric in _dicts(spec, "metrics"):
        errs += _metric(metric, f"spec.metrics[{i}]")
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for direction in ("scaleUp", "scaleDown"):
            if isinstance(behavior.get(direction), dict):
                errs += _scaling_rules(behavior[direction], f"spec.behavior.{direction}")
    return errs


def _metric(metric: dict, path: str) -> Errors:
    kind = _s(metric, "type")
    errs: Errors = []
    if not kind:
        errs.append(E.required(f"{path}.type", "must specify a metric source type"))
    if kind not in _METRIC_TYPES:
        return errs + [E.not_supported(f"{path}.type", kind, _METRIC_TYPES)]
    expected = kind[0].lower() + kind[1:]
    present = [f for f in ("object", "pods", "resource", "external", "containerResource")
               if metric.get(f) is not None]
    if expected not in present:
        errs.append(E.required(f"{path}.{expected}", "must populate information for the given "
                                                     "metric source"))
    errs += [E.forbidden(f"{path}.{f}", "must populate the given metric source only")
             for f in sorted(present) if f != expected and len(present) != 1]
    source = metric.get(expected)
    if isinstance(source, dict):
        target = _m(source, "target")
        errs += _metric_target(target, f"{path}.{expected}.target")
        if expected in ("resource", "containerResource"):
            if not _s(source, "name"):
                errs.append(E.required(f"{path}.{expected}.name", "must specify a resource name"))
            given = [target.get(f) is not None for f in ("averageUtilization", "averageValue")]
            if not any(given):
                errs.append(E.required(f"{path}.{expected}.target.averageUtilization",
                                       "must set either a target raw value or a target "
                                       "utilization"))
            elif all(given):
                errs.append(E.forbidden(f"{path}.{expected}.target.averageValue",
                                        "may not set both a target raw value and a target "
                                        "utilization"))
    return errs


def _metric_target(target: dict, path: str) -> Errors:
    errs: Errors = []
    kind = _s(target, "type")
    if not kind:
        errs.append(E.required(f"{path}.type", "must specify a metric target type"))
    elif kind not in ("Utilization", "Value", "AverageValue"):
        errs.append(E.invalid(f"{path}.type", kind,
                              "must be either Utilization, Value, or AverageValue"))
    for field in ("value", "averageValue"):
        raw = target.get(field)
        if raw is not None:
            try:
                if parse_quantity(raw).value <= 0:
                    errs.append(E.invalid(f"{path}.{field}", GoValue(str(parse_quantity(raw))),
                                          "must be positive"))
            except QuantityError as err:
                errs.append(E.invalid(f"{path}.{field}", raw, str(err)))
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization < 1:
        errs.append(E.invalid(f"{path}.averageUtilization", utilization, "must be greater than 0"))
    return errs


def _scaling_rules(rules: dict, path: str) -> Errors:
    errs: Errors = []
    window = rules.get("stabilizationWindowSeconds")
    if isinstance(window, int):
        if window < 0:
            errs.append(E.invalid(f"{path}.stabilizationWindowSeconds", window, NEGATIVE))
        elif window > 3600:
            errs.append(E.invalid(f"{path}.stabilizationWindowSeconds", window,
                                  "must be less than or equal to 3600"))
    select = rules.get("selectPolicy")
    if select is not None and select not in ("Disabled", "Max", "Min"):
        errs.append(E.not_supported(f"{path}.selectPolicy", select, ["Disabled", "Max", "Min"]))
    for i, policy in _dicts(rules, "policies"):
        pp = f"{path}.policies[{i}]"
        if _s(policy, "type") not in ("Pods", "Percent"):
            errs.append(E.not_supported(f"{pp}.type", _s(policy, "type"), ["Percent", "Pods"]))
        if _i(policy, "value") <= 0:
            errs.append(E.invalid(f"{pp}.value", _i(policy, "value"), "must be greater than zero"))
        period = _i(policy, "periodSeconds")
        if period <= 0:
            errs.append(E.invalid(f"{pp}.periodSeconds", period, "must be greater than zero"))
        elif period > 1800:
            errs.append(E.invalid(f"{pp}.periodSeconds", period,
                                  "must be less than or equal to 1800"))
    return errs


def _event_namespace_rule(obj: dict, regarding: str) -> Errors:
    namespace = _s(_m(obj, "metadata"), "namespace")
    involved = _s(_m(obj, regarding), "namespace")
    if obj.get("eventTime") is None:
        ok = (namespace == involved) if involved else namespace in ("", "default")
    else:
        ok = bool(involved) or namespace in ("default", "kube-system")
    errs = [] if ok else [E.invalid("involvedObject.namespace", involved,
                                    "does not match event.namespace")]
    return errs + _invalid_each("namespace", namespace, is_dns1123_subdomain(namespace))


def _event_reporting(obj: dict, controller_field: str) -> Errors:
    """Upstream validates the internal Event, so the note's path is its internal ``message``."""
    errs: Errors = []
    controller = _s(obj, controller_field)
    if not controller:
        errs.append(E.required(controller_field))
    errs += _invalid_each(controller_field, controller, is_qualified_name(controller))
    for field, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
        if not _s(obj, field):
            errs.append(E.required(field))
        if len(_s(obj, field)) > limit:
            errs.append(E.invalid(field, "", f"can have at most {limit} characters"))
    message = _s(obj, "message") or _s(obj, "note")
    if len(message) > 1024:
        errs.append(E.invalid("message", "", "can have at most 1024 characters"))
    return errs


def validate_core_event(obj: dict, old: dict | None) -> Errors:
    """core/v1 Events only get upstream's "legacy" checks — not even the name is validated."""
    errs = _event_namespace_rule(obj, "involvedObject")
    if obj.get("eventTime") is not None:
        errs += _event_reporting(obj, "reportingComponent")
    return errs


def _event_series(series: Any) -> Errors:
    if not isinstance(series, dict):
        return []
    errs = []
    if _i(series, "count") < 2:
        errs.append(E.invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(E.required("series.lastObservedTime"))
    return errs


# events.k8s.io fields and the internal names upstream's paths use for them
_EVENT_DEPRECATED = (("deprecatedFirstTimestamp", "firstTimestamp"),
                     ("deprecatedLastTimestamp", "lastTimestamp"),
                     ("deprecatedCount", "count"), ("deprecatedSource", "source"))
_EVENT_IMMUTABLE = (("regarding", "involvedObject"), ("reason", "reason"), ("note", "message"),
                    *_EVENT_DEPRECATED, ("type", "type"), ("eventTime", "eventTime"),
                    ("action", "action"), ("related", "related"),
                    ("reportingController", "reportingController"),
                    ("reportingInstance", "reportingInstance"))


def validate_events_event(obj: dict, old: dict | None) -> Errors:
    """``ValidateEventCreate``/``ValidateEventUpdate`` for events.k8s.io/v1: the legacy checks
    plus the strict ones of the new API."""
    errs = _event_namespace_rule(obj, "regarding")
    if obj.get("eventTime") is not None:
        errs += _event_reporting(obj, "reportingController")
    if old is not None:
        if _semantic(obj.get("series")) != _semantic(old.get("series")):
            errs += _event_series(obj.get("series"))
        for field, path in _EVENT_IMMUTABLE:
            errs += immutable(obj.get(field), old.get(field), path)
        return errs
    errs += _event_series(obj.get("series"))
    if obj.get("eventTime") is None:
        errs.append(E.required("eventTime"))
    kind = _s(obj, "type")
    if kind not in ("Normal", "Warning"):
        errs.append(E.invalid("type", "", f"has invalid value: {kind}"))
    for field, path in _EVENT_DEPRECATED:
        if _semantic(obj.get(field)) is not None:
            errs.append(E.invalid(path, "", "needs to be unset"))
    return errs


# ============================================================================================
# 3g. CustomResourceDefinitions (apiextensions-apiserver/pkg/apis/apiextensions/validation)
# ============================================================================================

_PRINTER_TYPES = ["boolean", "date", "integer", "number", "string"]
_PRINTER_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]


def validate_crd(obj: dict, old: dict | None) -> Errors:
    spec, meta = _m(obj, "spec"), _m(obj, "metadata")
    names, group = _m(spec, "names"), _s(spec, "group")
    required_name = f"{_s(names, 'plural')}.{group}"

    def crd_name(name: str, prefix: bool) -> list[str]:
        msgs = name_is_dns_subdomain(name, prefix)
        if name != required_name:
            msgs = msgs + ['must be spec.names.plural+"."+spec.group']
        return msgs

    errs = (validate_object_meta(meta, False, crd_name, kube_finalizers=False) if old is None
            else validate_object_meta_update(meta, _m(old, "metadata"), kube_finalizers=False))
    errs += _crd_spec(spec)
    errs += _crd_stored_versions(obj)
    if old is not None:
        errs += _crd_update(spec, _m(old, "spec"), old)
    return errs


def _crd_spec(spec: dict) -> Errors:
    errs: Errors = []
    group = _s(spec, "group")
    if not group:
        errs.append(E.required("spec.group"))
    elif is_dns1123_subdomain(group):
        errs.append(E.invalid("spec.group", group, ",".join(is_dns1123_subdomain(group))))
    elif len(group.split(".")) < 2:
        errs.append(E.invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = _s(spec, "scope")
    if not scope:
        errs.append(E.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(E.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    if spec.get("preserveUnknownFields") is True:
        errs.append(E.invalid("spec.preserveUnknownFields", True, "must be false"))
    errs += _crd_versions(spec)
    errs += _crd_names(_m(spec, "names"), "spec.names")
    conversion = spec.get("conversion")
    if isinstance(conversion, dict):
        strategy = _s(conversion, "strategy")
        if strategy not in ("None", "Webhook"):
            errs.append(E.not_supported("spec.conversion.strategy", strategy, ["None", "Webhook"]))
        if strategy == "Webhook" and not isinstance(conversion.get("webhook"), dict):
            errs.append(E.required("spec.conversion.webhook",
                                   "must be present when strategy is Webhook"))
    return errs


def _crd_versions(spec: dict) -> Errors:
    errs: Errors = []
    versions = [v for _, v in _dicts(spec, "versions")]
    names = [_s(v, "name") for v in versions]
    for i, version in enumerate(versions):
        vp = f"spec.versions[{i}]"
        msgs = is_dns1035_label(names[i])
        if msgs:
            errs.append(E.invalid(f"{vp}.name", names[i], ",".join(msgs)))
        errs += _crd_version(version, vp)
    shown = spec.get("versions") if versions else GoValue(
        "[]apiextensions.CustomResourceDefinitionVersion(nil)")
    if len(set(names)) != len(names):
        errs.append(E.invalid("spec.versions", shown, "must contain unique version names"))
    if sum(1 for v in versions if v.get("storage") is True) != 1:
        errs.append(E.invalid("spec.versions", shown,
                              "must have exactly one version marked as storage version"))
    return errs


def _crd_version(version: dict, path: str) -> Errors:
    schema = _m(version, "schema").get("openAPIV3Schema")
    errs: Errors = []
    if not isinstance(schema, dict):
        errs.append(E.required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
    else:
        errs += structural_schema_errors(schema, f"{path}.schema.openAPIV3Schema")
    for i, column in _dicts(version, "additionalPrinterColumns"):
        cp = f"{path}.additionalPrinterColumns[{i}]"
        if not _s(column, "name"):
            errs.append(E.required(f"{cp}.name"))
        kind = _s(column, "type")
        if not kind:
            errs.append(E.required(f"{cp}.type", "must be one of " + ",".join(_PRINTER_TYPES)))
        elif kind not in _PRINTER_TYPES:
            errs.append(E.not_supported(f"{cp}.type", kind, _PRINTER_TYPES))
        fmt = _s(column, "format")
        if fmt and fmt not in _PRINTER_FORMATS:
            errs.append(E.not_supported(f"{cp}.format", fmt, _PRINTER_FORMATS))
        if not _s(column, "jsonPath"):
            errs.append(E.required(f"{cp}.jsonPath"))
    scale = _m(version, "subresources").get("scale")
    if isinstance(scale, dict):
        errs += _crd_scale(scale, f"{path}.subresources.scale")
    return errs


def _crd_scale(scale: dict, path: str) -> Errors:
    errs: Errors = []
    for field, prefixes, where in (("specReplicasPath", (".spec.",), ".spec"),
                                   ("statusReplicasPath", (".status.",), ".status")):
        value = _s(scale, field)
        if not value:
            errs.append(E.required(f"{path}.{field}"))
        elif not value.startswith(prefixes):
            errs.append(E.invalid(f"{path}.{field}", value, f"should be a json path under {where}"))
    selector = _s(scale, "labelSelectorPath")
    if selector and not selector.startswith((".spec.", ".status.")):
        errs.append(E.invalid(f"{path}.labelSelectorPath", selector,
                              "should be a json path under either .spec or .status"))
    return errs


def _crd_names(names: dict, path: str) -> Errors:
    errs: Errors = []
    for field in ("plural", "singular", "kind", "listKind"):
        if not _s(names, field):
            errs.append(E.required(f"{path}.{field}"))
    for field in ("plural", "singular"):
        value = _s(names, field)
        if value and is_dns1035_label(value):
            errs.append(E.invalid(f"{path}.{field}", value, ",".join(is_dns1035_label(value))))
    for field in ("kind", "listKind"):
        value = _s(names, field)
        if value and is_dns1035_label(value.lower()):
            errs.append(E.invalid(f"{path}.{field}", value, "may have mixed case, but should "
                                  "otherwise match: " + ",".join(is_dns1035_label(value.lower()))))
    for field in ("shortNames", "categories"):
        for i, value in enumerate(_l(names, field)):
            msgs = is_dns1035_label(str(value))
            if msgs:
                errs.append(E.invalid(f"{path}.{field}[{i}]", value, ",".join(msgs)))
    if _s(names, "kind") and _s(names, "kind") == _s(names, "listKind"):
        errs.append(E.invalid(f"{path}.listKind", _s(names, "listKind"),
                              "kind and listKind may not be the same"))
    return errs


def _crd_stored_versions(obj: dict) -> Errors:
    stored = _l(_m(obj, "status"), "storedVersions")
    versions = {_s(v, "name"): v for _, v in _dicts(_m(obj, "spec"), "versions")}
    errs: Errors = []
    if not stored:
        return [E.invalid("status.storedVersions", go_string_slice(stored or None),
                          "must have at least one stored version")]
    for i, name in enumerate(stored):
        if name not in versions:
            errs.append(E.invalid(f"status.storedVersions[{i}]", name,
                                  "must appear in spec.versions"))
    for name, version in versions.items():
        if version.get("storage") is True and name not in stored:
            errs.append(E.invalid("status.storedVersions", go_string_slice(stored),
                                  f"must have the storage version {name}"))
    return errs


def _crd_update(spec: dict, old_spec: dict, old: dict) -> Errors:
    errs = immutable(_s(spec, "group"), _s(old_spec, "group"), "spec.group")
    errs += immutable(_s(_m(spec, "names"), "plural"), _s(_m(old_spec, "names"), "plural"),
                      "spec.names.plural")
    established = any(_s(c, "type") == "Established" and _s(c, "status") == "True"
                      for _, c in _dicts(_m(old, "status"), "conditions"))
    if established:
        errs += immutable(_s(spec, "scope"), _s(old_spec, "scope"), "spec.scope")
        errs += immutable(_s(_m(spec, "names"), "kind"), _s(_m(old_spec, "names"), "kind"),
                          "spec.names.kind")
    return errs


def structural_schema_errors(schema: dict, path: str) -> Errors:
    """The structural-schema rules a CRD's ``openAPIV3Schema`` must satisfy (the ones that
    matter for pruning, defaulting and validation; not the value-validation restrictions)."""
    errs: Errors = []
    _structural(schema, path, "root", errs)
    return sorted(errs, key=lambda e: e.field)


_TYPE_REQUIRED = {"root": "must not be empty at the root",
                  "item": "must not be empty for specified array items",
                  "field": "must not be empty for specified object fields"}


def _structural(node: dict, path: str, level: str, errs: Errors) -> None:
    kind = _s(node, "type")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = node.get("x-kubernetes-embedded-resource") is True
    if not kind and not (int_or_string or preserve or embedded):
        errs.append(E.required(f"{path}.type", _TYPE_REQUIRED[level]))
    if level == "root" and kind and kind != "object":
        errs.append(E.invalid(f"{path}.type", kind, "must be object at the root"))
    if kind == "array" and not isinstance(node.get("items"), dict):
        errs.append(E.required(f"{path}.items", "must be specified"))
    if node.get("properties") and node.get("additionalProperties") not in (None, False):
        errs.append(E.forbidden(f"{path}.additionalProperties",
                                "additionalProperties and properties are mutual exclusive"))
    if int_or_string and preserve:
        errs.append(E.invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                              "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and embedded:
        errs.append(E.invalid(f"{path}.x-kubernetes-embedded-resource", True,
                              "must be false if x-kubernetes-int-or-string is true"))
    if embedded and kind != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        errs.append(E.invalid(f"{path}.type", kind, detail) if kind
                    else E.required(f"{path}.type", detail))
    errs += _list_type_rules(node, path)
    props = _m(node, "properties")
    if level == "root" and isinstance(props.get("metadata"), dict):
        allowed = set(_m(props["metadata"], "properties")) <= {"name", "generateName"}
        if not allowed or _s(props["metadata"], "type") not in ("", "object"):
            errs.append(E.forbidden(f"{path}.properties[metadata]",
                                    "must not specify anything other than name and generateName, "
                                    "but metadata is implicitly specified"))
    for key, child in props.items():
        if isinstance(child, dict):
            _structural(child, f"{path}.properties[{key}]", "field", errs)
    if isinstance(node.get("items"), dict):
        _structural(node["items"], f"{path}.items", "item", errs)
    if isinstance(node.get("additionalProperties"), dict):
        _structural(node["additionalProperties"], f"{path}.additionalProperties", "field", errs)


def _list_type_rules(node: dict, path: str) -> Errors:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    errs: Errors = []
    if list_type is not None and list_type not in ("atomic", "map", "set"):
        errs.append(E.not_supported(f"{path}.x-kubernetes-list-type", list_type,
                                    ["atomic", "map", "set"]))
    if list_type == "map" and not keys:
        errs.append(E.required(f"{path}.x-kubernetes-list-map-keys",
                               "must not be empty if x-kubernetes-list-type is map"))
    if keys and list_type != "map":
        errs.append(E.forbidden(f"{path}.x-kubernetes-list-map-keys",
                                "must be empty if x-kubernetes-list-type is not map"))
    return errs


# ============================================================================================
# Custom resources: kube-openapi's validator over a CRD schema
# ============================================================================================


def _go_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_UUID = re.compile(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")

_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": lambda s: re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", s) is not None,
    "date": lambda s: re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None,
    "byte": lambda s: _base64_error_at(s) is None,
    "uuid": lambda s: _UUID.fullmatch(s) is not None,
    "ipv4": lambda s: not is_valid_ip(s) and ":" not in s,
    "ipv6": lambda s: not is_valid_ip(s) and ":" in s,
    "cidr": lambda s: not is_valid_cidr(s),
    "hostname": lambda s: not is_dns1123_subdomain(s.lower()),
    "email": lambda s: re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", s) is not None,
    "mac": lambda s: re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", s) is not None,
    "duration": lambda s: _GO_DURATION.fullmatch(s) is not None or s == "0",
}


def _kw_number(node: dict, key: str) -> float | None:
    """A numeric keyword of a CRD schema; a malformed one is ignored, never trusted."""
    value = node.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _kw_count(node: dict, key: str) -> int | None:
    value = node.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _kw_str(node: dict, key: str) -> str | None:
    value = node.get(key)
    return value if isinstance(value, str) else None


def _kw_schemas(node: dict, key: str) -> list[dict]:
    value = node.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class _CustomValidator:
    """go-openapi's SchemaValidator, as the apiextensions apiserver reports it. Schema keywords
    are read defensively: a stored CRD schema is data, and a malformed keyword is ignored."""

    def __init__(self) -> None:
        self.errors: Errors = []

    def check(self, value: Any, node: Any, path: str) -> None:
        if not isinstance(node, dict) or not self._type(value, node, path) or value is None:
            return
        enum = node.get("enum")
        if isinstance(enum, list) and not any(_json_equal(value, allowed) for allowed in enum):
            shown = [a if isinstance(a, str) else _json_text(a) for a in enum]
            self.errors.append(E.not_supported(path, value, shown))
        if isinstance(value, str):
            self._string(value, node, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._number(value, node, path)
        elif isinstance(value, list):
            self._array(value, node, path)
        elif isinstance(value, dict):
            self._object(value, node, path)
        self._combinators(value, node, path)

    def _type(self, value: Any, node: dict, path: str) -> bool:
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        expected = "integer,string" if int_or_string else _kw_str(node, "type")
        if value is None:
            if node.get("nullable") is True or not expected:
                return True
            self.errors.append(_type_error(path, expected, value))
            return False
        actual = json_type(value)
        if int_or_string:
            ok = actual in ("integer", "string")
        else:
            ok = (not expected or actual == expected
                  or (expected == "number" and actual == "integer"))
        if not ok:
            self.errors.append(_type_error(path, expected or "", value))
        return ok

    def _string(self, value: str, node: dict, path: str) -> None:
        length = len(value)
        longest, shortest = _kw_count(node, "maxLength"), _kw_count(node, "minLength")
        if longest is not None and length > longest:
            self.errors.append(E.too_long_max_length(path, longest))
        if shortest is not None and length < shortest:
            self.errors.append(E.invalid(path, value, f"{path} in body should be at least "
                                                      f"{shortest} chars long"))
        pattern = _kw_str(node, "pattern")
        if pattern is not None and _regex(pattern).search(value) is None:
            self.errors.append(E.invalid(path, value, f"{path} in body should match '{pattern}'"))
        fmt = _kw_str(node, "format") or ""
        check = _FORMAT_CHECKS.get(fmt)
        if check is not None and not check(value):
            self.errors.append(E.invalid(path, value,
                                         f'{path} in body must be of type {fmt}: "{value}"'))

    def _number(self, value: float, node: dict, path: str) -> None:
        low, high = _kw_number(node, "minimum"), _kw_number(node, "maximum")
        if low is not None:
            if node.get("exclusiveMinimum") is True and value <= low:
                self._out_of_range(value, path, f"greater than {_go_number(low)}")
            elif value < low:
                self._out_of_range(value, path, f"greater than or equal to {_go_number(low)}")
        if high is not None:
            if node.get("exclusiveMaximum") is True and value >= high:
                self._out_of_range(value, path, f"less than {_go_number(high)}")
            elif value > high:
                self._out_of_range(value, path, f"less than or equal to {_go_number(high)}")
        step = _kw_number(node, "multipleOf")
        if step and step > 0 and Decimal(str(value)) % Decimal(str(step)) != 0:
            self._out_of_range(value, path, f"a multiple of {_go_number(step)}")
        if (node.get("format") == "int32" and isinstance(value, int)
                and not _INT32[0] <= value <= _INT32[1]):
            self.errors.append(E.invalid(path, value,
                                         f'{path} in body must be of type int32: "{value}"'))

    def _out_of_range(self, value: float, path: str, bound: str) -> None:
        self.errors.append(E.invalid(path, value, f"{path} in body should be {bound}"))

    def _array(self, value: list, node: dict, path: str) -> None:
        most, least = _kw_count(node, "maxItems"), _kw_count(node, "minItems")
        if most is not None and len(value) > most:
            self.errors.append(E.too_many(path, len(value), most))
        if least is not None and len(value) < least:
            self.errors.append(E.invalid(path, len(value), f"{path} in body should have at least "
                                                           f"{least} items"))
        if node.get("uniqueItems") is True and _has_duplicates(value):
            self.errors.append(E.invalid(path, "", f"{path} in body shouldn't contain duplicates"))
        items = node.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                self.check(item, items, f"{path}[{i}]")
        self.errors += _list_type_errors(value, node, path)

    def _object(self, value: dict, node: dict, path: str) -> None:
        most, least = _kw_count(node, "maxProperties"), _kw_count(node, "minProperties")
        if most is not None and len(value) > most:
            self.errors.append(E.too_many(path, len(value), most))
        if least is not None and len(value) < least:
            self.errors.append(E.invalid(path, len(value), f"{path} in body should have at least "
                                                           f"{least} properties"))
        required = node.get("required")
        for name in required if isinstance(required, list) else ():
            if isinstance(name, str) and name not in value:
                self.errors.append(E.required(_child(path, name)))
        props = node.get("properties")
        props = props if isinstance(props, dict) else {}
        extra = node.get("additionalProperties")
        for key, child in value.items():
            sub = props.get(key)
            if not isinstance(sub, dict):
                sub = extra if isinstance(extra, dict) else None
            if sub is not None:
                self.check(child, sub, _child(path, key))

    def _combinators(self, value: Any, node: dict, path: str) -> None:
        for sub in _kw_schemas(node, "allOf"):
            self.check(value, sub, path)
        name = path or "."
        any_of = _kw_schemas(node, "anyOf")
        if any_of and not any(_passes(value, sub, path) for sub in any_of):
            self.errors.append(E.invalid(path, "", f"{name} in body must validate at least one "
                                                   "schema (anyOf)"))
        one_of = _kw_schemas(node, "oneOf")
        if one_of and sum(_passes(value, sub, path) for sub in one_of) != 1:
            self.errors.append(E.invalid(path, "", f"{name} in body must validate one and only one "
                                                   "schema (oneOf)"))
        not_ = node.get("not")
        if isinstance(not_, dict) and _passes(value, not_, path):
            self.errors.append(E.invalid(path, "",
                                         f"{name} in body must not validate the schema (not)"))


def _passes(value: Any, node: dict, path: str) -> bool:
    validator = _CustomValidator()
    validator.check(value, node, path)
    return not validator.errors


_REGEX_CACHE: dict[str, re.Pattern] = {}


def _regex(pattern: str) -> re.Pattern:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern)
        except re.error:
            compiled = re.compile(re.escape(pattern))
        _REGEX_CACHE[pattern] = compiled
    return compiled


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _json_text(value: Any) -> str:
    return _identity(value).decode()


def _identity(value: Any) -> bytes:
    """A key equal for equal JSON values (orjson cannot write integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True).encode()


def _has_duplicates(items: list) -> bool:
    seen = set()
    for item in items:
        key = _identity(item)
        if key in seen:
            return True
        seen.add(key)
    return False


def _list_type_errors(items: list, node: dict, path: str) -> Errors:
    list_type = node.get("x-kubernetes-list-type")
    errs: Errors = []
    if list_type == "set":
        seen: set[bytes] = set()
        for i, item in enumerate(items):
            key = _identity(item)
            if key in seen:
                errs.append(E.duplicate(f"{path}[{i}]", _go_item(item)))
            seen.add(key)
    elif list_type == "map":
        keys = node.get("x-kubernetes-list-map-keys")
        keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
        seen = set()
        for i, item in enumerate(items):
            if item is not None and not isinstance(item, dict):
                return [E.invalid(f"{path}[{i}]", item,
                                  "must be an object for an array of list-type map")]
            entry = {k: item.get(k) for k in keys if item is not None and k in item}
            key = _identity(entry)
            if key in seen:
                errs.append(E.duplicate(f"{path}[{i}]", _go_interface_map(entry)))
            seen.add(key)
    return errs


def _go_item(item: Any) -> Any:
    return _go_interface_map(item) if isinstance(item, dict) else item


def validate_custom(obj: dict, crd_version_schema: dict | None, *, old: dict | None = None,
                    namespaced: bool | None = None) -> Errors:
    """Validate a custom resource against the ``openAPIV3Schema`` of its CRD version.

    ``crd_version_schema`` is the version's ``schema`` object or its ``openAPIV3Schema``.
    ``namespaced`` (the CRD's scope) enables the namespace checks of ObjectMeta; leave it None to
    skip them. ``x-kubernetes-validations`` (CEL) rules are not evaluated.
    """
    schema = crd_version_schema if isinstance(crd_version_schema, dict) else {}
    if "openAPIV3Schema" in schema:
        schema = schema["openAPIV3Schema"] if isinstance(schema["openAPIV3Schema"], dict) else {}
    meta = _m(obj, "metadata")
    if old is None:
        errs = _custom_meta(meta, namespaced)
    else:
        errs = validate_object_meta_update(meta, _m(old, "metadata"), kube_finalizers=False)
    validator = _CustomValidator()
    body = {k: v for k, v in obj.items() if k != "metadata"}
    validator.check(body, {k: v for k, v in schema.items() if k != "required"}, "")
    required = schema.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and name not in obj:
            validator.errors.append(E.required(name))
    return errs + validator.errors


def _custom_meta(meta: dict, namespaced: bool | None) -> Errors:
    if namespaced is None:
        name = _s(meta, "name")
        errs = ([E.required("metadata.name", "name or generateName is required")] if not name
                else _invalid_each("metadata.name", name, name_is_dns_subdomain(name)))
        return errs + _meta_common(meta, "metadata", False)
    return validate_object_meta(meta, namespaced, name_is_dns_subdomain, kube_finalizers=False)


# ============================================================================================
# The entry point
# ============================================================================================

Rule = Callable[[dict, "dict | None"], Errors]


@dataclass(frozen=True, slots=True)
class KindRules:
    """How one kind is validated: the name rule of its ObjectMeta and its own rules (called
    with ``old`` on update). ``meta`` is False for kinds that validate their metadata
    themselves (CRDs) or not at all (core Events)."""

    rules: Rule
    name: NameFn = name_is_dns_subdomain
    meta: bool = True


KIND_RULES: dict[tuple[str, str], KindRules] = {
    ("", "Pod"): KindRules(validate_pod),
    ("", "PodTemplate"): KindRules(validate_pod_template),
    ("", "ReplicationController"): KindRules(validate_replication_controller),
    ("", "Service"): KindRules(validate_service, name_is_dns1035_label),
    ("", "Endpoints"): KindRules(validate_endpoints),
    ("", "ConfigMap"): KindRules(validate_config_map),
    ("", "Secret"): KindRules(validate_secret),
    ("", "Namespace"): KindRules(validate_namespace, name_is_dns_label),
    ("", "Node"): KindRules(validate_node),
    ("", "ServiceAccount"): KindRules(validate_service_account),
    ("", "PersistentVolume"): KindRules(validate_pv),
    ("", "PersistentVolumeClaim"): KindRules(validate_pvc),
    ("", "LimitRange"): KindRules(validate_limit_range),
    ("", "ResourceQuota"): KindRules(validate_resource_quota),
    ("", "Event"): KindRules(validate_core_event, meta=False),
    ("apps", "Deployment"): KindRules(validate_deployment),
    ("apps", "ReplicaSet"): KindRules(validate_replica_set),
    ("apps", "StatefulSet"): KindRules(validate_stateful_set, name_is_dns_label),
    ("apps", "DaemonSet"): KindRules(validate_daemon_set),
    ("apps", "ControllerRevision"): KindRules(validate_controller_revision),
    ("batch", "Job"): KindRules(validate_job),
    ("batch", "CronJob"): KindRules(validate_cron_job),
    ("autoscaling", "HorizontalPodAutoscaler"): KindRules(validate_hpa),
    ("networking.k8s.io", "Ingress"): KindRules(validate_ingress),
    ("networking.k8s.io", "IngressClass"): KindRules(validate_ingress_class),
    ("networking.k8s.io", "NetworkPolicy"): KindRules(validate_network_policy),
    ("discovery.k8s.io", "EndpointSlice"): KindRules(validate_endpoint_slice),
    ("coordination.k8s.io", "Lease"): KindRules(validate_lease),
    ("rbac.authorization.k8s.io", "Role"): KindRules(validate_role, name_is_path_segment),
    ("rbac.authorization.k8s.io", "ClusterRole"): KindRules(validate_cluster_role,
                                                            name_is_path_segment),
    ("rbac.authorization.k8s.io", "RoleBinding"): KindRules(validate_role_binding,
                                                            name_is_path_segment),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): KindRules(validate_cluster_role_binding,
                                                                   name_is_path_segment),
    ("policy", "PodDisruptionBudget"): KindRules(validate_pdb),
    ("storage.k8s.io", "StorageClass"): KindRules(validate_storage_class),
    ("scheduling.k8s.io", "PriorityClass"): KindRules(validate_priority_class),
    ("events.k8s.io", "Event"): KindRules(validate_events_event),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): KindRules(validate_crd, meta=False),
}


def validate(obj: dict, resource: Resource, schemas: Schemas, *, old: dict | None = None) -> Errors:
    """All the field errors of ``obj`` (being created, or replacing ``old``), upstream's way.

    An empty list means the object may be stored. Run it after defaulting, as upstream does:
    several rules require the values defaulting fills in. A custom resource (``resource.crd``
    set) is checked with ``validate_custom`` against its version's schema.
    """
    if resource.crd is not None:
        return validate_custom(obj, resource.crd.get("schema"), old=old,
                               namespaced=resource.namespaced)
    node = schemas.for_kind(resource.group, resource.version, resource.kind)
    type_errs = check_types(obj, node, schemas) if node is not None else []
    malformed = [e for e in type_errs if e.type != E.REQUIRED]
    if malformed:
        return malformed  # upstream's decoder would have refused the body outright
    if resource.virtual:
        return type_errs
    kind = KIND_RULES.get((resource.group, resource.kind), KindRules(lambda o, p: []))
    errs = _meta_errors(obj, old, resource, kind)
    errs += kind.rules(obj, old)
    return errs + _unreported(type_errs, errs)


def _meta_errors(obj: dict, old: dict | None, resource: Resource, kind: KindRules) -> Errors:
    if not kind.meta:
        return []
    meta = _m(obj, "metadata")
    if old is None:
        return validate_object_meta(meta, resource.namespaced, kind.name)
    return validate_object_meta_update(meta, _m(old, "metadata"))


def _unreported(schema_errs: Errors, errs: Errors) -> Errors:
    """Missing required fields the kind's own rules did not already report, at that field,
    below it (a missing ``spec`` shows up as ``spec.selector: Required value``) or at the
    object holding it (``spec.schedulingGates[0]: Invalid value: ""``). List indices are
    ignored: upstream reports some list items' fields without them
    (``metadata.ownerReferences.uid``)."""
    if not schema_errs:
        return schema_errs
    reported = {_INDEX.sub("", e.field) for e in errs}
    unreported = []
    for e in schema_errs:
        field = _INDEX.sub("", e.field)
        holder = field.rpartition(".")[0]
        if holder in reported or any(f == field or f.startswith(field + ".") for f in reported):
            continue
        unreported.append(e)
    return unreported


_INDEX = re.compile(r"\[\d+\]")
