"""A container's environment, as the kubelet's ``makeEnvironmentVariables`` builds it.

- ``envFrom`` first (ConfigMaps and Secrets, each key optionally prefixed), then ``env`` in
  order, a later variable replacing an earlier one of the same name;
- ``value`` strings expand ``$(NAME)`` from the variables defined so far and the service
  variables (upstream's ``third_party/forked/golang/expansion``: ``$$`` escapes, unknown
  references stay as written);
- ``valueFrom``: configMapKeyRef / secretKeyRef (``optional`` ones may be missing), fieldRef,
  resourceFieldRef (node allocatable when the container has no limit);
- the service variables (``FOO_SERVICE_HOST`` ... and the docker-link ``FOO_PORT_80_TCP`` ...)
  of the ``kubernetes`` service and, with ``enableServiceLinks``, of the pod's namespace come
  last, unless a container variable has the same name.

A reference that cannot be resolved raises EnvError, which the agent reports as
``CreateContainerConfigError`` with upstream's message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sampan.api.validation import is_env_var_name
from sampan.node.fieldpath import FieldPathError, container_resource_value, pod_field_value
from sampan.node.volumes.expansion import expand, mapping_for
from sampan.node.volumes.lookup import ClientLookup, ObjectLookup

__all__ = ["ClientLookup", "EnvError", "ObjectLookup", "expand", "make_environment",
           "mapping_for", "service_environment"]

Object = Mapping[str, Any]
REASON = "CreateContainerConfigError"
MASTER_SERVICES = ("kubernetes",)
DEFAULT_NAMESPACE = "default"


class EnvError(Exception):
    """The environment cannot be made; ``reason`` is what the container's waiting state shows."""

    def __init__(self, message: str, reason: str = REASON):
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- service links (pkg/kubelet/envvars) ------------------------------------------------------
def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _service_vars(service: Object) -> Iterable[tuple[str, str]]:
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP") or ""
    ports = spec.get("ports") or []
    if cluster_ip in ("", "None") or not ports:
        return
    prefix = _env_name((service.get("metadata") or {}).get("name", ""))
    yield f"{prefix}_SERVICE_HOST", cluster_ip
    yield f"{prefix}_SERVICE_PORT", str(ports[0].get("port"))
    for port in ports:
        if port.get("name"):
            yield f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}", str(port.get("port"))
    for index, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        number = port.get("port")
        url = f"{protocol.lower()}://{_join_host_port(cluster_ip, number)}"
        if index == 0:
            yield f"{prefix}_PORT", url
        port_prefix = f"{prefix}_PORT_{number}_{protocol.upper()}"
        yield port_prefix, url
        yield f"{port_prefix}_PROTO", protocol.lower()
        yield f"{port_prefix}_PORT", str(number)
        yield f"{port_prefix}_ADDR", cluster_ip


def service_environment(services: Iterable[Object], namespace: str, *,
                        enable_service_links: bool = True) -> dict[str, str]:
    """The service variables a pod in ``namespace`` sees: the master services of ``default``
    always, the services of its own namespace with ``enableServiceLinks``."""
    chosen: dict[str, Object] = {}
    for service in services:
        meta = service.get("metadata") or {}
        name, service_ns = meta.get("name", ""), meta.get("namespace", "")
        if (service.get("spec") or {}).get("clusterIP") in (None, "", "None"):
            continue
        if service_ns == DEFAULT_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif service_ns == namespace and enable_service_links:
            chosen[name] = service
    env: dict[str, str] = {}
    for name in sorted(chosen):
        env.update(_service_vars(chosen[name]))
    return env


# -- the environment ------------------------------------------------------------------------------
def _secret_data(secret: Object) -> dict[str, str]:
    decoded = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "").decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            decoded[key] = ""
    return decoded


