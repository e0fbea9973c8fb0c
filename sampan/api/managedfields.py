"""Field ownership (``metadata.managedFields``) and server-side apply.

A port of sigs.k8s.io/structured-merge-diff (fieldpath, typed, merge) as the field manager of
k8s.io/apimachinery (pkg/util/managedfields/internal) runs it, for objects held as JSON dicts
and schemas held as our OpenAPI nodes. Upstream's vocabulary:

- a *path* names one field of an object: a tuple of path elements, each a field name
  (``str``), a list-map key (``("k", ((name, value), ...))``), a set value (``("v", value)``)
  or a list index (``("i", n)``);
- a *field set* is a frozenset of paths: the fields an object sets, or a manager owns;
- a *manager* is a name, an operation (``Apply`` or ``Update``), an API version (for Updates
  only) and a subresource. ``metadata.managedFields`` stores one field set per manager, as
  FieldsV1 (``{"f:spec": {"f:replicas": {}}}``).

The API server's handlers call two functions. ``apply`` serves ``application/apply-patch+yaml``:
it merges the applied configuration into the live object, removes the fields the manager
applied before and no longer does (unless someone else owns them), and refuses to change fields
other managers own with a different value unless forced (409 Conflict). ``track_update``
serves every other create, update and patch: whoever changes a field owns it.

The types of fields come from the schema as kube-openapi's schemaconv derives them: list
types ``atomic``/``set``/``map`` (falling back to the patch strategy), map types
``atomic``/``granular``, free-form values (``x-kubernetes-preserve-unknown-fields``) as
"deduced" (maps granular, lists atomic) and ``RawExtension`` as atomic.

Where upstream converts objects between API versions to compare ownership recorded at other
versions, we compare them as they are: every manager is judged against the object in the
version the request uses.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Sequence

import orjson

from sampan.api.errors import (TOO_LONG, FieldError, StatusError, bad_request, invalid,
                               not_supported, required)
from sampan.api.gofmt import go_float, go_printable, go_quote, go_value, shortest_digits
from sampan.api.schema import Schema, Schemas, builtin, patch_merge_key, patch_strategy

APPLY = "Apply"
UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
MAX_UPDATE_MANAGERS = 10
FIELD_MANAGER_MAX_LENGTH = 128
SUBRESOURCE_MAX_LENGTH = 256
_ANNOTATIONS_SIZE_LIMIT = 256 * 1024

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
_REF_PREFIX = "#/$defs/"

# kubectl's server-side apply; only it upgrades from (and keeps up to date) the client-side
# apply annotation.
_KUBECTL = "kubectl"
_BEFORE_FIRST_APPLY = "before-first-apply"
_ANCIENT_CHANGES = "ancient-changes"
_CURRENT_OPERATION = "current-operation"

Path = tuple
FieldSet = frozenset

# Fields nobody owns: identity and bookkeeping the server sets (stripmeta.go).
_UNOWNED: FieldSet = frozenset({
    ("apiVersion",), ("kind",), ("metadata",), ("metadata", "name"),
    ("metadata", "namespace"), ("metadata", "creationTimestamp"), ("metadata", "selfLink"),
    ("metadata", "uid"), ("metadata", "clusterName"), ("metadata", "generation"),
    ("metadata", "managedFields"), ("metadata", "resourceVersion"),
})

# List-map keys the built-in schemas default (``+default="TCP"``): an item that omits the key
# is identified by the default, as the server will fill it in.
_BUILTIN_KEY_DEFAULTS = {
    "io.k8s.api.core.v1.ContainerPort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.ServicePort": {"protocol": "TCP"},
}

_ABSENT: Any = type("_Absent", (), {"__repr__": lambda self: "<absent>"})()


# --------------------------------------------------------------------------------------------
# values and path elements


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal where structured-merge-diff's value
    equality holds (``1 == 1.0``) and nowhere else (``true != 1``)."""
    if isinstance(value, bool):
        return ("b", value)
    if value is None:
        return ("n",)
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list):
        return ("l", tuple(_freeze(v) for v in value))
    return ("m", tuple(sorted((k, _freeze(v)) for k, v in value.items())))


def _thaw(frozen: Any) -> Any:
    if not isinstance(frozen, tuple):
        return frozen
    tag = frozen[0]
    if tag == "b":
        return frozen[1]
    if tag == "n":
        return None
    if tag == "l":
        return [_thaw(v) for v in frozen[1]]
    return {k: _thaw(v) for k, v in frozen[1]}


def _value_order(frozen: Any) -> tuple:
    """structured-merge-diff's total order of values: numbers, strings, booleans, lists, maps,
    null."""
    if isinstance(frozen, (int, float)):
        return (0, frozen)
    if isinstance(frozen, str):
        return (1, frozen)
    tag = frozen[0]
    if tag == "b":
        return (2, frozen[1])
    if tag == "l":
        return (3, tuple(_value_order(v) for v in frozen[1]))
    if tag == "m":
        return (4, tuple((k, _value_order(v)) for k, v in frozen[1]))
    return (5,)


def _element_order(element: Any) -> tuple:
    """Path elements sort as fields, then keys, then values, then indices."""
    if isinstance(element, str):
        return (0, element)
    tag, body = element
    if tag == "k":
        return (1, tuple((name, _value_order(v)) for name, v in body))
    if tag == "v":
        return (2, _value_order(body))
    return (3, body)


def _path_string(path: Path) -> str:
    """``.spec.template.spec.containers[name="nginx"].image``, as fieldpath.Path.String."""
    return "".join(_element_string(element) for element in path)


def _element_string(element: Any) -> str:
    if isinstance(element, str):
        return "." + element
    tag, body = element
    if tag == "k":
        return "[" + ",".join(f"{name}={_value_string(_thaw(v))}" for name, v in body) + "]"
    if tag == "v":
        return f"[={_value_string(_thaw(body))}]"
    return f"[{body}]"


def _value_string(value: Any) -> str:
    """value.ToString: strings quoted, numbers and booleans as Go prints them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list):
        return "[" + ",".join(_value_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{k}={_value_string(v)}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------------------------
# FieldsV1


class _Invalid(ValueError):
    """An object or field set structured-merge-diff cannot read."""


def fields_to_set(fields: Any) -> FieldSet:
    """Decode FieldsV1 (``{"f:spec": {"f:replicas": {}}}``) into a field set; ValueError if
    it is malformed."""
    if not isinstance(fields, dict):
        raise _Invalid("FieldsV1 must be an object")
    paths: set[Path] = set()
    _read_fields(fields, (), paths)
    return frozenset(paths)


def _read_fields(node: dict, prefix: Path, out: set[Path]) -> bool:
    """Add the paths under ``node``; True if ``prefix`` itself is a member (marked with
    ``.``, or a leaf)."""
    member = False
    parsed = 0
    for key, child in node.items():
        if key == ".":
            member = True
            continue
        element = _parse_element(key)
        if element is None:
            continue  # an element type from the future: skipped, as upstream does
        if not isinstance(child, dict):
            raise _Invalid(f"expected an object under {key}")
        parsed += 1
        path = prefix + (element,)
        if _read_fields(child, path, out):
            out.add(path)
    return member or parsed == 0


def _parse_element(key: str) -> Any:
    if key.startswith("f:"):
        return key[2:]
    if len(key) < 2:
        raise _Invalid("key must be 2 characters long:")
    if key[1] != ":":
        raise _Invalid(f"missing colon: {key}")
    tag, body = key[0], key[2:]
    if tag == "f":
        return body
    if tag == "v":
        return ("v", _freeze(_parse_json(body)))
    if tag == "k":
        fields = _parse_json(body)
        if not isinstance(fields, dict):
            raise _Invalid(f"expected a JSON object in {key}")
        return ("k", tuple(sorted((name, _freeze(v)) for name, v in fields.items())))
    if tag == "i":
        digits = body[1:] if body[:1] in "+-" else body
        if not digits.isascii() or not digits.isdigit():
            raise _Invalid(f"invalid index in {key}")
        return ("i", int(body))
    return None


def _parse_json(text: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise _Invalid(str(err)) from None
    # Numbers in FieldsV1 decode as float64 upstream; equal numbers stay equal here.
    return value


def set_to_fields(paths: Iterable[Path]) -> dict:
    """Encode a field set as FieldsV1, in structured-merge-diff's order."""
    trie: dict = {}
    for path in paths:
        node = trie
        for element in path[:-1]:
            child = node.get(element)
            if child is None:
                child = node[element] = [False, {}]
            node = child[1]
        leaf = node.get(path[-1])
        if leaf is None:
            node[path[-1]] = [True, {}]
        else:
            leaf[0] = True
    return _write_fields(trie)


