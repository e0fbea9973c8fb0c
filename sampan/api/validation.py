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
import ipaddress
import math
import re
import zoneinfo
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any, Callable, Iterable

import orjson

from sampan.api import errors as E
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
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error(_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(regex_error(_DNS1035_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
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
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part " + regex_error(_QUALIFIED_MSG, _QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
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
_QUANTITY = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(.*)", re.S)
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
    except QuantityError:
        return None
    value = q.value
    if value != value.quantize(Decimal("0.001"), rounding=ROUND_UP):
        value = value.quantize(Decimal("0.001"), rounding=ROUND_UP)
    return canonical_quantity(value, q.format)


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
        "LabelSelectorRequirement{Key:%s,Operator:%s,Values:[%s],}," % (
            e.get("key", ""), e.get("operator", ""), " ".join(e.get("values") or []))
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


class _TypeChecker:
    """Walks a built-in object along its schema. Upstream decodes into Go structs, so a null is
    the zero value (allowed everywhere) and ``required`` is only advisory; the required fields
    are still reported outside ``status`` since that is what upstream's hand-written rules
    demand too (duplicates with the kind rules are dropped by ``validate``)."""

    def __init__(self, schemas: Schemas):
        self.schemas = schemas
        self.errors: Errors = []

    def check(self, value: Any, node: dict | None, path: str, required: bool) -> None:
        if value is None:
            return
        n = self.schemas.resolve(node)
        t = node_type(n)
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
        if required and props:
            for name in node.get("required", ()):
                if value.get(name) is None:
                    self.errors.append(E.required(_child(path, name)))
        for key, child in value.items():
            sub = props.get(key) if props else None
            if sub is None:
                if isinstance(extra, dict):
                    sub = extra
                else:
                    continue
            self.check(child, sub, _child(path, key), required and not (path == "" and key == "status"))

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
            self.errors.append(FieldError(E.INVALID, path, f"illegal base64 data at input byte {at}"))


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
            errs.append(E.invalid(path, ref, f"/{version}, Kind={_s(ref, 'kind')} is disallowed "
                                            "from being an owner"))
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
        errs.append(E.invalid(f"{path}.generation", _i(new, "generation"), "must not be decremented"))
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
    return [E.invalid(f"{path}.metadata.labels", go_string_map(raw if isinstance(raw, dict) else None),
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
            errs += _invalid_each(f"{path}.name", _s(ref, "name"), name_is_dns_subdomain(_s(ref, "name")))
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


# (field, path used in "more than 1 volume type", validator). Order is upstream's.
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
_VOLUME_SOURCE_NAMES = frozenset(["emptyDir"] + [name for name, _ in _VOLUME_SOURCES])


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
                    errs += _invalid_each(f"{sp}.{ref_name}.name", name, name_is_dns_subdomain(name, True))
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
            errs += _invalid_each(f"{pp}.containerPort", container_port, is_valid_port_num(container_port))
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
        errs.append(E.invalid(f"{path}.terminationGracePeriodSeconds", tgps, "must be greater than 0"))
    if kind in ("liveness", "startup") and _i(probe, "successThreshold", 1) != 1:
        errs.append(E.invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1"))
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
        errs.append(E.not_supported(f"{path}.type", kind, ["Localhost", "RuntimeDefault", "Unconfined"]))
    local = profile.get("localhostProfile")
    if kind == "Localhost":
        if local is None:
            errs.append(E.required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost"))
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
            return [E.required(f"{path}.localhostProfile", "must be set when AppArmor type is Localhost")]
        if local != local.strip():
            return [E.invalid(f"{path}.localhostProfile", local, "must not be padded with whitespace")]
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
        errs += _mount_propagation(mount.get("mountPropagation"), privileged, f"{path}.mountPropagation")
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
    return errs + _container_security_context(c.get("securityContext"), f"{path}.securityContext",
                                              host_users)


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
        if c.get("restartPolicy") is not None:
            errs.append(E.forbidden(f"{cp}.restartPolicy", "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, path)


def _init_containers(spec: dict, volumes: dict[str, dict], path: str, host_users: bool) -> Errors:
    errs: Errors = []
    grace = spec.get("terminationGracePeriodSeconds")
    names = {_s(c, "name") for _, c in _dicts(spec, "containers")}
    for i, c in _dicts(spec, "initContainers"):
        cp = f"{path}[{i}]"
        errs += _container_common(c, volumes, cp, host_users)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            errs.append(E.not_supported(f"{cp}.restartPolicy", restart, ["Always"]))
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
        errs.append(E.invalid(f"{path}.operator", _s(req, "operator"), "not a valid selector operator"))
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
        errs += _node_selector_requirement(req, f"{path}.matchExpressions[{j}]", allow_invalid_values)
    for j, req in _dicts(term, "matchFields"):
        errs += _node_field_requirement(req, f"{path}.matchFields[{j}]")
    return errs


def node_selector(selector: dict, path: str, allow_invalid_values: bool = False) -> Errors:
    terms = _l(selector, "nodeSelectorTerms")
    if not terms:
        return [E.required(f"{path}.nodeSelectorTerms", "must have at least one node selector term")]
    errs: Errors = []
    for i, term in _dicts(selector, "nodeSelectorTerms"):
        errs += node_selector_term(term, f"{path}.nodeSelectorTerms[{i}]", allow_invalid_values)
    return errs


def _weight(term: dict, path: str) -> Errors:
    weight = _i(term, "weight")
    return [] if 1 <= weight <= 100 else [E.invalid(f"{path}.weight", weight, "must be in the range 1-100")]


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
            errs.append(E.forbidden(f"{path}.{key_field}", "must not be specified when labelSelector "
                                                           "is not set"))
        for i, key in enumerate(keys):
            if isinstance(key, str):
                errs += _invalid_each(f"{path}.{key_field}[{i}]", key, is_qualified_name(key))
    topology_key = _s(term, "topologyKey")
    if not topology_key:
        errs.append(E.required(f"{path}.topologyKey", "can not be empty"))
    return errs + _invalid_each(f"{path}.topologyKey", topology_key, is_qualified_name(topology_key))


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
            errs += _pod_affinity_term(term, f"{pp}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
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
            errs.append(E.invalid(f"{tp}.operator", op, "operator must be Exists when `key` is empty, "
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
                errs.append(E.invalid(f"{tp}.operator", value, "value must be empty when `operator` "
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
            if (_s(other, "topologyKey"), _s(other, "whenUnsatisfiable")) == (_s(c, "topologyKey"), action):
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
            trimmed = search[:-1] if search.endswith(".") else search
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
        if set(k for k, v in secret.items() if v is not None) - {"name"}:
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
            errs += _invalid_each(f"{ap}.hostnames[{j}]", hostname, is_dns1123_subdomain(str(hostname)))
    preemption = spec.get("preemptionPolicy")
    if preemption is not None:
        errs += _preemption_policy(preemption, f"{path}.preemptionPolicy")
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        errs += validate_resource_requirements({"limits": overhead}, f"{path}.overhead")
    return errs + _pod_os(spec, path)


def _ephemeral_container_names(spec: dict, path: str) -> Errors:
    errs: Errors = []
    names = {_s(c, "name") for key in ("containers", "initContainers") for _, c in _dicts(spec, key)}
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
        errs.append(E.invalid(f"{path}[{MIRROR_POD_ANNOTATION}]", annotations[MIRROR_POD_ANNOTATION],
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
            return errs + [E.forbidden(f"spec.{key}", "pod updates may not add or remove containers")]
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
    munged = orjson.loads(orjson.dumps(spec))
    for key in ("containers", "initContainers"):
        for c, old_c in zip(_l(munged, key), _l(old, key)):
            if isinstance(c, dict) and isinstance(old_c, dict):
                c["image"] = old_c.get("image")
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged[key] = old.get(key)
    old_grace = old.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
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
            lines.append(f"  - {p}: {orjson.dumps(a).decode()}")
            lines.append(f"  + {p}: {orjson.dumps(b).decode()}")

    walk(old, new, path)
    return "\n".join(lines)


def _only_added_tolerations(new: list, old: list) -> Errors:
    for toleration in old:
        if not isinstance(toleration, dict):
            continue
        if not any(isinstance(t, dict) and _semantic({**toleration, "tolerationSeconds": t.get(
                "tolerationSeconds")}) == _semantic(t) for t in new):
            return [E.forbidden("spec.tolerations", "existing toleration can not be modified except "
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
    template = spec.get("template")
    if not isinstance(template, dict):
        return [E.required(f"{path}.template")]
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
            return [E.required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
        rp = f"{path}.rollingUpdate"
        unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = _int_or_percent(unavailable, f"{rp}.maxUnavailable")
        errs += _int_or_percent(surge, f"{rp}.maxSurge")
        if _int_or_percent_value(unavailable) == 0 and _int_or_percent_value(surge) == 0:
            errs.append(E.invalid(f"{rp}.maxUnavailable", go_int_or_string(unavailable or 0),
                                  "may not be 0 when `maxSurge` is 0"))
        return errs + _not_more_than_100_percent(unavailable, f"{rp}.maxUnavailable")
    shown = GoValue(f'apps.DeploymentStrategy{{Type:{_go_quote(kind)}, '
                    f'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}') if rolling is None else strategy
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
    shown = GoValue(f'apps.DaemonSetUpdateStrategy{{Type:{_go_quote(kind)}, '
                    f'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}') if rolling is None else strategy
    return [E.not_supported(path, shown, ["RollingUpdate", "OnDelete"])]


def validate_stateful_set(obj: dict, old: dict | None) -> Errors:
    spec = _m(obj, "spec")
    errs: Errors = []
    policy = _s(spec, "podManagementPolicy")
    if not policy:
        errs.append(E.required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(E.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
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
                errs.append(E.invalid(f"{rp}.maxUnavailable", go_int_or_string(unavailable), "cannot be 0"))
            errs += _not_more_than_100_percent(unavailable, f"{rp}.maxUnavailable")
        return errs
    shown = GoValue(f'apps.StatefulSetUpdateStrategy{{Type:{_go_quote(kind)}, RollingUpdate:'
                    f'(*apps.RollingUpdateStatefulSetStrategy)(nil)}}') if rolling is None else strategy
    return [E.invalid(path, shown, "must be 'RollingUpdate' or 'OnDelete'")]


_STATEFUL_SET_MUTABLE = ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
                         "persistentVolumeClaimRetentionPolicy")


def _stateful_set_update(spec: dict, old: dict) -> Errors:
    strip = lambda s: {k: v for k, v in s.items() if k not in _STATEFUL_SET_MUTABLE}  # noqa: E731
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
    if replacement is not None and replacement not in ("TerminatingOrFailed", "Failed"):
        errs.append(E.not_supported(f"{path}.podReplacementPolicy", replacement,
                                    ["TerminatingOrFailed", "Failed"]))
    template = _m(spec, "template")
    errs += validate_pod_template_spec(template, f"{path}.template")
    restart = _s(_m(template, "spec"), "restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errs.append(E.not_supported(f"{path}.template.spec.restartPolicy", restart,
                                    ["OnFailure", "Never"]))
    return errs


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
        errs.append(E.invalid("spec.selector", go_label_selector(sel), "`selector` not auto-generated"))
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
    return (spec.get("completionMode") == "Indexed" and old.get("completions") == old.get("parallelism")
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
            errs.append(E.invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, "
                                                             "use timeZone field instead"))
        elif "TZ" in schedule and spec.get("timeZone") is not None:
            errs.append(E.invalid("spec.schedule", schedule, "cannot use both timeZone field and TZ "
                                                             "or CRON_TZ in schedule"))
    errs += _time_zone(spec.get("timeZone"), "spec.timeZone")
    errs += nonnegative(spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds")
    policy = _s(spec, "concurrencyPolicy")
    if not policy:
        errs.append(E.required("spec.concurrencyPolicy"))
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.append(E.not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
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
                    "jan feb mar apr may jun jul aug sep oct nov dec".split())}),
                (0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}))
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
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(_l(spec, "externalIPs")))


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
            errs.append(E.invalid(f"{path}.nodePort", node_port, "provided port is not in the valid "
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
        errs += _invalid_each(f"spec.externalIPs[{i}]", ip, msgs) or _non_special_ip(str(ip), f"spec.externalIPs[{i}]")
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
    cname = cname[:-1] if cname.endswith(".") else cname
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
            return [E.forbidden("spec.sessionAffinityConfig", "must not be set when session affinity "
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
        errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips), "may only hold up to 2 values"))
    if invalid_ips:
        return errs
    if len(ips) > 1 and len({ipaddress.ip_address(ip).version for ip in ips}) != len(ips):
        errs.append(E.invalid("spec.clusterIPs", go_string_slice(ips),
                              "may specify no more than one IP for each IP family"))
    families = _l(spec, "ipFamilies")
    if not headless:
        for i, (ip, family) in enumerate(zip(ips, families)):
            v6 = ipaddress.ip_address(ip).version == 6
            if family == "IPv4" and v6:
                errs.append(E.invalid(f"spec.clusterIPs[{i}]", ip, "expected an IPv4 value as "
                                                                   f"indicated by `ipFamilies[{i}]`"))
            if family == "IPv6" and not v6:
                errs.append(E.invalid(f"spec.clusterIPs[{i}]", ip, "expected an IPv6 value as "
                                                                   f"indicated by `ipFamilies[{i}]`"))
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
            errs += _invalid_each(f"spec.LoadBalancerSourceRanges[{i}]", value, is_valid_cidr(value))
    allocate = spec.get("allocateLoadBalancerNodePorts")
    if allocate is not None and kind != "LoadBalancer":
        errs.append(E.forbidden("spec.allocateLoadBalancerNodePorts",
                                "may only be used when `type` is 'LoadBalancer'"))
    if kind == "LoadBalancer" and allocate is None:
        errs.append(E.required("allocateLoadBalancerNodePorts"))  # sic: upstream's path
    lb_class = spec.get("loadBalancerClass")
    if lb_class is not None:
        if kind == "LoadBalancer":
            errs += _invalid_each("spec.loadBalancerClass", lb_class, is_qualified_name(str(lb_class)))
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
            errs.append(E.invalid("spec.ipFamilies[0]", go_string_slice(new_f), "may not change once set"))
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
            errs.append(E.invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset"))
        elif old[0] != new[0]:
            errs.append(E.invalid("spec.clusterIPs[0]", shown, "may not change once set"))
        if len(new) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(E.invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"), "must be set to "
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
            errs += _invalid_each(f"{pp}.port", _i(port, "port"), is_valid_port_num(_i(port, "port")))
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
            try:
                parsed = orjson.loads(base64.b64decode(data[key]))
                if not isinstance(parsed, dict):
                    raise ValueError("json: cannot unmarshal into Go value of type map[string]interface {}")
            except (ValueError, binascii.Error) as err:
                errs.append(E.invalid(f"data[{key}]", "<secret contents redacted>", str(err)))
    return errs


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
    return GoValue(f'core.Taint{{Key:{_go_quote(_s(taint, "key"))}, Value:{_go_quote(_s(taint, "value"))}, '
                   f'Effect:{_go_quote(_s(taint, "effect"))}, TimeAdded:(*v1.Time)(nil)}}')


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
