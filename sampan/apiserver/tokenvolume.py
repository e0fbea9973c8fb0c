"""The ``kube-api-access-<random>`` volume the ServiceAccount admission plugin gives pods
(upstream's ``plugin/pkg/admission/serviceaccount``): a projected volume of a bound token, the
cluster CA from the ``kube-root-ca.crt`` ConfigMap and the namespace, mounted read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every init and regular container that has
nothing mounted there yet. Nothing is added when the pod or its service account turns
``automountServiceAccountToken`` off.

The API server's admission calls ``mount_service_account_token(pod, service_account)`` on pod
create; it lives here because the node is what makes the volume real.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# serviceaccount.WarnOnlyBoundTokenExpirationSeconds: an hour and a little, so the API server
# can tell tokens from this volume apart (and, with extended expiry, warn instead of reject).
TOKEN_EXPIRATION_SECONDS = 3607
PROJECTED_DEFAULT_MODE = 0o644
# names.SimpleNameGenerator's alphabet: no vowels, no confusable characters.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_ALPHABET) for _ in range(length))


def token_volume_source() -> dict[str, Any]:
    return {
        "defaultMode": PROJECTED_DEFAULT_MODE,
        "sources": [
            {"serviceAccountToken": {"path": "token",
                                     "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP,
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    }


def should_automount(pod: dict[str, Any], service_account: dict[str, Any] | None) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    account_says = (service_account or {}).get("automountServiceAccountToken")
    if account_says is not None:
        return bool(account_says)
    return True


def mount_service_account_token(pod: dict[str, Any], service_account: dict[str, Any] | None = None,
                                *, suffix: Callable[[], str] = random_suffix) -> bool:
    """Add the token volume and its mounts to ``pod`` (in place); True when anything changed."""
    if not should_automount(pod, service_account):
        return False
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") or []
    existing = next((v["name"] for v in volumes if v.get("name", "").startswith(VOLUME_PREFIX)),
                    None)
    names = {v.get("name") for v in volumes}
    volume_name = existing
    while volume_name is None or (existing is None and volume_name in names):
        volume_name = VOLUME_PREFIX + suffix()
    needed = False
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            mounts = container.get("volumeMounts") or []
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            container["volumeMounts"] = [*mounts, {"name": volume_name, "readOnly": True,
                                                   "mountPath": MOUNT_PATH}]
            needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, {"name": volume_name, "projected": token_volume_source()}]
    return needed
