"""PATCH request bodies applied to objects, with the API server's semantics and errors.

Three patch formats change an object in place of a full update:

- JSON patch (RFC 6902) and JSON merge patch (RFC 7386) behave like
  ``gopkg.in/evanphx/json-patch.v4``, which ``k8s.io/apiserver``'s patch handler calls, quirks
  included (``replace`` of a missing object key adds it, negative array indices count from
  the end, a merge patch prunes ``null`` inside new values);
- strategic merge patch is a port of ``k8s.io/apimachinery/pkg/util/strategicpatch`` as the
  server runs it (parallel lists merged, unmatched nulls ignored). The metadata upstream reads
  from Go struct tags (``patchStrategy``, ``patchMergeKey``) comes from our schema nodes'
  ``x-kubernetes-patch-strategy`` and ``x-kubernetes-patch-merge-key``.

Server-side apply (``application/apply-patch+yaml``) is not a patch of this kind: it goes
through ``sampan.api.managedfields.apply``.

Upstream answers a patch it cannot apply with the statuses we use too: 400 for a malformed
patch, 422 for a JSON patch operation that does not apply (with a fixed message — the server
does not say which operation failed), 413 past 10000 JSON patch operations, 415 for a patch
type the resource does not take (strategic merge on custom resources), and 500 with the error
text for what strategicpatch reports without a status (a list item without its merge key, for
example).
"""

from __future__ import annotations

from typing import Any

import orjson

from sampan.api.errors import StatusError, bad_request, invalid, too_large
from sampan.api.gofmt import go_value
from sampan.api.schema import Schema, Schemas, patch_merge_key, patch_strategy

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"

# What the server accepts, in the order its 415 error lists them. CBOR apply needs the
# CBORServingAndStorage feature gate, which is off.
BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH_YAML)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH_YAML)
APPLY_PATCH_TYPES = (APPLY_PATCH_YAML,)

MAX_JSON_PATCH_OPERATIONS = 10000

# The message of every 422 the patch handler builds with NewGenericServerResponse.
_REJECTED = "the server rejected our request due to an error in our request"


def check_patch_type(content_type: str, *, is_custom: bool) -> str:
    """The patch type of a PATCH request's Content-Type, or 415 like upstream."""
    separator = content_type.find(";")
    patch_type = content_type[:separator] if separator > 0 else content_type
    accepted = CUSTOM_PATCH_TYPES if is_custom else BUILTIN_PATCH_TYPES
    if patch_type not in accepted:
        raise StatusError(
            415, "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted))
    return patch_type


def apply_patch(obj: dict, patch_type: str, patch_body: bytes, node: Schema, schemas: Schemas,
                *, is_custom: bool) -> dict:
    """Apply a JSON, merge or strategic merge patch body to ``obj`` (which is not modified).

    ``patch_type`` is the request's Content-Type; ``node`` is the root schema node of the
    object's kind. Apply patches are refused here: they go through managedfields.apply."""
    patch_type = check_patch_type(patch_type, is_custom=is_custom)
    if patch_type in APPLY_PATCH_TYPES:
        raise ValueError("server-side apply goes through sampan.api.managedfields.apply")
    patch = _parse_json_body(patch_body)
    if patch_type == JSON_PATCH:
        return json_patch(obj, patch)
    if patch_type == MERGE_PATCH:
        return merge_patch(obj, patch)
    return strategic_merge_patch(obj, patch, node, schemas)


def _parse_json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("invalid JSON patch") from None


# --------------------------------------------------------------------------------------------
# JSON patch (RFC 6902), as evanphx/json-patch v4 applies it


class _OperationFailed(Exception):
    """An operation that does not apply; the server answers 422 without saying which."""


def json_patch(obj: dict, ops: Any) -> dict:
    """Apply RFC 6902 operations to a copy of ``obj``."""
    operations = _decode_operations(ops)
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large("Request entity too large: The allowed maximum operations in a JSON "
                        f"patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}")
    doc: Any = _clone(obj)
    try:
        for op in operations:
            doc = _apply_operation(doc, op)
    except _OperationFailed:
        raise StatusError(422, "Invalid", _REJECTED, details={}) from None
    return _require_object(doc)


def _decode_operations(ops: Any) -> list[dict]:
    if ops is None:
        return []
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type "
                          "jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise bad_request(f"json: cannot unmarshal {_json_kind(op)} into Go value of type "
                              "jsonpatch.Operation")
    return [op or {} for op in ops]