def _write_fields(trie: dict) -> dict:
    try:
        # The elements of one level are all field names, all keys or all values, and then
        # Python's order of their tuples is structured-merge-diff's; a mix (which no object
        # produces) cannot be compared and falls back to the general order.
        elements = sorted(trie)
    except TypeError:
        elements = sorted(trie, key=_element_order)
    out: dict = {}
    for element in elements:
        member, children = trie[element]
        if children:
            body = {".": {}} if member else {}
            body.update(_write_fields(children))
        else:
            body = {}
        out["f:" + element if type(element) is str else _element_key(element)] = body
    return out


def _element_key(element: Any) -> str:
    """The FieldsV1 key of a path element: ``f:name``, ``k:{"name":"x"}``, ``v:"x"``, ``i:0``."""
    if isinstance(element, str):
        return "f:" + element
    key = _ELEMENT_KEYS.get(element)
    if key is None:
        if len(_ELEMENT_KEYS) > _ELEMENT_KEYS_LIMIT:
            _ELEMENT_KEYS.clear()
        key = _ELEMENT_KEYS[element] = _format_element_key(element)
    return key


def _format_element_key(element: tuple) -> str:
    tag, body = element
    if tag == "k":
        return "k:{" + ",".join(f"{_go_json(name)}:{_go_json(_thaw(v))}"
                                for name, v in body) + "}"
    if tag == "v":
        return "v:" + _go_json(_thaw(body))
    return f"i:{body}"


# List keys recur in every request about the same objects; their JSON is worth keeping.
_ELEMENT_KEYS: dict[tuple, str] = {}
_ELEMENT_KEYS_LIMIT = 100_000


# --------------------------------------------------------------------------------------------
# the schema as structured-merge-diff sees it


class _Type:
    """The structured-merge-diff atom of a schema node: which of scalar, list and map values
    the field takes, and how they merge. Children are resolved on first use and kept."""

    __slots__ = ("scalar", "list_kind", "map_kind", "keys", "key_defaults", "deduced_map",
                 "_fields", "_elements", "_item", "_children", "_schemas", "_preserve", "first")

    def __init__(self, *, scalar: str | None = None, list_kind: str | None = None,
                 map_kind: str | None = None, fields: dict | None = None, elements: Any = None,
                 item: Any = None, keys: tuple = (), key_defaults: dict | None = None,
                 schemas: Schemas | None = None, preserve: bool = False):
        self.scalar = scalar  # "numeric", "string", "boolean", "untyped" or None
        self.list_kind = list_kind  # "atomic", "set", "map" or None
        self.map_kind = map_kind  # "atomic", "granular" or None
        self.keys = keys
        self.key_defaults = key_defaults or {}
        self._fields = fields or {}
        self._elements = elements  # node, _Type, or None when unknown fields are not allowed
        self._item = item
        self._children: dict[str, tuple[_Type | None, bool]] = {}
        self._schemas = schemas
        self._preserve = preserve
        # A free-form map (isUntypedDeducedMap): ownership inside it is never reconciled.
        self.deduced_map = not self._fields and (
            isinstance(elements, _Type) or (isinstance(elements, dict)
                                             and not _ref_name(elements)
                                             and _resolve(elements, schemas).get("type") is None))
        # The handler of a value that fits none of the atoms (null among them).
        self.first = "map" if map_kind else "scalar" if scalar else "list"

    def field(self, name: str) -> tuple[_Type | None, bool]:
        """The type of a map's member, and whether it is a declared (struct) field. None when
        the map allows no such member."""
        hit = self._children.get(name)
        if hit is None:
            node = self._fields.get(name)
            if node is not None:
                hit = (_type_of(node, self._schemas, self._preserve), True)
            else:
                hit = (self._resolve_ref(self._elements), False)
            self._children[name] = hit
        return hit

    def item(self) -> _Type:
        if not isinstance(self._item, _Type):
            self._item = self._resolve_ref(self._item) or _UNTYPED_ATOMIC
        return self._item

    def element_of(self, element: Any) -> tuple[_Type | None, bool]:
        """The type at a path element below this type (for walking field sets)."""
        if isinstance(element, str):
            return self.field(element) if self.map_kind else (None, False)
        return (self.item(), False) if self.list_kind else (None, False)

    def _resolve_ref(self, ref: Any) -> _Type | None:
        if ref is None or isinstance(ref, _Type):
            return ref
        return _type_of(ref, self._schemas, self._preserve)

    def view(self, value: Any) -> str:
        """Which atom handles ``value``: the one of its kind, else the first the type has."""
        if isinstance(value, dict):
            if self.map_kind:
                return "map"
        elif isinstance(value, list):
            if self.list_kind:
                return "list"
        elif value is not None and value is not _ABSENT and self.scalar:
            return "scalar"
        return self.first


_UNTYPED_ATOMIC = _Type(scalar="untyped", list_kind="atomic", map_kind="atomic")
_UNTYPED_ATOMIC._item = _UNTYPED_ATOMIC
_UNTYPED_ATOMIC._elements = _UNTYPED_ATOMIC
_DEDUCED = _Type(scalar="untyped", list_kind="atomic", map_kind="granular")
_DEDUCED._item = _UNTYPED_ATOMIC
_DEDUCED._elements = _DEDUCED
_DEDUCED.deduced_map = True

_TYPES: dict[tuple[int, int, bool], tuple[Any, Schemas, _Type]] = {}
_ROOTS: dict[tuple[int, int], tuple[Any, Schemas, _Type]] = {}
_TYPE_CACHE_LIMIT = 200_000


def _type_of(node: Schema, schemas: Schemas, preserve: bool) -> _Type:
    key = (id(node), id(schemas), preserve)
    hit = _TYPES.get(key)
    if hit is not None and hit[0] is node and hit[1] is schemas:
        return hit[2]
    if len(_TYPES) > _TYPE_CACHE_LIMIT:
        _TYPES.clear()
    result = _build_type(node, schemas, preserve)
    _TYPES[key] = (node, schemas, result)
    return result


def _root_type(node: Schema, schemas: Schemas) -> _Type:
    """The type of a whole object: the kind's schema with ``apiVersion``, ``kind`` and the
    standard ``metadata``, as upstream builds it for custom resources too."""
    key = (id(node), id(schemas))
    hit = _ROOTS.get(key)
    if hit is not None and hit[0] is node and hit[1] is schemas:
        return hit[2]
    resolved = _resolve(node, schemas)
    properties = dict(resolved.get("properties") or {})
    properties.update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": {"$ref": _REF_PREFIX + _OBJECT_META}})
    result = _build_type(dict(resolved, type="object", properties=properties), schemas, False)
    _ROOTS[key] = (node, schemas, result)
    return result


def _ref_name(node: Schema) -> str:
    ref = node.get("$ref")
    if ref is None:
        all_of = node.get("allOf")
        if all_of and len(all_of) == 1:
            ref = all_of[0].get("$ref")
    return ref[len(_REF_PREFIX):] if ref else ""


