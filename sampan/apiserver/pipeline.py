"""The request pipeline's schema-driven steps, for built-in and custom resources alike:
decoding and field validation, defaulting, validation, patching and field ownership.

Each step picks the schema of the resource (the upstream definition for built-in kinds, the
CRD version's ``openAPIV3Schema`` for custom resources) and calls the logic in ``sampan.api``.
"""

from __future__ import annotations

from typing import Any

import yaml

from sampan.api import decode as decoding
from sampan.api import defaults as defaulting
from sampan.api import errors, managedfields, patch as patching, protobuf, validation
from sampan.api.registry import Registry, Resource
from sampan.api.schema import Schema, Schemas

OBJECT_META = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


class Schemata:
    """The root schema node of each resource, cached per resource."""

    def __init__(self, schemas: Schemas, registry: Registry):
        self.schemas = schemas
        self.registry = registry
        self._roots: dict[Resource, Schema] = {}

    def storage_resource(self, resource: Resource) -> Resource:
        if not resource.storage_version:
            return resource
        group = resource.group if resource.storage_group is None else resource.storage_group
        return self.registry.get(group, resource.storage_version, resource.resource) or resource

    def root(self, resource: Resource) -> Schema:
        node = self._roots.get(resource)
        if node is None:
            node = self._roots[resource] = self._build_root(resource)
        return node

    def _build_root(self, resource: Resource) -> Schema:
        if resource.crd is not None:
            return custom_root(crd_version_schema(resource))
        node = self.schemas.for_kind(resource.group, resource.version, resource.kind)
        return node if node is not None else {"x-kubernetes-preserve-unknown-fields": True}

    def forget(self, resource: Resource) -> None:
        self._roots.pop(resource, None)


def crd_version(resource: Resource) -> dict[str, Any]:
    for version in (resource.crd or {}).get("spec", {}).get("versions", []):
        if version.get("name") == resource.version:
            return version
    return {}


def crd_version_schema(resource: Resource) -> dict[str, Any]:
    return ((crd_version(resource).get("schema") or {}).get("openAPIV3Schema")
            or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})


def custom_root(schema: dict[str, Any]) -> Schema:
    """A CRD schema with the implicit apiVersion, kind and metadata of every object."""
    root = dict(schema)
    props = dict(root.get("properties") or {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = OBJECT_META
    root["properties"] = props
    root.setdefault("type", "object")
    return root


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _bounded_ints(value: Any) -> Any:
    """YAML integers wider than 64 bits become floats, as they do when JSON is decoded, so that
    validation rejects them instead of the encoder failing later."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else float(value)
    if isinstance(value, dict):
        return {k: _bounded_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded_ints(v) for v in value]
    return value


class Codec:
    def __init__(self, schemata: Schemata):
        self.schemata = schemata

    def decode(self, body: bytes, content_type: str, resource: Resource) -> tuple[Any, list[str]]:
        media = content_type.split(";")[0].strip().lower()
        if media == protobuf.MEDIA_TYPE:
            if resource.crd is not None or not protobuf.supports(resource.group, resource.version,
                                                                  resource.kind):
                raise errors.unsupported_body(content_type)
            return protobuf.decode(body), []
        obj, duplicates = decoding.decode(body, content_type, kind=resource.kind)
        if "yaml" in media:
            obj = _bounded_ints(obj)
        return obj, duplicates

    def decode_apply(self, body: bytes) -> dict[str, Any]:
        try:
            obj = yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from None
        if not isinstance(obj, dict):
            raise errors.bad_request("apply patches must be objects")
        return _bounded_ints(obj)

    def decode_object(self, body: bytes, content_type: str, resource: Resource) -> dict[str, Any]:
        """A request body that must be a JSON/YAML/protobuf object (subresource bodies)."""
        obj, _ = self.decode(body, content_type or "application/json", resource)
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body of the request must be a {resource.kind} object")
        return obj

    def field_validation(self, obj: dict[str, Any], resource: Resource, duplicates: list[str],
                         directive: str, options_kind: str = "CreateOptions") -> list[str]:
        """Prune unknown fields; by ``directive`` fail (Strict), warn (Warn) or stay silent."""
        root = self.schemata.root(resource)
        unknown = decoding.prune_unknown(obj, root, self.schemata.schemas)
        return decoding.apply_field_validation(directive, unknown, duplicates,
                                               kind=resource.kind, version=resource.version,
                                               options_kind=options_kind,
                                               custom_resource=resource.crd is not None)


class Defaulter:
    def __init__(self, schemata: Schemata):
        self.schemata = schemata

    def apply(self, obj: dict[str, Any], resource: Resource) -> None:
        resource = self.schemata.storage_resource(resource)
        if resource.crd is not None:
            defaulting.apply_schema_defaults(obj, crd_version_schema(resource))
        else:
            defaulting.apply_defaults(obj, resource)


class Validator:
    def __init__(self, schemata: Schemata):
        self.schemata = schemata

    def validate(self, obj: dict[str, Any], resource: Resource,
                 old: dict[str, Any] | None) -> list[errors.FieldError]:
        resource = self.schemata.storage_resource(resource)
        if resource.crd is not None:
            return validation.validate_custom(obj, crd_version_schema(resource), old=old,
                                              namespaced=resource.namespaced)
        return validation.validate(obj, resource, self.schemata.schemas, old=old)


class Patcher:
    def __init__(self, schemata: Schemata):
        self.schemata = schemata

    def apply_patch(self, resource: Resource, obj: dict[str, Any], patch_type: str,
                    body: bytes) -> dict[str, Any]:
        return patching.apply_patch(obj, patch_type, body, self.schemata.root(resource),
                                    self.schemata.schemas, is_custom=resource.crd is not None)


# Top-level fields each endpoint does not own: the main resource leaves status to the status
# subresource and vice versa, as upstream's per-strategy "reset fields" say.
def _ignored(resource: Resource, subresource: str) -> list:
    if "status" not in resource.subresources:
        return []
    if subresource == "status":
        return ["spec", ("metadata", "labels")]
    return ["status"]


class Fields:
    """Field ownership (managedFields) for updates and server-side apply."""

    def __init__(self, schemata: Schemata):
        self.schemata = schemata

    def default_manager(self, user_agent: str) -> str:
        return managedfields.default_manager(user_agent)

    def track(self, resource: Resource, old: dict[str, Any] | None, new: dict[str, Any],
              manager: str, subresource: str) -> None:
        managedfields.track_update(old, new, manager=manager, node=self.schemata.root(
            self.schemata.storage_resource(resource)), schemas=self.schemata.schemas,
            api_version=resource.api_version, subresource=subresource,
            ignored=_ignored(resource, subresource))

    def apply(self, resource: Resource, live: dict[str, Any] | None, applied: dict[str, Any],
              manager: str, force: bool, subresource: str) -> dict[str, Any]:
        return managedfields.apply(live, applied, manager=manager, force=force,
                                   node=self.schemata.root(resource), schemas=self.schemata.schemas,
                                   api_version=resource.api_version, subresource=subresource,
                                   kind=resource.kind, ignored=_ignored(resource, subresource))
