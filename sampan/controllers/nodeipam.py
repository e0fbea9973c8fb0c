"""Node IPAM: gives each Node its pod CIDRs (``spec.podCIDR`` / ``spec.podCIDRs``) out of the
cluster CIDRs, as upstream's ``pkg/controller/nodeipam`` range allocator.

One subnet of ``node_mask`` bits per cluster CIDR (two for dual stack). What is in use is
rebuilt from the Nodes at start, so the allocation map needs no storage of its own; a deleted
Node's subnets go back to the pool.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from sampan.client.controller import Controller, wait_for_cache_sync
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer
from sampan.client.rest import Client
from sampan.controllers.nodelifecycle import node_ref

log = logging.getLogger(__name__)

Object = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CLUSTER_CIDRS = ("10.42.0.0/16",)
DEFAULT_NODE_MASK_IPV4 = 24
DEFAULT_NODE_MASK_IPV6 = 64


class CIDRRangeFullError(Exception):
    """Every subnet of the cluster CIDR is in use."""


class CIDRSet:
    """The ``node_mask`` subnets of one cluster CIDR, each free or in use (``cidrset``)."""

    def __init__(self, cluster_cidr: str | Network, node_mask: int):
        self.cluster = ipaddress.ip_network(cluster_cidr, strict=False)
        if node_mask < self.cluster.prefixlen or node_mask > self.cluster.max_prefixlen:
            raise ValueError(f"node mask /{node_mask} does not fit in {self.cluster}")
        if node_mask - self.cluster.prefixlen > 24:
            raise ValueError(f"{self.cluster} has too many /{node_mask} subnets to allocate")
        self.node_mask = node_mask
        self.size = 1 << (node_mask - self.cluster.prefixlen)
        self._shift = self.cluster.max_prefixlen - node_mask
        self._used: set[int] = set()
        self._next = 0

    def __len__(self) -> int:
        return len(self._used)

    def _subnet(self, index: int) -> Network:
        base = int(self.cluster.network_address) + (index << self._shift)
        return ipaddress.ip_network((base, self.node_mask))

    def _index(self, cidr: str | Network) -> int | None:
        """The subnet's index, or None when it is not one of ours."""
        network = ipaddress.ip_network(cidr, strict=False)
        if network.version != self.cluster.version or not network.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        if network.prefixlen != self.node_mask:
            return None
        return (int(network.network_address) - int(self.cluster.network_address)) >> self._shift

    def allocate_next(self) -> str:
        for offset in range(self.size):
            index = (self._next + offset) % self.size
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.size
                return str(self._subnet(index))
        raise CIDRRangeFullError(f"no remaining CIDRs left to allocate in {self.cluster}")

    def occupy(self, cidr: str) -> bool:
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self._used.discard(index)

    def contains(self, cidr: str) -> bool:
        return self._index(cidr) is not None


def pod_cidrs(node: Object) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = list(spec.get("podCIDRs") or ())
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    return cidrs


class NodeIpamController(Controller):
    """Allocates pod CIDRs to Nodes that have none and releases them when Nodes go."""

    name = "node-ipam-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 1,
                 cluster_cidrs: Sequence[str] = DEFAULT_CLUSTER_CIDRS,
                 node_mask_ipv4: int = DEFAULT_NODE_MASK_IPV4,
                 node_mask_ipv6: int = DEFAULT_NODE_MASK_IPV6):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        if isinstance(cluster_cidrs, str):
            cluster_cidrs = [c.strip() for c in cluster_cidrs.split(",") if c.strip()]
        self.cidr_sets = []
        for cidr in cluster_cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            mask = node_mask_ipv4 if network.version == 4 else node_mask_ipv6
            self.cidr_sets.append(CIDRSet(network, mask))
        self.allocated: dict[str, list[str]] = {}  # node → the CIDRs we gave it or saw on it
        self.nodes = informers.informer("v1", "nodes")
        self.nodes.add_event_handler(on_add=self.enqueue,
                                     on_update=lambda old, new: self._updated(old, new),
                                     on_delete=self.enqueue)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.nodes]

    def _updated(self, old: Object, new: Object) -> None:
        if not pod_cidrs(new) or pod_cidrs(old) != pod_cidrs(new):
            self.enqueue(new)

    async def run(self) -> None:
        await wait_for_cache_sync(self.name, self.watched_informers())
        for node in self.nodes.indexer.list():
            self.occupy(node)
        await super().run()

    def occupy(self, node: Object) -> None:
        """Mark the node's CIDRs used (``occupyCIDRs``)."""
        name = node["metadata"]["name"]
        cidrs = pod_cidrs(node)
        if not cidrs:
            return
        for cidr in cidrs:
            for cidr_set in self.cidr_sets:
                if cidr_set.occupy(cidr):
                    break
            else:
                log.info("%s: node %s has CIDR %s outside the cluster CIDRs", self.name, name,
                         cidr)
        self.allocated[name] = cidrs

    def release(self, name: str) -> None:
        for cidr in self.allocated.pop(name, ()):
            for cidr_set in self.cidr_sets:
                cidr_set.release(cidr)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.indexer.get(key)
        if node is None:
            self.release(key)
            return
        if pod_cidrs(node):
            if self.allocated.get(key) != pod_cidrs(node):
                self.release(key)
                self.occupy(node)
            return
        cidrs = self.allocated.get(key)
        if cidrs is None:
            try:
                cidrs = self._allocate()
            except CIDRRangeFullError as e:
                self._event(node, "CIDRNotAvailable")
                log.warning("%s: node %s: %s", self.name, key, e)
                raise
            self.allocated[key] = cidrs
        await self._write(node, cidrs)

    def _allocate(self) -> list[str]:
        cidrs: list[str] = []
        try:
            for cidr_set in self.cidr_sets:
                cidrs.append(cidr_set.allocate_next())
        except CIDRRangeFullError:
            for cidr, cidr_set in zip(cidrs, self.cidr_sets):
                cidr_set.release(cidr)
            raise
        return cidrs

    async def _write(self, node: Object, cidrs: list[str]) -> None:
        name = node["metadata"]["name"]
        patch = {"metadata": {"uid": node["metadata"].get("uid")},
                 "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}}
        try:
            await self.client.patch("v1", "nodes", name, patch)
        except ApiError as e:
            if e.not_found:
                self.release(name)
                return
            if e.code in (409, 422):
                # Someone else set the node's CIDRs (they are immutable once set) or it was
                # recreated: what it has now wins.
                self.release(name)
                self._event(node, "CIDRAssignmentFailed")
                try:
                    fresh = await self.client.get("v1", "nodes", name)
                except ApiError as get_error:
                    if get_error.not_found:
                        return
                    raise
                self.occupy(fresh)
                if not pod_cidrs(fresh):
                    raise
                return
            raise
        log.info("%s: node %s gets pod CIDRs %s", self.name, name, ",".join(cidrs))

    def _event(self, node: Object, status: str) -> None:
        if self.recorder is not None:
            name = node["metadata"]["name"]
            self.recorder.event(node_ref(node), NORMAL, status,
                                f"Node {name} status is now: {status}")