def _resolve(node: Schema, schemas: Schemas) -> Schema:
    """Follow ``$ref``s; custom resource schemas reach the built-in ObjectMeta through here."""
    while True:
        name = _ref_name(node)
        if not name:
            return node
        definition = schemas.definitions.get(name)
        node = definition if definition is not None else builtin().definitions[name]


def _build_type(node: Schema, schemas: Schemas, preserve: bool) -> _Type:
    name = _ref_name(node)
    if name == _RAW_EXTENSION:
        return _UNTYPED_ATOMIC
    if name:
        preserve = False  # named types are converted on their own, outside the referrer
    resolved = _resolve(node, schemas)
    preserve = preserve or bool(resolved.get("x-kubernetes-preserve-unknown-fields"))
    if resolved.get("x-kubernetes-int-or-string"):
        return _Type(scalar="untyped")
    kind = resolved.get("type")
    if kind in ("integer", "number"):
        return _Type(scalar="numeric")
    if kind == "boolean":
        return _Type(scalar="boolean")
    if kind == "string":
        return _Type(scalar="string" if resolved.get("format", "") in ("", "byte") else "untyped")
    options: dict[str, Any] = {"schemas": schemas, "preserve": preserve}
    if kind in ("object", None):
        options.update(_map_options(node, resolved, preserve))
    if kind in ("array", None):
        options.update(_list_options(resolved, schemas))
    if kind is None:
        options["scalar"] = "untyped"
    return _Type(**options)


def _map_options(node: Schema, resolved: Schema, preserve: bool) -> dict[str, Any]:
    properties = resolved.get("properties") or {}
    extra = resolved.get("additionalProperties")
    if isinstance(extra, dict):
        elements: Any = extra
    elif extra is True or (extra is None and (preserve or not properties)):
        elements = _DEDUCED
    else:
        elements = None
    map_type = node.get("x-kubernetes-map-type") or resolved.get("x-kubernetes-map-type")
    return {"map_kind": "atomic" if map_type == "atomic" else "granular",
            "fields": properties, "elements": elements}


def _list_options(resolved: Schema, schemas: Schemas) -> dict[str, Any]:
    list_type = resolved.get("x-kubernetes-list-type")
    keys: tuple = ()
    if list_type is None:
        strategy = patch_strategy(resolved)
        merge_key = patch_merge_key(resolved)
        if strategy in ("merge", "merge,retainKeys"):
            list_type, keys = ("map", (merge_key,)) if merge_key else ("set", ())
        else:
            list_type = "atomic"
    elif list_type == "map":
        keys = tuple(resolved.get("x-kubernetes-list-map-keys") or ())
    elif list_type not in ("set", "atomic"):
        list_type = "atomic"
    item = resolved.get("items")
    return {"list_kind": list_type, "keys": keys, "item": item if isinstance(item, dict) else None,
            "key_defaults": _key_defaults(item, keys, schemas) if keys else None}


def _key_defaults(item: Any, keys: tuple, schemas: Schemas) -> dict:
    if not isinstance(item, dict):
        return {}
    defaults = dict(_BUILTIN_KEY_DEFAULTS.get(_ref_name(item), {}))
    properties = _resolve(item, schemas).get("properties") or {}
    for key in keys:
        field = properties.get(key)
        if isinstance(field, dict) and "default" in field:
            defaults[key] = field["default"]
    return defaults


def _item_element(list_type: _Type, item: Any) -> Any:
    """The path element of a list item: its keys in a list map, itself in a set."""
    if list_type.list_kind == "set":
        if isinstance(item, dict):
            raise _Invalid("associative list without keys has an element that's a map type")
        if isinstance(item, list):
            raise _Invalid("not supported: associative list with lists as elements")
        if item is None:
            raise _Invalid("associative list without keys has an element that's an explicit "
                           "null")
        return ("v", _freeze(item))
    if item is None:
        raise _Invalid("associative list with keys may not have a null element")
    if not isinstance(item, dict):
        raise _Invalid("associative list with keys may not have non-map elements")
    fields = []
    for key in list_type.keys:
        if key in item:
            fields.append((key, _freeze(item[key])))
        elif key in list_type.key_defaults:
            fields.append((key, _freeze(list_type.key_defaults[key])))
    if list_type.keys and not fields:
        names = "[" + " ".join(go_quote(k) for k in list_type.keys) + "]"
        raise _Invalid(f"associative list with keys has an element that omits all key fields "
                       f"{names} (and doesn't have default values for any key fields)")
    return ("k", tuple(sorted(fields)))


# --------------------------------------------------------------------------------------------
# walking values: the field set of an object (typed/tofieldset.go)


def _field_set(value: Any, root: _Type, *, named: bool = False) -> set[Path]:
    """The paths ``value`` sets. With ``named``, declared fields that have set members below
    them are members too (fieldpath's EnsureNamedFieldsAreMembers)."""
    out: set[Path] = set()
    _collect(value, root, (), out, named)
    return out


def _collect(value: Any, t: _Type, path: Path, out: set[Path], named: bool) -> None:
    view = t.view(value)
    if view == "scalar":
        if path:
            out.add(path)
    elif view == "list":
        if t.list_kind == "atomic":
            if path:
                out.add(path)
        elif isinstance(value, list):
            _collect_items(value, t, path, out, named)
    elif t.map_kind == "atomic":
        if path:
            out.add(path)
    elif isinstance(value, dict):
        for key, child in value.items():
            child_type, declared = t.field(key)
            child_path = path + (key,)
            before = len(out)
            _collect(child, child_type or _DEDUCED, child_path, out, named)
            if (child is None or (not child and isinstance(child, dict)) or not declared
                    or (named and len(out) > before)):
                out.add(child_path)


def _collect_items(items: list, t: _Type, path: Path, out: set[Path], named: bool) -> None:
    elements = [_item_element(t, item) for item in items]
    seen: set = set()
    duplicates: set = set()
    for element in elements:
        (duplicates if element in seen else seen).add(element)
    item_type = t.item()
    for element in duplicates:
        out.add(path + (element,))
    for item, element in zip(items, elements):
        if element not in duplicates:
            item_path = path + (element,)
            _collect(item, item_type, item_path, out, named)
            out.add(item_path)


def _with_named_fields(paths: FieldSet, root: _Type) -> FieldSet:
    """EnsureNamedFieldsAreMembers for a field set: declared fields with members below them
    become members."""
    extra: set[Path] = set()
    for path in paths:
        t: _Type | None = root
        for depth in range(len(path) - 1):
            if t is None:
                break
            element = path[depth]
            t, declared = t.element_of(element)
            if declared:
                extra.add(path[:depth + 1])
    return paths | extra if extra else paths


# --------------------------------------------------------------------------------------------
# comparing two objects (typed/compare.go)


@dataclass(slots=True)
class _Comparison:
    added: set[Path]
    modified: set[Path]
    removed: set[Path]

    def filtered(self, ignored: FieldSet) -> _Comparison:
        return _Comparison(_without(self.added, ignored), _without(self.modified, ignored),
                           _without(self.removed, ignored))


def _compare(lhs: Any, rhs: Any, root: _Type) -> _Comparison:
    comparison = _Comparison(set(), set(), set())
    _compare_value(lhs, rhs, root, (), comparison)
    return comparison


def _compare_value(lhs: Any, rhs: Any, t: _Type, path: Path, c: _Comparison) -> None:
    if lhs is rhs:
        return  # the same subtree: nothing differs
    if rhs is _ABSENT:
        leaf = _compare_as(t.view(lhs), lhs, rhs, t, path, c)
    else:
        view = t.view(rhs)
        if lhs is not _ABSENT and t.view(lhs) != view:
            _compare_as(t.view(lhs), lhs, rhs, t, path, c)
        leaf = _compare_as(view, lhs, rhs, t, path, c)
    if not leaf and path:
        if lhs is _ABSENT:
            c.added.add(path)
        elif rhs is _ABSENT:
            c.removed.add(path)


