"""The service proxy of one node: Services and EndpointSlices from informers, turned into one
nftables table and kept in sync (kube-proxy's nftables Proxier).

Every sync generates the whole ruleset from the caches (level-triggered: an event only says
"something changed"). The first sync, and any sync after a failure, replaces the table whole;
the others apply the difference to the last ruleset applied, rewriting only chains that
changed, so a sync stays cheap with many services and ClientIP affinity entries survive it.
Syncs are rate-limited to one per ``min_sync_interval``: a burst of changes syncs once.

``mode`` picks the backend: "nftables", "iptables" (``sampan.proxy.iptables``, the same
service ports through ``iptables-restore``) or "auto" (nftables when ``nft list tables``
works, else iptables; decided at the first sync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from sampan.client import Client, InformerFactory, SharedInformer, strip_managed_fields
from sampan.controllers.util import parse_time
from sampan.proxy import metrics
from sampan.proxy.iptables import IptablesBackend, Tables, detect_mode
from sampan.proxy.kernel import apply_script, clear_udp_flows, delete_table, stale_udp_flows
from sampan.proxy.model import Categorized, ServicePort, build_service_ports, categorize
from sampan.proxy.rules import NodeInfo, Ruleset, build_categorized, render_full, render_update

log = logging.getLogger(__name__)

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
RETRY_INTERVAL = 1.0
MAX_RETRY_INTERVAL = 30.0
MODES = ("auto", "nftables", "iptables")


def default_table(node_name: str) -> str:
    from sampan.node.network.names import nft_table_name

    return nft_table_name("sampan-proxy", node_name)


class ServiceProxy:
    def __init__(self, client: Client, node_name: str, *, node_ips: Sequence[str] = (),
                 cluster_cidrs: Sequence[str] = ("10.42.0.0/16",),
                 service_cidrs: Sequence[str] = ("10.43.0.0/16",), table: str | None = None,
                 min_sync_interval: float = 0.05, full_sync_period: float = 3600.0,
                 nft: Sequence[str] = ("nft",), conntrack: Sequence[str] = ("conntrack",),
                 informers: InformerFactory | None = None, mode: str = "nftables",
                 iptables: Sequence[str] = ("iptables",), chain_prefix: str | None = None):
        if mode not in MODES:
            raise ValueError(f"proxy mode {mode!r}: one of {', '.join(MODES)}")
        self.client = client
        self.node = NodeInfo(node_name, tuple(node_ips), tuple(cluster_cidrs),
                             tuple(service_cidrs))
        self.table = table or default_table(node_name)
        self.min_sync_interval = min_sync_interval
        self.full_sync_period = full_sync_period
        self.nft, self.conntrack = tuple(nft), tuple(conntrack)
        self.mode = mode  # "auto" until the first sync decides
        self.iptables = IptablesBackend(self.node, chain_prefix=chain_prefix,
                                        iptables=iptables)
        # A shared factory (the node agent's) is its owner's to start and stop.
        self._own_informers = informers is None
        if informers is None:
            self.services = SharedInformer(client, "v1", "services",
                                           transform=strip_managed_fields)
            self.slices = SharedInformer(client, "discovery.k8s.io/v1", "endpointslices",
                                         transform=strip_managed_fields)
        else:
            self.services = informers.informer("v1", "services")
            self.slices = informers.informer("discovery.k8s.io/v1", "endpointslices")
        for informer in (self.services, self.slices):
            informer.add_event_handler(on_add=self._on_change,
                                       on_update=lambda old, new: self._on_change(new),
                                       on_delete=self._on_change)
        self.applied: Ruleset | None = None  # what the table holds, when we know it
        self.syncs = 0
        self._ports: dict[str, tuple[ServicePort, Categorized]] = {}
        self._trigger_times: list[float] = []
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_full = 0.0

    # -- events ------------------------------------------------------------------------------
    def _on_change(self, obj: dict[str, Any]) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        trigger = parse_time(annotations.get(TRIGGER_TIME_ANNOTATION))
        if trigger is not None and self.services.has_synced():
            self._trigger_times.append(trigger)
        self._dirty.set()

    # -- sync ----------------------------------------------------------------------------------
    def desired_ports(self) -> dict[str, tuple[ServicePort, Categorized]]:
        """The service ports the caches call for, with their endpoints for this node."""
        ports = build_service_ports(self.services.indexer.list(), self.slices.indexer.list())
        return {f"{sp.key}/{sp.protocol}/{sp.family}": (sp, categorize(sp, self.node.name))
                for sp in ports}

    def desired(self) -> tuple[Ruleset, dict[str, tuple[ServicePort, Categorized]]]:
        """The ruleset the caches call for (pure with respect to the caches)."""
        ports = self.desired_ports()
        return build_categorized(ports.values(), self.node, self.table), ports

    async def resolve_mode(self) -> str:
        """The backend in use: "auto" becomes "nftables" or "iptables" once, here."""
        if self.mode == "auto":
            self.mode = await detect_mode(self.nft)
            log.info("service proxy mode: %s", self.mode)
        return self.mode

    async def sync_once(self, *, full: bool = False) -> Ruleset | dict[int, Tables]:
        """Generate the ruleset and apply it: a difference to the last one applied, or the whole
        table (first sync, ``full``, after a failure, or every ``full_sync_period``). In
        iptables mode the result is the chains of each IP family."""
        async with self._lock:
            start = time.perf_counter()
            triggers, self._trigger_times = self._trigger_times, []
            iptables = await self.resolve_mode() == "iptables"
            unknown = (self.iptables.applied is None) if iptables else (self.applied is None)
            full = (full or unknown
                    or time.monotonic() - self._last_full > self.full_sync_period)
            try:
                if iptables:
                    ports = self.desired_ports()
                    result: Ruleset | dict[int, Tables] = await self.iptables.sync(
                        ports.values(), full=full)
                else:
                    ruleset, ports = self.desired()
                    if full:
                        await apply_script(render_full(ruleset), self.nft)
                    else:
                        await apply_script(render_update(self.applied, ruleset), self.nft)
                    result = ruleset
            except Exception:
                metrics.SYNC_FAILURES.inc()
                self.applied = None  # the table's state is unknown: replace it next time
                self.iptables.forget()
                self._trigger_times = triggers + self._trigger_times
                raise
            if full:
                self._last_full = time.monotonic()
            if not iptables:
                self.applied = ruleset
            self.syncs += 1
            elapsed = time.perf_counter() - start
            self._record(elapsed, full, ports, triggers)
            stale, self._ports = stale_udp_flows(self._ports, ports), ports
            if stale:
                await clear_udp_flows(stale, self.conntrack)
            log.debug("synced %d service ports in %.3fs (%s)", len(ports), elapsed,
                      "full" if full else "partial")
            return result

    def _record(self, elapsed: float, full: bool, ports: dict[str, tuple[ServicePort, Categorized]],
                triggers: list[float]) -> None:
        metrics.SYNC_DURATION.observe(elapsed)
        (metrics.FULL_SYNC_DURATION if full else metrics.PARTIAL_SYNC_DURATION).observe(elapsed)
        metrics.LAST_SYNC.set_to_current_time()
        now = time.time()
        for trigger in triggers:
            metrics.NETWORK_PROGRAMMING.observe(max(0.0, now - trigger))
        internal = sum(1 for sp, cat in ports.values()
                       if sp.internal_local and cat.any_usable and not cat.local)
        external = sum(1 for sp, cat in ports.values()
                       if sp.external_local and cat.any_usable and not cat.local)
        metrics.NO_LOCAL_ENDPOINTS.labels("internal").set(internal)
        metrics.NO_LOCAL_ENDPOINTS.labels("external").set(external)
        metrics.SERVICES.set(len(ports))
        metrics.ENDPOINTS.set(sum(len(cat.reachable) for _, cat in ports.values()))

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, timeout: float | None = 60.0) -> None:
        """Start the informers and wait until both have listed."""
        if self._own_informers:
            self.services.start()
            self.slices.start()
        for informer in (self.services, self.slices):
            if not await informer.wait_for_sync(timeout):
                raise TimeoutError(f"{informer!r} did not sync in {timeout}s")

    async def stop(self, *, delete_rules: bool = True) -> None:
        if self._own_informers:
            await self.services.stop()
            await self.slices.stop()
        if delete_rules:
            await self.delete_rules()

    async def delete_rules(self) -> None:
        """Remove everything this proxy programmed (the nft table, or the iptables chains
        and jumps of both IP families)."""
        async with self._lock:
            if await self.resolve_mode() == "iptables":
                await self.iptables.delete()
            else:
                await delete_table(self.table, self.nft)
            self.applied = None

    async def run(self, stop: asyncio.Event, *, delete_rules_on_stop: bool = True) -> None:
        """Sync until ``stop`` is set (then remove the table unless told to keep it)."""
        await self.start()
        loop = asyncio.get_running_loop()
        backoff, last_start = RETRY_INTERVAL, -1e9
        self._dirty.set()
        stop_task = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                dirty_task = loop.create_task(self._dirty.wait())
                await asyncio.wait({stop_task, dirty_task}, timeout=self.full_sync_period,
                                   return_when=asyncio.FIRST_COMPLETED)
                dirty_task.cancel()
                if stop.is_set():
                    break
                delay = last_start + self.min_sync_interval - loop.time()
                if delay > 0:
                    await asyncio.wait({stop_task}, timeout=delay)
                    if stop.is_set():
                        break
                self._dirty.clear()
                last_start = loop.time()
                try:
                    await self.sync_once()
                    backoff = RETRY_INTERVAL
                except Exception as e:
                    log.error("service proxy sync failed: %s; retrying in %.1fs", e, backoff)
                    await asyncio.wait({stop_task}, timeout=backoff)
                    backoff = min(backoff * 2, MAX_RETRY_INTERVAL)
                    self._dirty.set()
        finally:
            stop_task.cancel()
            await self.stop(delete_rules=delete_rules_on_stop)
