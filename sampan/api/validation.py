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