def _compare_as(view: str, lhs: Any, rhs: Any, t: _Type, path: Path, c: _Comparison) -> bool:
    """Compare under one atom; True if the values were compared as a leaf."""
    if view == "scalar":
        return _compare_leaf(lhs, rhs, path, c)
    container = list if view == "list" else dict
    left = lhs if isinstance(lhs, container) else None
    right = rhs if isinstance(rhs, container) else None
    atomic = (t.list_kind if view == "list" else t.map_kind) == "atomic"
    if atomic or (not left and not right):
        return _compare_leaf(lhs, rhs, path, c)
    if view == "list":
        _compare_items(left or [], right or [], t, path, c)
    else:
        _compare_members(left or {}, right or {}, t, path, c)
    return False


def _compare_leaf(lhs: Any, rhs: Any, path: Path, c: _Comparison) -> bool:
    if path:
        if lhs is _ABSENT:
            c.added.add(path)
        elif rhs is _ABSENT:
            c.removed.add(path)
        elif not _json_equal(lhs, rhs):
            c.modified.add(path)
    return True


def _compare_members(lhs: dict, rhs: dict, t: _Type, path: Path, c: _Comparison) -> None:
    for key, left in lhs.items():
        child_type = t.field(key)[0] or _DEDUCED
        _compare_value(left, rhs.get(key, _ABSENT), child_type, path + (key,), c)
    for key, right in rhs.items():
        if key not in lhs:
            child_type = t.field(key)[0] or _DEDUCED
            _compare_value(_ABSENT, right, child_type, path + (key,), c)


def _compare_items(lhs: list, rhs: list, t: _Type, path: Path, c: _Comparison) -> None:
    left = _group_items(lhs, t)
    right = _group_items(rhs, t)
    item_type = t.item()
    for element in list(left) + [e for e in right if e not in left]:
        ls, rs = left.get(element, ()), right.get(element, ())
        item_path = path + (element,)
        if len(ls) <= 1 and len(rs) <= 1:
            _compare_value(ls[0] if ls else _ABSENT, rs[0] if rs else _ABSENT, item_type,
                           item_path, c)
        elif len(ls) >= 2 and len(rs) >= 2:
            if len(ls) != len(rs) or not all(map(_json_equal, ls, rs)):
                c.modified.add(item_path)
        elif len(ls) >= 2:
            if rs:
                _compare_value(_ABSENT, rs[0], item_type, item_path, c)
            c.removed.add(item_path)
        else:
            if ls:
                _compare_value(ls[0], _ABSENT, item_type, item_path, c)
            c.added.add(item_path)


def _group_items(items: list, t: _Type) -> dict[Any, list]:
    if t.list_kind == "atomic":
        raise _Invalid("invalid indexing of non-associative list")
    groups: dict[Any, list] = {}
    for item in items:
        groups.setdefault(_item_element(t, item), []).append(item)
    return groups


# --------------------------------------------------------------------------------------------
# merging an applied configuration into an object (typed/merge.go, rule "keep RHS")


def _merge(lhs: Any, rhs: Any, t: _Type) -> Any:
    """Merge ``rhs`` over ``lhs``; ``_ABSENT`` when the result has no value. Unchanged
    subtrees of either side are shared, not copied."""
    if rhs is _ABSENT:
        return lhs
    if lhs is _ABSENT:
        return rhs  # nothing to merge with: the applied value as it is
    view = t.view(rhs)
    if view == "scalar":
        return rhs
    container = list if view == "list" else dict
    left = lhs if isinstance(lhs, container) else None
    right = rhs if isinstance(rhs, container) else None
    atomic = (t.list_kind if view == "list" else t.map_kind) == "atomic"
    if atomic or (not left and not right):
        return rhs
    merged = (_merge_items(left or [], right or [], t) if view == "list"
              else _merge_members(left or {}, right or {}, t))
    return merged if merged else _ABSENT


def _merge_members(lhs: dict, rhs: dict, t: _Type) -> dict:
    out = {}
    for key, left in lhs.items():
        right = rhs.get(key, _ABSENT)
        value = left if right is _ABSENT else _merge(left, right, t.field(key)[0] or _DEDUCED)
        if value is not _ABSENT:
            out[key] = value
    for key, right in rhs.items():
        if key not in lhs:
            value = _merge(_ABSENT, right, t.field(key)[0] or _DEDUCED)
            if value is not _ABSENT:
                out[key] = value
    return out


def _merge_items(lhs: list, rhs: list, t: _Type) -> list:
    """Merge two associative lists. The result keeps the live order, with the applied items
    placed in the applied order relative to one another (mergingWalker.visitListItems)."""
    rhs_elements = [_item_element(t, item) for item in rhs]
    observed_rhs: dict = {}
    for element, item in zip(rhs_elements, rhs):
        if element in observed_rhs:
            raise _Invalid(f"duplicate entries for key {_element_string(element)}")
        observed_rhs[element] = item
    lhs_elements = [_item_element(t, item) for item in lhs]
    observed_lhs: dict = {}
    for element, item in zip(lhs_elements, lhs):
        # A key the live list repeats merges as if its item were null.
        observed_lhs[element] = None if element in observed_lhs else item
    shared = [e for e in rhs_elements if e in observed_lhs]
    shared_index = 0
    next_shared = shared[0] if shared else None
    item_type = t.item()
    merged_rhs: set = set()
    out: list = []

    def emit(value: Any) -> None:
        if value is not _ABSENT:
            out.append(value)

    li = ri = 0
    while li < len(lhs_elements) or ri < len(rhs_elements):
        if li < len(lhs_elements) and ri < len(rhs_elements):
            element = lhs_elements[li]
            if element == rhs_elements[ri]:
                merged_rhs.add(element)
                emit(_merge(observed_lhs[element], observed_rhs[element], item_type))
                li += 1
                ri += 1
                shared_index += 1
                next_shared = shared[shared_index] if shared_index < len(shared) else None
                continue
            if element in observed_rhs and next_shared is not None and next_shared != element:
                li += 1
                continue
        if li < len(lhs_elements):
            element = lhs_elements[li]
            if element not in observed_rhs:
                emit(lhs[li])
                li += 1
                continue
            if element in merged_rhs:
                li += 1
        if ri < len(rhs_elements):
            element = rhs_elements[ri]
            merged_rhs.add(element)
            emit(_merge(observed_lhs.get(element, _ABSENT), observed_rhs[element], item_type))
            ri += 1
            if next_shared is not None and next_shared == element:
                shared_index += 1
                next_shared = shared[shared_index] if shared_index < len(shared) else None
    return out


# --------------------------------------------------------------------------------------------
# removing fields from an object (typed/remove.go)


def _remove(value: Any, paths: Iterable[Path], root: _Type) -> Any:
    """``value`` without the members at ``paths`` (and everything below them). A map or list
    left empty becomes null, as upstream's walker leaves it."""
    remove = set(paths)
    if not remove:
        return value
    below = {path[:depth] for path in remove for depth in range(1, len(path))}
    return _remove_from(value, root, (), remove, below)


def _remove_from(value: Any, t: _Type, path: Path, remove: set, below: set) -> Any:
    view = t.view(value)
    if view == "scalar":
        return value
    if view == "list":
        if not isinstance(value, list) or not value or t.list_kind == "atomic":
            return None
        kept = []
        item_type = t.item()
        for item in value:
            item_path = path + (_item_element(t, item),)
            if item_path in remove:
                continue
            if item_path in below:
                item = _remove_from(item, item_type, item_path, remove, below)
            kept.append(item)
        return kept or None
    if not isinstance(value, dict) or not value or t.map_kind == "atomic":
        return None
    out = {}
    for key, child in value.items():
        child_path = path + (key,)
        if child_path in remove:
            continue
        if child_path in below:
            child = _remove_from(child, t.field(key)[0] or _DEDUCED, child_path, remove, below)
        out[key] = child
    return out or None


