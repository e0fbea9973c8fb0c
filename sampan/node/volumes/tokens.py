"""Service-account tokens for projected volumes, as the kubelet's token manager
(``pkg/kubelet/token``) gets them: a TokenRequest bound to the pod, cached, and replaced once
80% of its lifetime has passed or it is older than 24 hours (with a little jitter so that many
pods do not all ask at once)."""

from __future__ import annotations

import asyncio
import calendar
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sampan.client import ApiError, Client

MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0
REFRESH_FRACTION = 0.2          # refresh when within 20% of the lifetime of the expiry


@dataclass(frozen=True, slots=True)
class _Key:
    namespace: str
    service_account: str
    audiences: tuple[str, ...]
    expiration_seconds: int | None
    pod_name: str
    pod_uid: str


@dataclass(slots=True)
class _Token:
    token: str
    expires_at: float
    lifetime: float


class TokenError(Exception):
    pass


def _parse_time(value: str) -> float:
    return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))


class TokenManager:
    def __init__(self, client: Client, *, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self._tokens: dict[_Key, _Token] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}

    def requires_refresh(self, token: _Token) -> bool:
        now = self.clock()
        jitter = random.random() * MAX_JITTER
        issued_at = token.expires_at - token.lifetime
        if now > issued_at + MAX_TTL - jitter:
            return True
        return now > token.expires_at - token.lifetime * REFRESH_FRACTION - jitter

    async def get(self, namespace: str, service_account: str, *, pod_name: str, pod_uid: str,
                  audiences: Sequence[str] = (), expiration_seconds: int | None = None) -> str:
        """A token for ``system:serviceaccount:<namespace>:<service_account>`` bound to the pod."""
        key = _Key(namespace, service_account, tuple(audiences), expiration_seconds, pod_name,
                   pod_uid)
        cached = self._tokens.get(key)
        if cached is not None and not self.requires_refresh(cached):
            return cached.token
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and not self.requires_refresh(cached):
                return cached.token
            try:
                fresh = await self._request(key)
            except (ApiError, KeyError, ValueError) as e:
                if cached is not None and cached.expires_at > self.clock():
                    return cached.token  # keep the old, still valid token; retry next time
                message = e.message if isinstance(e, ApiError) else f"bad TokenRequest answer: {e}"
                raise TokenError(f"failed to fetch token: {message}") from None
            self._tokens[key] = fresh
            return fresh.token

    async def _request(self, key: _Key) -> _Token:
        spec: dict = {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": key.pod_name,
                                         "uid": key.pod_uid}}
        if key.audiences:
            spec["audiences"] = list(key.audiences)
        if key.expiration_seconds is not None:
            spec["expirationSeconds"] = key.expiration_seconds
        answer = await self.client.create(
            "v1", "serviceaccounts",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            namespace=key.namespace, name=key.service_account, subresource="token")
        status = answer["status"]
        expires_at = _parse_time(status["expirationTimestamp"])
        lifetime = float((answer.get("spec") or {}).get("expirationSeconds")
                         or key.expiration_seconds or 3600)
        return _Token(status["token"], expires_at, lifetime)

    def forget_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._tokens if k.pod_uid == pod_uid]:
            del self._tokens[key]
        for key in [k for k in self._locks if k.pod_uid == pod_uid]:
            del self._locks[key]