def _apply_operation(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    if kind == "add":
        container, key = _find_container(doc, _string_member(op, "path"))
        _container_add(container, key, op.get("value"))
    elif kind == "remove":
        container, key = _find_container(doc, _string_member(op, "path"))
        _container_remove(container, key)
    elif kind == "replace":
        return _replace(doc, op)
    elif kind == "move":
        container, key = _find_container(doc, _string_member(op, "from"))
        value = _container_get(container, key)
        _container_remove(container, key)
        container, key = _find_container(doc, _string_member(op, "path"))
        _container_add(container, key, value)
    elif kind == "copy":
        container, key = _find_container(doc, _string_member(op, "from"))
        value = _clone(_container_get(container, key))
        container, key = _find_container(doc, _string_member(op, "path"))
        _container_add(container, key, value)
    elif kind == "test":
        _test(doc, op)
    else:
        raise _OperationFailed(f"Unexpected kind: {kind}")
    return doc


def _string_member(op: dict, name: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        raise _OperationFailed(f"operation missing {name} field")
    return value


def _replace(doc: Any, op: dict) -> Any:
    path = _string_member(op, "path")
    value = op.get("value")
    if path == "":
        if not isinstance(value, (dict, list)):
            raise _OperationFailed("replace operation value must be object or array")
        return value
    container, key = _find_container(doc, path)
    _container_get(container, key)  # an array index must exist; an object key need not
    _container_set(container, key, value)
    return doc


def _test(doc: Any, op: dict) -> None:
    path = _string_member(op, "path")
    if path == "":
        actual = doc
    else:
        container, key = _find_container(doc, path)
        actual = _container_get(container, key)
    if "value" not in op:
        if actual is None:
            return
        raise _OperationFailed(f"testing value {path} failed")
    if not _json_equal(actual, op["value"]):
        raise _OperationFailed(f"testing value {path} failed")


def _find_container(doc: Any, path: str) -> tuple[dict | list, str]:
    """The container that holds the last token of ``path``, and that token (RFC 6901)."""
    tokens = path.split("/")
    if len(tokens) < 2:
        raise _OperationFailed(f"doc is missing path: {path}")
    container = doc
    for token in tokens[1:-1]:
        child = _container_get(container, _unescape(token))
        if not isinstance(child, (dict, list)):
            raise _OperationFailed(f"doc is missing path: {path}")
        container = child
    return container, _unescape(tokens[-1])


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _container_get(container: dict | list, key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    return container[_array_index(key, len(container), len(container) - 1)]


def _container_set(container: dict | list, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        container[_array_index(key, len(container), len(container) - 1)] = value


def _container_add(container: dict | list, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    elif key == "-":
        container.append(value)
    else:
        container.insert(_array_index(key, len(container) + 1, len(container)), value)


def _container_remove(container: dict | list, key: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise _OperationFailed(f"Unable to remove nonexistent key: {key}")
        del container[key]
    else:
        del container[_array_index(key, len(container), len(container) - 1)]


def _array_index(token: str, size: int, last: int) -> int:
    """An array index token; negative indices count from the end, as json-patch v4 allows."""
    digits = token[1:] if token[:1] in ("+", "-") else token
    if not digits.isascii() or not digits.isdigit():
        raise _OperationFailed(f"value was not a proper array index: '{token}'")
    index = int(token)
    if index < 0:
        if index < -size:
            raise _OperationFailed(f"Unable to access invalid index: {index}")
        index += size
    if index > last:
        raise _OperationFailed(f"Unable to access invalid index: {index}")
    return index


# --------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386), as evanphx/json-patch v4 applies it


def merge_patch(obj: dict, patch: Any) -> dict:
    """Apply an RFC 7386 merge patch to a copy of ``obj``."""
    if isinstance(patch, list):
        return _require_object(_prune_nulls(_clone(patch)))
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    doc = _clone(obj)
    _merge_documents(doc, _clone(patch))
    return doc


def _merge_documents(doc: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif doc.get(key) is None:
            doc[key] = _prune_nulls(value)
        else:
            doc[key] = _merge_value(doc[key], value)


def _merge_value(current: Any, patch: Any) -> Any:
    if not isinstance(current, dict):
        return _prune_nulls(patch)
    if not isinstance(patch, dict):
        return patch
    _merge_documents(current, patch)
    return current


def _prune_nulls(value: Any) -> Any:
    """Drop null members of the objects in ``value``; null array elements stay."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for item in value.values():
            _prune_nulls(item)
    elif isinstance(value, list):
        for item in value:
            _prune_nulls(item)
    return value


def _require_object(patched: Any) -> dict:
    """A patch result that is not an object fails like upstream's decode of the patched JSON."""
    if isinstance(patched, dict):
        return patched
    detail = (f"couldn't get version/kind; json parse error: json: cannot unmarshal "
              f"{_json_kind(patched)} into Go value of type struct "
              '{ APIVersion string "json:\\"apiVersion,omitempty\\""; '
              'Kind string "json:\\"kind,omitempty\\"" }')
    error = invalid("patch", orjson.dumps(patched).decode(), detail)
    raise StatusError(422, "Invalid", f' "" is invalid: {error.message()}',
                      details={"causes": [error.cause()]})


# --------------------------------------------------------------------------------------------
# strategic merge patch

_DIRECTIVE = "$patch"
_DELETE = "delete"
_REPLACE = "replace"
_MERGE = "merge"
_RETAIN_KEYS = "retainKeys"
_RETAIN_KEYS_DIRECTIVE = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"

_MISSING = object()


def strategic_merge_patch(obj: dict, patch: Any, node: Schema, schemas: Schemas) -> dict:
    """Apply a strategic merge patch to a copy of ``obj``; ``node`` is the kind's root schema.

    Lists whose field has the ``merge`` strategy are merged: maps by their merge key, primitive
    values as a set; other lists are replaced. ``$patch: replace|delete`` (in maps and list
    items), ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
    ``$setElementOrder/<field>`` directives apply as upstream's server side applies them."""
    if patch is None:
        return _clone(obj)
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {_json_kind(patch)} into Go value of type "
                          "map[string]interface {}")
    return _merge_map(_clone(obj), _clone(patch), _PatchMeta(node, schemas))


class _PatchMeta:
    """What strategicpatch's ``PatchMetaFromStruct`` knows about a Go type, read from the
    schema node of the type: its fields' patch strategies and merge keys, and the element type
    of list fields. ``LookupPatchMetadataForStruct`` and ``...ForSlice`` fail like their Go
    counterparts when the type has no such field or is not a struct."""

    __slots__ = ("node", "schemas", "resolved")

    def __init__(self, node: Schema | None, schemas: Schemas):
        self.node = node
        self.schemas = schemas
        self.resolved = schemas.resolve(node)

    def field(self, key: str) -> tuple[_PatchMeta, list[str], str]:
        """The field's type, its patch strategies and merge key."""
        properties = self.resolved.get("properties")
        if properties is None:
            if self._go_kind() == "struct":
                raise _unknown(f'unable to find api field in struct {self._go_name()} for the '
                               f'json field "{key}"')
            raise _unknown("merging an object in json but data type is not struct, instead "
                           f"is: {self._go_kind()}")
        if key not in properties:
            raise _unknown(f'unable to find api field in struct {self._go_name()} for the json '
                           f'field "{key}"')
        child = properties[key]
        return (_PatchMeta(child, self.schemas), patch_strategy(child).split(","),
                patch_merge_key(child) or "")

    def list_field(self, key: str) -> tuple[_PatchMeta, list[str], str]:
        """The element type of a list field, the field's patch strategies and merge key."""
        field, strategies, merge_key = self.field(key)
        kind = field._go_kind()
        if kind == "slice":
            return _PatchMeta(self.schemas.item(field.node), self.schemas), strategies, merge_key
        if kind == "struct" and "properties" in field.resolved:
            # A pointer to a struct: Go's lookup hands out the struct as the "element".
            return field, strategies, merge_key
        raise _unknown(f"expected slice or array type, but got: {self._go_kind()}")

    def name(self) -> str:
        return self._go_kind()

    def _go_kind(self) -> str:
        resolved = self.resolved
        if "properties" in resolved:
            return "struct"
        kind = resolved.get("type")
        if kind == "array":
            return "slice"
        if kind == "object" and isinstance(resolved.get("additionalProperties"), dict):
            return "map"
        scalar = {"string": "string", "boolean": "bool", "number": "float64"}
        if kind in scalar and resolved.get("format") != "quantity":
            return scalar[kind]
        if kind == "integer":
            return "int32" if resolved.get("format") == "int32" else "int64"
        return "struct"  # IntOrString, Quantity, Time, RawExtension and other opaque types

    def _go_name(self) -> str:
        ref = (self.node or {}).get("$ref", "")
        if ref:
            return ref.rsplit(".", 1)[-1]
        for name, definition in self.schemas.definitions.items():
            if definition is self.resolved:
                return name.rsplit(".", 1)[-1]
        return ""


def _merge_map(original: dict | None, patch: dict, meta: _PatchMeta) -> dict:
    if _DIRECTIVE in patch:
        return _map_directive(patch[_DIRECTIVE], patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, meta)
    for key, patch_value in list(patch.items()):
        is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _directive_field(key, _DELETE_FROM_PRIMITIVE_LIST)
        if patch_value is None:
            original.pop(key, None)
            continue
        original_value = original.get(key, _MISSING)
        if original_value is _MISSING or type(original_value) is not type(patch_value):
            if not is_delete_list:
                _set_patch_value(original, key, patch_value)
            continue
        if isinstance(original_value, dict):
            field, strategies, _ = meta.field(key)
            if _strategy(strategies) == _REPLACE:
                original[key] = patch_value
            else:
                original[key] = _merge_map(original_value, patch_value, field)
        elif isinstance(original_value, list):
            element, strategies, merge_key = meta.list_field(key)
            original[key], _ = _merge_list_field(original_value, patch_value, element,
                                                 _strategy(strategies), merge_key,
                                                 is_delete_list)
        else:
            _set_patch_value(original, key, patch_value)
    return original


def _map_directive(directive: Any, patch: dict) -> dict:
    if directive == _REPLACE:
        del patch[_DIRECTIVE]
        return patch
    if directive == _DELETE:
        return {}
    raise _unknown(f"unknown patch type: {_go_string(directive)} in map: {go_value(patch)}")


def _set_patch_value(original: dict, key: str, value: Any) -> None:
    """Take a patch value where the original has nothing to merge it with."""
    _discard_nulls(value)
    value, keep = _remove_directives(value)
    if keep:
        original[key] = value
    else:
        original.pop(key, None)


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for item in value.values():
            _discard_nulls(item)
    elif isinstance(value, list):
        for item in value:
            _discard_nulls(item)


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """``value`` without maps that carry ``$patch``; False if ``value`` itself carries one."""
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        for key, item in list(value.items()):
            item, keep = _remove_directives(item)
            if keep:
                value[key] = item
            else:
                del value[key]
        return value, True
    if isinstance(value, list):
        kept = []
        for item in value:
            item, keep = _remove_directives(item)
            if keep:
                kept.append(item)
        return kept, True
    return value, True


def _strategy(strategies: list[str]) -> str:
    """The field's strategy besides ``retainKeys``, which only shapes the patches clients
    compute (the server acts on the ``$retainKeys`` directive instead)."""
    if len(strategies) == 1:
        return "" if strategies[0] == _RETAIN_KEYS else strategies[0]
    if len(strategies) == 2 and _RETAIN_KEYS in strategies:
        return strategies[1] if strategies[0] == _RETAIN_KEYS else strategies[0]
    raise _unknown(f"unexpected patch strategy: {go_value(strategies)}")


def _directive_field(key: str, prefix: str) -> str:
    head, sep, field = key.partition("/")
    if not sep or head != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE_LIST:
            raise bad_request("invalid patch format of primitive list")
        raise bad_request("invalid patch format of setElementOrder list")
    return field


def _apply_retain_keys(original: dict, patch: dict) -> None:
    """``$retainKeys``: clear the original's fields missing from the list; the patch may only
    set fields the list names."""
    if _RETAIN_KEYS_DIRECTIVE not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS_DIRECTIVE)
    if not isinstance(retain, list):
        raise bad_request("invalid patch format of retainKeys")
    kept = {key for key in retain if isinstance(key, str)}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if key not in kept:
            raise bad_request("invalid patch format of retainKeys")
    for key in [k for k in original if k not in kept]:
        del original[key]


def _merge_ordered_lists(original: dict, patch: dict, meta: _PatchMeta) -> None:
    """``$setElementOrder/<field>``: merge the field's list and order the result as the
    directive says (its order first, then the patch's, then the live object's)."""
    for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _unknown(f"expected a []interface {{}}, but received a {_go_type(order)}")
        field = _directive_field(key, _SET_ELEMENT_ORDER)
        original_list = _list_or_missing(original.get(field, _MISSING))
        patch_list = _list_or_missing(patch.get(field, _MISSING))
        element, strategies, merge_key = meta.list_field(field)
        strategy = _strategy(strategies)
        _check_order_directive(None if patch_list is _MISSING else patch_list, order, merge_key)
        if original_list is _MISSING and patch_list is _MISSING:
            continue
        live = [] if original_list is _MISSING else original_list
        if patch_list is _MISSING:
            merged = original_list
        elif original_list is _MISSING:
            merged = _remove_directives(patch_list)[0]
        else:
            merged, live = _merge_list_field(original_list, patch_list, element, strategy,
                                             merge_key, False)
        in_order, server_only = _partition(merged, order, merge_key)
        element_type = _element_type(live, [] if patch_list is _MISSING else patch_list)
        original[field] = _normalize_order(in_order, server_only, order, live, merge_key,
                                           element_type)
        patch.pop(field, None)


def _list_or_missing(value: Any) -> Any:
    if value is _MISSING or isinstance(value, list):
        return value
    raise _unknown(f"expected a []interface {{}}, but received a {_go_type(value)}")


def _check_order_directive(patch_list: list | None, order: list, merge_key: str) -> None:
    """The patch list's items must appear in ``$setElementOrder``, in the same order."""
    if not order or not patch_list:
        return
    items = _without_deletions(patch_list)[0] if merge_key else patch_list
    patch_index = order_index = 0
    while patch_index < len(items) and order_index < len(order):
        item = items[patch_index]
        if isinstance(item, dict) and _DIRECTIVE in item:
            patch_index += 1
            continue
        if _merge_key_equal(item, order[order_index], merge_key):
            patch_index += 1
        order_index += 1
    if patch_index < len(items) and order_index >= len(order):
        raise _unknown(f"The order in patch list:\n{go_value(patch_list)}\n doesn't match "
                       f"{_SET_ELEMENT_ORDER} list:\n{go_value(order)}\n")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _unknown(f"expected a map[string]interface {{}}, but received a "
                           f"{_go_type(item)}")
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _same(left[merge_key], right[merge_key])


def _merge_list_field(original: list, patch: list, element: _PatchMeta, strategy: str,
                      merge_key: str, is_delete_list: bool) -> tuple[list, list]:
    """The merged list, and the original list as Go's caller sees it afterwards (see
    ``_merge_list``)."""
    if strategy == _MERGE or is_delete_list:
        return _merge_list(original, patch, element, merge_key, is_delete_list)
    return patch, original


def _merge_list(original: list, patch: list, element: _PatchMeta, merge_key: str,
                is_delete_list: bool) -> tuple[list, list]:
    """Merge two lists; also return the caller's view of ``original`` afterwards.

    Go's mergeSlice shares the original's backing array: ``$patch: delete`` shifts the
    remaining items left in place, and the first items appended after that fill the vacated
    slots. Upstream orders a ``$setElementOrder`` list by that view of the live list, so the
    view is part of the semantics."""
    if not original and not patch:
        return original, original
    element_type = _element_type(original, patch)
    if element_type is not dict:
        if is_delete_list:
            kept = [item for item in original if not any(_same(item, d) for d in patch)]
            return kept, original
        merged = _unique(original + patch)
        live_view = original
    else:
        if not merge_key:
            raise _unknown(f"cannot merge lists without merge key for {element.name()}")
        remaining, plain, replace = _apply_list_directives(original, patch, merge_key)
        base, patch = (plain, []) if replace else (remaining, plain)
        merged = _merge_by_key(base, patch, merge_key, element)
        vacated = len(original) - len(remaining)
        live_view = remaining if replace else remaining + merged[len(base):][:vacated]
        original = base
    in_patch, server_only = _partition(merged, patch, merge_key)
    ordered = _normalize_order(in_patch, server_only, patch, original, merge_key, element_type)
    return ordered, live_view


def _apply_list_directives(original: list, patch: list,
                           merge_key: str) -> tuple[list, list, bool]:
    """Apply the patch items that carry ``$patch``: ``delete`` removes the original's items
    with that key, ``replace`` (the third result) makes the other items the whole list.
    Returns the remaining original items and the patch's plain items."""
    plain = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == _DELETE:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = _delete_by_key(original, merge_key, item[merge_key])
        elif directive == _REPLACE:
            replace = True
        elif directive == _MERGE:
            raise _unknown("merging lists cannot yet be specified in the patch")
        else:
            raise _unknown(f"unknown patch type: {_go_string(directive)} in map: "
                           f"{go_value(item)}")
    return original, plain, replace


def _merge_by_key(original: list, patch: list, merge_key: str, element: _PatchMeta) -> list:
    """Merge each patch item into the original's item with the same key, or append it."""
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        index = _find_by_key(merged, merge_key, item[merge_key])
        if index is None:
            merged.append(item)
        else:
            merged[index] = _merge_map(merged[index], item, element)
    return merged


def _delete_by_key(items: list, merge_key: str, value: Any) -> list:
    while (index := _find_by_key(items, merge_key, value)) is not None:
        items = items[:index] + items[index + 1:]
    return items


def _find_by_key(items: list, merge_key: str, value: Any) -> int | None:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _unknown(f"value for key {index} is not a map")
        if merge_key in item and _same(item[merge_key], value):
            return index
    return None


def _partition(merged: list, by: list, merge_key: str) -> tuple[list, list]:
    """Split ``merged`` into the items present in ``by`` and the others (server-only)."""
    present, server_only = [], []
    if not merge_key:
        wanted = {_hashable(item) for item in by}
        for item in merged:
            (present if _hashable(item) in wanted else server_only).append(item)
        return present, server_only
    for item in merged:
        if not isinstance(item, dict):
            raise _unknown(f"expected a map[string]interface {{}}, but received a "
                           f"{_go_type(item)}")
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        found = _find_by_key(by, merge_key, item[merge_key]) is not None
        (present if found else server_only).append(item)
    return present, server_only


def _normalize_order(in_patch: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, element_type: type) -> list:
    """Order the patch's items as the patch does and the server-only items as the live list
    does, then interleave them keeping each group's order (mergeSortedSlice)."""
    in_patch = _sort_by(in_patch, patch_order, merge_key, element_type)
    server_only = _sort_by(server_only, server_order, merge_key, element_type)
    return _interleave(server_only, in_patch, server_order, merge_key, element_type)


def _sort_by(items: list, order: list, merge_key: str, element_type: type) -> list:
    deletions: list = []
    if element_type is dict:
        for item in (*items, *order):
            if not isinstance(item, dict):
                raise _unknown(f"expected a map[string]interface {{}}, but received a "
                               f"{_go_type(item)}")
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        items, deletions = _without_deletions(items)
    positions = _positions(order, merge_key, element_type)
    end = len(order)
    ordered = sorted(items, key=lambda item: positions.get(_order_key(item, merge_key,
                                                                      element_type), end))
    return ordered + deletions


def _without_deletions(items: list) -> tuple[list, list]:
    kept, deletions = [], []
    for item in items:
        if not isinstance(item, dict):
            raise _unknown(f"expected a map[string]interface {{}}, but received a "
                           f"{_go_type(item)}")
        (deletions if item.get(_DIRECTIVE) == _DELETE else kept).append(item)
    return kept, deletions


def _interleave(left: list, right: list, server_order: list, merge_key: str,
                element_type: type) -> list:
    """Insert the server-only items (left) among the patch items (right): a left item goes
    before a right item when the live list has it first; unknown right items go first."""
    positions = _positions(server_order, merge_key, element_type)
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = positions.get(_order_key(left[i], merge_key, element_type))
            ri = positions.get(_order_key(right[j], merge_key, element_type))
            if li is not None and ri is not None and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _positions(order: list, merge_key: str, element_type: type) -> dict:
    positions: dict = {}
    for index, item in enumerate(order):
        positions.setdefault(_order_key(item, merge_key, element_type), index)
    return positions


def _order_key(item: Any, merge_key: str, element_type: type) -> Any:
    if element_type is dict:
        return _hashable(item.get(merge_key) if isinstance(item, dict) else None)
    return _hashable(item)


def _element_type(*lists: list) -> type:
    """The one Go type of the lists' elements; lists of lists are not supported."""
    found: type | None = None
    for items in lists:
        for item in items:
            if found is None:
                found = type(item)
                if found is list:
                    raise StatusError(422, "Invalid", _REJECTED, details={})
            elif type(item) is not found:
                raise _unknown("list element types are not identical: "
                               f"{go_value(list(lists))}")
    if found is None:
        raise _unknown("no elements in any of the given slices")
    return found


def _unique(items: list) -> list:
    seen: set = set()
    out = []
    for item in items:
        key = _hashable(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _no_merge_key(item: dict, merge_key: str) -> StatusError:
    return _unknown(f"map: {go_value(item)} does not contain declared merge key: {merge_key}")


def _unknown(message: str) -> StatusError:
    """An error strategicpatch reports without a status: the server answers 500 with its
    text and no reason."""
    return StatusError(500, "", message)


# --------------------------------------------------------------------------------------------
# JSON values the way Go sees them


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _same(left: Any, right: Any) -> bool:
    """Go's interface equality for JSON scalars: the types must match too (1 != 1.0 != true)."""
    return type(left) is type(right) and left == right


def _hashable(value: Any) -> Any:
    """A key under which equal values (in ``_same``'s sense) collide, and nothing else."""
    if isinstance(value, dict):
        return (dict, tuple(sorted((k, _hashable(v)) for k, v in value.items())))
    if isinstance(value, list):
        return (list, tuple(_hashable(v) for v in value))
    return (type(value), value)


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, dict):
        return (isinstance(right, dict) and left.keys() == right.keys()
                and all(_json_equal(v, right[k]) for k, v in left.items()))
    if isinstance(left, list):
        return (isinstance(right, list) and len(left) == len(right)
                and all(_json_equal(a, b) for a, b in zip(left, right)))
    return _same(left, right)


def _json_kind(value: Any) -> str:
    """The JSON kind Go's decoder names in "cannot unmarshal X into Go value" errors."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _go_type(value: Any) -> str:
    if value is None:
        return "%!s(<nil>)"
    names = {dict: "map[string]interface {}", list: "[]interface {}", str: "string",
             bool: "bool", int: "int64", float: "float64"}
    return names.get(type(value), type(value).__name__)


def _go_string(value: Any) -> str:
    """``%s`` of a JSON value."""
    if isinstance(value, str):
        return value
    if value is None:
        return "%!s(<nil>)"
    return f"%!s({_go_type(value)}={go_value(value)})"