# --------------------------------------------------------------------------------------------
# validating an applied configuration (typed/validate.go)


def _validate(value: Any, t: _Type, *, allow_duplicates: bool = False) -> list[str]:
    """structured-merge-diff's errors for a value that does not fit the schema."""
    errors: list[str] = []
    _validate_value(value, t, "", errors, allow_duplicates)
    return errors


def _validate_value(value: Any, t: _Type, prefix: str, errors: list[str],
                    allow_duplicates: bool) -> None:
    view = t.view(value)
    if view == "scalar":
        problem = _scalar_problem(t.scalar or "untyped", value)
        if problem:
            errors.append(f"{prefix}: {problem}" if prefix else problem)
    elif view == "list":
        if value is None:
            return
        if not isinstance(value, list):
            errors.append(_prefixed(prefix, f"expected list, got {_go_unstructured(value)}"))
        else:
            _validate_items(value, t, prefix, errors, allow_duplicates)
    elif value is not None:
        if not isinstance(value, dict):
            errors.append(_prefixed(prefix, f"expected map, got {_go_unstructured(value)}"))
            return
        for key, child in value.items():
            child_type, _ = t.field(key)
            if child_type is None:
                errors.append(f"{prefix}.{key}: field not declared in schema")
                return
            _validate_value(child, child_type, f"{prefix}.{key}", errors, allow_duplicates)


def _validate_items(items: list, t: _Type, prefix: str, errors: list[str],
                    allow_duplicates: bool) -> None:
    item_type = t.item()
    seen: set = set()
    for index, item in enumerate(items):
        if t.list_kind == "atomic":
            element: Any = ("i", index)
        else:
            try:
                element = _item_element(t, item)
            except _Invalid as err:
                errors.append(_prefixed(prefix, f"element {index}: {err}"))
                return
            if element in seen and not allow_duplicates:
                errors.append(_prefixed(prefix,
                                        f"duplicate entries for key {_element_string(element)}"))
            seen.add(element)
        _validate_value(item, item_type, prefix + _element_string(element), errors,
                        allow_duplicates)


def _prefixed(prefix: str, message: str) -> str:
    return f"{prefix}: {message}" if prefix else message


