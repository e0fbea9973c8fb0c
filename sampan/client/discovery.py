"""Resource discovery: which resources the server serves, their kinds, scopes and verbs.

Reads ``/api`` and ``/apis`` and every group version's ``APIResourceList`` (client-go's
discovery client), and keeps them as a small cache that also maps kinds to plural resource
names (a REST mapper). A failing group version does not hide the others: ``refresh`` keeps
what it could read and then raises ``DiscoveryFailedError`` naming the failures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sampan.client.rest import Client

MIN_REFRESH_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class APIResource:
    group: str
    version: str
    name: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps``, ``pods`` — the name users and conditions show."""
        return f"{self.name}.{self.group}" if self.group else self.name

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


class DiscoveryFailedError(Exception):
    """Some group versions could not be read; the others were."""

    def __init__(self, failures: dict[str, str]):
        self.failures = dict(failures)
        listed = ", ".join(f"{gv}: {msg}" for gv, msg in sorted(failures.items()))
        super().__init__(f"unable to retrieve the complete list of server APIs: {listed}")


class GroupVersionParseError(ValueError):
    """A group version string is malformed."""


class UnknownKindError(LookupError):
    """No served resource has this kind (``meta.NoKindMatchError``)."""


def parse_group_version(text: str) -> tuple[str, str]:
    """``apps/v1`` → (apps, v1); ``v1`` → ("", v1)."""
    group, _, version = text.rpartition("/")
    if not version or text.count("/") > 1 or (text.count("/") == 1 and not group):
        raise GroupVersionParseError(f"unexpected GroupVersion string: {text!r}")
    return group, version


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    versions: tuple[str, ...]  # preferred first


class Discovery:
    """The discovery cache of one client."""

    def __init__(self, client: Client):
        self._client = client
        self._groups: list[_Group] = []
        self._by_group_version: dict[str, list[APIResource]] = {}
        self._lock = asyncio.Lock()
        self._refreshed_at = 0.0
        self.failures: dict[str, str] = {}
        self.parse_failures: dict[str, str] = {}

    @property
    def loaded(self) -> bool:
        return self._refreshed_at > 0

    async def refresh(self) -> None:
        """Read discovery again (concurrent callers share one read)."""
        started = time.monotonic()
        async with self._lock:
            if self._refreshed_at >= started:
                self._raise_failures()
                return
            await self._read()
            self._refreshed_at = time.monotonic()
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self.failures:
            raise DiscoveryFailedError(self.failures)

    async def _read(self) -> None:
        groups = await self._groups_list()
        group_versions = [_api_version(g.name, v) for g in groups for v in g.versions]
        results = await asyncio.gather(*(self._resource_list(gv) for gv in group_versions),
                                       return_exceptions=True)
        by_gv: dict[str, list[APIResource]] = {}
        failures: dict[str, str] = {}
        parse_failures: dict[str, str] = {}
        for gv, result in zip(group_versions, results):
            if isinstance(result, GroupVersionParseError):
                parse_failures[gv] = str(result)
            elif isinstance(result, BaseException):
                failures[gv] = str(result)
            else:
                by_gv[gv] = result
        self._groups, self._by_group_version = groups, by_gv
        self.failures, self.parse_failures = failures, parse_failures

    async def _groups_list(self) -> list[_Group]:
        core, named = await asyncio.gather(self._client.request("GET", "/api"),
                                           self._client.request("GET", "/apis"))
        groups = [_Group("", tuple(core.get("versions") or ["v1"]))]
        for group in named.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("version")
            versions = [v["version"] for v in group.get("versions") or []]
            if preferred in versions:
                versions.remove(preferred)
                versions.insert(0, preferred)
            groups.append(_Group(group["name"], tuple(versions)))
        return groups

    async def _resource_list(self, group_version: str) -> list[APIResource]:
        path = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        body: dict[str, Any] = await self._client.request("GET", path)
        group, version = parse_group_version(body.get("groupVersion") or group_version)
        out = []
        for r in body.get("resources") or []:
            if "/" in r.get("name", ""):
                continue  # subresources: pods/status, deployments/scale
            out.append(APIResource(group=r.get("group") or group, version=r.get("version") or version,
                                   name=r["name"], kind=r["kind"],
                                   namespaced=bool(r.get("namespaced")),
                                   verbs=frozenset(r.get("verbs") or ())))
        return out

    async def ensure_loaded(self) -> None:
        """Read discovery once, tolerating partial failures."""
        if not self.loaded:
            try:
                await self.refresh()
            except DiscoveryFailedError:
                pass

    # -- queries (of the last refresh) -----------------------------------------------------
    def resources(self) -> list[APIResource]:
        """Every resource in every served version."""
        return [r for rs in self._by_group_version.values() for r in rs]

    def preferred_resources(self) -> list[APIResource]:
        """One version of each resource: the group's preferred version, else the most
        preferred version that serves it (client-go's ServerPreferredResources)."""
        out: list[APIResource] = []
        for group in self._groups:
            seen: set[str] = set()
            for version in group.versions:
                for r in self._by_group_version.get(_api_version(group.name, version), []):
                    if r.name not in seen:
                        seen.add(r.name)
                        out.append(r)
        return out

    def _find(self, api_version: str, kind: str) -> APIResource | None:
        for r in self._by_group_version.get(api_version, []):
            if r.kind == kind:
                return r
        return None

    async def resource_for(self, api_version: str, kind: str) -> APIResource:
        """The resource serving ``kind`` in ``api_version``; reads discovery again on a miss
        (a CRD may have just been established)."""
        found = self._find(api_version, kind)
        if found is None and time.monotonic() - self._refreshed_at > MIN_REFRESH_INTERVAL:
            try:
                await self.refresh()
            except DiscoveryFailedError:
                pass
            found = self._find(api_version, kind)
        if found is None:
            raise UnknownKindError(f'no matches for kind "{kind}" in version "{api_version}"')
        return found


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version
