"""The upstream Kubernetes OpenAPI schema, as the ``kubernetes-validate`` package ships it.

The package carries every definition of the Kubernetes release (with descriptions and the
``x-kubernetes-*`` extensions that drive strategic merge patch and server-side apply) as JSON
Schema. We load it once, normalise it into the structural-schema shape that CustomResource
definitions use too (one ``type`` per node, ``nullable``, ``x-kubernetes-int-or-string``,
``x-kubernetes-preserve-unknown-fields``), and give both built-in and custom schemas the same
navigation helpers: ``resolve``, ``child``, ``item``, and the patch/list metadata accessors.

A schema node is a plain dict. ``$ref`` nodes are resolved lazily through the ``Schemas`` that
owns them, so recursive definitions (e.g. ``JSONSchemaProps``) cost nothing.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any, Iterator

import orjson

KUBERNETES_VERSION = "1.37.0"

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_REF_PREFIX = "#/$defs/"

Schema = dict[str, Any]
GVK = tuple[str, str, str]  # (group, version, kind); group "" is core

# A schema that accepts anything and is never descended into.
ANY: Schema = {"x-kubernetes-preserve-unknown-fields": True}


class Schemas:
    """Definitions by name and by group/version/kind."""

    def __init__(self, definitions: dict[str, Schema]):
        self.definitions = definitions
        self.by_gvk: dict[GVK, str] = {}
        for name, definition in definitions.items():
            for gvk in definition.get("x-kubernetes-group-version-kind", ()):
                self.by_gvk.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)

    def for_kind(self, group: str, version: str, kind: str) -> Schema | None:
        name = self.by_gvk.get((group, version, kind))
        return self.definitions[name] if name else None

    def definition_name(self, group: str, version: str, kind: str) -> str | None:
        return self.by_gvk.get((group, version, kind))

    def resolve(self, node: Schema | None) -> Schema:
        """Follow ``$ref`` (also under ``allOf`` of one element) to the node that describes it.
        Sibling keys of a ``$ref`` (description, patch strategy) stay on the referring node:
        read them with ``patch_strategy``/``list_type`` on the unresolved node."""
        if not node:
            return ANY
        while True:
            ref = node.get("$ref")
            if ref is not None:
                node = self.definitions[ref[len(_REF_PREFIX):]]
                continue
            all_of = node.get("allOf")
            if all_of and len(all_of) == 1 and "properties" not in node:
                node = all_of[0]
                continue
            return node

    def child(self, node: Schema | None, field: str) -> Schema | None:
        """The (unresolved) schema of ``field`` of an object node, or None if unknown."""
        resolved = self.resolve(node)
        props = resolved.get("properties")
        if props is not None and field in props:
            return props[field]
        extra = resolved.get("additionalProperties")
        if isinstance(extra, dict):
            return extra
        if extra is True or preserves_unknown(resolved):
            return ANY
        return None

    def item(self, node: Schema | None) -> Schema:
        """The (unresolved) schema of the items of an array node."""
        items = self.resolve(node).get("items")
        return items if isinstance(items, dict) else ANY

    def walk(self, node: Schema | None, path: Iterator[str] | list[str]) -> Schema | None:
        for field in path:
            node = self.child(node, field)
            if node is None:
                return None
        return node


def node_type(node: Schema) -> str | None:
    """``object``, ``array``, ``string``, ``integer``, ``number``, ``boolean``,
    ``int-or-string``, ``quantity`` or None (anything). ``node`` must be resolved."""
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    if node.get("format") == "quantity":
        return "quantity"
    return node.get("type")


def preserves_unknown(node: Schema) -> bool:
    return bool(node.get("x-kubernetes-preserve-unknown-fields"))


def patch_strategy(node: Schema | None) -> str:
    """Strategic-merge-patch strategy of a field: "", "merge", "replace", "retainKeys" or
    "merge,retainKeys"."""
    return (node or {}).get("x-kubernetes-patch-strategy", "")


def patch_merge_key(node: Schema | None) -> str | None:
    return (node or {}).get("x-kubernetes-patch-merge-key")


def list_type(node: Schema | None) -> str:
    """Server-side-apply list type: "atomic" (the default), "set" or "map"."""
    return (node or {}).get("x-kubernetes-list-type", "atomic")


def list_map_keys(node: Schema | None) -> list[str]:
    return (node or {}).get("x-kubernetes-list-map-keys", [])


def map_type(node: Schema | None) -> str:
    """Server-side-apply map/struct type: "granular" (the default) or "atomic"."""
    return (node or {}).get("x-kubernetes-map-type", "granular")


def _normalise(node: Any) -> Any:
    """JSON Schema as kubernetes-validate writes it → the structural OpenAPI v3 shape."""
    if isinstance(node, list):
        return [_normalise(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) == 1:
                out["type"] = types[0]
            if "null" in value:
                out["nullable"] = True
        elif key in ("properties", "patternProperties"):
            out[key] = {name: _normalise(sub) for name, sub in value.items()}
        else:
            out[key] = _normalise(value)
    return out


def _special_cases(definitions: dict[str, Schema]) -> None:
    definitions[INT_OR_STRING] = {
        "x-kubernetes-int-or-string": True,
        "description": "IntOrString is a type that can hold an int32 or a string.",
    }
    definitions[QUANTITY] = {
        "type": "string",
        "format": "quantity",
        "description": definitions[QUANTITY].get("description", ""),
    }
    for name, definition in definitions.items():
        # Free-form objects (RawExtension, FieldsV1, JSON, ...) hold any value.
        if "properties" not in definition and "additionalProperties" not in definition and (
            definition.get("type") in ("object", None) and "x-kubernetes-int-or-string" not in definition
            and "format" not in definition
        ):
            definition["x-kubernetes-preserve-unknown-fields"] = True


@functools.cache
def builtin() -> Schemas:
    """The schemas of every built-in kind of the Kubernetes release we follow."""
    root = importlib.resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    data = root.joinpath(f"v{KUBERNETES_VERSION}-local", "_definitions.json").read_bytes()
    definitions = {name: _normalise(d) for name, d in orjson.loads(data)["$defs"].items()}
    _special_cases(definitions)
    return Schemas(definitions)