def _scalar_problem(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "numeric" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected numeric (int or float), got {_go_type_name(value)}"
    if kind == "string" and not isinstance(value, str):
        return f"expected string, got &value.valueUnstructured{{Value:{_go_sharp(value)}}}"
    if kind == "boolean" and not isinstance(value, bool):
        return f"expected boolean, got {_go_unstructured(value)}"
    if kind == "untyped" and isinstance(value, (dict, list)):
        return f"expected any scalar, got {_go_unstructured(value)}"
    return ""


def _validation_error(errors: list[str]) -> str:
    if len(errors) == 1:
        return errors[0]
    return "errors:\n" + "\n".join("  " + e for e in errors)


# --------------------------------------------------------------------------------------------
# the updater: who owns what after an update or an apply (merge/update.go)


@dataclass(frozen=True, slots=True)
class _Owned:
    """A manager's field set (fieldpath.VersionedSet)."""

    paths: FieldSet
    api_version: str
    applied: bool


class _Conflicts(Exception):
    def __init__(self, conflicts: list[tuple[_Manager, Path]]):
        super().__init__(conflicts)
        self.conflicts = conflicts


class _Updater:
    """merge.Updater for one request: the object's type, the request's API version and the
    fields the request's strategy resets (and nobody owns)."""

    def __init__(self, root: _Type, api_version: str, ignored: FieldSet):
        self.root = root
        self.api_version = api_version
        self.ignored = ignored

    def update(self, live: Any, new: Any, managers: dict, manager: _Manager) -> dict:
        """Give ``manager`` the fields that changed from ``live`` to ``new``."""
        managers = self._reconcile(managers)
        managers, comparison = self._settle(live, new, managers, manager, force=True)
        previous = managers.get(manager)
        owned = (previous.paths if previous else frozenset()) - comparison.removed
        owned = _without(owned | comparison.modified | comparison.added, self.ignored)
        if owned:
            managers[manager] = _Owned(frozenset(owned), self.api_version, False)
        else:
            managers.pop(manager, None)
        return managers

    def apply(self, live: Any, config: dict, managers: dict, manager: _Manager,
              force: bool) -> tuple[Any, dict]:
        """Merge ``config`` into ``live`` for ``manager``; the new object is ``_ABSENT`` when
        nothing changed."""
        managers = self._reconcile(managers)
        merged = _merge(live, config, self.root)
        previous = managers.get(manager)
        applied = frozenset(_without(_field_set(config, self.root), self.ignored))
        managers[manager] = _Owned(applied, self.api_version, True)
        if previous is not None and not previous.paths <= applied:
            merged = self._prune(merged, managers, previous.paths)
        managers, _ = self._settle(live, merged, managers, manager, force)
        if _json_equal(live, merged):
            merged = _ABSENT
        return merged, managers

    def _settle(self, live: Any, new: Any, managers: dict, workflow: _Manager,
                force: bool) -> tuple[dict, _Comparison]:
        """Take changed fields from other managers (conflicts, unless forced) and drop
        removed fields from everyone's sets."""
        comparison = _compare(live, new, self.root).filtered(self.ignored)
        changed = comparison.modified | comparison.added
        conflicts = {}
        for manager, owned in managers.items():
            if manager != workflow:
                taken = owned.paths & changed
                if taken:
                    conflicts[manager] = taken
        if conflicts and not force:
            raise _Conflicts([(manager, path)
                              for manager in sorted(conflicts, key=_Manager.identifier)
                              for path in sorted(conflicts[manager], key=_path_order)])
        settled = {}
        for manager, owned in managers.items():
            paths = owned.paths
            if manager != workflow:
                paths = paths - conflicts.get(manager, frozenset()) - comparison.removed
            if paths:
                settled[manager] = _Owned(paths, owned.api_version, owned.applied)
        return settled, comparison

    def _prune(self, merged: Any, managers: dict, last_applied: FieldSet) -> Any:
        """Remove what the manager applied last time and no longer does, unless another
        manager owns it (Updater.prune: remove, add back owned items, add back dangling
        items).

        ``apply`` skips this when everything applied last time is applied again: the three
        steps then remove nothing, since every field of the last set, and every parent of
        one, is owned by the applier itself."""
        last = _with_named_fields(last_applied, self.root)
        pruned = _remove(merged, last, self.root)
        owned: set[Path] = set()
        for entry in managers.values():
            owned |= _with_named_fields(entry.paths, self.root)
        merged_set = _field_set(merged, self.root, named=True)
        pruned_set = _field_set(pruned, self.root, named=True)
        pruned = _remove(merged, merged_set - (pruned_set | owned), self.root)
        pruned_set = _field_set(pruned, self.root, named=True)
        return _remove(merged, (merged_set - pruned_set) & last, self.root)

    def _reconcile(self, managers: dict) -> dict:
        """Collapse ownership below fields the schema now makes atomic
        (ReconcileFieldSetWithSchema)."""
        return {manager: _reconciled(owned, self.root) for manager, owned in managers.items()}


def _reconciled(owned: _Owned, root: _Type) -> _Owned:
    """Fields below a now-atomic map or list collapse into it (ReconcileFieldSetWithSchema);
    ownership inside free-form maps is left alone."""
    trie: dict = {}
    for path in owned.paths:
        node = trie
        for element in path[:-1]:
            child = node.get(element)
            if child is None:
                child = node[element] = {}
            node = child
    roots: set[Path] = set()
    _find_atomic_parents(trie, root, (), roots)
    if not roots:
        return owned
    kept = _without(owned.paths, frozenset(roots))
    return _Owned(frozenset(kept | roots), owned.api_version, owned.applied)


def _find_atomic_parents(trie: dict, t: _Type, prefix: Path, roots: set[Path]) -> None:
    """Collect the paths with owned fields below them whose type is atomic."""
    for element, below in trie.items():
        child = t.element_of(element)[0]
        if child is None:
            continue
        path = prefix + (element,)
        if child.map_kind is not None:
            if child.deduced_map:
                continue
            if child.map_kind == "atomic":
                roots.add(path)
                continue
        elif child.list_kind is None:
            continue
        elif child.list_kind == "atomic":
            roots.add(path)
            continue
        if below:
            _find_atomic_parents(below, child, path, roots)


def _without(paths: Iterable[Path], ignored: FieldSet) -> set[Path]:
    """The paths not at or below any of ``ignored`` (Set.RecursiveDifference)."""
    if not ignored:
        return paths if isinstance(paths, set) else set(paths)
    return {p for p in paths if not any(p[:len(i)] == i for i in ignored)}


def _path_order(path: Path) -> tuple:
    return tuple(_element_order(element) for element in path)


# --------------------------------------------------------------------------------------------
# metadata.managedFields (managedfields.go, capmanagers.go, stripmeta.go)


class _Manager(NamedTuple):
    """A manager identity (BuildManagerIdentifier): Apply managers have no API version."""

    manager: str
    operation: str
    api_version: str
    subresource: str

    def identifier(self) -> str:
        """The JSON upstream keys managers by (and sorts conflict messages by)."""
        entry = {"manager": self.manager, "operation": self.operation,
                 "apiVersion": self.api_version, "subresource": self.subresource}
        return "{" + ",".join(f"{_go_json(k)}:{_go_json(v)}" for k, v in entry.items()
                              if v) + "}"


def _manager_id(name: str, operation: str, api_version: str, subresource: str) -> _Manager:
    return _Manager(name, operation, "" if operation == APPLY else api_version, subresource)


@dataclass(slots=True)
class _Managed:
    fields: dict  # _Manager -> _Owned
    times: dict  # _Manager -> RFC 3339 time or None


def _decode_managed(entries: Any) -> _Managed:
    """DecodeManagedFields; ``_Invalid`` if any entry is malformed."""
    managed = _Managed({}, {})
    if entries is None:
        return managed
    if not isinstance(entries, list):
        raise _Invalid("managedFields must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Invalid(f"managed fields entry {index} is not an object")
        operation = entry.get("operation")
        if operation not in (APPLY, UPDATE):
            raise _Invalid("operation must be `Apply` or `Update`")
        api_version = entry.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            raise _Invalid("apiVersion must not be empty")
        fields_type = entry.get("fieldsType", "")
        if fields_type != FIELDS_V1:
            raise _Invalid(f"missing fieldsType in managed fields entry {index}" if not fields_type
                           else f"invalid fieldsType {go_quote(str(fields_type))} in managed "
                                f"fields entry {index}")
        name, subresource = entry.get("manager", ""), entry.get("subresource", "")
        if not isinstance(name, str) or not isinstance(subresource, str):
            raise _Invalid(f"invalid manager in managed fields entry {index}")
        manager = _manager_id(name, operation, api_version, subresource)
        fields = entry.get("fieldsV1")
        paths = fields_to_set({} if fields is None else fields)
        managed.fields[manager] = _Owned(paths, api_version, operation == APPLY)
        managed.times[manager] = _normalize_time(entry.get("time"))
    return managed


def _normalize_time(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid("time must be a string")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"invalid time {value!r}") from None
    if moment.tzinfo is None:
        raise _Invalid(f"invalid time {value!r}")
    return _format_time(moment)


def _format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> str:
    return _format_time(datetime.datetime.now(datetime.timezone.utc))


def _encode_managed(managed: _Managed) -> list[dict] | None:
    """EncodeObjectManagedFields: entries sorted Apply before Update, then by time, manager,
    API version and subresource; None when nobody owns anything."""
    entries = []
    for manager, owned in managed.fields.items():
        entry: dict[str, Any] = {"manager": manager.manager,
                                 "operation": APPLY if owned.applied else manager.operation,
                                 "apiVersion": owned.api_version}
        moment = managed.times.get(manager)
        if moment is not None:
            entry["time"] = moment
        entry["fieldsType"] = FIELDS_V1
        entry["fieldsV1"] = set_to_fields(owned.paths)
        if manager.subresource:
            entry["subresource"] = manager.subresource
        entries.append(entry)
    if not entries:
        return None
    entries.sort(key=lambda e: (e["operation"], _unix_seconds(e.get("time")), e["manager"],
                                e["apiVersion"], e.get("subresource", "")))
    return entries


def _unix_seconds(moment: str | None) -> float:
    if moment is None:
        return 0
    return datetime.datetime.fromisoformat(moment).timestamp()


def _strip_unowned(managed: _Managed, manager: _Manager) -> None:
    owned = managed.fields.get(manager)
    if owned is None:
        return
    paths = owned.paths - _UNOWNED
    if paths:
        managed.fields[manager] = _Owned(paths, owned.api_version, owned.applied)
    else:
        del managed.fields[manager]


def _cap_update_managers(managed: _Managed, limit: int = MAX_UPDATE_MANAGERS) -> None:
    """Fold the oldest Update managers into "ancient-changes" past ``limit`` of them."""
    updaters = [m for m, owned in managed.fields.items() if not owned.applied]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda m: (_unix_seconds(managed.times.get(m)), m.identifier()))
    first_by_version: dict[str, _Manager] = {}
    count = len(updaters)
    for manager in updaters:
        if count <= limit:
            break
        owned = managed.fields[manager]
        version = owned.api_version
        bucket = _manager_id(_ANCIENT_CHANGES, UPDATE, version, "")
        first = first_by_version.get(version)
        if first is None:
            first_by_version[version] = manager
            continue
        if bucket not in managed.fields:
            managed.fields[bucket] = managed.fields.pop(first)
        merged = owned.paths | managed.fields[bucket].paths
        managed.fields[bucket] = _Owned(merged, version, owned.applied)
        del managed.fields[manager]
        count -= 1
        managed.times[bucket] = managed.times.get(manager)


# --------------------------------------------------------------------------------------------
# the field manager


@dataclass(slots=True)
class _Request:
    root: _Type
    api_version: str
    subresource: str
    updater: _Updater


def _request(node: Schema, schemas: Schemas, api_version: str, subresource: str,
             ignored: Iterable[str | Sequence[str]]) -> _Request:
    root = _root_type(node, schemas)
    paths = frozenset((p,) if isinstance(p, str) else tuple(p) for p in ignored)
    return _Request(root, api_version, subresource, _Updater(root, api_version, paths))


def _update_managed(request: _Request, live: Any, new: Any, managed: _Managed,
                    manager: str) -> _Managed:
    """The Update side of the manager chain: the changes become ``manager``'s (operation
    Update), then the number of Update managers is capped."""
    identity = _manager_id(manager or "unknown", UPDATE, request.api_version,
                           request.subresource)
    current = _manager_id(_CURRENT_OPERATION, UPDATE, request.api_version,
                          request.subresource)
    fields = request.updater.update(live, new, dict(managed.fields), current)
    result = _Managed(fields, dict(managed.times))
    _strip_unowned(result, current)
    changes = result.fields.pop(current, None)
    if changes is not None:
        previous = result.fields.get(identity)
        paths = changes.paths | previous.paths if previous else changes.paths
        result.fields[identity] = _Owned(paths, changes.api_version, changes.applied)
        result.times[identity] = _now()
    _cap_update_managers(result)
    return result


def _apply_managed(request: _Request, live: dict, applied: dict, managed: _Managed,
                   manager: str, force: bool) -> tuple[dict, _Managed]:
    """The Apply side of the manager chain. An object nobody manages yet is first given to
    "before-first-apply", so that its existing fields can conflict."""
    if not managed.fields:
        managed = _update_managed(request, {}, live, managed, _BEFORE_FIRST_APPLY)
    identity = _manager_id(manager, APPLY, request.api_version, request.subresource)
    merged, fields = request.updater.apply(live, applied, dict(managed.fields), identity,
                                           force)
    result = _Managed(fields, dict(managed.times))
    _strip_unowned(result, identity)
    if merged is _ABSENT:
        merged = live
    else:
        result.times[identity] = _now()
    return merged, result


def apply(live: dict | None, applied: Any, *, manager: str, force: bool, node: Schema,
          schemas: Schemas, api_version: str, subresource: str = "", kind: str = "",
          ignored: Iterable[str | Sequence[str]] = ()) -> dict:
    """Server-side apply ``applied`` (the decoded apply patch) to ``live``.

    ``live`` is None to create the object by applying it. ``node`` is the root schema of the
    kind, ``api_version`` the request's group/version and ``kind`` its kind (taken from
    ``live`` or the schema when empty). ``ignored`` lists the top-level fields the request's
    strategy resets (``["status"]`` for the main resource, ``["spec"]`` for ``status``), given
    as field names or paths.

    Returns the new object with ``metadata.managedFields`` updated; the caller defaults,
    validates and stores it. Raises StatusError: 400 for an apply patch of the wrong type or
    with managedFields, 409 Conflict for fields other managers own, 500 (as upstream) for a
    configuration the schema cannot read."""
    request = _request(node, schemas, api_version, subresource, ignored)
    current: dict = live if live is not None else {}
    applied = _applied_object(applied)
    try:
        managed = _decode_managed(_managed_fields_of(current))
    except _Invalid as err:
        raise _internal(f"failed to decode managed fields: {err}") from None
    _check_applied_type(applied, api_version, kind or _kind_of(current, node, api_version))
    if isinstance(_managed_fields_of(applied), list):
        raise bad_request("metadata.managedFields must be nil")
    _check_applied_schema(applied, request.root)
    try:
        result, managed = _apply_upgrading_last_applied(request, current, applied, managed,
                                                        manager, force)
    except _Conflicts as err:
        raise _conflict_error(err.conflicts) from None
    except _Invalid as err:
        raise _internal(f"failed to update managed fields: {err}") from None
    result = _without_nulls(result)
    _set_managed_fields(result, _encode_managed(managed))
    if manager == _KUBECTL:
        _update_last_applied(result, applied)
    return result


def _applied_object(applied: Any) -> dict:
    """The apply patch must decode into an object; an empty document is an empty one."""
    if applied is None:
        return {}
    if isinstance(applied, dict):
        return applied
    kind = ("array" if isinstance(applied, list) else "string" if isinstance(applied, str)
            else "bool" if isinstance(applied, bool) else "number")
    raise bad_request(f"error decoding patch: json: cannot unmarshal {kind} into Go value of "
                      "type map[string]interface {}")


def _apply_upgrading_last_applied(request: _Request, live: dict, applied: dict,
                                  managed: _Managed, manager: str,
                                  force: bool) -> tuple[dict, _Managed]:
    """kubectl's server-side apply takes over the fields its client-side apply set: conflicts
    on fields the last-applied annotation records, with the value live still has, are
    forced (lastappliedmanager.go)."""
    try:
        return _apply_managed(request, live, applied, managed, manager, force)
    except _Conflicts as err:
        if manager != _KUBECTL:
            raise
        allowed = _fields_from_last_applied(request, live)
        if allowed is None:
            raise
        remaining = [(who, path) for who, path in err.conflicts if path not in allowed]
        if remaining:
            raise _Conflicts(remaining) from None
        return _apply_managed(request, live, applied, managed, manager, True)


def _fields_from_last_applied(request: _Request, live: dict) -> set[Path] | None:
    """The fields of the last-applied annotation whose value live still has."""
    annotation = ((live.get("metadata") or {}).get("annotations") or {}).get(
        LAST_APPLIED_ANNOTATION)
    if not annotation or not isinstance(annotation, str):
        return None
    try:
        last_applied = json.loads(annotation)
    except ValueError:
        return None
    if (not isinstance(last_applied, dict) or not last_applied.get("kind")
            or last_applied.get("apiVersion") != request.api_version):
        return None
    if _validate(last_applied, request.root) or _validate(live, request.root):
        return None
    try:
        fields = _field_set(last_applied, request.root)
        changed = _compare(last_applied, live, request.root)
    except _Invalid:
        return None
    return fields - changed.modified - changed.added - changed.removed


def _update_last_applied(result: dict, applied: dict) -> None:
    """Keep the client-side apply annotation equal to what kubectl applied server-side, when
    the object has one (lastappliedupdater.go)."""
    annotations = (result.get("metadata") or {}).get("annotations") or {}
    if not annotations.get(LAST_APPLIED_ANNOTATION):
        return
    config = _clone(applied)
    metadata = config.get("metadata")
    if isinstance(metadata, dict):
        if isinstance(metadata.get("annotations"), dict):
            metadata["annotations"].pop(LAST_APPLIED_ANNOTATION, None)
        else:
            metadata.pop("annotations", None)
    annotations = dict(annotations)
    annotations[LAST_APPLIED_ANNOTATION] = _go_json(config, sort_keys=True) + "\n"
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_SIZE_LIMIT:
        del annotations[LAST_APPLIED_ANNOTATION]
    result["metadata"]["annotations"] = annotations


def track_update(old: dict | None, new: dict, *, manager: str, node: Schema, schemas: Schemas,
                 api_version: str, subresource: str = "",
                 ignored: Iterable[str | Sequence[str]] = ()) -> None:
    """Record in ``new``'s managedFields that ``manager`` (operation Update) set whatever
    changed from ``old`` (None on create); other managers lose those fields.

    Call it with the object as decoded and defaulted, before the strategy resets fields.
    ``managedFields`` the request sends replace the stored ones (``[]`` clears them);
    malformed ones are ignored in favour of the stored ones, and so are any sent to a
    subresource. If the objects cannot be read as the schema says, the stored managedFields
    are kept, as upstream's UpdateNoErrors does."""
    current: dict = old if old is not None else {}
    try:
        request = _request(node, schemas, api_version, subresource, ignored)
        managed = _managed_for_update(current, new, bool(subresource))
        _set_managed_fields(new, None)
        if managed.fields or not (current.get("metadata") or {}).get("uid"):
            managed = _update_managed(request, current, new, managed, manager)
        _set_managed_fields(new, _encode_managed(managed))
    except _Invalid:
        _set_managed_fields(new, _managed_fields_of(current))


def _managed_for_update(live: dict, new: dict, is_subresource: bool) -> _Managed:
    """decodeLiveOrNew: the request's managedFields, unless it sends none, sends broken ones
    or targets a subresource; an explicit empty list resets ownership."""
    if not is_subresource:
        sent = _managed_fields_of(new)
        if isinstance(sent, list) and (not sent or (len(sent) == 1 and _is_zero_entry(sent[0]))):
            return _Managed({}, {})
        try:
            managed = _decode_managed(sent)
        except _Invalid:
            managed = _Managed({}, {})
        if managed.fields:
            return managed
    try:
        return _decode_managed(_managed_fields_of(live))
    except _Invalid:
        return _Managed({}, {})


def _is_zero_entry(entry: Any) -> bool:
    """An entry with no field set: ``[{}]`` resets managedFields like ``[]``."""
    return isinstance(entry, dict) and not any(
        value not in (None, "") for key, value in entry.items() if key != "fieldsV1"
    ) and entry.get("fieldsV1") is None


def _managed_fields_of(obj: dict) -> Any:
    metadata = obj.get("metadata")
    return metadata.get("managedFields") if isinstance(metadata, dict) else None


def _set_managed_fields(obj: dict, entries: list | None) -> None:
    metadata = obj.get("metadata")
    if entries is None:
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        return
    if not isinstance(metadata, dict):
        metadata = obj["metadata"] = {}
    metadata["managedFields"] = entries


def _kind_of(live: dict, node: Schema, api_version: str) -> str:
    if live.get("kind"):
        return live["kind"]
    group, _, version = api_version.rpartition("/")
    for gvk in node.get("x-kubernetes-group-version-kind", ()):
        if gvk.get("group") == group and gvk.get("version") == version:
            return gvk.get("kind", "")
    return ""


def _check_applied_type(applied: dict, api_version: str, kind: str) -> None:
    """versionCheckManager: the apply patch must be of the request's kind and version."""
    sent = _gvk_string(applied.get("apiVersion"), applied.get("kind"))
    if sent != _gvk_string(api_version, kind or applied.get("kind")):
        raise bad_request(f"invalid object type: {sent}")


def _gvk_string(api_version: Any, kind: Any) -> str:
    api_version = api_version if isinstance(api_version, str) else ""
    kind = kind if isinstance(kind, str) else ""
    if api_version.count("/") > 1:
        return "/, Kind="
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _check_applied_schema(applied: dict, root: _Type) -> None:
    errors = _validate(applied, root)
    if errors:
        metadata = applied.get("metadata") if isinstance(applied.get("metadata"), dict) else {}
        where = (f"{metadata.get('namespace', '')}/{metadata.get('name', '')}; "
                 f"{_gvk_string(applied.get('apiVersion'), applied.get('kind'))}")
        raise _internal(f"failed to create typed patch object ({where}): "
                        f"{_validation_error(errors)}")


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> StatusError:
    """NewConflictError: one cause per conflicting field, the message grouped by manager."""
    causes = [{"reason": "FieldManagerConflict",
               "message": f"conflict with {_describe(manager)}", "field": _path_string(path)}
              for manager, path in conflicts]
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = (f"Apply failed with 1 conflict: conflict with {_describe(manager)}: "
                   f"{_path_string(path)}")
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}, key=_Manager.identifier):
            lines.append(f"conflicts with {_describe(manager)}:")
            lines.extend(f"- {_path_string(p)}" for m, p in conflicts if m == manager)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, details={"causes": causes})


