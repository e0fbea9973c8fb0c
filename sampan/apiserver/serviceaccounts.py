"""Service account tokens: issuing them (``serviceaccounts/token``, the TokenRequest API) and
authenticating requests that carry them.

Tokens are JWTs signed with the cluster's service-account key (ES256, ``pki/service-account.key``),
as upstream's ``pkg/serviceaccount``:

- *bound* tokens (TokenRequest, projected volumes) carry the audiences, an expiry and the
  ``kubernetes.io`` private claim naming the namespace, the service account and the object the
  token is bound to (a Pod, Secret or Node); they stop working when that object or the service
  account goes away or is recreated (uid mismatch);
- *legacy* tokens (``kubernetes.io/service-account-token`` Secrets, filled by the tokens
  controller) have no expiry and live as long as their Secret.

A verified token resolves to ``system:serviceaccount:<ns>:<name>`` in the groups
``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``.
Successful verifications are cached for a few seconds, like upstream's token cache, so a
busy client does not pay for a signature check per request.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization

from sampan.api import errors
from sampan.apiserver.auth import AUTHENTICATED, UserInfo

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
ALGORITHM = "ES256"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2 ** 32  # upstream caps at --service-account-max-token-expiration when set
CACHE_SECONDS = 10.0
CACHE_SIZE = 4096
BOUND_KINDS = {"Pod": ("", "v1", "pods"), "Secret": ("", "v1", "secrets"),
               "Node": ("", "v1", "nodes")}


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)


class TokenIssuer:
    """Signs tokens with the service-account private key."""

    def __init__(self, key_path: Path, issuer: str = DEFAULT_ISSUER):
        self.issuer = issuer
        self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self.public_key = self._key.public_key()

    def bound_token(self, namespace: str, service_account: dict[str, Any], *,
                    audiences: list[str], expiration_seconds: int,
                    bound: dict[str, Any] | None = None, now: float | None = None) -> tuple[str, int]:
        """(token, expiry as epoch seconds) for a TokenRequest."""
        now = int(time.time() if now is None else now)
        sa_meta = service_account["metadata"]
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_meta["name"], "uid": sa_meta["uid"]},
        }
        if bound is not None:
            private[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {
            "aud": audiences, "exp": now + expiration_seconds, "iat": now, "nbf": now,
            "iss": self.issuer, "jti": str(uuid.uuid4()),
            "sub": service_account_username(namespace, sa_meta["name"]),
            "kubernetes.io": private,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), now + expiration_seconds

    def legacy_token(self, service_account: dict[str, Any], secret_name: str) -> str:
        sa_meta = service_account["metadata"]
        namespace = sa_meta["namespace"]
        claims = {
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": sa_meta["name"],
            "kubernetes.io/serviceaccount/service-account.uid": sa_meta["uid"],
            "sub": service_account_username(namespace, sa_meta["name"]),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class ServiceAccountAuthenticator:
    """Authenticates bearer JWTs this cluster issued, checking the objects they name still
    exist (from the watch cache) — upstream's ``JWTTokenAuthenticator`` with its validators."""

    def __init__(self, api: APIServer, issuer: TokenIssuer, audiences: list[str] | None = None):
        self.api = api
        self.issuer = issuer
        self.audiences = audiences or [issuer.issuer]
        self._cache: OrderedDict[str, tuple[UserInfo, float]] = OrderedDict()

    def authenticate_token(self, token: str) -> UserInfo | None:
        if token.count(".") != 2:
            return None
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None:
            if cached[1] > now:
                return cached[0]
            del self._cache[token]
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") == LEGACY_ISSUER:
            user, lifetime = self._legacy(token)
        elif unverified.get("iss") == self.issuer.issuer:
            user, lifetime = self._bound(token)
        else:
            return None
        if user is not None:
            self._cache[token] = (user, now + min(CACHE_SECONDS, lifetime))
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return user

    def _object(self, group: str, version: str, resource_name: str, namespace: str,
                name: str) -> dict[str, Any] | None:
        resource = self.api.registry.get(group, version, resource_name)
        if resource is None:
            return None
        entry = self.api.storage.cache(resource).get(
            resource.key(namespace if resource.namespaced else None, name))
        return entry.obj if entry is not None else None

    def _service_account(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        sa = self._object("", "v1", "serviceaccounts", namespace, name)
        if sa is None or sa["metadata"].get("uid") != uid or sa["metadata"].get("deletionTimestamp"):
            return None
        return sa

    def _bound(self, token: str) -> tuple[UserInfo | None, float]:
        try:
            claims = jwt.decode(token, self.issuer.public_key, algorithms=[ALGORITHM],
                                audience=self.audiences, issuer=self.issuer.issuer,
                                options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            return None, 0
        private = claims.get("kubernetes.io") or {}
        namespace = private.get("namespace") or ""
        sa_ref = private.get("serviceaccount") or {}
        if not namespace or self._service_account(namespace, sa_ref.get("name", ""),
                                                   sa_ref.get("uid", "")) is None:
            return None, 0
        extra: dict[str, list[str]] = {}
        for kind, (group, version, resource) in BOUND_KINDS.items():
            ref = private.get(kind.lower())
            if not ref:
                continue
            obj = self._object(group, version, resource, namespace, ref.get("name", ""))
            if obj is None or obj["metadata"].get("uid") != ref.get("uid") or \
                    obj["metadata"].get("deletionTimestamp"):
                return None, 0
            extra[f"authentication.kubernetes.io/{kind.lower()}-name"] = [ref["name"]]
            extra[f"authentication.kubernetes.io/{kind.lower()}-uid"] = [ref["uid"]]
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        user = UserInfo(service_account_username(namespace, sa_ref["name"]), uid=sa_ref["uid"],
                        groups=service_account_groups(namespace), extra=extra)
        return user, max(0.0, claims["exp"] - time.time())

    def _legacy(self, token: str) -> tuple[UserInfo | None, float]:
        try:
            claims = jwt.decode(token, self.issuer.public_key, algorithms=[ALGORITHM],
                                issuer=LEGACY_ISSUER, options={"verify_aud": False})
        except jwt.PyJWTError:
            return None, 0
        namespace = claims.get("kubernetes.io/serviceaccount/namespace") or ""
        name = claims.get("kubernetes.io/serviceaccount/service-account.name") or ""
        uid = claims.get("kubernetes.io/serviceaccount/service-account.uid") or ""
        secret_name = claims.get("kubernetes.io/serviceaccount/secret.name") or ""
        if self._service_account(namespace, name, uid) is None:
            return None, 0
        secret = self._object("", "v1", "secrets", namespace, secret_name)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            return None, 0
        stored = (secret.get("data") or {}).get("token")
        if stored is None or base64.b64decode(stored).decode(errors="replace") != token:
            return None, 0
        extra = {"authentication.kubernetes.io/credential-id": [f"secret-uid={secret['metadata']['uid']}"]}
        return UserInfo(service_account_username(namespace, name), uid=uid,
                        groups=service_account_groups(namespace), extra=extra), CACHE_SECONDS


def token_request(api: APIServer, issuer: TokenIssuer, namespace: str, name: str,
                  body: dict[str, Any]) -> dict[str, Any]:
    """Answer a TokenRequest for the service account ``namespace/name``."""
    resource = api.registry.get("", "v1", "serviceaccounts")
    assert resource is not None
    entry = api.storage.cache(resource).get(resource.key(namespace, name))
    if entry is None:
        raise errors.not_found_error("serviceaccounts", name)
    sa = entry.obj
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    problems = []
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if not isinstance(expiration, int) or isinstance(expiration, bool):
        problems.append(errors.invalid("spec.expirationSeconds", expiration, "must be an integer"))
    elif expiration < MIN_EXPIRATION:
        problems.append(errors.invalid("spec.expirationSeconds", expiration,
                                       "may not specify a duration less than 10 minutes"))
    elif expiration > MAX_EXPIRATION:
        problems.append(errors.invalid("spec.expirationSeconds", expiration,
                                       "may not specify a duration larger than 2^32 seconds"))
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        problems.append(errors.invalid("spec.audiences", audiences, "must be a list of strings"))
        audiences = []
    bound = None
    ref = spec.get("boundObjectRef")
    if isinstance(ref, dict) and ref:
        kind = ref.get("kind")
        if kind not in BOUND_KINDS:
            problems.append(errors.not_supported("spec.boundObjectRef.kind", kind,
                                                 sorted(BOUND_KINDS)))
        else:
            group, version, resource_name = BOUND_KINDS[kind]
            bound_resource = api.registry.get(group, version, resource_name)
            assert bound_resource is not None
            bound_entry = api.storage.cache(bound_resource).get(bound_resource.key(
                namespace if bound_resource.namespaced else None, ref.get("name", "")))
            if bound_entry is None:
                raise errors.not_found_error(resource_name, ref.get("name", ""))
            uid = bound_entry.obj["metadata"]["uid"]
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.conflict(resource_name, ref.get("name", ""), "",
                                      f"the UID in the bound object reference ({ref['uid']}) "
                                      f"does not match the UID in record. The object might "
                                      f"have been deleted and then recreated")
            bound = {"kind": kind, "name": ref["name"], "uid": uid}
    if problems:
        raise errors.invalid_error("TokenRequest", name, problems, "authentication.k8s.io")
    token, expiry = issuer.bound_token(namespace, sa, audiences=audiences or [issuer.issuer],
                                       expiration_seconds=expiration, bound=bound)
    out_spec = {"audiences": audiences or [issuer.issuer], "expirationSeconds": expiration,
                "boundObjectRef": ({"kind": bound["kind"], "apiVersion": "v1",
                                    "name": bound["name"], "uid": bound["uid"]} if bound else None)}
    return {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace,
                     "creationTimestamp": None},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))},
    }
