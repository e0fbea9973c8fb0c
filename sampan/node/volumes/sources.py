"""The files an API-data volume holds, computed from the objects it projects: upstream's
``MakePayload`` for configMap and secret volumes and ``CollectData`` for downwardAPI ones."""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Mapping
from typing import Any

from sampan.node.fieldpath import FieldPathError, container_resource_value, extract_field_path
from sampan.node.volumes.atomic_writer import FileProjection

Object = Mapping[str, Any]
DEFAULT_MODE = 0o644


class SourceError(Exception):
    pass


def aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _b64(value: str | None) -> bytes:
    try:
        return base64.b64decode(value or "", validate=False)
    except (binascii.Error, ValueError):
        return b""


def _from_data(data: Mapping[str, bytes], items: list[Object] | None, default_mode: int,
               optional: bool, missing_key: str) -> dict[str, FileProjection]:
    if not items:
        return {name: FileProjection(value, default_mode) for name, value in data.items()}
    payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise SourceError(f"{missing_key}: {key}")
        mode = item.get("mode")
        payload[item.get("path", key)] = FileProjection(
            data[key], default_mode if mode is None else int(mode))
    return payload


def configmap_data(configmap: Object | None) -> dict[str, bytes]:
    if configmap is None:
        return {}
    data = {name: str(value).encode() for name, value in (configmap.get("data") or {}).items()}
    for name, value in (configmap.get("binaryData") or {}).items():
        data[name] = _b64(value)
    return data


def secret_data(secret: Object | None) -> dict[str, bytes]:
    if secret is None:
        return {}
    return {name: _b64(value) for name, value in (secret.get("data") or {}).items()}


def configmap_payload(configmap: Object | None, items: list[Object] | None, default_mode: int,
                      optional: bool) -> dict[str, FileProjection]:
    return _from_data(configmap_data(configmap), items, default_mode, optional,
                      "configmap references non-existent config key")


def secret_payload(secret: Object | None, items: list[Object] | None, default_mode: int,
                   optional: bool) -> dict[str, FileProjection]:
    return _from_data(secret_data(secret), items, default_mode, optional,
                      "references non-existent secret key")


def downward_payload(pod: Object, items: list[Object] | None, default_mode: int,
                     allocatable: Mapping[str, Any] | None) -> dict[str, FileProjection]:
    payload, errors = {}, []
    for item in items or []:
        mode = item.get("mode")
        mode = default_mode if mode is None else int(mode)
        data = b""
        try:
            if item.get("fieldRef"):
                data = extract_field_path(pod, item["fieldRef"].get("fieldPath", "")).encode()
            elif item.get("resourceFieldRef"):
                data = container_resource_value(item["resourceFieldRef"], pod,
                                                allocatable=allocatable).encode()
        except FieldPathError as e:
            errors.append(str(e))
        payload[posixpath.normpath(item.get("path", ""))] = FileProjection(data, mode)
    if errors:
        raise SourceError(aggregate(errors))
    return payload