def _describe(manager: _Manager) -> str:
    """printManager: ``"kubectl-edit" using apps/v1`` for Updates, the name for Applies."""
    text = go_quote(manager.manager)
    if manager.subresource:
        text += f" with subresource {go_quote(manager.subresource)}"
    if manager.operation == UPDATE:
        text += f" using {manager.api_version}"
    return text


def _internal(message: str) -> StatusError:
    """An error upstream's field manager returns without a status: 500 with its text."""
    return StatusError(500, "", message)


# --------------------------------------------------------------------------------------------
# manager names


def default_manager(user_agent: str) -> str:
    """The manager name of a request that names none: the user agent up to its first "/",
    printable characters only, at most 128 bytes (``kubectl``, ``OpenAPI-Generator``,
    ``Go-http-client``)."""
    out = []
    size = 0
    for char in user_agent.split("/", 1)[0]:
        if not go_printable(char):
            continue
        width = len(char.encode())
        if size + width > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(char)
        size += width
    return "".join(out)


def validate_managed_fields(entries: Any, path: str = "metadata.managedFields"
                            ) -> list[FieldError]:
    """ObjectMeta validation of managedFields entries (ValidateManagedFields)."""
    errors: list[FieldError] = []
    if not isinstance(entries, list):
        return errors
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        at = f"{path}[{index}]"
        operation = entry.get("operation", "")
        if operation == "":
            errors.append(required(f"{at}.operation", "must not be empty"))
        elif operation not in (APPLY, UPDATE):
            errors.append(not_supported(f"{at}.operation", operation, [APPLY, UPDATE]))
        fields_type = entry.get("fieldsType", "")
        if fields_type and fields_type != FIELDS_V1:
            errors.append(invalid(f"{at}.fieldsType", fields_type, "must be `FieldsV1`"))
        errors.extend(validate_field_manager(entry.get("manager", ""), f"{at}.manager"))
        if len(str(entry.get("subresource", "")).encode()) > SUBRESOURCE_MAX_LENGTH:
            errors.append(FieldError(TOO_LONG, f"{at}.subresource",
                                     f"may not be more than {SUBRESOURCE_MAX_LENGTH} bytes"))
    return errors