class _Sources:
    """The ConfigMaps and Secrets one container refers to, each fetched once."""

    def __init__(self, lookup: ObjectLookup, namespace: str):
        self.lookup = lookup
        self.namespace = namespace
        self.configmaps: dict[str, dict[str, str] | None] = {}
        self.secrets: dict[str, dict[str, str] | None] = {}

    async def configmap(self, name: str, optional: bool) -> dict[str, str] | None:
        if name not in self.configmaps:
            obj = await self.lookup.configmap(self.namespace, name)
            self.configmaps[name] = None if obj is None else dict(obj.get("data") or {})
        data = self.configmaps[name]
        if data is None and not optional:
            raise EnvError(f'configmap "{name}" not found')
        return data

    async def secret(self, name: str, optional: bool) -> dict[str, str] | None:
        if name not in self.secrets:
            obj = await self.lookup.secret(self.namespace, name)
            self.secrets[name] = None if obj is None else _secret_data(obj)
        data = self.secrets[name]
        if data is None and not optional:
            raise EnvError(f'secret "{name}" not found')
        return data


async def make_environment(pod: Object, container: Object, *, lookup: ObjectLookup,
                           service_env: Mapping[str, str], pod_ips: Sequence[str] = (),
                           host_ips: Sequence[str] = (),
                           allocatable: Mapping[str, Any] | None = None,
                           invalid_keys: list[str] | None = None) -> list[str]:
    """The container's environment as ``KEY=value`` strings, in declaration order (envFrom,
    then env, then the remaining service variables). ``invalid_keys`` collects envFrom keys
    that were skipped for not being valid variable names (for an event)."""
    namespace = (pod.get("metadata") or {}).get("namespace") or DEFAULT_NAMESPACE
    sources = _Sources(lookup, namespace)
    env: dict[str, str] = {}
    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix") or ""
        if env_from.get("configMapRef"):
            ref = env_from["configMapRef"]
            data = await sources.configmap(ref.get("name", ""), bool(ref.get("optional")))
        elif env_from.get("secretRef"):
            ref = env_from["secretRef"]
            data = await sources.secret(ref.get("name", ""), bool(ref.get("optional")))
        else:
            continue
        for key, value in (data or {}).items():
            name = prefix + key
            if is_env_var_name(name):
                if invalid_keys is not None:
                    invalid_keys.append(name)
                continue
            env[name] = value

    mapping = mapping_for(env, service_env)
    for var in container.get("env") or []:
        name = var.get("name", "")
        value = var.get("value") or ""
        if value:
            value = expand(value, mapping)
        elif var.get("valueFrom"):
            resolved = await _value_from(var["valueFrom"], pod, container, sources,
                                         pod_ips=pod_ips, host_ips=host_ips,
                                         allocatable=allocatable)
            if resolved is None:
                continue                                # an optional reference that is missing
            value = resolved
        env[name] = value

    result = [f"{key}={value}" for key, value in env.items()]
    result.extend(f"{key}={value}" for key, value in service_env.items() if key not in env)
    return result


async def _value_from(source: Object, pod: Object, container: Object, sources: _Sources, *,
                      pod_ips: Sequence[str], host_ips: Sequence[str],
                      allocatable: Mapping[str, Any] | None) -> str | None:
    try:
        if source.get("fieldRef"):
            return pod_field_value(pod, source["fieldRef"].get("fieldPath", ""),
                                   pod_ips=pod_ips, host_ips=host_ips)
        if source.get("resourceFieldRef"):
            return container_resource_value(source["resourceFieldRef"], pod, container,
                                            allocatable=allocatable)
    except FieldPathError as e:
        raise EnvError(str(e)) from None
    if source.get("configMapKeyRef"):
        ref = source["configMapKeyRef"]
        name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
        data = await sources.configmap(name, optional)
        if data is None or key not in data:
            if optional:
                return None
            raise EnvError(f"couldn't find key {key} in ConfigMap {sources.namespace}/{name}")
        return data[key]
    if source.get("secretKeyRef"):
        ref = source["secretKeyRef"]
        name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
        data = await sources.secret(name, optional)
        if data is None or key not in data:
            if optional:
                return None
            raise EnvError(f"couldn't find key {key} in Secret {sources.namespace}/{name}")
        return data[key]
    return ""