def validate_field_manager(name: str, path: str = "fieldManager") -> list[FieldError]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    errors: list[FieldError] = []
    encoded = name.encode()
    if len(encoded) > FIELD_MANAGER_MAX_LENGTH:
        errors.append(FieldError(TOO_LONG, path,
                                 f"may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"))
    position = 0
    for char in name:
        if not go_printable(char):
            errors.append(invalid(path, name, f"invalid character U+{ord(char):04X} "
                                              f"(at position {position})"))
        position += len(char.encode())
    return errors


# --------------------------------------------------------------------------------------------
# JSON values the way Go writes them


def _json_equal(left: Any, right: Any) -> bool:
    """structured-merge-diff's value equality: numbers compare numerically, booleans are not
    numbers."""
    if left is right:
        return True
    if isinstance(left, dict):
        return (isinstance(right, dict) and len(left) == len(right)
                and all(k in right and _json_equal(v, right[k]) for k, v in left.items()))
    if isinstance(left, list):
        return (isinstance(right, list) and len(left) == len(right)
                and all(map(_json_equal, left, right)))
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, (int, float)):
        return isinstance(right, (int, float)) and left == right
    return type(left) is type(right) and left == right


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _without_nulls(value: Any) -> Any:
    """A fresh copy without null members of objects: upstream decodes the merged object into
    its Go type, where a null field is no field."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _go_json(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON as Go's encoder writes it: HTML characters escaped, floats in Go's form."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).translate(_HTML_ESCAPES)
    if isinstance(value, float):
        return _go_json_float(value)
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v, sort_keys=sort_keys) for v in value) + "]"
    keys = sorted(value) if sort_keys else list(value)
    return "{" + ",".join(f"{_go_json(k)}:{_go_json(value[k], sort_keys=sort_keys)}"
                          for k in keys) + "}"


def _go_json_float(value: float) -> str:
    """encoding/json's float64: plain digits between 1e-6 and 1e21, else ``1e+21``/``1e-7``."""
    if value != 0 and (abs(value) < 1e-6 or abs(value) >= 1e21):
        digits, power = shortest_digits(value)
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exponent = f"+{power:02d}" if power >= 0 else str(power)
        return ("-" if value < 0 else "") + f"{mantissa}e{exponent}"
    return format(Decimal(repr(value)).normalize(), "f")


def _go_type_name(value: Any) -> str:
    names = {dict: "map[string]interface {}", list: "[]interface {}", str: "string",
             bool: "bool", int: "int64", float: "float64"}
    return names.get(type(value), "<nil>")


def _go_sharp(value: Any) -> str:
    """``%#v`` of a JSON value."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        return "map[string]interface {}{" + ", ".join(
            f"{go_quote(k)}:{_go_sharp_elem(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_sharp_elem(v) for v in value) + "}"
    return str(value)


def _go_sharp_elem(value: Any) -> str:
    return "interface {}(nil)" if value is None else _go_sharp(value)


def _go_unstructured(value: Any) -> str:
    """``%v`` of a structured-merge-diff value wrapping ``value``."""
    return "&{" + go_value(value) + "}"


